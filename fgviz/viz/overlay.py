"""Numpy/cv2 image helpers: colormaps, normalisation, blends, boxes, grids, outlines and tiles.

Token maps are placed on pixels by `fgviz.core.geometry` (the one mapping). Conventions (shared with
`fgviz.core.explanation`):
- every image in and out is RGB `uint8` of shape (H, W, 3). cv2 is only used for resizing and drawing; its BGR
  colormaps are flipped to RGB once, when the lookup tables are built, and drawing colours are given in the
  array's own channel order (RGB), so no BGR value ever reaches a caller;
- maps are float arrays; `colormap`/`blend` expect values in [0, 1] (use `normalize` or `normalize_shared` first);
- boxes are (x0, y0, x1, y1) in pixels of the image with x1/y1 exclusive;
- token (r, c) of a ViT covers rows `stride*r .. stride*r + patch_size - 1` and the same for columns.

The `draw_*` functions upscale small images (nearest, by an integer factor) before drawing so that lines and
numbers stay legible on the 96-128 px demo images. They return the upscaled image; coordinates given to them are
always in the units of the image passed in and are multiplied by the factor `upscale_factor(image.shape[:2],
min_size)` internally. To draw several layers, pass the image returned by the first call together with
`image_scale=<factor of that call>` to the next one (its coordinates stay in original units).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

# Colour-blind-friendly perceptually uniform maps first; "turbo"/"jet" exist for people who ask for them but are
# never the default (not perceptually uniform, not safe for colour-vision deficiencies).
SAFE_COLORMAPS: tuple[str, ...] = ("viridis", "cividis", "magma", "inferno")
COLORMAPS: tuple[str, ...] = (*SAFE_COLORMAPS, "turbo", "jet")
DEFAULT_CMAP = "viridis"

_CV2_CMAPS = {
    "viridis": cv2.COLORMAP_VIRIDIS,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
}

# Okabe & Ito (2008), "Color Universal Design": the categorical palette safe for all common colour-vision
# deficiencies, RGB, in the published order.
OKABE_ITO: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "orange": (230, 159, 0),
    "sky_blue": (86, 180, 233),
    "bluish_green": (0, 158, 115),
    "yellow": (240, 228, 66),
    "blue": (0, 114, 178),
    "vermillion": (213, 94, 0),
    "reddish_purple": (204, 121, 167),
}
# Box colours: Okabe-Ito without black (invisible on dark photos), cycled when there are more boxes.
BOX_COLORS: tuple[tuple[int, int, int], ...] = tuple(v for k, v in OKABE_ITO.items() if k != "black")

DEFAULT_MIN_SIZE = 384  # draw_* upscale so that the longer side is at least this many pixels


# ---------------------------------------------------------------------------------------------------------------
# Colormaps and normalisation
# ---------------------------------------------------------------------------------------------------------------


@cache
def _lut(name: str) -> np.ndarray:
    if name not in _CV2_CMAPS:
        raise KeyError(f"unknown colormap {name!r}; available: {', '.join(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, _CV2_CMAPS[name])  # (256, 1, 3) BGR
    lut = np.ascontiguousarray(bgr[:, 0, ::-1])  # (256, 3) RGB
    lut.setflags(write=False)
    return lut


def colormap_lut(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The 256-entry RGB lookup table of a colormap.

    Args:
        cmap: one of `COLORMAPS`.

    Returns:
        (256, 3) uint8 RGB, read-only; entry 0 is the colour of value 0 and entry 255 the colour of value 1.
    """
    return _lut(cmap)


def colormap(values: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Map values in [0, 1] to RGB colours.

    Args:
        values: (H, W) (or any shape) floats; clipped to [0, 1], NaN is drawn as 0.
        cmap: one of `COLORMAPS`.

    Returns:
        values.shape + (3,) uint8 RGB.
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    idx = np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)
    return _lut(cmap)[idx]


