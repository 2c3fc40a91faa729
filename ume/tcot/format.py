"""The T-CoT text format: the one place that writes, reads and checks it.

A Traceability chain of thought (T-CoT) is three tagged sections; the ``<thinking>``
section carries a JSON object with the *evidence* the Embedder should look at again::

    <thinking> a red car parked left of a tree {"bbox_2d": [10, 200, 480, 900]} </thinking>
    <rethink> the query asks for the car, not the tree </rethink>
    <answer> a red car </answer>

Evidence keys by input modality (:data:`EVIDENCE_KEY`): text -> ``text_keywords``;
image and document -> ``bbox_2d`` (coordinates relative 0..1000, one box or a list of
boxes); video -> ``key_frames`` (indices of the frames shown to the Reasoner).

Why one module: the paper's release parsed T-CoTs in several places and disagreed with
itself about the base of key-frame indices (prompts say 1-based, the cropping code used
them 0-based). Here the text's base is a parameter (``frame_base``, 1 by default, as the
prompts say) and :func:`parse_tcot` converts to 0-based indices once; no other code ever
sees the text's base.

:func:`parse_tcot` reads arbitrary model output and never raises: whatever it cannot use
it drops, and whatever is not well formed it names in ``problems`` (``ParsedTCoT.ok`` is
False), among them:

* a missing, unclosed, nested or repeated opening tag; tags out of order;
* a stray or repeated closing tag (``</answer></answer>``, a ``</thinking>`` with no
  ``<thinking>``);
* an empty or blank section, blank counting every invisible character: white space of any
  kind (non-breaking, ideographic, ...), zero-width and other format characters, controls;
* a keyword with control or invisible characters (removed; a keyword of nothing else, such
  as a NUL, is dropped); a key frame outside the video (when ``num_frames`` is given), a
  duplicate key frame, a box outside 0..1000 or degenerate;
* evidence nested under another key.

**Nested evidence.** The paper's format puts the evidence keys at the top level of the JSON
object in ``<thinking>``. An object such as ``{"evidence": {"bbox_2d": [...]}}`` is still
*read* (the evidence is unambiguous, and the Embedder is better off with it than without),
but it is a problem: the T-CoT is not well formed, :func:`check_format` rejects it, so the
EG-RL format reward never pays for it and SFT never learns it.

:func:`check_format` accepts only what :func:`parse_tcot` reads without a problem of its
kind: ``"tags"`` any structural problem rejects; ``"tags+evidence"`` any problem at all.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any, Literal

TAGS = ("thinking", "rethink", "answer")
THINK_OPEN, THINK_CLOSE = "<thinking>", "</thinking>"
RETHINK_OPEN, RETHINK_CLOSE = "<rethink>", "</rethink>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAG_STRINGS = (THINK_OPEN, THINK_CLOSE, RETHINK_OPEN, RETHINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

EVIDENCE_KEY = {
    "text": "text_keywords",
    "image": "bbox_2d",
    "document": "bbox_2d",
    "video": "key_frames",
}
EVIDENCE_KEYS = ("text_keywords", "bbox_2d", "key_frames")
COORD_MAX = 1000  # boxes are relative: 0..1000 on both axes
# The prompts number frames from 1 ("Frame 1:"); parse_tcot converts to 0-based.
DEFAULT_FRAME_BASE = 1

# The release's format reward, kept verbatim for reference and for tests; check_format
# implements the same test without a backtracking regex (several ``.*`` on long model
# output can take polynomial time when there is no match).
RELEASE_FORMAT_RE = r"<thinking>.*</thinking>.*<rethink>.*</rethink>.*<answer>.*</answer>"

_MAX_JSON_ATTEMPTS = 64  # bound the work spent on brace-heavy garbage
_MAX_PROBLEMS = 20

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Evidence:
    """Validated evidence of one T-CoT.

    ``boxes`` are (x1, y1, x2, y2) in 0..1000 with x1 < x2 and y1 < y2; ``key_frames`` are
    **0-based** indices into the frames shown to the Reasoner, without duplicates.
    """

    keywords: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    key_frames: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keywords or self.boxes or self.key_frames)

    def to_dict(self, *, frame_base: int = DEFAULT_FRAME_BASE) -> dict[str, Any]:
        """The JSON form written in a T-CoT (key frames back in the text's base).

        >>> Evidence(boxes=((0, 0, 500, 500),), key_frames=(0, 2)).to_dict()
        {'bbox_2d': [0, 0, 500, 500], 'key_frames': [1, 3]}
        """
        out: dict[str, Any] = {}
        if self.keywords:
            out["text_keywords"] = list(self.keywords)
        if self.boxes:
            boxes = [list(b) for b in self.boxes]
            out["bbox_2d"] = boxes[0] if len(boxes) == 1 else boxes
        if self.key_frames:
            out["key_frames"] = [k + frame_base for k in self.key_frames]
        return out

    def has(self, key: str) -> bool:
        """Whether the evidence of ``key`` (an :data:`EVIDENCE_KEYS` name) is non-empty."""
        return bool(
            {
                "text_keywords": self.keywords,
                "bbox_2d": self.boxes,
                "key_frames": self.key_frames,
            }.get(key)
        )


@dataclass(frozen=True)
class ParsedTCoT:
    """A T-CoT as read by :func:`parse_tcot`.

    ``thinking`` is the whole ``<thinking>`` section (evidence JSON included: it is what the
    Embedder reads); ``reasoning`` is the same text with the evidence JSON cut out.
    Missing sections are ''. ``problems`` says what was missing, dropped or repaired.
    """

    thinking: str = ""
    rethink: str = ""
    answer: str = ""
    evidence: Evidence = field(default_factory=Evidence)
    problems: tuple[str, ...] = ()
    raw: str = ""
    reasoning: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing was missing, dropped or repaired."""
        return not self.problems

    def answer_only(self) -> ParsedTCoT:
        """Only the answer (the "answer only" ablation): no thinking, rethink or evidence."""
        return replace(self, thinking="", rethink="", reasoning="", evidence=Evidence())

    def without_evidence(self) -> ParsedTCoT:
        """The reasoning without its evidence (the "no evidence cues" ablation)."""
        return replace(self, thinking=self.reasoning, evidence=Evidence())

    def render(self, *, frame_base: int = DEFAULT_FRAME_BASE) -> str:
        """The canonical text of this T-CoT (evidence re-serialised from ``evidence``)."""
        return render_tcot(
            self.reasoning, self.rethink, self.answer, self.evidence, frame_base=frame_base
        )


def render_tcot(
    thinking: str,
    rethink: str,
    answer: str,
    evidence: dict[str, Any] | Evidence | None = None,
    *,
    frame_base: int = DEFAULT_FRAME_BASE,
) -> str:
    """Write a T-CoT in the canonical form, evidence JSON at the end of ``<thinking>``.

    A dict ``evidence`` is written as given (it is already in the text's form); an
    :class:`Evidence` is converted with :meth:`Evidence.to_dict` (``frame_base`` applies).

    >>> print(render_tcot("a cat on a mat", "the cat matters", "a cat", {"bbox_2d": [0, 0, 10, 10]}))
    <thinking> a cat on a mat {"bbox_2d": [0, 0, 10, 10]} </thinking>
    <rethink> the cat matters </rethink>
    <answer> a cat </answer>
    """
    if isinstance(evidence, Evidence):
        evidence = evidence.to_dict(frame_base=frame_base)
    think = thinking.strip()
    if evidence:
        think = f"{think} {json.dumps(evidence, ensure_ascii=False)}".strip()
    return (
        f"{THINK_OPEN} {think} {THINK_CLOSE}\n"
        f"{RETHINK_OPEN} {rethink.strip()} {RETHINK_CLOSE}\n"
        f"{ANSWER_OPEN} {answer.strip()} {ANSWER_CLOSE}"
    )


# ---------------------------------------------------------------- parsing


def parse_tcot(
    text: Any,
    *,
    num_frames: int | None = None,
    frame_base: int = DEFAULT_FRAME_BASE,
    modality: str | None = None,
) -> ParsedTCoT:
    """Read a T-CoT from arbitrary model output; never raises.

    ``num_frames``: how many frames the Reasoner saw (key frames outside are dropped).
    ``frame_base``: the base of key-frame indices in the text (1 = "Frame 1" is the first).
    ``modality``: when given, a missing evidence key of that modality is a problem.

    >>> p = parse_tcot('<thinking> x {"key_frames": [1, 3, 3, 9]} </thinking>'
    ...                '<rethink> y </rethink><answer> z </answer>', num_frames=8)
    >>> p.evidence.key_frames, p.answer
    ((0, 2), 'z')
    >>> p.problems
    ('key frame 9 out of range 1..8 dropped', 'duplicate key frame 3 dropped')
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ParsedTCoT(problems=(f"not a string: {type(text).__name__}",))
    try:
        return _parse(text, num_frames, frame_base, modality)
    except Exception as e:  # last resort: the contract is "never raises"
        return ParsedTCoT(raw=text, problems=(f"unreadable T-CoT ({type(e).__name__})",))


def _structure(text: str) -> tuple[dict[str, str], list[str]]:
    """The sections of ``text`` and the problems of its tags and sections."""
    problems: list[str] = []
    sections = {tag: _section(text, tag, problems) for tag in TAGS}
    if all(t in text for t in TAG_STRINGS) and not _tags_in_order(text):
        problems.append("tags out of order")
    for tag in TAGS:
        opens, closes = text.count(f"<{tag}>"), text.count(f"</{tag}>")
        if closes and not opens:
            problems.append(f"stray </{tag}> without <{tag}>")
        elif closes > 1:
            problems.append(f"repeated </{tag}>")
        if opens and is_blank(sections[tag]):
            problems.append(f"empty <{tag}>")
    return sections, problems


def _parse(text: str, num_frames: int | None, base: int, modality: str | None) -> ParsedTCoT:
    sections, problems = _structure(text)
    thinking = sections["thinking"]
    found, spans = _evidence_objects(thinking, problems)
    evidence = _validate(found, num_frames, base, problems)
    reasoning = _cut(thinking, spans)
    if modality is not None:
        key = EVIDENCE_KEY.get(modality)
        if key is None:
            problems.append(f"unknown modality {modality!r}")
        elif not evidence.has(key):
            problems.append(f"no usable {key} evidence in <thinking>")
    if len(problems) > _MAX_PROBLEMS:  # a list of 10k bad frames is one story, not 10k
        problems[_MAX_PROBLEMS:] = [f"... and {len(problems) - _MAX_PROBLEMS} more problems"]
    return ParsedTCoT(
        thinking=thinking,
        rethink=sections["rethink"],
        answer=sections["answer"],
        evidence=evidence,
        problems=tuple(problems),
        raw=text,
        reasoning=reasoning,
    )


def _section(text: str, tag: str, problems: list[str]) -> str:
    """Content of the first ``<tag>``, up to its close (or, if unclosed, the next tag)."""
    open_, close = f"<{tag}>", f"</{tag}>"
    start = text.find(open_)
    if start < 0:
        problems.append(f"missing <{tag}>")
        return ""
    start += len(open_)
    end = text.find(close, start)
    if end < 0:
        problems.append(f"unclosed <{tag}>")
        nxt = [i for i in (text.find(t, start) for t in TAG_STRINGS) if i >= 0]
        end = min(nxt) if nxt else len(text)
    body = text[start:end]
    if open_ in body:  # nested: keep the innermost opening, the model restarted
        problems.append(f"nested <{tag}>")
        body = body[body.rfind(open_) + len(open_) :]
    if text.count(open_) > 1:
        problems.append(f"repeated <{tag}>, first used")
    return body.strip()


def _tags_in_order(text: str) -> bool:
    """Same answer as ``re.search(RELEASE_FORMAT_RE, text, re.DOTALL)``, in linear time.

    Taking each tag at its leftmost position after the previous one finds an ordered,
    non-overlapping occurrence whenever one exists.
    """
    pos = 0
    for t in TAG_STRINGS:
        i = text.find(t, pos)
        if i < 0:
            return False
        pos = i + len(t)
    return True


_INVISIBLE_CATEGORIES = ("Cc", "Cf", "Zs", "Zl", "Zp")


def _invisible(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def is_blank(s: str) -> bool:
    r"""Whether ``s`` shows nothing: every character white space (any kind: non-breaking,
    ideographic ...), a format character (zero-width space, joiners, BOM) or a control.

    >>> is_blank(" \u00a0\u200b\u3000\ufeff\x00"), is_blank(" a ")
    (True, False)
    """
    return all(_invisible(ch) for ch in s)


def _brace_spans(s: str) -> list[tuple[int, int]]:
    """Balanced ``{...}`` spans (start, end-exclusive), outermost first, by position.

    Braces inside JSON strings are not special-cased: keywords with braces are rare, and a
    quote-aware scan is fooled by apostrophes in prose.
    """
    stack: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, ch in enumerate(s):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            spans.append((stack.pop(), i + 1))
    spans.sort(key=lambda sp: (sp[0], -sp[1]))
    return spans


_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _int(s: str) -> int | float:
    """JSON integers; ones too long for int() (over 4300 digits) are infinite."""
    try:
        return int(s)
    except ValueError:
        return -math.inf if s.startswith("-") else math.inf


def _loads(s: str) -> Any:
    """json.loads, then tolerant retries: single quotes, trailing commas."""
    for attempt in (s, s.replace("'", '"')):
        for cand in (attempt, _TRAILING_COMMA.sub(r"\1", attempt)):
            try:
                return json.loads(cand, parse_int=_int)
            except (ValueError, RecursionError):
                continue
    raise ValueError("unparseable")


def _evidence_objects(
    thinking: str, problems: list[str]
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Every JSON object in ``thinking`` that carries an evidence key, with its span."""
    found: list[dict[str, Any]] = []
    used: list[tuple[int, int]] = []
    broken: list[tuple[int, int]] = []  # not JSON
    keyless: list[tuple[int, int]] = []  # JSON, but no evidence key
    attempts = 0
    for start, end in _brace_spans(thinking):
        if any(a <= start and end <= b for a, b in used):
            continue
        if attempts >= _MAX_JSON_ATTEMPTS:
            problems.append("too many JSON fragments, rest ignored")
            break
        attempts += 1
        try:
            obj = _loads(thinking[start:end])
        except ValueError:
            broken.append((start, end))
            continue
        if isinstance(obj, dict) and any(k in obj for k in EVIDENCE_KEYS):
            found.append(obj)
            used.append((start, end))
        else:
            keyless.append((start, end))

    # A span around a usable object was a wrapper ({"evidence": {...}}, or prose braces):
    # only spans that yielded nothing are worth a problem.
    def useless(spans: list[tuple[int, int]]) -> bool:
        return any(not any(s <= a and b <= e for a, b in used) for s, e in spans)

    if useless(broken) or ("{" in thinking and not found and not keyless):
        problems.append("evidence JSON unparseable")
    if useless(keyless):
        problems.append("JSON object without an evidence key ignored")
    wrappers = [(s, e) for s, e in broken + keyless if any(s <= a and b <= e for a, b in used)]
    for s, e in keyless:  # a JSON object around evidence: the evidence is nested in it
        if any(s <= a and b <= e for a, b in used):
            try:
                where = _nested_key(_loads(thinking[s:e]))
            except ValueError:
                where = None
            if where:
                problems.append(
                    f"evidence nested under {where!r} (read; the format puts the evidence "
                    "keys at the top level)"
                )
    return found, _outermost(used + wrappers)


def _nested_key(obj: Any, depth: int = 0) -> str | None:
    """The key under which ``obj`` (a JSON value) holds an object with evidence keys."""
    if depth > 8:
        return None
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        if isinstance(v, dict) and any(key in v for key in EVIDENCE_KEYS):
            return str(k)
        inner = _nested_key(v, depth + 1)
        if inner:
            return f"{k}.{inner}"
    return None


def _outermost(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans, key=lambda sp: (sp[0], -sp[1])):
        if not any(a <= s and e <= b for a, b in out):
            out.append((s, e))
    return out


_FENCE = re.compile(r"```(?:json)?", re.I)


def _cut(s: str, spans: list[tuple[int, int]]) -> str:
    """``s`` without ``spans``, pieces joined by one space.

    What held the objects together goes with them (``[``, ``,``, ``]``, code fences, as in
    ``[{"bbox_2d": ...}, {"bbox_2d": ...}]``).
    """
    if not spans:
        return s
    pieces, pos = [], 0
    for a, b in sorted(spans):
        pieces.append(s[pos:a])
        pos = b
    pieces.append(s[pos:])
    kept = []
    for i, p in enumerate(pieces):
        p = _FENCE.sub(" ", p)
        if i > 0:  # follows a cut
            p = p.lstrip(" \t\r\n,]")
        if i < len(pieces) - 1:  # precedes a cut
            p = p.rstrip(" \t\r\n,[")
        if p.strip():
            kept.append(p.strip())
    return " ".join(kept)


def _validate(
    objs: list[dict[str, Any]], num_frames: int | None, base: int, problems: list[str]
) -> Evidence:
    keywords: list[str] = []
    boxes: list[Box] = []
    frames: list[int] = []
    for obj in objs:
        if "text_keywords" in obj:
            keywords += _keywords(obj["text_keywords"], problems)
        if "bbox_2d" in obj:
            boxes += _boxes(obj["bbox_2d"], problems)
        if "key_frames" in obj:
            frames += _frames(obj["key_frames"], num_frames, base, problems)
    unique: list[int] = []
    for k in frames:
        if k in unique:
            problems.append(f"duplicate key frame {k + base} dropped")
        else:
            unique.append(k)
    return Evidence(tuple(keywords), tuple(boxes), tuple(unique))


def _keywords(value: Any, problems: list[str]) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        problems.append("text_keywords is not a list, dropped")
        return []
    out = []
    for v in values:
        if not isinstance(v, str) or is_blank(v):
            problems.append("empty or non-string keyword dropped")
            continue
        # controls and zero-width characters inside a keyword are not part of it
        clean = "".join(ch for ch in v if unicodedata.category(ch) not in ("Cc", "Cf")).strip()
        if clean != v.strip():
            problems.append("control or invisible characters removed from a keyword")
        if clean:
            out.append(clean)
    return out


def _number(v: Any) -> float | None:
    """A number, or None (bools, strings and NaN are not coordinates; inf gets clamped)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _boxes(value: Any, problems: list[str]) -> list[Box]:
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        candidates = value
    else:
        candidates = [value]
    out = []
    for cand in candidates:
        if not isinstance(cand, list) or len(cand) != 4:
            problems.append("box without 4 coordinates dropped")
            continue
        nums = [_number(v) for v in cand]
        if any(n is None for n in nums):
            problems.append("box with non-numeric coordinates dropped")
            continue
        clamped = [min(max(n, 0), COORD_MAX) for n in nums]  # type: ignore[type-var]
        if clamped != nums:
            problems.append("box clamped to 0..1000")
        x1, y1, x2, y2 = (round(c) for c in clamped)
        if x2 <= x1 or y2 <= y1:
            problems.append("degenerate box dropped")
            continue
        out.append((x1, y1, x2, y2))
    return out


def _frames(value: Any, num_frames: int | None, base: int, problems: list[str]) -> list[int]:
    values = value if isinstance(value, list) else [value]
    hi = f"{num_frames - 1 + base}" if num_frames is not None else ""
    out = []
    for v in values:
        k = _frame_number(v)
        if k is None:
            problems.append("non-integer key frame dropped")
            continue
        idx = k - base
        if idx < 0 or (num_frames is not None and idx >= num_frames):
            problems.append(f"key frame {k} out of range {base}..{hi} dropped")
            continue
        out.append(idx)
    return out


def _frame_number(v: Any) -> int | None:
    """An integer frame number from 3, 3.0 or "3" (models quote numbers now and then)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*\d{1,9}\s*", v):
        return int(v)
    return None


# ---------------------------------------------------------------- checks and helpers


def check_format(
    text: Any,
    *,
    variant: Literal["tags", "tags+evidence"] = "tags",
    modality: str | None = None,
    num_frames: int | None = None,
    frame_base: int = DEFAULT_FRAME_BASE,
) -> bool:
    """The format test of the reward (and of SFT data); never raises.

    ``"tags"``: the three tag pairs, once each and in order (the release's regex, which this
    implies), each section non-blank, no stray closing tag. ``"tags+evidence"`` (the paper):
    also the modality's evidence key with a usable value in ``<thinking>`` (without
    ``modality`` any evidence key will do), at the top level, and nothing dropped from it:
    ``num_frames`` (how many frames the Reasoner saw) rejects key frames outside the video.

    >>> t = render_tcot("a", "b", "c", {"key_frames": [2]})
    >>> check_format(t), check_format(t, variant="tags+evidence", modality="video")
    (True, True)
    >>> check_format(t, variant="tags+evidence", modality="image")
    False
    >>> check_format(t, variant="tags+evidence", modality="video", num_frames=1)
    False
    """
    try:
        if not isinstance(text, str) or not _tags_in_order(text):
            return False
        if variant == "tags":
            return not _structure(text)[1]
        if variant != "tags+evidence":
            return False
        key = EVIDENCE_KEY.get(modality) if modality is not None else None
        if modality is not None and key is None:
            return False
        p = parse_tcot(text, num_frames=num_frames, frame_base=frame_base, modality=modality)
        return p.ok and (p.evidence.has(key) if key else bool(p.evidence))
    except Exception:
        return False


def strip_evidence(text: Any) -> str:
    """A T-CoT's canonical text without its evidence JSON.

    >>> strip_evidence('<thinking> a {"bbox_2d": [1, 2, 3, 4]} </thinking>'
    ...                '<rethink> b </rethink><answer> c </answer>').splitlines()[0]
    '<thinking> a </thinking>'
    """
    return parse_tcot(text).without_evidence().render()
