"""What ``ume serve`` computes: models, caches, request checks and the batching worker.

One worker thread owns the models. Requests are checked and decoded on the HTTP threads
(a malformed request or an image that does not decode is a :class:`RequestError`, a 4xx,
before it reaches a model), then queued as jobs; the worker takes the jobs that arrived
within ``batch_wait_s`` of the first (up to ``max_batch`` jobs) and runs each kind as one
batch: the T-CoTs of every item of every embedding job in one Reasoner call, their inputs in
one Embedder call, the chats of every chat job with the same model and settings in one
``generate``. A batch that fails is retried job by job, so one request's failure is its own.

The evaluation caches are used as evaluation uses them (:func:`ume.eval.reason.hf_reasoner`,
:func:`ume.eval.encode.make_encoder`: the same identities, parameters and keys), under the
group ``serve``: a T-CoT or an embedding computed by evaluation is served from the cache,
and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures as cf
import hashlib
import inspect
import io
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ume.errors import UmeError
from ume.io import atomic_path, make_folder
from ume.items import Item

log = logging.getLogger(__name__)

ROLES = ("reasoner", "embedder", "discriminator")


class RequestError(UmeError):
    """A request the server refuses: ``status`` (4xx) and a message saying what to fix."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_items: int = 64  # inputs of an embeddings request, chats of nothing else
    max_body_bytes: int = 32 << 20  # request body, images included
    max_new_tokens: int = 4096  # a chat completion's max_tokens
    max_input_tokens: int = 32768  # a rendered prompt (chat, or embeddings in chat form)
    max_frames: int = 64  # frames of one video item
    # folders whose files a request may name (file:// URL or absolute path); none: base64 only
    # (vLLM's --allowed-local-media-path; a trusted-clients setting)
    allowed_local_media: tuple[Path, ...] = ()


@dataclass
class Job:
    kind: str  # "items" | "messages" | "chat"
    payload: dict[str, Any]
    future: cf.Future = field(default_factory=cf.Future)


# --------------------------------------------------------------------------- media
NETWORK_REFUSED = "the server fetches no network URLs; send base64 or a file:// URL"


def _image_bytes(ref: Any, what: str, allowed: Sequence[Path]) -> tuple[Path | None, bytes]:
    """A request's image reference -> (its local path, or None when sent inline; its bytes).

    A ``file://`` URL or an absolute path is read only inside ``allowed`` (resolved: no
    ``..`` or symlink leads out); ``data:`` URLs and bare base64 are decoded."""
    if not isinstance(ref, str) or not ref:
        raise RequestError(400, f"{what}: give an image as a file:// URL, a path or base64")
    if ref.startswith(("http://", "https://")):
        raise RequestError(400, f"{what}: {NETWORK_REFUSED}")
    if ref.startswith("file://") or (ref.startswith("/") and not ref.startswith("data:")):
        path = Path(unquote(urlparse(ref).path)) if ref.startswith("file://") else Path(ref)
        if not allowed:
            raise RequestError(
                403,
                f"{what}: this server reads no local files; send the image as base64, or start "
                "`ume serve` with --allowed-local-media-path FOLDER (a folder holding it; for "
                "trusted clients only)",
            )
        real = path.resolve()
        if not any(real.is_relative_to(a) for a in allowed):
            raise RequestError(
                403,
                f"{what}: {path} is outside the folders this server may read "
                f"(--allowed-local-media-path {' '.join(map(str, allowed))}); send it as base64",
            )
        if not real.is_file():
            raise RequestError(400, f"{what}: {path} is not a file on the server")
        return path, real.read_bytes()
    b64 = ref.split(",", 1)[1] if ref.startswith("data:") else ref
    try:
        return None, base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(400, f"{what}: not valid base64 ({e})") from None


def decode_image_ref(
    ref: Any, what: str, media_dir: Path | None, allowed: Sequence[Path] = ()
) -> str:
    """A request's image (``file://`` URL, absolute path, ``data:`` URL or bare base64) as a
    file path, checked to decode. Bytes sent inline are written once, named by their hash,
    under ``media_dir`` (content-keyed: the caches key images by their bytes); local files are
    read only inside ``allowed`` (:func:`_image_bytes`)."""
    path, data = _image_bytes(ref, what, allowed)
    fmt = _check_decodes(data, what)
    if path is not None:
        return str(path)
    if media_dir is None:
        raise RequestError(400, f"{what}: inline images need a media folder (--cache-dir)")
    digest = hashlib.sha256(data).hexdigest()  # type: ignore[arg-type]
    out = media_dir / digest[:2] / f"{digest}.{fmt.lower()}"
    if not out.is_file():
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)  # type: ignore[arg-type]
    return str(out)


