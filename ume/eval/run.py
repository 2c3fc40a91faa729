"""Per-task evaluation: load -> reason (cached) -> encode (cached) -> rank -> score -> write.

For one task and each evaluation *variant* (:data:`VARIANTS`) it writes, under
``<out_dir>/<variant>/<suite>/``:

``{task}.score.json``
    every metric of :func:`ume.eval.metrics.score_task` plus ``num_pred``, ``num_data``,
    ``num_skipped``, ``status`` (``"ok"`` | ``"missing"``), ``main_metric`` / ``main_score``.
``{task}.pred.jsonl``
    one line per query: its top-k candidate ids and scores, its relevant ids and grades,
    and its T-CoT.
``{task}.cost.json``
    T-CoTs generated vs. served from the cache, tokens, encodes vs. cache hits, and seconds
    (and seconds per item) for loading, reasoning, encoding and ranking.

Variants evaluate the same task with another Embedder input or another Reasoner. Those that
change only the Embedder's input (``raw``, ``answer_only``, ``no_evidence``) use the main
variant's T-CoTs from the cache: they generate none (``raw`` asks for none at all), and the
cost file shows it. All variants of a task run in one process, main first.

A task whose data is not all there is *recorded* as the data check
(:func:`ume.suites.check.task_status`) finds it: ``status: "missing"`` or ``"incomplete"``
(half downloaded), with the reason, the absent paths and what to download, and no metrics;
the leaderboard marks it and leaves it out of every average (never scored on what is
there). A malformed row stops with an error naming file, row and ``eval.on_bad_item``, or
with ``eval.on_bad_item: skip`` is skipped and counted (``num_skipped``, 0 when none and in
missing records; ``skipped``, the first of them). A cache that cannot take a write (disk
full, read-only) stops with a message naming the folder and ``eval.cache_dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ume.errors import ConfigError
from ume.eval.encode import CachedEncoder
from ume.eval.metrics import chance_score, main_score, score_task
from ume.eval.reason import CachedReasoner, OracleTCoTs
from ume.eval.retrieval import IndexParams, effective_kind, rank_local, search, tie_order
from ume.eval.stats import CacheStats
from ume.io import name_folder, write_json, write_jsonl

log = logging.getLogger(__name__)

MAX_SKIPPED_LISTED = 100


@dataclass(frozen=True)
class Variant:
    name: str
    mode: str | None  # Embedder input mode; None: the run's (train_embedder.tcot_input)
    reasoner: str | None  # which Reasoner writes T-CoTs ("main" | "no_egrl"); None: no T-CoTs
    doc: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("main", None, "main", "the run's Embedder and Reasoner, its training input"),
        Variant("raw", "raw", None, "raw input: no T-CoT at all"),
        Variant("answer_only", "answer_only", "main", "only the T-CoT's answer"),
        Variant("no_evidence", "no_evidence", "main", "the T-CoT without evidence"),
        Variant("no_egrl", None, "no_egrl", "T-CoTs of the Reasoner before EG-RL"),
        Variant(
            "oracle_tcot",
            None,
            "oracle",
            "diagnostic: ground-truth T-CoTs (the oracle annotator, no errors), synthetic only",
        ),
        Variant(
            "oracle_no_evidence",
            "no_evidence",
            "oracle",
            "diagnostic: oracle_tcot without the evidence (what the evidence adds)",
        ),
    )
}
#: Variants that are not model results (labelled as diagnostics in the leaderboard).
DIAGNOSTIC_VARIANTS = ("oracle_tcot", "oracle_no_evidence")


def variant_order(names: Sequence[str]) -> list[str]:
    """Variants in an order where the ones that share the main T-CoTs come after main."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"eval.variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    return [n for n in VARIANTS if n in names]


def outputs(out_dir: str | Path, variant: str, suite: str, task: str) -> dict[str, Path]:
    base = Path(out_dir) / variant / suite
    return {
        "score": base / f"{task}.score.json",
        "pred": base / f"{task}.pred.jsonl",
        "cost": base / f"{task}.cost.json",
    }


def missing_reason(spec: Any, root: Any) -> str | None:
    """Why ``spec``'s data cannot be evaluated under ``root`` (None when it is found); the
    verdict is :func:`ume.suites.check.task_status`'s, the data check's."""
    from ume.suites.check import task_status

    st = task_status(spec, root)
    return None if st.found else st.reason


