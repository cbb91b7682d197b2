"""The notebook API (`fgviz.notebook`, exported as `fgviz.<name>`): what it draws and measures, against independent
references (the attention the model's blocks compute, rolled out naively in float64; probabilities from separate
forward passes; scipy's Spearman; masks and maps written out by hand)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import fgviz
from fgviz import notebook
from fgviz.core.geometry import token_box
from fgviz.explorer import analysis
from fgviz.methods import METHODS
from fgviz.viz import Figure
from fgviz.viz.panels import Style
from tests.conftest import blob_image, make_tiny
from tests.test_previews import captured_attention, naive_rollout

NAMES = ("examples", "overview", "steps", "layers", "layer_rollout", "map_names", "saliency", "localisation",
         "pointing_game", "deletion_insertion", "sanity_check")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return blob_image(np.random.default_rng(1))


@pytest.fixture(scope="module")
def models() -> dict:
    out = {m: make_tiny(m, **({"num_scales": 2} if m == "rams_trans" else {})) for m in sorted(METHODS)}
    for name, model in out.items():
        model.name = f"tiny-{name}"
    return out


@pytest.fixture(scope="module")
def expls(models, image) -> dict:
    return {m: model.explain(image) for m, model in models.items()}


def test_the_notebook_api_is_fgviz_public_api() -> None:
    for name in NAMES:
        assert getattr(fgviz, name) is getattr(notebook, name)
        assert name in dir(fgviz)


def test_examples_are_the_apps_tagged_assets() -> None:
    birds, cars = fgviz.examples("birds"), fgviz.examples("cars")
    assert [p.name for p in birds] == [f"birds_{i}.jpg" for i in range(1, 5)] and len(cars) == 4
    assert all(p.is_file() for p in birds + cars) and sorted(fgviz.examples()) == sorted(birds + cars)


# ---- views ------------------------------------------------------------------------------------------------------


def test_overview_shares_one_colour_scale_across_methods(expls) -> None:
    """Each main panel is the method's Overview column drawn with vmax = the largest relative value of any map."""
    es = list(expls.values())
    maps = {e.method: METHODS[e.method].overview_maps(e) for e in es}
    vmax = max(float(np.nanmax(v)) for m in maps.values() for v in m.values())
    fig = fgviz.overview(*es)
    assert len(fig) == len(es)
    for (rgb, cap), e in zip(fig.panels, es, strict=True):
        ref = METHODS[e.method].overview(e, maps[e.method], notebook.STYLE, (0.0, vmax), main_only=True).main
        assert np.array_equal(rgb, ref) and e.model_name in cap and METHODS[e.method].title in cap
    own = fgviz.overview(*es, shared=False, panels=True)
    assert len(own) > len(es)
    e = es[0]
    ref = METHODS[e.method].overview(e, maps[e.method], notebook.STYLE, None).main
    assert np.array_equal(own.panels[0][0], ref)


def test_steps_preview_another_alpha_and_say_so(models, expls, image) -> None:
    e = expls["rams_trans"]
    ran = fgviz.steps(e)
    assert "preview" not in ran.title and ran.numbers["steps"][0]["alpha"] == pytest.approx(1.2)
    alpha = 2.0
    shown = fgviz.steps(e, alpha=alpha)
    assert shown.title.endswith(": preview") and shown.numbers["steps"][0]["alpha"] == alpha
    again = fgviz.steps(models["rams_trans"].explain(image, alpha=alpha))  # a re-run gives the same step 1
    assert shown.numbers["steps"][0]["grid_box"] == again.numbers["steps"][0]["grid_box"]
    assert np.array_equal(shown.panels[4][0], again.panels[4][0])  # the crop
    with pytest.raises(ValueError, match="alpha"):
        fgviz.steps(e, gamma=2.0)
    with pytest.raises(ValueError, match="no parameters"):
        fgviz.steps(expls["transfg"], alpha=1.0)
    e = expls["transfg"]
    assert len(fgviz.steps(e)) == len(METHODS["transfg"].steps(e, notebook.STYLE).panels)
    own = fgviz.steps(e, shared=False)  # each head's map on its own scale
    ref = METHODS["transfg"].steps(e, Style(norm="panel")).panels
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(own.panels, ref, strict=True))


