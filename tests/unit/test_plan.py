"""The workflow's decisions (ume.plan): tables of configs -> the paths, lists and errors the
rule files use. The DAG itself is exercised by tests/workflow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ume import plan
from ume.config import config_from_dict, load_config
from ume.errors import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
RUN = "results/default"
BASE_R = f"{RUN}/models/base/reasoner/backbone.json"
SFT_R = f"{RUN}/models/reasoner-sft"
RL_R = f"{RUN}/models/reasoner-rl"
TRAINED_E = f"{RUN}/models/embedder"
BASE_E = f"{RUN}/models/base/embedder/backbone.json"
BASE_D = f"{RUN}/models/base/discriminator/backbone.json"
BASE_A = f"{RUN}/models/base/annotator/backbone.json"
REAL = {"source": "path", "path": "/models/Qwen3-VL-2B-Instruct"}


LOCAL_D = {"egrl.discriminator_backend": "local"}
NO_NO_EGRL = {"eval.variants": ["main", "raw", "answer_only", "no_evidence"]}


def cfg(**dotted):
    """A config from dotted keys: cfg(**{"sft.enabled": False})."""
    data: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return config_from_dict(data)


def off(sft=True, egrl=True, **more):
    return cfg(**{"sft.enabled": sft, "egrl.enabled": egrl}, **more)


# --------------------------------------------------------------------------- paths, sizes
def test_run_folder_and_model_layout():
    c = cfg(**{"run": "abl", "results_dir": "/scratch/res"})
    assert plan.run_dir(c) == "/scratch/res/abl"
    assert plan.base_model(c, "annotator") == "/scratch/res/abl/models/base/annotator/backbone.json"
    assert plan.reasoner_model(c, "sft") == "/scratch/res/abl/models/reasoner-sft"
    assert plan.embedder_model(c, "trained") == "/scratch/res/abl/models/embedder"
    with pytest.raises(ConfigError, match="unknown model role 'critic'"):
        plan.base_model(c, "critic")


@pytest.mark.parametrize(
    "models, real",
    [
        ({}, False),
        ({"models.embedder": REAL}, True),
        ({"models.annotator": REAL}, True),
    ],
)
def test_job_sizes_follow_real_backbones(models, real):
    c = cfg(**models)
    assert plan.real_models(c) is real
    assert plan.sized(c, 8, 0) == (8 if real else 0)


@pytest.mark.parametrize("stage", sorted(plan.STAGE_SECTIONS))
def test_stage_config_holds_only_its_sections(stage):
    assert list(plan.stage_config(cfg(), stage)) == plan.STAGE_SECTIONS[stage]


def test_unknown_stage_config_is_named():
    with pytest.raises(ConfigError, match="unknown stage 'reward'"):
        plan.stage_config(cfg(), "reward")


# --------------------------------------------------------------------------- data stages
@pytest.mark.parametrize(
    "keys, model, gpus_tiny, gpus_real",
    [
        ({}, [], 0, 0),  # oracle annotates and judges
        ({"annotate.backend": "hf"}, BASE_A, 0, 1),  # filter 'same' judges with hf too
        ({"filter.backend": "hf"}, BASE_A, 0, 1),  # only the filter runs the MLLM
        ({"annotate.backend": "hf", "filter.backend": "oracle"}, BASE_A, 0, 1),
        (
            {
                "annotate.backend": "server",
                "annotate.server.url": "http://h:8000/v1",
                "annotate.server.model": "m",
            },
            [],
            0,
            0,
        ),
    ],
)
def test_annotator_model_and_gpus(keys, model, gpus_tiny, gpus_real):
    assert plan.annotator_model(cfg(**keys)) == model
    assert plan.annotator_gpus(cfg(**keys)) == gpus_tiny
    assert plan.annotator_gpus(cfg(**keys, **{"models.annotator": REAL})) == gpus_real


@pytest.mark.parametrize(
    "source, suites, needed",
    [
        ("synthetic", ["synth"], True),
        ("synthetic", ["mmeb", "uvrb"], True),  # trains on it
        ("real", ["synth", "mmeb"], True),  # evaluates on it
        ("real", ["mmeb", "uvrb"], False),  # paper scale
    ],
)
def test_synthetic_benchmark_is_written_when_trained_or_evaluated_on(source, suites, needed):
    real = {"mmeb_train_root": "/data/x", "datasets": {"ImageNet_1K": {"weight": 1, "cap": 9}}}
    keys = {"data.source": source, "eval.suites": suites}
    real_keys = {"data.real": real, "egrl.discriminator_backend": "local"}
    c = cfg(**keys, **(real_keys if source == "real" else {}))
    assert plan.needs_synth_benchmark(c) is needed
    assert plan.synth_benchmark_target(c, "B") == (["B"] if needed else [])


@pytest.mark.parametrize("data, chosen", [("contrastive", "C"), ("annotated", "A")])
def test_sft_pair_source(data, chosen):
    assert plan.sft_pairs(cfg(**{"sft.data": data}), annotated="A", contrastive="C") == chosen


# --------------------------------------------------------------------------- Reasoner stages
@pytest.mark.parametrize(
    "sft, egrl, stages, final, start",
    [
        (True, True, ["egrl", "sft", "base"], RL_R, SFT_R),
        (False, True, ["egrl", "base"], RL_R, BASE_R),  # ablations/no_sft.yaml
        (True, False, ["sft", "base"], SFT_R, SFT_R),  # ablations/no_egrl.yaml
        (False, False, ["base"], BASE_R, BASE_R),
    ],
)
def test_final_reasoner_and_egrl_start_follow_the_switches(sft, egrl, stages, final, start):
    c = off(sft, egrl)
    assert plan.reasoner_stages(c) == stages
    assert plan.final_reasoner(c) == final
    assert plan.pre_egrl_reasoner(c) == start


@pytest.mark.parametrize(
    "keys, embedder, discriminator",
    [
        ({}, TRAINED_E, []),  # the embedded default's oracle Discriminator is no model
        ({"egrl.discriminator_backend": "local"}, TRAINED_E, BASE_D),
        ({"egrl.use_process_reward": False, **LOCAL_D}, TRAINED_E, []),
        ({"egrl.use_outcome_reward": False, **LOCAL_D}, TRAINED_E, BASE_D),  # uses both
        ({"egrl.use_outcome_reward": False, "egrl.use_process_reward": False}, [], []),
        (
            {
                "egrl.embedder_backend": "server",
                "egrl.embedder_server": {"url": "http://h:1/v1", "model": "e"},
                **LOCAL_D,
            },
            TRAINED_E,  # its record: what it was trained on, what the server must serve
            BASE_D,
        ),
        (
            {
                "egrl.discriminator_backend": "server",
                "egrl.discriminator_server": {"url": "http://h:2/v1", "model": "d"},
            },
            TRAINED_E,
            [],
        ),
    ],
)
def test_egrl_frozen_models(keys, embedder, discriminator):
    c = cfg(**keys)
    assert plan.egrl_embedder(c) == embedder
    assert plan.egrl_discriminator(c) == discriminator


# --------------------------------------------------------------------------- evaluation models
@pytest.mark.parametrize(
    "stage, path", [("auto", TRAINED_E), ("trained", TRAINED_E), ("base", BASE_E)]
)
def test_eval_embedder(stage, path):
    assert plan.eval_embedder(cfg(**{"eval.embedder_stage": stage})) == path


@pytest.mark.parametrize(
    "keys, main, no_egrl",
    [
        ({}, RL_R, SFT_R),  # default variants: no_egrl among them
        ({"eval.variants": ["main", "raw"]}, RL_R, []),
        ({"eval.variants": ["main", "no_egrl"]}, RL_R, SFT_R),
        ({"eval.variants": ["raw"]}, [], []),  # no variant writes T-CoTs
        ({"eval.variants": ["answer_only"]}, RL_R, []),  # main's Reasoner, other input
        ({"eval.variants": ["main", "no_egrl"], "train_embedder.tcot_input": "raw"}, [], []),
        ({"eval.variants": ["main", "no_egrl"], "sft.enabled": False}, RL_R, BASE_R),
        ({"eval.variants": ["main", "no_egrl"], "egrl.enabled": False}, SFT_R, SFT_R),
        ({"eval.reasoner_stage": "sft", **NO_NO_EGRL}, SFT_R, []),
        ({"eval.reasoner_stage": "base", **NO_NO_EGRL}, BASE_R, []),
        ({"eval.reasoner_stage": "egrl", "sft.enabled": False, **NO_NO_EGRL}, RL_R, []),
        ({"eval.reasoner_stage": "egrl", "egrl.enabled": False, "eval.variants": ["raw"]}, [], []),
        (
            {
                "eval.reasoner_backend": "server",
                "eval.server": {"url": "http://h:8000/v1", "model": "m"},
                "eval.variants": ["main", "no_egrl"],
            },
            [],
            [],
        ),
    ],
)
def test_eval_reasoners(keys, main, no_egrl):
    c = cfg(**keys)
    assert plan.eval_reasoner(c) == main
    assert plan.eval_reasoner_no_egrl(c) == no_egrl
    plan.check(c)


@pytest.mark.parametrize("stage", ["egrl", "sft"])
def test_evaluating_a_stage_that_is_switched_off_is_named(stage):
    c = cfg(**{"eval.reasoner_stage": stage, f"{stage}.enabled": False})
    with pytest.raises(ConfigError, match=f"eval.reasoner_stage: '{stage}'.*{stage}.enabled"):
        plan.eval_reasoner(c)
    with pytest.raises(ConfigError):
        plan.check(c)


# --------------------------------------------------------------------------- evaluated tasks
def test_every_task_by_default():
    c = cfg()
    assert plan.selected_tasks(c) is None
    synth = plan.eval_tasks(c, "synth")
    assert len(synth) == 16 and synth[0] == "SynthCLS"
    assert len(plan.eval_tasks(c, "mmeb")) == 78 and len(plan.eval_tasks(c, "uvrb")) == 16


@pytest.mark.parametrize(
    "suites, tasks, selected",
    [
        (["synth"], ["SynthT2I", "SynthCLS"], {"SynthT2I", "SynthCLS"}),
        (["mmeb"], ["Kinetics-700"], {"K700"}),  # a data name -> the scoring name
        (["mmeb", "uvrb"], ["DiDeMo"], {"DiDeMo"}),  # a name of both suites: both tasks
        (["synth", "mmeb"], ["SynthCLS", "MSCOCO_i2t"], {"SynthCLS", "MSCOCO_i2t"}),
    ],
)
def test_selected_tasks_accept_any_name(suites, tasks, selected):
    c = cfg(**{"eval.suites": suites, "eval.tasks": tasks})
    assert plan.selected_tasks(c) == selected
    chosen = {t for s in suites for t in plan.eval_tasks(c, s)}
    assert chosen == selected


@pytest.mark.parametrize(
    "suites, tasks, unknown",
    [
        (["synth"], ["SynthT2I", "NoSuchTask"], "NoSuchTask"),
        (["synth"], ["MSCOCO_i2t"], "MSCOCO_i2t"),  # an MMEB task, mmeb not evaluated
    ],
)
def test_unknown_task_is_named_with_the_suites(suites, tasks, unknown):
    c = cfg(**{"eval.suites": suites, "eval.tasks": tasks})
    with pytest.raises(ConfigError, match=rf"eval.tasks: unknown task '{unknown}' in the suites"):
        plan.selected_tasks(c)
    with pytest.raises(ConfigError, match=r"eval\.tasks"):
        plan.check(c)


def test_task_wildcard_matches_the_evaluated_tasks_only():
    c = cfg(**{"eval.suites": ["synth", "mmeb"], "eval.tasks": ["SynthCLS", "K700"]})
    rx = re.compile(f"(?:{plan.task_constraint(c)})")
    assert rx.fullmatch("SynthCLS") and rx.fullmatch("K700")
    assert not rx.fullmatch("SynthT2I") and not rx.fullmatch("Kinetics-700")
    assert re.fullmatch(plan.suite_constraint(), "uvrb")
    nothing = cfg(**{"eval.tasks": []})
    assert plan.task_constraint(nothing) == "^$"


def test_score_files_per_suite_task_and_variant():
    c = cfg(
        **{
            "eval.suites": ["synth", "mmeb"],
            "eval.tasks": ["SynthCLS", "MSCOCO_i2t"],
            "eval.variants": ["main", "raw"],
        }
    )
    assert plan.eval_scores(c, "E/{variant}/{suite}/{task}.score.json") == [
        "E/main/synth/SynthCLS.score.json",
        "E/raw/synth/SynthCLS.score.json",
        "E/main/mmeb/MSCOCO_i2t.score.json",
        "E/raw/mmeb/MSCOCO_i2t.score.json",
    ]
    assert len(plan.eval_scores(cfg(), "{variant}{suite}{task}")) == 16 * 7


@pytest.mark.parametrize(
    "suite, task, data",
    [("synth", "SynthCLS", "B"), ("mmeb", "MSCOCO_i2t", []), ("uvrb", "DiDeMo", [])],
)
def test_suite_data_of_an_eval_job(suite, task, data):
    c = cfg(**{"eval.suites": ["synth", "mmeb", "uvrb"]})
    assert plan.eval_suite_data(c, suite, task, "B") == data


@pytest.mark.parametrize(
    "suite, task", [("mmeb", "SynthCLS"), ("synth", "MSCOCO_i2t"), ("synth", "SynthT2I")]
)
def test_no_eval_job_for_a_task_outside_its_suite_or_the_selection(suite, task):
    c = cfg(**{"eval.suites": ["synth", "mmeb"], "eval.tasks": ["SynthCLS", "MSCOCO_i2t"]})
    with pytest.raises(ConfigError, match=f"task '{task}' of suite '{suite}'"):
        plan.eval_suite_data(c, suite, task, "B")


@pytest.mark.parametrize(
    "suite, tiny, real", [("synth", 15, 240), ("mmeb", 15, 480), ("uvrb", 15, 480)]
)
def test_eval_runtime_per_suite(suite, tiny, real):
    assert plan.eval_runtime(cfg(), suite) == tiny
    assert plan.eval_runtime(cfg(**{"models.reasoner": REAL}), suite) == real


@pytest.mark.parametrize(
    "suites, board",
    [
        (["synth"], ["synth", "mmeb", "uvrb"]),
        (["uvrb", "mmeb"], ["uvrb", "mmeb"]),
        (["mmeb", "synth"], ["mmeb", "synth", "uvrb"]),
    ],
)
def test_leaderboard_suites(suites, board):
    c = cfg(**{"eval.suites": suites})
    assert plan.leaderboard_suites(c) == board
    tables = plan.leaderboard_tables(c)
    assert tables[:2] == [(board[0], "categories"), (board[0], "tasks")]
    assert len(tables) == 2 * len(board)


# --------------------------------------------------------------------------- commands, checks
def test_cli_args_leave_out_models_a_stage_does_not_need():
    assert plan.cli_args(reasoner="R", embedder=[], reasoner_no_egrl="N") == (
        "--reasoner R --reasoner-no-egrl N"
    )
    assert plan.cli_args(annotator=[]) == ""


SHIPPED = [
    ["config/config.yaml"],
    ["config/config.yaml", "config/paper.yaml"],
    *(
        ["config/config.yaml", str(p.relative_to(REPO))]
        for p in (REPO / "config/ablations").glob("*.yaml")
    ),
]


@pytest.mark.parametrize("files", SHIPPED, ids=lambda f: Path(f[-1]).stem)
def test_every_shipped_config_passes_the_plan(files):
    c = load_config(*(REPO / f for f in files))
    plan.check(c)
    assert plan.final_reasoner(c).startswith(plan.run_dir(c))
