# Paths, model choice and task lists of the evaluation rules (eval.smk). No logic beyond paths.
import re
from pathlib import Path

from ume.eval.registry import find_task
from ume.eval.registry import tasks as suite_tasks

EVAL = f"{R}/eval"
EVAL_VARIANTS = list(CFG.eval.variants)
EVAL_CACHE = CFG.eval.cache_dir or f"{CFG.results_dir}/cache"
EVAL_KINDS = ["score.json", "pred.jsonl", "cost.json"]

# Where each model stage's output lies, newest first: (rule that writes it, path). With
# eval.embedder_stage / eval.reasoner_stage "auto" the first stage whose rule the workflow
# has is evaluated; a named stage is taken as is.
EMBEDDER_STAGES = {
    "trained": ("train_embedder", f"{R}/models/embedder"),
    "base": ("pretrain_tiny", f"{R}/models/base/embedder/backbone.json"),
}
REASONER_STAGES = {
    "egrl": ("egrl", f"{R}/models/reasoner-rl"),
    "sft": ("sft_reasoner", f"{R}/models/reasoner-sft"),
    "base": ("pretrain_tiny", f"{R}/models/base/reasoner/backbone.json"),
}


def stage_output(stages, choice, skip=()):
    if choice != "auto":
        return stages[choice][1]
    for name, (rule_name, path) in stages.items():
        if name not in skip and rules.has(rule_name):
            return path
    raise WorkflowError(f"no stage of {list(stages)} is defined in this workflow")


def selected_tasks():
    """eval.tasks as canonical task names (aliases and data names accepted); None: all."""
    if CFG.eval.tasks is None:
        return None
    chosen = set()
    for name in CFG.eval.tasks:
        specs = [find_task(suite, name) for suite in CFG.eval.suites]
        specs = [s for s in specs if s is not None]
        if not specs:
            raise WorkflowError(
                f"eval.tasks: unknown task {name!r} in the suites {CFG.eval.suites}; "
                "see ume/eval/registry.py (or the synthetic suite) for the names"
            )
        chosen.update(s.name for s in specs)
    return chosen


SELECTED_TASKS = selected_tasks()


def eval_tasks(suite):
    """Task names of a suite, restricted to eval.tasks when it is set."""
    names = [s.name for s in suite_tasks(suite)]
    return [n for n in names if SELECTED_TASKS is None or n in SELECTED_TASKS]


def task_constraint(suite):
    return "|".join(re.escape(n) for n in eval_tasks(suite)) or "^$"


def eval_outputs(suite):
    return [f"{EVAL}/{v}/{suite}/{{task}}.{k}" for v in EVAL_VARIANTS for k in EVAL_KINDS]


def eval_needs(role):
    """Does a configured variant need the Reasoner ``role`` (main | no_egrl) from a file?"""
    from ume.eval.run import VARIANTS

    main_mode = CFG.train_embedder.tcot_input
    return CFG.eval.reasoner_backend == "hf" and any(
        VARIANTS[v].reasoner == role and (VARIANTS[v].mode or main_mode) != "raw"
        for v in EVAL_VARIANTS
    )


def eval_embedder(wildcards):
    return stage_output(EMBEDDER_STAGES, CFG.eval.embedder_stage)


def eval_reasoner(wildcards):
    if not eval_needs("main"):
        return []
    skip = () if CFG.egrl.enabled else ("egrl",)
    return stage_output(REASONER_STAGES, CFG.eval.reasoner_stage, skip)


def eval_reasoner_no_egrl(wildcards):
    if not eval_needs("no_egrl"):
        return []
    return stage_output(REASONER_STAGES, "auto", ("egrl",))


def eval_tcot_lengths(wildcards):
    """The annotated T-CoT lengths (eval.max_new_tokens is checked against them) when some
    variant generates T-CoTs (with either Reasoner backend)."""
    from ume.eval.run import VARIANTS

    main_mode = CFG.train_embedder.tcot_input
    if not any(
        VARIANTS[v].reasoner and (VARIANTS[v].mode or main_mode) != "raw" for v in EVAL_VARIANTS
    ):
        return []
    return rules.annotate_tcot.output.lengths


def eval_model_args(wildcards, input):
    args = f"--embedder {input.embedder}"
    if input.reasoner:
        args += f" --reasoner {input.reasoner}"
    if input.reasoner_no_egrl:
        args += f" --reasoner-no-egrl {input.reasoner_no_egrl}"
    if input.lengths:
        args += f" --tcot-lengths {input.lengths}"
    return args


EVAL_SHELL = (
    "python -m ume eval --config {input.config} --suite {params.suite} --task {wildcards.task}"
    " --out-dir {params.out} {params.root} {params.models} --cache-dir {params.cache}"
    + LAUNCH_ARGS
    + " 2> {log}"
)


EVAL_SCORES = [
    f"{EVAL}/{v}/{suite}/{task}.score.json"
    for suite in CFG.eval.suites
    for task in eval_tasks(suite)
    for v in EVAL_VARIANTS
]
