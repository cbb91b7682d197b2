"""fgviz.core.sampling against explicit float64 loops and the sampler's documented properties."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fgviz.core import sampling as S

ROOT = Path(__file__).resolve().parents[1]

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


def energies_fsum(t: np.ndarray) -> np.ndarray:
    """(B, C) map energies, each a correctly rounded float64 sum (math.fsum): equal maps get equal energies whatever
    their place in the array, so the restatements below compare exactly what the op compares."""
    B, C = t.shape[:2]
    return np.array([[math.fsum(t[b, c].ravel().tolist()) for c in range(C)] for b in range(B)])


def official_structure_att(t: np.ndarray) -> np.ndarray:
    """model.py's Structure_Att re-stated: energy flags computed in sorted order, applied by channel index."""
    B, C = t.shape[:2]
    out = np.zeros((B, *t.shape[2:]), np.float64)
    energy = energies_fsum(t)
    for b in range(B):
        a_sorted = energy[b][np.argsort(energy[b], kind="stable")]
        flags = np.concatenate(([1.0], (a_sorted[1:] != a_sorted[:-1]).astype(np.float64)))
        out[b] = sum(flags[c] * t[b, c] for c in range(C))
    return out


def official_detail_candidates(t: np.ndarray) -> list[set[int]]:
    """model.py's Detail_Att (training): the channels it may draw, one per distinct energy (aligned indices)."""
    out = []
    energy = energies_fsum(t)
    for b in range(t.shape[0]):
        idx = np.argsort(energy[b], kind="stable")
        a_sorted = energy[b][idx]
        first = np.concatenate(([True], a_sorted[1:] != a_sorted[:-1]))
        out.append({int(c) for c in idx[first]})
    return out


def with_dead_channels(seed: int, C: int = 12, dead: int = 4) -> torch.Tensor:
    """Trilinear maps of features with `dead` all-zero channels (1..dead): their maps are equal mathematically, but
    not always bit for bit (different rows of a matrix product may be summed in different orders)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(2, C, 6, 7, generator=gen))
    x[:, 1 : 1 + dead] = 0.0
    return S.trilinear_attention(x)


def exact_duplicates(t: torch.Tensor, dead: int) -> torch.Tensor:
    """`t` with channels 2..dead set to copies of channel 1: duplicates bit for bit, by construction."""
    t = t.clone()
    t[:, 2 : 1 + dead] = t[:, 1:2]
    return t


def ulp_apart(t: torch.Tensor, dead: int) -> torch.Tensor:
    """Copies of channel 1 in channels 2..dead, each scaled by 1 + k·eps (k = 1, -2, 3, ...): how another kernel's
    rounding leaves duplicate maps (measured under AVX-512: energies 10.3399200 and 10.3399220, 1.5 eps apart)."""
    t = exact_duplicates(t, dead)
    eps = torch.finfo(t.dtype).eps
    for k, c in enumerate(range(2, 1 + dead), start=1):
        t[:, c] = t[:, 1] * (1 + (-1) ** (k + 1) * k * eps)
    return t


def test_structure_and_detail_maps():
    gen = torch.Generator().manual_seed(2)
    t = torch.rand(2, 5, 7, 7, generator=gen)  # all energies distinct: the filter keeps every channel
    total = t.sum(dim=1)
    structure, detail = S.structure_detail_maps(t)
    torch.testing.assert_close(structure, total.square())
    torch.testing.assert_close(detail, total)  # test mode: plain sum, not squared
    _, detail = S.structure_detail_maps(t, detail_channel=3)
    torch.testing.assert_close(detail, t[:, 3])
    _, detail = S.structure_detail_maps(t, detail_channel=torch.tensor([4, 1]))
    torch.testing.assert_close(detail, torch.stack([t[0, 4], t[1, 1]]))


def live_channels_are_apart(t: torch.Tensor, dead: list[int], margin: float = 100.0) -> bool:
    """Precondition of the filter tests: the live channels' maps and one dead channel's are apart (float64 L1) by
    more than `margin` x the filter's tolerance, so only the dead channels may be merged."""
    kept = [c for c in range(t.shape[1]) if c not in dead[1:]]
    flat = t.double().flatten(2)[:, kept]  # (B, K, n)
    apart = torch.cdist(flat, flat, p=1).masked_fill(torch.eye(len(kept), dtype=torch.bool), math.inf)  # (B, K, K)
    scale = flat.abs().sum(-1).amax(-1)  # (B,)
    return bool((apart.amin((1, 2)) > margin * S.duplicate_rtol(t[0, 0].numel(), t.shape[1]) * scale).all())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structure_filter_variants_against_the_official_op(seed):
    t = exact_duplicates(with_dead_channels(seed), dead=4)
    assert live_channels_are_apart(t, dead=[1, 2, 3, 4])
    mx, _ = S.structure_detail(t, variant="mxnet")
    np.testing.assert_allclose(mx.numpy(), official_structure_att(t.double().numpy()), rtol=1e-5)
    keep = [c for c in range(t.shape[1]) if c not in (2, 3, 4)]  # dead channels 1..4 counted once (channel 1)
    for maps in (t, ulp_apart(t, dead=4), with_dead_channels(seed)):  # bit-equal, a few eps apart, as computed
        aligned, plain = S.structure_detail(maps)
        torch.testing.assert_close(aligned, maps[:, keep].sum(1))
        torch.testing.assert_close(plain, maps.sum(1))  # test-mode detail: every channel, no filter
    assert not torch.allclose(S.structure_detail(t)[0], mx)  # the op's misaligned flags drop other channels