def plotly_colorscale(cmap: str = DEFAULT_CMAP, n: int = 32) -> list[list]:
    """A plotly colorscale sampled from the same LUT as `colormap`, so figures and overlays agree exactly.

    Args:
        cmap: one of `COLORMAPS`.
        n: number of stops (>= 2).

    Returns:
        [[position, "rgb(r,g,b)"], ...] with positions from 0 to 1.
    """
    lut = _lut(cmap)
    pos = np.linspace(0.0, 1.0, max(2, n))
    return [[float(p), "rgb({},{},{})".format(*lut[round(p * 255)])] for p in pos]


def normalize(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None, eps: float = 1e-12
) -> np.ndarray:
    """Linearly rescale a map to [0, 1] and clip.

    Args:
        values: any shape; NaN is ignored for the range and returned as 0.
        vmin: value drawn as 0; the map's minimum when None.
        vmax: value drawn as 1; the map's maximum when None.
        eps: a range narrower than this (a constant map) gives all zeros rather than dividing by ~0.

    Returns:
        float32 array of the same shape in [0, 1].
    """
    v = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(v)
    if vmin is None or vmax is None:
        lo, hi = (float(v[finite].min()), float(v[finite].max())) if finite.any() else (0.0, 0.0)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    out = np.zeros_like(v)
    if vmax - vmin > eps:
        out = (v - np.float32(vmin)) / np.float32(vmax - vmin)
    out = np.where(finite, np.clip(out, 0.0, 1.0), 0.0)
    return out.astype(np.float32)


def shared_range(maps: Sequence[np.ndarray] | np.ndarray) -> tuple[float, float]:
    """One (vmin, vmax) over several maps (finite values only): the app's default so panels are comparable."""
    lo, hi = math.inf, -math.inf
    for m in maps:
        a = np.asarray(m, dtype=np.float32)
        a = a[np.isfinite(a)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    if lo > hi:  # nothing finite at all
        return 0.0, 0.0
    return lo, hi


def normalize_shared(
    maps: Sequence[np.ndarray] | np.ndarray, vmin: float | None = None, vmax: float | None = None
) -> list[np.ndarray]:
    """Normalise several maps with one common vmin/vmax (from `shared_range` unless given).

    Args:
        maps: a sequence of arrays (shapes may differ), or a stacked array whose first axis indexes the maps.
        vmin: common value drawn as 0.
        vmax: common value drawn as 1.

    Returns:
        list of float32 arrays in [0, 1], one per map.
    """
    lo, hi = shared_range(maps)
    vmin = lo if vmin is None else vmin
    vmax = hi if vmax is None else vmax
    return [normalize(m, vmin, vmax) for m in maps]


# ---------------------------------------------------------------------------------------------------------------
# Blending
# ---------------------------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    return img


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Alpha-blend a colormapped heat map over an image: `(1 - alpha) * image + alpha * colormap(heat)`.

    Args:
        image: (H, W, 3) uint8 RGB.
        heat: (H, W) values in [0, 1] (clipped); place token maps on pixels with `fgviz.core.geometry` and
            `normalize` them first.
        alpha: opacity of the heat map in [0, 1]; 0 returns the image, 1 the colormap.
        cmap: one of `COLORMAPS`.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heat)
    if heat.shape != img.shape[:2]:
        raise ValueError(f"heat {heat.shape} does not match image {img.shape[:2]}")
    return _blend_table(float(alpha))[img, colormap(heat, cmap)]  # (H, W, 3): one lookup per channel value


@functools.lru_cache(maxsize=16)
def _blend_table(alpha: float) -> np.ndarray:
    """(256, 256) uint8: entry [i, c] = rint((1 - alpha) * i + alpha * c), computed in float32 exactly as a per-pixel
    blend would: every image value meets every colormap value, so a blend is a table lookup."""
    i = np.arange(256, dtype=np.float32)
    out = (1.0 - alpha) * i[:, None] + alpha * i[None, :]  # (256, 256) float32
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------------


def upscale_factor(image_size: tuple[int, ...], min_size: int = DEFAULT_MIN_SIZE) -> int:
    """Integer nearest-neighbour factor that brings the longer side of `image_size` (H, W) to >= `min_size`."""
    longest = max(int(image_size[0]), int(image_size[1]), 1)
    return max(1, math.ceil(min_size / longest)) if min_size > 0 else 1


