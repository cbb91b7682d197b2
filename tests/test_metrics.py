"""Each metric against a value computed by hand on a constructed case, plus its chance value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgviz.core.geometry import token_box, token_boxes
from fgviz.core.metrics import (
    MetricResult,
    auc,
    axis_density,
    box_mask,
    cell_boxes,
    crop_area_share,
    crop_recall,
    deletion_insertion,
    energy_pointing_game,
    magnification,
    part_hit_rate,
    pointing_hit,
    randomized_copy,
    rank_correlation,
    topk_cell_boxes,
    weight_randomization_check,
)


@pytest.fixture
def square_mask() -> np.ndarray:
    m = np.zeros((10, 10), bool)
    m[2:4, 2:4] = True  # a 2x2 part at rows/cols 2..3
    return m


# ---------------------------------------------------------------------------------------------------------------
# part hit rate


def test_part_hit_rate_by_hand(square_mask):
    boxes = np.array([(0, 0, 2, 2), (1, 1, 3, 3), (5, 5, 10, 10)])  # misses (exclusive end), touches (2,2), misses
    quadrants = np.array([(0, 0, 5, 5), (5, 0, 10, 5), (0, 5, 5, 10), (5, 5, 10, 10)])
    r = part_hit_rate(boxes, square_mask, candidates=quadrants)
    assert r.value == pytest.approx(1 / 3)
    assert r.chance == pytest.approx(1 / 4)  # only the top-left quadrant touches
    assert r.ratio == pytest.approx(4 / 3)
    # Without candidates: a random placement of each box. 2x2 box: x0 in 0..8, touches for x0 in {1,2,3} per
    # axis -> (3/9)^2 = 1/9. 5x5 box: x0 in 0..5, touches for x0 in {0..3} -> (4/6)^2 = 4/9. Mean = 2/9.
    r = part_hit_rate(boxes, square_mask)
    assert r.chance == pytest.approx((1 / 9 + 1 / 9 + 4 / 9) / 3)


def test_part_hit_rate_random_chance_matches_enumeration(square_mask):
    rng = np.random.default_rng(0)
    mask = rng.random((9, 13)) > 0.93
    w, h = 3, 2
    hits = [mask[y : y + h, x : x + w].any() for y in range(9 - h + 1) for x in range(13 - w + 1)]
    r = part_hit_rate(np.array([(0, 0, w, h)]), mask)
    assert r.chance == pytest.approx(np.mean(hits))


def test_token_and_cell_boxes():
    boxes = token_boxes((3, 4), 8, 6, (24, 30))
    assert boxes.shape == (12, 4)
    assert [tuple(b) for b in boxes] == [token_box(i, (3, 4), 8, 6, (24, 30)) for i in range(12)]
    cells = cell_boxes((3, 4), (30, 40))
    cover = np.zeros((30, 40), int)
    for x0, y0, x1, y1 in cells:
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()  # cells tile the image exactly once
    s = np.zeros((3, 4))
    s[1, 2], s[2, 0] = 5.0, 3.0
    assert topk_cell_boxes(s, 2, (30, 40)).tolist() == [[20, 10, 30, 20], [0, 20, 10, 30]]


# ---------------------------------------------------------------------------------------------------------------
# energy pointing game


def test_energy_pointing_game_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[0, 1] = True
    s = np.zeros((4, 4))
    s[0, 0], s[0, 1], s[3, 3], s[2, 2] = 3.0, 1.0, 4.0, -5.0  # the negative value is clipped to 0
    r = energy_pointing_game(s, mask)
    assert r.value == pytest.approx(4 / 8)
    assert r.chance == pytest.approx(2 / 16)
    # a box as the region
    r = energy_pointing_game(s, box_mask((0, 0, 2, 1), (4, 4)))
    assert r.value == pytest.approx(0.5)


def test_energy_pointing_game_resizes_and_handles_flat_maps():
    mask = np.zeros((32, 32), bool)
    mask[:8] = True
    assert energy_pointing_game(np.ones((4, 4)), mask).value == pytest.approx(0.25)  # uniform -> mask share
    assert energy_pointing_game(np.zeros((4, 4)), mask).value == pytest.approx(0.25)  # no information
    top = np.zeros((4, 4))
    top[0] = 1.0
    r = energy_pointing_game(top, mask)  # a 2x upsampled top row: most mass inside the top 8 rows
    assert r.value > 0.8
    assert r.chance == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------------------------
# crops


def test_crop_recall_and_area_by_hand():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    r = crop_recall((1, 1, 3, 3), mask)
    assert r.value == pytest.approx(0.5)
    # 2x2 box at a random position: P(col 0 covered) = 1/3, P(col 1) = 2/3 (same for rows).
    # chance = mean(1/3 * 1/3, 2/3 * 2/3) = 5/18
    assert r.chance == pytest.approx(5 / 18)
    assert crop_area_share((1, 1, 3, 3), (4, 4)) == pytest.approx(0.25)
    assert r.extras["area_share"] == pytest.approx(0.25)


def test_crop_recall_chance_matches_enumeration():
    rng = np.random.default_rng(1)
    mask = rng.random((12, 17)) > 0.8
    w, h = 5, 4
    recalls = [mask[y : y + h, x : x + w].sum() / mask.sum() for y in range(12 - h + 1) for x in range(17 - w + 1)]
    r = crop_recall((3, 2, 3 + w, 2 + h), mask)
    assert r.chance == pytest.approx(np.mean(recalls))


def test_crop_box_is_clipped_to_image():
    mask = np.ones((4, 4), bool)
    assert crop_recall((-5, -5, 10, 10), mask).value == pytest.approx(1.0)
    assert crop_area_share((-5, -5, 10, 10), (4, 4)) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------
# magnification


def test_axis_density_by_hand():
    # samples at 0, .5, 1, 2, 4 over 5 pixels: pixel 0 lies in [0, .5) -> 2; pixel 1 in [1, 2) -> 1;
    # pixels 2, 3 and 4 in [2, 4] -> 0.5
    assert axis_density(np.array([0, 0.5, 1, 2, 4]), 5).tolist() == [2.0, 1.0, 0.5, 0.5, 0.5]
    assert axis_density(np.linspace(0, 9, 4), 10) == pytest.approx(np.full(10, 3 / 9))
    assert axis_density(np.array([2.0, 3.0]), 6).tolist() == [0, 0, 1, 1, 0, 0]  # outside the grid: 0
    with pytest.raises(ValueError, match="non-decreasing"):
        axis_density(np.array([1.0, 0.0]), 3)


def test_magnification_by_hand():
    mask = np.zeros((5, 5), bool)
    mask[0, 2] = True
    rows, cols = np.array([0, 0.5, 1, 2, 4]), np.arange(5.0)
    r = magnification(rows, cols, mask)
    assert r.value == pytest.approx(2.0)  # row density 2, column density 1, uniform density 1
    assert r.chance == 1.0
    mask[4, 4] = True
    assert magnification(rows, cols, mask).value == pytest.approx((2.0 + 0.5) / 2)


def test_uniform_grid_is_no_magnification():
    rng = np.random.default_rng(2)
    mask = rng.random((128, 96)) > 0.9
    r = magnification(np.linspace(0, 127, 64), np.linspace(0, 95, 64), mask)
    assert r.value == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------
# deletion / insertion


def _left_half_model(images: np.ndarray) -> np.ndarray:
    """p(class 0) = mean red of the left half: deleting those pixels is what matters."""
    W = images.shape[2]
    p = images[:, :, : W // 2, 0].astype(np.float64).mean(axis=(1, 2)) / 255.0
    return np.stack([p, 1 - p], 1)


def test_deletion_insertion_by_hand():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2] = 255
    saliency = np.zeros((4, 4))
    saliency[:, :2] = 1.0
    r = deletion_insertion(_left_half_model, image, saliency, 0, steps=4, insertion_baseline="zero")
    assert r.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    # the 8 salient pixels go first, 4 per step: p = 1, .5, 0, 0, 0
    assert r.deletion_curve.tolist() == pytest.approx([1, 0.5, 0, 0, 0])
    assert r.insertion_curve.tolist() == pytest.approx([0, 0.5, 1, 1, 1])
    assert r.deletion.value == pytest.approx(0.25)  # trapezoids: .1875 + .0625
    assert r.insertion.value == pytest.approx(0.75)
    assert auc([0, 1], [1, 1]) == pytest.approx(1.0)


def test_deletion_random_map_is_chance():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, :16] = 255
    saliency = np.zeros((32, 32))
    saliency[:, :16] = 1.0
    r = deletion_insertion(_left_half_model, image, saliency, 0, steps=16, insertion_baseline="zero", n_random=2)
    # random order removes the left half's pixels at the overall rate: p ~ 1 - f, AUC ~ 0.5
    assert r.deletion.chance == pytest.approx(0.5, abs=0.03)
    assert r.insertion.chance == pytest.approx(0.5, abs=0.03)
    assert r.deletion.value == pytest.approx(0.25, abs=0.01)
    assert r.deletion.value < r.deletion.chance < r.insertion.value


def test_deletion_insertion_baselines_and_validation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    calls = []

    def predict(b: np.ndarray) -> np.ndarray:
        calls.append(b.shape)
        return np.full((len(b), 3), 1 / 3)

    r = deletion_insertion(predict, image, rng.random((5, 6)), 2, steps=5, deletion_baseline="mean", batch_size=4)
    assert r.deletion_curve.shape == (6,)
    assert r.deletion.value == pytest.approx(1 / 3)
    assert all(s[0] <= 4 and s[1:] == (20, 24, 3) for s in calls)
    with pytest.raises(ValueError, match="uint8"):
        deletion_insertion(predict, image.astype(np.float32), rng.random((5, 6)), 0)


# ---------------------------------------------------------------------------------------------------------------
# sanity checks


class _Custom(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token = torch.nn.Parameter(torch.zeros(1, 4))
        self.fc = torch.nn.Linear(4, 3)
        self.norm = torch.nn.LayerNorm(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x + self.token))


def test_randomized_copy_reinitialises_every_parameter():
    torch.manual_seed(0)
    model = _Custom()
    with torch.no_grad():
        model.norm.weight.fill_(3.0)  # "trained" values that reset_parameters must undo
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.get_rng_state()
    clone = randomized_copy(model, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original untouched
    new = clone.state_dict()
    for k in ("token", "fc.weight", "fc.bias"):
        assert not torch.equal(new[k], before[k]), k
    assert torch.equal(new["norm.weight"], torch.ones(3))  # LayerNorm reset to its init
    again = randomized_copy(model, seed=1).state_dict()
    assert all(torch.equal(again[k], new[k]) for k in new)  # deterministic in the seed


def test_randomized_copy_partial_and_timm_vit():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=3)
    clone = randomized_copy(model, seed=0, modules=["blocks.1"])
    a, b = model.state_dict(), clone.state_dict()
    assert torch.equal(a["blocks.0.attn.qkv.weight"], b["blocks.0.attn.qkv.weight"])
    assert not torch.equal(a["blocks.1.attn.qkv.weight"], b["blocks.1.attn.qkv.weight"])
    full = randomized_copy(model, seed=0).state_dict()
    for k in ("cls_token", "pos_embed", "patch_embed.proj.weight", "head.weight"):
        assert not torch.equal(a[k], full[k]), k


def test_weight_randomization_check_and_rank_correlation():
    model = _Custom()
    x = torch.ones(1, 4)
    check = weight_randomization_check(lambda m: m(x).detach().numpy(), model, seed=3)
    assert check.trained.shape == check.randomized.shape == (1, 3)
    assert not np.allclose(check.trained, check.randomized)
    m = np.arange(16.0).reshape(4, 4)
    assert rank_correlation(m, m) == pytest.approx(1.0)
    assert rank_correlation(m, -m) == pytest.approx(-1.0)
    assert rank_correlation(np.kron(m, np.ones((2, 2))), m) == pytest.approx(1.0, abs=0.05)


def test_metric_result_ratio():
    assert MetricResult(0.5, 0.25).ratio == 2.0
    assert MetricResult(0.5, 0.0).ratio == float("inf")
    assert np.isnan(MetricResult(0.0, 0.0).ratio)


def test_pointing_hit_against_a_loop_over_the_neighbourhood() -> None:
    rng = np.random.default_rng(11)
    for _ in range(50):
        sal = rng.random((9, 13))
        mask = rng.random((9, 13)) > 0.9
        hit, (x, y) = pointing_hit(sal, mask)
        yy, xx = divmod(int(np.argmax(sal)), 13)  # row-major: the first maximum
        near = any(mask[r, c] for r in range(9) for c in range(13) if abs(r - yy) <= 1 and abs(c - xx) <= 1)
        assert (hit, x, y) == (near, xx, yy)
