"""Drawing of the synthetic world: shape scenes, event videos and text pages.

Everything here is a pure function of its arguments (no randomness, no timestamps), so the
generators that draw with it (the synthetic benchmark, the synthetic training pairs) are
deterministic given their seed. The oracle annotator reads its vocabulary (colours, shapes).

* A **scene** is a list of :class:`Obj` (shape, colour, grid cell, scale) drawn on a square
  canvas divided into a 3x3 grid; :func:`obj_box` gives the drawn object's box in the
  0..1000 relative coordinates of the T-CoT evidence (``pixels = coord * size / 1000``).
* A **video** is a list of scenes, one per frame; an :class:`Event` (appear / recolour /
  move) changes one object during a window of frames (the 1-based key frames).
* A **page** is a rendered document: a title and ``key: value`` lines drawn with PIL's
  default font; :func:`render_page` returns the box of every line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ume.io import atomic_path

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
CELLS: tuple[str, ...] = (
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
)
BACKGROUND = (245, 245, 240)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Obj:
    shape: str
    color: str
    cell: int  # index into CELLS (row-major 3x3 grid)
    # Fraction of the cell the shape spans (large objects may exceed 1). A whole cell by
    # default: with 96-px images and 16-px patches a cell is exactly 2x2 patches, and a tiny
    # vision tower learns objects that cover whole patches in ~100 steps, while at 0.9 of a
    # cell it had learnt nothing after 150 (measured, docs/models.md).
    scale: float = 1.0

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def where(self) -> str:
        return CELLS[self.cell]

    def describe(self) -> str:
        return f"a {self.color} {self.shape} at the {self.where}"


def obj_pixels(obj: Obj, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x1, y1, x2, y2), inclusive, of ``obj`` drawn on a ``size`` canvas."""
    cell = size / 3.0
    r, c = divmod(obj.cell, 3)
    cx, cy = (c + 0.5) * cell, (r + 0.5) * cell
    half = max(2.0, obj.scale * cell / 2.0)
    x1, y1 = max(0, round(cx - half)), max(0, round(cy - half))
    x2, y2 = min(size - 1, round(cx + half) - 1), min(size - 1, round(cy + half) - 1)
    return x1, y1, x2, y2


def to_rel(box: tuple[int, int, int, int], w: int, h: int | None = None) -> list[int]:
    """Pixel box (inclusive) -> 0..1000 relative box [x1, y1, x2, y2]."""
    h = w if h is None else h
    x1, y1, x2, y2 = box
    return [
        round(x1 * 1000 / w),
        round(y1 * 1000 / h),
        round((x2 + 1) * 1000 / w),
        round((y2 + 1) * 1000 / h),
    ]


def obj_box(obj: Obj, size: int) -> list[int]:
    """The object's box in 0..1000 coordinates."""
    return to_rel(obj_pixels(obj, size), size)


def draw_obj(draw: ImageDraw.ImageDraw, obj: Obj, size: int) -> None:
    x1, y1, x2, y2 = obj_pixels(obj, size)
    fill = COLORS[obj.color]
    if obj.shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x1, y1, x2, y2), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    elif obj.shape == "diamond":
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        draw.polygon([(mx, y1), (x2, my), (mx, y2), (x1, my)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(objs: list[Obj] | tuple[Obj, ...], size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in objs:
        draw_obj(draw, o, size)
    return img


def describe_scene(objs: list[Obj] | tuple[Obj, ...]) -> str:
    return ", ".join(o.describe() for o in objs)


def save_png(img: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", optimize=False)
    return path


def save_jpeg(img: Image.Image, path: Path) -> Path:
    with atomic_path(path) as tmp:
        img.save(tmp, format="JPEG", quality=JPEG_QUALITY)
    return path


# --------------------------------------------------------------------------- videos
EVENT_KINDS = ("appears", "changes colour", "moves")


@dataclass(frozen=True)
class Event:
    """One object's event in frames ``start..end`` (1-based, inclusive)."""

    kind: str  # one of EVENT_KINDS
    obj: Obj  # the object in its normal state (outside the window)
    start: int
    end: int
    new_color: str = ""  # changes colour: colour inside the window
    new_cell: int = -1  # moves: cell inside the window

    @property
    def key_frames(self) -> list[int]:
        return list(range(self.start, self.end + 1))

    def state(self, frame: int) -> Obj | None:
        """The object as drawn in 1-based ``frame`` (None: not visible)."""
        active = self.start <= frame <= self.end
        if self.kind == "appears":
            return self.obj if active else None
        if self.kind == "changes colour":
            return replace(self.obj, color=self.new_color) if active else self.obj
        if self.kind == "moves":
            return replace(self.obj, cell=self.new_cell) if active else self.obj
        raise ValueError(f"unknown event kind {self.kind!r}")  # pragma: no cover

    def active_obj(self) -> Obj:
        """The object as drawn during the event (where the evidence is)."""
        o = self.state(self.start)
        assert o is not None
        return o

    def describe(self) -> str:
        o = self.obj
        if self.kind == "appears":
            return f"a {o.color} {o.shape} appears at the {o.where}"
        if self.kind == "changes colour":
            return f"the {o.shape} at the {o.where} turns from {o.color} to {self.new_color}"
        return f"a {o.color} {o.shape} moves from the {o.where} to the {CELLS[self.new_cell]}"

    @property
    def class_label(self) -> str:
        return f"{self.obj.shape} {_CLASS_VERB[self.kind]}"


_CLASS_VERB = {"appears": "appearing", "changes colour": "changing colour", "moves": "moving"}


def video_frames(static: list[Obj], events: list[Event], num_frames: int) -> list[list[Obj]]:
    """Objects to draw in each frame (index 0 = frame 1)."""
    out = []
    for f in range(1, num_frames + 1):
        objs = list(static)
        for e in events:
            o = e.state(f)
            if o is not None:
                objs.append(o)
        out.append(objs)
    return out


def write_frames(frames: list[list[Obj]], size: int, folder: Path) -> list[Path]:
    """Write frames as ``0000.jpg``, ``0001.jpg``, ... (the MMEB frame naming) into ``folder``."""
    folder = Path(folder)
    names = [f"{i:04d}.jpg" for i in range(len(frames))]
    with atomic_path(folder, is_dir=True) as tmp:  # a video is complete or absent
        for name, objs in zip(names, frames, strict=True):
            render_scene(objs, size).save(tmp / name, format="JPEG", quality=JPEG_QUALITY)
    return [folder / n for n in names]


# --------------------------------------------------------------------------- documents
_FONT: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None


def _font():
    global _FONT
    if _FONT is None:
        _FONT = ImageFont.load_default()
    return _FONT


def render_page(title: str, lines: list[str], size: int) -> tuple[Image.Image, list[list[int]]]:
    """A white page with ``title`` and ``lines``; returns the image and each line's 0..1000 box
    (index 0: the title, then one per line)."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font()
    boxes = []
    y = max(2, size // 32)
    x = max(2, size // 24)
    step = max(10, size // max(1, len(lines) + 2))
    for i, text in enumerate([title, *lines]):
        draw.text((x, y), text, fill=(0, 0, 0) if i else (20, 20, 120), font=font)
        x1, y1, x2, y2 = draw.textbbox((x, y), text, font=font)
        x2, y2 = min(size - 1, x2), min(size - 1, y2)
        boxes.append(to_rel((x1, y1, x2, y2), size))
        if i == 0:
            draw.line((x, y2 + 2, size - x, y2 + 2), fill=(120, 120, 120))
        y += step
    return img, boxes
