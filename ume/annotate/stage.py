"""The data-construction stage: annotate T-CoTs, filter by relevance, split contrastive / RL.

Each entry point takes the typed config and paths, reads its pair table with every row
checked (:func:`ume.pair_table.read_pair_table`: a bad row stops the stage, or with
``data.on_bad_item: skip`` is left out and counted under ``bad_rows``), writes its parquet
atomically and a manifest beside it with the counts kept and dropped per dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ume.annotate.backends import Annotator, make_annotator
from ume.config import Config
from ume.errors import ConfigError
from ume.io import Manifest, write_json
from ume.items import Item
from ume.pair_table import Media, PairTable, RowPolicy, read_pair_table, write_pair_table
from ume.tcot import limits
from ume.tcot.format import check_format, parse_tcot

log = logging.getLogger(__name__)

TCOTS = ("qry_tcot", "pos_tcot")


def _read_pairs(
    cfg: Config,
    path: str | Path,
    needs: tuple[str, ...] = (),
    media: Media = "open",
) -> PairTable:
    """The stage's input rows, checked under ``data.on_bad_item``."""
    return read_pair_table(
        path,
        policy=RowPolicy(cfg.data.on_bad_item, "data.on_bad_item"),
        needs=needs,
        tcot_parser=parse_tcot,
        media=media,
    )


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
    table = _read_pairs(cfg, pairs_path)  # the annotators open the media
    df = table.df
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
    write_pair_table(out_path, df)
    manifest.record(
        **table.manifest(),
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
    # the judge reads T-CoTs only: the media need to exist, not to be opened
    table = _read_pairs(cfg, tcot_path, TCOTS, media="exists")
    df = table.df
    manifest = Manifest("filter", cfg.sections(), [tcot_path])
    if cfg.filter.enabled:
        annotator = annotator or make_annotator(cfg, cfg.filter_backend, model_dir)
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
    write_pair_table(out_path, df)
    manifest.record(
        **table.manifest(),
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


def rl_counts(cfg: Config, datasets: list[str]) -> dict[str, int]:
    """RL pairs wanted per RL dataset: ``split.rl_counts`` (then its datasets are the RL
    datasets), else ``split.rl_per_dataset`` for each of ``split.rl_datasets`` (null: every
    dataset of ``datasets``)."""
    s = cfg.split
    if s.rl_counts is not None:
        return dict(sorted(s.rl_counts.items()))
    names = s.rl_datasets if s.rl_datasets is not None else datasets
    return {name: s.rl_per_dataset for name in sorted(names)}


def draw_rl(
    rule: str,
    kept: pd.DataFrame,
    dropped: pd.DataFrame,
    count: int | None,
    *,
    hard_fraction: float,
    rl_fraction: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One dataset's RL pairs by ``rule`` (``split.rl_rule``), in table order.

    - ``equidistant``: ``count`` kept pairs at equal steps through the dataset (App. C.3);
    - ``hard_examples``: a uniform draw of ``hard_fraction`` of the pairs the relevance
      filter dropped, at most ``count`` (Sec. 3.2);
    - ``ratio``: a uniform draw of ``rl_fraction`` of the kept pairs, at most ``count``
      when given (Fig. 2, 80/20).

    >>> df = pd.DataFrame({"pair_id": list("abcdefghij")})
    >>> draw_rl("equidistant", df, df.iloc[:0], 3, hard_fraction=0.2, rl_fraction=0.2,
    ...         rng=np.random.default_rng(0))["pair_id"].tolist()
    ['b', 'f', 'i']
    """
    if rule == "equidistant":
        n = min(count or 0, len(kept))
        idx = [int((j + 0.5) * len(kept) / n) for j in range(n)] if n else []
        return kept.iloc[idx]
    pool, frac = (dropped, hard_fraction) if rule == "hard_examples" else (kept, rl_fraction)
    n = round(frac * len(pool))
    if count is not None:
        n = min(n, count)
    if not n:
        return pool.iloc[:0]
    return pool.iloc[np.sort(rng.choice(len(pool), size=n, replace=False))]


def split_pairs(
    cfg: Config, filtered_path: str | Path, contrastive_path: str | Path, rl_path: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the pairs into the contrastive set and the RL set.

    RL pairs per dataset (:func:`rl_counts`) are drawn by ``split.rl_rule``
    (:func:`draw_rl`: ``equidistant`` and ``ratio`` from the pairs the relevance filter
    kept, ``hard_examples`` from those it dropped). ``split.rule``: ``disjoint`` holds the RL
    pairs out of the contrastive set; ``overlap`` leaves them in it. Datasets in
    ``exclude_from_contrastive`` never enter the contrastive set (they may still feed RL).
    """
    s = cfg.split
    table = _read_pairs(cfg, filtered_path, (*TCOTS, "relevant"), media="exists")
    df = table.df
    manifest = Manifest("split", cfg.sections(), [filtered_path])
    relevant = df["relevant"].astype(bool)  # checked per row on entry; a skipped null left object
    kept = df[relevant].drop(columns=["relevant"])
    dropped = df[~relevant].drop(columns=["relevant"])
    known = set(df["dataset"])
    for key, names in (
        ("rl_counts" if s.rl_counts is not None else "rl_datasets", rl_counts(cfg, [])),
        ("exclude_from_contrastive", s.exclude_from_contrastive),
    ):
        unknown = sorted(set(names) - known)
        if unknown:
            raise ConfigError(
                f"split.{key}: unknown dataset(s) {unknown}; the data has: {sorted(known)}"
            )
    counts = rl_counts(cfg, sorted(known))
    rng = np.random.default_rng(s.seed)
    named = s.rl_counts is not None or s.rl_rule != "ratio"
    rl_parts = [
        draw_rl(
            s.rl_rule,
            kept[kept["dataset"] == name],
            dropped[dropped["dataset"] == name],
            count if named else None,
            hard_fraction=s.hard_fraction,
            rl_fraction=s.rl_fraction,
            rng=rng,
        )
        for name, count in counts.items()
    ]
    rl = pd.concat(rl_parts) if rl_parts else kept.iloc[:0]
    short = {
        name: {"wanted": count, "drawn": int((rl["dataset"] == name).sum())}
        for name, count in counts.items()
        if named and int((rl["dataset"] == name).sum()) < count
    }
    if short:
        log.warning("split: RL datasets with fewer pairs than wanted (%s): %s", s.rl_rule, short)
    contrastive = kept[~kept["dataset"].isin(s.exclude_from_contrastive)]
    if s.rule == "disjoint":
        contrastive = contrastive[~contrastive["pair_id"].isin(rl["pair_id"])]
    write_pair_table(contrastive_path, contrastive.reset_index(drop=True))
    write_pair_table(rl_path, rl.reset_index(drop=True))
    manifest.record(
        **table.manifest(),
        rule=s.rule,
        rl_rule=s.rl_rule,
        rl_wanted=counts,
        rl_short=short,
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
