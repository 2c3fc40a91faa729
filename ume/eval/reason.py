"""T-CoTs at evaluation: the Reasoner writes one per query and candidate, cached by content.

Reasoning dominates the cost of an evaluation (an 8B Reasoner writing up to 2048 tokens per
item), so every T-CoT is written once and kept on disk:

* the **key** hashes the Reasoner's identity (the checksum of its folder, or the model a
  server serves), the generation parameters and the prompt *content* (the chat text with
  every image replaced by the sha256 of its bytes) -- see :mod:`ume.eval.keys`;
* the **cache** (``<cache_dir>/tcot/<namespace>/part-*.jsonl``) is shared by all tasks,
  runs and ablation variants; each flush writes a new shard atomically, so concurrent jobs
  never write the same file and an interrupted job keeps what it flushed.

Two backends behind one small interface (``identity``, ``params``, ``generate(chats)``):
:class:`HFReasoner` (batched ``generate`` with left padding, prompts sorted by length) and
:class:`ServerReasoner` (an OpenAI-compatible server such as vLLM, by URL).

>>> stats = ReasonStats()
>>> tcots = CachedReasoner(reasoner, cache).reason(items, roles, stats)  # doctest: +SKIP
>>> stats.generated, stats.cached                                         # doctest: +SKIP
(120, 0)
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ume.data.pairs import Item
from ume.errors import ConfigError
from ume.eval.keys import chat_fingerprint, content_key
from ume.io import atomic_path, write_text

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- bookkeeping
@dataclass
class ReasonStats:
    """Counts of one :meth:`CachedReasoner.reason` call (or several, accumulated)."""

    requested: int = 0  # items asked for (duplicates included)
    unique: int = 0  # distinct prompts among them
    generated: int = 0  # T-CoTs the Reasoner wrote now
    cached: int = 0  # distinct prompts answered from the cache
    tokens_generated: int = 0  # tokens written now
    tokens_cached: int = 0  # tokens the cache saved
    seconds: float = 0.0  # wall time, cache look-ups included

    def add(self, other: ReasonStats) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds_per_item"] = self.seconds / self.requested if self.requested else 0.0
        return d


class Reasoner(Protocol):
    identity: str  # what the weights are: "hf:<folder checksum>" | "server:<model>"
    params: dict[str, Any]  # generation parameters that change the output

    def generate(self, chats: list[list[dict]]) -> list[tuple[str, int]]:
        """One ``(text, completion tokens)`` per chat, in order."""
        ...


# --------------------------------------------------------------------------- cache
class TCoTCache:
    """Content-keyed T-CoTs on disk: ``<root>/<namespace>/part-*.jsonl`` (or memory only).

    Each shard line is ``{"key", "tcot", "tokens"}``; beside each shard an index
    ``part-*.idx`` (``key offset length tokens`` per line, written last) lets a process read
    only the keys at start and fetch a T-CoT's text when it is asked for: a task never reads
    the T-CoTs of every other task (8B Reasoners write kilobytes per item). A shard without
    its index (written by an interrupted process, or by hand) is read whole.
    :meth:`put` writes one new shard and its index, each atomically.
    """

    def __init__(self, root: str | os.PathLike | None, namespace: str) -> None:
        self.dir = Path(root) / namespace if root is not None else None
        self._mem: dict[str, tuple[str, int]] = {}
        self._where: dict[str, tuple[Path, int, int, int]] = {}  # key -> shard, offset, len, tokens
        self.shards_read = 0
        if self.dir is not None and self.dir.is_dir():
            for shard in sorted(self.dir.glob("part-*.jsonl")):
                self._read(shard)

    def _read(self, shard: Path) -> None:
        idx = shard.with_suffix(".idx")
        if idx.is_file():
            try:
                for line in idx.read_text(encoding="utf-8").splitlines():
                    key, off, length, tokens = line.split()
                    self._where[key] = (shard, int(off), int(length), int(tokens))
                self.shards_read += 1
                return
            except ValueError:
                log.warning("%s: unreadable index; reading the shard instead", idx)
        with open(shard, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                try:
                    rec = json.loads(line)
                    self._mem[rec["key"]] = (rec["tcot"], int(rec.get("tokens", 0)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("%s: line %d is not a cache entry; ignored", shard, n)
        self.shards_read += 1

    def __contains__(self, key: str) -> bool:
        return key in self._mem or key in self._where

    def __len__(self) -> int:
        return len(self._mem.keys() | self._where.keys())

    def get(self, key: str) -> tuple[str, int] | None:
        if key in self._mem:
            return self._mem[key]
        where = self._where.get(key)
        if where is None:
            return None
        shard, off, length, tokens = where
        with open(shard, "rb") as fh:
            fh.seek(off)
            rec = json.loads(fh.read(length))
        self._mem[key] = (rec["tcot"], tokens)
        return self._mem[key]

    def put(self, entries: dict[str, tuple[str, int]]) -> Path | None:
        """Add entries; write them as one new shard + index (atomic). Returns the shard."""
        if not entries:
            return None
        self._mem.update(entries)
        if self.dir is None:
            return None
        stem = f"part-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        lines, index, off = [], [], 0
        for k, (t, n) in entries.items():
            line = (json.dumps({"key": k, "tcot": t, "tokens": n}, sort_keys=True) + "\n").encode()
            lines.append(line)
            index.append(f"{k} {off} {len(line)} {n}")
            off += len(line)
        shard = self.dir / f"{stem}.jsonl"
        with atomic_path(shard) as tmp:
            tmp.write_bytes(b"".join(lines))
        write_text(self.dir / f"{stem}.idx", "\n".join(index) + "\n")  # last: marks it indexed
        return shard


def cache_namespace(identity: str, params: dict[str, Any]) -> str:
    """Folder name of one Reasoner's cache: a short hash of its identity and parameters."""
    return content_key("tcot-namespace", identity, params)[:16]


