"""EG-RL rewards: format, outcome (frozen Embedder) and process (frozen Discriminator).

Each reward is a registered, picklable callable with TRL's contract
``(prompts, completions, **columns) -> list[float]``, one value per rollout, so that
``GRPOTrainer`` logs each on its own (``rewards/<name>/mean``, ``.../std``) and sums them
with ``reward_weights`` (``R = a*format + b*process + c*outcome``, method.md stage 3).

Batch layout (see :mod:`ume.train.egrl`): the rollouts TRL hands to a reward function are
the whole local generation batch, one dataset, made of complete pairs: for each pair, G
rollouts of its query (``side == "qry"``) and G of its positive (``side == "pos"``). The
columns ``pair_id``, ``side`` and ``item`` (the side's :class:`~ume.items.Item` as
JSON) say which is which. Outcome and process rewards are *pair-wise*: a query rollout is
scored against every target rollout of the batch (own pair = positives, other pairs =
negatives) and, symmetrically, a target rollout against every query rollout.

Outcome, for a rollout i with similarities s_j to the other side's rollouts (Embedder
inputs built by :func:`ume.inputs.build_input` in the input mode, token limit and pixel
budget the Embedder was trained with, read from its stage record; ``full``: T-CoT *with* the
evidence crops and key frames)::

    margin(i) = mean_{j in P} s_j - sum_{j in N} softmax(s_N / tau)_j * s_j   (plain mean
                over N when weighted_negatives is false; 0 when N is empty)
    Acc_k(i)  = 1 if all of P are in the top k (paper) | 0.5 * |P in top k| / k (release)
    R_outcome = Acc_k(i) * margin(i),        k = |P| = G

A candidate is "in the top k" when fewer than k candidates have a strictly higher
similarity (ties count in favour, so a constant Embedder gives Acc 1 and margin 0).

False negatives: pairs of one step that share their query or their positive (classification
sets: two images of one class have the same label as positive; I2T sets: one image with
several captions) carry the same ``label`` column (:func:`ume.train.egrl.rl_rows`). Another
pair of the same label is neither a positive nor a negative of a rollout: it is left out of
N, of the top-k ranking and of the Discriminator's candidates (counted: ``masked``).

Process: the Discriminator sees rollout i's T-CoT and candidates = the other side's rollouts
of its own pair (positives) + the ``hard_negatives`` hardest other pairs (each pair
represented by its rollout most similar to i), shuffled (paper) or positives first
(release); a pick of a positive earns 1 (paper) or margin(i) (release), anything else 0. An
answer naming no valid candidate is a miss: 0, counted and logged.

Bad rollouts never raise: an empty, unparseable or absurdly long rollout gets format 0, and
its outcome is computed on what the input builder can read (at most ``max_chars``
characters; chat special tokens removed).

>>> fmt = FormatReward(variant="tags")
>>> fmt([[]], [[{"role": "assistant", "content": "<thinking>a</thinking><rethink>b</rethink>"
...                "<answer>c</answer>"}]], item=['{"modality": "text"}'])
[1.0]
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import torch

from ume.items import Item
from ume.tcot.format import check_format
from ume.tcot.prompts import discriminator_messages, parse_choice

log = logging.getLogger(__name__)

REWARDS: dict[str, type] = {}
QUERY, TARGET = "qry", "pos"
# Chat/vision special tokens a rollout may spell out; left in, they would break the
# processor's image-token count or the <emb> position of the Embedder input.
_SPECIAL = re.compile(r"<\|[A-Za-z_]+\|>|<emb>")


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a reward available by ``name`` (see :func:`get_reward`)."""

    def deco(cls: type) -> type:
        REWARDS[name] = cls
        cls.reward_name = name
        return cls

    return deco


def get_reward(name: str, **kwargs: Any):
    """An instance of the reward registered as ``name``.

    >>> get_reward("format", variant="tags").__name__
    'format'
    """
    if name not in REWARDS:
        raise KeyError(f"no reward {name!r}; registered: {', '.join(sorted(REWARDS))}")
    return REWARDS[name](**kwargs)


