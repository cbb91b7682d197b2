"""Localisation and faithfulness metrics, each reported next to its chance value.

Do the methods look at the detail that decides the class? These functions score an explanation against a
deciding-part mask (synthetic data) or a box/keypoints (real data). They are pure numpy functions of arrays and
never see a model class; only `deletion_insertion` calls a model, through a plain `predict_fn`, and
`randomized_copy` (torch, imported lazily) builds the weight-randomised model for the Adebayo et al. sanity check.

Every metric returns a `MetricResult(value, chance)`; the chance value is what a method without information
would score (random tokens, a random map, a random box of the same size), because a score means little without
it (SaCo, Wu et al. CVPR 2024, found perturbation metrics barely separate methods from random attributions).

Conventions: boxes are (x0, y0, x1, y1) pixels with x1/y1 exclusive; masks are (H, W) bool in the pixels of the
model's input (`Preprocess.mask` takes ground truth there, as `explain` takes the image); maps of any resolution are
resized to the mask's size bilinearly (cv2, pixel centres aligned) before use.

References: energy pointing game, Wang et al., "Score-CAM", CVPR-W 2020; deletion/insertion, Petsiuk et al.,
"RISE", BMVC 2018; sanity checks, Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MetricResult:
    """A metric's value and the value a method without information would get."""

    value: float
    chance: float
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """value / chance (how many times better than chance); inf when chance is 0 and value is not."""
        if self.chance == 0:
            return math.inf if self.value > 0 else math.nan
        return self.value / self.chance


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _as_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {m.shape}")
    return m.astype(bool, copy=False)


