"""Every prompt of the project, and the parsers of the short answers they ask for.

* T-CoT prompts (Annotator and Reasoner): seven families, one per kind of input
  (:data:`FAMILIES`); :func:`family_of` picks one, :func:`tcot_messages` builds the chat.
* Relevance filter (Annotator): :func:`relevance_messages` + :func:`parse_yes_no`.
* Listwise choice (Discriminator of the process reward): :func:`discriminator_messages`
  + :func:`parse_choice`.

Chats use the Hugging Face multimodal content-parts form, so one list feeds both
``processor.apply_chat_template`` and TRL's conversational datasets::

    [{"role": "system", "content": [{"type": "text", "text": "..."}]},
     {"role": "user", "content": [{"type": "image", "image": "/abs/a.png"},
                                  {"type": "text", "text": "..."}]}]

Video frames are given as images, each preceded by a text part ``"Frame k:"`` with k
counted from :data:`~ume.tcot.format.DEFAULT_FRAME_BASE` (1); the prompt asks for key
frames by those numbers and :func:`~ume.tcot.format.parse_tcot` converts them to 0-based.
The prompts were written for this project (the wording of the paper's release is not reused).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from ume.errors import DataError
from ume.items import Item
from ume.tcot.format import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DEFAULT_FRAME_BASE,
    EVIDENCE_KEY,
    RETHINK_CLOSE,
    RETHINK_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
)

Role = Literal["query", "candidate"]
Message = dict[str, Any]

FAMILIES = ("text", "image", "image_text", "video", "video_text", "document", "document_text")

SYSTEM_TCOT = (
    "You are the Reasoner of a multimodal retrieval system. For the input you are given, "
    "write a Traceability chain of thought (T-CoT): short reasoning grounded in what you "
    "can see or read, with the evidence it rests on; a rethink that keeps only what "
    "matters for retrieval; and a concise answer that an embedding model will use to "
    "match queries with candidates. Never state what you cannot see or read."
)

# What the input is, per family (video families get the frame count filled in).
_INPUT = {
    "text": "The input is a text.",
    "image": "The input is an image.",
    "image_text": "The input is an image together with a text about it.",
    "video": "The input is a video, shown as {n} frames labelled Frame {first} to Frame {last}.",
    "video_text": (
        "The input is a video, shown as {n} frames labelled Frame {first} to Frame {last}, "
        "together with a text about it."
    ),
    "document": "The input is a document page, shown as an image.",
    "document_text": "The input is a document page, shown as an image, together with a text.",
}

_BOX_RULE = (
    "coordinates are relative to the {what}, from 0 to 1000 on both axes, (x1, y1) the "
    "top-left and (x2, y2) the bottom-right corner; for several regions give a list of "
    'boxes: {{"bbox_2d": [[x1, y1, x2, y2], [x1, y1, x2, y2]]}}.'
)

# Which evidence to give and how, per family.
_EVIDENCE = {
    "text": (
        'End <thinking> with a JSON object {"text_keywords": ["...", "..."]} listing the few '
        "words or short phrases of the text that carry its retrieval-relevant meaning."
    ),
    "image": (
        'End <thinking> with a JSON object {"bbox_2d": [x1, y1, x2, y2]} marking the region '
        "that matters most; " + _BOX_RULE.format(what="image")
    ),
    "image_text": (
        'End <thinking> with a JSON object {"bbox_2d": [x1, y1, x2, y2]} marking the region '
        "the text points at (the object a question asks about, the part a requested change "
        "affects, the thing a caption names); " + _BOX_RULE.format(what="image")
    ),
    "video": (
        'End <thinking> with a JSON object {{"key_frames": [k, ...]}} listing the frames that '
        "show what matters most, by their frame numbers ({first} to {last}, Frame {first} "
        "is {first})."
    ),
    "video_text": (
        'End <thinking> with a JSON object {{"key_frames": [k, ...]}} listing the frames that '
        "show what the text is about, by their frame numbers ({first} to {last}, Frame "
        "{first} is {first})."
    ),
    "document": (
        'End <thinking> with a JSON object {"bbox_2d": [x1, y1, x2, y2]} marking the passage, '
        "title, table or figure that carries the page's main content; "
        + _BOX_RULE.format(what="page")
    ),
    "document_text": (
        'End <thinking> with a JSON object {"bbox_2d": [x1, y1, x2, y2]} marking the passage, '
        "table or figure of the page that the text asks about or refers to; "
        + _BOX_RULE.format(what="page")
    ),
}

_EXAMPLE_EVIDENCE = {
    "text_keywords": '{"text_keywords": ["keyword", "keyword"]}',
    "bbox_2d": '{"bbox_2d": [x1, y1, x2, y2]}',
    "key_frames": '{"key_frames": [k, k]}',
}

_ROLE = {
    "query": (
        "This input is a retrieval query: reason about what a matching candidate must show "
        "or say, and describe that in the answer."
    ),
    "candidate": (
        "This input is a retrieval candidate: reason about what it shows or says that a "
        "query could be looking for, and describe that in the answer."
    ),
}


def family_of(item: Item) -> str:
    """The prompt family of ``item``: its modality, plus ``_text`` when it carries text.

    The instruction alone does not make a ``_text`` family: nearly every benchmark item has
    one ("Represent the given image ..."), and every family shows it as the retrieval focus.

    >>> family_of(Item(modality="image", image="/a.png", inst="Find a similar image"))
    'image'
    >>> family_of(Item(modality="video", frames=("/f1.png",), text="who opens the door?"))
    'video_text'
    """
    if item.modality == "text":
        return "text"
    return f"{item.modality}_text" if item.text.strip() else item.modality


def _format_block(key: str) -> str:
    return (
        "Answer in exactly this format, with nothing outside the three tags:\n"
        f"{THINK_OPEN} short grounded reasoning ... {_EXAMPLE_EVIDENCE[key]} {THINK_CLOSE}\n"
        f"{RETHINK_OPEN} what matters for retrieval, given the instruction {RETHINK_CLOSE}\n"
        f"{ANSWER_OPEN} a concise retrieval-relevant description {ANSWER_CLOSE}"
    )


def _visual_parts(item: Item) -> list[dict[str, str]]:
    if item.modality in ("image", "document"):
        if not item.image:
            raise DataError(f"{item.modality} item has no image path; inst={item.inst!r}")
        return [{"type": "image", "image": item.image}]
    if item.modality == "video":
        if not item.frames:
            raise DataError(f"video item has no frames; inst={item.inst!r}")
        parts: list[dict[str, str]] = []
        for k, path in enumerate(item.frames, start=DEFAULT_FRAME_BASE):
            parts += [{"type": "text", "text": f"Frame {k}:"}, {"type": "image", "image": path}]
        return parts
    return []


def tcot_messages(item: Item, role: Role) -> list[Message]:
    """The chat that asks for a T-CoT of ``item`` as a query or as a candidate.

    Raises :class:`~ume.errors.DataError` when an image/document item has no image or a
    video item no frames (the Reasoner would be asked about what it cannot see).

    >>> msgs = tcot_messages(Item(modality="image", image="/a.png"), "query")
    >>> [p["type"] for p in msgs[1]["content"]]
    ['image', 'text']
    """
    if role not in _ROLE:
        raise ValueError(f"role must be 'query' or 'candidate', not {role!r}")
    family = family_of(item)
    n = len(item.frames)
    fmt = {"n": n, "first": DEFAULT_FRAME_BASE, "last": n - 1 + DEFAULT_FRAME_BASE}
    evidence = _EVIDENCE[family]
    lines = [_INPUT[family].format(**fmt), _ROLE[role]]
    if item.inst.strip():
        lines.append(f"Retrieval instruction: {item.inst.strip()}")
    else:
        lines.append("No instruction is given: focus on the main content.")
    if family == "text" or family.endswith("_text"):
        lines.append(f"Text: {item.text.strip()}")
    lines += [
        evidence.format(**fmt) if item.modality == "video" else evidence,
        _format_block(EVIDENCE_KEY[item.modality]),
    ]
    user = [*_visual_parts(item), {"type": "text", "text": "\n\n".join(lines)}]
    return [_text_message("system", SYSTEM_TCOT), {"role": "user", "content": user}]


def fixed_texts() -> list[str]:
    """Every fixed text of the prompts (what a tiny tokenizer is trained on, besides its
    corpus, so that prompts cost it few tokens)."""
    blocks = [_format_block(k) for k in _EXAMPLE_EVIDENCE]
    return [
        SYSTEM_TCOT,
        SYSTEM_FILTER,
        SYSTEM_DISCRIMINATOR,
        *_INPUT.values(),
        *_EVIDENCE.values(),
        *_ROLE.values(),
        *blocks,
    ]


def _text_message(role: str, text: str) -> Message:
    return {"role": role, "content": [{"type": "text", "text": text}]}


# ---------------------------------------------------------------- relevance filter

SYSTEM_FILTER = (
    "You check training pairs of a retrieval dataset. Each pair is a query and the "
    "candidate labelled as its match, each described by a T-CoT."
)


def relevance_messages(qry_tcot: str, pos_tcot: str) -> list[Message]:
    """The filter's question; pairs answered "No" (not irrelevant, not conflicting) are kept."""
    user = (
        f"Query T-CoT:\n{qry_tcot.strip()}\n\n"
        f"Candidate T-CoT:\n{pos_tcot.strip()}\n\n"
        "Are the two T-CoTs obviously irrelevant to each other or conflicting? "
        "Answer Yes or No."
    )
    return [_text_message("system", SYSTEM_FILTER), _text_message("user", user)]


