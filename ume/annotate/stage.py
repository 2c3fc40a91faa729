"""The data-construction stage: annotate T-CoTs, filter by relevance, split contrastive / RL.

Each entry point takes the typed config and paths, writes its parquet atomically and a
manifest beside it with the counts kept and dropped per dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ume.annotate.backends import Annotator, make_annotator
from ume.config import Config
from ume.data.pairs import Item, check_pairs_frame
from ume.errors import ConfigError, DataError
from ume.io import Manifest, write_json, write_parquet
from ume.tcot import limits
from ume.tcot.format import check_format, parse_tcot

log = logging.getLogger(__name__)


def _read_pairs(path: str | Path, needs: tuple[str, ...] = ()) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run the stage that writes it first")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read parquet ({e}); delete it and rerun its stage") from e
    check_pairs_frame(df, str(path))
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; rerun the stage that writes it")
    return df


def _per_dataset(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in df["dataset"].value_counts().sort_index().items()}


def annotate_pairs(
    cfg: Config,
    pairs_path: str | Path,
    out_path: str | Path,
    model_dir: str | Path | None = None,
    annotator: Annotator | None = None,
    reasoner: str | Path | None = None,
    lengths_path: str | Path | None = None,
) -> pd.DataFrame:
    """Write a T-CoT for the query and the positive side of every pair -> ``tcot.parquet``.

    ``reasoner`` (its ``backbone.json`` or folder) and ``lengths_path``: also measure the
    well-formed T-CoTs in the Reasoner's tokens and write the length statistics there
    (:mod:`ume.tcot.limits`; the generating stages check their limits against them).
    """
    df = _read_pairs(pairs_path)
    manifest = Manifest("annotate", cfg.sections(), [pairs_path])
    annotator = annotator or make_annotator(cfg, cfg.annotate.backend, model_dir)
    items = [Item.from_row(r, "qry") for r in df.to_dict("records")]
    items += [Item.from_row(r, "pos") for r in df.to_dict("records")]
    roles = ["query"] * len(df) + ["candidate"] * len(df)
    tcots = annotator.tcot(items, roles)
    cut = _check_annotator_limit(annotator, tcots)
    n = len(df)
    df = df.assign(qry_tcot=tcots[:n], pos_tcot=tcots[n:])
    # Record (not fix) what the annotator got wrong: later stages must meet imperfect T-CoTs.
    problems = {"qry": 0, "pos": 0}
    for side in problems:
        problems[side] = int(sum(bool(parse_tcot(t).problems) for t in df[f"{side}_tcot"]))
    stats = None
    if reasoner is not None and lengths_path is not None:
        from ume.models.backbone import load_tokenizer

        tokenizer = load_tokenizer(reasoner, "reasoner")
        good = [t for t in tcots if check_format(t, variant="tags")]
        stats = limits.length_stats(
            limits.token_lengths(good, tokenizer), tokenizer="Reasoner (models.reasoner)"
        )
        write_json(lengths_path, stats)
    write_parquet(out_path, df)
    manifest.record(
        backend=annotator.name,
        pairs=n,
        per_dataset=_per_dataset(df),
        tcots_with_problems=problems,
        tcots_cut_by_limit=cut,
        annotator_counts=getattr(annotator, "counts", {}),
        tcot_tokens={k: v for k, v in stats.items() if k != "histogram"} if stats else None,
    )
    manifest.write(Path(out_path).parent)
    return df


def _check_annotator_limit(annotator: Annotator, tcots: list[str]) -> int | None:
    """T-CoTs the annotator's own generation limit cut (None: it has no limit); stops the
    run when most were cut."""
    limit = getattr(annotator, "limit", None)
    if limit is None:
        return None
    key, value = limit
    tokenizer = getattr(annotator, "tokenizer", None)
    lengths = limits.token_lengths(tcots, tokenizer) if tokenizer is not None else None
    cut = limits.count_cut(tcots, lengths, value)
    limits.check_annotator_cut(key, value, tcots, cut)
    return cut


def filter_pairs(
    cfg: Config,
    tcot_path: str | Path,
    out_path: str | Path,
    model_dir: str | Path | None = None,
    annotator: Annotator | None = None,
) -> pd.DataFrame:
    """The relevance filter: keep pairs the judge calls not conflicting ("No")."""
    df = _read_pairs(tcot_path, ("qry_tcot", "pos_tcot"))
    manifest = Manifest("filter", cfg.sections(), [tcot_path])
    if cfg.filter.enabled:
        backend = cfg.annotate.backend if cfg.filter.backend == "same" else cfg.filter.backend
        annotator = annotator or make_annotator(cfg, backend, model_dir)
        verdicts = annotator.judge(list(zip(df["qry_tcot"], df["pos_tcot"], strict=True)))
        unreadable = int(sum(v is None for v in verdicts))
        # None (unreadable answer) keeps the pair: only a clear "Yes" drops it.
        keep = np.array([v is not True for v in verdicts], dtype=bool)
        judge = annotator.name
    else:
        keep, unreadable, judge = np.ones(len(df), dtype=bool), 0, None
    df = df.assign(relevant=keep)
    kept = df[df["relevant"]]
    dropped = df[~df["relevant"]]
    write_parquet(out_path, df)
    manifest.record(
        enabled=cfg.filter.enabled,
        judge=judge,
        pairs=len(df),
        kept=len(kept),
        dropped=len(dropped),
        unreadable_verdicts=unreadable,
        kept_per_dataset=_per_dataset(kept),
        dropped_per_dataset=_per_dataset(dropped),
        dropped_pair_ids=dropped["pair_id"].tolist()[:1000],
    )
    manifest.write(Path(out_path).parent)
    return df


def split_pairs(
    cfg: Config, filtered_path: str | Path, contrastive_path: str | Path, rl_path: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split kept pairs into the contrastive set and the RL set.

    ``split.rule``: ``disjoint`` holds the RL pairs out of the contrastive set; ``overlap``
    draws them from it and leaves them there. Datasets in ``exclude_from_contrastive`` never
    enter the contrastive set (they may still feed RL).
    """
    s = cfg.split
    df = _read_pairs(filtered_path, ("qry_tcot", "pos_tcot", "relevant"))
    manifest = Manifest("split", cfg.sections(), [filtered_path])
    kept = df[df["relevant"]].drop(columns=["relevant"])
    known = set(df["dataset"])
    for key, names in (
        ("rl_datasets", s.rl_datasets or []),
        ("exclude_from_contrastive", s.exclude_from_contrastive),
    ):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ConfigError(
                f"split.{key}: unknown dataset(s) {unknown}; the data has: {sorted(known)}"
            )
    rl_sets = s.rl_datasets if s.rl_datasets is not None else sorted(known)
    rng = np.random.default_rng(s.seed)
    rl_parts = []
    for name in sorted(rl_sets):
        part = kept[kept["dataset"] == name]
        n = min(s.rl_per_dataset, len(part))
        if n:
            rl_parts.append(part.iloc[np.sort(rng.choice(len(part), size=n, replace=False))])
    rl = pd.concat(rl_parts) if rl_parts else kept.iloc[:0]
    contrastive = kept[~kept["dataset"].isin(s.exclude_from_contrastive)]
    if s.rule == "disjoint":
        contrastive = contrastive[~contrastive["pair_id"].isin(rl["pair_id"])]
    write_parquet(contrastive_path, contrastive.reset_index(drop=True))
    write_parquet(rl_path, rl.reset_index(drop=True))
    manifest.record(
        rule=s.rule,
        kept_pairs=len(kept),
        contrastive=len(contrastive),
        rl=len(rl),
        contrastive_per_dataset=_per_dataset(contrastive),
        rl_per_dataset=_per_dataset(rl),
        excluded_from_contrastive={
            n: int((kept["dataset"] == n).sum()) for n in s.exclude_from_contrastive
        },
    )
    manifest.write(Path(contrastive_path).parent)
    return contrastive, rl
