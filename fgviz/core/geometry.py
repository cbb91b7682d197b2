"""Where tokens and boxes lie in the pixels of a model's input: the one token-to-pixel mapping of fgviz.

Conventions (every view, metric and export uses them through this module):
- pixel (x, y) is centred at integer (x, y); boxes are (x0, y0, x1, y1) with x1/y1 exclusive;
- token (r, c) of a ViT is the patch-embedding conv's receptive field: rows `stride*r .. stride*r + patch - 1`, the
  same for columns (TransFG's overlapping 16-px patches at stride 12 overlap by 4 px);
- token indices count the prefix (CLS-like) tokens, so patch tokens start at `num_prefix_tokens`.

A token map becomes a pixel map by giving each pixel the mean of the tokens whose footprint covers it. Pixels no
footprint reaches (when (H - patch) is not a multiple of the stride, the conv never sees the last few rows) take the
value of the nearest covered row/column, so an overlay has no unshaded strip; `token_coverage` tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np


def token_box(
    patch_index: int, grid: tuple[int, int], patch_size: int, stride: int, image_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Footprint (x0, y0, x1, y1) of patch `patch_index` (row-major over `grid`, prefix tokens not counted).

    The true receptive field of the patch-embedding conv (`patch_size` wide at `stride`), clipped to the image.
    """
    gh, gw = grid
    if not 0 <= patch_index < gh * gw:
        raise IndexError(f"patch index {patch_index} outside a {gh}x{gw} grid")
    r, c = divmod(int(patch_index), gw)
    H, W = image_size
    x0, y0 = c * stride, r * stride
    return x0, y0, min(x0 + patch_size, W), min(y0 + patch_size, H)


