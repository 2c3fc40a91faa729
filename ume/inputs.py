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

Pixel budgets (config ``budgets``, :class:`PixelBudget`): every role's processor gets them
(:func:`apply_budget`), and every image is fitted to its budget before the processor sees it
(:func:`fit_image`): images, document pages and evidence crops to the image budget, video
frames and key frames (image parts labelled ``Frame k:``) to the per-frame video budget.

Length rule (:func:`collate` with ``max_length``): an input over the limit gives up **visual
tokens first**, in this order, each step only as far as needed:

1. resolution: every visual is lowered toward its budget's minimum, all by the same factor;
2. evidence visuals (crops, key frames) are dropped, the last first;
3. original video frames are dropped, evenly spread, down to one frame (an image or a page
   is never dropped);
4. the item's own text (instruction, query or candidate text) is cut from its end.

The T-CoT, the summarize line and ``<emb>`` are never cut: an input that still does not fit
is a :class:`~ume.errors.DataError` naming ``train_embedder.max_length``
(:func:`check_tcot_fits` catches the config that allows it before a stage starts). Each
applied step is recorded as a ``length:`` problem of the input, so that stage manifests count
the reduced inputs (:func:`problem_counts`).
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ume.errors import ConfigError, DataError
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
# Problem kinds, the prefix of each problem string (counted by problem_counts for manifests);
# "length": visual tokens (or item text) given up to fit max_length.
PROBLEM_KINDS = ("visual", "tcot", "evidence", "length")
# Tokens of an Embedder input besides its T-CoT, item text and visuals: chat markers, the
# summarize line, <emb>, T-CoT tags and vision start/end markers (generous for any Qwen
# tokenizer; :func:`check_tcot_fits` reserves them).
INPUT_OVERHEAD_TOKENS = 64
# Content-part tags (BuiltInput.tags): what may give way to fit max_length, and in what order.
VISUAL_TAGS = ("image", "frame", "crop", "key_frame")
EVIDENCE_TAGS = ("crop", "key_frame")
FRAME_TAGS = ("frame", "key_frame")  # fitted to the per-frame video budget
_FRAME_LABEL = re.compile(r"Frame\s+\d+\s*:\s*$")
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
    #: one tag per user-turn content part: "item" (instruction / text), "tcot", "summarize",
    #: a visual ("image", "frame", "crop", "key_frame") or its label ("<visual>_label"); empty
    #: for inputs not made by :func:`build_input` (then nothing but resolution gives way)
    tags: list[str] = field(default_factory=list)

    @property
    def visual_tags(self) -> list[str]:
        """The tag of each image, in the order of ``images``."""
        return [t for t in self.tags if t in VISUAL_TAGS]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(
            f"train_embedder.tcot_input (Embedder input mode) = {mode!r}; allowed: "
            f"{', '.join(MODES)}"
        )
    return mode


# --------------------------------------------------------------------------- pixel budgets
@dataclass(frozen=True)
class PixelBudget:
    """Visual tokens allowed per image (images, pages, evidence crops) and per video frame
    (frames, key frames): ``[min, max]`` each; a token is ``factor x factor`` pixels, the
    processor's patch size times its merge size (32 for Qwen3-VL, 28 for Qwen2-VL)."""

    image_min: int
    image_max: int
    video_min: int
    video_max: int

    @classmethod
    def from_config(cls, b: Any) -> PixelBudget:
        """From the config section ``budgets`` (:class:`~ume.config.BudgetsConfig`)."""
        return cls(b.image_min_tokens, b.image_max_tokens, b.video_min_tokens, b.video_max_tokens)

    def bounds(self, tag: str) -> tuple[int, int]:
        """``(min, max)`` tokens of a visual tagged ``tag`` (frames: the video budget)."""
        if tag in FRAME_TAGS:
            return self.video_min, self.video_max
        return self.image_min, self.image_max

    def to_dict(self) -> dict[str, int]:
        return {
            "image_min_tokens": self.image_min,
            "image_max_tokens": self.image_max,
            "video_min_tokens": self.video_min,
            "video_max_tokens": self.video_max,
        }