def _check_decodes(data: bytes, what: str) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.format or "PNG"
    except Exception as e:  # truncated, not an image, a decompression bomb ...
        raise RequestError(
            400, f"{what}: the image does not decode ({type(e).__name__}: {e})"
        ) from None


def _pil(ref: Any, what: str, allowed: Sequence[Path] = ()):
    """A request's image as a PIL image in RGB (chat messages, embeddings in chat form)."""
    from PIL import Image

    if not isinstance(ref, str):
        raise RequestError(400, f"{what}: image_url.url must be a string")
    _, data = _image_bytes(ref, what, allowed)
    _check_decodes(data, what)
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def openai_to_hf(
    messages: Any, what: str = "messages", allowed: Sequence[Path] = ()
) -> tuple[list[dict], list]:
    """OpenAI chat messages -> HF content-part messages (image parts bare) and their images."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, f"{what}: give a non-empty list of chat messages")
    out, images = [], []
    for m, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or not isinstance(msg.get("role"), str):
            raise RequestError(400, f"{what}[{m}]: a message is {{'role': ..., 'content': ...}}")
        content = msg.get("content")
        if isinstance(content, str):
            out.append({"role": msg["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(400, f"{what}[{m}].content: a string or a list of parts")
        parts = []
        for p, part in enumerate(content):
            where = f"{what}[{m}].content[{p}]"
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text" and isinstance(part.get("text"), str):
                parts.append({"type": "text", "text": part["text"]})
            elif kind in ("image_url", "image"):
                url = part.get("image_url", part.get("image"))
                url = url.get("url") if isinstance(url, Mapping) else url
                images.append(_pil(url, where, allowed))
                parts.append({"type": "image"})
            else:
                raise RequestError(400, f"{where}: a part is text or image_url, got {part!r:.80}")
        out.append({"role": msg["role"], "content": parts})
    return out, images


# --------------------------------------------------------------------------- the service
class Service:
    """The served models and the worker that batches their work (see the module doc).

    ``names``: served model name per role (``reasoner``, ``embedder``, ``discriminator``);
    ``paths``: model folder or ``backbone.json`` per role (the Discriminator is optional).
    """

    def __init__(
        self,
        cfg: Any,
        paths: Mapping[str, str | os.PathLike | None],
        names: Mapping[str, str],
        *,
        cache_dir: str | os.PathLike | None,
        limits: Limits | None = None,
        batch_wait_s: float = 0.01,
        max_batch: int = 64,
        chat_template: str | None = None,
    ) -> None:
        from ume.eval.encode import make_encoder
        from ume.eval.reason import CachedReasoner, TCoTCache, cache_namespace, hf_reasoner

        self.cfg = cfg
        self.limits = limits or Limits()
        self.allowed = tuple(Path(a).resolve() for a in self.limits.allowed_local_media)
        self.batch_wait_s = batch_wait_s
        self.max_batch = max(1, max_batch)
        self.names = {r: n for r, n in names.items() if paths.get(r) is not None}
        self.roles = {n: r for r, n in self.names.items()}
        from ume.eval.reason import resolve_model_folder

        # the weights behind each name (vLLM's "root" in /v1/models: clients check it)
        self.folders = {r: str(resolve_model_folder(paths[r])) for r in self.names}  # type: ignore[arg-type]
        cache = Path(cache_dir) if cache_dir is not None else None
        self.media_dir = make_folder(cache / "serve-media") if cache is not None else None
        memo = cache / "identity" if cache is not None else None
        self.mode = cfg.train_embedder.tcot_input
        self.encoder = make_encoder(
            cfg, paths["embedder"], cache / "emb" if cache else None, identity_memo=memo
        )  # type: ignore[arg-type]
        self.encoder.group = "serve"
        self.embedder = self.encoder.embedder
        self.chat_template = chat_template  # the default of the chat form (vLLM: --chat-template)
        reasoner = hf_reasoner(cfg, paths["reasoner"], identity_memo=memo)  # type: ignore[arg-type]
        tcots = TCoTCache(
            cache / "tcot" if cache else None, cache_namespace(reasoner.identity, reasoner.params)
        )
        self.reasoner = CachedReasoner(reasoner, tcots)
        self.reasoner.group = "serve"
        self.chat_models: dict[str, Any] = {self.names["reasoner"]: reasoner.model}
        if paths.get("discriminator") is not None:
            from ume.eval.reason import resolve_model_folder
            from ume.models.chat import LocalChatModel

            m = cfg.models.discriminator
            self.chat_models[self.names["discriminator"]] = LocalChatModel(
                resolve_model_folder(paths["discriminator"]),  # type: ignore[arg-type]
                role="discriminator",
                dtype=m.dtype,
                attn_implementation=m.attn_implementation,
                batch_size=cfg.eval.batch_size,
            )
        for chat in self.chat_models.values():
            chat.loaded()  # load at start: the first request does not pay for it
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="ume-serve-worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ bookkeeping
    def count(self, what: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[what] += n

    def health(self) -> dict[str, Any]:
        with self._stats_lock:
            stats = dict(self.stats)
        return {
            "status": "ok",
            "models": dict(self.names),
            "queued_jobs": self._jobs.qsize(),
            "embedder_input": self.mode,
            "stats": stats,
        }

    def model_role(self, name: Any, endpoint: str, allowed: Sequence[str]) -> str:
        """The role of the model ``name`` a request asks for (404 when nobody serves it)."""
        role = self.roles.get(name) if isinstance(name, str) else None
        if role is None:
            raise RequestError(
                404,
                f"model {name!r} is not served here; served: "
                + ", ".join(f"{n} ({r})" for r, n in self.names.items()),
                kind="model_not_found",
            )
        if role not in allowed:
            want = " or ".join(self.names[r] for r in allowed if r in self.names)
            raise RequestError(400, f"{endpoint}: model {name!r} is the {role}; ask {want}")
        return role

    def _submit(self, kind: str, payload: dict[str, Any], timeout: float | None) -> Any:
        job = Job(kind, payload)
        self._jobs.put(job)
        return job.future.result(timeout=timeout)

    def close(self) -> None:
        self._jobs.put(None)
        self._worker.join(timeout=30)
        self.reasoner.cache.close()

    # ------------------------------------------------------------------ requests
    def embed_items(self, body: Mapping[str, Any], timeout: float | None = None) -> dict:
        """``/v1/embeddings`` with ``input``: items -> T-CoTs -> the builder -> embeddings."""
        raw = body.get("input")
        if isinstance(raw, str | Mapping):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise RequestError(400, "input: give a string, an item object, or a list of them")
        if len(raw) > self.limits.max_items:
            raise RequestError(
                400,
                f"input: {len(raw)} items; at most {self.limits.max_items} per request "
                "(split the request)",
            )
        reasoning = body.get("reasoning", True)
        if not isinstance(reasoning, bool):
            raise RequestError(400, "reasoning: true (write a T-CoT first) or false")
        mode = body.get("mode") or (self.mode if reasoning else "raw")
        if not reasoning:
            mode = "raw"
        from ume.inputs import MODES

        if mode not in MODES:
            raise RequestError(400, f"mode: {mode!r}; one of {', '.join(MODES)}")
        inst = body.get("instruction", "")
        role = body.get("role", "query")
        items, roles = [], []
        for i, entry in enumerate(raw):
            item, r = self._item(entry, f"input[{i}]", inst, role)
            items.append(item)
            roles.append(r)
        self.count("embedding_items", len(items))
        vecs, tcots = self._submit("items", {"items": items, "roles": roles, "mode": mode}, timeout)
        return {"vectors": vecs, "tcots": tcots, "mode": mode}

    def _item(self, entry: Any, what: str, inst: Any, role: Any) -> tuple[Item, str]:
        if isinstance(entry, str):
            entry = {"text": entry}
        if not isinstance(entry, Mapping):
            raise RequestError(400, f"{what}: a string or an object with text/image/frames")
        known = {"text", "image", "frames", "instruction", "role", "modality"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise RequestError(400, f"{what}: unknown field(s) {unknown}; known: {sorted(known)}")
        text = entry.get("text", "")
        inst = entry.get("instruction", inst)
        role = entry.get("role", role)
        if not isinstance(text, str) or not isinstance(inst, str):
            raise RequestError(400, f"{what}: text and instruction are strings")
        if role not in ("query", "candidate"):
            raise RequestError(400, f"{what}.role: 'query' or 'candidate', got {role!r}")
        image, frames = entry.get("image"), entry.get("frames")
        if image is not None and frames is not None:
            raise RequestError(400, f"{what}: an item has an image or frames, not both")
        if frames is not None:
            if not isinstance(frames, list) or not frames:
                raise RequestError(400, f"{what}.frames: a non-empty list of images")
            if len(frames) > self.limits.max_frames:
                raise RequestError(
                    400, f"{what}.frames: {len(frames)} frames; at most {self.limits.max_frames}"
                )
            paths = tuple(
                decode_image_ref(f, f"{what}.frames[{k}]", self.media_dir, self.allowed)
                for k, f in enumerate(frames)
            )
            return Item(modality="video", inst=inst, text=text, frames=paths), role
        if image is not None:
            modality = entry.get("modality", "image")
            if modality not in ("image", "document"):
                raise RequestError(400, f"{what}.modality: 'image' or 'document' for an image")
            path = decode_image_ref(image, f"{what}.image", self.media_dir, self.allowed)
            return Item(modality=modality, inst=inst, text=text, image=path), role
        if not text and not inst:
            raise RequestError(400, f"{what}: empty item (no text, image or frames)")
        return Item(modality="text", inst=inst, text=text), role

    def embed_messages(self, body: Mapping[str, Any], timeout: float | None = None) -> dict:
        """``/v1/embeddings`` in vLLM's chat form: render with the request's (or the server's,
        or the model's) chat template, pool the last token, L2-normalise."""
        msgs, images = openai_to_hf(body.get("messages"), allowed=self.allowed)
        template = body.get("chat_template") or self.chat_template
        agp = body.get("add_generation_prompt", False)
        cont = body.get("continue_final_message", False)
        if not isinstance(agp, bool) or not isinstance(cont, bool):
            raise RequestError(400, "add_generation_prompt / continue_final_message: booleans")
        proc = self.embedder.processor
        try:
            text = proc.apply_chat_template(
                msgs,
                chat_template=template,
                tokenize=False,
                add_generation_prompt=agp,
                continue_final_message=cont,
            )
        except Exception as e:  # a Jinja error in the request's template, say
            raise RequestError(
                400, f"chat_template: cannot render ({type(e).__name__}: {e})"
            ) from None
        n = self._prompt_tokens(text, images)
        self.count("embedding_chats")
        vec = self._submit("messages", {"text": text, "images": images}, timeout)
        return {"vector": vec, "prompt_tokens": n}

    def _prompt_tokens(self, text: str, images: list) -> int:
        proc = self.embedder.processor
        try:
            ids = proc(text=[text], images=images or None, return_tensors="pt")["input_ids"]
        except Exception as e:
            raise RequestError(400, f"messages: the processor refuses them ({e})") from None
        n = int(ids.shape[1])
        if n > self.limits.max_input_tokens:
            raise RequestError(
                400,
                f"the prompt has {n} tokens; at most {self.limits.max_input_tokens} "
                "(fewer or smaller images, shorter text)",
            )
        return n

    def chat(self, body: Mapping[str, Any], timeout: float | None = None) -> dict:
        """``/v1/chat/completions`` with the Reasoner or the Discriminator."""
        name = body.get("model")
        self.model_role(name, "chat/completions", ("reasoner", "discriminator"))
        msgs, images = openai_to_hf(body.get("messages"), allowed=self.allowed)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 256))
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise RequestError(400, f"max_tokens: a positive integer, got {max_tokens!r}")
        if max_tokens > self.limits.max_new_tokens:
            raise RequestError(
                400, f"max_tokens: {max_tokens}; at most {self.limits.max_new_tokens}"
            )
        temperature = body.get("temperature", 0.0) or 0.0
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise RequestError(400, f"temperature: a number in [0, 2], got {temperature!r}")
        seed = body.get("seed", 0)
        if not isinstance(seed, int):
            raise RequestError(400, "seed: an integer")
        # images back into their parts, as the local chat model takes them
        pending = iter(images)
        chat = [
            {
                **m,
                "content": [
                    {"type": "image", "image": next(pending)} if p.get("type") == "image" else p
                    for p in m["content"]
                ],
            }
            if isinstance(m["content"], list)
            else m
            for m in msgs
        ]
        model = self.chat_models[name]
        proc = model.loaded()[1]
        text = proc.apply_chat_template(
            [_bare(m) for m in msgs], tokenize=False, add_generation_prompt=True
        )
        n_prompt = self._count_chat_tokens(proc, text, images)
        self.count("chat_requests")
        reply, n = self._submit(
            "chat",
            {
                "model": name,
                "chat": chat,
                "max_tokens": max_tokens,
                "temperature": float(temperature),
                "seed": seed,
            },
            timeout,
        )
        self.count("chat_completed")
        return {
            "text": reply,
            "completion_tokens": n,
            "prompt_tokens": n_prompt,
            "finish_reason": "length" if n >= max_tokens else "stop",
        }

    def _count_chat_tokens(self, proc, text: str, images: list) -> int:
        ids = proc(text=[text], images=images or None, return_tensors="pt")["input_ids"]
        n = int(ids.shape[1])
        if n > self.limits.max_input_tokens:
            raise RequestError(
                400, f"the prompt has {n} tokens; at most {self.limits.max_input_tokens}"
            )
        return n

    # ------------------------------------------------------------------ the worker
    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._jobs.put(None)
                    break
                batch.append(nxt)
            self.count("batches")
            for kind, run in (
                ("items", self._run_items),
                ("messages", self._run_messages),
                ("chat", self._run_chats),
            ):
                jobs = [j for j in batch if j.kind == kind]
                if jobs:
                    self._run_isolated(run, jobs)

    def _run_isolated(self, run, jobs: list[Job]) -> None:
        """``run(jobs)``; when it fails, each job alone, so that only the failing one fails."""
        try:
            run(jobs)
            return
        except Exception as e:
            if len(jobs) == 1:
                log.exception("a %s job failed", jobs[0].kind)
                jobs[0].future.set_exception(e)
                return
        for j in jobs:
            if not j.future.done():
                self._run_isolated(run, [j])

    def _run_items(self, jobs: list[Job]) -> None:
        items = [it for j in jobs for it in j.payload["items"]]
        roles = [r for j in jobs for r in j.payload["roles"]]
        want = [j.payload["mode"] != "raw" for j in jobs for _ in j.payload["items"]]
        tcots: list[str | None] = [None] * len(items)
        idx = [i for i, w in enumerate(want) if w]
        if idx:
            got = self.reasoner.reason([items[i] for i in idx], [roles[i] for i in idx])
            for i, t in zip(idx, got, strict=True):
                tcots[i] = t
        modes = [j.payload["mode"] for j in jobs for _ in j.payload["items"]]
        vecs: list[Any] = [None] * len(items)
        for mode in dict.fromkeys(modes):
            sel = [i for i, m in enumerate(modes) if m == mode]
            z = self.encoder.encode([items[i] for i in sel], [tcots[i] for i in sel], mode)
            for i, row in zip(sel, z, strict=True):
                vecs[i] = row
        start = 0
        for j in jobs:
            n = len(j.payload["items"])
            j.future.set_result((vecs[start : start + n], tcots[start : start + n]))
            start += n

    def _run_messages(self, jobs: list[Job]) -> None:
        import torch
        import torch.nn.functional as F

        emb = self.embedder
        proc = emb.processor
        texts = [j.payload["text"] for j in jobs]
        images = [im for j in jobs for im in j.payload["images"]]
        batch = proc(
            text=texts, images=images or None, padding=True, padding_side="left",
            return_tensors="pt",
        )  # fmt: skip
        inner = emb.base_model.model
        accepted = inspect.signature(type(inner).forward).parameters
        kw = {k: v.to(emb.device) for k, v in batch.items() if k in accepted}
        if "pixel_values" in kw:
            kw["pixel_values"] = kw["pixel_values"].to(emb.dtype)
        if "use_cache" in accepted:
            kw["use_cache"] = False
        with torch.no_grad():
            hidden = inner(**kw).last_hidden_state  # [B, T, D], left-padded
        # the last token of each rendered prompt, as vLLM's LAST pooling (normalize: true)
        z = F.normalize(hidden[:, -1].float(), dim=-1).cpu().numpy()
        for j, row in zip(jobs, z, strict=True):
            j.future.set_result(row)

    def _run_chats(self, jobs: list[Job]) -> None:
        from ume.models.chat import LocalChatModel

        groups: dict[tuple, list[Job]] = {}
        for j in jobs:
            p = j.payload
            groups.setdefault(
                (p["model"], p["max_tokens"], p["temperature"], p["seed"]), []
            ).append(j)
        for (name, max_tokens, temperature, seed), group in groups.items():
            base = self.chat_models[name]
            model = base
            if temperature != base.temperature or seed != base.seed:
                m, p = base.loaded()
                model = LocalChatModel(
                    role=base.role,
                    dtype=base.dtype,
                    batch_size=base.batch_size,
                    temperature=temperature,
                    seed=seed,
                    model=m,
                    processor=p,
                )
            outs = model.generate([j.payload["chat"] for j in group], max_new_tokens=max_tokens)
            for j, out in zip(group, outs, strict=True):
                j.future.set_result(out)


def _bare(msg: dict) -> dict:
    """A message with image parts bare (``{"type": "image"}``), for rendering."""
    if isinstance(msg["content"], str):
        return msg
    return {
        **msg,
        "content": [{"type": "image"} if p.get("type") == "image" else p for p in msg["content"]],
    }