def _clip_box(box: Sequence[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    H, W = size
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, x1 = min(max(x0, 0), W), min(max(x1, 0), W)
    y0, y1 = min(max(y0, 0), H), min(max(y1, 0), H)
    return x0, y0, max(x1, x0), max(y1, y0)


def box_mask(box: Sequence[float], size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask of a box (x0, y0, x1, y1), x1/y1 exclusive, clipped to the image."""
    x0, y0, x1, y1 = _clip_box(box, size)
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) map resized bilinearly to `size` = (H, W), as float64 (no-op when the size already matches)."""
    s = np.asarray(saliency, np.float64)
    if s.ndim != 2:
        raise ValueError(f"saliency must be (h, w), got {s.shape}")
    if s.shape == tuple(size):
        return s
    return cv2.resize(s, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def cell_boxes(grid: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """(gh * gw, 4) boxes of a (gh, gw) map's cells stretched over the image, row-major."""
    gh, gw = grid
    H, W = image_size
    ys = np.floor(np.arange(gh + 1) * H / gh).astype(np.int64)
    xs = np.floor(np.arange(gw + 1) * W / gw).astype(np.int64)
    r, c = np.divmod(np.arange(gh * gw), gw)
    return np.stack([xs[c], ys[r], xs[c + 1], ys[r + 1]], 1)


def topk_cell_boxes(saliency: np.ndarray, k: int, image_size: tuple[int, int]) -> np.ndarray:
    """(k, 4) boxes of the k highest cells of a (gh, gw) map (ties: first in row-major order)."""
    s = np.asarray(saliency, np.float64)
    order = np.argsort(-s.ravel(), kind="stable")[: min(k, s.size)]
    return cell_boxes(s.shape, image_size)[order]


def _touches(boxes: np.ndarray, integral: np.ndarray) -> np.ndarray:
    """(K,) bool: does each (clipped, exclusive) box contain at least one mask pixel."""
    x0, y0, x1, y1 = boxes.T
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return (total > 0) & (x1 > x0) & (y1 > y0)


def _integral(mask: np.ndarray) -> np.ndarray:
    return cv2.integral(mask.astype(np.uint8), sdepth=cv2.CV_64F)  # (H + 1, W + 1)


# ---------------------------------------------------------------------------------------------------------------
# Token / cell localisation


def part_hit_rate(boxes: np.ndarray, part_mask: np.ndarray, candidates: np.ndarray | None = None) -> MetricResult:
    """Share of selected tokens (or map cells) whose pixel footprint touches the deciding-part mask.

    Args:
        boxes: (K, 4) footprints of the selected tokens (e.g. TransFG's PSM tokens, `token_boxes(...)[idx]`, or
            `topk_cell_boxes(map, k, size)`).
        part_mask: (H, W) bool.
        candidates: (M, 4) footprints the selection was drawn from (all tokens of the grid). Chance is then the
            share of candidates that touch the mask (a random token). Without it, chance is the probability that
            a box of the same width and height at a uniformly random integer position touches the mask.
    """
    mask = _as_mask(part_mask)
    size = mask.shape
    b = np.array([_clip_box(x, size) for x in np.asarray(boxes).reshape(-1, 4)], np.int64).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("part_hit_rate needs at least one box")
    integral = _integral(mask)
    value = float(_touches(b, integral).mean())
    if candidates is not None:
        cand = np.array([_clip_box(x, size) for x in np.asarray(candidates).reshape(-1, 4)], np.int64).reshape(-1, 4)
        chance = float(_touches(cand, integral).mean())
    else:
        chance = float(np.mean([_random_position_hit(mask, integral, x1 - x0, y1 - y0) for x0, y0, x1, y1 in b]))
    return MetricResult(value, chance, {"hits": round(value * len(b)), "k": len(b)})


def _random_position_hit(mask: np.ndarray, integral: np.ndarray, w: int, h: int) -> float:
    """P(a w x h box at a uniform random position inside the image touches the mask)."""
    H, W = mask.shape
    if w <= 0 or h <= 0:
        return 0.0
    ys, xs = np.arange(H - h + 1), np.arange(W - w + 1)
    sums = (
        integral[ys[:, None] + h, xs[None, :] + w]
        - integral[ys[:, None], xs[None, :] + w]
        - integral[ys[:, None] + h, xs[None, :]]
        + integral[ys[:, None], xs[None, :]]
    )  # (H-h+1, W-w+1)
    return float((sums > 0).mean())


# ---------------------------------------------------------------------------------------------------------------
# Maps


def pointing_hit(saliency: np.ndarray, mask: np.ndarray) -> tuple[bool, tuple[int, int]]:
    """Whether a pixel map's maximum lies on the mask, within 1 px (a mask resampled into the model's input may be a
    pixel off), and where the maximum is, (x, y). Chance: the mask's share of the image."""
    m = _as_mask(mask)
    y, x = np.unravel_index(int(np.argmax(saliency)), np.shape(saliency))
    return bool(m[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].any()), (int(x), int(y))


def energy_pointing_game(saliency: np.ndarray, mask: np.ndarray) -> MetricResult:
    """Share of a map's (positive) mass that falls inside the mask (deciding parts, or `box_mask(bbox)`).

    The map is resized bilinearly to the mask's size and negative values are clipped to 0. Chance is the
    mask's share of the image: what a uniform map, or the expectation over random maps, scores. An all-zero map
    carries no information and is scored as uniform.
    """
    m = _as_mask(mask)
    s = np.clip(resize_map(saliency, m.shape), 0.0, None)
    chance = float(m.mean())
    total = float(s.sum())
    if total <= 0:
        return MetricResult(chance, chance, {"uniform": True})
    return MetricResult(float(s[m].sum() / total), chance)


# ---------------------------------------------------------------------------------------------------------------
# Crops (RAMS-Trans)


def crop_area_share(box: Sequence[float], image_size: tuple[int, int]) -> float:
    """Share of the image's area inside the crop box (a recall is only impressive when this is small)."""
    x0, y0, x1, y1 = _clip_box(box, image_size)
    return (x1 - x0) * (y1 - y0) / float(image_size[0] * image_size[1])


def crop_recall(box: Sequence[float], part_mask: np.ndarray) -> MetricResult:
    """Share of deciding-part pixels inside the crop box.

    Chance is the exact expected recall of a box with the same width and height at a uniformly random integer
    position inside the image (close to `crop_area_share`, but exact near the borders).
    """
    m = _as_mask(part_mask)
    H, W = m.shape
    n = int(m.sum())
    if n == 0:
        raise ValueError("crop_recall needs a non-empty part mask")
    x0, y0, x1, y1 = _clip_box(box, (H, W))
    value = float(m[y0:y1, x0:x1].sum() / n)
    w, h = x1 - x0, y1 - y0
    if w == 0 or h == 0:
        return MetricResult(value, 0.0)
    # P(pixel column x is covered) = #{x0 in [0, W - w] : x0 <= x < x0 + w} / (W - w + 1); rows likewise.
    xs, ys = np.arange(W), np.arange(H)
    px = (np.minimum(xs, W - w) - np.maximum(0, xs - w + 1) + 1) / (W - w + 1)
    py = (np.minimum(ys, H - h) - np.maximum(0, ys - h + 1) + 1) / (H - h + 1)
    rr, cc = np.nonzero(m)
    chance = float((py[rr] * px[cc]).mean())
    return MetricResult(value, chance, {"area_share": crop_area_share((x0, y0, x1, y1), (H, W))})


# ---------------------------------------------------------------------------------------------------------------
# Sampling grids (TASN)


def axis_density(coords: np.ndarray, length: int) -> np.ndarray:
    """(length,) output samples per input pixel along one axis of a separable sampling grid.

    `coords` are the (o,) sample positions in input pixels (pixel k centred at k, as `fgviz.core.sampling` returns
    them, non-decreasing). A pixel whose centre lies between samples i and i + 1 gets 1 / (c[i+1] - c[i]);
    pixels outside [c[0], c[-1]] get 0. A uniform grid from 0 to length - 1 gives (o - 1) / (length - 1)
    everywhere.
    """
    c = np.asarray(coords, np.float64).ravel()
    if c.size < 2:
        raise ValueError("a sampling axis needs at least 2 coordinates")
    if np.any(np.diff(c) < 0):
        raise ValueError("sampling coordinates must be non-decreasing")
    centres = np.arange(length, dtype=np.float64)
    i = np.clip(np.searchsorted(c, centres, side="right") - 1, 0, c.size - 2)  # interval [c[i], c[i+1]]
    gap = c[i + 1] - c[i]
    inside = (centres >= c[0]) & (centres <= c[-1]) & (gap > 0)
    return np.where(inside, 1.0 / np.where(gap > 0, gap, 1.0), 0.0)


def magnification(row_coords: np.ndarray, col_coords: np.ndarray, part_mask: np.ndarray) -> MetricResult:
    """How much a separable resampling grid (TASN) magnifies the deciding parts, relative to a uniform resize.

    The 2-D sampling density is density_rows(y) * density_cols(x) (`axis_density`: output pixels per input
    pixel). The value is its mean over the part pixels divided by the density of the uniform grid with the same
    number of samples, ((o_r - 1) / (H - 1)) * ((o_c - 1) / (W - 1)). 1 = no zoom (chance: uniform sampling);
    2 = the parts get twice as many output pixels as a plain resize gives them.
    """
    m = _as_mask(part_mask)
    H, W = m.shape
    if not m.any():
        raise ValueError("magnification needs a non-empty part mask")
    r, c = np.asarray(row_coords).ravel(), np.asarray(col_coords).ravel()
    dr, dc = axis_density(r, H), axis_density(c, W)  # (H,), (W,)
    uniform = ((r.size - 1) / max(H - 1, 1)) * ((c.size - 1) / max(W - 1, 1))
    rr, cc = np.nonzero(m)
    value = float((dr[rr] * dc[cc]).mean() / uniform)
    return MetricResult(value, 1.0, {"uniform_density": uniform})


# ---------------------------------------------------------------------------------------------------------------
# Deletion / insertion (RISE)


@dataclass(frozen=True)
class DeletionInsertion:
    """RISE curves (target probability vs fraction of pixels removed/inserted) and their AUCs.

    Deletion: lower AUC is better. Insertion: higher is better. The `chance` of each AUC (and the `random_*`
    curves) comes from random maps of the saliency's own resolution.
    """

    fractions: np.ndarray  # (steps + 1,) in [0, 1]
    deletion_curve: np.ndarray  # (steps + 1,)
    insertion_curve: np.ndarray  # (steps + 1,)
    random_deletion_curve: np.ndarray  # (steps + 1,) mean over the random maps
    random_insertion_curve: np.ndarray  # (steps + 1,)
    deletion: MetricResult  # AUC, chance = AUC of the random maps
    insertion: MetricResult


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under y(x)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


def _baseline(kind: str | np.ndarray, image: np.ndarray) -> np.ndarray:
    if isinstance(kind, np.ndarray):
        if kind.shape != image.shape:
            raise ValueError(f"baseline {kind.shape} must match the image {image.shape}")
        return kind.astype(np.uint8)
    if kind == "zero":
        return np.zeros_like(image)
    if kind == "mean":
        return np.broadcast_to(image.reshape(-1, 3).mean(0).round().astype(np.uint8), image.shape).copy()
    if kind == "blur":  # RISE: a heavily blurred copy (sigma ~ 1/20 of the image side)
        sigma = max(image.shape[:2]) / 20.0
        return cv2.GaussianBlur(image, (0, 0), sigma)
    raise ValueError(f"unknown baseline {kind!r}; use 'zero', 'mean', 'blur' or an image")


def _curves(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    saliency: np.ndarray,
    target: int,
    counts: np.ndarray,
    deleted: np.ndarray,
    inserted_start: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    H, W = image.shape[:2]
    s = resize_map(saliency, (H, W))
    order = np.argsort(-s.ravel(), kind="stable")  # most salient first
    rank = np.empty(H * W, np.int64)
    rank[order] = np.arange(H * W)
    rank = rank.reshape(H, W)
    batch_del, batch_ins = [], []
    for n in counts:
        m = (rank < n)[:, :, None]  # (H, W, 1): the n most salient pixels
        batch_del.append(np.where(m, deleted, image))
        batch_ins.append(np.where(m, image, inserted_start))
    imgs = np.stack(batch_del + batch_ins)  # (2 * (steps + 1), H, W, 3)
    probs = np.concatenate(
        [np.asarray(predict_fn(imgs[i : i + batch_size]), np.float64) for i in range(0, len(imgs), batch_size)]
    )
    p = probs[:, target]
    return p[: len(counts)], p[len(counts) :]


def deletion_insertion(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    saliency: np.ndarray,
    target: int,
    *,
    steps: int = 16,
    deletion_baseline: str | np.ndarray = "zero",
    insertion_baseline: str | np.ndarray = "blur",
    n_random: int = 1,
    seed: int = 0,
    batch_size: int = 34,
) -> DeletionInsertion:
    """RISE deletion and insertion for any map, with a random-map chance value.

    Pixels are ranked by the map (resized bilinearly to the image); step k replaces the top k/steps of them by
    the deletion baseline (black by default), or re-inserts them into the insertion baseline (a blurred copy).

    Args:
        predict_fn: (B, H, W, 3) uint8 images -> (B, C) probabilities.
        image: (H, W, 3) uint8, the model's input.
        saliency: (h, w) map of any resolution, higher = more important.
        target: the class whose probability is tracked (usually the predicted one).
        steps: number of steps (the curves have steps + 1 points, from 0 to all pixels).
        deletion_baseline, insertion_baseline: "zero", "mean", "blur" or an (H, W, 3) image.
        n_random: random maps (uniform noise at the saliency's resolution) averaged for the chance value.
        seed: seeds the random maps.
        batch_size: images per `predict_fn` call.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    H, W = image.shape[:2]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * H * W).astype(np.int64)
    deleted = _baseline(deletion_baseline, image)
    start = _baseline(insertion_baseline, image)
    d, i = _curves(predict_fn, image, saliency, target, counts, deleted, start, batch_size)
    rng = np.random.default_rng(seed)
    rand = [
        _curves(predict_fn, image, rng.random(np.shape(saliency)), target, counts, deleted, start, batch_size)
        for _ in range(max(n_random, 1))
    ]
    rd = np.mean([r[0] for r in rand], 0)
    ri = np.mean([r[1] for r in rand], 0)
    return DeletionInsertion(
        fractions=fractions,
        deletion_curve=d,
        insertion_curve=i,
        random_deletion_curve=rd,
        random_insertion_curve=ri,
        deletion=MetricResult(auc(fractions, d), auc(fractions, rd)),
        insertion=MetricResult(auc(fractions, i), auc(fractions, ri)),
    )


# ---------------------------------------------------------------------------------------------------------------
# Sanity checks (Adebayo et al.)


def randomized_copy(model: torch.nn.Module, seed: int = 0, modules: Sequence[str] | None = None) -> torch.nn.Module:
    """A deep copy of `model` with its weights re-initialised (model parameter randomisation test).

    Every submodule with `reset_parameters()` is reset (Linear, Conv, norms, ...); any parameter left over
    (timm's cls_token and pos_embed, custom layers) is drawn from N(0, 0.02^2). The original model is not
    touched, and the global torch RNG state is restored afterwards.

    Args:
        model: any `nn.Module`.
        seed: seeds the re-initialisation.
        modules: only randomise submodules whose qualified name starts with one of these prefixes (e.g. the
            last blocks first, for Adebayo's cascading test); None randomises everything.
    """
    import torch

    clone = copy.deepcopy(model)

    def chosen(name: str) -> bool:
        return modules is None or any(name == p or name.startswith(p + ".") for p in modules)

    done: set[int] = set()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for name, mod in clone.named_modules():
            reset = getattr(mod, "reset_parameters", None)
            if callable(reset) and chosen(name):
                reset()
                done.update(id(p) for p in mod.parameters(recurse=False))
        for name, p in clone.named_parameters():
            if id(p) not in done and chosen(name.rsplit(".", 1)[0] if "." in name else name):
                p.normal_(0.0, 0.02)
    return clone


@dataclass(frozen=True)
class SanityCheck:
    """A metric on the trained model and on its weight-randomised copy; a faithful method should drop."""

    trained: Any
    randomized: Any


def weight_randomization_check(
    run: Callable[[torch.nn.Module], Any], model: torch.nn.Module, seed: int = 0
) -> SanityCheck:
    """Rerun any metric (`run(model) -> MetricResult | float | map`) on `randomized_copy(model, seed)`."""
    return SanityCheck(trained=run(model), randomized=run(randomized_copy(model, seed)))


def rank_correlation(map_a: np.ndarray, map_b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (b resized to a's shape): Adebayo's map similarity."""
    from scipy.stats import spearmanr

    a = np.asarray(map_a, np.float64)
    b = resize_map(map_b, a.shape)
    return float(spearmanr(a.ravel(), b.ravel()).statistic)
