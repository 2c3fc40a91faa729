"""What the workflow runs for a config: every decision of the rule files, as tested functions.

The Snakefile and ``workflow/rules/*.smk`` hold paths, resources, logs and environments; what
depends on the config is decided here, from the typed :class:`~ume.config.Config` and plain
arguments, and returned as paths or lists the rules use as they are:

* which stage's model is evaluated, which Reasoner is final and where EG-RL starts
  (:data:`EMBEDDER_STAGES`, :data:`REASONER_STAGES`: the model folders of a run, newest first);
* which models a stage needs (the annotator for the hf backend, EG-RL's frozen Embedder and
  Discriminator, the evaluation Reasoners of the configured variants);
* the evaluated tasks (``eval.tasks`` by any of a task's names) and the score files;
* which pairs SFT imitates, whether the synthetic benchmark is written, which config sections
  each stage reads (:data:`STAGE_SECTIONS`), job sizes for real backbones or the tiny models.

A stage that is switched off (``sft.enabled``, ``egrl.enabled``) keeps its rule; the plan simply
never asks for its output. A config that asks for something the workflow cannot produce raises
:class:`~ume.errors.ConfigError` naming the key; :func:`check` runs every such decision once, so
the Snakefile stops before building the DAG. Never imports snakemake.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ume.config import Config
from ume.errors import ConfigError
from ume.eval.run import VARIANTS
from ume.suites.registry import find_task
from ume.suites.registry import suites as registered_suites
from ume.suites.registry import tasks as suite_tasks

#: Model roles of the base-model stage (one ``backbone.json`` each).
ROLES: tuple[str, ...] = ("embedder", "reasoner", "discriminator", "annotator")

#: The config sections each stage reads (its config file holds only these), so that editing
#: one stage's keys reruns that stage and what follows, nothing else. Every stage that runs a
#: model on images reads ``budgets`` (one pixel budget for every role).
STAGE_SECTIONS: dict[str, list[str]] = {
    "models": ["seed", "models"],
    "pretrain": ["seed", "models", "pretrain", "budgets"],
    "data": ["seed", "data"],
    "benchmark": ["seed", "data"],
    # every stage that reads pair tables also reads data.on_bad_item (ume/pair_table.py)
    "annotate": ["seed", "data", "models", "annotate", "budgets"],
    "filter": ["seed", "data", "models", "annotate", "filter", "budgets"],
    "split": ["seed", "data", "split"],
    "train_embedder": ["seed", "data", "models", "split", "train_embedder", "budgets"],
    "sft": ["seed", "data", "models", "sft", "budgets"],
    "egrl": ["seed", "data", "models", "egrl", "budgets"],
    "launch": ["launch"],
    "eval": ["seed", "models", "train_embedder", "eval", "budgets"],
    "report": ["run", "results_dir", "models", "train_embedder", "eval"],
}

#: A model's record as built (tiny: random weights) or found (a real backbone), relative to
#: the run folder: what the pretraining stage starts from.
INIT_MODEL = "models/init/{role}/backbone.json"
#: A base model's record (tiny: pretrained; real: passed through), relative to the run folder:
#: what every later stage reads.
BASE_MODEL = "models/base/{role}/backbone.json"

#: Where each stage's Embedder / Reasoner lies in the run folder, newest stage first.
EMBEDDER_STAGES: dict[str, str] = {
    "trained": "models/embedder",
    "base": BASE_MODEL.format(role="embedder"),
}
REASONER_STAGES: dict[str, str] = {
    "egrl": "models/reasoner-rl",
    "sft": "models/reasoner-sft",
    "base": BASE_MODEL.format(role="reasoner"),
}

#: Hours of one evaluation job with real backbones, per suite (an MMEB-V2 / UVRB task is
#: larger than a synthetic one); with the tiny models every job gets EVAL_TINY_MINUTES.
EVAL_REAL_MINUTES: dict[str, int] = {"synth": 240, "mmeb": 480, "uvrb": 480}
EVAL_TINY_MINUTES = 15


# --------------------------------------------------------------------------- paths of a run
def run_dir(cfg: Config) -> str:
    """``<results_dir>/<run>``: every artifact of the run lies under it."""
    return str(cfg.run_dir)


def base_model(cfg: Config, role: str) -> str:
    """The base model record of ``role`` (one of :data:`ROLES`)."""
    if role not in ROLES:
        raise ConfigError(f"unknown model role {role!r}; roles: {', '.join(ROLES)}")
    return f"{run_dir(cfg)}/{BASE_MODEL.format(role=role)}"


def init_model(cfg: Config, role: str) -> str:
    """The record of ``role`` before pretraining (its tokenizer is the base model's)."""
    if role not in ROLES:
        raise ConfigError(f"unknown model role {role!r}; roles: {', '.join(ROLES)}")
    return f"{run_dir(cfg)}/{INIT_MODEL.format(role=role)}"


def embedder_model(cfg: Config, stage: str) -> str:
    """The Embedder of ``stage`` (trained | base)."""
    return f"{run_dir(cfg)}/{EMBEDDER_STAGES[stage]}"


def reasoner_model(cfg: Config, stage: str) -> str:
    """The Reasoner of ``stage`` (egrl | sft | base)."""
    return f"{run_dir(cfg)}/{REASONER_STAGES[stage]}"


def stage_config(cfg: Config, stage: str) -> dict:
    """The resolved config sections ``stage`` reads (:data:`STAGE_SECTIONS`)."""
    if stage not in STAGE_SECTIONS:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_SECTIONS)}")
    return cfg.sections(STAGE_SECTIONS[stage])