# --------------------------------------------------------------------------- text helpers
def completion_text(c: Any) -> str:
    """The text of one TRL completion (conversational ``[{"role", "content"}]`` or a string)."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c:
        content = c[-1].get("content", "") if isinstance(c[-1], dict) else ""
        if isinstance(content, list):  # content parts
            return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        return content if isinstance(content, str) else ""
    return ""


def readable(text: str, max_chars: int) -> str:
    """What the Embedder / Discriminator get of a rollout: special tokens out, length capped.

    >>> readable("<answer> a <|image_pad|> b </answer>" + "x" * 50, 30)
    '<answer> a  b </answer>xxxxxxx'
    """
    return _SPECIAL.sub("", text)[:max_chars]


@lru_cache(maxsize=4096)
def _item(js: str) -> Item:
    d = json.loads(js)
    d["frames"] = tuple(d.get("frames") or ())
    return Item(**d)


def item_json(item: Item) -> str:
    """The ``item`` column of the EG-RL dataset (what :func:`_item` reads back)."""
    return json.dumps(
        {
            "modality": item.modality,
            "inst": item.inst,
            "text": item.text,
            "image": item.image,
            "frames": list(item.frames),
        },
        sort_keys=True,
    )


# --------------------------------------------------------------------------- formulas
@dataclass
class OutcomeTerms:
    """Per row of a similarity matrix: Acc_k, the margin and their product (all [R])."""

    acc: torch.Tensor
    margin: torch.Tensor
    reward: torch.Tensor
    has_positive: torch.Tensor  # bool [R]: rows with no own-pair column get 0


def outcome_terms(
    sim: torch.Tensor,
    row_groups: Sequence[str],
    col_groups: Sequence[str],
    *,
    acc: str = "all_in_topk",
    tau: float = 0.5,
    weighted: bool = True,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
) -> OutcomeTerms:
    """Outcome reward terms of each row of ``sim`` [R, C] against its columns.

    Column j is a positive of row i when ``col_groups[j] == row_groups[i]``; with labels, a
    column of another group with the row's label is masked (neither positive nor negative).

    >>> t = outcome_terms(torch.tensor([[0.9, 0.5, 0.7, 0.1]]), ["a"], ["a", "a", "b", "b"],
    ...                   acc="fraction_half")
    >>> round(t.acc.item(), 4), round(t.margin.item(), 4), round(t.reward.item(), 4)
    (0.25, 0.1389, 0.0347)
    """
    if acc not in ("all_in_topk", "fraction_half"):
        raise ValueError(f"acc must be 'all_in_topk' or 'fraction_half', not {acc!r}")
    sim = sim.detach().float().cpu()
    r_n = sim.shape[0]
    out_acc, out_margin = torch.zeros(r_n), torch.zeros(r_n)
    has_pos = torch.zeros(r_n, dtype=torch.bool)
    cols = list(col_groups)
    for i in range(r_n):
        pos = torch.tensor([g == row_groups[i] for g in cols], dtype=torch.bool)
        k = int(pos.sum())
        if k == 0:
            continue
        has_pos[i] = True
        keep = ~_masked(row_groups[i], row_labels, i, cols, col_labels)
        s = sim[i][keep]
        pos = pos[keep]
        s_pos, s_neg = s[pos], s[~pos]
        if s_neg.numel():
            w = (
                torch.softmax(s_neg / tau, 0)
                if weighted
                else torch.full_like(s_neg, 1 / len(s_neg))
            )
            neg = float((w * s_neg).sum())
        else:
            neg = 0.0
        out_margin[i] = float(s_pos.mean()) - neg
        higher = (s.unsqueeze(0) > s_pos.unsqueeze(1)).sum(1)  # [k] columns strictly above
        in_top = int((higher < k).sum())
        out_acc[i] = float(in_top == k) if acc == "all_in_topk" else 0.5 * in_top / k
    return OutcomeTerms(out_acc, out_margin, out_acc * out_margin, has_pos)


def _masked(
    own: str,
    row_labels: Sequence[str] | None,
    i: int,
    col_groups: Sequence[str],
    col_labels: Sequence[str] | None,
) -> torch.Tensor:
    """bool [C]: columns of other groups that share row ``i``'s label (false negatives)."""
    if row_labels is None or col_labels is None:
        return torch.zeros(len(col_groups), dtype=torch.bool)
    lab = row_labels[i]
    return torch.tensor(
        [g != own and lb == lab for g, lb in zip(col_groups, col_labels, strict=True)],
        dtype=torch.bool,
    )