def test_the_filter_tolerance_is_the_rounding_of_the_sums():
    """Duplicates a few eps apart count once (default); the op's exact comparison counts them apart (mxnet);
    maps apart by more than (sqrt(h·w) + sqrt(C))·eps are distinct."""
    n, C = 6 * 7, 12
    assert S.duplicate_rtol(n, C) == pytest.approx((math.sqrt(n) + math.sqrt(C)) * np.finfo(np.float32).eps)
    assert S.duplicate_rtol(n, C, torch.float64) == pytest.approx((math.sqrt(n) + math.sqrt(C)) * 2.0**-52)
    t = ulp_apart(with_dead_channels(0), dead=4)
    energy = energies_fsum(t.numpy())
    assert len(set(energy[0, 1:5].tolist())) == 4  # really apart, bit for bit
    np.testing.assert_array_equal(S.unique_energy_mask(t)[0].numpy(), [c not in (2, 3, 4) for c in range(C)])
    official = official_detail_candidates(t.numpy())
    assert all({1, 2, 3, 4} <= allowed for allowed in official)  # the op would count each copy
    # The measurement, 10.3399200439 vs 10.3399219513 on a 6x7 map (10 channels): within the tolerance.
    a, b = np.float32(10.3399200439), np.float32(10.3399219513)
    assert abs(b - a) <= S.duplicate_rtol(n, 10) * b
    # Two maps apart by twice the tolerance are distinct; by half of it, one.
    base = torch.full((1, 1, 6, 7), 1.0, dtype=torch.float64) / n  # energy 1
    for factor, distinct in ((2.0, True), (0.5, False)):
        other = base * (1 + factor * S.duplicate_rtol(n, 2, torch.float64))
        mask = S.unique_energy_mask(torch.cat([other, base], dim=1))
        # one group: channel 0 (the higher energy) stands for it: the lowest index, not the lowest energy
        assert mask[0].tolist() == [True, distinct]


def test_distinct_maps_with_equal_energies_both_count():
    """Equal energies do not make equal maps: a map and its mirror image (small integers: sums exact in float32)
    both count by default; the op's exact energy comparison drops one (as written: by its misaligned flags)."""
    a = torch.zeros(1, 1, 6, 7)
    a[0, 0, 1, 2], a[0, 0, 4, 5] = 3.0, 1.0
    t = torch.cat([a, a.flip(-1), a + 0.0, 2 * a], dim=1)  # channels 0 and 1 tie in energy; 2 duplicates 0
    assert S.unique_energy_mask(t)[0].tolist() == [True, True, False, True]
    official = official_detail_candidates(t.numpy())[0]
    assert len(official) == 2  # the op sees two energies: 4 and 8


