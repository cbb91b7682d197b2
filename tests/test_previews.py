"""Every preview and derived view is pinned to what the model itself computes.

- Layers and heads tab (`fgviz.explorer.analysis`): every head fusion and discard ratio against a naive float64
  rollout of the attention the model's blocks produce (captured with ``record_attention(mode="attn")``), and its
  entropy and mean attention distance against loops over the same attention.
- RAMS-Trans step preview for another alpha: identical (mask, component, box, crop, every panel's pixels) to a
  re-run of the model with that alpha.
- TASN step preview for other sampler parameters: identical to a re-run with them; the drawn maps are the ones the
  sampler was given during the forward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import blob_image, make_tiny

from fgviz.core.capture import record_attention
from fgviz.core.sampling import structure_detail
from fgviz.explorer.analysis import AttentionAnalysis
from fgviz.methods import METHODS
from fgviz.methods.rams_trans import views as rams_views
from fgviz.methods.tasn import model as tasn_model
from fgviz.methods.tasn import views as tasn_views
from fgviz.viz.panels import Style

STYLE = Style(cmap="viridis", alpha=0.5, norm="shared", min_size=0)
VIT_METHODS = ("transfg", "rams_trans", "vit")


def captured_attention(model, image: np.ndarray, layers: int) -> list[np.ndarray]:
    """(H, N, N) float64 post-softmax attention of blocks 1..layers, first pass (scale 1), from the model's eager
    forward (an independent path: no stored queries and keys, no blocked softmax)."""
    x, _ = model.preprocess(image)
    with torch.no_grad(), record_attention(list(model.vit.blocks[:layers]), mode="attn") as rec:
        model(x)
    return [rec.attn[b][0][0].double().numpy() for b in range(layers)]


def naive_rollout(attn: list[np.ndarray], fusion: str, discard: float, prefix: int) -> np.ndarray:
    """(L, Np) rollout rows, written as vit-explain does: fuse heads, zero the lowest patch-to-patch entries, add I,
    renormalise rows, multiply the full N x N matrices, read the first token's row."""
    N = attn[0].shape[-1]
    joint, rows = np.eye(N), []
    for a in attn:
        if fusion == "mean":
            f = a.mean(0)
        elif fusion == "max":
            f = a.max(0)
        elif fusion == "min":
            f = a.min(0)
        else:
            f = a[int(fusion[1:]) - 1]
        f = f.copy()
        k = int(np.floor(discard * (N - prefix) ** 2))
        if k:
            block = f[prefix:, prefix:].reshape(-1)
            block[np.argsort(block, kind="stable")[:k]] = 0.0
            f[prefix:, prefix:] = block.reshape(N - prefix, N - prefix)
        f = f + np.eye(N)
        f = f / f.sum(-1, keepdims=True)
        joint = f @ joint
        rows.append(joint[0, prefix:].copy())
    return np.stack(rows)


@pytest.fixture(scope="module", params=VIT_METHODS)
def vit_case(request, test_image_module):
    model = make_tiny(request.param, **({"num_scales": 2} if request.param == "rams_trans" else {}))
    e = model.explain(test_image_module)
    attn = captured_attention(model, test_image_module, len(e.attn_q))
    return model, e, attn


@pytest.fixture(scope="module")
def test_image_module():
    return blob_image(np.random.default_rng(1))


def test_head_mean_rollout_is_the_models_own(vit_case) -> None:
    """The Layers tab's default rollout is `Explanation.rollout` (the model's), and that is the naive rollout of the
    attention its blocks computed."""
    _, e, attn = vit_case
    an = AttentionAnalysis(e)
    assert an.rollout("mean", 0.0) is e.rollout
    ref = naive_rollout(attn, "mean", 0.0, e.num_prefix_tokens).reshape(len(attn), *e.grid)
    np.testing.assert_allclose(e.rollout, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.3), ("max", 0.0), ("min", 0.5), ("min", 0.0),
                                                 ("max", 0.2)])
def test_every_fusion_and_discard_is_the_models_attention_rolled_out(vit_case, fusion, discard) -> None:
    """Derived from the stored float16 queries and keys, yet within float16 rounding of the model's attention."""
    _, e, attn = vit_case
    got = AttentionAnalysis(e).rollout(fusion, discard)  # (L, gh, gw)
    ref = naive_rollout(attn, fusion, discard, e.num_prefix_tokens).reshape(got.shape)
    scale = ref.max(axis=(1, 2), keepdims=True)
    assert np.max(np.abs(got - ref) / scale) < 2e-2, (fusion, discard)
    if discard == 0.0:  # no near-ties to flip: tight
        np.testing.assert_allclose(got, ref, rtol=5e-3, atol=1e-4)


def test_clicked_patch_rows_and_columns_are_the_models(vit_case) -> None:
    _, e, attn = vit_case
    an = AttentionAnalysis(e)
    A = np.stack(attn)  # (L, H, N, N)
    for token in (e.num_prefix_tokens, A.shape[-1] - 1):
        np.testing.assert_allclose(an.rows(token), A[:, :, token, :], atol=3e-3)
        np.testing.assert_allclose(an.columns(token), A[:, :, :, token], atol=3e-3)


