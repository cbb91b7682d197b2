"""TASN attention maps and attention-based resampling, pure torch (docs/methods.md 3.3-3.5).

TASN (Zheng et al., CVPR 2019, "Looking for the Devil in the Details", github.com/researchmm/tasn) turns a
28x28 feature map into trilinear attention maps, sums them into a structure map and picks one as a detail map,
then resamples the image with a separable non-uniform grid that magnifies high-attention rows and columns.
The original sampler is a custom MXNet/CUDA op; this is an inverse-CDF re-implementation with `torch.searchsorted`
and `F.grid_sample(align_corners=True)`. Deviations from the op are marked "Deviation" below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def trilinear_attention(x: Tensor, *, gamma: float = 7.0) -> Tensor:
    """Trilinear attention M(X) = N(N(X) Xᵀ) X: each output map is a convex combination of the raw channel maps.

    N1 = softmax over space of gamma·X per channel (gamma = 7 in MXNet, 2 in the PyTorch port); R = N1 Xᵀ with
    the raw X as right factor; N2 = softmax of R over its last (channel) axis; T = N2 X. The original blocks the
    gradient here, so this runs detached under no_grad.

    Args:
        x: (B, C, H, W) feature map (TASN: the attention net's 512 x 28 x 28 output).
        gamma: softmax temperature of the spatial normalisation.

    Returns:
        (B, C, H, W) trilinear attention maps (float32 or wider).
    """
    B, C, H, W = x.shape
    with torch.no_grad():
        X = x.detach().to(torch.promote_types(x.dtype, torch.float32)).reshape(B, C, H * W)  # (B, C, HW)
        n1 = (gamma * X).softmax(dim=-1)  # (B, C, HW): spatial softmax per channel
        relation = n1 @ X.transpose(-2, -1)  # (B, C, C)
        n2 = relation.softmax(dim=-1)  # (B, C, C): each channel normalised over channels
        return (n2 @ X).reshape(B, C, H, W)  # (B, C, H, W)


def structure_detail_maps(
    trilinear: Tensor,
    *,
    detail_channel: int | Tensor | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """TASN's structure and detail attention maps (docs/methods.md 3.4), ready for `attention_sample`.

    Structure = sum of all trilinear maps, then bilinear resize to `size`, then squared (MXNet's order; the
    squaring emphasises peaks and must come after the resize, so it is done here and callers must not square
    again). MXNet sums only channels with a unique total energy, but its mask is misaligned with the channel
    order and in practice equals the plain sum, which is what is used here.
    Detail = one channel (training: a random one per image) or, with `detail_channel=None`, the sum over all
    channels (test mode); resized, not squared. The PyTorch port's +0.01 on the detail map is not applied.
    The resize uses align_corners=True, the corner-aligned convention of MXNet's BilinearResize2D.

    Args:
        trilinear: (B, C, h, w) from `trilinear_attention`.
        detail_channel: None (sum, test mode), an int for every image, or a (B,) int64 tensor, one per image.
        size: (H, W) output size, normally the input image's; None keeps (h, w).

    Returns:
        structure: (B, H, W) non-negative for non-negative features.
        detail: (B, H, W).
    """
    structure = trilinear.sum(dim=1)  # (B, h, w)
    if detail_channel is None:
        detail = structure  # (B, h, w): test mode
    else:
        B = trilinear.shape[0]
        channel = torch.as_tensor(detail_channel, device=trilinear.device).expand(B)  # (B,)
        detail = trilinear[torch.arange(B, device=trilinear.device), channel]  # (B, h, w)
    if size is not None:
        both = torch.stack([structure, detail], dim=1)  # (B, 2, h, w)
        both = F.interpolate(both, size=size, mode="bilinear", align_corners=True)  # (B, 2, H, W)
        structure, detail = both[:, 0], both[:, 1]  # (B, H, W) each
    return structure.square(), detail


def _axis_density(marginal: Tensor, out_size: int, dense: float, iters: int) -> Tensor:
    """Output samples per input pixel along one axis: normalised max-marginal times out, capped at dense x uniform.

    Deviation: MXNet caps at tau0 = dense·out/len only in the first iteration; later iterations clip at
    min(max d_row, max d_col), so the redistributed mass can push a row above the cap, and it couples the two axes.
    Here each axis is clipped at its own tau0 in every iteration. The clipped mass is then spread uniformly as in
    MXNet, which after `iters` rounds leaves max(d) <= tau0 + (residual) where the residual shrinks geometrically
    (at most a quarter of the pixels can sit at the cap for dense = 4), so the documented "at most dense x
    uniform" bound holds up to a negligible fraction.
    """
    length = marginal.shape[-1]
    total = marginal.sum(dim=-1, keepdim=True)  # (B, 1)
    uniform = torch.full_like(marginal, 1.0 / length)  # (B, len)
    m = torch.where(total > 0, marginal / total.clamp_min(torch.finfo(marginal.dtype).tiny), uniform)  # (B, len)
    d = m * out_size  # (B, len): sums to out_size
    tau0 = dense * out_size / length
    for _ in range(iters):
        d = d.clamp(max=tau0)  # (B, len)
        d = d + (out_size - d.sum(dim=-1, keepdim=True)) / length  # (B, len): redistribute uniformly
    return d


def _inverse_cdf(d: Tensor, out_size: int) -> Tensor:
    """Sample positions (input pixel units, pixel k centred at k) whose local spacing is 1 / density.

    Row k of the density covers [k - 0.5, k + 0.5], so the CDF has knots C[j] at x = j - 0.5 with C[-1] = 0
    (the first knot, prepended) and C[k] = C[k-1] + d[k]; every d[k] is counted and nothing is read out of bounds.
    Targets are spaced evenly in mass from the centre of pixel 0 to the centre of pixel len - 1, so the first and
    last samples land on those centres and a uniform density reproduces a plain align_corners=True resize exactly
    (MXNet starts at mass 0 and lands up to a pixel off; the ports disagree there, docs/methods.md 3.5).
    """
    length = d.shape[-1]
    cdf = F.pad(d.cumsum(dim=-1), (1, 0))  # (B, len + 1): C[-1] = 0 at x = -0.5, C[k] at x = k + 0.5
    lo = d[:, :1] / 2  # (B, 1): mass up to the centre of pixel 0
    hi = cdf[:, -1:] - d[:, -1:] / 2  # (B, 1): mass up to the centre of pixel len - 1
    steps = torch.linspace(0.0, 1.0, out_size, dtype=d.dtype, device=d.device)  # (out,)
    target = lo + (hi - lo) * steps  # (B, out)
    j = torch.searchsorted(cdf, target.contiguous()).clamp(1, length)  # (B, out): first knot with C[j] >= target
    c0, c1 = cdf.gather(-1, j - 1), cdf.gather(-1, j)  # (B, out) each
    frac = ((target - c0) / (c1 - c0).clamp_min(torch.finfo(d.dtype).tiny)).clamp(0.0, 1.0)  # (B, out)
    return (j - 1.5 + frac).clamp(0.0, length - 1.0)  # (B, out): knot j - 1 sits at x = j - 1.5


def sampling_coords(attention: Tensor, out_size: int, *, dense: float = 4.0, iters: int = 5) -> tuple[Tensor, Tensor]:
    """TASN's separable sampling grid from an attention map (docs/methods.md 3.5).

    Max-marginals (m_row = max over columns, m_col = max over rows) are normalised into densities of output
    samples per input row/column (each summing to out_size), capped at dense x uniform with `iters` rounds of
    clip-and-redistribute, and inverted through their CDF.

    Args:
        attention: (B, H, W) non-negative map at the image's resolution (negative values are clamped to 0; an
            all-zero map samples uniformly).
        out_size: output side length (TASN: 224 or 336 from a 512 image).
        dense: cap on the magnification, in multiples of the uniform density out_size / axis length.
        iters: clip-and-redistribute rounds.

    Returns:
        row_coords: (B, out_size) row positions in input pixels, non-decreasing, in [0, H - 1].
        col_coords: (B, out_size) column positions, non-decreasing, in [0, W - 1].
    """
    a = attention.detach().to(torch.promote_types(attention.dtype, torch.float32)).clamp_min(0.0)  # (B, H, W)
    d_row = _axis_density(a.amax(dim=-1), out_size, dense, iters)  # (B, H)
    d_col = _axis_density(a.amax(dim=-2), out_size, dense, iters)  # (B, W)
    return _inverse_cdf(d_row, out_size), _inverse_cdf(d_col, out_size)


def attention_sample(
    image: Tensor, attention: Tensor, out_size: int, *, dense: float = 4.0, iters: int = 5
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Resample an image on TASN's attention grid: a separable, axis-aligned magnifier.

    Args:
        image: (B, C, H, W).
        attention: (B, H, W) non-negative, the image's size (see `sampling_coords`).
        out_size: output side length.
        dense, iters: see `sampling_coords`.

    Returns:
        resampled: (B, C, out_size, out_size), bilinear with zeros outside (never reached: coords stay inside).
        (row_coords, col_coords): (B, out_size) each, in input pixels, for drawing the grid.
    """
    B, _, H, W = image.shape
    if attention.shape != (B, H, W):
        raise ValueError(f"attention {tuple(attention.shape)} must be (B, H, W) = {(B, H, W)}")
    rows, cols = sampling_coords(attention, out_size, dense=dense, iters=iters)  # (B, out) each
    v = rows * (2.0 / max(H - 1, 1)) - 1.0  # (B, out): normalised y, align_corners=True
    u = cols * (2.0 / max(W - 1, 1)) - 1.0  # (B, out): normalised x
    grid = torch.stack(
        [u[:, None, :].expand(B, out_size, out_size), v[:, :, None].expand(B, out_size, out_size)], dim=-1
    )  # (B, out, out, 2): (x, y) per output pixel
    resampled = F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True
    )  # (B, C, out, out)
    return resampled, (rows, cols)
