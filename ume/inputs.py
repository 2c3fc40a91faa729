"""The Embedder's input: one builder for training, the RL reward and evaluation alike.

The paper's release builds the Embedder input in three places, and its trainer silently drops
the T-CoT. Here :func:`build_input` is the only place that turns an :class:`~ume.items.Item`
and its T-CoT into a chat, and :func:`collate` the only place that turns chats into model
tensors. The user turn holds, in order (``../shared/docs/method.md``, "T-CoT format")::

    original visuals (image / page / "Frame k:" + frame ...)   instruction + text
    <thinking> ... </thinking>
    evidence visuals (a crop per box, or "Frame k:" + each key frame)
    <rethink> ... </rethink><answer> ... </answer>
    Summarize the above content in one word:

and the assistant turn is ``<emb>``, whose last-layer hidden state is the embedding.

Modes (:data:`MODES`, config ``train_embedder.tcot_input``): ``full``; ``answer_only`` (only
``<answer>``); ``no_evidence`` (the T-CoT text without its evidence JSON and visuals);
``raw`` (no T-CoT at all).

Bad input never raises: a missing or undecodable image or frame, a box outside the image, a
key frame that is not there, a T-CoT that cannot be read -- each is recorded in
``BuiltInput.problems`` (prefixed by its kind, see :func:`problem_counts`) and the input is
built without the piece that failed (an unreadable T-CoT gives the raw input).
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ume.errors import ConfigError
from ume.items import Item
from ume.tcot.evidence import materialise
from ume.tcot.format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DEFAULT_FRAME_BASE,
    RETHINK_CLOSE,
    RETHINK_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    parse_tcot,
)

MODES = ("full", "answer_only", "no_evidence", "raw")
EMB_TOKEN = "<emb>"
SUMMARIZE = "Summarize the above content in one word:"
MAX_ASPECT = 200  # Qwen-VL image processors refuse images with a longer/shorter side over 200
# Problem kinds, the prefix of each problem string (counted by problem_counts for manifests).
PROBLEM_KINDS = ("visual", "tcot", "evidence")
# Tokens that must never come from text: a vision pad inside a T-CoT (a model can write one)
# would make the processor expect an image that is not there; chat markers would end the
# turn; a stray <emb> would move the embedding position.
RESERVED_TOKENS = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    EMB_TOKEN,
)
# What a model (or a data set) writes that must not reach the Embedder as text: Qwen-VL
# grounding tokens around boxes and object references (the coordinates between them stay),
# image placeholders of other chat formats (<|image_1|>, <image>, <video>), and the
# summarize line, which only the builder writes (once, last).
MODEL_WRITTEN_TOKENS = (
    "<|box_start|>",
    "<|box_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<image>",
    "<video>",
)
_RESERVED_RE = re.compile(
    "|".join(
        [
            *(re.escape(t) for t in (*RESERVED_TOKENS, *MODEL_WRITTEN_TOKENS)),
            r"<\|image_\d+\|>",
            re.escape(SUMMARIZE.rstrip(":")) + r"\s*:?",
        ]
    ),
    re.IGNORECASE,
)


def strip_reserved(s: str) -> tuple[str, int]:
    """``s`` without reserved and model-written tokens (and summarize lines); how many.

    >>> strip_reserved("a <|box_start|>(1,2),(3,4)<|box_end|> <image> b <|image_12|>")
    ('a (1,2),(3,4)  b ', 4)
    """
    return _RESERVED_RE.subn("", s)


@dataclass
class BuiltInput:
    """One Embedder input, ready for :func:`collate`.

    ``messages``: HF chat (user turn of content parts, assistant turn ``<emb>``); image parts
    are ``{"type": "image"}`` and ``images`` holds the PIL images in the same order.
    ``problems``: what could not be used, each ``"<kind>: <what>"`` with kind in
    :data:`PROBLEM_KINDS`.
    """

    messages: list[dict]
    images: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(
            f"train_embedder.tcot_input (Embedder input mode) = {mode!r}; allowed: "
            f"{', '.join(MODES)}"
        )
    return mode


# --------------------------------------------------------------------------- images
def _open_rgb(path: str, problems: list[str], what: str) -> Image.Image | None:
    """The image at ``path`` in RGB, or None with a ``visual`` problem recorded."""
    if not path:
        problems.append(f"visual: {what} has no path, left out")
        return None
    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except Exception as e:  # missing, truncated, not an image, decompression bomb ...
        problems.append(f"visual: {what} {path} could not be read ({type(e).__name__}), left out")
        return None
    return _fit_aspect(img, problems, what)


def _fit_aspect(img: Image.Image, problems: list[str], what: str) -> Image.Image:
    """Pad an extremely thin image (black bars) to the aspect ratio the processor accepts."""
    w, h = img.size
    if max(w, h) <= MAX_ASPECT * min(w, h):
        return img
    problems.append(f"visual: {what} of {w}x{h} px padded to aspect ratio {MAX_ASPECT}")
    nw, nh = max(w, math.ceil(h / MAX_ASPECT)), max(h, math.ceil(w / MAX_ASPECT))
    out = Image.new("RGB", (nw, nh))
    out.paste(img, ((nw - w) // 2, (nh - h) // 2))
    return out


# --------------------------------------------------------------------------- building
class _Parts:
    """Content parts under construction: text parts after the first start on a new line."""

    def __init__(self) -> None:
        self.content: list[dict[str, str]] = []
        self.images: list[Image.Image] = []
        self.stripped = 0  # reserved tokens removed from text

    def text(self, s: str, *, own: bool = False) -> None:
        """Add a text part; text the builder does not write itself (``own``) loses every
        reserved or model-written token (counted in ``stripped``)."""
        if not own:
            s, n = strip_reserved(s)
            self.stripped += n
        if s:
            self.content.append({"type": "text", "text": f"\n{s}" if self.content else s})

    def image(self, img: Image.Image, label: str = "") -> None:
        self.text(label, own=True)
        self.content.append({"type": "image"})
        self.images.append(img)


def build_input(
    item: Item, tcot: str | None, *, mode: str = "full", frame_base: int = DEFAULT_FRAME_BASE
) -> BuiltInput:
    """The Embedder chat of ``item`` with its T-CoT ``tcot`` (ignored in mode ``raw``).

    ``frame_base``: the base of key-frame numbers in the T-CoT text (1 = "Frame 1" is the
    first frame, as the prompts say); frames are labelled in the same base.

    >>> b = build_input(Item(text="a red car"), "<thinking> cars </thinking>"
    ...                 "<rethink> red </rethink><answer> red car </answer>")
    >>> print("".join(p["text"] for p in b.messages[0]["content"]))
    a red car
    <thinking> cars </thinking>
    <rethink> red </rethink><answer> red car </answer>
    Summarize the above content in one word:
    >>> b.messages[1], b.images, b.problems
    ({'role': 'assistant', 'content': [{'type': 'text', 'text': '<emb>'}]}, [], [])
    """
    check_mode(mode)
    problems: list[str] = []
    parts = _Parts()
    # 0-based frame index -> decoded frame (reused as evidence); -1: the image or page
    frames: dict[int, Image.Image] = {}

    # 1. original visuals, then instruction and text
    if item.modality in ("image", "document"):
        img = _open_rgb(item.image, problems, f"{item.modality} image")
        if img is not None:
            frames[-1] = img
            parts.image(img)
    elif item.modality == "video":
        if not item.frames:
            problems.append("visual: video item has no frames")
        for k, path in enumerate(item.frames):
            img = _open_rgb(path, problems, f"frame {k + frame_base}")
            if img is not None:
                frames[k] = img
                parts.image(img, f"Frame {k + frame_base}:")
    parts.text("\n".join(s for s in (item.inst.strip(), item.text.strip()) if s))

    # 2. the T-CoT with its evidence
    if mode != "raw":
        _add_tcot(parts, item, tcot, mode, frame_base, frames, problems)

    parts.text(SUMMARIZE, own=True)
    if parts.stripped:
        problems.append(
            f"tcot: {parts.stripped} reserved token(s) (special or model-written) removed from "
            "the text"
        )
    messages = [
        {"role": "user", "content": parts.content},
        {"role": "assistant", "content": [{"type": "text", "text": EMB_TOKEN}]},
    ]
    return BuiltInput(messages=messages, images=parts.images, problems=problems)


def _add_tcot(
    parts: _Parts,
    item: Item,
    tcot: str | None,
    mode: str,
    base: int,
    frames: dict[int, Image.Image],
    problems: list[str],
) -> None:
    if tcot is None or (isinstance(tcot, str) and not tcot.strip()):
        problems.append("tcot: no T-CoT given, raw input used")
        return
    num_frames = len(item.frames) if item.modality == "video" else None
    parsed = parse_tcot(tcot, num_frames=num_frames, frame_base=base)
    if not (parsed.thinking or parsed.rethink or parsed.answer):
        problems.append(f"tcot: unreadable T-CoT ({'; '.join(parsed.problems)}), raw input used")
        return
    problems += [f"tcot: {p}" for p in parsed.problems]
    if mode == "answer_only":
        parsed = parsed.answer_only()
    elif mode == "no_evidence":
        parsed = parsed.without_evidence()

    if parsed.thinking:
        parts.text(f"{THINK_OPEN} {parsed.thinking} {THINK_CLOSE}")
    if mode == "full" and (parsed.evidence.boxes or parsed.evidence.key_frames):
        _add_evidence(parts, item, parsed, base, frames, problems)
    tail = []
    if parsed.rethink:
        tail.append(f"{RETHINK_OPEN} {parsed.rethink} {RETHINK_CLOSE}")
    if parsed.answer:
        tail.append(f"{ANSWER_OPEN} {parsed.answer} {ANSWER_CLOSE}")
    parts.text("".join(tail))


def _add_evidence(parts, item, parsed, base, frames, problems) -> None:
    """Crops of the boxes, or the key frames (decoded ones reused), as image parts."""
    ev = parsed.evidence
    if ev.boxes:
        if -1 in frames:
            mat = materialise(parsed, item)
            problems += [f"evidence: {p}" for p in mat.problems]
            for crop in mat.crops:
                parts.image(_fit_aspect(crop, problems, "crop"))
        else:  # the original did not load (already recorded) or there is none
            problems.append(f"evidence: {len(ev.boxes)} box(es) without a readable image dropped")
    for k in ev.key_frames:  # 0-based, inside the item's frames (parse_tcot checked)
        if k in frames and k >= 0:
            parts.image(frames[k], f"Frame {k + base}:")
        else:
            problems.append(f"evidence: key frame {k + base} has no readable frame, dropped")


def problem_counts(built: list[BuiltInput]) -> dict[str, int]:
    """Counts for a stage manifest: inputs with any problem, and problems by kind.

    >>> problem_counts([BuiltInput([], [], ["tcot: missing <rethink>"]), BuiltInput([], [], [])])
    {'inputs': 2, 'inputs_with_problems': 1, 'visual': 0, 'tcot': 1, 'evidence': 0}
    """
    kinds = collections.Counter(p.split(":", 1)[0] for b in built for p in b.problems)
    out = {"inputs": len(built), "inputs_with_problems": sum(bool(b.problems) for b in built)}
    return out | {k: kinds.get(k, 0) for k in PROBLEM_KINDS}


# --------------------------------------------------------------------------- tensors
def render(built: BuiltInput, processor) -> str:
    """The chat text of one input (one ``<|image_pad|>`` per image, before expansion)."""
    return processor.apply_chat_template(built.messages, tokenize=False)


def collate(built: list[BuiltInput], processor, *, max_length: int | None = None) -> dict:
    """Padded model inputs of a batch of :class:`BuiltInput`.

    Returns what the processor gives: ``input_ids`` and ``attention_mask`` [B, T] (padding
    on the tokenizer's side), ``mm_token_type_ids`` [B, T] (1 on image tokens; Qwen3-VL
    needs it), and with any image ``pixel_values`` [P, C*t*p*p] and ``image_grid_thw``
    [N_images, 3]. A row longer than ``max_length`` tokens loses the end of its longest text
    parts (never image tokens, the summarize line or ``<emb>``); text alone is never cut
    below the visual tokens, so a row of visuals over the limit stays over it.
    """
    texts = [render(b, processor) for b in built]
    batch = _process(processor, texts, built)
    if max_length is None:
        return batch
    current = list(built)
    for _ in range(3):  # re-tokenising after a cut can differ by a token or two
        lengths = batch["attention_mask"].sum(1).tolist()
        over = [i for i, n in enumerate(lengths) if n > max_length]
        if not over:
            break
        for i in over:
            current[i] = _shorten(current[i], processor, lengths[i] - max_length)
            texts[i] = render(current[i], processor)
        batch = _process(processor, texts, built)
    return batch


def _process(processor, texts: list[str], built: list[BuiltInput]) -> dict:
    images = [im for b in built for im in b.images]
    out = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    return dict(out)


def _shorten(b: BuiltInput, processor, excess: int) -> BuiltInput:
    """A copy of ``b`` whose user text parts are ``excess`` tokens shorter (longest first)."""
    tok = processor.tokenizer
    content = [dict(p) for p in b.messages[0]["content"]]
    texts = [i for i, p in enumerate(content) if p.get("type") == "text"][:-1]  # not SUMMARIZE
    ids = {i: tok.encode(content[i]["text"], add_special_tokens=False) for i in texts}
    excess += 2  # re-tokenising at the cut may merge or split a token
    while excess > 0 and any(ids.values()):
        i = max(ids, key=lambda j: len(ids[j]))
        longest = len(ids[i])
        second = max((len(v) for j, v in ids.items() if j != i), default=0)
        cut = min(excess, max(1, longest - second))
        ids[i] = ids[i][: longest - cut]
        excess -= cut
    for i, v in ids.items():
        content[i]["text"] = tok.decode(v)
    messages = [{**b.messages[0], "content": content}, *b.messages[1:]]
    return BuiltInput(messages=messages, images=b.images, problems=b.problems)


def input_length(b: BuiltInput, processor) -> int:
    """Tokens of ``b`` after image expansion (text tokens + visual tokens), for grouping.

    Visual tokens follow the Qwen-VL resize rule (``smart_resize`` with the processor's pixel
    bounds); a processor without those attributes gets a 28-px-per-token estimate.
    """
    n_text = len(processor.tokenizer.encode(render(b, processor), add_special_tokens=False))
    return n_text + sum(_image_tokens(im.size, processor.image_processor) - 1 for im in b.images)


def _image_tokens(size: tuple[int, int], ip: Any) -> int:
    w, h = size
    patch, merge = getattr(ip, "patch_size", 14), getattr(ip, "merge_size", 2)
    factor = patch * merge
    bounds = getattr(ip, "size", None) or {}
    lo = _get(bounds, "shortest_edge") or getattr(ip, "min_pixels", None) or factor * factor
    hi = _get(bounds, "longest_edge") or getattr(ip, "max_pixels", None) or 16384 * factor * factor
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        rh, rw = smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except Exception:  # another processor family or an odd size: estimate
        rh, rw = h, w
    return max(1, round(rh * rw / (factor * factor)))


def _get(d: Any, key: str) -> Any:
    try:
        return d[key]
    except (KeyError, TypeError):
        return getattr(d, key, None)
