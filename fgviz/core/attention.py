"""Attention aggregation for ViT explanations: rollout, TransFG part selection, RAMS-Trans patch proposal.

Pure torch over post-softmax attention tensors `(B, H, N, N)` (layer order 1..L, `H` heads, `N` tokens of which the
first `num_prefix_tokens` are CLS-like). No model code here; `capture.py` produces the inputs.

Every product of layers is evaluated as row vectors times matrices (vector-Jacobian style), never as an N x N x N
matrix product: at TransFG's N = 1370 the full per-head product costs more than the whole ViT forward
(docs/methods.md 1.2), the row-vector form about 1/N of it.

The `*_qk` variants start from each layer's queries and keys (q already multiplied by the attention scale) and
softmax one block of query rows at a time, so a `(B, H, N, N)` stack never has to exist.

Math runs in at least float32 (half-precision inputs are upcast): products of up to 12 stochastic matrices at
N ~ 1400 lose too much in fp16 to rank tokens reliably.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

HEAD_FUSIONS = ("mean", "max", "min")


def _compute_dtype(t: Tensor) -> torch.dtype:
    """float32 unless the input is already float64 (fp16/bf16 products are too lossy)."""
    return torch.promote_types(t.dtype, torch.float32)


def fuse_heads(attn: Tensor, head_fusion: str = "mean") -> Tensor:
    """Reduce the heads of one layer's attention, as vit-explain's rollout does.

    Args:
        attn: (B, H, ...) attention (post-softmax (B, H, N, N), or any slice of it with the heads on axis 1).
        head_fusion: "mean", "max" or "min" over the H heads, or "h<k>" for head k alone (1-based).

    Returns:
        (B, ...) fused attention.
    """
    if head_fusion == "mean":
        return attn.mean(dim=1)  # (B, N, N)
    if head_fusion == "max":
        return attn.amax(dim=1)  # (B, N, N)
    if head_fusion == "min":
        return attn.amin(dim=1)  # (B, N, N)
    if head_fusion.startswith("h") and head_fusion[1:].isdigit() and 1 <= int(head_fusion[1:]) <= attn.shape[1]:
        return attn[:, int(head_fusion[1:]) - 1]  # (B, N, N)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS} or h1..h{attn.shape[1]}, got {head_fusion!r}")


def _add_identity(fused: Tensor) -> Tensor:
    """Residual-aware attention of one layer: (A + I) with rows renormalised (keepdim, cf. vit-explain#16).

    (A + I) / rowsum equals Abnar & Zuidema's 0.5 A + 0.5 I when A's rows sum to 1, and stays a proper
    row-stochastic matrix when they do not (after discarding, or with max/min head fusion).
    """
    N = fused.shape[-1]
    eye = torch.eye(N, dtype=fused.dtype, device=fused.device)  # (N, N)
    a = fused + eye  # (B, N, N)
    return a / a.sum(dim=-1, keepdim=True)  # (B, N, N)


def _discard_lowest(fused: Tensor, discard_ratio: float, num_prefix_tokens: int) -> Tensor:
    """Zero the lowest floor(ratio * n) patch-to-patch entries of each image's fused matrix (a new tensor).

    Only the block whose rows and columns are both patch tokens is eligible, so entries involving a prefix token are
    always kept. This is what vit-explain means by "don't drop the class token" (it only protects flat index 0, i.e.
    entry (0, 0), and only for image 0); here it holds per image for the whole batch.
    """
    B, N, _ = fused.shape
    n_tok = N - num_prefix_tokens
    k = math.floor(discard_ratio * n_tok * n_tok)
    if k == 0:
        return fused
    patch = fused[:, num_prefix_tokens:, num_prefix_tokens:].reshape(B, n_tok * n_tok)  # (B, n): a copy
    idx = patch.topk(k, dim=-1, largest=False, sorted=False).indices  # (B, k)
    patch = patch.scatter(-1, idx, 0.0)  # (B, n)
    out = fused.clone()  # (B, N, N)
    out[:, num_prefix_tokens:, num_prefix_tokens:] = patch.view(B, n_tok, n_tok)  # (B, n_tok, n_tok)
    return out


def _check_prefix(num_prefix_tokens: int, N: int) -> None:
    """The rollout row is the first prefix token's, so at least one is needed (and one patch token)."""
    if not 1 <= num_prefix_tokens < N:
        raise ValueError(f"num_prefix_tokens must be in [1, N) with N = {N}, got {num_prefix_tokens}")


def rollout_from_fused(fused: Sequence[Tensor], *, discard_ratio: float = 0.0, num_prefix_tokens: int = 1) -> Tensor:
    """Per-layer attention rollout (Abnar & Zuidema 2020) from head-fused matrices.

    For every depth l the first prefix token's row of Â_l ··· Â_1 is returned, where Â = rownorm(A + I) after
    the optional discard. The rows are built top-down in one sweep: at layer k the rows of all depths l > k
    are multiplied by Â_k and the new row e0ᵀ Â_k joins them, so the cost is O(L² N²) and no N x N product forms.

    Args:
        fused: L tensors (B, N, N), layer order 1..L (e.g. from `fuse_heads` or `fused_attention_qk`).
        discard_ratio: in [0, 1); per image and layer, the lowest floor(ratio * n) patch-to-patch entries
            (n = (N - num_prefix_tokens)²) are zeroed before the identity is added. Entries in a prefix token's
            row or column are never discarded: vit-explain's "don't drop the class token", fixed for batches.
        num_prefix_tokens: CLS-like tokens at the start of the sequence; the rollout row is the first one's.

    Returns:
        (B, L, N - num_prefix_tokens): row l - 1 is the rollout through layers 1..l over the patch columns.
    """
    if len(fused) == 0:
        raise ValueError("need at least one layer")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    _check_prefix(num_prefix_tokens, fused[0].shape[-1])
    rows = None  # (B, m, N): rollout rows of the m deepest layers processed so far, shallowest first
    for a in reversed(fused):
        a = a.to(_compute_dtype(a))  # (B, N, N)
        a = _add_identity(_discard_lowest(a, discard_ratio, num_prefix_tokens))  # (B, N, N)
        new = a[:, :1, :]  # (B, 1, N): e0ᵀ Â_k, the rollout through layer k alone so far
        rows = new if rows is None else torch.cat([new, rows @ a], dim=1)  # (B, m + 1, N)
    return rows[:, :, num_prefix_tokens:]  # (B, L, N - p)


def rollout(
    attentions: Sequence[Tensor],
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> Tensor:
    """Per-layer attention rollout: `fuse_heads` on each layer, then `rollout_from_fused`.

    Args:
        attentions: L post-softmax tensors (B, H, N, N), layer order 1..L.
        head_fusion: "mean", "max" or "min" over heads.
        discard_ratio: see `rollout_from_fused` (prefix-token entries are never discarded).
        num_prefix_tokens: CLS-like tokens at the start of the sequence.

    Returns:
        (B, L, N - num_prefix_tokens): the first prefix token's rollout row through layers 1..l, patch columns.
    """
    fused = [fuse_heads(a, head_fusion) for a in attentions]  # L x (B, N, N)
    return rollout_from_fused(fused, discard_ratio=discard_ratio, num_prefix_tokens=num_prefix_tokens)


def psm_rows(attentions: Sequence[Tensor]) -> Tensor:
    """CLS row of TransFG's per-head product A_L ··· A_1 over the patch columns (what the PSM argmax sees).

    No identity, no renormalisation, no head fusion (docs/methods.md 1.2). Evaluated as r = A_L[:, :, 0];
    r = r @ A_l for l = L-1..1.

    Args:
        attentions: L post-softmax tensors (B, H, N, N), layer order 1..L (TransFG passes its first 11 layers).

    Returns:
        (B, H, N - 1) float.
    """
    if len(attentions) == 0:
        raise ValueError("need at least one layer")
    top = attentions[-1]
    r = top[:, :, :1, :].to(_compute_dtype(top))  # (B, H, 1, N)
    for a in reversed(attentions[:-1]):
        r = r @ a.to(r.dtype)  # (B, H, 1, N)
    return r[:, :, 0, 1:]  # (B, H, N - 1)


def psm_select(attentions: Sequence[Tensor]) -> Tensor:
    """TransFG Part Selection Module: one token per head, argmax of `psm_rows` (duplicates kept).

    Returns:
        (B, H) int64 indices into the full sequence (>= 1; the CLS token is 0), hence the +1 (TransFG issue #6).
    """
    return psm_rows(attentions).argmax(dim=-1) + 1  # (B, H)


def dppm_vector_from_fused(fused: Sequence[Tensor], *, num_prefix_tokens: int = 1) -> Tensor:
    """RAMS-Trans rollout vector g from head-mean attention matrices (docs/methods.md 2.3).

    G_l = rownorm(mean_heads(A_l) + I); g = mean over all N query rows of G_L ··· G_1 (prefix rows included),
    restricted to patch columns and divided by its max. The row mean is the row vector (1/N) 1ᵀ, so it is pushed
    through the layers top-down like a rollout row.

    Args:
        fused: L head-mean tensors (B, N, N), layer order 1..L; all layers are used.
        num_prefix_tokens: 2 for RAMS-Trans (two CLS tokens).

    Returns:
        (B, N - num_prefix_tokens) in (0, 1].
    """
    if len(fused) == 0:
        raise ValueError("need at least one layer")
    _check_prefix(num_prefix_tokens, fused[0].shape[-1])
    top = fused[-1]
    r = _add_identity(top.to(_compute_dtype(top))).mean(dim=-2, keepdim=True)  # (B, 1, N)
    for a in reversed(fused[:-1]):
        r = r @ _add_identity(a.to(r.dtype))  # (B, 1, N)
    g = r[:, 0, num_prefix_tokens:]  # (B, N - p)
    return g / g.amax(dim=-1, keepdim=True)  # (B, N - p)


def dppm_vector(attentions: Sequence[Tensor], *, num_prefix_tokens: int = 1) -> Tensor:
    """RAMS-Trans rollout vector g: head mean of each layer, then `dppm_vector_from_fused`.

    Returns:
        (B, N - num_prefix_tokens) in (0, 1].
    """
    fused = [fuse_heads(a, "mean") for a in attentions]  # L x (B, N, N)
    return dppm_vector_from_fused(fused, num_prefix_tokens=num_prefix_tokens)


def dppm_mask(g: Tensor, grid_size: tuple[int, int], *, alpha: float = 1.2) -> Tensor:
    """Tokens above alpha times the mean of g, on the patch grid (RAMS-Trans uses alpha = 1.2).

    Args:
        g: (B, gh * gw) rollout vector (any positive scale; the threshold is scale-free).
        grid_size: (gh, gw); non-square grids are fine.

    Returns:
        (B, gh, gw) bool.
    """
    gh, gw = grid_size
    if g.shape[-1] != gh * gw:
        raise ValueError(f"vector of {g.shape[-1]} tokens does not fit grid {gh}x{gw}")
    mask = g > alpha * g.mean(dim=-1, keepdim=True)  # (B, gh * gw)
    return mask.reshape(-1, gh, gw)  # (B, gh, gw)


def largest_component_box(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Largest 8-connected component of each mask and its bounding box, as RAMS-Trans's skimage code picks it.

    Components are labelled in raster order (scipy.ndimage.label, 3x3 structure, same order as
    skimage.measure.label), so on equal areas the first component in raster order wins, like the original
    `max(regionprops, key=area)`. An empty mask (e.g. a constant g) has no component: the component mask is all
    False and the box is the whole grid, i.e. "no zoom" (the original code has no such case and would fail).

    Args:
        mask: (B, gh, gw) bool.

    Returns:
        component: (B, gh, gw) bool, the chosen component.
        boxes: (B, 4) int64 (r0, c0, r1, c1) in grid units, r1/c1 exclusive.
    """
    B, gh, gw = mask.shape
    masks = mask.detach().cpu().numpy().astype(bool)  # (B, gh, gw)
    component = np.zeros_like(masks)  # (B, gh, gw)
    boxes = np.tile(np.array([0, 0, gh, gw], dtype=np.int64), (B, 1))  # (B, 4)
    structure = np.ones((3, 3), dtype=bool)  # 8-connectivity
    for b in range(B):
        labels, n = ndimage.label(masks[b], structure=structure)  # (gh, gw) int, labels 1..n
        if n == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # (n,)
        component[b] = labels == int(np.argmax(areas)) + 1  # argmax takes the first maximum
        rows, cols = np.nonzero(component[b])
        boxes[b] = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    return torch.from_numpy(component).to(mask.device), torch.from_numpy(boxes).to(mask.device)


def dppm(
    attentions: Sequence[Tensor],
    grid_size: tuple[int, int],
    *,
    alpha: float = 1.2,
    num_prefix_tokens: int = 1,
) -> tuple[Tensor, Tensor]:
    """RAMS-Trans Dynamic Patch Proposal Module: threshold the rollout vector, box its largest component.

    Steps (each exposed for the app): `dppm_vector` -> `dppm_mask` -> `largest_component_box`.

    Args:
        attentions: L post-softmax tensors (B, H, N, N), layer order 1..L; all layers are used.
        grid_size: (gh, gw) patch grid, gh * gw == N - num_prefix_tokens.
        alpha: threshold ratio over the mean (1.2 for scale 1 -> 2).
        num_prefix_tokens: 2 for RAMS-Trans.

    Returns:
        mask: (B, gh, gw) bool, every token above the threshold (not only the chosen component).
        boxes: (B, 4) int64 (r0, c0, r1, c1) grid box of the largest component, r1/c1 exclusive; the whole grid
            when the mask is empty.
    """
    g = dppm_vector(attentions, num_prefix_tokens=num_prefix_tokens)  # (B, N - p)
    mask = dppm_mask(g, grid_size, alpha=alpha)  # (B, gh, gw)
    _, boxes = largest_component_box(mask)
    return mask, boxes


def attention_from_qk(q: Tensor, k: Tensor) -> Tensor:
    """softmax(q kᵀ) over keys; q is already multiplied by the attention scale.

    Args:
        q, k: (B, H, N, d).

    Returns:
        (B, H, N, N) post-softmax attention (float32 or wider).
    """
    dtype = _compute_dtype(q)
    return (q.to(dtype) @ k.to(dtype).transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)


BLOCK_ROWS = 64  # query rows softmaxed at once: the (B, H, 64, N) block stays in cache (docs/benchmarks.md)


def softmax_row_blocks(q: Tensor, k: Tensor, block_rows: int = BLOCK_ROWS) -> Iterator[tuple[int, Tensor, Tensor]]:
    """softmax(q kᵀ) one block of query rows at a time: the one blocked softmax of fgviz (peak memory B·H·b·N).

    Args:
        q, k: (B, H, N, d); q already multiplied by the attention scale. Upcast to at least float32.
        block_rows: query rows per block.

    Yields:
        (start row s, logits (B, H, b, N), probabilities (B, H, b, N)) for rows s .. s + b - 1.
    """
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    dtype = _compute_dtype(q)
    q, kt = q.to(dtype), k.to(dtype).transpose(-2, -1)  # (B, H, N, d), (B, H, d, N)
    for s in range(0, q.shape[2], block_rows):
        logits = q[:, :, s : s + block_rows] @ kt  # (B, H, b, N)
        yield s, logits, logits.softmax(dim=-1)


def fused_attention_qk(q: Tensor, k: Tensor, head_fusion: str = "mean", block_rows: int = BLOCK_ROWS) -> Tensor:
    """`fuse_heads(attention_from_qk(q, k))` one block of query rows at a time (peak memory B·H·block·N).

    Returns:
        (B, N, N).
    """
    B, _, N, _ = q.shape
    out = torch.empty(B, N, N, dtype=_compute_dtype(q), device=q.device)  # (B, N, N)
    for s, _, a in softmax_row_blocks(q, k, block_rows):  # a: (B, H, b, N)
        out[:, s : s + a.shape[2]] = fuse_heads(a, head_fusion)  # (B, b, N)
    return out


def psm_and_fused_qk(
    qs: Sequence[Tensor],
    ks: Sequence[Tensor],
    *,
    head_fusion: str = "mean",
    psm_layers: int | None = None,
    block_rows: int = BLOCK_ROWS,
) -> tuple[Tensor, Tensor, list[Tensor]]:
    """TransFG part selection and head-fused attention in one pass, softmaxing each layer once.

    Layers run top-down; each block of query rows is softmaxed, fused into that layer's matrix and, for the PSM
    layers, consumes the matching slice of the running CLS row: r_new = Σ_blocks r[..., block] @ softmax(q_block kᵀ).

    Args:
        qs, ks: L tensors (B, H, N, d) each, layer order 1..L; q already scaled.
        head_fusion: fusion for the returned matrices (rollout uses any; RAMS-Trans's DPPM needs "mean").
        psm_layers: the PSM uses layers 1..psm_layers (default all L); TransFG's part layer is excluded by the
            caller either way.
        block_rows: query rows softmaxed at once.

    Returns:
        indices: (B, H) int64, as `psm_select` on layers 1..psm_layers.
        rows: (B, H, N - 1), as `psm_rows`.
        fused: L tensors (B, N, N), as `fuse_heads` of every layer.
    """
    L = len(qs)
    if L == 0 or len(ks) != L:
        raise ValueError(f"need the same non-zero number of q and k layers, got {len(qs)} and {len(ks)}")
    top = L if psm_layers is None else psm_layers
    if not 1 <= top <= L:
        raise ValueError(f"psm_layers must be in [1, {L}], got {psm_layers}")
    fused_top_down: list[Tensor] = []
    r = None  # (B, H, 1, N): CLS row of A_top ··· A_l after processing layer l
    for layer in reversed(range(L)):
        B, _, N, _ = qs[layer].shape
        out = torch.empty(B, N, N, dtype=_compute_dtype(qs[layer]), device=qs[layer].device)  # (B, N, N)
        r_new = None if r is None else torch.zeros_like(r)  # (B, H, 1, N)
        for s, _, a in softmax_row_blocks(qs[layer], ks[layer], block_rows):  # a: (B, H, b, N)
            b = a.shape[2]
            out[:, s : s + b] = fuse_heads(a, head_fusion)  # (B, b, N)
            if layer == top - 1 and s == 0:
                r_new = a[:, :, :1, :].clone()  # (B, H, 1, N): row 0 lies in the first block
            elif layer < top - 1:
                r_new += r[..., s : s + b] @ a  # (B, H, 1, b) @ (B, H, b, N)
        fused_top_down.append(out)
        r = r_new
    rows = r[:, :, 0, 1:]  # (B, H, N - 1)
    return rows.argmax(dim=-1) + 1, rows, fused_top_down[::-1]


def psm_select_qk(
    qs: Sequence[Tensor], ks: Sequence[Tensor], block_rows: int = BLOCK_ROWS
) -> tuple[Tensor, Tensor]:
    """`psm_select` and `psm_rows` of softmax(q kᵀ) per layer, without materialising any (B, H, N, N) tensor.

    Args:
        qs, ks: L tensors (B, H, N, d), layer order 1..L (TransFG passes layers 1..11); q already scaled.
        block_rows: query rows softmaxed at once.

    Returns:
        indices: (B, H) int64 (>= 1).
        rows: (B, H, N - 1).
    """
    L = len(qs)
    if L == 0 or len(ks) != L:
        raise ValueError(f"need the same non-zero number of q and k layers, got {len(qs)} and {len(ks)}")
    # CLS row of A_L, from the first block of query rows exactly as `psm_and_fused_qk` takes it, so the two give the
    # same rows bit for bit (a one-row product may round differently from a block's): a model that reuses another's
    # fused matrices selects the same tokens as one that computes them
    _, _, first = next(softmax_row_blocks(qs[-1], ks[-1], block_rows))  # (B, H, b, N)
    r = first[:, :, :1, :].clone()  # (B, H, 1, N)
    for layer in reversed(range(L - 1)):
        r_new = torch.zeros_like(r)  # (B, H, 1, N)
        for s, _, a in softmax_row_blocks(qs[layer], ks[layer], block_rows):  # a: (B, H, b, N)
            r_new += r[..., s : s + a.shape[2]] @ a  # (B, H, 1, b) @ (B, H, b, N)
        r = r_new
    rows = r[:, :, 0, 1:]  # (B, H, N - 1)
    return rows.argmax(dim=-1) + 1, rows


# ---------------------------------------------------------------------------------------------------------------
# Per-head statistics (the Layers tab's entropy and mean attention distance; the one home of both)


def token_centers(grid: tuple[int, int], patch_size: int, stride: int) -> np.ndarray:
    """(gh * gw, 2) float64 (y, x) pixel centres of the patch tokens' footprints, row-major (prefix tokens not
    counted): `stride * (r, c) + (patch_size - 1) / 2`, so with overlapping patches (TransFG: 16 px at stride 12)
    neighbouring tokens are `stride` pixels apart, not `patch_size`."""
    gh, gw = grid
    r, c = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    off = (patch_size - 1) / 2.0
    return np.stack([r.ravel() * stride + off, c.ravel() * stride + off], axis=1).astype(np.float64)


def token_distances(grid: tuple[int, int], patch_size: int, stride: int) -> Tensor:
    """(Np, Np) float32 pixel distances between the patch tokens' footprint centres (`token_centers`)."""
    pos = torch.from_numpy(token_centers(grid, patch_size, stride))
    return torch.cdist(pos, pos).float()  # (Np, Np)


def attention_entropy(attn: Tensor) -> Tensor:
    """Shannon entropy (nats) of each attention row, a distribution over the last axis.

    Rows are renormalised to sum to 1 first (so a row restricted to some keys is their distribution); 0 log 0 = 0;
    an all-zero row has entropy 0. The maximum is log(N), uniform attention.

    Args:
        attn: (..., N) non-negative weights.

    Returns:
        (...) float32 or wider.
    """
    a = attn.to(_compute_dtype(attn)).clamp_min(0.0)
    total = a.sum(-1, keepdim=True)  # (..., 1)
    p = torch.where(total > 0, a / total.clamp_min(torch.finfo(a.dtype).tiny), 0.0)  # (..., N)
    return -torch.special.xlogy(p, p).sum(-1)  # (...)


def attention_distance(attn: Tensor, distances: Tensor) -> Tensor:
    """Mean attention distance of each query row: `sum_j a_ij * d_ij / sum_j a_ij` (Raghu et al. 2021, "Do Vision
    Transformers See Like Convolutional Neural Networks?"; Dosovitskiy et al. 2021, Fig. 7), in the units of
    `distances` (fgviz: pixels between footprint centres). A row with no weight gives 0.

    Args:
        attn: (..., Nq, Nk) non-negative weights of Nq query rows over Nk keys (patch queries over patch keys).
        distances: (Nq, Nk) distance of each query from each key (`token_distances` rows).

    Returns:
        (..., Nq) float32 or wider.
    """
    a = attn.to(_compute_dtype(attn)).clamp_min(0.0)
    total = a.sum(-1)  # (..., Nq)
    weighted = (a * distances.to(a.dtype)).sum(-1)  # (..., Nq)
    return torch.where(total > 0, weighted / total.clamp_min(torch.finfo(a.dtype).tiny), 0.0)
