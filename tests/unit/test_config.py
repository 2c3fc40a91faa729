"""Every shipped config loads; one source for each default; overlays state only what differs;
bad keys and values stop with one line per problem naming the key and how to fix it."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from ume.config import (
    EGRL_PRESETS,
    Config,
    EGRLConfig,
    LoraConfig,
    SourceDatasetConfig,
    TinyModelConfig,
    config_from_dict,
    json_schema,
    load_config,
    schema_text,
)
from ume.errors import ConfigError

pytestmark = pytest.mark.unit


def shipped_configs(repo):
    return sorted((repo / "config").rglob("*.yaml"))


def ablations(repo):
    return sorted((repo / "config/ablations").glob("*.yaml"))


def leaves(d, prefix=""):
    """Dotted key -> value of a nested mapping (a mapping of datasets is a leaf)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key not in ("data.real.datasets", "split.rl_counts"):
            out.update(leaves(v, key + "."))
        else:
            out[key] = v
    return out


def test_every_shipped_config_loads_on_top_of_the_default_and_of_paper(repo):
    files = shipped_configs(repo)
    assert any(f.name == "paper.yaml" for f in files)
    base, paper = repo / "config/config.yaml", repo / "config/paper.yaml"
    for f in files:
        cfg = load_config(base, f) if f != base else load_config(base)
        assert isinstance(cfg, Config)
        # and each passes the generated JSON schema that editors use
        jsonschema.validate(yaml.safe_load(f.read_text()), json_schema())
    for f in ablations(repo):
        assert load_config(base, paper, f).run == yaml.safe_load(f.read_text())["run"]


def test_the_models_defaults_are_the_embedded_default(repo):
    # config/config.yaml names the run and nothing else: every default lives in ume/config.py
    assert yaml.safe_load((repo / "config/config.yaml").read_text()) == {"run": "default"}
    assert load_config(repo / "config/config.yaml") == config_from_dict({}) == Config()
    cfg = Config()
    assert (cfg.train_embedder.global_batch_size, cfg.train_embedder.max_steps) == (32, 100)
    assert (cfg.sft.lora.enabled, cfg.egrl.lora.enabled, cfg.models.annotator.family) == (
        False,
        False,
        "qwen2_vl",
    )


def test_overlays_hold_only_what_differs(repo):
    base = load_config(repo / "config/config.yaml").to_dict()
    paper = load_config(repo / "config/config.yaml", repo / "config/paper.yaml").to_dict()
    flat_base, flat_paper = leaves(base), leaves(paper)
    for key, value in leaves(yaml.safe_load((repo / "config/paper.yaml").read_text())).items():
        assert flat_base[key] != value, f"paper.yaml: {key} restates the default {value!r}"
    for f in ablations(repo):  # an ablation is layered on either
        for key, value in leaves(yaml.safe_load(f.read_text())).items():
            assert value != flat_base[key] or value != flat_paper[key], f"{f.name}: {key}"


def test_paper_preset_carries_the_method_hyperparameters(repo):
    cfg = load_config(repo / "config/config.yaml", repo / "config/paper.yaml")
    assert cfg.models.embedder.source == "path" and "Qwen3-VL-2B" in cfg.models.embedder.path
    assert "Qwen3-VL-8B" in cfg.models.reasoner.path
    t = cfg.train_embedder
    assert (t.temperature, t.global_batch_size, t.learning_rate, t.warmup_steps) == (
        0.02,
        512,
        1e-4,
        10,
    )
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (64, 128, 0.05)
    g = cfg.egrl
    assert (g.num_generations, g.epsilon, g.beta, g.learning_rate) == (8, 0.2, 0.01, 3e-6)
    assert (g.format_weight, g.process_weight, g.outcome_weight) == (0.05, 0.8, 0.2)
    assert g.max_completion_length == 2048
    # few-class sets stay out of contrastive training: N24News is loaded for RL only, and
    # HatefulMemes / VOC2007 feed nothing, so they are not loaded at all
    assert cfg.split.exclude_from_contrastive == ["N24News"]
    assert not {"HatefulMemes", "VOC2007"} & set(cfg.data.real.datasets)
    # the RL set of Table 6: 13 datasets, 19,000 pairs, 1k-2k each, drawn equidistantly
    s = cfg.split
    assert s.rl_rule == "equidistant" and len(s.rl_counts) == 13
    assert sum(s.rl_counts.values()) == 19000
    assert all(1000 <= n <= 2000 for n in s.rl_counts.values())
    assert set(s.rl_counts) <= set(cfg.data.real.datasets)
    # pixel budgets (method.md: image 128..768, video 128..300 per frame, x 32x32 px)
    b = cfg.budgets
    assert (b.image_min_tokens, b.image_max_tokens) == (128, 768)
    assert (b.video_min_tokens, b.video_max_tokens) == (128, 300)
    # the frozen reward models as servers, a DeepSpeed config for each training stage
    assert (g.embedder_backend, g.discriminator_backend) == ("server", "server")
    assert all(x.deepspeed for x in (t, cfg.sft, g))
    # the served Reasoner's name (the cache identity) names this run, not another model
    assert cfg.run in cfg.eval.server.model and "4B" not in cfg.eval.server.model


