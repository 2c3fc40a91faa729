"""T-CoT: the text format (render, parse, check), the prompts, and evidence materialisation."""

from ume.tcot.evidence import Materialised, materialise, pixel_box
from ume.tcot.format import (
    DEFAULT_FRAME_BASE,
    EVIDENCE_KEY,
    EVIDENCE_KEYS,
    TAGS,
    Evidence,
    ParsedTCoT,
    check_format,
    parse_tcot,
    render_tcot,
    strip_evidence,
)
from ume.tcot.prompts import (
    FAMILIES,
    discriminator_messages,
    family_of,
    parse_choice,
    parse_yes_no,
    relevance_messages,
    tcot_messages,
)

__all__ = [
    "DEFAULT_FRAME_BASE",
    "EVIDENCE_KEY",
    "EVIDENCE_KEYS",
    "FAMILIES",
    "TAGS",
    "Evidence",
    "Materialised",
    "ParsedTCoT",
    "check_format",
    "discriminator_messages",
    "family_of",
    "materialise",
    "parse_choice",
    "parse_tcot",
    "parse_yes_no",
    "pixel_box",
    "relevance_messages",
    "render_tcot",
    "strip_evidence",
    "tcot_messages",
]
