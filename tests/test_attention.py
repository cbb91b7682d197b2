"""fgviz.core.attention against naive float64 re-statements of the formulas (full N x N products, loops, fills)."""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.overrides import TorchFunctionMode

from fgviz.core import attention as A

# ---------------------------------------------------------------- helpers

# Smallest relative margin allowed at each decision a reference makes (an argmax, the discard cut-off, the DPPM
# threshold). The code decides in float32, on whatever kernel the machine picks; its values agree with the float64
# references to about 1e-6 relative, so a margin of 1e-4 makes both decide alike on every machine, by construction.
DECISIVE = 1e-4


def decisive_argmax(rows: np.ndarray) -> np.ndarray:
    """argmax over the last axis, after checking that the largest value beats the second by DECISIVE."""
    top = np.sort(rows, axis=-1)[..., -2:]
    gap = (top[..., 1] - top[..., 0]) / np.abs(top[..., 1])
    assert gap.min() > DECISIVE, f"near-tie at an argmax ({gap.min():.1e}): the test input is not decisive"
    return rows.argmax(-1)


def decisive_cut(values: np.ndarray, k: int) -> None:
    """Check that the k smallest of `values` are apart from the rest by DECISIVE (the discard cut-off)."""
    if 0 < k < values.size:
        s = np.sort(values)
        assert s[k] - s[k - 1] > DECISIVE * s[k], "near-tie at the discard cut-off: the test input is not decisive"


def decisive_threshold(values: np.ndarray, threshold: float) -> None:
    """Check that no value lies within DECISIVE (relative) of the threshold it is compared with."""
    assert np.abs(values - threshold).min() > DECISIVE * abs(threshold), "a value sits on the threshold"


def rand_attn(seed: int, L: int, B: int, H: int, N: int, sharpness: float = 1.0) -> list[torch.Tensor]:
    """L post-softmax float32 tensors (B, H, N, N) from seeded random logits."""
    gen = torch.Generator().manual_seed(seed)
    return [(sharpness * torch.randn(B, H, N, N, generator=gen)).softmax(dim=-1) for _ in range(L)]


def fuse_np(a: np.ndarray, fusion: str) -> np.ndarray:
    return {"mean": np.mean, "max": np.max, "min": np.min}[fusion](a, axis=0)


def ref_rollout(atts, fusion: str, ratio: float, p: int) -> np.ndarray:
    """Abnar & Zuidema with full matrix products, per image, in float64."""
    As = [a.double().numpy() for a in atts]
    B, _, N, _ = As[0].shape
    out = np.zeros((B, len(As), N - p))
    for b in range(B):
        joint = np.eye(N)
        for l, a in enumerate(As):
            f = fuse_np(a[b], fusion)
            block = f[p:, p:].copy().ravel()
            k = math.floor(ratio * block.size)
            decisive_cut(block, k)
            block[np.argsort(block, kind="stable")[:k]] = 0.0
            f = f.copy()
            f[p:, p:] = block.reshape(N - p, N - p)
            ah = 0.5 * f + 0.5 * np.eye(N)
            ah = ah / ah.sum(axis=1, keepdims=True)
            joint = ah @ joint
            out[b, l] = joint[0, p:]
    return out


def ref_psm(atts) -> tuple[np.ndarray, np.ndarray]:
    """TransFG: P = A_L ··· A_1 per image and head as a full matrix, CLS row, argmax + 1."""
    As = [a.double().numpy() for a in atts]
    B, H, N, _ = As[0].shape
    rows = np.zeros((B, H, N - 1))
    for b in range(B):
        for h in range(H):
            P = As[0][b, h]
            for a in As[1:]:
                P = a[b, h] @ P
            rows[b, h] = P[0, 1:]
    return decisive_argmax(rows) + 1, rows


