"""Training curves: the one plotter behind every training stage's PNG.

A stage logs one row per step (``{"step": ..., "<quantity>": ...}``) and names the panels
to draw; :func:`plot_curves` draws each panel that has data (up to three per line), one line
per quantity, with a band of one standard deviation where the rows carry it (TRL's
``<name>/std`` beside ``<name>/mean``, or ``<name>_std``), and writes the PNG atomically.

>>> rows = [{"step": 1, "loss": 2.0, "accuracy": 0.1}, {"step": 2, "loss": 1.5, "accuracy": 0.3}]
>>> plot_curves(rows, "curves.png", [Panel("loss", ("loss",))])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume.io import atomic_path


@dataclass(frozen=True)
class Panel:
    title: str
    keys: tuple[str, ...]  # one line each
    ylabel: str | None = None
    ylim: tuple[float, float] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # legend text per key (default: key)


def _value(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    return float("nan") if v is None else float(v)


def _std_key(row_keys: set[str], key: str) -> str | None:
    """The standard deviation logged beside ``key``: TRL's ``x/std`` for ``x/mean``, or
    ``<key>_std``."""
    std = key.removesuffix("/mean") + "/std" if key.endswith("/mean") else f"{key}_std"
    return std if std in row_keys else None


def plot_curves(
    rows: Sequence[Mapping[str, Any]], png_path: str | Path, panels: Sequence[Panel]
) -> Path:
    """Draw ``panels`` over ``rows`` (x: ``step``) into ``png_path``; panels without data
    are left out (a figure without any says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k for r in rows for k, v in r.items() if v is not None}
    drawn = [p for p in panels if any(k in present for k in p.keys)]
    cols = max(1, min(3, len(drawn)))
    lines = max(1, math.ceil(len(drawn) / cols))
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 3.0 * lines), squeeze=False)
    steps = [_value(r, "step") for r in rows]
    for ax, panel in zip(axes.flat, drawn, strict=False):
        keys = [k for k in panel.keys if k in present]
        for key in keys:
            ys = [_value(r, key) for r in rows]
            ax.plot(steps, ys, marker=".", label=panel.labels.get(key, key))
            std = _std_key(present, key)
            if std is not None:
                sd = [0.0 if r.get(std) is None else float(r[std]) for r in rows]
                lo = [y - s for y, s in zip(ys, sd, strict=True)]
                hi = [y + s for y, s in zip(ys, sd, strict=True)]
                ax.fill_between(steps, lo, hi, alpha=0.2)
        ax.set(title=panel.title, xlabel="step")
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(drawn) :]:
        ax.axis("off")
    if not drawn:
        axes.flat[0].text(0.5, 0.5, "no logged step", ha="center", va="center")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(png_path)