@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.0), ("min", 0.5), ("mean", 0.9)])
def test_layer_rollout_is_the_models_attention_rolled_out(models, expls, image, fusion, discard) -> None:
    for method in ("vit", "transfg"):
        e = expls[method]
        got = fgviz.layer_rollout(e, fusion, discard)
        attn = captured_attention(models[method], image, len(e.attn_q))
        ref = naive_rollout(attn, fusion, discard, e.num_prefix_tokens).reshape(got.shape)
        scale = ref.max(axis=(1, 2), keepdims=True)
        assert got.dtype == np.float32 and np.max(np.abs(got - ref) / scale) < 2e-2, (method, fusion, discard)
        got[:] = 0  # a copy: the explanation's own rollout is untouched
    assert np.abs(expls["vit"].rollout).sum() > 0


def test_layers_figure_tiles_every_layer_and_draws_the_chosen_one(expls) -> None:
    e = expls["vit"]
    fig = fgviz.layers(e, "max", 0.5, layer=2)
    assert len(fig) == 2 and "head fusion max, discard ratio 0.5" in fig.title
    assert "1..2 of 3" in fig.captions[1]
    peaks = fig.numbers["rollout_max"]
    flattest = int(np.argmin(peaks)) + 1  # shared, its colours reach only part of the scale; alone, all of it
    assert min(peaks) < max(peaks)
    own = fgviz.layers(e, "max", 0.5, layer=flattest, shared=False)  # the Layers tab's "panel" normalisation
    an = analysis.AttentionAnalysis(e)
    assert np.array_equal(own.panels[1][0], analysis.layer_view(an, flattest, Style(norm="panel"), fusion="max",
                                                                 discard=0.5).rollout)
    assert not np.array_equal(own.panels[1][0], fgviz.layers(e, "max", 0.5, layer=flattest).panels[1][0])
    roll = fgviz.layer_rollout(e, "max", 0.5)
    assert fig.numbers["rollout_max"] == (roll / roll.mean(axis=(1, 2), keepdims=True)).max(axis=(1, 2)).round(
        3).tolist()


# ---- maps and the pointing game ---------------------------------------------------------------------------------


def test_pointing_game_on_hand_made_maps(expls) -> None:
    e = expls["vit"]
    H, W = e.size
    mask = np.zeros((H, W), bool)
    mask[4:12, 8:20] = True
    m = np.ones((H, W), np.float32)
    m[4:12, 8:20] = 5.0  # 96 px at 5, the rest at 1
    res = fgviz.pointing_game(e, mask, m)
    assert res.energy.value == pytest.approx(96 * 5 / (96 * 5 + (H * W - 96)))
    assert res.energy.chance == pytest.approx(96 / (H * W)) and res.hit_chance == pytest.approx(96 / (H * W))
    assert res.hit and mask[res.max_at[1], res.max_at[0]]
    m2 = m.copy()
    m2[30, 40] = 9.0  # the maximum far from the parts
    assert not fgviz.pointing_game(e, mask, m2).hit
    assert isinstance(res.figure, Figure) and "energy on the parts" in res.figure.captions[0]
    assert res._repr_html_() == res.figure._repr_html_()


def test_pointing_game_places_a_token_map_on_its_footprint(expls) -> None:
    e = expls["transfg"]  # overlapping patches: the footprint comes from the model's geometry
    tok = np.zeros(e.grid, np.float32)
    tok[1, 2] = 1.0
    x0, y0, x1, y1 = token_box(1 * e.grid[1] + 2, e.grid, e.patch_size, e.stride, e.size)
    mask = np.zeros(e.size, bool)
    mask[y0:y1, x0:x1] = True
    res = fgviz.pointing_game(e, mask, tok)
    assert res.energy.value == pytest.approx(1.0) and res.hit
    with pytest.raises(ValueError, match="token grid"):
        fgviz.pointing_game(e, mask, np.ones((3, 3)))
    with pytest.raises(ValueError, match="input size"):
        fgviz.pointing_game(e, mask[:-1], tok)