_WORD = re.compile(r"[a-z]+")


def parse_yes_no(text: Any) -> bool | None:
    """True for Yes, False for No, None when the reply says neither (or both, unclearly).

    Looks, in order, for the word after "answer" ("Answer: Yes", "the answer is no"), then
    the first word, then a single kind of yes/no anywhere.

    >>> [parse_yes_no(t) for t in ["No.", "**Yes**", "Answer: no", "Maybe"]]
    [False, True, False, None]
    """
    if not isinstance(text, str):
        return None
    words = _WORD.findall(text.lower()[:10_000])
    for i, w in enumerate(words[:-1]):
        if w == "answer":
            nxt = words[i + 2] if words[i + 1] == "is" and i + 2 < len(words) else words[i + 1]
            if nxt in ("yes", "no"):
                return nxt == "yes"
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    kinds = {w for w in words if w in ("yes", "no")}
    return (kinds.pop() == "yes") if len(kinds) == 1 else None


# ---------------------------------------------------------------- listwise discriminator

SYSTEM_DISCRIMINATOR = (
    "You judge retrieval results. A query and several candidates are each described by a "
    "T-CoT; you name the candidate that matches the query best."
)


def discriminator_messages(query_tcot: str, candidates: list[str]) -> list[Message]:
    """The Discriminator's listwise question; candidates are numbered from 1."""
    if not candidates:
        raise ValueError("discriminator_messages needs at least one candidate")
    n = len(candidates)
    listing = "\n\n".join(f"Candidate {i}:\n{c.strip()}" for i, c in enumerate(candidates, 1))
    user = (
        f"Query T-CoT:\n{query_tcot.strip()}\n\n{listing}\n\n"
        f"Which candidate matches the query best? Answer with its number only (1 to {n})."
    )
    return [_text_message("system", SYSTEM_DISCRIMINATOR), _text_message("user", user)]


