"""Drawing primitives and textures for the synthetic generator (OpenCV/numpy).

Colours (HSV to RGB, jitter), polygon shapes (ellipse, bar, star) in any frame, anti-aliased filling of an image
together with its label map at 1/16 px, rasterised masks, gradient textures, the normalised lighting grid and the
fixed noise bank. Nothing here knows about birds, cars or classes.
"""

from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 px
_ONE = float(1 << _SHIFT)
_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1
)  # (32, 2) unit circle


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers. Shapes are point arrays in an object frame (facing left, y down); a "display list" of
# (points, colour, label) is built first, so the pose can be fitted to the image before anything is drawn.


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(max(c + e, 0), 255) for c, e in zip(colour, d, strict=True))  # type: ignore[return-value]


def _rot(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _ellipse(cx: float, cy: float, a: float, b: float, deg: float = 0.0) -> np.ndarray:
    pts = _CIRCLE * (a, b)
    if deg:
        pts = pts @ _rot(deg).T
    return pts + np.array((cx, cy))


def _bar(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    """A quad of `width` along the segment p0-p1."""
    p0a, p1a = np.asarray(p0, float), np.asarray(p1, float)
    d = p1a - p0a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (width / 2)
    return np.stack([p0a + n, p1a + n, p1a - n, p0a - n])


def _fill(img: np.ndarray, lab: np.ndarray, pts_px: np.ndarray, colour: tuple[int, int, int], label: int) -> None:
    p = np.rint(pts_px * _ONE).astype(np.int32)
    cv2.fillPoly(img, [p], colour, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(lab, [p], int(label), cv2.LINE_8, _SHIFT)


@functools.lru_cache(maxsize=16)
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1] (for lighting gradients)."""
    ys = np.linspace(-1, 1, H, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, W, dtype=np.float32)[None, :]
    return ys, xs


_NOISE_SLACK = 8192


@functools.lru_cache(maxsize=16)
def _noise_bank(n: int) -> np.ndarray:
    """Fixed standard-normal noise; a sample takes a window at a random offset (drawing fresh noise costs 2x)."""
    return np.random.default_rng(12345).standard_normal(n + _NOISE_SLACK).astype(np.float32)


def _star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45, deg: float = 0.0) -> np.ndarray:
    ang = np.deg2rad(np.arange(2 * points) * 180.0 / points - 90 + deg)
    rad = np.where(np.arange(2 * points) % 2 == 0, r, r * inner)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


def _raster(H: int, W: int, polys: list[np.ndarray]) -> np.ndarray:
    tmp = np.zeros((H, W), np.uint8)
    cv2.fillPoly(tmp, [np.rint(p * _ONE).astype(np.int32) for p in polys], 1, cv2.LINE_8, _SHIFT)
    return tmp.view(bool)


def _gradient_texture(rng: np.random.Generator, H: int, W: int, top, bottom, amp: float | None = None) -> np.ndarray:
    """Vertical gradient plus low-frequency colour noise."""
    g = np.linspace(0.0, 1.0, max(H, 1), dtype=np.float32)[:, None, None]
    img = np.asarray(top, np.float32) * (1 - g) + np.asarray(bottom, np.float32) * g  # (H, 1, 3)
    amp = float(rng.uniform(3, 14)) if amp is None else amp
    k = int(rng.integers(3, 7))
    noise = cv2.resize(
        rng.standard_normal((k, k, 3)).astype(np.float32) * np.float32(amp),
        (W, max(H, 1)),
        interpolation=cv2.INTER_LINEAR,
    )
    return np.clip(img + noise, 0, 255).astype(np.uint8)