def hardest_negatives(
    sim_row: torch.Tensor,
    col_groups: Sequence[str],
    own: str,
    n: int,
    skip: Sequence[bool] | None = None,
) -> list[int]:
    """Columns of the ``n`` other groups most similar to the row (one column per group:
    the group's most similar one), most similar first; ``skip``: columns never taken
    (false negatives).

    >>> hardest_negatives(torch.tensor([0.9, 0.2, 0.8, 0.3, 0.1]), ["a", "b", "b", "c", "c"], "a", 1)
    [2]
    """
    best: dict[str, int] = {}
    for j, g in enumerate(col_groups):
        if skip is not None and skip[j]:
            continue
        if g != own and (g not in best or sim_row[j] > sim_row[best[g]]):
            best[g] = j
    ranked = sorted(best.values(), key=lambda j: (-float(sim_row[j]), j))
    return ranked[: max(n, 0)]


# --------------------------------------------------------------------------- backends
class EmbedderBackend(Protocol):
    """What the outcome reward needs of the frozen Embedder."""

    def embed_built(self, built: list) -> torch.Tensor: ...  # [B, D] unit norm


class DiscriminatorBackend(Protocol):
    """What the process reward needs of the frozen Discriminator: one reply per chat."""

    def answer(self, chats: list[list[dict]]) -> list[str]: ...


# --------------------------------------------------------------------------- the batch
@dataclass
class BatchScores:
    """What the outcome and process rewards share for one batch of rollouts (all [N])."""

    key: tuple
    texts: list[str]  # what the Embedder and Discriminator read of each rollout
    sim: torch.Tensor  # [Q, T] query rollouts x target rollouts
    q_idx: list[int]
    t_idx: list[int]
    outcome: list[float]
    acc: list[float]
    margin: list[float]
    paired: list[bool]
    embed_failures: int = 0
    labels: list[str] | None = None  # per rollout: its pair's label (false negatives)
    process: list[float] | None = None
    process_stats: dict[str, float] = field(default_factory=dict)


