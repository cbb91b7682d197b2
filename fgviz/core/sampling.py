"""TASN attention maps and attention-based resampling, pure torch (docs/methods.md 3.3-3.5).

TASN (Zheng et al., CVPR 2019, "Looking for the Devil in the Details", github.com/researchmm/tasn) turns a
28x28 feature map into trilinear attention maps, sums them into a structure map and picks one as a detail map,
then resamples the image with a separable non-uniform grid that magnifies high-attention rows and columns.
The original sampler is a custom MXNet/CUDA op (`AttSamplerOp::Forward` in researchmm/tasn's
`att_sampler-inl.h`); this is a vectorised re-implementation with `torch.searchsorted` and
`F.grid_sample(align_corners=True)`. Two variants:

- ``variant="tasn"`` (default): the official clipping rule (both axes clipped at one threshold, the sequence of
  thresholds as in the op) with two fixes of the op's inverse CDF, each stated where it is made (`_inverse_cdf`).
- ``variant="mxnet"``: the official grid exactly, quirks included (its first sample depends on the image's place in
  the batch), so anyone can compare (`_inverse_cdf_mxnet`).

The op's domain is square maps: both of its loops run over the row count. fgviz gives each axis its own length
(rows over H, columns over W) in both variants, an extension rather than a reproduction. An all-zero map has no
result in the op (model.py's marginals are 0/0; the NaN step makes the op's inner `while` loop read past its buffer
without bound, until it faults); fgviz samples it uniformly in both variants.

The structure map's channel filter has the same two variants (`unique_energy_mask`): the intent with a tolerance
derived from float rounding (`duplicate_rtol`), or the op's exact comparison as written.
"""

from __future__ import annotations

import math

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


SAMPLER_VARIANTS = ("tasn", "mxnet")


def _check_variant(variant: str) -> None:
    if variant not in SAMPLER_VARIANTS:
        raise ValueError(f"variant must be one of {SAMPLER_VARIANTS}, got {variant!r}")


def duplicate_rtol(map_size: int, channels: int, dtype: torch.dtype = torch.float32) -> float:
    """Relative tolerance within which two trilinear maps count as one: (sqrt(h·w) + sqrt(C))·eps.

    Each map value is a sum over the C channels (T = N2 X) and each energy a sum over the n = h·w values (and
    R = N1 Xᵀ runs over n too). Two evaluations of one mathematical sum of m terms in different orders (two rows of
    a matrix product on different kernel paths, another CPU kernel, a GPU) differ by rounding alone:
    - worst case (Higham, "Accuracy and Stability of Numerical Algorithms", 2002, §4.2): each is within
      (m - 1)·u·Σ|x| of the exact sum, u = eps / 2, so the two may differ by up to m·eps·Σ|x|;
    - with round-to-nearest errors modelled as independent and mean-zero (Higham & Mary, SIAM J. Sci. Comput.
      41(5), 2019), the error grows as sqrt(m)·u instead, so two orders differ by about sqrt(m)·eps·Σ|x|.
    fgviz takes the second for both sums (per value over C, then over n), relative to Σ|map|. The worst case is
    reached only by adversarial rounding, is far wider than the differences seen (1.5 eps between two dead
    channels' energies under AVX-512, docs/methods.md 3.4) and would count distinct maps as one more often.
    """
    return (math.sqrt(map_size) + math.sqrt(channels)) * torch.finfo(dtype).eps


