"""T-CoTs at evaluation: the Reasoner writes one per query and candidate, cached by content.

Reasoning dominates the cost of an evaluation (an 8B Reasoner writing up to 2048 tokens per
item), so every T-CoT is written once and kept on disk:

* the **key** hashes the Reasoner's identity (the checksum of its folder, or the model a
  server serves), the generation parameters and the prompt *content* (the chat text with
  every image replaced by the sha256 of its bytes) -- see :mod:`ume.fingerprints`;
* the **cache** (``<cache_dir>/tcot/<namespace>/part-*.jsonl``) is shared by all tasks,
  runs and ablation variants; each flush writes a new shard atomically, so concurrent jobs
  never write the same file and an interrupted job keeps what it flushed.

One Reasoner, :class:`ChatReasoner` (``identity``, ``params``, ``generate(chats)``), over
a chat model: local (:func:`local_reasoner`: batched ``generate`` with left padding, prompts
sorted by size) or a server (:func:`server_reasoner`: OpenAI-compatible, vLLM, by URL).

>>> stats = CacheStats("reasoning")
>>> tcots = CachedReasoner(reasoner, cache).reason(items, roles, stats)  # doctest: +SKIP
>>> stats.computed, stats.cached                                          # doctest: +SKIP
(120, 0)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ume.clients import ChatModel, OnResult, generate_each
from ume.errors import ConfigError
from ume.eval.stats import CacheStats
from ume.fingerprints import bytes_sha256, chat_fingerprint, content_key, folder_identity
from ume.io import write_json
from ume.items import Item
from ume.store import ResultStore

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the interface
class Reasoner(Protocol):
    identity: str  # what the weights are: "hf:<folder checksum>" | "server:<model>"
    params: dict[str, Any]  # generation parameters that change the output

    def generate(
        self, chats: list[list[dict]], *, on_result: OnResult | None = None
    ) -> list[tuple[str, int]]:
        """One ``(text, completion tokens)`` per chat, in order; ``on_result(i, reply)`` as
        each arrives (a Reasoner that cannot tell calls it for all replies at the end)."""
        ...


# --------------------------------------------------------------------------- cache
class TCoTCache:
    """Content-keyed T-CoTs on disk, ``<root>/<namespace>/<group>/seg-*.jsonl`` (or memory
    only): an append-only :class:`~ume.store.ResultStore` of ``[tcot, tokens]`` per key.

    Each T-CoT is appended as it arrives (a job that dies keeps every T-CoT it had), records
    carry a checksum (a tail cut by a crash is dropped with a warning, the rest kept), and a
    lookup reads only the keys it asks for: its ``group`` (the task) first, the other groups
    only for what is still missing -- a task never loads the keys of every other task, and
    values are read once per segment, not once per item.
    """

    def __init__(self, root: str | os.PathLike | None, namespace: str) -> None:
        self.dir = Path(root) / namespace if root is not None else None
        self.store = ResultStore(self.dir)

    @property
    def group(self) -> str:
        return self.store.group

    @group.setter
    def group(self, group: str) -> None:
        self.store.group = group

    def find(self, keys: Sequence[str]) -> set[str]:
        return self.store.find(keys)

    def __contains__(self, key: str) -> bool:
        return key in self.store

    def __len__(self) -> int:
        return len(self.store)

    def get_many(self, keys: Sequence[str]) -> list[tuple[str, int]]:
        return [(str(t), int(n)) for t, n in self.store.get_many(keys)]

    def get(self, key: str) -> tuple[str, int] | None:
        got = self.store.get(key)
        return None if got is None else (str(got[0]), int(got[1]))

    def put_one(self, key: str, value: tuple[str, int]) -> None:
        """Append one T-CoT at once (thread-safe)."""
        self.store.put(key, [value[0], int(value[1])])

    def put(self, entries: dict[str, tuple[str, int]]) -> None:
        for k, v in entries.items():
            self.put_one(k, v)

    def close(self) -> None:
        self.store.close()


#: Version of the cache layout in every namespace: caches of another layout are not read.
CACHE_FORMAT = "store-v1"


def cache_namespace(identity: str, params: dict[str, Any]) -> str:
    """Folder name of one Reasoner's cache: a short hash of its identity and parameters."""
    return content_key("tcot-namespace", CACHE_FORMAT, identity, params)[:16]