class EGRLScorer:
    """Scores one batch of rollouts once for every pair-wise reward (a one-batch cache).

    ``embedder`` / ``discriminator``: backends (:class:`LocalEmbedder`,
    :class:`ServerEmbedder`, :class:`Discriminator` over a local or server chat model, or
    anything with the same method). Picklable when its backends are.
    """

    def __init__(
        self,
        embedder: EmbedderBackend | None,
        discriminator: DiscriminatorBackend | None = None,
        *,
        acc: str = "all_in_topk",
        tau: float = 0.5,
        weighted_negatives: bool = True,
        process_value: str = "one",
        shuffle_candidates: bool = True,
        hard_negatives: int = 4,
        max_chars: int = 8192,
        embed_batch_size: int = 16,
        seed: int = 0,
        mode: str = "full",
        frame_base: int = 1,
    ) -> None:
        if process_value not in ("one", "margin"):
            raise ValueError(f"process_value must be 'one' or 'margin', not {process_value!r}")
        self.embedder = embedder
        self.discriminator = discriminator
        self.acc = acc
        self.tau = tau
        self.weighted_negatives = weighted_negatives
        self.process_value = process_value
        self.shuffle_candidates = shuffle_candidates
        self.hard_negatives = hard_negatives
        self.max_chars = max_chars
        self.embed_batch_size = embed_batch_size
        self.seed = seed
        self.mode = mode  # the Embedder's training input mode (train_embedder.tcot_input)
        self.frame_base = frame_base
        self._last: BatchScores | None = None
        self.totals: dict[str, float] = {
            "batches": 0,
            "embed_failures": 0,
            "process_calls": 0,
            "process_hits": 0,
            "process_invalid": 0,
            "process_skipped": 0,
            "masked": 0,
        }

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_last"] = None
        return state

    # ----------------------------------------------------------------- embedding
    def _embed(self, texts: list[str], items: list[Item]) -> tuple[torch.Tensor, int]:
        """[N, D] embeddings of the rollouts (zeros where even a single input failed)."""
        from ume.inputs import build_input

        built = [
            build_input(it, t, mode=self.mode, frame_base=self.frame_base)
            for it, t in zip(items, texts, strict=True)
        ]
        out: list[torch.Tensor | None] = [None] * len(built)
        failures = 0
        bs = max(1, self.embed_batch_size)
        for b0 in range(0, len(built), bs):
            idx = list(range(b0, min(b0 + bs, len(built))))
            try:
                with torch.no_grad():
                    z = self.embedder.embed_built([built[i] for i in idx]).float().cpu()
                for i, row in zip(idx, z, strict=True):
                    out[i] = row
                continue
            except Exception as e:  # one bad input must not cost the batch: retry one by one
                log.warning(
                    "Embedder failed on a batch of %d (%s); retrying one by one", len(idx), e
                )
            for i in idx:
                try:
                    with torch.no_grad():
                        out[i] = self.embedder.embed_built([built[i]]).float().cpu()[0]
                except Exception as e:
                    failures += 1
                    log.warning(
                        "Embedder failed on rollout %d (%s: %s); similarity 0",
                        i,
                        type(e).__name__,
                        e,
                    )
        if failures == len(built):
            raise RuntimeError(
                f"the Embedder failed on every one of {len(built)} rollouts; see the log"
            )
        dim = next(t for t in out if t is not None).shape[0]
        return torch.stack([t if t is not None else torch.zeros(dim) for t in out]), failures

    # ----------------------------------------------------------------- scoring
    def score(
        self,
        completions: Sequence[Any],
        pair_id: Sequence[str],
        side: Sequence[str],
        item: Sequence[str],
        label: Sequence[str] | None = None,
    ) -> BatchScores:
        """Similarities and outcome terms of the batch (cached for the other rewards);
        ``label``: per rollout, its pair's label (pairs of one label mask each other)."""
        texts = [readable(completion_text(c), self.max_chars) for c in completions]
        label = list(label) if label is not None else None
        key = (tuple(texts), tuple(pair_id), tuple(side), tuple(item), tuple(label or ()))
        if self._last is not None and self._last.key == key:
            return self._last
        n = len(texts)
        q_idx = [i for i in range(n) if side[i] == QUERY]
        t_idx = [i for i in range(n) if side[i] == TARGET]
        outcome, acc, margin, paired = [0.0] * n, [0.0] * n, [0.0] * n, [False] * n
        sim = torch.zeros(len(q_idx), len(t_idx))
        failures = 0
        if q_idx and t_idx:
            emb, failures = self._embed(texts, [_item(js) for js in item])
            sim = emb[q_idx] @ emb[t_idx].T  # [Q, T]
            q_groups = [pair_id[i] for i in q_idx]
            t_groups = [pair_id[i] for i in t_idx]
            q_lab = [label[i] for i in q_idx] if label else None
            t_lab = [label[i] for i in t_idx] if label else None
            kw = {"acc": self.acc, "tau": self.tau, "weighted": self.weighted_negatives}
            if label:
                self.totals["masked"] += sum(
                    int(_masked(q_groups[r], q_lab, r, t_groups, t_lab).sum())
                    for r in range(len(q_idx))
                )
            for rows, terms in (
                (
                    q_idx,
                    outcome_terms(
                        sim, q_groups, t_groups, **kw, row_labels=q_lab, col_labels=t_lab
                    ),
                ),
                (
                    t_idx,
                    outcome_terms(
                        sim.T, t_groups, q_groups, **kw, row_labels=t_lab, col_labels=q_lab
                    ),
                ),
            ):
                for r, i in enumerate(rows):
                    outcome[i] = float(terms.reward[r])
                    acc[i] = float(terms.acc[r])
                    margin[i] = float(terms.margin[r])
                    paired[i] = bool(terms.has_positive[r])
        unpaired = n - sum(paired)
        if unpaired:
            log.warning(
                "%d of %d rollouts have no rollout of the other side of their pair in "
                "the batch: outcome and process 0",
                unpaired,
                n,
            )
        self.totals["batches"] += 1
        self.totals["embed_failures"] += failures
        self._last = BatchScores(
            key, texts, sim, q_idx, t_idx, outcome, acc, margin, paired, failures, labels=label
        )
        return self._last

    def process(self, scores: BatchScores, pair_id: Sequence[str], step: int = 0) -> list[float]:
        """Process rewards of the batch (computed once; needs ``discriminator``)."""
        if scores.process is not None:
            return scores.process
        if self.discriminator is None:
            raise RuntimeError("the process reward needs a Discriminator backend")
        texts = scores.texts
        n = len(texts)
        rewards = [0.0] * n
        chats, meta = [], []
        for rows, cols, sim in (
            (scores.q_idx, scores.t_idx, scores.sim),
            (scores.t_idx, scores.q_idx, scores.sim.T),
        ):
            col_groups = [pair_id[j] for j in cols]
            col_labels = [scores.labels[j] for j in cols] if scores.labels else None
            for r, i in enumerate(rows):
                own = pair_id[i]
                pos = [c for c, g in enumerate(col_groups) if g == own]
                skip = None
                if col_labels is not None:
                    skip = [
                        g != own and lb == scores.labels[i]
                        for g, lb in zip(col_groups, col_labels, strict=True)
                    ]
                neg = hardest_negatives(sim[r], col_groups, own, self.hard_negatives, skip)
                if not pos or not neg:
                    self.totals["process_skipped"] += 1
                    continue
                cands = pos + neg
                if self.shuffle_candidates:
                    random.Random(f"{self.seed}:{step}:{i}").shuffle(cands)
                chats.append(
                    discriminator_messages(
                        texts[i] or "(empty)", [texts[cols[c]] or "(empty)" for c in cands]
                    )
                )
                meta.append((i, [c in pos for c in cands]))
        replies = self.discriminator.answer(chats) if chats else []
        hits = invalid = 0
        example = ""
        for (i, is_pos), reply in zip(meta, replies, strict=True):
            choice = parse_choice(reply, len(is_pos))
            if choice is None:
                invalid += 1
                example = example or f"{str(reply)[:120]!r} (candidates 1..{len(is_pos)})"
                continue
            if is_pos[choice]:
                hits += 1
                rewards[i] = 1.0 if self.process_value == "one" else scores.margin[i]
        if invalid:
            log.warning(
                "Discriminator: %d of %d answers name no valid candidate (misses), e.g. %s",
                invalid,
                len(meta),
                example,
            )
        self.totals["process_calls"] += len(meta)
        self.totals["process_hits"] += hits
        self.totals["process_invalid"] += invalid
        scores.process = rewards
        scores.process_stats = {
            "hit_rate": hits / len(meta) if meta else 0.0,
            "invalid_rate": invalid / len(meta) if meta else 0.0,
            "skipped": float(n - len(meta)),
        }
        return rewards