def upscale(image: np.ndarray, min_size: int = DEFAULT_MIN_SIZE) -> tuple[np.ndarray, int]:
    """Nearest-neighbour upscale by `upscale_factor`; returns (image, factor). Pixel (y, x) becomes the
    factor x factor block starting at (y * factor, x * factor)."""
    img = _check_image(image)
    s = upscale_factor(img.shape[:2], min_size)
    if s == 1:
        return img.copy(), 1
    return np.repeat(np.repeat(img, s, axis=0), s, axis=1), s


def _text_color(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white text, whichever contrasts more with the background colour (relative luminance)."""
    r, g, b = (c / 255.0 for c in rgb[:3])
    return (0, 0, 0) if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else (255, 255, 255)


def _fill(img: np.ndarray, y0: int, y1: int, x0: int, x1: int, color: tuple[int, int, int]) -> None:
    H, W = img.shape[:2]
    y0, y1, x0, x1 = max(y0, 0), min(y1, H), max(x0, 0), min(x1, W)
    if y1 > y0 and x1 > x0:
        img[y0:y1, x0:x1] = color


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str] | None = None,
    colors: Sequence[Sequence[int]] | None = None,
    thickness: int = 2,
    min_size: int = DEFAULT_MIN_SIZE,
    image_scale: int = 1,
) -> np.ndarray:
    """Draw numbered boxes on a (nearest-)upscaled copy of the image.

    The image is first upscaled by `s = upscale_factor(image.shape[:2], min_size)`; a box (x0, y0, x1, y1) in
    input-image units (exclusive x1/y1) then covers upscaled pixels `x0*k .. x1*k - 1` with `k = s * image_scale`.
    The border is drawn *inside* that area (`thickness` upscaled pixels), so the outermost border pixels are
    exactly at (x0*k, y0*k) and (x1*k - 1, y1*k - 1). Each box gets a filled tag in its colour with its label
    (default "1", "2", ...) at its top-left corner; tags of boxes sharing a corner are shifted so all stay visible.

    Args:
        image: (H, W, 3) uint8 RGB.
        boxes: (K, 4) xyxy, x1/y1 exclusive, in units of the original image (see `image_scale`).
        labels: K strings; None numbers the boxes from 1; an empty string draws no tag.
        colors: K RGB triples; default cycles `BOX_COLORS` (Okabe-Ito).
        thickness: border width in upscaled pixels.
        min_size: upscale target for the longer side; 0 disables upscaling.
        image_scale: how many pixels of `image` one coordinate unit is (pass the factor of a previous `draw_*`
            call whose output is `image`).

    Returns:
        (H * s, W * s, 3) uint8 RGB.
    """
    out, s = upscale(image, min_size)
    k = s * int(image_scale)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if labels is None:
        labels = [str(i + 1) for i in range(len(b))]
    if len(labels) != len(b):
        raise ValueError(f"{len(labels)} labels for {len(b)} boxes")
    if colors is None:
        colors = [BOX_COLORS[i % len(BOX_COLORS)] for i in range(len(b))]
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    font_th = 1
    used: list[tuple[int, int, int, int]] = []
    t = max(1, int(thickness))
    for (x0, y0, x1, y1), color in zip(np.rint(b * k).astype(int), colors, strict=False):
        c = tuple(int(v) for v in color[:3])
        _fill(out, y0, y0 + t, x0, x1, c)  # top
        _fill(out, y1 - t, y1, x0, x1, c)  # bottom
        _fill(out, y0, y1, x0, x0 + t, c)  # left
        _fill(out, y0, y1, x1 - t, x1, c)  # right
    for (x0, y0, _, _), label, color in zip(np.rint(b * k).astype(int), labels, colors, strict=False):
        if not label:
            continue
        c = tuple(int(v) for v in color[:3])
        (tw, th), base = cv2.getTextSize(str(label), font, font_scale, font_th)
        w, h = tw + 4, th + base + 4
        tx, ty = max(0, min(x0, out.shape[1] - w)), max(0, min(y0, out.shape[0] - h))
        while any(abs(tx - ux) < uw and abs(ty - uy) < uh for ux, uy, uw, uh in used) and tx + w < out.shape[1]:
            tx += w  # shift right past tags already drawn at this spot (duplicate TransFG tokens)
        used.append((tx, ty, w, h))
        _fill(out, ty, ty + h, tx, tx + w, c)
        cv2.putText(out, str(label), (tx + 2, ty + 2 + th), font, font_scale, _text_color(c), font_th, cv2.LINE_AA)
    return out


def draw_grid(
    image: np.ndarray,
    row_coords: np.ndarray,
    col_coords: np.ndarray,
    every: int = 8,
    color: Sequence[int] = OKABE_ITO["yellow"],
    thickness: int = 1,
    min_size: int = DEFAULT_MIN_SIZE,
    image_scale: int = 1,
) -> np.ndarray:
    """Draw TASN's separable non-uniform sampling grid over the input it samples.

    Output row i of the sampled image reads input row `row_coords[i]`, output column j reads `col_coords[j]`, so
    horizontal lines at every `every`-th row coordinate and vertical lines at every `every`-th column coordinate
    show where the sampler magnifies: lines are dense where it zooms in and sparse where it squeezes.

    Args:
        image: (H, W, 3) uint8 RGB: the sampler's input.
        row_coords: (o,) input y of each output row, in pixel-centre units (0 = centre of the first pixel,
            H - 1 = centre of the last; the `grid_sample(align_corners=True)` convention).
        col_coords: (o,) input x of each output column, same units.
        every: draw one line in `every` (the first and the last coordinate are always drawn).
        color: RGB line colour.
        thickness: line width in upscaled pixels.
        min_size: upscale target for the longer side; 0 disables upscaling.
        image_scale: pixels of `image` per coordinate unit (see `draw_boxes`).

    Returns:
        (H * s, W * s, 3) uint8 RGB.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    out, s = upscale(image, min_size)
    k = s * int(image_scale)
    Hs, Ws = out.shape[:2]
    c = tuple(int(v) for v in color[:3])

    def pick(coords: np.ndarray) -> np.ndarray:
        a = np.asarray(coords, dtype=np.float64).ravel()
        idx = sorted(set(range(0, a.size, every)) | ({a.size - 1} if a.size else set()))
        return (a[idx] + 0.5) * k - 0.5  # centre of the pixel's block in the upscaled image

    for y in pick(row_coords):
        yi = round(float(y))
        cv2.line(out, (0, yi), (Ws - 1, yi), c, thickness, cv2.LINE_8)
    for x in pick(col_coords):
        xi = round(float(x))
        cv2.line(out, (xi, 0), (xi, Hs - 1), c, thickness, cv2.LINE_8)
    return out


def draw_mask_outline(
    image: np.ndarray,
    mask: np.ndarray,
    color: Sequence[int] = OKABE_ITO["orange"],
    thickness: int = 2,
    fill_alpha: float = 0.0,
    min_size: int = DEFAULT_MIN_SIZE,
    image_scale: int = 1,
) -> np.ndarray:
    """Outline (and optionally tint) the regions of a boolean mask, e.g. a DPPM mask or a deciding-part mask.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H / image_scale, W / image_scale) bool, in the same units as the other draw_* coordinates. Token
            masks (gh, gw) must be placed on pixels first (`fgviz.core.geometry.token_mask_to_pixels`).
        color: RGB outline colour.
        thickness: outline width in upscaled pixels, drawn inside the mask's boundary pixels.
        fill_alpha: opacity of a tint of `color` inside the mask (0 = outline only).
        min_size: upscale target for the longer side; 0 disables upscaling.
        image_scale: pixels of `image` per mask pixel (see `draw_boxes`).

    Returns:
        (H * s, W * s, 3) uint8 RGB.
    """
    out, s = upscale(image, min_size)
    k = s * int(image_scale)
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2 or (m.shape[0] * k, m.shape[1] * k) != out.shape[:2]:
        raise ValueError(
            f"mask {m.shape} does not match image {image.shape[:2]} at image_scale={image_scale}; "
            "place token masks on pixels with fgviz.core.geometry.token_mask_to_pixels"
        )
    big = np.repeat(np.repeat(m, k, axis=0), k, axis=1)
    c = np.array(color[:3], dtype=np.float32)
    if fill_alpha > 0:
        out[big] = np.clip(np.rint((1 - fill_alpha) * out[big] + fill_alpha * c), 0, 255).astype(np.uint8)
    # Boundary = mask pixels within `thickness` of a non-mask pixel (image border counts as outside).
    pad = np.pad(big, 1, constant_values=False).astype(np.uint8)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    inner = cv2.erode(pad, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)[1:-1, 1:-1].astype(bool)
    out[big & ~inner] = c.astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Tiling (layer x head grids)
# ---------------------------------------------------------------------------------------------------------------


def tile_maps(
    maps: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    norm: str = "shared",
    tile: int = 48,
    gap: int = 2,
    row_prefix: str = "L",
    col_prefix: str = "h",
    background: Sequence[int] = (255, 255, 255),
) -> tuple[np.ndarray, dict[str, int]]:
    """Tile a (R, C, gh, gw) stack of maps into one labelled RGB image (rows = layers, columns = heads).

    Each map is colormapped and nearest-upscaled by an integer factor so that its longer side is about `tile`
    pixels (token cells stay crisp: this is the raw token map, not a pixel overlay). Rows are labelled
    "L1".."LR" on the left and columns "h1".."hC" on top.

    Args:
        maps: (R, C, gh, gw) floats.
        cmap: one of `COLORMAPS`.
        norm: "shared" (one vmin/vmax for all tiles: comparable across layers and heads, the app default) or
            "each" (every tile stretched to its own range: shows structure in diffuse heads).
        tile: target tile size in pixels.
        gap: pixels between tiles.
        row_prefix: row label prefix.
        col_prefix: column label prefix.
        background: RGB of the margins and gaps.

    Returns:
        (image, layout): the (H, W, 3) uint8 RGB image and a dict with the pixel geometry
        `left`, `top`, `tile_h`, `tile_w`, `gap` (tile (r, c) starts at `left + c*(tile_w+gap)`,
        `top + r*(tile_h+gap)`).
    """
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim != 4:
        raise ValueError(f"maps must be (R, C, gh, gw), got {m.shape}")
    R, C, gh, gw = m.shape
    if norm == "shared":
        vmin, vmax = shared_range([m])
        normed = normalize(m, vmin, vmax)
    elif norm == "each":
        normed = np.stack([np.stack([normalize(m[r, c]) for c in range(C)]) for r in range(R)])
    else:
        raise ValueError(f"norm must be 'shared' or 'each', got {norm!r}")
    f = max(1, round(tile / max(gh, gw)))
    th, tw = gh * f, gw * f
    font, fs, ft = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
    (lw, lh), lb = cv2.getTextSize(f"{row_prefix}{R}", font, fs, ft)
    left, top = lw + 8, lh + lb + 6
    H, W = top + R * th + (R - 1) * gap + gap, left + C * tw + (C - 1) * gap + gap
    out = np.empty((H, W, 3), np.uint8)
    out[:] = np.array(background[:3], np.uint8)
    text = _text_color(background)
    colored = colormap(normed, cmap)  # (R, C, gh, gw, 3)
    for r in range(R):
        y = top + r * (th + gap)
        for c in range(C):
            x = left + c * (tw + gap)
            out[y : y + th, x : x + tw] = np.repeat(np.repeat(colored[r, c], f, axis=0), f, axis=1)
        (_, h), _ = cv2.getTextSize(f"{row_prefix}{r + 1}", font, fs, ft)
        cv2.putText(out, f"{row_prefix}{r + 1}", (3, y + (th + h) // 2), font, fs, text, ft, cv2.LINE_AA)
    for c in range(C):
        label = f"{col_prefix}{c + 1}"
        (w, _), _ = cv2.getTextSize(label, font, fs, ft)
        x = left + c * (tw + gap) + (tw - w) // 2
        cv2.putText(out, label, (max(0, x), top - lb - 3), font, fs, text, ft, cv2.LINE_AA)
    return out, {"left": left, "top": top, "tile_h": th, "tile_w": tw, "gap": gap}