def write_missing(
    out_dir: str | Path, variant: str, spec: Any, reason: str, status: Any = None
) -> dict[str, Any]:
    """Record ``spec`` as not evaluated: ``status`` is the data check's verdict (a
    :class:`~ume.suites.check.TaskStatus`: missing or incomplete) or None (missing)."""
    paths = outputs(out_dir, variant, spec.suite, spec.name)
    rec = {
        "task": spec.name,
        "suite": spec.suite,
        "variant": variant,
        "status": status.status if status is not None else "missing",
        "reason": reason,
        "missing_paths": list(status.missing) if status is not None else [],
        "download": list(status.download) if status is not None else [],
        "main_metric": spec.metric,
        "num_pred": 0,
        "num_data": 0,
        "num_skipped": 0,
    }
    write_json(paths["score"], rec)
    write_jsonl(paths["pred"], [])
    write_json(paths["cost"], {"task": spec.name, "variant": variant, "status": rec["status"]})
    log.warning("%s/%s: recorded %s (%s)", variant, spec.name, rec["status"], reason)
    return rec


# --------------------------------------------------------------------------- one task
@dataclass
class EvalContext:
    """What every task of one evaluation process shares: models, caches, settings."""

    encoder: CachedEncoder | None
    reasoners: Mapping[str, CachedReasoner | OracleTCoTs]  # "main" / "no_egrl" / "oracle"
    main_mode: str = "full"
    ks: tuple[int, ...] = (1, 5, 10)
    index: IndexParams | None = None
    num_frames: int = 8
    on_bad_item: str = "error"
    scorer_compatible: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)  # models, commit, versions
    cache_dir: Path | None = None  # where loaders decode page images (<cache_dir>/pages)


