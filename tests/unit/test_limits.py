"""Generation limits against annotated T-CoT lengths (ume.tcot.limits) and where they are
measured (the annotation stage) and checked (EG-RL, evaluation, the annotator itself)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from ume.annotate.stage import annotate_pairs
from ume.config import config_from_dict
from ume.errors import ConfigError, DataError
from ume.items import Item, pair_row, pairs_frame
from ume.tcot import limits
from ume.tcot.format import render_tcot

pytestmark = pytest.mark.unit


def test_stats_and_fraction_cut_are_exact():
    stats = limits.length_stats([10, 20, 20, 30, 90], tokenizer="t")
    assert (stats["count"], stats["p50"], stats["p95"], stats["max"]) == (5, 20, 90, 90)
    assert limits.fraction_cut(stats, 20) == pytest.approx(0.4)
    assert limits.fraction_cut(stats, 90) == 0.0
    assert limits.fraction_cut(stats, 9) == 1.0
    assert json.loads(json.dumps(stats)) == stats  # what the stage writes reads back the same


def test_a_limit_that_cuts_most_tcots_stops_with_the_key_and_the_length_needed(caplog):
    stats = limits.length_stats([30] * 6 + [60] * 4, tokenizer="Reasoner")
    with pytest.raises(ConfigError, match=r"egrl\.max_completion_length = 29 tokens cuts 100%"):
        limits.check_limit("egrl.max_completion_length", 29, stats, "a/tcot_lengths.json")
    with pytest.raises(ConfigError) as e:
        limits.check_limit("eval.max_new_tokens", 29, stats)
    assert "set eval.max_new_tokens to at least 60" in str(e.value)
    with caplog.at_level(logging.WARNING):  # cuts 40%: runs, warned
        assert limits.check_limit("eval.max_new_tokens", 30, stats) == pytest.approx(0.4)
    assert "eval.max_new_tokens = 30 tokens cuts 40%" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert limits.check_limit("eval.max_new_tokens", 60, stats) == 0.0
    assert not caplog.text
    assert limits.check_limit("k", 1, limits.length_stats([], tokenizer="t")) == 0.0


def test_cut_tcots_are_the_ones_opened_and_never_closed():
    done = render_tcot("a", "b", "c", {"bbox_2d": [1, 2, 3, 4]})
    cut = done[: done.index("<answer>")]
    garbage = "blah blah"
    assert limits.count_cut([done, cut, garbage], None, 64) == 1
    assert limits.count_cut([done, cut, cut], [10, 64, 20], 64) == 1  # the short one stopped
    with pytest.raises(ConfigError, match=re.escape("annotate.hf.max_new_tokens = 64 tokens")):
        limits.check_annotator_cut("annotate.hf.max_new_tokens", 64, [done, cut, cut], 2)
    limits.check_annotator_cut("annotate.hf.max_new_tokens", 64, [done, cut, garbage], 1)


def test_read_lengths_names_the_file(tmp_path):
    with pytest.raises(DataError, match=re.escape("nope.json: not found")):
        limits.read_lengths(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=re.escape("bad.json: not JSON")):
        limits.read_lengths(tmp_path / "bad.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="no T-CoT length histogram"):
        limits.read_lengths(tmp_path / "x.json")


class _Tok:
    """Whitespace tokenizer with the transformers call signature."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


class _CuttingAnnotator:
    """An annotator whose limit cuts every T-CoT it starts."""

    name = "fake"
    limit = ("annotate.server.max_tokens", 5)
    tokenizer = None

    def tcot(self, items, roles):
        return ["<thinking> a red circle {"] * len(items)

    def judge(self, pairs):
        return [False] * len(pairs)


def _pairs_file(tmp_path):
    rows = [
        pair_row(
            f"d:{i}",
            "d",
            "image",
            Item("text", text="a red circle", gt={"keywords": ["red", "circle"]}),
            Item("text", text="red circle", gt={"keywords": ["red", "circle"]}),
        )
        for i in range(3)
    ]
    path = tmp_path / "pairs.parquet"
    pairs_frame(rows).to_parquet(path)
    return path


def test_annotation_measures_lengths_in_the_reasoners_tokens(tmp_path, monkeypatch):
    monkeypatch.setattr("ume.models.backbone.load_tokenizer", lambda *a, **k: _Tok())
    cfg = config_from_dict({})
    out = tmp_path / "a/tcot.parquet"
    df = annotate_pairs(
        cfg, _pairs_file(tmp_path), out, reasoner="r.json", lengths_path=tmp_path / "a/len.json"
    )
    stats = limits.read_lengths(tmp_path / "a/len.json")
    words = [len(t.split()) for t in list(df["qry_tcot"]) + list(df["pos_tcot"])]
    assert stats["count"] == 6 and stats["max"] == max(words) and stats["p50"] == sorted(words)[2]
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    assert (
        manifest["tcot_tokens"]["max"] == max(words) and "histogram" not in manifest["tcot_tokens"]
    )


def test_annotation_stops_when_the_annotators_limit_cut_most_tcots(tmp_path):
    cfg = config_from_dict({})
    with pytest.raises(
        ConfigError, match=r"annotate\.server\.max_tokens = 5 tokens cut 6 of the 6"
    ):
        annotate_pairs(
            cfg, _pairs_file(tmp_path), tmp_path / "o.parquet", annotator=_CuttingAnnotator()
        )
    assert not (tmp_path / "o.parquet").exists()


def _lengths_file(tmp_path, lengths=(30, 30, 40, 60)):
    path = tmp_path / "tcot_lengths.json"
    path.write_text(json.dumps(limits.length_stats(list(lengths), tokenizer="Reasoner")))
    return path


def test_egrl_and_eval_check_their_limits_on_entry_before_any_model(tmp_path):
    from ume.eval.run import run_eval
    from ume.train.egrl import train_egrl

    lengths = _lengths_file(tmp_path)
    rl = tmp_path / "rl.parquet"  # never read: the check comes first
    cfg = config_from_dict({"egrl": {"max_completion_length": 24}})
    with pytest.raises(ConfigError, match=r"egrl\.max_completion_length = 24 tokens cuts 100%"):
        train_egrl(
            cfg, rl, "no/reasoner", "no/embedder", None, tmp_path / "o", tcot_lengths=lengths
        )
    cfg = config_from_dict({"eval": {"max_new_tokens": 16}})
    with pytest.raises(ConfigError, match=r"at least 60 \(the longest needs 60\)"):
        run_eval(cfg, "synth", ["SynthCLS"], tmp_path / "e", tcot_lengths=lengths)
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()
