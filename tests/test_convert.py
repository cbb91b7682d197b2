"""fgviz.convert: official TransFG checkpoints and Google ViT npz files, generated here in their exact layouts."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from fgviz.methods.backbones.vit.weights import read_vit_npz, resample_pos_embed
from fgviz.methods.base import ConversionError
from fgviz.methods.rams_trans import weights as rams_weights
from fgviz.methods.rams_trans.model import RAMSTrans
from fgviz.methods.transfg import weights as transfg_weights
from fgviz.methods.transfg.model import TransFG
from fgviz.weights import hub
from fgviz.weights.convert import main

convert_official_transfg = transfg_weights.convert_official
load_official_checkpoint = transfg_weights.load_official_checkpoint


def init_from_vit_npz(path, method, **kwargs):
    """The npz initialisation of either ViT method (what `python -m fgviz.convert vit-npz` calls)."""
    return (transfg_weights if method == "transfg" else rams_weights).init_from_npz(path, **kwargs)

D, HEADS, LAYERS, P, IMG, STRIDE, CLASSES, MLP = 32, 4, 3, 8, 40, 6, 5, 64  # LAYERS = ordinary + part layer
GRID = (IMG - P) // STRIDE + 1  # 6


# --------------------------------------------------------------------------------------------------------------------
# Official TransFG checkpoint: random tensors under the exact key layout of TACJu/TransFG's modeling.py


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=0.2: torch.randn(*s, generator=g) * scale  # noqa: E731
    sd = {
        "transformer.embeddings.position_embeddings": r(1, GRID * GRID + 1, D),
        "transformer.embeddings.cls_token": r(1, 1, D),
        "transformer.embeddings.patch_embeddings.weight": r(D, 3, P, P, scale=0.1),
        "transformer.embeddings.patch_embeddings.bias": r(D),
        "transformer.encoder.part_norm.weight": 1 + r(D),
        "transformer.encoder.part_norm.bias": r(D),
        "part_head.weight": r(CLASSES, D),
        "part_head.bias": r(CLASSES),
    }
    blocks = [f"transformer.encoder.layer.{i}." for i in range(LAYERS - 1)] + ["transformer.encoder.part_layer."]
    for b in blocks:
        for n in ("attention_norm", "ffn_norm"):
            sd[f"{b}{n}.weight"], sd[f"{b}{n}.bias"] = 1 + r(D), r(D)
        for n in ("query", "key", "value", "out"):
            # sharp q/k so the per-head argmax of the PSM is well separated (no float32-vs-float64 ties)
            sd[f"{b}attn.{n}.weight"] = r(D, D, scale=1.0 if n in ("query", "key") else 0.2)
            sd[f"{b}attn.{n}.bias"] = r(D)
        sd[f"{b}ffn.fc1.weight"], sd[f"{b}ffn.fc1.bias"] = r(MLP, D), r(MLP)
        sd[f"{b}ffn.fc2.weight"], sd[f"{b}ffn.fc2.bias"] = r(D, MLP), r(D)
    return sd


def official_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, num_heads: int, stride: int):
    """The official TransFG forward restated from its key layout (methods.md §1.2), float64, separate q/k/v."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    B = x.shape[0]
    emb = "transformer.embeddings."
    h = F.conv2d(x, sd[f"{emb}patch_embeddings.weight"], sd[f"{emb}patch_embeddings.bias"], stride=stride)
    h = h.flatten(2).transpose(1, 2)  # (B, gh*gw, D)
    h = torch.cat([sd[f"{emb}cls_token"].expand(B, -1, -1), h], 1) + sd[f"{emb}position_embeddings"]

    def lin(t, p):
        return t @ sd[f"{p}.weight"].T + sd[f"{p}.bias"]

    def ln(t, p):
        return F.layer_norm(t, (t.shape[-1],), sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-6)

    def block(p, h):
        Bn, N, C = h.shape
        d = C // num_heads
        y = ln(h, f"{p}attention_norm")
        split = lambda t: t.reshape(Bn, N, num_heads, d).transpose(1, 2)  # noqa: E731  (B, H, N, d)
        q, k, v = (split(lin(y, f"{p}attn.{n}")) for n in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)  # (B, H, N, N)
        ctx = (probs @ v).transpose(1, 2).reshape(Bn, N, C)
        h = h + lin(ctx, f"{p}attn.out")
        y = lin(F.gelu(lin(ln(h, f"{p}ffn_norm"), f"{p}ffn.fc1")), f"{p}ffn.fc2")
        return h + y, probs

    weights = []
    for i in range(LAYERS - 1):
        h, w = block(f"transformer.encoder.layer.{i}.", h)
        weights.append(w)
    last = weights[0]
    for w in weights[1:]:
        last = w @ last  # A_{L-1} ... A_1, no identity, no renormalisation
    idx = last[:, :, 0, 1:].argmax(-1) + 1  # (B, H)
    parts = h[torch.arange(B)[:, None], idx]  # (B, H, D)
    z, _ = block("transformer.encoder.part_layer.", torch.cat([h[:, :1], parts], 1))
    z = ln(z, "transformer.encoder.part_norm")
    return lin(z[:, 0], "part_head"), idx