# --------------------------------------------------------------------------- rewards
class _Reward:
    reward_name = ""

    @property
    def __name__(self) -> str:  # TRL names the logged columns after it
        return self.reward_name


def _log(kwargs: dict, name: str, value: float) -> None:
    fn = kwargs.get("log_metric")
    if callable(fn):
        fn(name, float(value))


def frac_zero_std(values: Sequence[float], pair_id: Sequence[str], side: Sequence[str]) -> float:
    """Fraction of GRPO groups (a prompt's rollouts: same pair, same side) whose values of one
    reward are all equal: groups that reward teaches nothing. TRL logs this for the weighted
    total only (``frac_reward_zero_std``); this is the same per reward.

    >>> frac_zero_std([1, 1, 0, 1], ["p", "p", "p", "p"], ["qry", "qry", "pos", "pos"])
    0.5
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for v, p, s in zip(values, pair_id, side, strict=True):
        groups.setdefault((p, s), []).append(float(v))
    if not groups:
        return 0.0
    flat = sum(max(g) - min(g) <= 1e-9 for g in groups.values())
    return flat / len(groups)


def _log_spread(kwargs: dict, name: str, values: Sequence[float]) -> None:
    """Log ``<name>/frac_zero_std`` of a reward's values (needs the pair_id and side columns)."""
    if kwargs.get("pair_id") is not None and kwargs.get("side") is not None:
        _log(
            kwargs,
            f"{name}/frac_zero_std",
            frac_zero_std(values, kwargs["pair_id"], kwargs["side"]),
        )