# --------------------------------------------------------------------------- the cached step
class CachedReasoner:
    """T-CoTs for items through a content-keyed cache; only missing ones are generated."""

    def __init__(self, reasoner: Reasoner, cache: TCoTCache, *, flush_every: int = 256) -> None:
        self.reasoner = reasoner
        self.cache = cache
        self.flush_every = max(1, flush_every)

    def key(self, chat: list[dict]) -> str:
        return content_key(
            "tcot", self.reasoner.identity, self.reasoner.params, chat_fingerprint(chat)
        )

    def reason(
        self, items: Sequence[Item], roles: Sequence[str], stats: ReasonStats | None = None
    ) -> list[str]:
        """One T-CoT per item (``roles``: ``"query"`` | ``"candidate"``), in order."""
        from ume.tcot.prompts import tcot_messages

        t0 = time.perf_counter()
        st = ReasonStats()
        chats = [tcot_messages(it, r) for it, r in zip(items, roles, strict=True)]
        keys = [self.key(c) for c in chats]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        st.requested, st.unique = len(keys), len(first)
        todo = [k for k in first if k not in self.cache]
        for k in first:
            if k in self.cache:
                st.cached += 1
                st.tokens_cached += self.cache.get(k)[1]  # type: ignore[index]
        for start in range(0, len(todo), self.flush_every):
            chunk = todo[start : start + self.flush_every]
            outs = self.reasoner.generate([chats[first[k]] for k in chunk])
            self.cache.put(dict(zip(chunk, outs, strict=True)))
            st.generated += len(chunk)
            st.tokens_generated += sum(n for _, n in outs)
        st.seconds = time.perf_counter() - t0
        if stats is not None:
            stats.add(st)
        return [self.cache.get(k)[0] for k in keys]  # type: ignore[index]


# --------------------------------------------------------------------------- HF backend
def _chat_size(chat: list[dict]) -> tuple[int, int]:
    """(images, text characters) of a chat: a cheap proxy of its prompt length."""
    n_img = n_chr = 0
    for msg in chat:
        content = msg.get("content")
        if isinstance(content, str):
            n_chr += len(content)
            continue
        for part in content or ():
            if part.get("type") == "image" or "image" in part:
                n_img += 1
            else:
                n_chr += len(part.get("text", ""))
    return n_img, n_chr


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