@pytest.fixture
def official_ckpt(tmp_path):
    sd = official_state()
    path = tmp_path / "CUB_checkpoint.bin"
    torch.save({"model": sd, "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}}}, path)
    return path, sd


def test_official_checkpoint_converts_to_same_logits(official_ckpt):
    path, sd = official_ckpt
    model = convert_official_transfg(load_official_checkpoint(path), num_heads=HEADS, img_size=IMG)
    c = model.config
    assert (c.patch_size, c.stride, c.embed_dim, c.depth, c.num_heads, c.num_classes) == (P, STRIDE, D, 3, HEADS, 5)
    assert c.grid == (GRID, GRID)
    assert c.mlp_ratio * D == MLP
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    ref, ref_idx = official_forward(sd, x, HEADS, STRIDE)
    with torch.no_grad():
        out = model._forward(x)
    assert torch.equal(out["part_tokens"], ref_idx)
    torch.testing.assert_close(out["logits"].double(), ref, atol=1e-4, rtol=1e-4)
    # explicit qkv concatenation order: rows q, k, v
    qkv = model.vit.blocks[0].attn.qkv.weight
    assert torch.equal(qkv[D : 2 * D], sd["transformer.encoder.layer.0.attn.key.weight"])
    assert torch.equal(model.vit.blocks[-1].mlp.fc1.weight, sd["transformer.encoder.part_layer.ffn.fc1.weight"])


def test_cli_transfg_official_round_trips_through_hub_load(official_ckpt, tmp_path):
    path, sd = official_ckpt
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"bird {i}" for i in range(CLASSES)) + "\n")
    out = tmp_path / "converted"
    assert (
        main(
            [
                "transfg-official",
                str(path),
                "--out",
                str(out),
                "--num-heads",
                str(HEADS),
                "--img-size",
                str(IMG),
                "--stride",
                str(STRIDE),
                "--num-classes",
                str(CLASSES),
                "--labels",
                str(labels),
            ]
        )
        == 0
    )
    model = hub.load(str(out), device="cpu", cache=False)  # strict safetensors load
    assert isinstance(model, TransFG)
    assert model.labels == tuple(f"bird {i}" for i in range(CLASSES))
    assert len(model.provenance["source_sha256"]) == 64
    x = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    ref, _ = official_forward(sd, x, HEADS, STRIDE)
    with torch.no_grad():
        torch.testing.assert_close(model(x).double(), ref, atol=1e-4, rtol=1e-4)


