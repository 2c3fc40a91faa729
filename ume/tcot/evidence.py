"""Evidence materialisation: turn a parsed T-CoT's evidence into what the Embedder sees.

Boxes become crops of the original image (pixel = coord * size / 1000, x with the width
and y with the height, rounded half up so that 0..1000 is exactly the whole image); crops
too small or too thin to carry anything (side < ``min_side`` px, aspect ratio >
``max_aspect``) are dropped, as in the method. Key frames (already 0-based, see
:func:`~ume.tcot.format.parse_tcot`) select the item's frame paths. Keywords pass through.

Like the parser, :func:`materialise` never raises on bad evidence or a bad image: it
records the problem and returns what it could; the input builder decides what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from ume.items import Item
from ume.tcot.format import COORD_MAX, Box, ParsedTCoT


@dataclass
class Materialised:
    """The evidence of one T-CoT, ready for the input builder.

    ``crops[i]`` is the crop of ``crop_boxes[i]`` (pixels, (left, top, right, bottom)
    with right/bottom exclusive, PIL's convention); ``frames`` are frame paths in the
    order the T-CoT named them.
    """

    crops: list[Image.Image] = field(default_factory=list)
    crop_boxes: list[Box] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def pixel_box(box: Box, width: int, height: int) -> Box:
    """A 0..1000 box in pixels of a ``width`` x ``height`` image.

    Integer arithmetic, half up, so that the result does not depend on float rounding.

    >>> pixel_box((0, 0, 1000, 1000), 640, 480)
    (0, 0, 640, 480)
    >>> pixel_box((250, 500, 750, 1000), 101, 3)
    (25, 2, 76, 3)
    """
    x1, y1, x2, y2 = box

    def scale(c: int, size: int) -> int:
        return (2 * c * size + COORD_MAX) // (2 * COORD_MAX)

    return (scale(x1, width), scale(y1, height), scale(x2, width), scale(y2, height))


def _load_rgb(path: str) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def materialise(
    parsed: ParsedTCoT, item: Item, *, min_side: int = 10, max_aspect: float = 50.0
) -> Materialised:
    """Crops, frames and keywords named by ``parsed``'s evidence for ``item``.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.new("RGB", (200, 100)).save(path)
    >>> from ume.tcot.format import parse_tcot
    >>> p = parse_tcot('<thinking> {"bbox_2d": [0, 0, 500, 1000]} </thinking>')
    >>> materialise(p, Item(modality="image", image=path)).crop_boxes
    [(0, 0, 100, 100)]
    """
    out = Materialised(keywords=list(parsed.evidence.keywords))
    ev = parsed.evidence
    if ev.boxes:
        _crops(ev.boxes, item, min_side, max_aspect, out)
    if ev.key_frames:
        if not item.frames:
            out.problems.append(f"key frames given but the {item.modality} item has no frames")
        for k in ev.key_frames:
            if 0 <= k < len(item.frames):
                out.frames.append(item.frames[k])
            elif item.frames:
                out.problems.append(
                    f"key frame index {k} (0-based) outside the item's {len(item.frames)} "
                    "frames dropped"
                )
    return out


def _crops(
    boxes: tuple[Box, ...], item: Item, min_side: int, max_aspect: float, out: Materialised
) -> None:
    if not item.image:
        out.problems.append(f"boxes given but the {item.modality} item has no image")
        return
    try:
        image = _load_rgb(item.image)
    except Exception as e:  # missing, truncated, not an image, decompression bomb ...
        out.problems.append(f"image {item.image} could not be read ({type(e).__name__}: {e})")
        return
    w, h = image.size
    for box in boxes:
        px = pixel_box(box, w, h)
        cw, ch = px[2] - px[0], px[3] - px[1]
        if min(cw, ch) < max(min_side, 1):
            out.problems.append(f"crop {cw}x{ch} px of box {box} under {min_side} px dropped")
        elif max(cw, ch) / min(cw, ch) > max_aspect:
            out.problems.append(f"crop {cw}x{ch} px of box {box} aspect over {max_aspect} dropped")
        else:
            out.crops.append(image.crop(px))
            out.crop_boxes.append(px)
