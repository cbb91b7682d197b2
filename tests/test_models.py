"""The three models against independent, naive float64 re-statements of the official algorithms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from fgviz.core.explanation import Explanation
from fgviz.core.sampling import duplicate_rtol
from fgviz.methods import create_model
from fgviz.methods.transfg.model import TransFG, TransFGConfig
from tests.conftest import make_tiny


def _naive_blocks(vit, h, blocks):
    """Run timm blocks by hand, returning outputs and each block's float64 attention (B, H, N, N)."""
    attns = []
    for blk in blocks:
        a = blk.attn
        y = blk.norm1(h).double()
        B, N, _ = y.shape
        qkv = F.linear(y, a.qkv.weight.double(), a.qkv.bias.double())
        q, k, _ = qkv.reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        attns.append(torch.softmax(q @ k.transpose(-2, -1) * a.head_dim**-0.5, dim=-1))
        h = blk(h)
    return h, attns


@pytest.mark.parametrize(("size", "patch", "stride"), [((40, 52), 8, 6), ((448, 448), 16, 12), ((37, 29), 5, 3)])
def test_overlapping_token_grid_and_footprints(size, patch, stride):
    cfg = TransFGConfig(num_classes=2, img_size=size, patch_size=patch, stride=stride, embed_dim=8,
                        depth=2, num_heads=2)
    gh, gw = (size[0] - patch) // stride + 1, (size[1] - patch) // stride + 1
    assert cfg.grid == (gh, gw)
    if size == (448, 448):
        assert gh * gw + 1 == 1370
        return
    torch.manual_seed(0)
    pe = TransFG(cfg).vit.patch_embed.eval()
    x = torch.randn(1, 3, *size)
    tokens = pe(x)  # (1, gh*gw, D)
    assert tokens.shape[1] == gh * gw
    # Token (r, c) must depend on exactly the pixels rows stride*r .. +patch-1, cols stride*c .. +patch-1.
    r, c = gh - 1, gw // 2
    inside = (stride * r + patch - 1, stride * c)
    outside = (stride * r - 1, stride * c)
    for (yy, xx), changes in ((inside, True), (outside, False)):
        x2 = x.clone()
        x2[0, :, yy, xx] += 10
        delta = (pe(x2) - tokens)[0, r * gw + c].abs().max().item()
        assert (delta > 1e-4) == changes


def test_transfg_matches_naive_official_forward(test_image):
    model = make_tiny("transfg", depth=4)
    x, _ = model.preprocess(test_image)
    vit = model.vit
    with torch.no_grad():
        h = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        h, attns = _naive_blocks(vit, h, vit.blocks[:-1])
        # Official PSM: full per-head product A_{L-1} ... A_1 (no identity, no renormalisation), CLS row, argmax.
        prod = attns[0]
        for a in attns[1:]:
            prod = a @ prod  # (B, H, N, N)
        idx = prod[:, :, 0, 1:].argmax(-1) + 1  # (B, H)
        top = prod[:, :, 0, 1:].sort(dim=-1).values[..., -2:]
        assert ((top[..., 1] - top[..., 0]) / top[..., 1]).min() > 1e-4  # no near-tie: float32 picks alike anywhere
        parts = torch.stack([h[0, i] for i in idx[0]])[None]
        z = vit.blocks[-1](torch.cat([h[:, :1], parts], 1))
        ref_logits = vit.head(vit.norm(z)[:, 0])
        out = model._forward(x)
    assert out["part_tokens"].tolist() == idx.tolist()
    torch.testing.assert_close(out["logits"], ref_logits, atol=1e-5, rtol=1e-5)
    expl = model.explain(test_image)
    np.testing.assert_array_equal(expl.part_tokens, idx[0].numpy())
    np.testing.assert_allclose(expl.psm_rows.reshape(4, -1), prod[0, :, 0, 1:].numpy(), rtol=1e-4, atol=1e-7)
    # Abnar rollout, naive: (0.5 A + 0.5 I) row-normalised, full matrix products.
    N = prod.shape[-1]
    eye = torch.eye(N, dtype=torch.float64)
    joint = eye
    for l, a in enumerate(attns):
        m = 0.5 * a.mean(1)[0] + 0.5 * eye
        joint = (m / m.sum(-1, keepdim=True)) @ joint
        np.testing.assert_allclose(expl.rollout[l].ravel(), joint[0, 1:].numpy(), rtol=1e-4, atol=1e-7)
    # Part boxes are the true 8-px footprints at stride 6.
    gh, gw = expl.grid
    for t, box in zip(expl.part_tokens, expl.part_boxes, strict=True):
        r, c = divmod(int(t) - 1, gw)
        assert tuple(box) == (6 * c, 6 * r, 6 * c + 8, 6 * r + 8)