def evaluate_task(
    spec: Any,
    root: str | Path | None,
    out_dir: str | Path,
    variants: Sequence[str],
    ctx: EvalContext,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``spec`` for each variant; write its files; return ``{variant: score record}``."""
    from ume.suites.check import clone_origin, task_status
    from ume.suites.loaders import load_spec

    order = variant_order(variants)
    status = task_status(spec, root)  # the data check's verdict: found, missing, incomplete
    t0 = time.perf_counter()
    if not status.found:
        return {v: write_missing(out_dir, v, spec, status.reason, status) for v in order}
    task = load_spec(
        spec,
        root,
        num_frames=ctx.num_frames,
        on_bad_item=ctx.on_bad_item,
        cache_dir=ctx.cache_dir,
    )
    origin = clone_origin(Path(task.source)) if spec.layout == "beir" else ""
    load_s = time.perf_counter() - t0
    if ctx.encoder is None:
        raise ConfigError("evaluate_task needs an Embedder (EvalContext.encoder)")
    for cached in (ctx.encoder, *ctx.reasoners.values()):  # caches look in the task's group first
        cached.group = f"{spec.suite}/{spec.name}"

    qids = [q for q, _ in task.queries]
    q_items = [it for _, it in task.queries]
    cids = list(task.candidates)
    c_items = [task.candidates[c] for c in cids]
    row = {c: i for i, c in enumerate(cids)}
    k_max = max(*ctx.ks, int(spec.metric.split("@")[1]))  # rank deep enough for every metric
    # what a random ranking scores on average: the leaderboard's chance row
    chance = chance_score(
        spec, task.qrels, task.query_candidates if task.query_candidates is not None else len(cids)
    )
    results = {}
    for v in order:
        var = VARIANTS[v]
        mode = var.mode or ctx.main_mode
        rstats, estats = CacheStats("reasoning"), CacheStats("encoding")
        q_tcots: list[str | None] = [None] * len(q_items)
        c_tcots: list[str | None] = [None] * len(c_items)
        no_truth = (
            OracleTCoTs.missing_truth([*q_items, *c_items]) if var.reasoner == "oracle" else 0
        )
        if no_truth:
            results[v] = write_missing(
                out_dir,
                v,
                spec,
                f"{no_truth} item(s) carry no ground truth: oracle T-CoTs exist for the synthetic suite "
                "only",
            )
            continue
        if mode != "raw":
            if var.reasoner is None or var.reasoner not in ctx.reasoners:
                raise ConfigError(
                    f"variant {v!r} needs the {var.reasoner or 'main'} Reasoner, which was not given"
                )
            r = ctx.reasoners[var.reasoner]
            q_tcots = list(r.reason(q_items, ["query"] * len(q_items), rstats))
            c_tcots = list(r.reason(c_items, ["candidate"] * len(c_items), rstats))
        q_emb = ctx.encoder.encode(q_items, q_tcots, mode, estats)
        c_emb = ctx.encoder.encode(c_items, c_tcots, mode, estats)

        t1 = time.perf_counter()
        rankings: dict[str, list[str]] = {}
        scores: dict[str, list[float]] = {}
        if task.query_candidates is not None:
            lists = [np.array([row[c] for c in task.query_candidates[q]]) for q in qids]
            ranked = rank_local(q_emb, c_emb, lists, k_max, tiebreak=tie_order(cids))
            for q, (rows, s) in zip(qids, ranked, strict=True):
                rankings[q] = [cids[i] for i in rows]
                scores[q] = [float(x) for x in s]
            index_kind = "local"
        else:
            s, idx = search(q_emb, c_emb, k_max, ctx.index)
            for n, q in enumerate(qids):
                keep = idx[n] >= 0  # approximate indexes pad with -1
                rankings[q] = [cids[i] for i in idx[n][keep]]
                scores[q] = [float(x) for x in s[n][keep]]
            index_kind = effective_kind(len(cids), ctx.index or IndexParams())
        rank_s = time.perf_counter() - t1

        metrics = score_task(
            spec, rankings, task.qrels, ctx.ks, scorer_compatible=ctx.scorer_compatible
        )
        rec = {
            **metrics,
            "task": spec.name,
            "suite": spec.suite,
            "variant": v,
            "status": "ok",
            "mode": mode,
            "main_metric": spec.metric,
            "main_score": main_score(spec, metrics),
            "chance": chance,
            "num_skipped": len(task.skipped),
            "embedding_dimension": int(q_emb.shape[1]) if q_emb.ndim == 2 else 0,
            "skipped": task.skipped[:MAX_SKIPPED_LISTED],
            "notes": list(task.notes),
            "counts": {k: v for k, v in task.summary().items() if k != "ranking"},
            **({"origin": origin} if origin else {}),
        }
        paths = outputs(out_dir, v, spec.suite, spec.name)
        write_json(paths["score"], rec)
        write_jsonl(
            paths["pred"],
            [
                {
                    "qid": q,
                    "pred": rankings[q],
                    "scores": scores[q],
                    "label": list(task.qrels.get(q, {})),
                    "rel_scores": list(task.qrels.get(q, {}).values()),
                    "tcot": q_tcots[n],
                }
                for n, q in enumerate(qids)
            ],
        )
        n_items = len(q_items) + len(c_items)
        write_json(
            paths["cost"],
            {
                "task": spec.name,
                "variant": v,
                "status": "ok",
                "queries": len(q_items),
                "candidates": len(c_items),
                "load": {"seconds": load_s},
                "reasoning": rstats.to_dict(),
                "encoding": estats.to_dict(),
                "ranking": {
                    "seconds": rank_s,
                    "seconds_per_query": rank_s / len(qids) if qids else 0.0,
                    "index": index_kind,
                },
                "provenance": ctx.provenance,
                "seconds_per_item": {
                    "reasoning": rstats.seconds / n_items if n_items else 0.0,
                    "encoding": estats.seconds / n_items if n_items else 0.0,
                    "ranking": rank_s / len(qids) if qids else 0.0,
                },
            },
        )
        log.info(
            "%s/%s: %s=%.4f (T-CoTs generated %d, cached %d; encoded %d, cached %d)",
            v, spec.name, spec.metric, rec["main_score"], rstats.computed, rstats.cached,
            estats.computed, estats.cached,
        )  # fmt: skip
        results[v] = rec
    return results


# --------------------------------------------------------------------------- a process
def run_eval(
    cfg: Any,
    suite: str,
    task_names: Sequence[str],
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    embedder: str | Path | None = None,
    reasoners: Mapping[str, str | Path | None] | None = None,
    cache_dir: str | Path | None = None,
    tcot_lengths: str | Path | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Evaluate tasks of ``suite`` for ``cfg.eval.variants``; ``{task: {variant: record}}``.

    Models are loaded only if some task has data (a run on missing data only writes
    "missing" records). ``reasoners`` maps ``"main"`` / ``"no_egrl"`` to model paths.
    ``tcot_lengths``: the annotated T-CoT lengths (``annotate/tcot_lengths.json``);
    ``eval.max_new_tokens`` is checked against them first (:mod:`ume.tcot.limits`).
    """
    from ume.suites.registry import get_task

    ev = cfg.eval
    if cache_dir is not None:  # a full or read-only cache: the message names eval.cache_dir
        name_folder(cache_dir, "eval.cache_dir")
    if tcot_lengths is not None:
        from ume.tcot.limits import check_limit, read_lengths

        stats = read_lengths(tcot_lengths)
        check_limit("eval.max_new_tokens", ev.max_new_tokens, stats, str(tcot_lengths))
    variants = variant_order(ev.variants)
    from ume.suites.base import DataRoots

    specs = [get_task(suite, n) for n in task_names]
    data_root = DataRoots.from_eval(ev, suite, root)
    ctx = EvalContext(
        encoder=None,
        reasoners={},
        main_mode=cfg.train_embedder.tcot_input,
        ks=tuple(ev.ks),
        index=IndexParams.from_config(ev.index),
        num_frames=ev.num_frames,
        on_bad_item=ev.on_bad_item,
        scorer_compatible=ev.scorer_compatible,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )
    if any(missing_reason(s, data_root) is None for s in specs):
        from ume.io import git_commit, package_versions

        ctx.encoder, ctx.reasoners = load_models(cfg, variants, embedder, reasoners, cache_dir)
        ctx.provenance = {
            "embedder": {"path": str(embedder), "identity": ctx.encoder.identity},
            "reasoners": {
                role: {"path": str((reasoners or {}).get(role)), "identity": r.reasoner.identity}
                for role, r in ctx.reasoners.items()
            },
            "git_commit": git_commit(),
            "versions": package_versions(),
        }
    return {s.name: evaluate_task(s, data_root, out_dir, variants, ctx) for s in specs}


def load_models(
    cfg: Any,
    variants: Sequence[str],
    embedder: str | Path | None,
    reasoners: Mapping[str, str | Path | None] | None,
    cache_dir: str | Path | None,
) -> tuple[CachedEncoder, dict[str, CachedReasoner | OracleTCoTs]]:
    """The cached Embedder and the cached Reasoners the variants need."""
    from ume.eval.encode import make_encoder
    from ume.eval.reason import TCoTCache, cache_namespace, make_reasoner

    main_mode = cfg.train_embedder.tcot_input
    roles = [
        VARIANTS[v].reasoner
        for v in variants
        if VARIANTS[v].reasoner is not None and (VARIANTS[v].mode or main_mode) != "raw"
    ]
    if "no_egrl" in roles and cfg.eval.reasoner_backend == "server":
        raise ConfigError(
            "eval.variants: no_egrl needs the Reasoner before EG-RL, but eval.reasoner_backend "
            "is 'server' (one served model); evaluate that ablation as its own run "
            "(config/ablations/no_egrl.yaml) or use reasoner_backend: hf"
        )
    if embedder is None:
        raise ConfigError("evaluation needs the Embedder (--embedder)")
    cache = Path(cache_dir) if cache_dir is not None else None
    memo = cache / "identity" if cache is not None else None
    encoder = make_encoder(cfg, embedder, cache / "emb" if cache else None, identity_memo=memo)
    out: dict[str, CachedReasoner | OracleTCoTs] = {}
    for role in dict.fromkeys(roles):
        if role == "oracle":
            out[role] = OracleTCoTs()
            continue
        path = (reasoners or {}).get(role)
        if path is None and cfg.eval.reasoner_backend == "hf":
            flag = "--reasoner" if role == "main" else "--reasoner-no-egrl"
            raise ConfigError(f"variant(s) {variants} need the {role} Reasoner; pass {flag}")
        r = make_reasoner(cfg, path, identity_memo=memo)
        tc = TCoTCache(cache / "tcot" if cache else None, cache_namespace(r.identity, r.params))
        out[role] = CachedReasoner(r, tc, flush_every=max(64, 8 * cfg.eval.batch_size))
    return encoder, out