def test_every_key_of_the_shipped_yaml_is_commented(repo):
    for f in shipped_configs(repo):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#") or s.startswith("- "):
                continue
            if ":" in s:
                assert "#" in line, f"{f.name}:{n}: key without a comment: {s}"


def test_schema_file_is_current(repo):
    assert (repo / "workflow/schemas/config.schema.json").read_text() == schema_text()


def test_schema_has_descriptions_defaults_ranges_and_requirements():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    leaf = props["data"]["properties"]["synthetic"]["properties"]["image_size"]
    assert leaf["default"] == 96 and leaf["description"] and leaf["minimum"] == 1
    assert props["annotate"]["properties"]["backend"]["enum"] == ["oracle", "hf", "server"]
    lora = props["train_embedder"]["properties"]["lora"]["properties"]
    assert lora["dropout"] == {
        "default": 0.05,
        "description": "LoRA dropout",
        "minimum": 0,
        "exclusiveMaximum": 1,
        "type": "number",
    }
    assert "paper: 64" in lora["r"]["description"]
    # a place whose defaults differ from its class's says so
    assert props["sft"]["properties"]["lora"]["default"]["enabled"] is False
    # a preset-dependent key has no fixed default: the description names the presets' values
    pw = props["egrl"]["properties"]["process_weight"]
    assert "default" not in pw and "paper 0.8, release 0.2" in pw["description"]
    # a key required by a choice is in the schema, so editors flag it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"annotate": {"backend": "server"}}, schema)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {"annotate": {"backend": "gpt"}},
            "annotate.backend: 'gpt' is not allowed; allowed values: 'oracle', 'hf', 'server'",
        ),
        (
            {"data": {"synthetic": {"image_sise": 3}}},
            "data.synthetic.image_sise: unknown key; allowed keys here:",
        ),
        ({"data": {"synthetic": {"image_sise": 3}}}, "(did you mean 'image_size'?)"),
        (
            {"data": {"synthetic": {"image_size": "big"}}},
            "data.synthetic.image_size: expected an integer, got 'big'",
        ),
        # no silent coercion: "3" is text, 1.5 is not an integer
        ({"sft": {"batch_size": "3"}}, "sft.batch_size: expected an integer, got '3'"),
        ({"sft": {"batch_size": 1.5}}, "sft.batch_size: expected an integer, got 1.5"),
        (
            {"sft": {"learning_rate": "1e-4"}},
            "sft.learning_rate: expected a number, got '1e-4'; YAML reads",
        ),
        (
            {"annotate": {"oracle": {"wrong_evidence_rate": 1.5}}},
            "annotate.oracle.wrong_evidence_rate: must lie in [0, 1], got 1.5",
        ),
        (
            {"models": {"embedder": {"source": "path"}}},
            "models.embedder.path: required when models.embedder.source is 'path', got null",
        ),
        (
            {"models": {"reasoner": {"source": "path", "path": "Qwen/Qwen3-VL-8B-Instruct"}}},
            "looks like a hub id",
        ),
        (
            {"split": {"rule": "random"}},
            "split.rule: 'random' is not allowed; allowed values: 'disjoint', 'overlap'",
        ),
        ({"run": "a b"}, "run: 'a b'"),
        ({"filter": {"enabled": "yes"}}, "filter.enabled: expected true or false"),
        ({"split": {"rl_per_dataset": -1}}, "split.rl_per_dataset: must be 0 or more"),
        (
            {"data": {"real": {"datasets": {"VOC2007": {"weight": -1.0}}}}},
            "data.real.datasets.VOC2007.weight: must be 0 or more",
        ),
        (
            {"budgets": {"image_min_tokens": 900, "image_max_tokens": 768}},
            "budgets.image_min_tokens: 900 is above image_max_tokens (768)",
        ),
        (
            {"eval": {"image_min_tokens": 128}},
            "eval.image_min_tokens: moved to budgets.image_min_tokens",
        ),
        (
            {"egrl": {"per_device_batch_size": 8}},
            "egrl.per_device_batch_size: renamed pairs_per_device",
        ),
        (
            {"egrl": {"pairs_per_device": 3, "micro_batch_groups": 4}},
            "egrl.micro_batch_groups: 4 does not divide the 6 prompt groups",
        ),
        (
            {"split": {"rule": "overlap", "rl_rule": "hard_examples"}},
            "split.rule: 'overlap' keeps RL pairs drawn from the kept pairs",
        ),
        (
            {"egrl": {"pairs_per_device": 1}},
            "egrl.pairs_per_device: the outcome and process rewards compare",
        ),
        ({"models": {"embedder": {"path": "Qwen/Qwen3-VL-2B"}}}, "looks like a hub id"),
        # issue 14: values that used to pass validation and crash later
        ({"sft": {"batch_size": -2}}, "sft.batch_size: must be at least 1, got -2"),
        ({"annotate": {"hf": {"batch_size": 0}}}, "annotate.hf.batch_size: must be at least 1"),
        ({"train_embedder": {"lora": {"r": 0}}}, "train_embedder.lora.r: must be at least 1"),
        ({"egrl": {"embed_batch_size": 0}}, "egrl.embed_batch_size: must be at least 1"),
        ({"sft": {"max_steps": 0}}, "sft.max_steps: must be at least 1 (or null), got 0"),
        ({"eval": {"ks": [1, 0]}}, "eval.ks[1]: must be at least 1, got 0"),
        (
            {"eval": {"suites": []}},
            "eval.suites: must not be empty, got []; name at least one of 'synth', 'mmeb', 'uvrb'",
        ),
        (
            {"annotate": {"backend": "server"}},
            "annotate.server.url: required when annotate.backend is 'server', got null; give",
        ),
        (
            {"annotate": {"backend": "server", "server": {"url": "http://h:1/v1"}}},
            "annotate.server.model: required when annotate.backend is 'server'",
        ),
        (
            {"models": {"tiny": {"hidden_size": 60, "num_heads": 8}}},
            "models.tiny.num_heads: 8 does not divide hidden_size (60)",
        ),
        (
            {"data": {"source": "real"}},
            "data.real.datasets: required when data.source is 'real', got {}",
        ),
        ({"egrl": {"preset": "paper_v2"}}, "egrl.preset: 'paper_v2' is not allowed"),
        ({"data": 3}, "data: expected a mapping of keys, got 3"),
    ],
)
def test_bad_values_name_key_and_choices(data, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert needle in str(e.value)


def test_every_problem_is_reported_on_its_own_line():
    with pytest.raises(ConfigError) as e:
        config_from_dict(
            {"sft": {"batch_size": 0, "max_steps": 0}, "eval": {"suites": ["x"]}, "nope": 1}
        )
    lines = str(e.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "sft.max_steps",
        "sft.batch_size",
        "eval.suites[0]",
        "nope",
    ]


def test_direct_construction_is_checked_and_names_the_key():
    with pytest.raises(ConfigError, match=r"^models\.tiny\.num_heads: 8 does not divide"):
        TinyModelConfig(hidden_size=60, num_heads=8)
    with pytest.raises(ConfigError, match=r"^LoraConfig\.r: must be at least 1"):
        LoraConfig(r=0)  # used in three places: named by its class
    with pytest.raises(ConfigError, match=r"data\.real\.datasets\.<name>\.cap: must be 0 or more"):
        SourceDatasetConfig(cap=-1)
    assert EGRLConfig(epochs=3).epochs == 3.0 and isinstance(EGRLConfig(epochs=3).epochs, float)


def test_a_place_keeps_its_own_defaults_when_some_keys_are_given():
    cfg = config_from_dict(
        {"sft": {"lora": {"r": 4}}, "models": {"annotator": {"dtype": "bfloat16"}}}
    )
    assert (cfg.sft.lora.enabled, cfg.sft.lora.r) == (False, 4)
    assert (cfg.models.annotator.family, cfg.models.annotator.dtype) == ("qwen2_vl", "bfloat16")
    assert config_from_dict({"sft": {"lora": {"enabled": True}}}).sft.lora.enabled is True


def test_egrl_preset_is_a_layer(repo):
    release = config_from_dict({"egrl": {"preset": "release"}}).egrl
    assert {k: getattr(release, k) for k in EGRL_PRESETS["release"]} == EGRL_PRESETS["release"]
    paper = config_from_dict({}).egrl
    assert {k: getattr(paper, k) for k in EGRL_PRESETS["paper"]} == EGRL_PRESETS["paper"]
    # custom starts from the paper's values and takes any mix
    mixed = config_from_dict({"egrl": {"preset": "custom", "outcome_acc": "fraction_half"}}).egrl
    assert (mixed.outcome_acc, mixed.process_value) == ("fraction_half", "one")
    # restating a preset's own value is fine; contradicting it names the key and the way out
    assert config_from_dict({"egrl": {"preset": "release", "process_weight": 0.2}})
    with pytest.raises(ConfigError) as e:
        config_from_dict({"egrl": {"preset": "release", "process_weight": 0.8}})
    assert str(e.value) == (
        "egrl.process_weight: 0.8 contradicts egrl.preset 'release' (which uses 0.2); leave the "
        "key out to take the preset's value, or set egrl.preset: custom to mix"
    )
    # the resolved values of a preset load again (stage slices hold them)
    cfg = load_config(repo / "config/config.yaml", repo / "config/ablations/release.yaml")
    assert config_from_dict(cfg.to_dict()) == cfg


def test_computed_helpers():
    cfg = config_from_dict({"results_dir": "out"})
    assert (cfg.eval_cache_dir, cfg.filter_backend) == ("out/cache", "oracle")
    cfg = config_from_dict(
        {
            "eval": {"cache_dir": "/shared/cache"},
            "annotate": {"backend": "hf"},
            "filter": {"backend": "same"},
        }
    )
    assert (cfg.eval_cache_dir, cfg.filter_backend) == ("/shared/cache", "hf")
    assert config_from_dict({"filter": {"backend": "oracle"}}).filter_backend == "oracle"


def test_sections_of_a_run_config_and_of_a_stage_slice(tmp_path, repo):
    run = load_config(repo / "config/config.yaml")
    assert list(run.sections()) == list(Config.model_fields)
    stage = tmp_path / "split.json"
    stage.write_text(json.dumps(run.sections(["seed", "split"])))
    assert list(load_config(stage).sections()) == ["seed", "split"]


def test_load_config_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("annotate:\n  backend: nope\nsft:\n  batch_size: 0\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}: ") for line in lines)
    assert re.search(re.escape("bad.yaml: annotate.backend"), lines[0])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=re.escape("broken.yaml: not valid YAML")):
        load_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_json(tmp_path, repo):
    cfg = load_config(repo / "config/config.yaml", repo / "config/paper.yaml")
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert load_config(p) == cfg


def test_validate_show_prints_every_resolved_key(repo, capsys):
    from ume.cli import main

    files = [str(repo / "config/config.yaml"), str(repo / "config/paper.yaml")]
    assert main(["validate", "--config", *files, "--show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_config(*files).to_dict()