# --------------------------------------------------------------------------- the cached step
class CachedReasoner:
    """T-CoTs for items through a content-keyed cache; only missing ones are generated, and
    each is stored as it arrives (``flush_every`` only batches a Reasoner that cannot report
    replies one by one)."""

    def __init__(self, reasoner: Reasoner, cache: TCoTCache, *, flush_every: int = 256) -> None:
        self.reasoner = reasoner
        self.cache = cache
        self.flush_every = max(1, flush_every)

    @property
    def group(self) -> str:
        return self.cache.group

    @group.setter
    def group(self, group: str) -> None:
        """What the next calls are about (a task): looked up first, written to."""
        self.cache.group = group

    def key(self, chat: list[dict]) -> str:
        return content_key(
            "tcot", self.reasoner.identity, self.reasoner.params, chat_fingerprint(chat)
        )

    def reason(
        self, items: Sequence[Item], roles: Sequence[str], stats: CacheStats | None = None
    ) -> list[str]:
        """One T-CoT per item (``roles``: ``"query"`` | ``"candidate"``), in order."""
        from ume.tcot.prompts import tcot_messages

        t0 = time.perf_counter()
        st = CacheStats("reasoning")
        chats = [tcot_messages(it, r) for it, r in zip(items, roles, strict=True)]
        keys = [self.key(c) for c in chats]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        st.requested, st.unique = len(keys), len(first)
        present = self.cache.find(list(first))
        todo = [k for k in first if k not in present]
        cached = [k for k in first if k in present]
        st.cached = len(cached)
        st.tokens_cached = sum(n for _, n in self.cache.get_many(cached))

        def on_result(i: int, out: tuple[str, int], chunk: list[str]) -> None:
            self.cache.put_one(chunk[i], out)
            st.computed += 1
            st.tokens_generated += int(out[1])

        takes = _takes_on_result(self.reasoner.generate)
        step = len(todo) if takes and _reports_each(self.reasoner) else self.flush_every
        for start in range(0, len(todo), max(1, step)):
            chunk = todo[start : start + step]
            chunk_chats = [chats[first[k]] for k in chunk]
            if takes:
                self.reasoner.generate(
                    chunk_chats, on_result=lambda i, out, chunk=chunk: on_result(i, out, chunk)
                )
            else:  # a Reasoner without on_result: store its chunk when it returns
                for i, out in enumerate(self.reasoner.generate(chunk_chats)):
                    on_result(i, out, chunk)
        st.seconds = time.perf_counter() - t0
        if stats is not None:
            stats.add(st)
        return [t for t, _ in self.cache.get_many(keys)]


def _reports_each(reasoner: Any) -> bool:
    """Does ``reasoner.generate`` report each reply as it arrives (a :class:`ChatReasoner`
    over a chat model that does)? Otherwise replies are stored after each chunk."""
    if isinstance(reasoner, ChatReasoner):
        return _takes_on_result(reasoner.model.generate)
    return False


def _takes_on_result(fn: Any) -> bool:
    import inspect

    try:
        return "on_result" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# --------------------------------------------------------------------------- the Reasoner
def control_tokens(tokenizer) -> list[str]:
    """The tokenizer's special and added tokens (``<emb>``, vision pads, chat markers), the
    T-CoT tags excepted, longest first."""
    from ume.tcot.format import TAG_STRINGS

    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        special.add(str(getattr(tok, "content", tok)))
    return sorted((t for t in special if t and t not in TAG_STRINGS), key=len, reverse=True)


def strip_tokens(text: str, tokens: Sequence[str]) -> str:
    """``text`` without any of ``tokens`` (each replaced by a space), spaces squeezed.

    >>> strip_tokens("a <|image_pad|>red<emb> car", ["<|image_pad|>", "<emb>"])
    'a red car'
    """
    for t in tokens:
        if t in text:
            text = text.replace(t, " ")
    return " ".join(text.split()) if tokens else text


