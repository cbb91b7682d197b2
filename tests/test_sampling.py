"""fgviz.sampling against explicit float64 loops and the sampler's documented properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fgviz import sampling as S

# ---------------------------------------------------------------- trilinear attention


def ref_trilinear(x: np.ndarray, gamma: float) -> np.ndarray:
    """M(X) = N(N(X) Xᵀ) X written channel by channel in float64."""
    B, C, H, W = x.shape
    out = np.zeros((B, C, H * W))
    for b in range(B):
        X = x[b].reshape(C, H * W)
        n1 = np.zeros_like(X)
        for i in range(C):
            e = np.exp(gamma * X[i] - (gamma * X[i]).max())
            n1[i] = e / e.sum()
        for i in range(C):
            r = np.array([np.sum(n1[i] * X[j]) for j in range(C)])  # relation of channel i to every j
            w = np.exp(r - r.max())
            w /= w.sum()
            out[b, i] = sum(w[j] * X[j] for j in range(C))
    return out.reshape(B, C, H, W)


@pytest.mark.parametrize("gamma", [7.0, 2.0])
def test_trilinear_matches_channel_loop(gamma):
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(2, 6, 4, 5, generator=gen))
    got = S.trilinear_attention(x, gamma=gamma)
    assert got.shape == x.shape
    np.testing.assert_allclose(got.numpy(), ref_trilinear(x.double().numpy(), gamma), rtol=1e-5, atol=1e-6)


def test_trilinear_maps_are_convex_combinations_and_detached():
    gen = torch.Generator().manual_seed(1)
    x = torch.relu(torch.randn(1, 8, 6, 6, generator=gen)).requires_grad_()
    t = S.trilinear_attention(x)
    assert not t.requires_grad
    lo, hi = x.detach().amin(dim=1, keepdim=True), x.detach().amax(dim=1, keepdim=True)
    assert torch.all(t >= lo - 1e-6)
    assert torch.all(t <= hi + 1e-6)


def test_structure_and_detail_maps():
    gen = torch.Generator().manual_seed(2)
    t = torch.rand(2, 5, 7, 7, generator=gen)
    total = t.sum(dim=1)
    structure, detail = S.structure_detail_maps(t)
    torch.testing.assert_close(structure, total.square())
    torch.testing.assert_close(detail, total)  # test mode: plain sum, not squared
    _, detail = S.structure_detail_maps(t, detail_channel=3)
    torch.testing.assert_close(detail, t[:, 3])
    _, detail = S.structure_detail_maps(t, detail_channel=torch.tensor([4, 1]))
    torch.testing.assert_close(detail, torch.stack([t[0, 4], t[1, 1]]))


def test_structure_is_squared_after_resize():
    gen = torch.Generator().manual_seed(3)
    t = torch.rand(1, 4, 5, 5, generator=gen)
    structure, detail = S.structure_detail_maps(t, detail_channel=2, size=(17, 23))
    assert structure.shape == detail.shape == (1, 17, 23)
    # Independent resize in float64: bilinear, align_corners=True, separable.
    total = t.sum(dim=1)[0].double().numpy()
    ys, xs = np.linspace(0, 4, 17), np.linspace(0, 4, 23)
    rows = np.array([np.interp(ys, np.arange(5), total[:, c]) for c in range(5)]).T  # (17, 5)
    resized = np.array([np.interp(xs, np.arange(5), r) for r in rows])  # (17, 23)
    np.testing.assert_allclose(structure[0].numpy(), resized**2, rtol=1e-5)
    squared_first = F.interpolate(t.sum(1, keepdim=True) ** 2, (17, 23), mode="bilinear", align_corners=True)
    assert not np.allclose(structure[0].numpy(), squared_first[0, 0].numpy())  # the order matters


# ---------------------------------------------------------------- sampler


def plain_coords(length: int, out: int) -> torch.Tensor:
    return torch.arange(out, dtype=torch.float64) * (length - 1) / (out - 1)


def density_bound(length: int, out: int, dense: float, window: int) -> float:
    """Most output samples that may land in `window` adjacent input pixels.

    Density is at most dense x uniform (tau = dense·out/len) per pixel; samples are spaced evenly in mass between the
    first and last pixel centres, (out - <= tau) / (out - 1) apart, and a window can catch one extra sample at its
    edge ("a pixel's tolerance"). 1 % slack for the finite clip-and-redistribute iterations.
    """
    tau = dense * out / length
    return 1.01 * tau * window * (out - 1) / (out - tau) + 1


def window_counts(coords: torch.Tensor, length: int, window: int) -> torch.Tensor:
    """Samples falling in [k - 0.5, k + window - 0.5) for every start pixel k."""
    edges = torch.arange(length + 1, dtype=torch.float64) - 0.5
    hist = torch.histogram(coords.double().clamp(-0.5, length - 0.51), bins=edges).hist  # (len,)
    return hist.unfold(0, window, 1).sum(-1)  # (len - window + 1,)


@pytest.mark.parametrize(("H", "W", "out"), [(512, 512, 224), (40, 64, 32), (20, 30, 48), (64, 24, 24)])
def test_uniform_attention_is_plain_resize(H, W, out):
    gen = torch.Generator().manual_seed(4)
    image = torch.rand(2, 3, H, W, generator=gen)
    resampled, (rows, cols) = S.attention_sample(image, torch.ones(2, H, W), out)
    assert resampled.shape == (2, 3, out, out)
    # The requirement is 0.5 px; the design (samples from pixel centre 0 to len - 1) makes it exact.
    assert (rows.double() - plain_coords(H, out)).abs().max() < 1e-3
    assert (cols.double() - plain_coords(W, out)).abs().max() < 1e-3
    ref = F.interpolate(image, size=(out, out), mode="bilinear", align_corners=True)
    torch.testing.assert_close(resampled, ref, atol=1e-4, rtol=0)


def test_zero_attention_samples_uniformly():
    rows, cols = S.sampling_coords(torch.zeros(1, 30, 50), 20)
    assert (rows[0].double() - plain_coords(30, 20)).abs().max() < 1e-3
    assert (cols[0].double() - plain_coords(50, 20)).abs().max() < 1e-3


def test_rows_use_height_and_columns_use_width():
    H, W, out = 40, 64, 32
    att = torch.zeros(1, H, W)
    att[0, 10:15, :] = 1.0  # a horizontal band: only the rows are magnified
    rows, cols = S.sampling_coords(att, out)
    assert (cols[0].double() - plain_coords(W, out)).abs().max() < 1e-3
    in_band = ((rows[0] >= 9.5) & (rows[0] < 14.5)).sum().item()
    assert in_band / 5 > out / H


def test_peaked_attention_magnifies_up_to_the_cap():
    H, W, out, dense = 128, 96, 64, 4.0
    att = torch.full((1, H, W), 0.01)
    att[0, 50:60, 70:80] = 1.0
    rows, cols = S.sampling_coords(att, out, dense=dense)
    for coords, length, (a, b) in ((rows[0], H, (50, 60)), (cols[0], W, (70, 80))):
        count = ((coords >= a - 0.5) & (coords < b - 0.5)).sum().item()
        density = count / (b - a)  # output samples per input pixel in the peak
        assert density > 1.5 * out / length  # well above uniform
        assert count <= density_bound(length, out, dense, b - a)
        assert density >= 0.9 * dense * out / length  # this peak is strong enough to reach the cap


@pytest.mark.parametrize("dense", [2.0, 4.0])
def test_delta_attention_respects_cap_in_every_window(dense):
    # MXNet caps only in its first iteration; a single hot pixel is where that would overshoot.
    H, W, out = 80, 80, 40
    att = torch.zeros(1, H, W)
    att[0, 33, 47] = 1.0
    rows, cols = S.sampling_coords(att, out, dense=dense)
    for coords in (rows[0], cols[0]):
        for window in (1, 3, 10):
            assert window_counts(coords, H, window).max() <= density_bound(H, out, dense, window)


@st.composite
def attention_maps(draw):
    H, W = draw(st.integers(8, 48)), draw(st.integers(8, 48))
    out = draw(st.integers(4, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    power = draw(st.sampled_from([1.0, 4.0, 16.0]))
    gen = torch.Generator().manual_seed(seed)
    att = torch.rand(1, H, W, generator=gen) ** power  # higher powers give sparse, peaky maps
    return att, out, draw(st.sampled_from([1.5, 4.0]))


@settings(max_examples=60, deadline=None)
@given(attention_maps())
def test_sampling_coords_properties(case):
    att, out, dense = case
    _, H, W = att.shape
    rows, cols = S.sampling_coords(att, out, dense=dense)
    assert rows.shape == cols.shape == (1, out)
    for coords, length in ((rows[0], H), (cols[0], W)):
        assert torch.all(coords[1:] >= coords[:-1])
        assert coords.min() >= 0
        assert coords.max() <= length - 1
        for window in (1, 4):
            if window <= length:
                assert window_counts(coords, length, window).max() <= density_bound(length, out, dense, window)


def bilinear_np(img: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample of (C, H, W) at pixel position (y, x), zeros outside."""
    C, H, W = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    acc = np.zeros(C)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                acc += wy * wx * img[:, yy, xx]
    return acc


