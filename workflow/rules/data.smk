# Data construction: pairs -> T-CoT annotation -> relevance filter -> contrastive / RL split.

# The hf backend runs the annotator MLLM inside the (launched) job: one GPU at paper scale.
ANNOTATOR_GPUS = size(1, 0) if "hf" in {CFG.annotate.backend, CFG.filter.backend} else 0


rule prepare_pairs:
    """Training pairs: the synthetic generator or the paper's training sources."""
    input:
        config=config_of("data"),
    output:
        pairs=f"{R}/data/pairs.parquet",
        datasets=f"{R}/data/datasets.json",
        manifest=f"{R}/data/manifest.json",
        media=directory(f"{R}/data/media"),
    params:
        out=lambda w, output: os.path.dirname(output.manifest),
    log:
        log_of("prepare_pairs"),
    benchmark:
        bench_of("prepare_pairs")
    conda:
        CPU_ENV
    shell:
        "python -m ume data --config {input.config} --out {params.out} 2> {log}"


rule synth_benchmark:
    """The synthetic benchmark: every synthetic task in the real MMEB-V2 / UVRB layouts."""
    input:
        config=config_of("benchmark"),
    output:
        root=directory(f"{R}/bench/synth"),
    log:
        log_of("synth_benchmark"),
    benchmark:
        bench_of("synth_benchmark")
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
        annotator=annotator_input,
        reasoner=f"{R}/models/base/reasoner/backbone.json",  # T-CoT lengths in its tokens
        launch=LAUNCH_CONFIG,
    output:
        tcot=f"{R}/annotate/tcot.parquet",
        lengths=f"{R}/annotate/tcot_lengths.json",
        manifest=f"{R}/annotate/manifest.json",
    params:
        annotator=annotator_arg,
    log:
        log_of("annotate_tcot"),
    benchmark:
        bench_of("annotate_tcot")
    resources:
        nodes=1,
        gpus=ANNOTATOR_GPUS,
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 4000),
        runtime=size(1440, 20),
    conda:
        CPU_ENV
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
        annotator=annotator_input,
        launch=LAUNCH_CONFIG,
    output:
        filtered=f"{R}/filter/filtered.parquet",
        manifest=f"{R}/filter/manifest.json",
    params:
        annotator=annotator_arg,
    log:
        log_of("relevance_filter"),
    benchmark:
        bench_of("relevance_filter")
    resources:
        nodes=1,
        gpus=ANNOTATOR_GPUS,
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 4000),
        runtime=size(1440, 20),
    conda:
        CPU_ENV
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
        contrastive=f"{R}/split/contrastive.parquet",
        rl=f"{R}/split/rl.parquet",
        manifest=f"{R}/split/manifest.json",
    log:
        log_of("split_data"),
    benchmark:
        bench_of("split_data")
    conda:
        CPU_ENV
    shell:
        "python -m ume split --config {input.config} --filtered {input.filtered}"
        " --contrastive {output.contrastive} --rl {output.rl} 2> {log}"


rule data:
    """Target: the data-construction stage (training pairs, annotation, filter, split)."""
    input:
        rules.split_data.output,
        rules.synth_benchmark.output if WANT_SYNTH_BENCH else [],