# --------------------------------------------------------------------------- job sizes
def real_models(cfg: Config) -> bool:
    """Does the run load a real backbone (some ``models.<role>.source: path``)?"""
    return any(getattr(cfg.models, role).source == "path" for role in ROLES)


def sized(cfg: Config, real: int, tiny: int) -> int:
    """A resource value: ``real`` with real backbones, ``tiny`` for the tiny models (CPU)."""
    return real if real_models(cfg) else tiny


#: The conda environments of the rules (``conda:``, used with ``--sdm conda``), relative to
#: the repository root.
CONDA_ENVS: dict[str, str] = {"cpu": "envs/cpu.yaml", "gpu": "envs/gpu.yaml"}


def conda_env(cfg: Config, kind: str) -> str:
    """The environment of a rule of ``kind``: ``cpu`` (light rules, on the login node) or
    ``gpu`` (launched stages that load models): the GPU environment (CUDA torch, pinned TRL
    and accelerate, flash-attn, DeepSpeed) when the run loads real backbones, whose jobs ask
    for GPUs; the CPU one for the tiny models, whose jobs ask for none."""
    if kind not in CONDA_ENVS:
        raise ConfigError(f"unknown environment kind {kind!r}; kinds: {', '.join(CONDA_ENVS)}")
    return CONDA_ENVS["gpu" if kind == "gpu" and real_models(cfg) else "cpu"]


# --------------------------------------------------------------------------- data
def needs_annotator(cfg: Config) -> bool:
    """The hf backend runs the annotator MLLM, for annotation or for the relevance filter."""
    return "hf" in (cfg.annotate.backend, cfg.filter_backend)


def annotator_model(cfg: Config) -> str | list[str]:
    """The annotator's base model when annotation or the filter needs it, else nothing."""
    return base_model(cfg, "annotator") if needs_annotator(cfg) else []


def annotator_gpus(cfg: Config) -> int:
    """GPUs of the annotate and filter jobs: one for the hf annotator at paper scale."""
    return sized(cfg, 1, 0) if needs_annotator(cfg) else 0


def needs_synth_benchmark(cfg: Config) -> bool:
    """The synthetic benchmark is written when the run trains on it or evaluates on it."""
    return cfg.data.source == "synthetic" or "synth" in cfg.eval.suites


def synth_benchmark_target(cfg: Config, bench: str) -> list[str]:
    """``[bench]`` (the synthetic benchmark folder) when the run needs it, else ``[]``."""
    return [bench] if needs_synth_benchmark(cfg) else []


# --------------------------------------------------------------------------- Reasoner stages
def reasoner_stages(cfg: Config) -> list[str]:
    """The Reasoner stages the switches enable, newest first (base is always there)."""
    on = {"egrl": cfg.egrl.enabled, "sft": cfg.sft.enabled, "base": True}
    return [stage for stage in REASONER_STAGES if on[stage]]


def final_reasoner(cfg: Config) -> str:
    """The run's Reasoner: EG-RL's, else SFT's, else the base one, as the switches say."""
    return reasoner_model(cfg, reasoner_stages(cfg)[0])


def pre_egrl_reasoner(cfg: Config) -> str:
    """The Reasoner before EG-RL: where EG-RL starts, and the no_egrl evaluation variant's."""
    return reasoner_model(cfg, next(s for s in reasoner_stages(cfg) if s != "egrl"))


