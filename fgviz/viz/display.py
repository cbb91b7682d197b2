"""`Figure`: panels that show themselves in Jupyter, Colab and a notebook's HTML copy, sized for a projector.

A figure is a list of panels (an RGB uint8 image and its caption, the `fgviz.viz.panels.Panel` the app shows), a
title and notes. In a notebook it renders as HTML (`_repr_html_`: the panels side by side, wrapping, each a PNG with
its caption as text) or as one PNG (`_repr_png_`: the panels tiled, captions drawn under them); `save` writes that
PNG for slides.

Projector size: the panels are the app's pixels (the longer side of a demo model's view is 384 px), shown
`scale` times larger (default 1.4: about 540 px wide, two side by side across a notebook) so that the colour bars'
ticks and the box labels (drawn at about 12 px) read at about 17 px from the back of a room; captions are text at
1.05 em. The PNG carries the same display width in its metadata.

numpy, cv2 and PIL only (no torch, no gradio).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fgviz.viz.panels import Panel, hstack, vstack

DISPLAY_SCALE = 1.4  # CSS pixels per image pixel: the app's 384-px panels at about 540 px
COLUMNS = 2  # panels per row of the PNG (the HTML wraps to the page's width instead)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CAPTION_SCALE = 0.55  # cv2 font scale of captions in the PNG (about 12 px high)
_TITLE_SCALE = 0.75
_ITALICS = r"(?<!\w)\*(\S(?:.*?\S)?)\*(?!\w)"  # *text*, not the x of "2 * 3"


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise ValueError(f"a panel must be an (H, W, 3) uint8 RGB image, got {a.shape} {a.dtype}")
    return a


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image as PNG bytes (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(_check_rgb(rgb), "RGB").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def wrap(text: str, width: int, scale: float = _CAPTION_SCALE, thickness: int = 1) -> list[str]:
    """`text` broken into lines that fit `width` pixels in the cv2 font at `scale` and `thickness` (a word longer than
    the width keeps its own line)."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if line and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def text_block(text: str, width: int, scale: float = _CAPTION_SCALE, thickness: int = 1) -> np.ndarray:
    """White strip `width` pixels wide with `text` wrapped on it, black."""
    lines = wrap(text, width - 8, scale, thickness)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, thickness)
    step = th + base + 4
    out = np.full((step * len(lines) + 6, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(out, line, (4, 4 + th + i * step), _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return out


def _plain(markdown: str) -> str:
    """The notes' Markdown (bold, italics, code, bullets) as plain text for the PNG."""
    s = re.sub(r"\*\*(.+?)\*\*", r"\1", markdown)
    s = re.sub(_ITALICS, r"\1", s)
    return re.sub(r"`(.+?)`", r"\1", s)


def markdown_html(markdown: str) -> str:
    """The little Markdown the figures' notes use (**bold**, *italics*, `code`, "- " bullets, lines) as HTML, with
    everything else escaped."""
    out, items = [], []

    def inline(s: str) -> str:
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        s = re.sub(_ITALICS, r"<i>\1</i>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    def flush() -> None:
        if items:
            out.append("<ul style='margin:0.2em 0'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.strip().splitlines():
        if line.lstrip().startswith("- "):
            items.append(inline(line.lstrip()[2:]))
            continue
        flush()
        if line.strip():
            out.append(f"<div>{inline(line.strip())}</div>")
    flush()
    return "".join(out)


@dataclass
class Figure:
    """Panels (RGB uint8 image, caption) with a title and notes (Markdown), displayable in Jupyter.

    Args:
        panels: (image, caption) pairs, e.g. an Overview column's or the Internals tab's panels.
        title: one line above the panels.
        notes: Markdown below them (the prediction, what is a preview).
        scale: CSS pixels per image pixel when shown (`DISPLAY_SCALE`; charts drawn at slide size use less).
        columns: panels per row of the PNG (`image`, `_repr_png_`, `save`).
    """

    panels: list[Panel]
    title: str = ""
    notes: str = ""
    scale: float = DISPLAY_SCALE
    columns: int = COLUMNS
    numbers: dict = field(default_factory=dict)  # what was measured, for code (not drawn)

    def __post_init__(self) -> None:
        self.panels = [(_check_rgb(rgb), str(cap)) for rgb, cap in self.panels]
        if not self.panels:
            raise ValueError("a figure needs at least one panel")
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")
        if self.columns < 1:
            raise ValueError(f"columns must be >= 1, got {self.columns}")

    def __len__(self) -> int:
        return len(self.panels)

    def __getitem__(self, index: int | slice | Sequence[int]) -> Figure:
        """A figure of some of the panels (same title and notes): `fig[2:5]`, `fig[0]`, `fig[[0, 3]]`."""
        if isinstance(index, slice):
            chosen = self.panels[index]
        elif isinstance(index, int):
            chosen = [self.panels[index]]
        else:
            chosen = [self.panels[i] for i in index]
        return Figure(chosen, self.title, self.notes, self.scale, self.columns, dict(self.numbers))

    def __add__(self, other: Figure) -> Figure:
        """Both figures' panels in one (the titles joined, the notes of both)."""
        title = " | ".join(t for t in (self.title, other.title) if t)
        notes = "\n".join(n for n in (self.notes, other.notes) if n)
        return Figure(self.panels + other.panels, title, notes, self.scale, self.columns,
                      {**self.numbers, **other.numbers})

    @property
    def captions(self) -> list[str]:
        return [cap for _, cap in self.panels]

    def image(self) -> np.ndarray:
        """All panels as one RGB image: `columns` per row, each caption wrapped under its panel, the title above and
        the notes below."""
        cells = [vstack([rgb, text_block(cap, rgb.shape[1])], gap=0) for rgb, cap in self.panels]
        rows = [hstack(cells[i : i + self.columns], gap=12) for i in range(0, len(cells), self.columns)]
        body = vstack(rows, gap=12)
        parts = [body]
        if self.title:
            parts.insert(0, text_block(self.title, body.shape[1], _TITLE_SCALE, 2))
        if self.notes:
            parts.append(text_block(_plain(self.notes), body.shape[1]))
        return vstack(parts, gap=4)

    def png(self) -> bytes:
        """`image()` as PNG bytes."""
        return png_bytes(self.image())

    def save(self, path: str | Path) -> Path:
        """Write `image()` as a PNG file (for slides)."""
        path = Path(path)
        path.write_bytes(self.png())
        return path

    def _repr_png_(self) -> tuple[bytes, dict[str, int]]:
        rgb = self.image()
        return png_bytes(rgb), {"width": round(rgb.shape[1] * self.scale), "height": round(rgb.shape[0] * self.scale)}

    def _repr_html_(self) -> str:
        figs = []
        for rgb, cap in self.panels:
            data = base64.b64encode(png_bytes(rgb)).decode("ascii")
            width = round(rgb.shape[1] * self.scale)
            figs.append(
                f"<figure style='margin:0;width:{width}px;max-width:100%'>"
                f"<img src='data:image/png;base64,{data}' alt='{html.escape(cap, quote=True)}' "
                f"style='width:100%;height:auto;display:block'>"
                f"<figcaption style='font-size:1.05em;line-height:1.3;margin-top:0.3em'>{html.escape(cap)}"
                "</figcaption></figure>")
        title = (f"<div style='font-size:1.25em;font-weight:600;margin-bottom:0.4em'>{html.escape(self.title)}</div>"
                 if self.title else "")
        # the notes flow beside the last panel when the page is wide enough (a projector), else under the panels
        notes = (f"<div style='flex:1 1 320px;min-width:280px;font-size:1.05em'>{markdown_html(self.notes)}</div>"
                 if self.notes else "")
        return (f"<div class='fgviz-figure' style='font-family:sans-serif'>{title}"
                f"<div style='display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start'>{''.join(figs)}{notes}"
                "</div></div>")


__all__ = ["COLUMNS", "DISPLAY_SCALE", "Figure", "markdown_html", "png_bytes", "text_block", "wrap"]