def test_official_geometry_errors(official_ckpt):
    _, sd = official_ckpt
    with pytest.raises(ConversionError, match="stride 8"):
        convert_official_transfg(sd, num_heads=HEADS, img_size=IMG, stride=8)
    with pytest.raises(ConversionError, match="num_heads"):
        convert_official_transfg(sd, num_heads=5, img_size=IMG)
    with pytest.raises(ConversionError, match="part_head has 5"):
        convert_official_transfg(sd, num_heads=HEADS, img_size=IMG, num_classes=200)
    bad = dict(sd)
    bad.pop("transformer.encoder.layer.1.attn.value.bias")
    with pytest.raises(ConversionError, match=r"missing \['transformer.encoder.layer.1.attn.value.bias'\]"):
        convert_official_transfg(bad, num_heads=HEADS, img_size=IMG)
    bad = dict(sd, **{"transformer.encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="unexpected"):
        convert_official_transfg(bad, num_heads=HEADS, img_size=IMG)
    bad = dict(sd, **{"transformer.encoder.layer.0.ffn.fc2.weight": torch.zeros(D, MLP + 1)})
    with pytest.raises(ConversionError, match=r"ffn\.fc2\.weight: shape"):
        convert_official_transfg(bad, num_heads=HEADS, img_size=IMG)


def test_official_loader_refuses_pickled_objects_and_strips_ddp_prefix(official_ckpt, tmp_path):
    _, sd = official_ckpt
    evil = tmp_path / "evil.bin"
    torch.save({"model": sd, "args": argparse.Namespace(lr=0.03)}, evil)
    with pytest.raises(ConversionError, match="weights_only"):
        load_official_checkpoint(evil)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk\n" * 10)
    with pytest.raises(ConversionError, match="not a"):
        load_official_checkpoint(junk)
    ddp = tmp_path / "ddp.bin"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, ddp)
    assert set(load_official_checkpoint(ddp)) == set(sd)


# --------------------------------------------------------------------------------------------------------------------
# Google ViT npz: a random timm ViT exported to Flax names with the inverse of timm's _load_weights transposes


def vit_to_flax_npz(vit: VisionTransformer, path, *, head_classes: int = 7) -> None:
    """Write `vit` as an original Google ViT npz (ImageNet-21k layout: Flax names, HWIO/(in, heads, d) kernels)."""
    n = lambda t: t.detach().numpy().astype(np.float32)  # noqa: E731
    C = vit.embed_dim
    h = vit.blocks[0].attn.num_heads
    d = C // h
    w = {
        "embedding/kernel": n(vit.patch_embed.proj.weight.permute(2, 3, 1, 0)),  # (D, 3, P, P) -> (P, P, 3, D)
        "embedding/bias": n(vit.patch_embed.proj.bias),
        "cls": n(vit.cls_token),  # (1, 1, D)
        "Transformer/posembed_input/pos_embedding": n(vit.pos_embed),  # (1, 1 + g*g, D)
        "Transformer/encoder_norm/scale": n(vit.norm.weight),
        "Transformer/encoder_norm/bias": n(vit.norm.bias),
        # ImageNet-21k npz files carry a representation layer and a 21k head; the converters ignore both
        "pre_logits/kernel": np.ones((C, C), np.float32),
        "pre_logits/bias": np.zeros(C, np.float32),
        "head/kernel": np.ones((C, head_classes), np.float32),
        "head/bias": np.zeros(head_classes, np.float32),
    }
    for i, blk in enumerate(vit.blocks):
        b = f"Transformer/encoderblock_{i}/"
        w[f"{b}LayerNorm_0/scale"], w[f"{b}LayerNorm_0/bias"] = n(blk.norm1.weight), n(blk.norm1.bias)
        w[f"{b}LayerNorm_2/scale"], w[f"{b}LayerNorm_2/bias"] = n(blk.norm2.weight), n(blk.norm2.bias)
        qw, kw, vw = blk.attn.qkv.weight.chunk(3)  # (D, D) each, rows q, k, v
        qb, kb, vb = blk.attn.qkv.bias.chunk(3)
        for name, wt, bs in (("query", qw, qb), ("key", kw, kb), ("value", vw, vb)):
            w[f"{b}MultiHeadDotProductAttention_1/{name}/kernel"] = n(wt.T.reshape(C, h, d))  # (in, heads, d)
            w[f"{b}MultiHeadDotProductAttention_1/{name}/bias"] = n(bs.reshape(h, d))
        w[f"{b}MultiHeadDotProductAttention_1/out/kernel"] = n(blk.attn.proj.weight.reshape(C, h, d).permute(1, 2, 0))
        w[f"{b}MultiHeadDotProductAttention_1/out/bias"] = n(blk.attn.proj.bias)
        w[f"{b}MlpBlock_3/Dense_0/kernel"], w[f"{b}MlpBlock_3/Dense_0/bias"] = (
            n(blk.mlp.fc1.weight.T),
            n(blk.mlp.fc1.bias),
        )
        w[f"{b}MlpBlock_3/Dense_1/kernel"], w[f"{b}MlpBlock_3/Dense_1/bias"] = (
            n(blk.mlp.fc2.weight.T),
            n(blk.mlp.fc2.bias),
        )
    np.savez(path, **w)


NPZ_GRID = 4  # source: 32 px / 8 px patches


@pytest.fixture
def vit_npz(tmp_path):
    torch.manual_seed(0)
    src = VisionTransformer(
        img_size=NPZ_GRID * P,
        patch_size=P,
        embed_dim=D,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=MLP / D,
        num_classes=0,
    ).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # LayerNorm weights/biases away from 1/0 too
    path = tmp_path / "ViT-T_8.npz"
    vit_to_flax_npz(src, path)
    return path, src


def test_npz_export_matches_timm_loader(vit_npz):
    """The test's exporter is the exact inverse of timm's Flax loader (so the npz is in the real layout)."""
    path, src = vit_npz
    state, geo = read_vit_npz(path)
    assert geo == {
        "embed_dim": D,
        "depth": LAYERS,
        "num_heads": HEADS,
        "mlp_dim": MLP,
        "patch_size": P,
        "grid": NPZ_GRID,
    }
    for k, v in src.state_dict().items():
        assert torch.equal(state[k], v), k


def expected_pos(src_pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """scipy.ndimage.zoom(order=1) of the grid, as the official TransFG / RAMS-Trans loaders."""
    ndimage = pytest.importorskip("scipy.ndimage")
    g0 = NPZ_GRID
    old = src_pos[0, 1:].reshape(g0, g0, D).double().numpy()
    new = ndimage.zoom(old, (grid[0] / g0, grid[1] / g0, 1), order=1)
    assert new.shape[:2] == grid
    return torch.from_numpy(new).reshape(1, -1, D).float()


def test_npz_init_transfg(vit_npz):
    path, src = vit_npz
    model = init_from_vit_npz(path, "transfg", num_classes=CLASSES, img_size=IMG)  # stride 3/4 of 8 = 6
    assert isinstance(model, TransFG)
    assert model.config.stride == STRIDE
    assert model.grid == (GRID, GRID)
    own, ref = model.vit.state_dict(), src.state_dict()
    for i in range(LAYERS - 1):  # blocks 0..L-2 loaded
        for k in [k for k in ref if k.startswith(f"blocks.{i}.")]:
            assert torch.equal(own[k], ref[k]), k
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "norm.weight", "norm.bias"):
        assert torch.equal(own[k], ref[k]), k  # the encoder norm becomes part_norm
    last = f"blocks.{LAYERS - 1}."
    assert not torch.equal(own[f"{last}attn.qkv.weight"], ref[f"{last}attn.qkv.weight"])  # part layer random
    assert own["head.weight"].shape == (CLASSES, D)
    assert own["pos_embed"].shape == (1, 1 + GRID * GRID, D)
    assert torch.equal(own["pos_embed"][:, :1], ref["pos_embed"][:, :1])  # CLS row kept
    torch.testing.assert_close(
        own["pos_embed"][:, 1:], expected_pos(ref["pos_embed"], (GRID, GRID)), atol=1e-6, rtol=1e-5
    )
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, IMG, IMG))).all()