_QUERY_HEAD = "Query T-CoT:\n"
_QUESTION = re.compile(
    r"\n\nWhich candidate matches the query best\? Answer with its number only \(1 to (\d+)\)\.$"
)


def read_discriminator_messages(chat: list[Message]) -> tuple[str, list[str]] | None:
    """The query T-CoT and the candidates of a chat built by :func:`discriminator_messages`
    (None if it is not one): what a judge that does not read prose needs (the ``oracle``
    Discriminator).

    >>> read_discriminator_messages(discriminator_messages("q", ["a", "b"]))
    ('q', ['a', 'b'])
    """
    try:
        text = chat[-1]["content"][0]["text"]
    except (IndexError, KeyError, TypeError):
        return None
    m = _QUESTION.search(text) if isinstance(text, str) else None
    if m is None or not text.startswith(_QUERY_HEAD):
        return None
    n, body = int(m.group(1)), text[len(_QUERY_HEAD) : m.start()]
    # Each "Candidate k:" header is looked for after the previous one, last one first from the
    # end, so a T-CoT that happens to contain such a header cannot shift the others.
    cuts, end = [], len(body)
    for k in range(n, 0, -1):
        head = f"\n\nCandidate {k}:\n"
        i = body.rfind(head, 0, end)
        if i < 0:
            return None
        cuts.append((i, i + len(head), end))
        end = i
    cuts.reverse()
    return body[: cuts[0][0]], [body[b:e] for _, b, e in cuts]


_CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is)?\s*[:=]?\s*(?:candidate\s*)?[\[#(]?\s*(\d{1,6})\b", re.I),
    re.compile(r"candidate\s*[\[#(]?\s*(\d{1,6})\b", re.I),
    re.compile(r"[\[#(]\s*(\d{1,6})\s*[\])]?"),
    re.compile(r"\b(\d{1,6})\b"),
)


def parse_choice(text: Any, n: int) -> int | None:
    """The 0-based index of the candidate a reply names, or None if it names none of 1..n.

    The most explicit mention wins ("Answer: 3", then "Candidate 3", then "[3]", then the
    first bare number); a named number outside 1..n is no choice.

    >>> [parse_choice(t, 4) for t in ["2", "**Candidate 3**", "Answer: 1", "7", "none"]]
    [1, 2, 0, None, None]
    """
    if not isinstance(text, str) or not isinstance(n, int) or n < 1:
        return None
    text = text[:10_000]
    for pattern in _CHOICE_PATTERNS:
        m = pattern.search(text)
        if m:
            k = int(m.group(1))
            return k - 1 if 1 <= k <= n else None
    return None
