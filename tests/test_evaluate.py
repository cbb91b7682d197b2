"""`python -m fgviz.evaluate`: the command that recomputes every model-card figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fgviz
from fgviz.data import synthetic
from fgviz.methods import METHODS
from fgviz.methods.rams_trans.views import oracle_box
from fgviz.methods.tasn.views import oracle_coords
from fgviz.training import evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["transfg-birds-demo", "rams_trans-cars-demo", "tasn-birds-demo"])
def test_accuracy_matches_a_plain_batched_forward(name):
    """evaluate() explains one image at a time; its accuracy must equal the plain forward's on the same samples.

    A re-initialised model (near-chance, scattered predictions) makes a sample or label mix-up visible, which a
    ~100 % accurate demo model would hide."""
    model = fgviz.load(name, device="cpu").float().reinitialized(seed=1)
    result = evaluate.evaluate(model, n=24, seed=9001, randomized=False)
    images, labels = synthetic.make_batch(result["domain"], range(24), seed=9001, size=model.config.img_size,
                                          version=result["data_version"])
    x = torch.cat([model.preprocess(im)[0] for im in images])
    with torch.inference_mode():
        logits = model(x)  # (24, 16); RAMS-Trans: the sum over scales, as its explain reports
    # A batch of 24 and batches of one are summed in different orders: the predictions agree on every kernel only
    # where no two classes nearly tie (1e-4 in logits is about a thousand times the difference between the two).
    top = logits.sort(dim=-1).values[:, -2:]
    assert (top[:, 1] - top[:, 0]).min() > 1e-4
    expected = float((logits.argmax(-1).numpy() == np.asarray(labels)).mean())
    assert result["trained"]["accuracy"]["value"] == pytest.approx(expected, abs=1e-4)  # rounded to 4 digits
    assert result["trained"]["accuracy"]["chance"] == pytest.approx(1 / 16, abs=1e-4)


def test_tasn_structure_energy_pointing_against_a_by_hand_mass_share():
    model = fgviz.load("tasn-birds-demo", device="cpu").float()
    sample = synthetic.make_sample("birds", 3, seed=9001, size=model.config.img_size)
    expl = model.explain(sample.image)
    r = METHODS["tasn"].figures(expl, sample.part_mask)["structure_energy_pointing"]
    # by hand: the (h, w) map resized as the sampler takes it (bilinear, corners aligned, separable np.interp in
    # float64), squared, then its mass share inside the mask
    h, w = expl.maps["structure"].shape
    H, W = sample.part_mask.shape
    m = expl.maps["structure"].astype(np.float64)
    tall = np.stack([np.interp(np.linspace(0, h - 1, H), np.arange(h), m[:, c]) for c in range(w)], 1)  # (H, w)
    pixels = np.stack([np.interp(np.linspace(0, w - 1, W), np.arange(w), row) for row in tall]) ** 2  # (H, W)
    by_hand = pixels[sample.part_mask].sum() / pixels.sum()
    assert r.chance == pytest.approx(sample.part_mask.mean())
    assert r.value == pytest.approx(by_hand, rel=1e-4)


def test_randomized_copy_leaves_the_trained_model_alone():
    model = fgviz.load("transfg-cars-demo", device="cpu").float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = model.reinitialized(seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(fresh) is type(model) and fresh.config == model.config
    assert not torch.equal(fresh.state_dict()["vit.head.weight"], before["vit.head.weight"])


def test_update_card_writes_every_figure_into_config_and_card(tmp_path):
    folder = tmp_path / "tasn-cars-demo"
    shutil.copytree(ROOT / "weights" / "tasn-cars-demo", folder)
    evaluate.main([str(folder), "--n", "4", "--update-card"])
    prov = json.loads((folder / "config.json").read_text())["provenance"]
    figures = prov["metrics"]
    assert {"accuracy", "structure_magnification", "detail_magnification", "structure_energy_pointing"} <= set(figures)
    assert all("chance" in f for f in figures.values())
    assert all(("randomized" in f) != name.endswith("_oracle") for name, f in figures.items())
    assert prov["evaluation"]["n"] == 4
    card = (folder / "README.md").read_text()
    assert "structure_energy_pointing" in card or "structure energy pointing" in card.lower()


def _naive_oracle_box(part_mask: np.ndarray, patch: int, alpha: float) -> tuple[int, int, int, int]:
    """The DPPM on the part mask written out: per-token share by loops, threshold, scipy 8-connected labels,
    largest component (first on ties), official one-pixel shift."""
    from scipy import ndimage

    H, W = part_mask.shape
    gh, gw = H // patch, W // patch
    g = np.array([[part_mask[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].mean() for c in range(gw)]
                  for r in range(gh)])
    labels, n = ndimage.label(g > alpha * g.mean(), structure=np.ones((3, 3)))
    sizes = [(labels == i).sum() for i in range(1, n + 1)]
    rr, cc = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    r0, c0, r1, c1 = rr.min(), cc.min(), rr.max() + 1, cc.max() + 1
    y0, x0 = max(patch * r0 - 1, 0), max(patch * c0 - 1, 0)
    y1, x1 = min(patch * r1 - 1, H - 1), min(patch * c1 - 1, W - 1)
    return x0, y0, x1 + 1, y1 + 1


@pytest.mark.parametrize("index", [0, 5, 11])
def test_rams_oracle_crop_is_the_official_dppm_on_the_part_mask(index):
    model = fgviz.load("rams_trans-birds-demo", device="cpu").float()
    sample = synthetic.make_sample("birds", index, seed=9001, size=model.config.img_size)
    expl = model.explain(sample.image)
    assert oracle_box(expl, sample.part_mask) == _naive_oracle_box(sample.part_mask, expl.patch_size, 1.2)


def test_tasn_oracle_grid_is_uniform_for_a_flat_mask_and_magnifies_a_part():
    model = fgviz.load("tasn-birds-demo", device="cpu").float()
    sample = synthetic.make_sample("birds", 2, seed=9001, size=model.config.img_size)
    expl = model.explain(sample.image)
    H, W = sample.part_mask.shape
    rows, cols = oracle_coords(expl, np.ones((H, W), bool))
    out = expl.params["out_size"]
    np.testing.assert_allclose(rows, np.linspace(0, H - 1, out), atol=1e-3)  # a plain resize
    np.testing.assert_allclose(cols, np.linspace(0, W - 1, out), atol=1e-3)
    r = METHODS["tasn"].figures(expl, sample.part_mask)["structure_magnification_oracle"]
    assert r.value > 1.0 and r.chance == 1.0  # attention on the parts gives them more samples than a resize