def test_npz_init_rams_trans(vit_npz):
    path, src = vit_npz
    model = init_from_vit_npz(path, "rams_trans", num_classes=CLASSES, img_size=48)  # 6x6 grid of 8-px patches
    assert isinstance(model, RAMSTrans)
    assert model.grid == (6, 6)
    own, ref = model.vit.state_dict(), src.state_dict()
    for k, v in ref.items():
        if k.startswith(("blocks.", "norm.", "patch_embed.")) or k == "cls_token":
            assert torch.equal(own[k], v), k  # every block, the last one too
    S = model.config.num_scales
    assert torch.equal(own["reg_token"], ref["cls_token"].expand(1, S - 1, D))  # every scale token = CLS
    assert torch.equal(own["pos_embed"][:, :S], ref["pos_embed"][:, :1].expand(1, S, D))  # CLS row per scale
    torch.testing.assert_close(own["pos_embed"][:, S:], expected_pos(ref["pos_embed"], (6, 6)), atol=1e-6, rtol=1e-5)


def test_cli_vit_npz(vit_npz, tmp_path):
    path, src = vit_npz
    out = tmp_path / "init"
    assert (
        main(
            [
                "vit-npz",
                str(path),
                "--out",
                str(out),
                "--method",
                "rams_trans",
                "--num-classes",
                "3",
                "--img-size",
                "48",
            ]
        )
        == 0
    )
    model = hub.load(str(out), device="cpu", cache=False)
    assert isinstance(model, RAMSTrans)
    assert model.weights_kind == "random"
    assert torch.equal(model.vit.blocks[-1].mlp.fc2.weight, src.blocks[-1].mlp.fc2.weight)


def test_npz_errors(tmp_path):
    bad = tmp_path / "not_vit.npz"
    np.savez(bad, foo=np.zeros(3))
    with pytest.raises(ConversionError, match="not a Google ViT npz"):
        read_vit_npz(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match="not a readable"):
        read_vit_npz(junk)


def test_resample_pos_embed_keeps_prefix_and_corners():
    pos = torch.randn(1, 2 + 9, 4)
    out = resample_pos_embed(pos, (5, 5), num_prefix_tokens=2, old_grid=(3, 3))
    assert out.shape == (1, 2 + 25, 4)
    assert torch.equal(out[:, :2], pos[:, :2])
    old, new = pos[0, 2:].reshape(3, 3, 4), out[0, 2:].reshape(5, 5, 4)
    for (r, c), (R, C) in {(0, 0): (0, 0), (0, 2): (0, 4), (2, 2): (4, 4), (1, 1): (2, 2)}.items():
        torch.testing.assert_close(new[R, C], old[r, c])  # align_corners=True: corners and centre fixed