def sft_pairs(cfg: Config, *, annotated: str, contrastive: str) -> str:
    """The pairs whose T-CoTs SFT imitates (sft.data): every filtered pair, or the contrastive
    split (then the RL pairs stay unseen when split.rule is disjoint)."""
    return annotated if cfg.sft.data == "annotated" else contrastive


def egrl_embedder(cfg: Config) -> str | list[str]:
    """EG-RL's frozen Embedder, the trained one, when a pair-wise reward uses it: its weights
    (local backend), or, with a server backend, its record (what it was trained on, which the
    rewards embed; the weights the server must serve)."""
    g = cfg.egrl
    wanted = g.use_outcome_reward or g.use_process_reward
    return embedder_model(cfg, "trained") if wanted else []


def egrl_discriminator(cfg: Config) -> str | list[str]:
    """EG-RL's frozen Discriminator (the base one), when a local one serves the process reward."""
    g = cfg.egrl
    wanted = g.discriminator_backend == "local" and g.use_process_reward
    return base_model(cfg, "discriminator") if wanted else []


# --------------------------------------------------------------------------- evaluation
def eval_embedder(cfg: Config) -> str:
    """The evaluated Embedder (eval.embedder_stage; auto: the trained one, which every run
    trains)."""
    stage = cfg.eval.embedder_stage
    return embedder_model(cfg, "trained" if stage == "auto" else stage)


def eval_needs_reasoner(cfg: Config, role: str) -> bool:
    """Does a configured variant take T-CoTs from the Reasoner ``role`` (main | no_egrl),
    loaded from a model folder (eval.reasoner_backend: hf)? A variant whose Embedder input is
    raw writes no T-CoT."""
    main_mode = cfg.train_embedder.tcot_input
    return cfg.eval.reasoner_backend == "hf" and any(
        VARIANTS[v].reasoner == role and (VARIANTS[v].mode or main_mode) != "raw"
        for v in cfg.eval.variants
    )


def eval_reasoner(cfg: Config) -> str | list[str]:
    """The main variant's Reasoner (eval.reasoner_stage; auto: the final one), when needed.

    A named stage that the switches turn off (egrl or sft with its ``enabled: false``) is a
    ConfigError: the workflow would not produce it."""
    if not eval_needs_reasoner(cfg, "main"):
        return []
    stage = cfg.eval.reasoner_stage
    if stage == "auto":
        return final_reasoner(cfg)
    if stage not in reasoner_stages(cfg):
        raise ConfigError(
            f"eval.reasoner_stage: {stage!r}, but {stage}.enabled is false, so the run has no "
            f"{stage} Reasoner; use auto (the newest enabled stage), another stage, or set "
            f"{stage}.enabled: true"
        )
    return reasoner_model(cfg, stage)


def eval_generates_tcots(cfg: Config) -> bool:
    """Does some configured variant have a Reasoner write T-CoTs (with either backend)? Then
    eval.max_new_tokens is checked against the annotated T-CoT lengths."""
    main_mode = cfg.train_embedder.tcot_input
    return any(
        VARIANTS[v].reasoner not in (None, "oracle") and (VARIANTS[v].mode or main_mode) != "raw"
        for v in cfg.eval.variants
    )


def eval_tcot_lengths(cfg: Config, lengths: str) -> str | list[str]:
    """``lengths`` (the annotated T-CoT lengths) when a variant generates T-CoTs, else nothing."""
    return lengths if eval_generates_tcots(cfg) else []


def eval_reasoner_no_egrl(cfg: Config) -> str | list[str]:
    """The no_egrl variant's Reasoner (the one before EG-RL), when that variant needs it."""
    return pre_egrl_reasoner(cfg) if eval_needs_reasoner(cfg, "no_egrl") else []


def selected_tasks(cfg: Config) -> set[str] | None:
    """eval.tasks as canonical task names (any of a task's names accepted); None: every task."""
    if cfg.eval.tasks is None:
        return None
    chosen: set[str] = set()
    for name in cfg.eval.tasks:
        specs = [find_task(suite, name) for suite in cfg.eval.suites]
        found = {s.name for s in specs if s is not None}
        if not found:
            raise ConfigError(
                f"eval.tasks: unknown task {name!r} in the suites {list(cfg.eval.suites)}; "
                "the names are in ume/suites/registry.py (a task's scoring name, data name "
                "or alias), or add its suite to eval.suites"
            )
        chosen |= found
    return chosen