class ChatReasoner:
    """The Reasoner at evaluation: a chat model (local or server) and what its T-CoTs are
    keyed by (``identity``, ``params``). ``strip``: tokens removed from every T-CoT."""

    def __init__(
        self,
        model: ChatModel,
        *,
        identity: str,
        params: dict[str, Any],
        max_new_tokens: int,
        strip: Sequence[str] = (),
    ) -> None:
        self.model = model
        self.identity = identity
        self.params = params
        self.max_new_tokens = max_new_tokens
        self.strip = list(strip)

    def generate(
        self, chats: list[list[dict]], *, on_result: OnResult | None = None
    ) -> list[tuple[str, int]]:
        def clean(out: tuple[str, int]) -> tuple[str, int]:
            return strip_tokens(out[0], self.strip), out[1]

        def report(i: int, out: tuple[str, int]) -> None:
            if on_result is not None:
                on_result(i, clean(out))

        outs = generate_each(
            self.model, chats, max_new_tokens=self.max_new_tokens, on_result=report
        )
        return [clean(o) for o in outs]


def local_reasoner(
    folder: str | os.PathLike | None,
    *,
    identity: str,
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    model: Any = None,
    processor: Any = None,
    budget: Any = None,
) -> ChatReasoner:
    """A local transformers Reasoner (:class:`~ume.models.chat.LocalChatModel`), identified as
    ``hf:<identity>`` (the checksum of its folder); ``budget``: the pixel budget of its
    processor (config ``budgets``, :class:`~ume.inputs.PixelBudget`), part of the cache key."""
    from ume.models.chat import LocalChatModel

    chat = LocalChatModel(
        folder,
        role="reasoner",
        dtype=dtype,
        attn_implementation=attn_implementation,
        batch_size=batch_size,
        temperature=temperature,
        seed=seed,
        model=model,
        processor=processor,
        budget=budget,
    )
    params: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        # generated control tokens (vision pads, <emb>, chat markers) are removed: in an
        # Embedder input they would break the image-token count or the <emb> position
        "strip": "special-v1",
        # precision and attention kernel change greedy outputs: part of the cache key
        "dtype": chat.dtype,
        "attn": chat.attn_implementation,
    }
    if budget is not None:  # the resolution the Reasoner sees changes what it writes
        params["budgets"] = budget.to_dict()
    if temperature > 0:
        params["seed"] = seed
    return ChatReasoner(
        chat,
        identity=f"hf:{identity}",
        params=params,
        max_new_tokens=max_new_tokens,
        strip=control_tokens(chat.tokenizer),
    )


def server_reasoner(cfg: Any, *, max_new_tokens: int, temperature: float = 0.0) -> ChatReasoner:
    """An OpenAI-compatible chat-completions server (vLLM) reached by URL.

    Its identity is the served model name (``eval.server.model``): serve distinct weights
    under distinct names, or the cache cannot tell them apart.
    """
    from ume.clients import ServerClient

    return ChatReasoner(
        ServerClient(cfg, "eval.server", temperature=temperature),
        identity=f"server:{cfg.model}",
        params={"max_new_tokens": max_new_tokens, "temperature": temperature},
        max_new_tokens=max_new_tokens,
    )


