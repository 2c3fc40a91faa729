"""The one training-curve plotter: panels with data only, bands where a std is logged."""

from __future__ import annotations

import pytest

from ume.train.curves import Panel, _std_key, plot_curves
from ume.train.reasoner_common import log_panels

pytestmark = pytest.mark.unit


def test_panels_without_data_are_left_out_and_a_png_is_written(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    made = []
    real = plt.subplots
    monkeypatch.setattr(plt, "subplots", lambda *a, **k: made.append(a) or real(*a, **k))
    rows = [
        {"step": 1, "reward": 0.1, "reward_std": 0.05, "rewards/outcome/mean": 0.2},
        {"step": 2, "reward": 0.3, "reward_std": 0.02, "rewards/outcome/mean": None},
    ]
    panels = log_panels(rows)
    assert [p.title for p in panels][:2] == ["total reward", "rewards (mean)"]
    assert panels[1].labels == {"rewards/outcome/mean": "outcome"}
    out = plot_curves(rows, tmp_path / "log.png", panels)
    assert out.stat().st_size > 1000
    assert made == [(1, 2)]  # total reward and rewards: the KL, entropy, loss panels are empty
    assert _std_key({"reward", "reward_std"}, "reward") == "reward_std"
    assert _std_key({"rewards/x/std"}, "rewards/x/mean") == "rewards/x/std"
    assert _std_key(set(), "loss") is None


def test_a_log_without_steps_still_gives_a_figure(tmp_path):
    assert plot_curves([], tmp_path / "e.png", [Panel("loss", ("loss",))]).is_file()
