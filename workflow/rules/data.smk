# Data construction: pairs -> T-CoT annotation -> relevance filter -> contrastive / RL split.

# The annotator model when the hf backend annotates or judges (else no input); it runs inside
# the (launched) job: one GPU at paper scale.
ANNOTATOR = plan.annotator_model(CFG)
ANNOTATOR_GPUS = plan.annotator_gpus(CFG)


rule prepare_pairs:
    """Training pairs: the synthetic generator or the paper's training sources."""
    input:
        config=config_of("data"),
    output:
        pairs=f"{RUN_DIR}/data/pairs.parquet",
        datasets=f"{RUN_DIR}/data/datasets.json",
        manifest=f"{RUN_DIR}/data/manifest.json",
        media=directory(f"{RUN_DIR}/data/media"),
    params:
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        log_of("prepare_pairs"),
    benchmark:
        timing_of("prepare_pairs")
    conda:
        CPU_ENV
    shell:
        "python -m ume data --config {input.config} --out {params.out} 2> {log}"


rule synth_benchmark:
    """The synthetic benchmark: every synthetic task in the real MMEB-V2 / UVRB layouts."""
    input:
        config=config_of("benchmark"),
    output:
        root=directory(f"{RUN_DIR}/bench/synth"),
    log:
        log_of("synth_benchmark"),
    benchmark:
        timing_of("synth_benchmark")
    conda:
        CPU_ENV
    shell:
        "python -m ume benchmark --config {input.config} --out {output.root} 2> {log}"


rule annotate_tcot:
    """T-CoT for the query and the positive of every pair (oracle | hf | server)."""
    input:
        config=config_of("annotate"),
        pairs=rules.prepare_pairs.output.pairs,
        media=rules.prepare_pairs.output.media,
        annotator=ANNOTATOR,
        # the T-CoT lengths are counted in the Reasoner's tokens (its tokenizer is set before
        # pretraining, so annotation need not wait for it)
        reasoner=plan.init_model(CFG, "reasoner"),
        launch=LAUNCH_CONFIG,
    output:
        tcot=f"{RUN_DIR}/annotate/tcot.parquet",
        lengths=f"{RUN_DIR}/annotate/tcot_lengths.json",
        manifest=f"{RUN_DIR}/annotate/manifest.json",
    params:
        annotator=lambda w, input: plan.cli_args(annotator=input.annotator),
    log:
        log_of("annotate_tcot"),
    benchmark:
        timing_of("annotate_tcot")
    resources:
        nodes=1,
        gpus=ANNOTATOR_GPUS,
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 4000),
        runtime=size(1440, 20),
    conda:
        GPU_ENV
    shell:
        "python -m ume annotate --config {input.config} --pairs {input.pairs} --out {output.tcot}"
        " {params.annotator} --reasoner {input.reasoner} --lengths {output.lengths}"
        + LAUNCH_ARGS
        + " 2> {log}"


rule relevance_filter:
    """Keep pairs whose two T-CoTs the judge does not find irrelevant or conflicting."""
    input:
        config=config_of("filter"),
        tcot=rules.annotate_tcot.output.tcot,
        annotator=ANNOTATOR,
        launch=LAUNCH_CONFIG,
    output:
        filtered=f"{RUN_DIR}/filter/filtered.parquet",
        manifest=f"{RUN_DIR}/filter/manifest.json",
    params:
        annotator=lambda w, input: plan.cli_args(annotator=input.annotator),
    log:
        log_of("relevance_filter"),
    benchmark:
        timing_of("relevance_filter")
    resources:
        nodes=1,
        gpus=ANNOTATOR_GPUS,
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 4000),
        runtime=size(1440, 20),
    conda:
        GPU_ENV
    shell:
        "python -m ume filter --config {input.config} --tcot {input.tcot} --out {output.filtered}"
        " {params.annotator}"
        + LAUNCH_ARGS
        + " 2> {log}"


rule split_data:
    """Contrastive set and RL set (split.rule: disjoint | overlap)."""
    input:
        config=config_of("split"),
        filtered=rules.relevance_filter.output.filtered,
    output:
        contrastive=f"{RUN_DIR}/split/contrastive.parquet",
        rl=f"{RUN_DIR}/split/rl.parquet",
        manifest=f"{RUN_DIR}/split/manifest.json",
    log:
        log_of("split_data"),
    benchmark:
        timing_of("split_data")
    conda:
        CPU_ENV
    shell:
        "python -m ume split --config {input.config} --filtered {input.filtered}"
        " --contrastive {output.contrastive} --rl {output.rl} 2> {log}"


rule data:
    """Target: the data-construction stage (training pairs, annotation, filter, split)."""
    input:
        rules.split_data.output,
        plan.synth_benchmark_target(CFG, rules.synth_benchmark.output.root),