def unique_energy_mask(trilinear: Tensor, *, variant: str = "tasn", rtol: float | None = None) -> Tensor:
    """Which trilinear maps TASN's structure op counts: each distinct map once (the op: each distinct energy).

    The official ``Structure_Att`` (model.py) means to count duplicate maps once (the maps of dead channels are all
    equal, docs/methods.md 3.4): it sorts the energies (sums over space) and flags each sorted position whose energy
    differs from the previous one, but then multiplies those flags with the channels in their *original* order, so
    the flags land on the wrong channels. It also compares exactly, and maps that are equal mathematically are not
    equal bit for bit on every kernel (different rows of a matrix product are summed in different orders).

    - ``variant="tasn"``: the intent. Two maps are one when their energies agree within `duplicate_rtol` x Σ|map|
      (the op's test, made tolerant of rounding) *and* so do the maps themselves, in L1 distance. Energy alone would
      also merge distinct maps whose energies happen to be that close (on random features, a fifth of the
      channels), and whether it did would then hang on the last bits, on each machine differently; distinct maps
      are far apart in L1, duplicates within rounding. Each group of duplicates counts once, by its lowest-index
      channel, so the choice does not depend on which copy rounded lowest. This is also the set the official
      ``Detail_Att`` draws its training channel from (there the indices are aligned).
    - ``variant="mxnet"``: the op as written: exact comparison of energies, sorted-order flags applied by channel
      index.

    Args:
        trilinear: (B, C, h, w).
        variant: "tasn" or "mxnet".
        rtol: the default variant's relative tolerance; None is `duplicate_rtol(h·w, C)` (0 compares exactly, for
            measuring what the tolerance changes).

    Returns:
        (B, C) bool.
    """
    _check_variant(variant)
    B, C = trilinear.shape[:2]
    flat = trilinear.flatten(2)  # (B, C, n)
    energy = flat.sum(-1)  # (B, C)
    sorted_energy, order = energy.sort(dim=-1, stable=True)  # (B, C) each: ties keep the lower index first
    if variant == "mxnet":
        first = torch.ones_like(sorted_energy, dtype=torch.bool)  # (B, C): sorted position k starts a new energy
        first[:, 1:] = sorted_energy[:, 1:] != sorted_energy[:, :-1]
        return first  # flag of sorted position k applied to channel k (the op's misalignment)
    rtol = duplicate_rtol(flat.shape[-1], C, flat.dtype) if rtol is None else rtol
    scale = flat.abs().sum(-1)  # (B, C): Σ|map|, the rounding's scale
    sorted_scale = scale.gather(-1, order)  # (B, C)
    widest = rtol * scale.max()
    pairs = []  # (image, channel, lower-energy channel) whose energies agree within the tolerance
    for offset in range(1, C):  # sorted positions `offset` apart; the gaps only grow with the offset
        gap = sorted_energy[:, offset:] - sorted_energy[:, :-offset]  # (B, C - offset)
        if not bool((gap <= widest).any()):
            break
        near = gap <= rtol * torch.maximum(sorted_scale[:, offset:], sorted_scale[:, :-offset])
        b, k = near.nonzero(as_tuple=True)
        pairs.append((b, order[b, k + offset], order[b, k]))
    rep = torch.arange(C, device=flat.device).repeat(B, 1)  # (B, C): each channel's lowest duplicate so far
    if pairs:
        b, i, j = (torch.cat(t) for t in zip(*pairs, strict=True))  # (P,) each
        distance = (flat[b, i] - flat[b, j]).abs().sum(-1)  # (P,): L1 distance between the two maps
        same = distance <= rtol * torch.maximum(scale[b, i], scale[b, j])  # (P,)
        b, i, j = b[same], i[same], j[same]
        while True:  # lowest index over each group of duplicates (a few rounds: groups are small)
            lowest = torch.minimum(rep[b, i], rep[b, j])  # (P,)
            flat_rep = rep.flatten().scatter_reduce(0, b * C + i, lowest, "amin")
            new = flat_rep.scatter_reduce(0, b * C + j, lowest, "amin").view(B, C)
            if torch.equal(new, rep):
                break
            rep = new
    return rep == torch.arange(C, device=flat.device)  # (B, C): the lowest index of each group


def structure_detail_maps(
    trilinear: Tensor,
    *,
    detail_channel: int | Tensor | None = None,
    size: tuple[int, int] | None = None,
    variant: str = "tasn",
) -> tuple[Tensor, Tensor]:
    """TASN's structure and detail attention maps (docs/methods.md 3.4), ready for `attention_sample`.

    Structure = sum of the trilinear maps whose energy is unique (`unique_energy_mask`; equal to the plain sum when
    no two maps agree within the rounding tolerance), then bilinear resize to `size`, then squared (MXNet's
    order; the squaring emphasises peaks and must come after the resize, so it is done here and callers must not
    square again).
    Detail = one channel (training: a random one per image) or, with `detail_channel=None`, the plain sum over all
    channels (test mode, ``mx.nd.sum(f, axis=1)``: no filter); resized, not squared. The PyTorch port's +0.01 on
    the detail map is not applied. The resize uses align_corners=True, as MXNet's BilinearResize2D.

    Args:
        trilinear: (B, C, h, w) from `trilinear_attention`.
        detail_channel: None (sum, test mode), an int for every image, or a (B,) int64 tensor, one per image.
        size: (H, W) output size, normally the input image's; None keeps (h, w) and skips the squaring's resize.
        variant: the structure filter, "tasn" (aligned) or "mxnet" (as written); see `unique_energy_mask`.

    Returns:
        structure: (B, H, W), squared; non-negative for non-negative features.
        detail: (B, H, W).
    """
    structure, detail = structure_detail(trilinear, detail_channel=detail_channel, variant=variant)
    if size is None:
        return structure.square(), detail
    return sampler_maps(structure, detail, size)