def test_rams_trans_matches_naive_official_dppm(test_image):
    model = make_tiny("rams_trans")
    x, display = model.preprocess(test_image)
    vit, P = model.vit, model.config.patch_size
    gh, gw = model.grid
    with torch.no_grad():
        h = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        _, attns = _naive_blocks(vit, h, vit.blocks)
        N = attns[0].shape[-1]
        eye = torch.eye(N, dtype=torch.float64)
        J = None
        for a in attns:  # G_l = rownorm(mean_heads(A_l) + I); J = G_L ... G_1
            G = a[0].mean(0) + eye
            G = G / G.sum(-1, keepdim=True)
            J = G if J is None else G @ J
        g = J[:, 2:].mean(0)
        g = (g / g.max()).numpy().reshape(gh, gw)
        assert np.abs(g - 1.2 * g.mean()).min() > 1e-4 * g.mean()  # no token on the threshold (float32 decides alike)
        mask = g > 1.2 * g.mean()
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        assert n >= 1, "the sharpened tiny model should produce a non-empty proposal"
        areas = [(labels == i + 1).sum() for i in range(n)]
        rows, cols = np.nonzero(labels == int(np.argmax(areas)) + 1)
        r0, c0, r1, c1 = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1
        y0, y1 = max(P * r0 - 1, 0), P * r1 - 1
        x0, x1 = max(P * c0 - 1, 0), P * c1 - 1
        crop = F.interpolate(x[:, :, y0 : y1 + 1, x0 : x1 + 1], size=x.shape[-2:], mode="bilinear", align_corners=True)
        ref_logits2 = vit.head(vit.forward_features(crop)[:, 1])
        out = model._forward(x)
    np.testing.assert_allclose(out["proposals"][0]["g"][0].numpy(), g, rtol=1e-4, atol=1e-6)
    assert out["proposals"][0]["boxes"][0].tolist() == [r0, c0, r1, c1]
    torch.testing.assert_close(out["logits"][1], ref_logits2, atol=1e-4, rtol=1e-4)
    expl = model.explain(test_image)
    assert tuple(expl.crop_boxes[0]) == (x0, y0, x1 + 1, y1 + 1)
    np.testing.assert_array_equal(expl.dppm_masks[0], mask)
    combined = torch.softmax(out["logits"][0] + out["logits"][1], -1)[0].numpy()
    np.testing.assert_allclose(expl.probs, combined, atol=1e-5)


def test_rams_trans_three_scales_nest_boxes(test_image):
    model = make_tiny("rams_trans", num_scales=3, img_size=(64, 64))
    expl = model.explain(test_image)
    assert expl.scale_probs.shape == (3, 5) and len(expl.crops) == 2
    outer, inner = expl.crop_boxes
    assert outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_rams_trans_overview_caption_describes_its_main_panel(test_image):
    """The main panel's caption names the DPPM map, mask and box; each crop panel its own scale (a loop variable once
    overwrote the main caption with the last crop's)."""
    from fgviz.methods import METHODS
    from fgviz.viz.panels import Style

    model = make_tiny("rams_trans", num_scales=3, img_size=(64, 64))
    expl = model.explain(test_image)
    method = METHODS["rams_trans"]
    for main_only in (True, False):
        ov = method.overview(expl, method.overview_maps(expl), Style(min_size=0), None, main_only=main_only)
        assert ov.caption.startswith("DPPM map g") and "zoom box" in ov.caption, ov.caption
    assert [cap.split(" input")[0] for _, cap in ov.panels] == ["scale 2", "scale 3"]


def test_tasn_maps_and_sampling_match_naive(test_image):
    model = make_tiny("tasn")
    expl = model.explain(test_image)
    x, _ = model.preprocess(test_image)
    with torch.no_grad():
        X, _ = model.attention_features(x)
        # The attention net sees the input resized as MXNet's BilinearResize2D does: corners aligned.
        s = model.config.att_size
        H, W = x.shape[-2:]
        xd = x[0].double().numpy()
        ys, xs = np.linspace(0, H - 1, s), np.linspace(0, W - 1, s)
        # (3, W, s): columns resampled along the rows first
        tall = np.stack([[np.interp(ys, np.arange(H), xd[ch, :, c]) for c in range(W)] for ch in range(3)])
        small = np.stack([[np.interp(xs, np.arange(W), tall[ch, :, r]) for r in range(s)] for ch in range(3)])
        small = torch.from_numpy(small).float()[None]  # (1, 3, s, s)
        X_ref = model.att_head(model.att_net.forward_features(small))
    torch.testing.assert_close(X, X_ref, atol=1e-4, rtol=1e-4)
    Xd = X[0].double().reshape(X.shape[1], -1)  # (C, hw)
    C = Xd.shape[0]
    trilinear = np.zeros_like(Xd.numpy())
    n1 = torch.softmax(7.0 * Xd, dim=1)  # per channel over space
    rel = torch.softmax(n1 @ Xd.T, dim=1)  # (C, C)
    trilinear = (rel @ Xd).reshape(C, *X.shape[2:]).numpy()
    # No two maps agree within 100x the filter's rounding tolerance (L1): it keeps every channel, the map is their sum
    flat = trilinear.reshape(C, -1)
    apart = np.where(np.eye(C, dtype=bool), np.inf, np.abs(flat[:, None] - flat[None]).sum(-1))  # (C, C) L1
    assert apart.min() > 100 * duplicate_rtol(trilinear[0].size, C) * np.abs(flat).sum(1).max()
    np.testing.assert_allclose(expl.maps["structure"], trilinear.sum(0), rtol=2e-3, atol=1e-4)
    # The structure-sampled image is the input sampled bilinearly at the separable grid of its coordinates.
    rows, cols = expl.sample_coords["structure"]
    H, W = expl.size
    assert np.all(np.diff(rows) >= -1e-4) and np.all(np.diff(cols) >= -1e-4)
    assert rows.min() >= 0 and rows.max() <= H - 1 and cols.min() >= 0 and cols.max() <= W - 1
    img = expl.image.astype(np.float64)
    ref = np.stack([ndimage.map_coordinates(img[..., ch], np.meshgrid(rows, cols, indexing="ij"), order=1)
                    for ch in range(3)], -1)
    assert np.abs(expl.sampled["structure"].astype(np.float64) - ref).mean() < 2.0