@register("format")
class FormatReward(_Reward):
    """1.0 when a rollout has the T-CoT format, else 0.0 (:func:`~ume.tcot.format.check_format`).

    ``variant``: ``"tags"`` (release) or ``"tags+evidence"`` (paper: also the evidence key of
    the side's modality, read from the ``item`` column, with key frames inside the side's
    frames). Rollouts longer than ``max_chars`` characters get 0 whatever they hold.

    >>> r = FormatReward(variant="tags+evidence")
    >>> t = '<thinking> x {"bbox_2d": [0, 0, 9, 9]} </thinking><rethink> y </rethink><answer> z </answer>'
    >>> r([[], []], [t, t], item=['{"modality": "image"}', '{"modality": "text"}'])
    [1.0, 0.0]
    """

    def __init__(self, variant: str = "tags+evidence", max_chars: int = 65536) -> None:
        if variant not in ("tags", "tags+evidence"):
            raise ValueError(f"variant must be 'tags' or 'tags+evidence', not {variant!r}")
        self.variant = variant
        self.max_chars = max_chars

    def __call__(self, prompts, completions, item=None, **kwargs) -> list[float]:
        out = []
        for k, c in enumerate(completions):
            text = completion_text(c)
            modality, num_frames = None, None
            if item is not None and self.variant == "tags+evidence":
                try:
                    side = json.loads(item[k])
                    modality = side.get("modality")
                    # key frames must lie inside the video the Reasoner saw
                    num_frames = len(side.get("frames") or ()) if modality == "video" else None
                except (TypeError, ValueError, AttributeError):
                    modality, num_frames = None, None
            ok = len(text) <= self.max_chars and check_format(
                text, variant=self.variant, modality=modality, num_frames=num_frames
            )
            out.append(1.0 if ok else 0.0)
        _log_spread(kwargs, "format", out)
        return out


class _PairReward(_Reward):
    def __init__(self, scorer: EGRLScorer) -> None:
        self.scorer = scorer

    def _scores(self, completions, kwargs) -> BatchScores:
        missing = [c for c in ("pair_id", "side", "item") if kwargs.get(c) is None]
        if missing:
            raise ValueError(
                f"the {self.reward_name} reward needs the dataset columns {missing}; build the "
                "dataset with ume.train.egrl.rl_dataset"
            )
        return self.scorer.score(
            completions, kwargs["pair_id"], kwargs["side"], kwargs["item"], kwargs.get("label")
        )


