"""Every shipped config loads; bad keys and values stop with a message naming key and choices."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from ume.config import Config, config_from_dict, json_schema, load_config, schema_text
from ume.errors import ConfigError

pytestmark = pytest.mark.unit


def shipped_configs(repo):
    return sorted((repo / "config").rglob("*.yaml"))


def test_every_shipped_config_loads_on_top_of_the_default(repo):
    files = shipped_configs(repo)
    assert any(f.name == "paper.yaml" for f in files)
    base = repo / "config" / "config.yaml"
    for f in files:
        cfg = load_config(base, f) if f != base else load_config(base)
        assert isinstance(cfg, Config)
        # and each also passes the JSON schema that the Snakefile validates against
        data = yaml.safe_load(f.read_text())
        jsonschema.validate(data, json_schema())


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
    assert cfg.split.exclude_from_contrastive == ["HatefulMemes", "N24News", "VOC2007"]


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


def test_schema_has_descriptions_and_defaults():
    props = json_schema()["properties"]
    leaf = props["data"]["properties"]["synthetic"]["properties"]["image_size"]
    assert leaf["default"] == 64 and leaf["description"]
    assert props["annotate"]["properties"]["backend"]["enum"] == ["oracle", "hf", "server"]


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
        (
            {"data": {"synthetic": {"image_size": "big"}}},
            "data.synthetic.image_size: expected an integer",
        ),
        (
            {"annotate": {"oracle": {"wrong_evidence_rate": 1.5}}},
            "annotate.oracle.wrong_evidence_rate: must lie in [0, 1]",
        ),
        ({"models": {"embedder": {"source": "path"}}}, "models.embedder.path: source is 'path'"),
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
            {"eval": {"image_min_tokens": 900, "image_max_tokens": 768}},
            "eval.image_min_tokens: 900 is above image_max_tokens (768)",
        ),
        (
            {"egrl": {"per_device_batch_size": 1}},
            "egrl.per_device_batch_size: the outcome and process rewards compare",
        ),
        ({"models": {"embedder": {"path": "Qwen/Qwen3-VL-2B"}}}, "looks like a hub id"),
    ],
)
def test_bad_values_name_key_and_choices(data, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict(data)
    assert needle in str(e.value)


def test_load_config_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("annotate:\n  backend: nope\n")
    with pytest.raises(ConfigError, match=re.escape("bad.yaml: annotate.backend")):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=re.escape("broken.yaml: not valid YAML")):
        load_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip_through_json(tmp_path, repo):
    cfg = load_config(repo / "config/config.yaml")
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg.to_dict()))
    assert load_config(p) == cfg