def test_near_equal_energies_do_not_make_the_filter_depend_on_rounding():
    """Random features give many distinct maps with nearly equal energies. Perturbing every map by a few eps (what
    another kernel does) changes no decision: only the dead channels are merged, and always the same ones."""
    gen = torch.Generator().manual_seed(7)
    x = torch.relu(torch.randn(1, 256, 14, 14, generator=gen))
    x[:, 5:9] = 0.0
    t = S.trilinear_attention(x)
    energy = np.sort(energies_fsum(t.double().numpy())[0])
    near = (np.diff(energy) / energy[1:] <= S.duplicate_rtol(14 * 14, 256)).sum()
    assert near >= 3 + 8  # the 3 dead copies and 8 or more pairs of distinct maps with near-equal energies
    keep = S.unique_energy_mask(t)
    assert keep[0].tolist() == [c not in (6, 7, 8) for c in range(256)]
    eps = torch.finfo(torch.float32).eps
    for seed in range(3):
        noise = torch.randint(-3, 4, t.shape, generator=torch.Generator().manual_seed(seed)).float() * eps
        assert torch.equal(S.unique_energy_mask(t * (1 + noise)), keep)


def test_training_detail_channel_is_drawn_among_unique_energies():
    t = exact_duplicates(with_dead_channels(3, C=10, dead=5), dead=5)
    assert live_channels_are_apart(t, dead=[1, 2, 3, 4, 5])
    expected = {0, 1, 6, 7, 8, 9}  # dead channels 1..5 counted once, by the lowest index
    assert official_detail_candidates(t.numpy()) == [expected, expected]  # bit-equal copies: the op agrees
    gen = torch.Generator().manual_seed(0)
    for maps in (t, ulp_apart(t, dead=5), with_dead_channels(3, C=10, dead=5)):
        draws = torch.stack([S.random_unique_channel(maps, gen) for _ in range(600)])  # (600, B)
        for b in range(maps.shape[0]):
            assert set(draws[:, b].tolist()) == expected  # every allowed channel, nothing else
            counts = np.bincount(draws[:, b].numpy(), minlength=maps.shape[1])[sorted(expected)]
            assert counts.min() > 0.5 * counts.mean()  # roughly uniform (6 channels x 100 expected draws)


def spotted_features(C: int, h: int, w: int, dead: list[int], seed: int) -> torch.Tensor:
    """(2, C, h, w) float64 features whose trilinear maps are apart except for the dead (all-zero) channels': each
    live channel is one spot of its own height (4 to 12, rising with the index) at its own place, so each map is
    dominated by its own channel."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(2, C, h * w, dtype=torch.float64)
    for b in range(2):
        places = torch.randperm(h * w, generator=gen)[:C]
        for c in range(C):
            if c not in dead:
                x[b, c, places[c]] = 4.0 + 8.0 * c / C
    return x.reshape(2, C, h, w)


KERNEL_CHECK = r"""
import json, sys
import torch
from fgviz.core import sampling as S
from tests.test_sampling import spotted_features

out = {"capability": torch.backends.cpu.get_cpu_capability(), "cases": []}
for C, h, w, dead in json.loads(sys.argv[1]):
    t = S.trilinear_attention(spotted_features(C, h, w, dead, seed=C).float())  # float32, as a model runs it
    energy = t.flatten(2).sum(-1)
    out["cases"].append({"keep": S.unique_energy_mask(t).tolist(), "dead_energies": energy[:, dead].tolist()})
