"""Annotator backends behind one interface: oracle (ground truth), local HF MLLM, chat server.

An annotator does two things for the data-construction stage:

* ``tcot(items, roles)`` — write one T-CoT per item (query side or candidate side);
* ``judge(pairs)`` — the relevance filter: for each (query T-CoT, positive T-CoT), are the two
  obviously irrelevant or conflicting? ``True`` = "Yes" (drop), ``False`` = "No" (keep),
  ``None`` = the answer could not be read (counted, and the pair is kept: the filter only
  drops what the judge clearly rejects).

The HF and server backends are one :class:`ChatAnnotator` over a chat model (local or
server) with the prompts of :mod:`ume.tcot.prompts`, so all three share one prompt module and
one output format. Their replies are appended, as they arrive, to a content-keyed store in
the evaluation cache folder (``<eval.cache_dir>/annotate/``): a stage that fails keeps them,
and its rerun asks only for the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ume.clients import ChatModel, ServerClient, generate_each
from ume.config import OracleConfig, ServerConfig
from ume.errors import ConfigError
from ume.fingerprints import chat_fingerprint, content_key, input_identity
from ume.inputs import PixelBudget
from ume.items import Item
from ume.store import ResultStore
from ume.suites.synth.scenes import COLORS, SHAPES
from ume.tcot import prompts
from ume.tcot.format import EVIDENCE_KEY, render_tcot

log = logging.getLogger(__name__)


class Annotator(Protocol):
    name: str

    def tcot(self, items: Sequence[Item], roles: Sequence[str]) -> list[str]: ...

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]: ...


# --------------------------------------------------------------------------- oracle
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "and",
        "or",
        "is",
        "are",
        "with",
        "for",
        "from",
        "this",
        "that",
        "it",
        "its",
        "which",
        "what",
        "where",
        "how",
        "one",
        "shows",
        "show",
        "image",
        "video",
        "page",
        "document",
        "frame",
        "frames",
        "find",
        "retrieve",
    ]
)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


class OracleAnnotator:
    """Writes well-formed, *compact* T-CoTs from the ground truth the synthetic generator records.

    Compact, because a tiny Reasoner must be able to write them within a short generation
    limit (the embedded default's T-CoTs are about 20-60 tiny tokens; ``tcot_tokens`` in the
    split manifest): the grammar is the paper's, the prose is cut to what matters::

        <thinking> red triangle top-left {"bbox_2d": [47, 47, 281, 281]} </thinking>
        <rethink> red triangle </rethink>
        <answer> red triangle top-left </answer>

    ``<thinking>`` names what is seen (the ground-truth keywords, or the content words of the
    description) and ends with the modality's evidence (for text the keyword list is the
    evidence, so nothing precedes it); ``<rethink>`` keeps the identity of the thing (its first
    two keywords: colour and shape); ``<answer>`` is every keyword, in order.

    A seeded fraction of T-CoTs gets *wrong* evidence (boxes moved off the object, other key
    frames, unrelated keywords) and another fraction *no* evidence, so later stages meet
    imperfect annotations; half of the wrong ones also misname a colour (a conflicting answer
    for the relevance filter to catch). The draw for an item depends only on (seed, item
    content), not on its position in the table, so reruns and subsets agree.

    >>> item = Item("image", text="", image="/x.png",
    ...             gt={"boxes": [[100, 100, 400, 400]], "description": "a red circle"})
    >>> print(OracleAnnotator(OracleConfig(wrong_evidence_rate=0.0, missing_evidence_rate=0.0)).tcot([item], ["query"])[0])
    <thinking> red circle {"bbox_2d": [100, 100, 400, 400]} </thinking>
    <rethink> red circle </rethink>
    <answer> red circle </answer>
    """

    name = "oracle"

    def __init__(self, cfg: OracleConfig, frame_base: int = 1) -> None:
        self.cfg = cfg
        self.frame_base = frame_base
        self.counts = {
            "wrong_evidence": 0,
            "missing_evidence": 0,
            "conflicting_answer": 0,
            "no_ground_truth": 0,
        }

    def _rng(self, item: Item, role: str) -> random.Random:
        key = json.dumps(
            [self.cfg.seed, role, item.modality, item.inst, item.text, item.image, item.frames]
        )
        return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))

    def _one(self, item: Item, role: str) -> str:
        rng = self._rng(item, role)
        gt = item.gt or {}
        if not gt:
            self.counts["no_ground_truth"] += 1
        desc = gt.get("description") or item.text or "the content"
        keywords = list(dict.fromkeys(gt.get("keywords") or _ordered_content_words(desc)))
        u = rng.random()
        wrong = u < self.cfg.wrong_evidence_rate
        missing = not wrong and u < self.cfg.wrong_evidence_rate + self.cfg.missing_evidence_rate
        evidence: dict[str, Any] | None
        key = EVIDENCE_KEY[item.modality]
        if missing:
            evidence = None
            self.counts["missing_evidence"] += 1
        elif key == "bbox_2d":
            boxes = [list(map(int, b)) for b in gt.get("boxes") or []]
            if wrong:
                boxes = [_moved_box(b, rng) for b in boxes] or [_random_box(rng)]
            evidence = {key: boxes[0] if len(boxes) == 1 else boxes} if boxes else None
        elif key == "key_frames":
            frames = list(gt.get("key_frames") or [])
            n = max(len(item.frames), max(frames, default=0))
            if wrong and n:
                others = [f for f in range(1, n + 1) if f not in frames] or list(range(1, n + 1))
                frames = sorted(rng.sample(others, k=min(len(others), max(1, len(frames)))))
            # ground truth is 1-based; shift if the configured text base differs
            evidence = {key: [f - 1 + self.frame_base for f in frames]} if frames else None
        else:
            kws = keywords
            if wrong:
                kws = rng.sample(_DISTRACT_WORDS, k=min(3, len(_DISTRACT_WORDS)))
            evidence = {key: kws} if kws else None
        if wrong:
            self.counts["wrong_evidence"] += 1
            if rng.random() < 0.5:  # half of the wrong annotations also misname a colour
                keywords, changed = _swap_colour_word(keywords, rng)
                self.counts["conflicting_answer"] += changed
        words = " ".join(keywords) or desc
        thinking = "" if key == "text_keywords" and evidence else words
        return render_tcot(thinking, " ".join(keywords[:2]) or desc, words, evidence)

    def tcot(self, items: Sequence[Item], roles: Sequence[str]) -> list[str]:
        return [self._one(it, r) for it, r in zip(items, roles, strict=True)]

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        """Conflicting ("Yes") when the answers share no content word, or both name colours
        (or shapes) and share none; ``None`` when an answer is missing."""
        from ume.tcot.format import parse_tcot

        out: list[bool | None] = []
        for q, p in pairs:
            qa, pa = parse_tcot(q).answer, parse_tcot(p).answer
            if not qa or not pa:
                out.append(None)
                continue
            qw, pw = _content_words(qa), _content_words(pa)
            clash = any(
                (qw & vocab) and (pw & vocab) and not (qw & pw & vocab)
                for vocab in (_COLOURS, _SHAPES)
            )
            out.append(clash or not (qw & pw))
        return out


_COLOURS = frozenset(COLORS)
_SHAPES = frozenset(SHAPES)


def tcot_words(text: str) -> set[str]:
    """The content words a T-CoT states: its reasoning, rethink, answer and keyword evidence
    (box coordinates and JSON keys are not words); a text without any T-CoT tag is read whole.
    """
    from ume.tcot.format import parse_tcot

    p = parse_tcot(text)
    if not (p.thinking or p.rethink or p.answer):
        return _content_words(text)
    return _content_words(" ".join([p.reasoning, p.rethink, p.answer, *p.evidence.keywords]))


def oracle_agreement(a: set[str], b: set[str]) -> float:
    """How well two T-CoTs' words (:func:`tcot_words`) agree, by the synthetic world's rules:
    the Jaccard overlap of their content words, minus 1 when both name colours (or shapes)
    and share none (a red circle is not a blue one, however many other words they share).

    >>> oracle_agreement({"red", "circle"}, {"red", "circle", "left"}) > 0.6
    True
    >>> oracle_agreement({"red", "circle"}, {"blue", "circle"}) < 0
    True
    """
    if not a or not b:
        return 0.0
    score = len(a & b) / len(a | b)
    for vocab in (_COLOURS, _SHAPES):
        if (a & vocab) and (b & vocab) and not (a & b & vocab):
            score -= 1.0
    return score


def _swap_colour_word(words: list[str], rng: random.Random) -> tuple[list[str], int]:
    """Replace the first colour of ``words`` by another colour; returns (words, 1 if changed)."""
    out = list(words)
    for i, w in enumerate(out):
        if w in _COLOURS:
            out[i] = rng.choice(sorted(_COLOURS - {w}))
            return out, 1
    return out, 0


def _ordered_content_words(text: str) -> list[str]:
    """Content words of ``text`` in order of appearance, without repeats (hyphenated positions
    such as ``top-left`` stay one word)."""
    words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
    return list(dict.fromkeys(w for w in words if w not in _STOP and len(w) > 1))


_DISTRACT_WORDS = ["purple", "hexagon", "bottom", "fading", "spiral", "orange", "diagonal"]


def _moved_box(b: list[int], rng: random.Random) -> list[int]:
    w, h = max(b[2] - b[0], 50), max(b[3] - b[1], 50)
    for _ in range(20):
        x1, y1 = rng.randint(0, 1000 - w), rng.randint(0, 1000 - h)
        if abs(x1 - b[0]) > w // 2 or abs(y1 - b[1]) > h // 2:
            return [x1, y1, x1 + w, y1 + h]
    return [1000 - w, 1000 - h, 1000, 1000]


def _random_box(rng: random.Random) -> list[int]:
    x1, y1 = rng.randint(0, 700), rng.randint(0, 700)
    return [x1, y1, x1 + rng.randint(100, 300), y1 + rng.randint(100, 300)]


# --------------------------------------------------------------------------- chat models
class ChatAnnotator:
    """An MLLM writing T-CoTs and verdicts with the shared prompts: a local model
    (:class:`~ume.models.chat.LocalChatModel`, backend ``hf``) or a chat server
    (:class:`~ume.clients.ServerClient`, backend ``server``).

    With a ``store`` (a :class:`~ume.store.ResultStore`) and the model's ``identity``, each
    reply is appended to the store as it arrives, keyed by the identity, the generation
    parameters and the chat's content: a stage that dies (a server gone after its retries,
    a killed job) keeps every reply it had, and its rerun asks only for the missing ones.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        name: str,
        max_new_tokens: int,
        identity: str | None = None,
        store: ResultStore | None = None,
        limit_key: str | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.identity = identity
        self.store = store if identity is not None else None
        self.counts = {"requested": 0, "stored_before": 0, "generated": 0}
        # what the annotation stage checks for T-CoTs cut by the limit (ume.tcot.limits)
        self.limit = (limit_key, max_new_tokens) if limit_key else None

    @property
    def tokenizer(self):
        """The model's tokenizer (a local model's; a server's is not at hand: None)."""
        return getattr(self.model, "tokenizer", None)

    def _params(self, max_new_tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "temperature": getattr(self.model, "temperature", None),
        }
        if params["temperature"]:
            params["seed"] = getattr(self.model, "seed", None)
        return params

    def _texts(self, chats: list[list[dict]], max_new_tokens: int, group: str) -> list[str]:
        if self.store is None:
            return [t for t, _ in self.model.generate(chats, max_new_tokens=max_new_tokens)]
        self.store.group = group
        params = self._params(max_new_tokens)
        keys = [
            content_key("annotate-chat", self.identity, params, chat_fingerprint(c)) for c in chats
        ]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        present = self.store.find(list(first))
        todo = [k for k in first if k not in present]
        self.counts["requested"] += len(first)
        self.counts["stored_before"] += len(present)
        if present:
            log.info("%s: %d of %d replies found in %s", group, len(present), len(first),
                     self.store.root)  # fmt: skip

        def keep(i: int, out: tuple[str, int]) -> None:
            self.store.put(todo[i], [out[0], int(out[1])])  # type: ignore[union-attr]
            self.counts["generated"] += 1

        if todo:
            generate_each(
                self.model,
                [chats[first[k]] for k in todo],
                max_new_tokens=max_new_tokens,
                on_result=keep,
            )
        self.store.close()
        return [str(v[0]) for v in self.store.get_many(keys)]

    def tcot(self, items: Sequence[Item], roles: Sequence[str]) -> list[str]:
        chats = [prompts.tcot_messages(it, r) for it, r in zip(items, roles, strict=True)]
        return self._texts(chats, self.max_new_tokens, "tcot")

    def judge(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        chats = [prompts.relevance_messages(q, p) for q, p in pairs]
        return [prompts.parse_yes_no(t) for t in self._texts(chats, JUDGE_MAX_TOKENS, "judge")]


#: tokens of a relevance verdict ("Yes" / "No")
JUDGE_MAX_TOKENS = 8


def annotation_store(cache_dir: str | os.PathLike | None, identity: str) -> ResultStore | None:
    """Where an annotator's replies are kept: ``<cache_dir>/annotate/<hash of identity>/``
    (shared by runs, as the evaluation caches; keyed by content, so never stale)."""
    if cache_dir is None:
        return None
    return ResultStore(Path(cache_dir) / "annotate" / content_key("annotate-ns", identity)[:16])


def local_annotator(
    model_dir: str | Path,
    *,
    batch_size: int,
    max_new_tokens: int,
    temperature: float,
    dtype: str = "float32",
    attn: str = "sdpa",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    budget: Any = None,
) -> ChatAnnotator:
    """The annotator MLLM (``models.annotator``) in this process; with ``cache_dir``, its
    replies are kept as they come (:func:`annotation_store`); ``budget``: its processor's
    pixel budget (config ``budgets``), part of its identity."""
    from ume.models.chat import LocalChatModel

    model = LocalChatModel(
        model_dir,
        role="annotator",
        dtype=dtype,
        attn_implementation=attn,
        batch_size=batch_size,
        temperature=temperature,
        seed=seed,
        budget=budget,
    )
    # the model's record (backbone.json: its weights' checksum), and what changes its outputs
    identity = f"hf:{input_identity(model_dir)}:{model.dtype}:{model.attn_implementation}"
    if budget is not None:  # the resolution the annotator sees
        b = budget.to_dict()
        identity += f":px{b['image_min_tokens']}-{b['image_max_tokens']}"
        identity += f"/{b['video_min_tokens']}-{b['video_max_tokens']}"
    return ChatAnnotator(
        model,
        name="hf",
        max_new_tokens=max_new_tokens,
        identity=identity,
        limit_key="annotate.hf.max_new_tokens",
        store=annotation_store(cache_dir, identity),
    )


def server_annotator(
    cfg: ServerConfig, temperature: float = 0.0, *, cache_dir: str | os.PathLike | None = None
) -> ChatAnnotator:
    """An OpenAI-compatible chat-completions server (vLLM, say) reached by URL; with
    ``cache_dir``, its replies are kept as they arrive (:func:`annotation_store`). The served
    model's name is its identity: serve other weights under another name."""
    client = ServerClient(cfg, "annotate.server", temperature=temperature)
    identity = f"server:{cfg.model}"
    return ChatAnnotator(
        client,
        name="server",
        max_new_tokens=cfg.max_tokens,
        identity=identity,
        limit_key="annotate.server.max_tokens",
        store=annotation_store(cache_dir, identity),
    )


def make_annotator(cfg, backend: str, model_dir: str | Path | None = None) -> Annotator:
    """Build the annotator named by ``backend`` from a full :class:`ume.config.Config`."""
    if backend == "oracle":
        return OracleAnnotator(cfg.annotate.oracle)
    if backend == "hf":
        if model_dir is None:
            raise ConfigError("annotate.backend: hf needs the annotator model (models.annotator)")
        a = cfg.annotate.hf
        m = cfg.models.annotator
        return local_annotator(
            model_dir,
            batch_size=a.batch_size,
            max_new_tokens=a.max_new_tokens,
            temperature=a.temperature,
            dtype=m.dtype,
            attn=m.attn_implementation,
            seed=cfg.seed,
            cache_dir=cfg.eval_cache_dir,
            budget=PixelBudget.from_config(cfg.budgets),
        )
    if backend == "server":
        from ume.models.backbone import check_served_model

        # the served name is the annotations' identity: it must be served, before any request
        check_served_model(cfg.annotate.server, "annotate.server", what="annotator")
        return server_annotator(cfg.annotate.server, cache_dir=cfg.eval_cache_dir)
    raise ConfigError(f"annotate.backend: {backend!r} is not one of 'oracle', 'hf', 'server'")
