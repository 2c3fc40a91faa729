# Evaluation: one rule per suite with the task as wildcard, so one task reruns alone:
#   snakemake results/<run>/eval/<variant>/synth/<task>.score.json
# A job evaluates every configured variant of its task (main first): the variants that change
# only the Embedder's input reuse main's T-CoTs from the cache (shared by all runs, under
# eval.cache_dir), and each model is loaded once per task, not once per variant.
# Paths and helpers: eval_common.smk.


include: "eval_common.smk"


rule eval_synth:
    """One task of the synthetic suite, every variant (score, predictions, cost)."""
    input:
        config=config_of("eval"),
        bench=rules.synth_benchmark.output.root,
        embedder=eval_embedder,
        reasoner=eval_reasoner,
        reasoner_no_egrl=eval_reasoner_no_egrl,
        lengths=eval_tcot_lengths,
        launch=LAUNCH_CONFIG,
    output:
        eval_outputs("synth"),
    params:
        suite="synth",
        out=lambda w, output: str(Path(output[0]).parents[2]),
        root=lambda w, input: f"--root {input.bench}",
        models=eval_model_args,
        cache=EVAL_CACHE,
    wildcard_constraints:
        task=task_constraint("synth"),
    log:
        f"{R}/logs/eval/synth/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/eval/synth/{{task}}.tsv"
    resources:
        nodes=1,
        gpus=size(1, 0),
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 3000),
        runtime=size(240, 15),
    conda:
        CPU_ENV
    shell:
        EVAL_SHELL


rule eval_mmeb:
    """One MMEB-V2 task (data under eval.mmeb_root; missing data is recorded missing)."""
    input:
        config=config_of("eval"),
        embedder=eval_embedder,
        reasoner=eval_reasoner,
        reasoner_no_egrl=eval_reasoner_no_egrl,
        lengths=eval_tcot_lengths,
        launch=LAUNCH_CONFIG,
    output:
        eval_outputs("mmeb"),
    params:
        suite="mmeb",
        out=lambda w, output: str(Path(output[0]).parents[2]),
        root="",
        models=eval_model_args,
        cache=EVAL_CACHE,
    wildcard_constraints:
        task=task_constraint("mmeb"),
    log:
        f"{R}/logs/eval/mmeb/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/eval/mmeb/{{task}}.tsv"
    resources:
        nodes=1,
        gpus=size(1, 0),
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 3000),
        runtime=size(480, 15),
    conda:
        CPU_ENV
    shell:
        EVAL_SHELL


rule eval_uvrb:
    """One UVRB dataset (data under eval.uvrb_root; missing data is recorded missing)."""
    input:
        config=config_of("eval"),
        embedder=eval_embedder,
        reasoner=eval_reasoner,
        reasoner_no_egrl=eval_reasoner_no_egrl,
        lengths=eval_tcot_lengths,
        launch=LAUNCH_CONFIG,
    output:
        eval_outputs("uvrb"),
    params:
        suite="uvrb",
        out=lambda w, output: str(Path(output[0]).parents[2]),
        root="",
        models=eval_model_args,
        cache=EVAL_CACHE,
    wildcard_constraints:
        task=task_constraint("uvrb"),
    log:
        f"{R}/logs/eval/uvrb/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/eval/uvrb/{{task}}.tsv"
    resources:
        nodes=1,
        gpus=size(1, 0),
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 3000),
        runtime=size(480, 15),
    conda:
        CPU_ENV
    shell:
        EVAL_SHELL


rule eval:
    """Target: every task of eval.suites for every variant in eval.variants."""
    input:
        EVAL_SCORES,