def test_head_statistics_are_the_models_attention(vit_case) -> None:
    """The Layers tab's entropy (nats, every query row over all keys, mean over queries) and mean attention distance
    (pixels between footprint centres, patch queries over patch keys, mean over patch queries), per layer and head,
    against the float64 attention the model's blocks computed, restated with loops."""
    _, e, attn = vit_case
    ent, dist = AttentionAnalysis(e).stats()
    L, H, N, p = len(attn), attn[0].shape[0], attn[0].shape[-1], e.num_prefix_tokens
    gh, gw = e.grid
    centres = [(r * e.stride + (e.patch_size - 1) / 2, c * e.stride + (e.patch_size - 1) / 2)
               for r in range(gh) for c in range(gw)]
    ref_ent, ref_dist = np.zeros((L, H)), np.zeros((L, H))
    for layer in range(L):
        for h in range(H):
            a = attn[layer][h]  # (N, N) float64, rows sum to 1
            ref_ent[layer, h] = np.mean([-sum(v * math.log(v) for v in row if v > 0) for row in a])
            per_query = []
            for q in range(p, N):
                w = a[q, p:] / a[q, p:].sum()  # over the patch keys
                (qy, qx) = centres[q - p]
                per_query.append(sum(wj * math.hypot(qy - y, qx - x) for wj, (y, x) in zip(w, centres, strict=True)))
            ref_dist[layer, h] = np.mean(per_query)
    # the tab reads float16 queries and keys (measured: 4e-5 off at most)
    np.testing.assert_allclose(ent, ref_ent, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-3)


# ---- RAMS-Trans: the DPPM step for another alpha -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rams(test_image_module):
    model = make_tiny("rams_trans", num_scales=2)
    return model, model.explain(test_image_module)


@pytest.mark.parametrize("alpha", [0.6, 1.0, 1.55, 2.4])
def test_rams_preview_is_a_rerun_with_that_alpha(rams, test_image_module, alpha) -> None:
    model, e = rams
    p = rams_views.preview_step(e, alpha)
    again = model.explain(test_image_module, alpha=alpha)
    np.testing.assert_array_equal(p["mask"], again.dppm_masks[0])
    np.testing.assert_array_equal(p["component"], again.extras["dppm_components"][0])
    assert list(p["grid_box"]) == [int(v) for v in again.dppm_boxes[0]]
    np.testing.assert_array_equal(p["crop"], again.crops[0])  # the scale-2 input, to the pixel
    # and what the Internals tab draws of step 1: the same pixels (the captions differ: "preview")
    shown = METHODS["rams_trans"].steps(e, STYLE, {"alpha": alpha})
    ran = METHODS["rams_trans"].steps(again, STYLE)
    for (a, _), (b, _) in zip(shown.panels, ran.panels[: len(shown.panels)], strict=True):
        np.testing.assert_array_equal(a, b)


# ---- TASN: the sampler for other parameters ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tasn(test_image_module):
    model = make_tiny("tasn")
    return model, model.explain(test_image_module)


TASN_PARAMS = [
    {"gamma": 3.0},
    {"dense": 2.0, "iters": 2},
    {"out_size": 40, "iters": 0},
    {"detail_channel": 3},
    {"variant": "mxnet", "gamma": 12.0},
]


def assert_same_tasn(r: dict, e) -> None:
    for k in tasn_views.KINDS:
        np.testing.assert_allclose(r["maps"][k], e.maps[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(r["sampled"][k], e.sampled[k])
        for got, want in zip(r["coords"][k], e.sample_coords[k], strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(r["trilinear"], e.trilinear, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("change", TASN_PARAMS, ids=lambda p: ",".join(p))
def test_tasn_preview_is_a_rerun_with_those_parameters(tasn, test_image_module, change) -> None:
    model, e = tasn
    params = {**METHODS["tasn"].params_of(e), **change}
    again = model.explain(test_image_module, **change)
    assert METHODS["tasn"].params_of(again) == params
    assert_same_tasn(tasn_views.recompute(e, params), again)
    shown = METHODS["tasn"].steps(e, STYLE, change)
    ran = METHODS["tasn"].steps(again, STYLE)
    assert shown.preview and not ran.preview
    assert len(shown.panels) == len(ran.panels)
    for (a, _), (b, _) in zip(shown.panels, ran.panels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_pin_catches_a_preview_that_restates_the_maths(tasn, test_image_module, monkeypatch) -> None:
    """A preview that resized the maps its own way (align_corners=False, as an earlier fgviz did) fails the pin."""
    model, e = tasn
    params = {**METHODS["tasn"].params_of(e), "gamma": 3.0}
    again = model.explain(test_image_module, gamma=3.0)
    def drifted(T, *, detail_channel=None, size=None, variant="tasn"):
        s, d = structure_detail(T, detail_channel=detail_channel, variant=variant)  # (B, h, w) each
        up = torch.nn.functional.interpolate(torch.stack([s, d], 1), size=size, mode="bilinear", align_corners=False)
        return up[:, 0].square(), up[:, 1]

    monkeypatch.setattr(tasn_model, "structure_detail_maps", drifted)
    with pytest.raises(AssertionError):
        assert_same_tasn(tasn_views.recompute(e, params), again)


def test_the_drawn_tasn_maps_are_what_the_sampler_was_given(tasn, test_image_module, monkeypatch) -> None:
    model, _ = tasn
    given = {}
    real = tasn_model.sample_both

    def spy(x, maps, *a, **kw):
        given.update({k: v[0].detach().numpy().copy() for k, v in maps.items()})
        return real(x, maps, *a, **kw)

    monkeypatch.setattr(tasn_model, "sample_both", spy)
    e = model.explain(test_image_module)
    drawn = tasn_views.full_maps(e)
    for k in tasn_views.KINDS:
        np.testing.assert_allclose(drawn[k], given[f"{k}_full"], rtol=1e-5, atol=1e-7)
    # the overview shows the structure map before the sampler squares it (same peaks, a sane shared scale)
    np.testing.assert_allclose(tasn_views.display_maps(e)["structure"] ** 2, given["structure_full"], rtol=1e-4,
                               atol=1e-7)