def factor_of(processor: Any) -> int:
    """Pixels per token side of ``processor`` (or its image processor): patch x merge."""
    ip = getattr(processor, "image_processor", processor)
    return int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))


def apply_budget(processor: Any, budget: PixelBudget | None) -> Any:
    """Give ``processor`` the pixel budget (in place; returns it).

    The image processor's own bounds become the widest of the two budgets, in pixels, so that
    an image fitted by :func:`fit_image` passes unchanged, and one that was not (a path that
    bypasses the builders) still stays within a budget; the budget itself rides along as
    ``processor.ume_budget`` (:func:`budget_of`) for the builders that fit each image to its
    kind.
    """
    if budget is None:
        return processor
    ip = processor.image_processor
    f = factor_of(ip)
    ip.size = {
        "shortest_edge": min(budget.image_min, budget.video_min) * f * f,
        "longest_edge": max(budget.image_max, budget.video_max) * f * f,
    }
    processor.ume_budget = budget
    return processor


def budget_of(processor: Any) -> PixelBudget:
    """The budget :func:`apply_budget` gave ``processor``, else its own pixel bounds (both
    kinds alike)."""
    budget = getattr(processor, "ume_budget", None)
    if budget is not None:
        return budget
    ip = getattr(processor, "image_processor", processor)
    f = factor_of(ip)
    bounds = getattr(ip, "size", None) or {}
    lo = _get(bounds, "shortest_edge") or getattr(ip, "min_pixels", None) or f * f
    hi = _get(bounds, "longest_edge") or getattr(ip, "max_pixels", None) or 16384 * f * f
    lo_t, hi_t = max(1, math.ceil(lo / (f * f))), max(1, hi // (f * f))
    return PixelBudget(lo_t, hi_t, lo_t, hi_t)


def fitted_size(size: tuple[int, int], lo: int, hi: int, factor: int) -> tuple[int, int]:
    """``(width, height)`` of an image of ``size`` within ``[lo, hi]`` tokens: the Qwen-VL
    resize rule (sides multiples of ``factor``, aspect ratio kept).

    >>> fitted_size((1920, 1080), 128, 300, 32)   # a video frame at the paper's budget
    (736, 384)
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    w, h = size
    rh, rw = smart_resize(h, w, factor=factor, min_pixels=lo * factor**2, max_pixels=hi * factor**2)
    rw, rh = max(factor, rw), max(factor, rh)
    if (rw // factor) * (rh // factor) < lo:
        # shrinking to the upper bound rounds each side down and can land under the lower
        # one (hi close to lo); the processor would enlarge such an image again to its
        # min_pixels, so take the smallest size at or above the lower bound instead
        s = math.sqrt(lo * factor**2 / (w * h))
        rw = max(factor, math.ceil(w * s / factor) * factor)
        rh = max(factor, math.ceil(h * s / factor) * factor)
    return rw, rh


def fit_image(img: Image.Image, lo: int, hi: int, factor: int) -> Image.Image:
    """``img`` resized to its fitted size (the same object when it already has that size)."""
    size = fitted_size(img.size, lo, hi, factor)
    return img if size == img.size else img.resize(size, Image.Resampling.BICUBIC)


def tokens_of(img: Image.Image, factor: int) -> int:
    """Visual tokens of an image already fitted (sides multiples of ``factor``)."""
    w, h = img.size
    return max(1, (w // factor) * (h // factor))


def frame_flags(messages: list[dict]) -> list[bool]:
    """For each image part of a chat, in order: is it a video frame (an image part right after
    a text part ending in ``Frame k:``, as the Reasoner prompts and the builder label them)?"""
    flags: list[bool] = []
    for m in messages:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        prev = ""
        for part in content:
            if part.get("type") == "image" or "image" in part:
                flags.append(bool(_FRAME_LABEL.search(prev)))
                prev = ""
            else:
                prev = str(part.get("text") or "")
    return flags


def fit_chat_images(messages: list[dict], images: list, processor: Any) -> list:
    """The images of a chat fitted to ``processor``'s budget: frames to the per-frame video
    budget, every other image to the image budget (PIL images; others pass unchanged)."""
    if not images:
        return images
    budget, f = budget_of(processor), factor_of(processor)
    flags = frame_flags(messages)
    flags += [False] * (len(images) - len(flags))
    out = []
    for img, is_frame in zip(images, flags, strict=False):
        if isinstance(img, Image.Image):
            img = fit_image(img.convert("RGB"), *budget.bounds("frame" if is_frame else "image"), f)
        out.append(img)
    return out


def chat_length(
    messages: list[dict], images: list, processor: Any, *, generation_prompt: bool = True
) -> int:
    """Tokens of a chat after image expansion (its images already fitted)."""
    text = processor.apply_chat_template(
        _placeholders(messages), tokenize=False, add_generation_prompt=generation_prompt
    )
    n_text = len(processor.tokenizer.encode(text, add_special_tokens=False))
    f = factor_of(processor)
    return n_text + sum(tokens_of(im, f) - 1 for im in images if isinstance(im, Image.Image))


def fit_chat_to_length(
    messages: list[dict], images: list, processor: Any, max_tokens: int, *, key: str
) -> tuple[list, str | None]:
    """Fitted images of a Reasoner chat whose tokens must stay within ``max_tokens``: when they
    do not, every image is lowered toward its budget's minimum (step 1 of the length rule;
    a prompt keeps all its frames, since its text names them). Returns ``(images, problem)``,
    the problem a ``length:`` note or None. Raises :class:`DataError` naming ``key`` when even
    the minimum does not fit."""
    images = fit_chat_images(messages, images, processor)
    n = chat_length(messages, images, processor)
    if n <= max_tokens or not images:
        if n > max_tokens:
            raise DataError(
                f"a Reasoner chat of {n} tokens without images exceeds {key} = {max_tokens}; "
                f"raise {key}"
            )
        return images, None
    budget, f = budget_of(processor), factor_of(processor)
    flags = frame_flags(messages) + [False] * len(images)
    tags = ["frame" if flags[i] else "image" for i in range(len(images))]
    before = sum(tokens_of(im, f) for im in images)
    lowered = _lower_resolution(images, tags, budget, f, before - (n - max_tokens))
    after = sum(tokens_of(im, f) for im in lowered)
    if n - before + after > max_tokens:
        raise DataError(
            f"a Reasoner chat needs {n - before + after} tokens with every image at its "
            f"minimum (budgets.image_min_tokens / budgets.video_min_tokens), over {key} = "
            f"{max_tokens}; raise {key} or lower the minimum budgets"
        )
    return lowered, f"length: visuals lowered from {before} to {after} tokens to fit {key}"


def _placeholders(messages: list[dict]) -> list[dict]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image"} if (p.get("type") == "image" or "image" in p) else p
                for p in content
            ]
        out.append({**m, "content": content})
    return out


def check_tcot_fits(max_length: int, tcot_limits: dict[str, int], budget: PixelBudget) -> None:
    """Stop a config whose Embedder inputs could not hold their T-CoT: ``max_length`` (key
    ``train_embedder.max_length``) must hold the longest T-CoT a run writes (``tcot_limits``:
    key -> tokens), the fixed part of the input (:data:`INPUT_OVERHEAD_TOKENS`) and one
    visual at its minimum budget -- everything else gives way (module docstring)."""
    if not tcot_limits:
        return
    key, longest = max(tcot_limits.items(), key=lambda kv: kv[1])
    visual = max(budget.image_min, budget.video_min)
    need = longest + INPUT_OVERHEAD_TOKENS + visual
    if max_length < need:
        raise ConfigError(
            f"train_embedder.max_length = {max_length} cannot hold a T-CoT of {key} = "
            f"{longest} tokens plus {INPUT_OVERHEAD_TOKENS} tokens of chat, summarize line and "
            f"<emb> plus one visual at its minimum (budgets.image_min_tokens / "
            f"budgets.video_min_tokens: {visual}): {need} tokens; raise "
            f"train_embedder.max_length to at least {need}, or lower {key}"
        )


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
        self.tags: list[str] = []  # one per content part (BuiltInput.tags)
        self.images: list[Image.Image] = []
        self.stripped = 0  # reserved tokens removed from text

    def text(self, s: str, tag: str, *, own: bool = False) -> None:
        """Add a text part; text the builder does not write itself (``own``) loses every
        reserved or model-written token (counted in ``stripped``)."""
        if not own:
            s, n = strip_reserved(s)
            self.stripped += n
        if s:
            self.content.append({"type": "text", "text": f"\n{s}" if self.content else s})
            self.tags.append(tag)

    def image(self, img: Image.Image, tag: str, label: str = "") -> None:
        self.text(label, f"{tag}_label", own=True)
        self.content.append({"type": "image"})
        self.tags.append(tag)
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
            parts.image(img, "image")
    elif item.modality == "video":
        if not item.frames:
            problems.append("visual: video item has no frames")
        for k, path in enumerate(item.frames):
            img = _open_rgb(path, problems, f"frame {k + frame_base}")
            if img is not None:
                frames[k] = img
                parts.image(img, "frame", f"Frame {k + frame_base}:")
    parts.text("\n".join(s for s in (item.inst.strip(), item.text.strip()) if s), "item")

    # 2. the T-CoT with its evidence
    if mode != "raw":
        _add_tcot(parts, item, tcot, mode, frame_base, frames, problems)

    parts.text(SUMMARIZE, "summarize", own=True)
    if parts.stripped:
        problems.append(
            f"tcot: {parts.stripped} reserved token(s) (special or model-written) removed from "
            "the text"
        )
    messages = [
        {"role": "user", "content": parts.content},
        {"role": "assistant", "content": [{"type": "text", "text": EMB_TOKEN}]},
    ]
    return BuiltInput(messages=messages, images=parts.images, problems=problems, tags=parts.tags)


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
        parts.text(f"{THINK_OPEN} {parsed.thinking} {THINK_CLOSE}", "tcot")
    if mode == "full" and (parsed.evidence.boxes or parsed.evidence.key_frames):
        _add_evidence(parts, item, parsed, base, frames, problems)
    tail = []
    if parsed.rethink:
        tail.append(f"{RETHINK_OPEN} {parsed.rethink} {RETHINK_CLOSE}")
    if parsed.answer:
        tail.append(f"{ANSWER_OPEN} {parsed.answer} {ANSWER_CLOSE}")
    parts.text("".join(tail), "tcot")


def _add_evidence(parts, item, parsed, base, frames, problems) -> None:
    """Crops of the boxes, or the key frames (decoded ones reused), as image parts."""
    ev = parsed.evidence
    if ev.boxes:
        if -1 in frames:
            mat = materialise(parsed, item)
            problems += [f"evidence: {p}" for p in mat.problems]
            for crop in mat.crops:
                parts.image(_fit_aspect(crop, problems, "crop"), "crop")
        else:  # the original did not load (already recorded) or there is none
            problems.append(f"evidence: {len(ev.boxes)} box(es) without a readable image dropped")
    for k in ev.key_frames:  # 0-based, inside the item's frames (parse_tcot checked)
        if k in frames and k >= 0:
            parts.image(frames[k], "key_frame", f"Frame {k + base}:")
        else:
            problems.append(f"evidence: key frame {k + base} has no readable frame, dropped")


def problem_counts(built: list[BuiltInput]) -> dict[str, int]:
    """Counts for a stage manifest: inputs with any problem, and problems by kind.

    >>> problem_counts([BuiltInput([], [], ["tcot: missing <rethink>"]), BuiltInput([], [], [])])
    {'inputs': 2, 'inputs_with_problems': 1, 'visual': 0, 'tcot': 1, 'evidence': 0, 'length': 0}
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
    [N_images, 3]. Every image is first fitted to the processor's pixel budget (frames and
    key frames to the per-frame budget). A row longer than ``max_length`` tokens follows the
    length rule of the module docstring (visual tokens give way first; the T-CoT, the
    summarize line and ``<emb>`` are kept) and gets a ``length:`` problem appended to its
    ``problems`` (the caller's list, so that its counts see it); a row that cannot fit is a
    :class:`~ume.errors.DataError`.
    """
    current = [fit_input(b, processor, max_length) for b in built]
    texts = [render(b, processor) for b in current]
    batch = _process(processor, texts, current)
    if max_length is not None:
        lengths = batch["attention_mask"].sum(1).tolist()
        over = [(i, n) for i, n in enumerate(lengths) if n > max_length]
        if over:  # the count above is exact for Qwen-VL; a surprise must not cut the T-CoT
            i, n = over[0]
            raise DataError(
                f"input {i} of the batch has {n} tokens after the length rule, over "
                f"train_embedder.max_length = {max_length}; the token count of "
                "ume.inputs._length disagrees with the processor's: report it"
            )
    return batch


def fit_input(b: BuiltInput, processor, max_length: int | None = None) -> BuiltInput:
    """``b`` as it reaches the model: images fitted to the processor's pixel budget, and
    within ``max_length`` tokens by the length rule (module docstring), whose ``length:``
    notes are appended to ``b.problems``. Raises :class:`DataError` when the T-CoT cannot fit.
    """
    budget, f = budget_of(processor), factor_of(processor)
    fitted = _fitted(b, budget, f)
    if max_length is not None:
        n = _length(fitted, processor)
        if n > max_length:
            fitted, notes = _reduce(fitted, n, max_length, processor, budget, f)
            b.problems.extend(notes)
    return fitted


def _process(processor, texts: list[str], built: list[BuiltInput]) -> dict:
    images = [im for b in built for im in b.images]
    out = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
    return dict(out)


def _fitted(b: BuiltInput, budget: PixelBudget, f: int) -> BuiltInput:
    """A copy of ``b`` whose images are fitted to their budgets (same content parts)."""
    tags = b.visual_tags or ["image"] * len(b.images)
    images = [fit_image(im, *budget.bounds(t), f) for im, t in zip(b.images, tags, strict=True)]
    return BuiltInput(b.messages, images, b.problems, b.tags)


def _length(b: BuiltInput, processor) -> int:
    """Tokens of ``b`` (images fitted) after image expansion."""
    n_text = len(processor.tokenizer.encode(render(b, processor), add_special_tokens=False))
    f = factor_of(processor)
    return n_text + sum(tokens_of(im, f) - 1 for im in b.images)


def _lower_resolution(
    images: list[Image.Image], tags: list[str], budget: PixelBudget, f: int, target: int
) -> list[Image.Image]:
    """The images lowered, all by about the same factor, until their tokens total at most
    ``target`` or each is at its budget's minimum."""
    out = list(images)
    for _ in range(8):  # rounding to whole patches may need a few passes
        total = sum(tokens_of(im, f) for im in out)
        if total <= target:
            break
        ratio = max(0.0, target / total)
        nxt = []
        for im, t in zip(out, tags, strict=True):
            lo, _ = budget.bounds(t)
            cap = max(lo, math.floor(tokens_of(im, f) * ratio))
            nxt.append(fit_image(im, min(lo, cap), cap, f))
        if all(a.size == b.size for a, b in zip(nxt, out, strict=True)):
            break
        out = nxt
    return out


def _without(b: BuiltInput, drop: set[int]) -> BuiltInput:
    """``b`` without the content parts at ``drop`` (an image's label goes with it)."""
    content = b.messages[0]["content"]
    keep = [i for i in range(len(content)) if i not in drop]
    img_at = [i for i, p in enumerate(content) if p.get("type") == "image"]
    images = [im for i, im in zip(img_at, b.images, strict=True) if i not in drop]
    messages = [{**b.messages[0], "content": [content[i] for i in keep]}, *b.messages[1:]]
    return BuiltInput(messages, images, b.problems, [b.tags[i] for i in keep])


def _visual_parts(b: BuiltInput, tags: tuple[str, ...]) -> list[int]:
    return [i for i, t in enumerate(b.tags) if t in tags]


def _drop_visual(b: BuiltInput, part: int) -> set[int]:
    """The part of an image and, right before it, its label."""
    label = part - 1
    return {part, label} if label >= 0 and b.tags[label] == f"{b.tags[part]}_label" else {part}


def _reduce(
    b: BuiltInput, n: int, max_length: int, processor, budget: PixelBudget, f: int
) -> tuple[BuiltInput, list[str]]:
    """``b`` (images fitted, ``n`` tokens) brought within ``max_length`` by the length rule;
    the ``length:`` notes of what gave way."""
    notes: list[str] = []
    key = f"max_length {max_length}"
    # 1. resolution, toward the budgets' minimum
    if b.images:
        tags = b.visual_tags or ["image"] * len(b.images)
        before = sum(tokens_of(im, f) for im in b.images)
        lowered = _lower_resolution(b.images, tags, budget, f, before - (n - max_length))
        after = sum(tokens_of(im, f) for im in lowered)
        if after < before:
            b = BuiltInput(b.messages, lowered, b.problems, b.tags)
            n -= before - after
            notes.append(f"length: visuals lowered from {before} to {after} tokens to fit {key}")
    # 2. evidence visuals, the last first
    dropped = 0
    for part in reversed(_visual_parts(b, EVIDENCE_TAGS)):
        if n <= max_length:
            break
        b = _without(b, _drop_visual(b, part))
        n, dropped = _length(b, processor), dropped + 1
    if dropped:
        notes.append(f"length: {dropped} evidence visual(s) dropped to fit {key}")
    # 3. original frames, evenly spread, down to one
    frames = _visual_parts(b, ("frame",))
    if n > max_length and len(frames) > 1:
        total, keep = len(frames), len(frames)
        while n > max_length and keep > 1:
            keep -= 1
            kept = {frames[round(j * (total - 1) / max(1, keep - 1))] for j in range(keep)}
            if keep == 1:
                kept = {frames[0]}
            drop: set[int] = set()
            for part in frames:
                if part not in kept:
                    drop |= _drop_visual(b, part)
            trial = _without(b, drop)
            n = _length(trial, processor)
        b = trial
        notes.append(f"length: {total - keep} of {total} video frames dropped to fit {key}")
    # 4. the item's own text, from its end
    if n > max_length:
        b, cut = _cut_item_text(b, n - max_length, processor)
        n = _length(b, processor)
        if cut:
            notes.append(f"length: item text cut by {cut} tokens to fit {key}")
    if n > max_length:
        tcot = sum(
            len(processor.tokenizer.encode(p["text"], add_special_tokens=False))
            for p, t in zip(b.messages[0]["content"], b.tags, strict=True)
            if t == "tcot"
        )
        raise DataError(
            f"an Embedder input needs {n} tokens with its visuals at their minimum and its own "
            f"text cut (its T-CoT: {tcot} tokens), over train_embedder.max_length = "
            f"{max_length}; the T-CoT is never cut: raise train_embedder.max_length or lower "
            "the T-CoT limit (egrl.max_completion_length, eval.max_new_tokens, the annotator's)"
        )
    return b, notes


def _cut_item_text(b: BuiltInput, excess: int, processor) -> tuple[BuiltInput, int]:
    """``b`` whose item-text part is ``excess`` tokens shorter (as far as it goes)."""
    parts = _visual_parts(b, ("item",))
    if not parts:
        return b, 0
    i = parts[0]
    tok = processor.tokenizer
    content = [dict(p) for p in b.messages[0]["content"]]
    ids = tok.encode(content[i]["text"], add_special_tokens=False)
    cut = min(len(ids), excess + 2)  # re-tokenising at the cut may merge or split a token
    content[i]["text"] = tok.decode(ids[: len(ids) - cut])
    messages = [{**b.messages[0], "content": content}, *b.messages[1:]]
    return BuiltInput(messages, b.images, b.problems, b.tags), cut


def input_length(b: BuiltInput, processor) -> int:
    """Tokens of ``b`` after image expansion (text tokens + visual tokens, each image fitted
    to the processor's budget), for grouping by length."""
    return _length(_fitted(b, budget_of(processor), factor_of(processor)), processor)


def _get(d: Any, key: str) -> Any:
    try:
        return d[key]
    except (KeyError, TypeError):
        return getattr(d, key, None)