print(json.dumps(out))
"""
KERNEL_CASES = [(10, 6, 7, [1, 2, 3, 4, 5]), (16, 28, 28, [1, 7, 8, 13, 14, 15]),
                (64, 28, 28, [3, 17, 40, 61, 62, 63]), (128, 16, 16, [0, 5, 31, 64, 127])]


CPU_FLAGS = {"avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}


def cpu_supports(capability: str) -> bool:
    """Whether torch can run its `capability` kernels here: the CPU's flags (/proc/cpuinfo), or elsewhere the best
    capability torch picked for this process."""
    if capability == "default":
        return True
    try:
        return CPU_FLAGS[capability] <= set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        order = ["default", "avx2", "avx512"]
        best = torch.backends.cpu.get_cpu_capability().lower()
        return best in order and "ATEN_CPU_CAPABILITY" not in os.environ and order.index(best) >= order.index(
            capability)


@pytest.mark.parametrize("capability", ["avx512", "avx2", "default"])
def test_dead_channels_count_once_under_every_cpu_kernel(capability):
    """ATEN_CPU_CAPABILITY picks the kernels torch vectorises with; under each, the dead channels' maps (equal
    mathematically, not always bit for bit) count once and every live channel counts."""
    if not cpu_supports(capability):
        pytest.skip(f"this CPU cannot run torch's {capability} kernels (flags {sorted(CPU_FLAGS[capability])})")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", KERNEL_CHECK, json.dumps(KERNEL_CASES)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["capability"].lower() == capability  # the kernel asked for is the kernel that ran
    for (C, h, w, dead), case in zip(KERNEL_CASES, got["cases"], strict=True):
        t64 = S.trilinear_attention(spotted_features(C, h, w, dead, seed=C))  # float64: the maps, not the rounding
        assert live_channels_are_apart(t64, dead, margin=10.0)
        expected = [c not in dead[1:] for c in range(C)]  # the lowest dead index stands for all of them
        assert case["keep"] == [expected, expected], (C, h, w, case["dead_energies"])


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


# ---------------------------------------------------------------- sampler: the official op, re-stated


def official_batch_grids(atts: list[np.ndarray], out: int, dense: float, iters: int, dtype=np.float32):
    """`AttSamplerOp::Forward` (researchmm/tasn att_sampler-inl.h) on a batch, with scalar loops in `dtype` (the op:
    float32), over the op's whole-batch buffers.

    The marginals are model.py's `att_sample`: max over columns (attx, rows) and over rows (atty, columns), each
    divided by its sum. The op takes square inputs; for H != W, in_size and att_size are both the row count (the op
    reads them from the image height and attx), each axis loops over its own length. The cumulative maps of all
    images share one buffer per axis (mapxi_, mapyi_, initialised to 1, image after image), and the first sample
    reads C[j - 1] at j = 0: for image b >= 1 that is image b - 1's last cumulative value; for image 0 it lies before
    the buffer (undefined behaviour in C++), read as 0. Returns, per image, (row positions, column positions, row
    densities, column densities), in input pixels: the op's normalised index (j + frac) * 2 / (len - 1) - 1, mapped
    back by its bilinear sampler's (u + 1) * (len - 1) / 2.
    """
    f = dtype
    densities = []
    for att in atts:
        att = np.asarray(att, f)
        H, _ = att.shape
        attx, atty = att.max(axis=1), att.max(axis=0)
        attx, atty = attx / attx.sum(dtype=f), atty / atty.sum(dtype=f)
        in_size = att_size = H
        threshold = f(f(out) / f(in_size) * f(dense) * f(in_size) / f(att_size))
        mapx, mapy = [f(v * f(out)) for v in attx], [f(v * f(out)) for v in atty]
        for j in range(iters):
            maxx, maxy = f(0), f(0)
            for v in mapx:
                maxx = maxx if maxx > v else v
            for v in mapy:
                maxy = maxy if maxy > v else v
            t = maxy if maxx > maxy else maxx
            if j == 0:
                t = t if threshold > t else threshold
            mapx = [t if v > t else v for v in mapx]
            mapy = [t if v > t else v for v in mapy]
            sx = sy = f(0)
            for v in mapx:
                sx = f(sx + v)
            for v in mapy:
                sy = f(sy + v)
            dx, dy = f((f(out) - sx) / f(len(mapx))), f((f(out) - sy) / f(len(mapy)))
            mapx, mapy = [f(v + dx) for v in mapx], [f(v + dy) for v in mapy]
        densities.append((mapx, mapy))

    def invert_batch(ds: list[list]) -> list[np.ndarray]:
        buf = [f(1.0)] * sum(len(d) for d in ds)  # the op's cumulative buffer of one axis, the whole batch
        positions, start = [], 0
        for d in ds:
            n = len(d)
            for i in range(n - 1):
                buf[start + i + 1] = f(buf[start + i] + d[i + 1])  # d[0] is never added
            step = f(buf[start + n - 1] / f(out))
            scale = f(2.0 / (n - 1))
            index, i, j = [], 0, 0
            while i < out:
                target = f(i * step)
                if buf[start + j] >= target:
                    prev = buf[start + j - 1] if start + j - 1 >= 0 else f(0.0)  # before the buffer: read as 0
                    index.append(f(f(j + (target - buf[start + j]) / (buf[start + j] - prev)) * scale - f(1.0)))
                    i += 1
                else:
                    j += 1
            positions.append((np.array(index, np.float64) + 1.0) * (n - 1) / 2.0)
            start += n
        return positions

    rows = invert_batch([dx for dx, _ in densities])
    cols = invert_batch([dy for _, dy in densities])
    return [(r, c, np.array(dx, np.float64), np.array(dy, np.float64))
            for r, c, (dx, dy) in zip(rows, cols, densities, strict=True)]


def official_grid(att: np.ndarray, out: int, dense: float, iters: int, dtype=np.float32):
    """The op on a batch of one (`official_batch_grids`): (rows, cols, row densities, column densities)."""
    return official_batch_grids([att], out, dense, iters, dtype)[0]


def blob_map(H: int, W: int, n: int, seed: int) -> np.ndarray:
    """Random Gaussian blobs (radius 2-15 % of the side) on zero."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:H, :W]
    a = np.zeros((H, W))
    for _ in range(n):
        cy, cx, s = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(0.02, 0.15) * min(H, W)
        a += rng.uniform(0.2, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    return a.astype(np.float32)


def structure_like_map(H: int, W: int, seed: int, cells: int = 28) -> np.ndarray:
    """Like TASN's structure map: a sparse 28x28 map, resized bilinearly to the image, squared."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy((rng.random((1, 1, cells, cells)) ** 3).astype(np.float32))
    return (F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=True)[0, 0] ** 2).numpy()


def peaked_map(H: int, W: int, seed: int, peaks: int = 2, sigma: float = 0.01, floor: float = 0.02) -> np.ndarray:
    """Sharp Gaussian peaks (`sigma` x the short side) on a low floor: the grid reaches its peak density there."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:H, :W]
    a = np.full((H, W), floor)
    for _ in range(peaks):
        cy, cx, s = rng.uniform(0.1, 0.9) * H, rng.uniform(0.1, 0.9) * W, sigma * min(H, W)
        a += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
    return a.astype(np.float32)


REFERENCE_MAPS = {
    "blobs": lambda: blob_map(512, 512, 5, 0),
    "structure": lambda: structure_like_map(512, 512, 2),
    "uniform": lambda: np.ones((512, 512), np.float32),
    "blobs 384x512": lambda: blob_map(384, 512, 4, 3),
    "structure 512x320": lambda: structure_like_map(512, 320, 4),
    "peaks": lambda: peaked_map(512, 512, 0),
    "peaks 384x512": lambda: peaked_map(384, 512, 1),
}


@cache
def reference_map(name: str) -> np.ndarray:
    return REFERENCE_MAPS[name]()


def samples_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance, in output samples of grid `a`, between sample i of `a` and sample i of `b`."""
    return float(np.abs(np.arange(len(a)) - np.interp(b, a, np.arange(len(a)))).max())


@pytest.mark.parametrize("iters", [1, 5])
@pytest.mark.parametrize("out", [224, 336])
@pytest.mark.parametrize("name", list(REFERENCE_MAPS))
def test_mxnet_variant_is_the_official_grid(name, out, iters):
    att = reference_map(name)
    rows32, cols32, d_row, d_col = official_grid(att, out, 4.0, iters)
    rows, cols = S.sampling_coords(torch.from_numpy(att)[None], out, iters=iters, variant="mxnet")
    assert np.abs(rows[0].double().numpy() - rows32).max() < 0.01  # input pixels
    assert np.abs(cols[0].double().numpy() - cols32).max() < 0.01
    # In float64 both sides agree far below the op's own float32 rounding (which is what 0.01 px allows for).
    rows64, cols64, d_row64, d_col64 = official_grid(att, out, 4.0, iters, np.float64)
    r64, c64 = S.sampling_coords(torch.from_numpy(att).double()[None], out, iters=iters, variant="mxnet")
    assert np.abs(r64[0].numpy() - rows64).max() < 1e-6 and np.abs(c64[0].numpy() - cols64).max() < 1e-6
    dr, dc = S.sampler_densities(torch.from_numpy(att).double()[None], out, iters=iters)
    np.testing.assert_allclose(dr[0].numpy(), d_row64, rtol=1e-9)
    np.testing.assert_allclose(dc[0].numpy(), d_col64, rtol=1e-9)
    assert rows[0, 0] == pytest.approx(-1.0, abs=1e-5) and cols[0, 0] == pytest.approx(-1.0, abs=1e-5)  # the quirk


def cdf_fix_bound(d: np.ndarray, out: int) -> float:
    """Most output samples (of the default grid) between sample i of the default grid and sample i of the op's, from
    one axis's densities d (both variants clip alike, so they share d).

    In mass units (output samples), fgviz's CDF F has its knots at pixel edges, so at pixel centre k it is
    F(k) = Σ_{j<k} d[j] + d[k]/2. The op's is G(k) = 1 + Σ_{1<=j<=k} d[j] = F(k) + (1 - d[0]) + d[k]/2: it starts at
    1, drops d[0], and puts each pixel's mass at its centre, half a pixel later; between pixel centres,
    G - F - (1 - d[0]) = g stays within [0, max d / 2]. Sample i of the op sits where G = i·G(len-1)/out, which F
    reads as that minus (1 - d[0]) + g; fgviz's sample i sits where F = d[0]/2 + i·(out - d[0]/2 - d[-1]/2)/(out - 1).
    The difference, A_i - g with A_i linear in i from A_0 = d[0]/2 - 1 to A_last = d[-1]/2 - 1 + (d[0] - 1)/out,
    is at most max|A| + max d / 2 in mass, times (out - 1)/(out - d[0]/2 - d[-1]/2) samples of the default grid per
    unit of mass. So the gap grows with the grid's peak density: about 1 + max d / 2 samples.
    """
    a0, a_last = d[0] / 2 - 1, d[-1] / 2 - 1 + (d[0] - 1) / out
    return (max(abs(a0), abs(a_last)) + d.max() / 2) * (out - 1) / (out - d[0] / 2 - d[-1] / 2)


@pytest.mark.parametrize("iters", [1, 5])
@pytest.mark.parametrize("out", [224, 336, 448])
@pytest.mark.parametrize("name", list(REFERENCE_MAPS))
def test_default_grid_differs_from_the_official_only_by_the_cdf_fixes(name, out, iters):
    att = torch.from_numpy(reference_map(name)).double()[None]  # float64: the bound is about the CDFs, not rounding
    default = S.sampling_coords(att, out, iters=iters)
    official = S.sampling_coords(att, out, iters=iters, variant="mxnet")
    d_row, d_col = S.sampler_densities(att, out, iters=iters)
    for a, b, d in zip(default, official, (d_row, d_col), strict=True):
        apart = samples_apart(a[0].numpy(), b[0].numpy())
        assert apart <= cdf_fix_bound(d[0].numpy(), out) + 1e-9
        assert apart >= 0.5  # the fixes do move the grid
    if att.shape[1] == att.shape[2] and iters == 5:  # coupled axes: one peak density, as the op
        assert d_row.max().item() == pytest.approx(d_col.max().item(), rel=1e-4)


def test_the_gap_to_the_op_grows_with_the_peak_density():
    """The bound's d/2 term is real: on sharp peaks at output 448 the grids are more than 2.5 samples apart (a
    constant bound of 2.5 held only on flatter maps), and the gap follows the peak density."""
    att = torch.from_numpy(reference_map("peaks 384x512")).double()[None]
    gaps = []
    for out in (224, 448):
        (rows, cols), (rows_mx, cols_mx) = (S.sampling_coords(att, out, variant=v) for v in ("tasn", "mxnet"))
        d_row, d_col = S.sampler_densities(att, out)
        gaps.append((samples_apart(cols[0].numpy(), cols_mx[0].numpy()), d_col.max().item()))
    (gap_small, peak_small), (gap_large, peak_large) = gaps
    assert peak_large > 1.9 * peak_small and gap_large > 2.5
    assert gap_large - gap_small == pytest.approx((peak_large - peak_small) / 2, rel=0.15)


@pytest.mark.parametrize("names", [("blobs", "structure", "peaks", "uniform"), ("blobs 384x512", "peaks 384x512")])
def test_mxnet_variant_reproduces_the_ops_batch_buffer(names):
    """The op reads C[-1] at the first sample from its whole-batch buffer: image b >= 1 gets image b - 1's last
    cumulative value, so its first sample lands just after pixel 0 instead of at -1; the default grid ignores the
    batch."""
    atts = [reference_map(n) for n in names]
    batch = torch.from_numpy(np.stack(atts))  # (B, H, W)
    out = 224
    rows, cols = S.sampling_coords(batch, out, variant="mxnet")
    rows64, cols64 = S.sampling_coords(batch.double(), out, variant="mxnet")
    for b, ((r32, c32, _, _), (r64, c64, _, _)) in enumerate(zip(official_batch_grids(atts, out, 4.0, 5),
                                                                 official_batch_grids(atts, out, 4.0, 5, np.float64),
                                                                 strict=True)):
        assert np.abs(rows[b].double().numpy() - r32).max() < 0.01  # input pixels
        assert np.abs(cols[b].double().numpy() - c32).max() < 0.01
        assert np.abs(rows64[b].numpy() - r64).max() < 1e-6 and np.abs(cols64[b].numpy() - c64).max() < 1e-6
        if b == 0:
            assert r64[0] == pytest.approx(-1.0) and c64[0] == pytest.approx(-1.0)
        else:
            assert 0.0 < r64[0] < 0.05 and 0.0 < c64[0] < 0.05  # 1 / (C_prev - 1), C_prev about out + 1
    alone = [S.sampling_coords(torch.from_numpy(a).double()[None], out) for a in atts]
    together = S.sampling_coords(batch.double(), out)
    for b, (r, c) in enumerate(alone):
        torch.testing.assert_close(together[0][b], r[0], rtol=0, atol=1e-9)
        torch.testing.assert_close(together[1][b], c[0], rtol=0, atol=1e-9)


def test_one_threshold_for_both_axes():
    """A map peaked along the columns only: the op clips the rows at the columns' (lower) peak density."""
    H = W = 64
    att = torch.zeros(1, H, W)
    att[0, :, 30:32] = 1.0  # every row has max 1 (flat), two columns are hot
    att[0, 10:14, :] += 0.2  # rows 10..13 slightly more
    d_row, d_col = S.sampler_densities(att, 32, dense=4.0, iters=5)
    # By hand: rows: 60 rows at 1, 4 at 1.2 -> d = 32 * m / 64.8; columns: 2 at 1.2, 62 at 0.2 -> d = 32 * m / 14.8.
    rows_hand = 32 * np.array([1.2 if 10 <= r < 14 else 1.0 for r in range(H)]) / 64.8
    assert rows_hand.max() < 32 * 1.2 / 14.8  # the rows' peak is the lower one: it is the threshold, rows unclipped
    np.testing.assert_allclose(d_row[0].numpy(), rows_hand, rtol=1e-5)
    assert d_col.max().item() == pytest.approx(rows_hand.max(), rel=1e-3)  # columns clipped down to it


