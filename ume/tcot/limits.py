"""Generation limits checked against the lengths of the annotated T-CoTs.

A generation limit below the length of the T-CoTs a Reasoner was taught to write cuts them:
no rollout closes ``</answer>`` or its evidence JSON, every format reward is 0, no crop or key
frame reaches the Embedder, and evaluation embeds a half ``<thinking>``. Nothing crashes, so
it has to be checked. One stage measures, the stages that generate check on entry:

* the annotation stage measures every well-formed annotated T-CoT in the **Reasoner's**
  tokens (:func:`length_stats`) and writes ``annotate/tcot_lengths.json``;
* EG-RL (``egrl.max_completion_length``) and evaluation (``eval.max_new_tokens``) read that
  file and call :func:`check_limit` before loading any model: a limit that cuts more than half
  of the T-CoTs stops the run with a message naming the key and the length needed; one that
  cuts more than :data:`WARN_FRACTION` of them is logged as a warning;
* the annotator's own limit (``annotate.hf.max_new_tokens``, ``annotate.server.max_tokens``)
  cannot be checked against what it produced itself; the annotation stage counts the T-CoTs
  it cut instead (:func:`count_cut`: opened ``<thinking>``, never closed ``</answer>``) and
  stops when most were cut.

>>> stats = length_stats([30, 34, 34, 40, 64], tokenizer="tiny")
>>> stats["p50"], stats["max"], round(fraction_cut(stats, 34), 2)
(34, 64, 0.4)
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ume.errors import ConfigError, DataError
from ume.tcot.format import ANSWER_CLOSE, THINK_OPEN

log = logging.getLogger(__name__)

STOP_FRACTION = 0.5  # a limit that cuts more than this fraction stops the run ("most")
WARN_FRACTION = 0.05  # ... more than this fraction is warned about
PERCENTILES = (50, 90, 95, 99)


def token_lengths(texts: Sequence[str], tokenizer) -> list[int]:
    """Length of each text in ``tokenizer``'s tokens (no special tokens added)."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in enc]


def _percentile(sorted_vals: list[int], q: float) -> int:
    """Nearest-rank percentile (a length some T-CoT really has)."""
    k = max(1, math.ceil(q / 100 * len(sorted_vals)))
    return sorted_vals[k - 1]


def length_stats(lengths: Sequence[int], *, tokenizer: str) -> dict[str, Any]:
    """Count, mean, percentiles, max and the full histogram of ``lengths``.

    The histogram makes :func:`fraction_cut` exact for any limit.
    """
    vals = sorted(int(v) for v in lengths)
    if not vals:
        return {"count": 0, "tokenizer": tokenizer, "histogram": {}}
    out: dict[str, Any] = {"count": len(vals), "tokenizer": tokenizer}
    out["mean"] = round(sum(vals) / len(vals), 2)
    out["min"] = vals[0]
    for q in PERCENTILES:
        out[f"p{q}"] = _percentile(vals, q)
    out["max"] = vals[-1]
    out["histogram"] = {str(k): v for k, v in sorted(Counter(vals).items())}
    return out


def fraction_cut(stats: dict[str, Any], limit: int) -> float:
    """Fraction of the measured T-CoTs longer than ``limit`` tokens."""
    hist = {int(k): int(v) for k, v in (stats.get("histogram") or {}).items()}
    total = sum(hist.values())
    if not total:
        return 0.0
    return sum(v for k, v in hist.items() if k > limit) / total


def read_lengths(path: str | Path) -> dict[str, Any]:
    """The stats written by the annotation stage (``annotate/tcot_lengths.json``)."""
    path = Path(path)
    try:
        stats = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the annotation stage that writes it") from None
    except ValueError as e:
        raise DataError(f"{path}: not JSON ({e}); delete it and rerun the annotation") from e
    if not isinstance(stats, dict) or "histogram" not in stats:
        raise DataError(f"{path}: no T-CoT length histogram; rerun the annotation stage")
    return stats


def check_limit(key: str, limit: int, stats: dict[str, Any], source: str = "") -> float:
    """Stop (:class:`ConfigError`) when ``limit`` cuts most annotated T-CoTs; warn when it cuts
    more than :data:`WARN_FRACTION`. Returns the fraction cut."""
    if not stats.get("count"):
        return 0.0
    cut = fraction_cut(stats, limit)
    where = f" (measured in {source})" if source else ""
    lengths = (
        f"the annotated T-CoTs are {stats['p50']} {stats['tokenizer']} tokens at the median, "
        f"{stats['p95']} at the 95th percentile and {stats['max']} at most{where}"
    )
    if cut > STOP_FRACTION:
        raise ConfigError(
            f"{key} = {limit} tokens cuts {cut:.0%} of the T-CoTs the Reasoner writes: "
            f"{lengths}; set {key} to at least {stats['p95']} (the longest needs {stats['max']})"
        )
    if cut > WARN_FRACTION:
        log.warning(
            "%s = %d tokens cuts %.0f%% of the annotated T-CoTs (%s); %d would keep 95%%",
            key,
            limit,
            100 * cut,
            lengths,
            stats["p95"],
        )
    return cut


def count_cut(texts: Sequence[str], lengths: Sequence[int] | None, limit: int) -> int:
    """T-CoTs a generation limit cut: they opened ``<thinking>`` and never closed
    ``</answer>`` (and, when ``lengths`` are known, reached ``limit`` tokens). Outputs that
    never started a T-CoT are malformed, not cut."""
    n = 0
    for k, t in enumerate(texts):
        if not isinstance(t, str) or THINK_OPEN not in t or ANSWER_CLOSE in t:
            continue
        if lengths is None or lengths[k] >= limit:
            n += 1
    return n


def check_annotator_cut(key: str, limit: int, texts: Sequence[str], cut: int) -> None:
    """Stop when the annotator's limit cut most of the T-CoTs it started."""
    started = sum(isinstance(t, str) and THINK_OPEN in t for t in texts)
    if started and cut / started > STOP_FRACTION:
        raise ConfigError(
            f"{key} = {limit} tokens cut {cut} of the {started} T-CoTs the annotator started "
            f"(they never reached {ANSWER_CLOSE}); raise {key} (a complete T-CoT must fit)"
        )
    if cut:
        log.warning("%s = %d: %d of %d started T-CoTs were cut", key, limit, cut, started)