def eval_tasks(cfg: Config, suite: str) -> list[str]:
    """Task names of ``suite`` in the benchmark's order, restricted to eval.tasks when set."""
    chosen = selected_tasks(cfg)
    return [s.name for s in suite_tasks(suite) if chosen is None or s.name in chosen]


def suite_constraint() -> str:
    """Regex of the ``{suite}`` wildcard of the evaluation rule: every registered suite."""
    return "|".join(re.escape(s) for s in registered_suites())


def task_constraint(cfg: Config) -> str:
    """Regex of the ``{task}`` wildcard: every evaluated task of any suite ('^$': none)."""
    names = dict.fromkeys(n for suite in registered_suites() for n in eval_tasks(cfg, suite))
    return "|".join(re.escape(n) for n in names) or "^$"


def eval_scores(cfg: Config, pattern: str) -> list[str]:
    """The score files of the run: ``pattern`` (with ``{variant}``, ``{suite}``, ``{task}``)
    for every task of eval.suites (restricted to eval.tasks) and every variant."""
    return [
        pattern.format(variant=v, suite=suite, task=task)
        for suite in cfg.eval.suites
        for task in eval_tasks(cfg, suite)
        for v in cfg.eval.variants
    ]


def eval_suite_data(cfg: Config, suite: str, task: str, synth_bench: str) -> str | list[str]:
    """What an evaluation job of ``suite`` reads from the workflow: the synthetic benchmark
    folder ``synth_bench`` for the synthetic suite; nothing for MMEB-V2 and UVRB (their data
    lie under eval.mmeb_root / eval.uvrb_root). ``task`` must be an evaluated task of it."""
    if task not in eval_tasks(cfg, suite):
        raise ConfigError(
            f"no evaluation job for task {task!r} of suite {suite!r}: it is not one of the "
            "suite's tasks (ume/suites/registry.py) or eval.tasks leaves it out"
        )
    return synth_bench if suite == "synth" else []


def eval_runtime(cfg: Config, suite: str) -> int:
    """Minutes of one evaluation job of ``suite``."""
    return sized(cfg, EVAL_REAL_MINUTES[suite], EVAL_TINY_MINUTES)


def leaderboard_suites(cfg: Config) -> list[str]:
    """The evaluated suites, then MMEB-V2 and UVRB (their published tables) if not evaluated."""
    return list(dict.fromkeys([*cfg.eval.suites, "mmeb", "uvrb"]))


def leaderboard_tables(cfg: Config) -> list[tuple[str, str]]:
    """The leaderboard's CSV tables as (suite, kind): per-category and per-task of each suite."""
    return [(suite, kind) for suite in leaderboard_suites(cfg) for kind in ("categories", "tasks")]


# --------------------------------------------------------------------------- checks, commands
def tcot_limits(cfg: Config) -> dict[str, int]:
    """The token limits of every T-CoT the run's Embedder reads (config key -> tokens): the
    annotator's (training), EG-RL's rollouts, the evaluation Reasoner's; none when the
    Embedder reads raw inputs."""
    if cfg.train_embedder.tcot_input == "raw":
        return {}
    limits = {"eval.max_new_tokens": cfg.eval.max_new_tokens}
    g = cfg.egrl
    if g.enabled and (g.use_outcome_reward or g.use_process_reward):
        limits["egrl.max_completion_length"] = g.max_completion_length
    if cfg.annotate.backend == "hf":
        limits["annotate.hf.max_new_tokens"] = cfg.annotate.hf.max_new_tokens
    elif cfg.annotate.backend == "server":
        limits["annotate.server.max_tokens"] = cfg.annotate.server.max_tokens
    return limits


def check(cfg: Config) -> None:
    """Take every decision that a config can make impossible, so that a bad one stops the
    workflow before its DAG is built (raises ConfigError naming the key)."""
    from ume.inputs import PixelBudget, check_tcot_fits

    selected_tasks(cfg)
    eval_reasoner(cfg)
    eval_reasoner_no_egrl(cfg)
    # the Embedder's token limit must hold the longest T-CoT whole (visuals give way)
    check_tcot_fits(
        cfg.train_embedder.max_length, tcot_limits(cfg), PixelBudget.from_config(cfg.budgets)
    )


def cli_args(**paths: str | Sequence[str]) -> str:
    """``--name path`` for each given path, in order; empty ones (a model the stage does not
    need) are left out. Underscores of a name become dashes (``reasoner_no_egrl``)."""
    return " ".join(f"--{name.replace('_', '-')} {path}" for name, path in paths.items() if path)