def test_delta_attention_follows_the_official_rule():
    # A single hot pixel: the first round caps at tau0, then the clipped mass is spread over every pixel, so the
    # peak ends at tau0 + (out - tau0) / len (the op lets it exceed tau0), which later rounds keep.
    H = W = 80
    out, dense = 40, 4.0
    att = torch.zeros(1, H, W)
    att[0, 33, 47] = 1.0
    d_row, d_col = S.sampler_densities(att, out, dense=dense, iters=5)
    tau0 = dense * out / H
    for d, hot in ((d_row[0], 33), (d_col[0], 47)):
        assert d[hot].item() == pytest.approx(tau0 + (out - tau0) / H, rel=1e-6)
        assert d.sum().item() == pytest.approx(out, rel=1e-6)
        others = torch.cat([d[:hot], d[hot + 1 :]])
        assert torch.allclose(others, torch.full_like(others, (out - tau0) / H))


# ---------------------------------------------------------------- sampler: properties of the default grid


def plain_coords(length: int, out: int) -> torch.Tensor:
    return torch.arange(out, dtype=torch.float64) * (length - 1) / (out - 1)


def density_bound(H: int, W: int, length: int, out: int, dense: float, window: int) -> float:
    """Most output samples that may land in `window` adjacent input pixels of an axis of `length`.

    The first round caps the density at tau0 = dense·out/H; every later round clips both axes at the lower of their
    peaks and adds back at most what the first round took from the other axis, so no pixel ends above
    tau0 + out/min(H, W). Samples are spaced evenly in mass between the first and last pixel centres,
    (out - <= tau) / (out - 1) apart, and a window can catch one extra sample at its edge.
    """
    tau = dense * out / H + out / min(H, W)
    return 1.001 * tau * window * (out - 1) / max(out - tau, 1e-9) + 1


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
    att = torch.full((1, H, W), 0.1)
    att[0, 10:15, 20:30] = 1.0  # a block: rows 10..14 and columns 20..29 magnified
    rows, cols = S.sampling_coords(att, out)
    in_rows = ((rows[0] >= 9.5) & (rows[0] < 14.5)).sum().item()
    in_cols = ((cols[0] >= 19.5) & (cols[0] < 29.5)).sum().item()
    assert in_rows / 5 > 1.5 * out / H and in_cols / 10 > 1.5 * out / W