def token_boxes(grid: tuple[int, int], patch_size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """(gh * gw, 4) int64 footprints of every patch token, row-major."""
    n = grid[0] * grid[1]
    return np.array([token_box(i, grid, patch_size, stride, image_size) for i in range(n)], np.int64).reshape(n, 4)


def token_rc(token: int, grid: tuple[int, int], num_prefix_tokens: int) -> tuple[int, int]:
    """(row, column) on the patch grid of a full-sequence token index."""
    return divmod(int(token) - num_prefix_tokens, grid[1])


def token_at(x: float, y: float, grid: tuple[int, int], patch_size: int, stride: int, num_prefix_tokens: int,
             scale: float = 1.0) -> int:
    """The full-sequence index of the patch token whose footprint centre is nearest to pixel (x, y) of a panel
    drawn at `scale` times the model input."""
    gh, gw = grid
    off = (patch_size - 1) / 2.0
    r = int(np.clip(round((y / scale - off) / stride), 0, gh - 1))
    c = int(np.clip(round((x / scale - off) / stride), 0, gw - 1))
    return num_prefix_tokens + r * gw + c


def _axis_coverage(n_tok: int, patch_size: int, stride: int, n_px: int) -> np.ndarray:
    """(n_px, n_tok) bool: pixel p lies in the footprint of token t along one axis."""
    p = np.arange(n_px)[:, None]
    start = np.arange(n_tok)[None, :] * stride
    return (p >= start) & (p < start + patch_size)


def token_coverage(grid: tuple[int, int], patch_size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32: how many token footprints cover each pixel (0 where the grid does not reach)."""
    (gh, gw), (H, W) = grid, image_size
    ry = _axis_coverage(gh, patch_size, stride, H).sum(1)
    cx = _axis_coverage(gw, patch_size, stride, W).sum(1)
    return np.outer(ry, cx).astype(np.int32)


@cache
def _tables(grid: tuple[int, int], patch: int, stride: int, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Per-axis gather tables for one geometry, cached (a layer slider redraws the same geometry every time): for
    every pixel row (column), the k tokens covering it and their weights 1/count, where k = ceil(patch / stride);
    a row no token covers takes the tables of the nearest covered row. Gathers instead of matrix products keep a
    redraw off BLAS, whose thread wake-ups cost tens of ms on a busy 2-core machine."""
    (gh, gw), (H, W) = grid, size
    k = -(-patch // stride)

    def axis(n_tok: int, n_px: int) -> tuple[np.ndarray, np.ndarray]:
        cov = _axis_coverage(n_tok, patch, stride, n_px)  # (n_px, n_tok)
        covered = np.flatnonzero(cov.any(1))
        if covered.size == 0:
            raise ValueError(f"a {n_tok}-token axis of {patch}-px patches at stride {stride} covers no pixel")
        nearest = covered[np.abs(np.arange(n_px)[:, None] - covered[None, :]).argmin(1)]  # (n_px,): itself if covered
        idx = np.zeros((n_px, k), np.int64)
        w = np.zeros((n_px, k), np.float32)
        for y in range(n_px):
            toks = np.flatnonzero(cov[nearest[y]])[:k]
            idx[y, : len(toks)] = toks
            w[y, : len(toks)] = 1.0 / len(toks)
        return idx, w

    out = (*axis(gh, H), *axis(gw, W))
    for a in out:
        a.setflags(write=False)
    return out


def token_map_to_pixels(values: np.ndarray, patch_size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """Place each token's value on its pixel footprint, averaging where footprints overlap (module doc).

    Not a bilinear stretch of the grid: with stride == patch_size it gives the exact blocky token map.

    Args:
        values: (gh, gw) token values.
        patch_size: footprint side in pixels.
        stride: token step in pixels.
        image_size: (H, W) of the image the map is drawn on.

    Returns:
        (H, W) float32.
    """
    v = np.asarray(values, np.float32)
    if v.ndim != 2:
        raise ValueError(f"values must be (gh, gw), got {v.shape}")
    if patch_size <= 0 or stride <= 0:
        raise ValueError(f"patch_size and stride must be positive, got {patch_size}, {stride}")
    iy, wy, ix, wx = _tables(v.shape, int(patch_size), int(stride), (int(image_size[0]), int(image_size[1])))
    out = np.zeros((iy.shape[0], ix.shape[0]), np.float32)
    for a in range(iy.shape[1]):
        rows = v[iy[:, a]]  # (H, gw)
        for b in range(ix.shape[1]):
            out += rows[:, ix[:, b]] * (wy[:, a, None] * wx[None, :, b])
    return out


def token_mask_to_pixels(mask: np.ndarray, patch_size: int, stride: int, image_size: tuple[int, int]) -> np.ndarray:
    """A (gh, gw) token mask as an (H, W) pixel mask: a pixel is in when at least half of its covering tokens are
    (pixels no token covers follow the nearest covered ones, as in `token_map_to_pixels`)."""
    return token_map_to_pixels(np.asarray(mask, np.float32), patch_size, stride, image_size) >= 0.5


def grid_box_to_pixels(box: Sequence[int], patch: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grid box (r0, c0, r1, c1), r1/c1 exclusive -> inclusive pixel rows/cols (y0, x0, y1, x1) with RAMS-Trans's
    official one-pixel shift: y0 = max(P*r0 - 1, 0) ... y1 = P*r1 - 1, the same for columns."""
    r0, c0, r1, c1 = (int(v) for v in box)
    H, W = size
    y0, x0 = max(patch * r0 - 1, 0), max(patch * c0 - 1, 0)
    y1, x1 = min(patch * r1 - 1, H - 1), min(patch * c1 - 1, W - 1)
    return y0, x0, max(y1, y0 + 1), max(x1, x0 + 1)


def grid_box_to_xyxy(box: Sequence[int], patch: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """`grid_box_to_pixels` as an exclusive (x0, y0, x1, y1) box, for drawing and metrics."""
    y0, x0, y1, x1 = grid_box_to_pixels(box, patch, size)
    return x0, y0, x1 + 1, y1 + 1

