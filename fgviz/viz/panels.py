"""Panels: how one map is drawn over the image a model saw, at the size a projector or a slide needs.

A panel is an RGB uint8 image and a caption. Every map is drawn at the display size, an integer multiple `factor`
of the model input (so `Style.min_size` = 384 shows a 192-px input at 2x and an export at 1024+ px at 6x): the photo
is resized smoothly, token maps stay crisp (nearest, the blocks are the tokens), and boxes, grids and outlines are
drawn at that size. Every overlay carries its colour scale in "x uniform" (a map divided by its mean: 1 = what a
uniform map gives every pixel, 3 = three times that), the unit the Normalisation control shares across panels.

numpy and cv2 only (no torch, no gradio): maps arrive as pixel maps from `fgviz.core.geometry` (token maps) or
from the method that made them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

import fgviz.viz.overlay as overlay  # the module, not the package: fgviz.viz imports this one (display)

NORMS = ("shared", "panel")
MIN_SIZE = 384  # the app's panels: the longer side is at least this
EXPORT_SIZE = 1024  # exported PNGs: the longer side is at least this
UNIT = "x uniform"

Panel = tuple[np.ndarray, str]  # (RGB uint8, caption)
KeyItem = tuple[str, tuple[int, int, int], str]  # (swatch kind, RGB colour, meaning): one entry of a panel's key
SWATCHES = ("box", "boxes", "outline", "grid")


@dataclass(frozen=True)
class Style:
    """How maps are drawn: colormap, heat opacity, normalisation and the minimum panel size."""

    cmap: str = overlay.SAFE_COLORMAPS[0]
    alpha: float = 0.5
    norm: str = "shared"  # "shared": one colour scale per group of panels | "panel": each its own
    min_size: int = MIN_SIZE

    def __post_init__(self) -> None:
        if self.cmap not in overlay.COLORMAPS:
            raise ValueError(f"unknown colormap {self.cmap!r}; available: {overlay.COLORMAPS}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def shared(self) -> bool:
        return self.norm == "shared"

    def factor(self, size: tuple[int, int]) -> int:
        """Integer display factor for an (H, W) image."""
        return max(1, math.ceil(self.min_size / max(int(size[0]), int(size[1]), 1))) if self.min_size > 0 else 1


def relative(values: np.ndarray) -> np.ndarray:
    """A non-negative map divided by its mean: 1 = uniform attention, 3 = three times the uniform share (NaN
    pixels are ignored and kept)."""
    v = np.asarray(values, np.float32)
    v = np.where(np.isnan(v), np.nan, np.clip(v, 0.0, None)).astype(np.float32)
    finite = v[np.isfinite(v)]
    m = float(finite.mean()) if finite.size else 0.0
    return v / m if m > 0 else np.where(np.isnan(v), np.nan, 0.0).astype(np.float32)


def scale_range(maps: Sequence[np.ndarray], style: Style, index: int) -> tuple[float, float]:
    """(vmin, vmax) of panel `index` of a group of relative maps: one range for the group (shared) or its own.
    vmin is 0 ("no attention"), vmax the largest value."""
    chosen = maps if style.shared else [maps[index]]
    vmax = max((float(np.nanmax(m)) for m in chosen if np.isfinite(m).any()), default=1.0)
    return 0.0, max(vmax, 1e-6)


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """The photo at `factor` times its size, smoothly (bicubic), for drawing on at display size."""
    img = np.asarray(image, np.uint8)
    if factor == 1:
        return img.copy()
    H, W = img.shape[:2]
    return cv2.resize(img, (W * factor, H * factor), interpolation=cv2.INTER_CUBIC)


def blocks(pixels: np.ndarray, factor: int) -> np.ndarray:
    """A pixel map at `factor` times its size, nearest (token blocks stay crisp)."""
    p = np.asarray(pixels, np.float32)
    return p if factor == 1 else np.repeat(np.repeat(p, factor, 0), factor, 1)


@dataclass
class Drawn:
    """A map drawn over the enlarged image: `rgb` at `factor` times the model input, coloured over [vmin, vmax].

    Draw boxes, grids and outlines on `rgb` (`overlay.draw_*` with `image_scale=factor`, `min_size=0`), then
    `finish` appends the colour bar and, when given, the key to what was drawn (`key_strip`)."""

    rgb: np.ndarray
    factor: int
    vmin: float
    vmax: float

    def finish(self, style: Style, unit: str | None = UNIT, key: Sequence[KeyItem] = ()) -> np.ndarray:
        out = with_legend(self.rgb, self.vmin, self.vmax, style.cmap, unit) if unit else self.rgb
        return with_key(out, key) if key else out

    def drawn_over(self, rgb: np.ndarray) -> Drawn:
        """The same map and colour range with `rgb` drawn over it (a mask or a box on a copy), for its own bar."""
        return Drawn(rgb, self.factor, self.vmin, self.vmax)


def heat(image: np.ndarray, pixels: np.ndarray, style: Style, vmin: float | None = None,
         vmax: float | None = None) -> Drawn:
    """Blend a pixel map over the image enlarged to display size.

    Args:
        image: (H, W, 3) uint8, the model input.
        pixels: (H, W) map over `image`, or already at display size (H * f, W * f); NaN pixels stay unshaded.
        style: colormap, opacity, display size.
        vmin, vmax: colour range (None: the map's own).
    """
    img = np.asarray(image, np.uint8)
    H, W = img.shape[:2]
    f = style.factor((H, W))
    px = np.asarray(pixels, np.float32)
    if px.shape == (H, W):
        px = blocks(px, f)
    elif px.shape != (H * f, W * f):
        raise ValueError(f"map {px.shape} is neither the image size {(H, W)} nor the display size {(H * f, W * f)}")
    finite = px[np.isfinite(px)]
    lo = float(vmin) if vmin is not None else float(finite.min()) if finite.size else 0.0
    hi = float(vmax) if vmax is not None else float(finite.max()) if finite.size else 1.0
    big = enlarge(img, f)
    rgb = overlay.blend(big, overlay.normalize(np.nan_to_num(px, nan=lo), lo, hi), float(style.alpha), style.cmap)
    nan = np.isnan(px)
    if nan.any():
        rgb[nan] = big[nan]
    return Drawn(rgb, f, lo, hi)


def colorbar(width: int, vmin: float, vmax: float, cmap: str, unit: str = UNIT) -> np.ndarray:
    """A horizontal colour bar (RGB, white background) with ticks and the unit, `width` pixels wide."""
    width = max(int(width), 120)
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    (uw, _), _ = cv2.getTextSize(unit, font, fs, 1)
    bar_h, pad, h = 12, 6, 40
    out = np.full((h, width, 3), 255, np.uint8)
    x0, x1 = pad, width - pad - uw - 8  # the unit sits right of the bar
    ramp = np.linspace(0.0, 1.0, x1 - x0, dtype=np.float32)[None, :].repeat(bar_h, 0)
    out[pad : pad + bar_h, x0:x1] = overlay.colormap(ramp, cmap)
    ticks = _ticks(vmin, vmax)
    for t in ticks:
        x = x0 + round((t - vmin) / max(vmax - vmin, 1e-12) * (x1 - x0 - 1))
        out[pad + bar_h : pad + bar_h + 3, max(x, 0) : x + 1] = 0
        label = f"{t:g}"
        (tw, th), _ = cv2.getTextSize(label, font, fs, 1)
        cv2.putText(out, label, (int(np.clip(x - tw // 2, 0, width - tw)), pad + bar_h + 5 + th), font, fs,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(out, unit, (width - uw - pad, pad + bar_h - 1), font, fs, (80, 80, 80), 1, cv2.LINE_AA)
    return out


def _ticks(vmin: float, vmax: float, n: int = 5) -> list[float]:
    span = max(vmax - vmin, 1e-12)
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (m * step) <= n:
            step *= m
            break
    first = math.ceil(vmin / step) * step
    return [round(first + i * step, 10) for i in range(int((vmax - first) / step + 1e-9) + 1)]


def with_legend(rgb: np.ndarray, vmin: float, vmax: float, cmap: str, unit: str = UNIT) -> np.ndarray:
    """`rgb` with a colour bar of (vmin, vmax) appended below (a narrow image is padded to the bar's 120 px)."""
    return vstack([rgb, colorbar(rgb.shape[1], vmin, vmax, cmap, unit)], gap=0)


def _swatch(out: np.ndarray, kind: str, color: tuple[int, int, int], x: int, y: int, w: int, h: int) -> None:
    """Draw one key swatch of `kind` in the box (x, y, w, h) of `out`."""
    c = tuple(int(v) for v in color)
    if kind == "box":
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), c, 2)
    elif kind == "boxes":  # numbered boxes in the cycled colours: three small ones
        for i, bc in enumerate(overlay.BOX_COLORS[:3]):
            bx = x + i * (w // 3)
            cv2.rectangle(out, (bx, y + 1), (bx + w // 3 - 3, y + h - 2), tuple(int(v) for v in bc), 2)
    elif kind == "outline":
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), c, 2)
        out[y + 2 : y + h - 2, x + 2 : x + w - 2] = (0.7 * out[y + 2 : y + h - 2, x + 2 : x + w - 2] + 0.3 *
                                                     np.array(c)).astype(np.uint8)
    elif kind == "grid":
        for gx in range(x, x + w, 6):
            out[y : y + h, gx] = c
        for gy in range(y, y + h, 6):
            out[gy, x : x + w] = c
    else:
        raise ValueError(f"unknown key swatch {kind!r}; expected one of {SWATCHES}")


def _wrap(text: str, width: int, font: int, scale: float) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and cv2.getTextSize(trial, font, scale, 1)[0][0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def key_strip(width: int, items: Sequence[KeyItem]) -> np.ndarray:
    """A key under a panel (RGB, white): one row per item, a swatch in the item's colour and what it marks, the text
    wrapped to `width` pixels, so every colour and box drawn on a view says what it is."""
    width = max(int(width), 160)
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (_, th), base = cv2.getTextSize("Ag", font, fs, 1)
    line_h, pad, sw, sh = th + base + 5, 6, 34, 14
    rows = [(kind, color, _wrap(text, width - sw - 3 * pad, font, fs)) for kind, color, text in items]
    out = np.full((pad + sum(max(len(t), 1) * line_h + 4 for _, _, t in rows) + pad, width, 3), 255, np.uint8)
    y = pad
    for kind, color, text in rows:
        _swatch(out, kind, color, pad, y + max((line_h - sh) // 2, 0), sw, sh)
        for i, line in enumerate(text):
            cv2.putText(out, line, (2 * pad + sw, y + i * line_h + th + 2), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
        y += max(len(text), 1) * line_h + 4
    return out


def with_key(rgb: np.ndarray, items: Sequence[KeyItem]) -> np.ndarray:
    """`rgb` with its key (`key_strip`) appended below."""
    return vstack([rgb, key_strip(rgb.shape[1], items)], gap=0)


def plain(image: np.ndarray, style: Style) -> tuple[np.ndarray, int]:
    """The photo alone at display size (no map): (RGB, factor)."""
    f = style.factor(np.asarray(image).shape[:2])
    return enlarge(image, f), f


def caption_top1(labels: Sequence[str], probs: np.ndarray) -> str:
    i = int(np.argmax(probs))
    return f"{labels[i]} ({100 * float(probs[i]):.1f}%)"


def label_strip(image: np.ndarray, text: str, scale: float = 0.5) -> np.ndarray:
    """A white strip with a caption above an RGB image (tiled exports, token crops)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), base = cv2.getTextSize(text, font, scale, 1)
    strip = np.full((th + base + 8, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, th + 4), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], 0)


def hstack(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """RGB images side by side on white, top-aligned."""
    H = max(im.shape[0] for im in images)
    W = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.full((H, W, 3), 255, np.uint8)
    x = 0
    for im in images:
        out[: im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def vstack(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """RGB images one above the other on white, left-aligned."""
    W = max(im.shape[1] for im in images)
    rows = [np.pad(im, ((0, gap), (0, W - im.shape[1]), (0, 0)), constant_values=255) for im in images]
    return np.concatenate(rows, 0)[:-gap] if gap else np.concatenate(rows, 0)


def tiles(maps: np.ndarray, names: Sequence[str], style: Style, cols: int = 4, unit: str = UNIT) -> np.ndarray:
    """Colormapped small maps (K, h, w), each labelled, `cols` per row, with a colour bar: one colour range for all
    tiles in `unit` when shared, else each tile stretched to its own range (the bar then reads 0 = a tile's minimum,
    1 = its maximum)."""
    m = np.asarray(maps, np.float32)
    lo, hi = overlay.shared_range(m) if style.shared else (None, None)
    side = max(64, style.min_size // cols - 8)
    out = []
    for x, name in zip(m, names, strict=True):
        rgb = overlay.colormap(overlay.normalize(x, lo, hi), style.cmap)
        f = max(1, side // max(rgb.shape[:2]))
        out.append(label_strip(np.repeat(np.repeat(rgb, f, 0), f, 1), name))
    grid = vstack([hstack(out[i : i + cols]) for i in range(0, len(out), cols)])
    if style.shared:
        return with_legend(grid, lo, hi if hi > lo else lo + 1e-6, style.cmap, unit)
    return with_legend(grid, 0.0, 1.0, style.cmap, "each tile: its min..max")