def test_a_band_is_not_magnified_when_the_other_axis_is_flat():
    """The op's shared threshold: a horizontal band has flat columns (peak density out/W), every round clips the
    rows at that peak, and the rows end uniform too (by hand: round 2 clips every row to 0.5 and redistributes)."""
    H, W, out = 40, 64, 32
    att = torch.zeros(1, H, W)
    att[0, 10:15, :] = 1.0
    rows, cols = S.sampling_coords(att, out)
    assert (cols[0].double() - plain_coords(W, out)).abs().max() < 1e-3
    assert (rows[0].double() - plain_coords(H, out)).abs().max() < 1e-3


def test_peaked_attention_magnifies_up_to_the_cap():
    H, W, out, dense = 128, 96, 64, 4.0
    att = torch.full((1, H, W), 0.01)
    att[0, 50:60, 70:80] = 1.0
    rows, cols = S.sampling_coords(att, out, dense=dense)
    tau0 = dense * out / H  # one cap for both axes (the op's threshold is shared)
    for (coords, length), (a, b) in (((rows[0], H), (50, 60)), ((cols[0], W), (70, 80))):
        count = ((coords >= a - 0.5) & (coords < b - 0.5)).sum().item()
        density = count / (b - a)  # output samples per input pixel in the peak
        assert density > 1.5 * out / length  # well above uniform
        assert count <= density_bound(H, W, length, out, dense, b - a)
        assert density >= 0.9 * tau0  # this peak is strong enough to reach the shared cap


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
    d_row, d_col = S.sampler_densities(att, out, dense=dense)
    assert max(d_row.max().item(), d_col.max().item()) <= (dense * out / H + out / min(H, W)) * (1 + 1e-5)
    for coords, length in ((rows[0], H), (cols[0], W)):
        assert torch.all(coords[1:] >= coords[:-1])
        assert coords.min() >= 0
        assert coords.max() <= length - 1
        for window in (1, 4):
            if window <= length:
                assert window_counts(coords, length, window).max() <= density_bound(H, W, length, out, dense, window)


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


def test_mxnet_grid_samples_the_padding_first():
    """The op's first sample sits at pixel -1: its first output row and column are zero (bilinear, zero padding)."""
    gen = torch.Generator().manual_seed(6)
    image = torch.rand(1, 3, 40, 40, generator=gen) + 0.5
    att = torch.from_numpy(blob_map(40, 40, 2, 7))[None]
    out_mx, (rows, cols) = S.attention_sample(image, att, 20, variant="mxnet")
    assert rows[0, 0].item() == pytest.approx(-1.0, abs=1e-6)
    assert out_mx[0, :, 0, :].abs().max() < 1e-6 and out_mx[0, :, :, 0].abs().max() < 1e-6
    out, _ = S.attention_sample(image, att, 20)
    assert out[0, :, 0, :].min() > 0.4  # the default grid starts on pixel 0


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        S.sampling_coords(torch.rand(1, 8, 8), 4, variant="pytorch")


def test_attention_sample_rejects_mismatched_attention():
    with pytest.raises(ValueError, match="attention"):
        S.attention_sample(torch.rand(1, 3, 20, 30), torch.rand(1, 30, 20), 10)
