"""Pure-numpy attention statistics for the per-layer plots: entropy and mean attention distance.

Mean attention distance follows "Do Vision Transformers See Like Convolutional Neural Networks?" (Raghu et al.,
2021) and the "probing ViTs" analyses: for query token i, `sum_j a_ij * ||pos_i - pos_j||` in pixels, averaged over
queries. Token positions are footprint centres, `stride * (r, c) + (patch_px - 1) / 2`, so with overlapping patches
(TransFG: 16 px at stride 12) neighbouring tokens are `stride` pixels apart, not `patch_px`.
"""

from __future__ import annotations

import numpy as np


def _renormalize(rows: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(np.asarray(rows, dtype=np.float64), 0.0, None)
    s = p.sum(axis=axis, keepdims=True)
    return np.divide(p, s, out=np.zeros_like(p), where=s > 0)


def attention_entropy(rows: np.ndarray, base: float | None = None) -> np.ndarray:
    """Shannon entropy of attention rows (distributions over the last axis).

    Rows are renormalised to sum to 1 first, so a CLS row restricted to the patch tokens (which sums to < 1) is
    treated as the distribution over patches. 0 log 0 = 0; an all-zero row has entropy 0.

    Args:
        rows: (..., N) non-negative weights.
        base: logarithm base; None = natural log (nats), 2 = bits. The maximum is log(N) (uniform attention).

    Returns:
        (...) float32.
    """
    p = _renormalize(rows)
    logp = np.log(p, out=np.zeros_like(p), where=p > 0)
    h = -(p * logp).sum(-1)
    if base is not None:
        h = h / np.log(base)
    return h.astype(np.float32)


def token_centers(grid: tuple[int, int], patch_px: int, stride: int) -> np.ndarray:
    """(gh * gw, 2) float64 (y, x) pixel centres of the patch tokens, row-major (prefix tokens not counted)."""
    gh, gw = grid
    r, c = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    off = (patch_px - 1) / 2.0
    return np.stack([r.ravel() * stride + off, c.ravel() * stride + off], axis=1).astype(np.float64)


def mean_attention_distance(
    attn: np.ndarray,
    grid: tuple[int, int],
    patch_px: int,
    stride: int,
    query_index: np.ndarray | None = None,
) -> np.ndarray:
    """Mean attention distance in pixels: `mean_i sum_j a_ij * dist(i, j)` over patch queries i and patch keys j.

    Args:
        attn: (..., Nq, Npatch) attention rows restricted to the patch keys (drop prefix-token columns first);
            rows are renormalised over the patch keys. Typically (H, Nq, Npatch) for one layer, or
            (L, H, Nq, Npatch) for all layers.
        grid: (gh, gw) with gh * gw == Npatch.
        patch_px: patch footprint side in pixels.
        stride: token step in pixels.
        query_index: (Nq,) row-major patch index of each query. None means the queries are all patches in order
            (Nq == Npatch). Prefix tokens (CLS) have no position and cannot be queries here.

    Returns:
        (...) float32, e.g. (H,) per head.
    """
    a = np.asarray(attn)
    gh, gw = grid
    n = gh * gw
    if a.shape[-1] != n:
        raise ValueError(f"attn has {a.shape[-1]} key columns, grid {grid} has {n} patches")
    q = np.arange(n) if query_index is None else np.asarray(query_index, dtype=np.int64).ravel()
    if a.shape[-2] != q.size:
        raise ValueError(f"attn has {a.shape[-2]} query rows but {q.size} query positions")
    if q.size and (q.min() < 0 or q.max() >= n):
        raise IndexError(f"query_index outside 0..{n - 1}")
    pos = token_centers(grid, patch_px, stride)  # (Npatch, 2)
    dist = np.sqrt(((pos[q][:, None, :] - pos[None, :, :]) ** 2).sum(-1))  # (Nq, Npatch)
    dist = dist.astype(np.float32)
    flat = a.reshape(-1, q.size, n)  # (B, Nq, Npatch); one slice at a time keeps (L, H, N, N) stacks cheap
    out = np.empty(flat.shape[0], dtype=np.float32)
    for b in range(flat.shape[0]):
        p = np.clip(flat[b].astype(np.float32), 0.0, None)  # (Nq, Npatch)
        s = p.sum(-1)  # (Nq,)
        d = np.einsum("qk,qk->q", p, dist)  # (Nq,) unnormalised sum_j a_ij * dist_ij
        out[b] = np.divide(d, s, out=np.zeros_like(d), where=s > 0).mean() if q.size else 0.0
    return out.reshape(a.shape[:-2])
