# Base models: tiny random-initialised models of the real classes, or local backbones
# (base_models -> models/init/), then the tiny ones pretrained (pretrain_tiny -> models/base/,
# what every later stage reads; real backbones pass through unchanged).


rule base_models:
    """Build the tiny models (source: tiny) or check local backbone folders (source: path)."""
    input:
        config=config_of("models"),
        launch=LAUNCH_CONFIG,
    output:
        backbones=expand(INIT_MODEL, role=plan.ROLES),
        manifest=f"{RUN_DIR}/models/init/manifest.json",
    params:
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        log_of("base_models"),
    benchmark:
        timing_of("base_models")
    resources:
        nodes=1,
        gpus=0,
        cpus_per_task=size(4, 1),
        mem_mb=size(16000, 4000),
        runtime=size(60, 20),
    conda:
        CPU_ENV
    shell:
        "python -m ume models --config {input.config} --out {params.out}"
        + LAUNCH_ARGS
        + " 2> {log}"


rule pretrain_tiny:
    """Pretrain the tiny backbones (captions, boxes, crops, key frames; vision tower trained);
    a real backbone (source: path) passes through, as the manifest records."""
    input:
        config=config_of("pretrain"),
        init=rules.base_models.output.backbones,
        launch=LAUNCH_CONFIG,
    output:
        backbones=expand(BASE_MODEL, role=plan.ROLES),
        manifest=f"{RUN_DIR}/models/base/manifest.json",
    params:
        init=lambda w, input: os.path.dirname(os.path.dirname(input.init[0])),
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        log_of("pretrain_tiny"),
    benchmark:
        timing_of("pretrain_tiny")
    resources:
        nodes=1,
        gpus=0,
        cpus_per_task=size(4, 1),
        mem_mb=size(16000, 4000),
        runtime=size(60, 20),
    conda:
        CPU_ENV
    shell:
        "python -m ume pretrain --config {input.config} --init {params.init} --out {params.out}"
        + LAUNCH_ARGS
        + " 2> {log}"


rule models:
    """Target: every role's base model (pretrained where tiny)."""
    input:
        rules.pretrain_tiny.output,