def sampler_maps(structure: Tensor, detail: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Structure and detail maps as the sampler takes them: bilinear resize to the image (align_corners=True, as
    MXNet's BilinearResize2D), then the structure map squared.

    Args:
        structure, detail: (B, h, w) from `structure_detail`.
        size: (H, W).

    Returns:
        (B, H, W) each.
    """
    both = torch.stack([structure, detail], dim=1)  # (B, 2, h, w)
    both = F.interpolate(both, size=size, mode="bilinear", align_corners=True)  # (B, 2, H, W)
    return both[:, 0].square(), both[:, 1]


def structure_detail(
    trilinear: Tensor, *, detail_channel: int | Tensor | None = None, variant: str = "tasn"
) -> tuple[Tensor, Tensor]:
    """The structure and detail maps at the feature resolution, before the resize and the squaring (for display).

    Returns:
        structure: (B, h, w) filtered channel sum; detail: (B, h, w) one channel or the plain channel sum.
    """
    weights = unique_energy_mask(trilinear, variant=variant).to(trilinear.dtype)  # (B, C)
    structure = torch.einsum("bc,bchw->bhw", weights, trilinear)  # (B, h, w)
    if detail_channel is None:
        detail = trilinear.sum(dim=1)  # (B, h, w): test mode, every channel
    else:
        B = trilinear.shape[0]
        channel = torch.as_tensor(detail_channel, device=trilinear.device).expand(B)  # (B,)
        detail = trilinear[torch.arange(B, device=trilinear.device), channel]  # (B, h, w)
    return structure, detail


def random_unique_channel(trilinear: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Training's detail channel: one channel per image drawn uniformly among those with a unique energy, as the
    official ``Detail_Att`` does (there the indices are aligned).

    Returns:
        (B,) int64.
    """
    mask = unique_energy_mask(trilinear)  # (B, C)
    u = torch.rand(mask.shape, generator=generator, device=generator.device if generator is not None else mask.device)
    return torch.where(mask, u.to(mask.device), -1.0).argmax(dim=-1)  # (B,): the largest draw among allowed ones


def _marginals(attention: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised max-marginals (B, H) over rows and (B, W) over columns, as model.py's ``att_sample``.

    An all-zero map gives uniform marginals (model.py divides 0 by 0, and the op then loops past its buffer)."""
    a = attention.detach().to(torch.promote_types(attention.dtype, torch.float32)).clamp_min(0.0)  # (B, H, W)
    out = []
    for m in (a.amax(dim=-1), a.amax(dim=-2)):  # (B, H): max over columns; (B, W): max over rows
        total = m.sum(dim=-1, keepdim=True)  # (B, 1)
        uniform = torch.full_like(m, 1.0 / m.shape[-1])
        out.append(torch.where(total > 0, m / total.clamp_min(torch.finfo(m.dtype).tiny), uniform))
    return out[0], out[1]


def sampler_densities(
    attention: Tensor, out_size: int, *, dense: float = 4.0, iters: int = 5
) -> tuple[Tensor, Tensor]:
    """Output samples per input row and per input column, after the official clip-and-redistribute rounds.

    As ``AttSamplerOp::Forward``: d = marginal x out_size per axis; in every round both axes are clipped at one
    threshold t, then each axis gets the clipped mass back spread uniformly over its pixels. The first round's t is
    min(tau0, max d_row, max d_col) with tau0 = scale·dense·in_size/att_size = dense·out_size/H (the uniform
    density times `dense`), every later round's t = min(max d_row, max d_col). So the axes are coupled and end with
    nearly the same peak density, and later rounds may let a peak rise above tau0 by the redistributed mass.
    The op takes square images only (both its loops run over the row count, so a non-square map is outside its
    domain); fgviz's per-axis lengths are an extension. For H != W the op's in_size and att_size would both be read
    from the rows (the image height and the row marginal), so tau0 = dense·out_size/H for both axes here.

    Args:
        attention: (B, H, W) non-negative map at the image's resolution.
        out_size: output side length.
        dense: the first round's cap in multiples of the uniform density.
        iters: clip-and-redistribute rounds.

    Returns:
        d_row: (B, H), d_col: (B, W); each sums to out_size.
    """
    m_row, m_col = _marginals(attention)  # (B, H), (B, W)
    H, W = m_row.shape[-1], m_col.shape[-1]
    d_row, d_col = m_row * out_size, m_col * out_size  # (B, H), (B, W)
    tau0 = dense * out_size / H
    for j in range(iters):
        t = torch.minimum(d_row.amax(-1, keepdim=True), d_col.amax(-1, keepdim=True))  # (B, 1)
        if j == 0:
            t = t.clamp(max=tau0)
        d_row, d_col = torch.minimum(d_row, t), torch.minimum(d_col, t)
        d_row = d_row + (out_size - d_row.sum(-1, keepdim=True)) / H  # (B, H): redistribute uniformly
        d_col = d_col + (out_size - d_col.sum(-1, keepdim=True)) / W  # (B, W)
    return d_row, d_col


def _inverse_cdf(d: Tensor, out_size: int) -> Tensor:
    """Sample positions (input pixel units, pixel k centred at k) whose local spacing is 1 / density.

    Two fixes of the op's inverse CDF (`_inverse_cdf_mxnet` keeps them):
    1. Row k of the density covers [k - 0.5, k + 0.5], so the CDF has knots C[j] at x = j + 0.5 with a first knot
       C = 0 at x = -0.5 and C[k] = C[k-1] + d[k]: every d[k] is counted. (The op starts its CDF at C[0] = 1, so
       d[0] is never counted, and reads C[-1] out of bounds for the first sample.)
    2. Targets are spaced evenly in mass from the centre of pixel 0 to the centre of pixel len - 1, so the first and
       last samples land on those centres and a uniform density reproduces a plain align_corners=True resize
       exactly. (The op's targets i·C/out start at mass 0 and stop one step short of the last pixel: its first
       sample lands a pixel before the image, in the zero padding, and the grid ends short of the last pixel.)
    """
    length = d.shape[-1]
    cdf = F.pad(d.cumsum(dim=-1), (1, 0))  # (B, len + 1): C = 0 at x = -0.5, C[k] at x = k + 0.5
    lo = d[:, :1] / 2  # (B, 1): mass up to the centre of pixel 0
    hi = cdf[:, -1:] - d[:, -1:] / 2  # (B, 1): mass up to the centre of pixel len - 1
    steps = torch.linspace(0.0, 1.0, out_size, dtype=d.dtype, device=d.device)  # (out,)
    target = lo + (hi - lo) * steps  # (B, out)
    j = torch.searchsorted(cdf, target.contiguous()).clamp(1, length)  # (B, out): first knot with C[j] >= target
    c0, c1 = cdf.gather(-1, j - 1), cdf.gather(-1, j)  # (B, out) each
    frac = ((target - c0) / (c1 - c0).clamp_min(torch.finfo(d.dtype).tiny)).clamp(0.0, 1.0)  # (B, out)
    return (j - 1.5 + frac).clamp(0.0, length - 1.0)  # (B, out): knot j - 1 sits at x = j - 1.5


def _inverse_cdf_mxnet(d: Tensor, out_size: int) -> Tensor:
    """The op's inverse CDF exactly, batch position included.

    C[0] = 1, C[k] = C[k-1] + d[k] (d[0] dropped); targets i·C[-1]/out; the first index k with C[k] >= target;
    p = k + (target - C[k]) / (C[k] - C[k-1]). Knot C[k] sits at pixel k. At k = 0 the op reads C[-1] out of
    bounds: its cumulative buffer holds the whole batch (one per axis, image after image), so for images 1..B-1
    that value is the previous image's last cumulative value, and the first sample lands just after pixel 0
    (p = 1 / (C_prev - 1)); for image 0 it lies before the buffer (undefined; taken as 0, as the maintained port
    wkcn/AttentionSampler does), so p = -1: a row and a column of the zero padding. An explanation (batch of one)
    is always image 0.

    Args:
        d: (B, len) densities from `sampler_densities`, the whole batch the op would get in one call.
    """
    ones = torch.ones_like(d[:, :1])  # (B, 1)
    cdf = torch.cat([ones, 1.0 + d[:, 1:].cumsum(dim=-1)], dim=-1)  # (B, len): C[0] = 1
    step = cdf[:, -1:] / out_size  # (B, 1)
    target = torch.arange(out_size, dtype=d.dtype, device=d.device) * step  # (B, out)
    k = torch.searchsorted(cdf, target.contiguous())  # (B, out): first k with C[k] >= target (< len: target < C[-1])
    ck = cdf.gather(-1, k)  # (B, out)
    before = F.pad(cdf[:-1, -1:], (0, 0, 1, 0))  # (B, 1): the op's C[-1]: 0 for image 0, else image b-1's C[len-1]
    prev = torch.where(k > 0, cdf.gather(-1, (k - 1).clamp_min(0)), before)  # (B, out)
    return k + (target - ck) / (ck - prev)  # (B, out): no clamp, the op samples outside too


def sampling_coords(
    attention: Tensor, out_size: int, *, dense: float = 4.0, iters: int = 5, variant: str = "tasn"
) -> tuple[Tensor, Tensor]:
    """TASN's separable sampling grid from an attention map (docs/methods.md 3.5).

    Max-marginals (m_row = max over columns, m_col = max over rows) are normalised into densities of output
    samples per input row/column (each summing to out_size), clipped as the official op does
    (`sampler_densities`) and inverted through their CDF.

    Args:
        attention: (B, H, W) non-negative map at the image's resolution (negative values are clamped to 0; an
            all-zero map samples uniformly).
        out_size: output side length (TASN: 224 or 336 from a 512 image).
        dense: the first round's cap on the magnification, in multiples of the uniform density out_size / H.
        iters: clip-and-redistribute rounds.
        variant: "tasn" (default: the op's clipping, a CDF that counts every pixel and a grid from the first to
            the last pixel centre) or "mxnet" (the op's grid exactly, quirks included).

    Returns:
        row_coords: (B, out_size) row positions in input pixels, non-decreasing; in [0, H - 1] for "tasn".
        col_coords: (B, out_size) column positions, non-decreasing; in [0, W - 1] for "tasn".
    """
    _check_variant(variant)
    d_row, d_col = sampler_densities(attention, out_size, dense=dense, iters=iters)  # (B, H), (B, W)
    invert = _inverse_cdf if variant == "tasn" else _inverse_cdf_mxnet
    return invert(d_row, out_size), invert(d_col, out_size)


def attention_sample(
    image: Tensor, attention: Tensor, out_size: int, *, dense: float = 4.0, iters: int = 5, variant: str = "tasn"
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Resample an image on TASN's attention grid: a separable, axis-aligned magnifier.

    Args:
        image: (B, C, H, W).
        attention: (B, H, W) non-negative, the image's size (see `sampling_coords`).
        out_size: output side length.
        dense, iters, variant: see `sampling_coords`.

    Returns:
        resampled: (B, C, out_size, out_size), bilinear with zeros outside (the op's BilinearSampler; only the
            "mxnet" grid reaches outside).
        (row_coords, col_coords): (B, out_size) each, in input pixels, for drawing the grid.
    """
    B, _, H, W = image.shape
    if attention.shape != (B, H, W):
        raise ValueError(f"attention {tuple(attention.shape)} must be (B, H, W) = {(B, H, W)}")
    rows, cols = sampling_coords(attention, out_size, dense=dense, iters=iters, variant=variant)  # (B, out) each
    v = rows * (2.0 / max(H - 1, 1)) - 1.0  # (B, out): normalised y, align_corners=True
    u = cols * (2.0 / max(W - 1, 1)) - 1.0  # (B, out): normalised x
    grid = torch.stack(
        [u[:, None, :].expand(B, out_size, out_size), v[:, :, None].expand(B, out_size, out_size)], dim=-1
    )  # (B, out, out, 2): (x, y) per output pixel
    resampled = F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True
    )  # (B, C, out, out)
    return resampled, (rows, cols)
