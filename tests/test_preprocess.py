"""fgviz.core.preprocess: the one path from a ground-truth mask in the source image to the model's input pixels."""

from __future__ import annotations

import numpy as np
import pytest

from fgviz.core.preprocess import Preprocess
from fgviz.data import synthetic
from fgviz.methods import METHODS
from fgviz.training import evaluate
from tests.conftest import make_tiny


def pil_bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PIL's BILINEAR resize along one axis, written out: a triangle filter centred on each
    output pixel's centre mapped to the input, (x + 0.5) * n_in / n_out, widened by the reduction factor when
    shrinking (antialiasing), weights renormalised where the filter runs off the image."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    w = np.zeros((n_out, n_in))
    for x in range(n_out):
        centre = (x + 0.5) * scale
        for j in range(n_in):
            w[x, j] = max(0.0, 1.0 - abs(j + 0.5 - centre) / support)
        w[x] /= w[x].sum()
    return w


def naive_mask_to_input(mask: np.ndarray, img_size: tuple[int, int], crop_pct: float) -> np.ndarray:
    """The mask resized to img_size / crop_pct (float64, separable) then centre-cropped to img_size: the fraction of
    "in" at every input pixel."""
    H, W = img_size
    rh, rw = round(H / crop_pct), round(W / crop_pct)
    m = mask.astype(np.float64)
    resized = pil_bilinear_weights(m.shape[0], rh) @ m @ pil_bilinear_weights(m.shape[1], rw).T  # (rh, rw)
    top, left = (rh - H) // 2, (rw - W) // 2
    return resized[top : top + H, left : left + W]


def rectangle_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros(size, bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize(("source", "img_size", "crop_pct"), [((96, 96), (96, 96), 0.75), ((60, 80), (48, 64), 0.8),
                                                              ((300, 260), (96, 80), 448 / 600),
                                                              ((96, 96), (96, 96), 1.0)])
def test_mask_follows_the_image_through_resize_and_centre_crop(source, img_size, crop_pct):
    pre = Preprocess(img_size=img_size, crop_pct=crop_pct)
    rng = np.random.default_rng(0)
    mask = np.zeros(source, bool)
    for _ in range(5):  # a few rectangles, as parts are
        y, x = rng.integers(0, source[0] - 8), rng.integers(0, source[1] - 8)
        mask[y : y + rng.integers(4, source[0] // 3), x : x + rng.integers(4, source[1] // 3)] = True
    got = pre.mask(mask)
    assert got.shape == img_size and got.dtype == bool
    share = naive_mask_to_input(mask, img_size, crop_pct)
    decided = np.abs(share - 0.5) > 2 / 255  # PIL rounds to uint8: only pixels on the edge itself may go either way
    np.testing.assert_array_equal(got[decided], share[decided] >= 0.5)
    assert decided.mean() > 0.97


@pytest.mark.parametrize("crop_pct", [0.75, 448 / 600])
def test_a_box_lands_where_the_geometry_puts_it(crop_pct):
    """Independent of any filter: a source box maps to [edge · r / S - offset) in the input; pixels more than a
    pixel inside are in, more than a pixel outside are out. An unwarped mask (the old evaluate path) fails this."""
    S, H = 120, 120
    pre = Preprocess(img_size=(H, H), crop_pct=crop_pct)
    box = (20, 10, 70, 55)  # x0, y0, x1, y1 in source pixels
    got = pre.mask(rectangle_mask((S, S), box))
    r = round(H / crop_pct)
    offset = (r - H) // 2
    x0, y0, x1, y1 = (v * r / S - offset for v in box)
    ys, xs = np.mgrid[:H, :H] + 0.5  # input pixel centres
    inside = (xs > x0 + 1) & (xs < x1 - 1) & (ys > y0 + 1) & (ys < y1 - 1)
    outside = (xs < x0 - 1) | (xs > x1 + 1) | (ys < y0 - 1) | (ys > y1 + 1)
    assert got[inside].all() and not got[outside].any()
    unwarped = rectangle_mask((S, S), box)  # what evaluate used to score against at crop_pct < 1
    assert not unwarped[inside].all() or unwarped[outside].any()


def test_mask_rejects_non_2d():
    with pytest.raises(ValueError, match="mask"):
        Preprocess(img_size=(8, 8)).mask(np.zeros((8, 8, 3), bool))


def test_evaluate_scores_against_the_mask_in_the_models_pixels(monkeypatch):
    """At crop_pct < 1 the figures see each sample's part mask as `explain` saw the image."""
    model = make_tiny("vit", crop_pct=0.75)
    model.provenance["dataset"] = "synth-birds"
    seen = []
    method = METHODS["vit"]
    real = type(method).figures

    def spy(self, e, part_mask, **kw):
        seen.append(part_mask)
        return real(self, e, part_mask, **kw)

    monkeypatch.setattr(type(method), "figures", spy)
    evaluate.evaluate(model, n=3, seed=5, randomized=False)
    for i, got in enumerate(seen):
        sample = synthetic.make_sample("birds", i, 5, model.config.img_size, evaluate.data_version(model))
        np.testing.assert_array_equal(got, model.preprocess.mask(sample.part_mask))
        assert not np.array_equal(got, sample.part_mask)  # the crop moved it