class HFReasoner:
    """A local transformers Reasoner: batched ``generate`` with left padding.

    Chats are sorted by (images, text length) before batching so that a batch pads little;
    results come back in the input order.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        identity: str,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
        batch_size: int = 16,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        device: str | None = None,
        model: Any = None,
        processor: Any = None,
    ) -> None:
        if model is None:
            from ume.models.backbone import load_backbone

            model, processor = load_backbone(
                folder,
                dtype=dtype,
                attn_implementation=attn_implementation,
                role="reasoner",
                device=device,
            )
        self.model, self.processor = model, processor
        self.identity = f"hf:{identity}"
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        # "strip": generated control tokens (vision pads, <emb>, chat markers) are removed:
        # in an Embedder input they would break the image-token count or the <emb> position.
        self.params: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "strip": "special-v1",
            # precision and attention kernel change greedy outputs: part of the cache key
            "dtype": dtype,
            "attn": attn_implementation,
        }
        if temperature > 0:
            self.params["seed"] = seed
        self._strip = control_tokens(self.processor.tokenizer)

    def count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, chats: list[list[dict]]) -> list[tuple[str, int]]:
        from ume.models.backbone import chat_generate

        order = sorted(range(len(chats)), key=lambda i: _chat_size(chats[i]))
        out: list[tuple[str, int] | None] = [None] * len(chats)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            texts = chat_generate(
                self.model,
                self.processor,
                [chats[i] for i in idx],
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                seed=self.seed + start,
            )
            for i, t in zip(idx, texts, strict=True):
                out[i] = (strip_tokens(t, self._strip), self.count_tokens(t))
        return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- server backend
class ServerReasoner:
    """An OpenAI-compatible chat-completions server (vLLM) reached by URL.

    Its identity is the served model name (``eval.server.model``): serve distinct weights
    under distinct names, or the cache cannot tell them apart.
    """

    def __init__(self, cfg: Any, *, max_new_tokens: int, temperature: float = 0.0) -> None:
        from ume.serving import ServerClient

        self.client = ServerClient(cfg, "eval.server")
        self.cfg = cfg
        self.identity = f"server:{cfg.model}"
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.params = {"max_new_tokens": max_new_tokens, "temperature": temperature}

    def _post(self, chat: list[dict]) -> tuple[str, int]:
        return self.client.chat(chat, max_tokens=self.max_new_tokens, temperature=self.temperature)

    def generate(self, chats: list[list[dict]]) -> list[tuple[str, int]]:
        return self.client.map(self._post, chats)


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

        self.annotator = OracleAnnotator(OracleConfig(0.0, 0.0, 0))
        self.params: dict[str, Any] = {"wrong_evidence_rate": 0.0, "missing_evidence_rate": 0.0}
        self.reasoner = self  # what provenance reads (CachedReasoner.reasoner.identity)

    @staticmethod
    def missing_truth(items: Sequence[Item]) -> int:
        """How many of ``items`` carry no ground truth (real benchmarks: all of them)."""
        return sum(1 for it in items if not it.gt)

    def reason(
        self, items: Sequence[Item], roles: Sequence[str], stats: ReasonStats | None = None
    ) -> list[str]:
        t0 = time.perf_counter()
        out = self.annotator.tcot(items, roles)
        if stats is not None:
            stats.add(
                ReasonStats(
                    requested=len(items),
                    unique=len(items),
                    generated=len(items),
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


def make_reasoner(
    cfg: Any, model_path: str | os.PathLike | None, *, identity_memo: str | os.PathLike | None
) -> Reasoner:
    """The Reasoner of ``cfg.eval`` (backend ``hf`` from ``model_path``, or ``server``)."""
    ev = cfg.eval
    if ev.reasoner_backend == "server":
        return ServerReasoner(
            ev.server, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature
        )
    if model_path is None:
        raise ConfigError("eval.reasoner_backend 'hf' needs the Reasoner model (--reasoner)")
    from ume.eval.keys import folder_identity

    folder = resolve_model_folder(model_path)
    m = cfg.models.reasoner
    return HFReasoner(
        folder,
        identity=folder_identity(folder, identity_memo),
        max_new_tokens=ev.max_new_tokens,
        temperature=ev.temperature,
        seed=cfg.seed,
        batch_size=ev.batch_size,
        dtype=m.dtype,
        attn_implementation=m.attn_implementation,
        device=_device(),
    )


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None
