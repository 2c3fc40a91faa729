# Base models: tiny random-initialised models of the real classes, or local backbones.


rule base_models:
    """Build the tiny models (source: tiny) or check local backbone folders (source: path)."""
    input:
        config=config_of("models"),
        launch=LAUNCH_CONFIG,
    output:
        backbones=expand(BASE_MODEL, role=plan.ROLES),
        manifest=f"{RUN_DIR}/models/base/manifest.json",
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


rule models:
    """Target: every role's base model."""
    input:
        rules.base_models.output,