def test_localisation_is_the_cards_figures_for_one_image(expls) -> None:
    e = expls["transfg"]
    mask = np.zeros(e.size, bool)
    x0, y0, x1, y1 = e.part_boxes[0]
    mask[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True  # inside the first head's token
    figs = fgviz.localisation(e, mask)
    hits = [mask[b[1] : b[3], b[0] : b[2]].any() for b in e.part_boxes]
    assert figs["psm_part_hit_rate"].value == pytest.approx(np.mean(hits)) and hits[0]
    assert set(figs) >= {"psm_part_hit_rate", "rollout_energy_pointing"}
    tasn = fgviz.localisation(expls["tasn"], np.pad(np.ones((10, 10), bool), ((20, expls["tasn"].size[0] - 30),
                                                                                (20, expls["tasn"].size[1] - 30))))
    assert tasn["structure_magnification_oracle"].value > 1.0 and tasn["structure_magnification"].chance == 1.0


def test_saliency_names(expls) -> None:
    for m, e in expls.items():
        assert fgviz.map_names(e) == METHODS[m].map_choices()
        s = fgviz.saliency(e)
        assert s.shape == e.size and np.array_equal(s, METHODS[m].named_map(e, fgviz.map_names(e)[0]))


# ---- checks that run the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vit", "rams_trans", "tasn"])
def test_deletion_insertion_end_points_are_the_models_probabilities(models, expls, method) -> None:
    model, e = models[method], expls[method]
    res = fgviz.deletion_insertion(model, e, steps=4, n_random=2)
    c = res.curves
    t = int(np.argmax(e.probs))
    assert res.target == e.prediction and c.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]

    def p(img: np.ndarray) -> float:  # one separate forward per image
        return float(model.explain(img).probs[t])

    sigma = max(e.size) / 20.0
    blurred = cv2.GaussianBlur(e.image, (0, 0), sigma)
    assert c.deletion_curve[0] == pytest.approx(p(e.image), abs=1e-4)  # nothing deleted yet
    assert c.deletion_curve[-1] == pytest.approx(p(np.zeros_like(e.image)), abs=1e-4)  # all black
    assert c.insertion_curve[0] == pytest.approx(p(blurred), abs=1e-4)
    assert c.insertion_curve[-1] == pytest.approx(p(e.image), abs=1e-4)
    assert c.random_deletion_curve[0] == pytest.approx(p(e.image), abs=1e-4)
    trapezoid = float(np.sum((c.deletion_curve[1:] + c.deletion_curve[:-1]) / 2 * np.diff(c.fractions)))
    assert c.deletion.value == pytest.approx(trapezoid)
    assert 0 <= c.deletion.chance <= 1 and 0 <= c.insertion.chance <= 1
    assert f"deletion AUC {c.deletion.value:.3f}" in res.figure.captions[0]
    assert res.figure.panels[0][0].shape == (720, 1280, 3)


def test_deletion_insertion_refuses_another_models_explanation(models, expls) -> None:
    with pytest.raises(ValueError, match="not made by this model"):
        fgviz.deletion_insertion(models["vit"], expls["transfg"])


def test_predict_fn_restores_training_mode(models, expls) -> None:
    model = models["vit"].train()
    try:
        probs = notebook.predict_fn(model)(expls["vit"].image[None])
        assert model.training and probs.shape == (1, 5)
        np.testing.assert_allclose(probs[0], expls["vit"].probs, atol=1e-5)
    finally:
        model.eval()


@pytest.mark.parametrize("method", ["transfg", "tasn"])
def test_sanity_check_compares_with_the_reinitialised_architecture(models, image, method) -> None:
    model = models[method]
    res = fgviz.sanity_check(model, image, seed=3)
    trained = model.explain(image)
    rnd_model = model.reinitialized(seed=3)
    rnd = rnd_model.explain(image)
    name = fgviz.map_names(trained)[0]
    a, b = METHODS[method].named_map(trained, name), METHODS[method].named_map(rnd, name)
    assert res.map_name == name
    assert res.correlation == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-6)
    np.testing.assert_allclose(res.randomized.probs, rnd.probs, atol=1e-5)
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), rnd_model.parameters(), strict=True)
                   if p.dim() >= 2)  # every weight matrix re-drawn (norms start at ones either way)
    assert f"{res.correlation:.3f}" in res.figure.captions[0]
    assert res.figure.panels[0][0].shape[1] > 2 * notebook.STYLE.min_size  # the two maps side by side
