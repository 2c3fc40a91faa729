# Evaluation: one job per (suite, task), so one task reruns alone:
#   snakemake results/<run>/eval/<variant>/synth/<task>.score.json
# A job evaluates every configured variant of its task (main first): the variants that change
# only the Embedder's input reuse main's T-CoTs from the cache (shared by all runs, under
# eval.cache_dir), and each model is loaded once per task, not once per variant. Which models,
# tasks and per-suite inputs: ume/plan.py.
from pathlib import Path

EVAL = f"{RUN_DIR}/eval"
EVAL_KINDS = ["score.json", "pred.jsonl", "cost.json"]
EVAL_SHELL = (
    "python -m ume eval --config {input.config} --suite {wildcards.suite} --task {wildcards.task}"
    " --out-dir {params.out} {params.root} {params.models} --cache-dir {params.cache}"
    + LAUNCH_ARGS
    + " 2> {log}"
)


rule eval_task:
    """One task of a suite, every variant (score, predictions, cost). The synthetic suite reads
    the synthetic benchmark; MMEB-V2 and UVRB read eval.mmeb_root / eval.uvrb_root (missing
    data is recorded missing)."""
    input:
        config=config_of("eval"),
        bench=lambda w: plan.eval_suite_data(
            CFG, w.suite, w.task, rules.synth_benchmark.output.root
        ),
        embedder=plan.eval_embedder(CFG),
        reasoner=plan.eval_reasoner(CFG),
        reasoner_no_egrl=plan.eval_reasoner_no_egrl(CFG),
        lengths=plan.eval_tcot_lengths(CFG, rules.annotate_tcot.output.lengths),
        launch=LAUNCH_CONFIG,
    output:
        expand(
            f"{EVAL}/{{variant}}/{{suite}}/{{task}}.{{kind}}",
            variant=CFG.eval.variants,
            kind=EVAL_KINDS,
            allow_missing=True,  # {suite} and {task} stay wildcards
        ),
    params:
        out=lambda w, output: str(Path(output[0]).parents[2]),  # EVAL
        root=lambda w, input: plan.cli_args(root=input.bench),
        models=lambda w, input: plan.cli_args(
            embedder=input.embedder,
            reasoner=input.reasoner,
            reasoner_no_egrl=input.reasoner_no_egrl,
            tcot_lengths=input.lengths,
        ),
        cache=CFG.eval_cache_dir,
    wildcard_constraints:
        suite=plan.suite_constraint(),
        task=plan.task_constraint(CFG),
    log:
        f"{RUN_DIR}/logs/eval/{{suite}}/{{task}}.log",
    benchmark:
        timing_of("eval/{suite}/{task}")
    resources:
        nodes=1,
        gpus=size(1, 0),
        cpus_per_task=size(8, 1),
        mem_mb=size(64000, 3000),
        runtime=lambda w: plan.eval_runtime(CFG, w.suite),
    conda:
        GPU_ENV
    shell:
        EVAL_SHELL


rule eval:
    """Target: every task of eval.suites for every variant in eval.variants."""
    input:
        plan.eval_scores(CFG, f"{EVAL}/{{variant}}/{{suite}}/{{task}}.score.json"),