def test_resampled_image_samples_at_returned_coords():
    gen = torch.Generator().manual_seed(5)
    H, W, out = 21, 33, 12
    image = torch.rand(2, 3, H, W, generator=gen, dtype=torch.float64)
    att = torch.rand(2, H, W, generator=gen, dtype=torch.float64) ** 8
    resampled, (rows, cols) = S.attention_sample(image, att, out)
    assert resampled.dtype == torch.float64
    for b in range(2):
        ref = np.stack(
            [
                [bilinear_np(image[b].numpy(), rows[b, i].item(), cols[b, j].item()) for j in range(out)]
                for i in range(out)
            ]
        )  # (out, out, C)
        np.testing.assert_allclose(resampled[b].numpy(), ref.transpose(2, 0, 1), atol=1e-10)


def test_attended_object_takes_more_output_pixels():
    H = W = 96
    image = torch.zeros(1, 1, H, W)
    image[0, 0, 40:52, 20:32] = 1.0
    att = torch.full((1, H, W), 0.05)
    att[0, 40:52, 20:32] = 1.0
    resampled, _ = S.attention_sample(image, att, 48)
    plain = F.interpolate(image, size=(48, 48), mode="bilinear", align_corners=True)
    assert (resampled > 0.5).sum() > 2 * (plain > 0.5).sum()


def test_attention_sample_rejects_mismatched_attention():
    with pytest.raises(ValueError, match="attention"):
        S.attention_sample(torch.rand(1, 3, 20, 30), torch.rand(1, 30, 20), 10)