@register("outcome")
class OutcomeReward(_PairReward):
    """Acc_k x (mean similarity to own positives - E_tau[similarity to in-batch negatives]).

    Needs the columns ``pair_id``, ``side`` and ``item``; see the module docstring.

    >>> class Const:  # an Embedder that sees nothing: every similarity 1
    ...     def embed_built(self, built): return torch.ones(len(built), 2) / 2 ** 0.5
    >>> r = OutcomeReward(EGRLScorer(Const()))
    >>> r([[]] * 4, ["a", "b", "c", "d"], pair_id=["p", "p", "q", "q"],
    ...   side=["qry", "pos", "qry", "pos"], item=['{"modality": "text"}'] * 4)
    [0.0, 0.0, 0.0, 0.0]
    """

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        s = self._scores(completions, kwargs)
        paired = [i for i, p in enumerate(s.paired) if p]
        if paired:
            _log(kwargs, "outcome/acc", sum(s.acc[i] for i in paired) / len(paired))
            _log(kwargs, "outcome/margin", sum(s.margin[i] for i in paired) / len(paired))
        _log(kwargs, "outcome/embed_failures", s.embed_failures)
        _log_spread(kwargs, "outcome", s.outcome)
        return s.outcome


@register("process")
class ProcessReward(_PairReward):
    """1 (paper) or the margin (release) when the Discriminator picks an own positive.

    >>> class Pick1:  # always names candidate 1
    ...     def answer(self, chats): return ["1"] * len(chats)
    >>> class Const:
    ...     def embed_built(self, built): return torch.ones(len(built), 2) / 2 ** 0.5
    >>> r = ProcessReward(EGRLScorer(Const(), Pick1(), shuffle_candidates=False))
    >>> r([[]] * 4, ["a", "b", "c", "d"], pair_id=["p", "p", "q", "q"],
    ...   side=["qry", "pos", "qry", "pos"], item=['{"modality": "text"}'] * 4)
    [1.0, 1.0, 1.0, 1.0]
    """

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        s = self._scores(completions, kwargs)
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0) or 0)
        out = self.scorer.process(s, kwargs["pair_id"], step=step)
        for k, v in s.process_stats.items():
            _log(kwargs, f"process/{k}", v)
        _log_spread(kwargs, "process", out)
        return out


def reward_functions(cfg, scorer: EGRLScorer | None) -> tuple[list, list[float]]:
    """The reward callables and their weights for an :class:`~ume.config.EGRLConfig`.

    The ablation switches drop a reward (it is then neither computed nor logged).
    """
    max_chars = 32 * cfg.max_completion_length
    funcs: list = [FormatReward(cfg.format_variant, max_chars=max_chars)]
    weights = [cfg.format_weight]
    if cfg.use_process_reward:
        funcs.append(ProcessReward(scorer))
        weights.append(cfg.process_weight)
    if cfg.use_outcome_reward:
        funcs.append(OutcomeReward(scorer))
        weights.append(cfg.outcome_weight)
    return funcs, weights


def make_scorer(
    cfg,
    embedder: EmbedderBackend | None,
    discriminator,
    seed: int = 0,
    *,
    mode: str = "full",
    frame_base: int = 1,
) -> EGRLScorer:
    """The :class:`EGRLScorer` of an :class:`~ume.config.EGRLConfig`; ``mode``,
    ``frame_base``: the Embedder's input as it was trained (its stage record)."""
    return EGRLScorer(
        embedder,
        discriminator,
        acc=cfg.outcome_acc,
        tau=cfg.outcome_tau,
        weighted_negatives=cfg.weighted_negatives,
        process_value=cfg.process_value,
        shuffle_candidates=cfg.shuffle_candidates,
        hard_negatives=cfg.hard_negatives,
        max_chars=32 * cfg.max_completion_length,
        embed_batch_size=cfg.embed_batch_size,
        seed=seed,
        mode=mode,
        frame_base=frame_base,
    )


__all__ = [
    "REWARDS",
    "BatchScores",
    "EGRLScorer",
    "FormatReward",
    "OutcomeReward",
    "OutcomeTerms",
    "ProcessReward",
    "completion_text",
    "frac_zero_std",
    "get_reward",
    "hardest_negatives",
    "item_json",
    "make_scorer",
    "outcome_terms",
    "readable",
    "register",
    "reward_functions",
]