def test_explain_contract(tiny_model, test_image):
    expl = tiny_model.explain(Image.fromarray(test_image))
    again = tiny_model.explain(test_image)
    assert isinstance(expl, Explanation)
    H, W = tiny_model.config.img_size
    assert expl.image.shape == (H, W, 3)
    assert abs(expl.probs.sum() - 1) < 1e-5
    np.testing.assert_array_equal(expl.probs, again.probs)
    for boxes in (expl.part_boxes, expl.crop_boxes):
        if boxes is not None:
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    for rows, cols in expl.sample_coords.values():
        assert rows.min() >= 0 and rows.max() <= H - 1 and cols.min() >= 0 and cols.max() <= W - 1
    if expl.rollout is not None:
        assert expl.rollout.shape[1:] == expl.grid and np.isfinite(expl.rollout).all()
    gray = Image.fromarray(test_image[..., 0], mode="L")
    assert tiny_model.explain(gray).image.shape == (H, W, 3)


def test_explanation_rejects_boxes_outside_the_image():
    with pytest.raises(ValueError, match="inside"):
        Explanation(method="transfg", image=np.zeros((10, 10, 3), np.uint8), probs=np.ones(2) / 2,
                    labels=("a", "b"), part_boxes=np.array([[0, 0, 11, 5]]))


def test_unknown_config_arguments_are_rejected_before_allocation():
    with pytest.raises(ValueError, match="unknown"):
        create_model("transfg", num_classes=3, evil_arg=1)
    with pytest.raises(ValueError, match="embed_dim"):
        create_model("transfg", num_classes=3, embed_dim=10**7)
    with pytest.raises(KeyError, match="available"):
        create_model("vgg", num_classes=3)


@pytest.mark.slow
def test_paper_size_transfg_shapes():
    torch.manual_seed(0)
    model = create_model("transfg", num_classes=200).eval()
    assert model.num_tokens == 1370
    img = (np.random.default_rng(0).random((600, 600, 3)) * 255).astype(np.uint8)
    expl = model.explain(img, keep_attention=False)
    assert expl.image.shape == (448, 448, 3)
    assert expl.rollout.shape == (11, 37, 37)
    assert expl.part_tokens.shape == (12,) and (expl.part_tokens >= 1).all() and (expl.part_tokens < 1370).all()
    assert (expl.part_boxes[:, 2] - expl.part_boxes[:, 0] == 16).all()


def test_rams_trans_loss_all_scales_or_the_official_first_only():
    """The paper's loss sums every scale's CE; the official code's ("first") is scale 1's CE alone, so no gradient
    flows through the crop pass. Both return the summed logits the model predicts with."""
    import torch.nn.functional as F

    model = make_tiny("rams_trans").eval()  # no dropout: every forward is the same function
    torch.manual_seed(0)
    x = torch.randn(2, 3, *model.config.img_size)
    y = torch.tensor([1, 0])
    logits = model._forward(x)["logits"]  # [(2, C) scale 1, (2, C) scale 2]
    ce = [F.cross_entropy(lg, y).item() for lg in logits]
    loss_all, summed = model.loss(x, y)
    loss_first, _ = model.loss(x, y, scales="first")
    assert loss_all.item() == pytest.approx(ce[0] + ce[1], rel=1e-5)
    assert loss_first.item() == pytest.approx(ce[0], rel=1e-5)
    torch.testing.assert_close(summed, logits[0] + logits[1])
    # "first" trains exactly what CE(scale 1) trains: the crop pass adds no gradient (both class tokens are in every
    # pass, as in the official code, so scale 2's token still gets scale 1's attention gradient)
    def grads(loss_fn):
        model.zero_grad()
        loss_fn().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    by_hand = grads(lambda: F.cross_entropy(model._forward(x)["logits"][0], y))
    first = grads(lambda: model.loss(x, y, scales="first")[0])
    every = grads(lambda: model.loss(x, y)[0])
    assert by_hand.keys() == first.keys()
    for n in by_hand:
        torch.testing.assert_close(first[n], by_hand[n], msg=n)
    assert any(not torch.allclose(every[n], by_hand[n]) for n in by_hand)
    with pytest.raises(ValueError, match="scales"):
        model.loss(x, y, scales="second")