# --------------------------------------------------------------------------- oracle
class OracleTCoTs:
    """Ground-truth T-CoTs at evaluation (the diagnostic variant ``oracle_tcot``): the oracle
    annotator, without its wrong or missing evidence, writes each item's T-CoT from the
    ground truth the synthetic benchmark records (``Item.gt``). The upper bound a Reasoner
    chases; not a model result. Same ``reason`` interface as :class:`CachedReasoner`
    (nothing to cache: writing costs microseconds)."""

    identity = "oracle"

    def __init__(self) -> None:
        from ume.annotate.backends import OracleAnnotator
        from ume.config import OracleConfig

        self.annotator = OracleAnnotator(
            OracleConfig(wrong_evidence_rate=0.0, missing_evidence_rate=0.0, seed=0)
        )
        self.params: dict[str, Any] = {"wrong_evidence_rate": 0.0, "missing_evidence_rate": 0.0}
        self.reasoner = self  # what provenance reads (CachedReasoner.reasoner.identity)

    @staticmethod
    def missing_truth(items: Sequence[Item]) -> int:
        """How many of ``items`` carry no ground truth (real benchmarks: all of them)."""
        return sum(1 for it in items if not it.gt)

    def reason(
        self, items: Sequence[Item], roles: Sequence[str], stats: CacheStats | None = None
    ) -> list[str]:
        t0 = time.perf_counter()
        out = self.annotator.tcot(items, roles)
        if stats is not None:
            stats.add(
                CacheStats(
                    "reasoning",
                    requested=len(items),
                    unique=len(items),
                    computed=len(items),
                    seconds=time.perf_counter() - t0,
                )
            )
        return out


# --------------------------------------------------------------------------- construction
def resolve_model_folder(path: str | os.PathLike) -> Path:
    """The model folder a rule input points at: a ``backbone.json`` (base models), a folder
    holding one, or a model folder itself (trained stages)."""
    from ume.models.stage import read_backbone

    p = Path(path)
    if p.is_file() and p.name.endswith(".json"):
        return Path(read_backbone(p)["path"])
    if (p / "backbone.json").is_file() and not (p / "config.json").is_file():
        return Path(read_backbone(p / "backbone.json")["path"])
    if not p.is_dir():
        raise ConfigError(f"{p}: not a model folder or backbone.json")
    return p


def model_identity(folder: str | os.PathLike, memo_dir: str | os.PathLike | None) -> str:
    """:func:`~ume.fingerprints.folder_identity` of a model folder; with ``memo_dir`` its
    per-file hashes are remembered on disk by (path, size, mtime), so that later processes
    (every evaluation job loads the same models) only stat the files."""
    if memo_dir is None:
        return folder_identity(folder)
    folder = Path(folder).resolve()
    memo_file = Path(memo_dir) / f"{bytes_sha256(str(folder).encode())[:24]}.json"
    memo: dict[str, list[Any]] = {}
    if memo_file.is_file():
        try:
            memo = json.loads(memo_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            memo = {}
    before = dict(memo)
    identity = folder_identity(folder, memo)
    if memo != before:
        write_json(memo_file, memo)
    return identity


def make_reasoner(
    cfg: Any, model_path: str | os.PathLike | None, *, identity_memo: str | os.PathLike | None
) -> Reasoner:
    """The Reasoner of ``cfg.eval`` (backend ``hf`` from ``model_path``, or ``server``)."""
    ev = cfg.eval
    if ev.reasoner_backend == "server":
        from ume.models.backbone import check_served_model

        # the served name is the cache identity: it must be served, before any request
        check_served_model(ev.server, "eval.server", what="Reasoner")
        return server_reasoner(
            ev.server, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature
        )
    if model_path is None:
        raise ConfigError("eval.reasoner_backend 'hf' needs the Reasoner model (--reasoner)")
    return hf_reasoner(cfg, model_path, identity_memo=identity_memo)


def hf_reasoner(
    cfg: Any, model_path: str | os.PathLike, *, identity_memo: str | os.PathLike | None
) -> ChatReasoner:
    """The Reasoner at ``model_path`` in this process, with evaluation's settings (its T-CoTs
    share evaluation's cache: ``ume serve`` uses it too)."""
    from ume.inputs import PixelBudget

    ev = cfg.eval
    folder = resolve_model_folder(model_path)
    m = cfg.models.reasoner
    return local_reasoner(
        folder,
        identity=model_identity(folder, identity_memo),
        max_new_tokens=ev.max_new_tokens,
        temperature=ev.temperature,
        seed=cfg.seed,
        batch_size=ev.batch_size,
        dtype=m.dtype,
        attn_implementation=m.attn_implementation,
        budget=PixelBudget.from_config(cfg.budgets),
    )
