# Paths and commands of the evaluation rules (eval.smk); which models and tasks: ume/plan.py.
import re
from pathlib import Path

EVAL = f"{R}/eval"
EVAL_KINDS = ["score.json", "pred.jsonl", "cost.json"]
EVAL_CACHE = CFG.eval_cache_dir
EVAL_EMBEDDER = plan.eval_embedder(CFG)
EVAL_REASONER = plan.eval_reasoner(CFG)
EVAL_REASONER_NO_EGRL = plan.eval_reasoner_no_egrl(CFG)


def task_constraint(suite):
    return "|".join(map(re.escape, plan.eval_tasks(CFG, suite))) or "^$"


def eval_outputs(suite):
    pattern = f"{EVAL}/{{variant}}/{suite}/{{{{task}}}}.{{kind}}"
    return expand(pattern, variant=CFG.eval.variants, kind=EVAL_KINDS)


def eval_model_args(wildcards, input):
    return plan.cli_args(
        embedder=input.embedder,
        reasoner=input.reasoner,
        reasoner_no_egrl=input.reasoner_no_egrl,
    )


EVAL_SHELL = (
    "python -m ume eval --config {input.config} --suite {params.suite} --task {wildcards.task}"
    " --out-dir {params.out} {params.root} {params.models} --cache-dir {params.cache}"
    + LAUNCH_ARGS
    + " 2> {log}"
)
EVAL_SCORES = plan.eval_scores(CFG, f"{EVAL}/{{variant}}/{{suite}}/{{task}}.score.json")