def flood_fill_largest(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Largest 8-connected component by BFS; components numbered in raster order of their first pixel."""
    gh, gw = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    best: list[tuple[int, int]] = []
    for r in range(gh):
        for c in range(gw):
            if not mask[r, c] or seen[r, c]:
                continue
            comp, queue = [], deque([(r, c)])
            seen[r, c] = True
            while queue:
                y, x = queue.popleft()
                comp.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < gh and 0 <= nx < gw and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            if len(comp) > len(best):  # strict: the first one wins ties
                best = comp
    out = np.zeros_like(mask, dtype=bool)
    if not best:
        return out, (0, 0, gh, gw)
    ys, xs = zip(*best, strict=True)
    out[list(ys), list(xs)] = True
    return out, (min(ys), min(xs), max(ys) + 1, max(xs) + 1)


def ref_dppm(atts, grid, alpha: float, p: int):
    """RAMS-Trans DPPM: full J = G_L ··· G_1, mean over all rows, threshold, flood fill."""
    As = [a.double().numpy() for a in atts]
    B, _, N, _ = As[0].shape
    gs, masks, boxes = [], [], []
    for b in range(B):
        J = np.eye(N)
        for a in As:
            G = a[b].mean(axis=0) + np.eye(N)
            G = G / G.sum(axis=1, keepdims=True)
            J = G @ J
        g = J.mean(axis=0)[p:]
        g = g / g.max()
        decisive_threshold(g, alpha * g.mean())
        mask = (g > alpha * g.mean()).reshape(grid)
        gs.append(g)
        masks.append(mask)
        boxes.append(flood_fill_largest(mask)[1])
    return np.stack(gs), np.stack(masks), np.array(boxes)


class MatmulRecorder(TorchFunctionMode):
    """Records the shapes of the left operand of every matrix product."""

    def __init__(self):
        super().__init__()
        self.left_shapes: list[tuple[int, ...]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm):
            self.left_shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- rollout


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("p", [1, 2])
def test_rollout_matches_full_products(fusion, ratio, p):
    atts = rand_attn(seed=1, L=4, B=2, H=3, N=18, sharpness=2.0)
    got = A.rollout(atts, head_fusion=fusion, discard_ratio=ratio, num_prefix_tokens=p)
    assert got.shape == (2, 4, 18 - p)
    np.testing.assert_allclose(got.numpy(), ref_rollout(atts, fusion, ratio, p), rtol=1e-5, atol=1e-7)


def test_rollout_hand_computed_two_layers():
    # Uniform 3-token attention: Â = 0.5/3 + 0.5 I, row 0 = [2/3, 1/6, 1/6];
    # through two layers row 0 = [2/3, 1/6, 1/6] Â = [1/2, 1/4, 1/4].
    uniform = torch.full((1, 1, 3, 3), 1.0 / 3)
    got = A.rollout([uniform, uniform])
    torch.testing.assert_close(got, torch.tensor([[[1 / 6, 1 / 6], [1 / 4, 1 / 4]]]))


def test_rollout_identity_attention_gives_zero_patch_mass():
    eye = torch.eye(6).expand(2, 4, 6, 6)
    assert torch.equal(A.rollout([eye] * 3), torch.zeros(2, 3, 5))


def test_rollout_full_row_sums_to_one_without_discard():
    atts = rand_attn(seed=2, L=3, B=1, H=2, N=10)
    got = A.rollout(atts, head_fusion="mean")  # patch columns only: CLS column is missing
    ref = ref_rollout(atts, "mean", 0.0, 1)
    assert np.all(got.sum(-1).numpy() < 1.0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_rollout_discard_never_touches_prefix_rows():
    # With one layer the rollout row is row 0 of Â: a prefix row, so no discard ratio may change it.
    atts = rand_attn(seed=3, L=1, B=2, H=2, N=12)
    for ratio in (0.5, 0.99):
        torch.testing.assert_close(A.rollout(atts, discard_ratio=ratio), A.rollout(atts))
    # With two layers it does change (the patch block feeds the product).
    atts = rand_attn(seed=3, L=2, B=2, H=2, N=12)
    assert not torch.allclose(A.rollout(atts, discard_ratio=0.5), A.rollout(atts))


def test_rollout_discard_is_per_image():
    atts = rand_attn(seed=4, L=3, B=3, H=2, N=14, sharpness=3.0)
    batched = A.rollout(atts, head_fusion="max", discard_ratio=0.6)
    for b in range(3):
        single = A.rollout([a[b : b + 1] for a in atts], head_fusion="max", discard_ratio=0.6)
        torch.testing.assert_close(batched[b : b + 1], single)


def test_rollout_from_fused_equals_rollout_and_does_not_mutate():
    atts = rand_attn(seed=5, L=3, B=2, H=4, N=11)
    fused = [A.fuse_heads(a, "min") for a in atts]
    before = [f.clone() for f in fused]
    got = A.rollout_from_fused(fused, discard_ratio=0.5)
    torch.testing.assert_close(got, A.rollout(atts, head_fusion="min", discard_ratio=0.5))
    for f, g in zip(fused, before, strict=True):
        assert torch.equal(f, g)


def test_rollout_uses_only_row_vector_products():
    L, N = 6, 40
    atts = rand_attn(seed=6, L=L, B=1, H=2, N=N)
    with MatmulRecorder() as rec:
        A.rollout(atts)
        A.psm_rows(atts)
        A.dppm_vector(atts)
    assert rec.left_shapes, "no matrix product recorded"
    assert all(s[-2] <= L for s in rec.left_shapes), rec.left_shapes  # at most L rows, never N


def test_fuse_heads_and_rollout_reject_bad_arguments():
    atts = rand_attn(seed=7, L=2, B=1, H=2, N=5)
    with pytest.raises(ValueError, match="head_fusion"):
        A.fuse_heads(atts[0], "median")
    with pytest.raises(ValueError, match="discard_ratio"):
        A.rollout(atts, discard_ratio=1.0)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        A.rollout(atts, num_prefix_tokens=0)


# ---------------------------------------------------------------- TransFG PSM


def test_psm_matches_full_per_head_product():
    atts = rand_attn(seed=8, L=5, B=2, H=4, N=30, sharpness=3.0)
    idx, rows = ref_psm(atts)
    got_rows = A.psm_rows(atts)
    assert got_rows.shape == (2, 4, 29)
    np.testing.assert_allclose(got_rows.numpy(), rows, rtol=1e-5, atol=1e-8)
    got_idx = A.psm_select(atts)
    assert got_idx.dtype == torch.int64
    np.testing.assert_array_equal(got_idx.numpy(), idx)
    torch.testing.assert_close(got_idx, A.psm_rows(atts).argmax(-1) + 1)


def test_psm_product_order_and_offset():
    # A2's CLS row points at token 3, A1's row 3 points at token 7: A2·A1 selects 7, the reversed order selects 3.
    N = 10
    a1 = torch.full((1, 1, N, N), 1.0 / N)
    a1[0, 0, 3] = torch.nn.functional.one_hot(torch.tensor(7), N).float()
    a2 = torch.full((1, 1, N, N), 1.0 / N)
    a2[0, 0, 0] = torch.nn.functional.one_hot(torch.tensor(3), N).float()
    assert A.psm_select([a1, a2]).tolist() == [[7]]
    assert A.psm_select([a2, a1]).tolist() == [[3]]


def test_psm_keeps_duplicates():
    a = rand_attn(seed=9, L=2, B=1, H=1, N=9)
    same_heads = [x.expand(1, 5, 9, 9) for x in a]
    idx = A.psm_select(same_heads)
    assert idx.shape == (1, 5)
    assert len(set(idx[0].tolist())) == 1


@pytest.mark.slow
def test_psm_select_speed_at_transfg_size():
    gen = torch.Generator().manual_seed(0)
    stack = torch.rand(11, 1, 12, 1370, 1370, generator=gen)  # ~1 GB
    stack.div_(stack.sum(dim=-1, keepdim=True))
    atts = list(stack.unbind(0))
    A.psm_select(atts)  # warm-up
    start = time.perf_counter()
    idx = A.psm_select(atts)
    elapsed = time.perf_counter() - start
    assert idx.shape == (1, 12)
    assert elapsed < 1.5, f"psm_select took {elapsed:.2f} s"


# ---------------------------------------------------------------- RAMS-Trans DPPM


@pytest.mark.parametrize(("grid", "p", "seed"), [((4, 4), 1, 10), ((3, 5), 2, 11), ((6, 4), 2, 12), ((5, 7), 1, 13)])
def test_dppm_matches_naive(grid, p, seed):
    N = p + grid[0] * grid[1]
    atts = rand_attn(seed=seed, L=4, B=3, H=3, N=N, sharpness=4.0)
    g_ref, mask_ref, boxes_ref = ref_dppm(atts, grid, 1.2, p)
    np.testing.assert_allclose(A.dppm_vector(atts, num_prefix_tokens=p).numpy(), g_ref, rtol=1e-5)
    mask, boxes = A.dppm(atts, grid, alpha=1.2, num_prefix_tokens=p)
    assert mask.shape == (3, *grid)
    assert mask.dtype == torch.bool
    assert boxes.shape == (3, 4)
    assert boxes.dtype == torch.int64
    np.testing.assert_array_equal(mask.numpy(), mask_ref)
    np.testing.assert_array_equal(boxes.numpy(), boxes_ref)


def test_dppm_vector_from_fused_matches():
    atts = rand_attn(seed=14, L=3, B=2, H=2, N=11)
    fused = [A.fuse_heads(a, "mean") for a in atts]
    torch.testing.assert_close(
        A.dppm_vector_from_fused(fused, num_prefix_tokens=2), A.dppm_vector(atts, num_prefix_tokens=2)
    )


def test_dppm_constant_vector_gives_empty_mask_and_whole_grid():
    uniform = torch.full((2, 2, 13, 13), 1.0 / 13)  # every token equal: nothing above 1.2 x mean
    mask, boxes = A.dppm([uniform] * 2, (3, 4))
    assert not mask.any()
    assert boxes.tolist() == [[0, 0, 3, 4]] * 2


def test_dppm_mask_rejects_wrong_grid():
    with pytest.raises(ValueError, match="grid"):
        A.dppm_mask(torch.rand(1, 10), (3, 3))


def test_largest_component_ties_go_to_first_in_raster_order():
    m = torch.zeros(1, 5, 6, dtype=torch.bool)
    m[0, 3:5, 0:2] = True  # 4 pixels, lower left
    m[0, 0:2, 4:6] = True  # 4 pixels, upper right: first in raster order
    comp, boxes = A.largest_component_box(m)
    assert boxes.tolist() == [[0, 4, 2, 6]]
    assert comp.sum().item() == 4
    assert comp[0, 0, 4]


def test_largest_component_uses_8_connectivity():
    m = torch.zeros(1, 4, 5, dtype=torch.bool)
    m[0, [0, 1, 2], [0, 1, 2]] = True  # a diagonal: one component with 8-connectivity, three with 4
    m[0, 0, 4] = m[0, 1, 4] = True  # a separate 2-pixel vertical bar, first in raster order among 4-components
    comp, boxes = A.largest_component_box(m)
    assert boxes.tolist() == [[0, 0, 3, 3]]
    assert comp.sum().item() == 3


def test_largest_component_empty_mask():
    comp, boxes = A.largest_component_box(torch.zeros(2, 3, 5, dtype=torch.bool))
    assert not comp.any()
    assert boxes.tolist() == [[0, 0, 3, 5]] * 2


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 7), st.integers(1, 7))))
def test_largest_component_matches_flood_fill(mask):
    comp, boxes = A.largest_component_box(torch.from_numpy(mask)[None])
    ref_comp, ref_box = flood_fill_largest(mask)
    np.testing.assert_array_equal(comp[0].numpy(), ref_comp)
    assert tuple(boxes[0].tolist()) == ref_box


# ---------------------------------------------------------------- q/k fast paths


def rand_qk(seed: int, L: int, B: int, H: int, N: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    qs = [torch.randn(B, H, N, d, generator=gen) * d**-0.5 * 2.0 for _ in range(L)]
    ks = [torch.randn(B, H, N, d, generator=gen) for _ in range(L)]
    return qs, ks


def test_attention_from_qk_is_softmax_of_scores():
    qs, ks = rand_qk(seed=20, L=1, B=2, H=3, N=13, d=8)
    q, k = qs[0].double().numpy(), ks[0].double().numpy()
    s = q @ k.swapaxes(-1, -2)
    ref = np.exp(s - s.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(A.attention_from_qk(qs[0], ks[0]).numpy(), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("block_rows", [1, 5, 256])
def test_fused_attention_qk(fusion, block_rows):
    qs, ks = rand_qk(seed=21, L=1, B=2, H=3, N=17, d=8)
    ref = A.fuse_heads(A.attention_from_qk(qs[0], ks[0]), fusion)
    torch.testing.assert_close(
        A.fused_attention_qk(qs[0], ks[0], fusion, block_rows=block_rows), ref, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("block_rows", [1, 4, 256])
def test_psm_select_qk_matches_reference(block_rows):
    qs, ks = rand_qk(seed=22, L=4, B=2, H=3, N=21, d=8)
    atts = [A.attention_from_qk(q, k) for q, k in zip(qs, ks, strict=True)]
    idx, rows = A.psm_select_qk(qs, ks, block_rows=block_rows)
    ref_idx, ref_rows = ref_psm(atts)
    np.testing.assert_allclose(rows.numpy(), ref_rows, atol=1e-5)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)


@pytest.mark.parametrize(("psm_layers", "block_rows"), [(None, 7), (3, 5), (1, 256)])
def test_psm_and_fused_qk_matches_reference(psm_layers, block_rows):
    L = 4
    qs, ks = rand_qk(seed=23, L=L, B=2, H=3, N=19, d=8)
    atts = [A.attention_from_qk(q, k) for q, k in zip(qs, ks, strict=True)]
    idx, rows, fused = A.psm_and_fused_qk(qs, ks, head_fusion="max", psm_layers=psm_layers, block_rows=block_rows)
    ref_idx, ref_rows = ref_psm(atts[: psm_layers or L])
    np.testing.assert_allclose(rows.numpy(), ref_rows, atol=1e-5)
    np.testing.assert_array_equal(idx.numpy(), ref_idx)
    assert len(fused) == L
    for f, a in zip(fused, atts, strict=True):
        torch.testing.assert_close(f, A.fuse_heads(a, "max"), atol=1e-6, rtol=1e-5)


def test_qk_paths_accept_half_precision():
    qs, ks = rand_qk(seed=24, L=3, B=1, H=2, N=15, d=8)
    qh, kh = [q.half() for q in qs], [k.half() for k in ks]
    idx, rows = A.psm_select_qk(qh, kh, block_rows=4)
    atts = [A.attention_from_qk(q, k) for q, k in zip(qh, kh, strict=True)]  # upcast to float32 inside
    assert rows.dtype == atts[0].dtype == torch.float32
    torch.testing.assert_close(rows, A.psm_rows(atts), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(idx, A.psm_select(atts))


# ---------------------------------------------------------------- per-head statistics (the Layers tab's)


def naive_entropy(row: list[float]) -> float:
    """-sum p log p of a row renormalised to sum 1, in float64 with 0 log 0 = 0."""
    total = math.fsum(row)
    if total == 0:
        return 0.0
    return -math.fsum(p / total * math.log(p / total) for p in row if p > 0)


def naive_distance(row: list[float], query: int, grid: tuple[int, int], patch: int, stride: int) -> float:
    """sum_j a_j * |centre(query) - centre(j)| / sum_j a_j, footprint centres worked out per token."""
    gw = grid[1]

    def centre(t: int) -> tuple[float, float]:
        r, c = divmod(t, gw)
        return r * stride + (patch - 1) / 2, c * stride + (patch - 1) / 2

    total = math.fsum(row)
    if total == 0:
        return 0.0
    (qy, qx) = centre(query)
    return math.fsum(a * math.hypot(qy - y, qx - x) for a, (y, x) in zip(row, map(centre, range(len(row))),
                                                                           strict=True)) / total


def test_attention_entropy_against_a_float64_loop():
    gen = torch.Generator().manual_seed(30)
    rows = torch.rand(3, 4, 17, generator=gen) ** 4
    rows[0, 0, :5] = 0.0  # exact zeros: 0 log 0 = 0
    rows[1, 2] = 0.0  # an empty row: 0
    rows[2] *= 0.3  # unnormalised rows are renormalised
    got = A.attention_entropy(rows)
    assert got.shape == (3, 4)
    ref = np.array([[naive_entropy(r.double().tolist()) for r in block] for block in rows])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert A.attention_entropy(torch.full((1, 9), 1 / 9)).item() == pytest.approx(math.log(9), rel=1e-6)


@pytest.mark.parametrize(("grid", "patch", "stride"), [((3, 4), 16, 16), ((4, 3), 16, 12), ((2, 5), 5, 3)])
def test_attention_distance_against_a_float64_loop(grid, patch, stride):
    n = grid[0] * grid[1]
    gen = torch.Generator().manual_seed(31)
    attn = torch.rand(2, n, n, generator=gen) ** 3  # (heads, queries, keys): patch queries over patch keys
    attn[0, 1] = 0.0
    queries = [0, n // 2, n - 1]
    dist = A.token_distances(grid, patch, stride)
    got = A.attention_distance(attn[:, queries], dist[queries])  # (2, 3)
    ref = np.array([[naive_distance(attn[h, q].double().tolist(), q, grid, patch, stride) for q in queries]
                    for h in range(2)])
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_attention_distance_closed_forms():
    # 1 x 2 grid at stride 12: each query attends fully to the other token -> 12 px; to itself -> 0.
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    dist = A.token_distances((1, 2), 16, 12)
    np.testing.assert_allclose(A.attention_distance(swap, dist).numpy(), [12.0, 12.0])
    np.testing.assert_allclose(A.attention_distance(torch.eye(2), dist).numpy(), [0.0, 0.0])
    # Uniform attention on a 2x2 grid at stride 10: every query sees 0, 10, 10, 10·sqrt(2).
    uni = torch.full((4, 4), 0.25)
    np.testing.assert_allclose(A.attention_distance(uni, A.token_distances((2, 2), 16, 10)).numpy(),
                               (20 + 10 * math.sqrt(2)) / 4, rtol=1e-6)
    c = A.token_centers((2, 3), 16, 12)
    np.testing.assert_allclose(c[0], [7.5, 7.5])
    np.testing.assert_allclose(c[5], [19.5, 31.5])


def test_psm_rows_are_the_same_whichever_function_computes_them() -> None:
    """A TransFG explaining after another model of the same weights (fused matrices memoised) selects its tokens with
    `psm_select_qk`, alone with `psm_and_fused_qk`: the two must take the same rows, bit for bit, so the tokens do not
    depend on the order the columns ran in."""
    g = torch.Generator().manual_seed(5)
    qs = [torch.randn(1, 3, 70, 8, generator=g) for _ in range(4)]
    ks = [torch.randn(1, 3, 70, 8, generator=g) for _ in range(4)]
    idx_a, rows_a = A.psm_select_qk(qs, ks)
    idx_b, rows_b, _ = A.psm_and_fused_qk(qs, ks)
    assert torch.equal(rows_a, rows_b) and torch.equal(idx_a, idx_b)
