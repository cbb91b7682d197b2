"""fgviz.weights.timm_backbones: timm Hub checkpoints wrapped as fgviz methods, from fake repos on disk (offline)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import timm
import torch
from timm.models._hub import save_for_hf

from fgviz.core.explanation import Explanation
from fgviz.methods import create_model
from fgviz.methods.rams_trans.model import RAMSTrans
from fgviz.methods.tasn.model import TASN, TASNConfig
from fgviz.methods.transfg.model import TransFG
from fgviz.weights import hub, timm_backbones
from fgviz.weights.format import save_model
from fgviz.weights.timm_backbones import init_from_timm, load_timm_backbone

VIT = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
RESNET = "resnet18.tv_in1k"


def make_repo(
    root: Path,
    name: str,
    arch: str,
    *,
    legacy_config: dict | None = None,
    pickle_only: bool = False,
    seed: int = 0,
    **kwargs,
) -> torch.nn.Module:
    """Write ``root/timm/<name>`` as timm writes a Hub repo (config.json + model.safetensors) for a random model."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, **kwargs).eval()
    folder = root / "timm" / name
    save_for_hf(model, str(folder), safe_serialization=not pickle_only)
    if legacy_config is not None:  # older Hub repos: no model_args, preprocessing in pretrained_cfg only
        cfg = json.loads((folder / "config.json").read_text())
        cfg.pop("model_args", None)
        cfg["pretrained_cfg"].update(legacy_config)
        (folder / "config.json").write_text(json.dumps(cfg))
    return model


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """Route timm_backbones' hub_download to tmp_path/<repo>/<file>, with hub_download's error for a missing file."""
    calls = []

    def fake(repo_id, filename, revision, *, what, shown_revision=None):
        calls.append((repo_id, filename))
        path = tmp_path / repo_id / filename
        if not path.is_file():
            raise hub.WeightsError(f"{what}: repo {repo_id!r} on the Hub has no {filename}")
        return path

    monkeypatch.setattr(timm_backbones, "hub_download", fake)
    hub.clear_cache()
    return tmp_path, calls


@pytest.fixture
def vit_repo(fake_hub):
    root, calls = fake_hub
    src = make_repo(root, VIT, "vit_tiny_patch16_224", img_size=64, depth=2)
    return src, calls


def test_vit_as_transfg_is_the_pretrained_vit(vit_repo, test_image):
    src, calls = vit_repo
    model = hub.load(f"timm:{VIT}", device="cpu", cache=False)
    assert isinstance(model, TransFG)
    assert model.weights_kind == "backbone"
    assert sorted(f for _, f in calls) == ["config.json", "model.safetensors"]  # nothing else, never a pickle
    assert all(r == f"timm/{VIT}" for r, _ in calls)
    assert "not fine-tuned for TransFG" in model.provenance["description"]
    c = model.config
    assert (c.patch_size, c.stride, c.img_size, c.num_heads, c.depth) == (16, 16, (64, 64), 3, 2)
    assert model.pretrained_cfg.mean == (0.5, 0.5, 0.5)
    assert model.pretrained_cfg.crop_pct == pytest.approx(0.9)
    assert model.labels[0].startswith("tench")
    assert len(model.labels) == 1000
    own, ref = model.vit.state_dict(), src.state_dict()
    assert set(own) == set(ref)
    assert all(torch.equal(own[k], ref[k]) for k in ref)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.vit(x), src(x))  # the wrapped ViT computes the same function
    expl = model.explain(test_image)
    assert isinstance(expl, Explanation)
    assert expl.weights_kind == "backbone"
    assert expl.grid == (4, 4)


def test_vit_as_rams_trans(vit_repo, test_image):
    """Backbone mode: one CLS read by every scale, so scale 1 is the checkpoint's own forward; every tensor is the
    checkpoint's (shared, not copied)."""
    src, _ = vit_repo
    model = hub.load(f"timm:{VIT}#rams_trans", device="cpu", cache=False)
    assert isinstance(model, RAMSTrans)
    assert model.weights_kind == "backbone"
    assert model.config.shared_cls and model.num_prefix_tokens == 1
    own, ref = model.vit.state_dict(), src.state_dict()
    assert set(own) == set(ref)
    assert all(torch.equal(own[k], v) for k, v in ref.items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model._forward(x)
        torch.testing.assert_close(out["logits"][0], src(x))  # scale 1 = the checkpoint's forward
    assert load_timm_backbone(VIT, method="rams_trans").method == "rams_trans"
    expl = model.explain(test_image)
    assert expl.scale_probs.shape == (2, 1000)
    assert expl.num_prefix_tokens == 1


def test_resnet_as_tasn(fake_hub, test_image):
    root, _calls = fake_hub
    src = make_repo(root, RESNET, "resnet18", legacy_config={"input_size": [3, 64, 64], "crop_pct": 0.875})
    model = load_timm_backbone(f"timm:{RESNET}")
    assert isinstance(model, TASN)
    assert model.weights_kind == "backbone"
    assert "not fine-tuned for TASN" in model.provenance["description"]
    c = model.config
    assert (c.att_size, c.out_size, c.img_size, model.pretrained_cfg.crop_pct) == (64, 64, (146, 146), 0.875)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.fc(model.backbone(x)), src(x))  # prediction head = pretrained ResNet
        for fc in (model.fc1, model.fc2, model.att_fc):
            assert torch.equal(fc.weight, src.fc.weight)
        feats = model.att_net.forward_features(x)  # (2, 512, 8, 8): same weights at output stride 8
        assert feats.shape == (2, 512, 8, 8)
        torch.testing.assert_close(model.att_head(feats), feats)  # identity attention head: X = the features
        _X, att_logits = model.attention_features(x)
        torch.testing.assert_close(att_logits, src.fc(feats.mean((2, 3))), atol=1e-5, rtol=1e-5)
    expl = model.explain(test_image)
    assert expl.probs.shape == (1000,)
    assert expl.weights_kind == "backbone"
    # a backbone model saved in fgviz format loads back strictly
    out = save_model(model, root / "saved", provenance=model.provenance)
    again = hub.load(str(out), device="cpu", cache=False)
    assert again.weights_kind == "backbone"
    assert all(
        torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=False)
    )


def test_offline_cache_without_monkeypatch(tmp_path, monkeypatch):
    """The real hub_download path with HF_HUB_OFFLINE=1 and a pre-filled cache (no network)."""
    repos = tmp_path / "repos"
    src = make_repo(repos, RESNET, "resnet18", legacy_config={"input_size": [3, 32, 32]})
    cache = tmp_path / "cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / f"models--timm--{RESNET}" / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        (snap / f).write_bytes((repos / "timm" / RESNET / f).read_bytes())
    (cache / f"models--timm--{RESNET}" / "refs").mkdir()
    (cache / f"models--timm--{RESNET}" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = hub.load(f"timm:{RESNET}", device="cpu", cache=False)
    assert isinstance(model, TASN)
    assert torch.equal(model.fc.weight, src.fc.weight)
    with pytest.raises(hub.WeightsError, match=r"timm/resnet34\.tv_in1k.*offline"):
        hub.load("timm:resnet34.tv_in1k", device="cpu", cache=False)


def test_backbone_errors(fake_hub):
    root, _ = fake_hub
    make_repo(root, "resnet18.pickle_only", "resnet18", pickle_only=True)
    with pytest.raises(hub.WeightsError, match=r"no model\.safetensors"):
        load_timm_backbone("resnet18.pickle_only")
    make_repo(root, RESNET, "resnet18", legacy_config={"input_size": [3, 32, 32]})
    with pytest.raises(hub.WeightsError, match="is a ResNet; transfg wraps ViT checkpoints"):
        load_timm_backbone(RESNET, method="transfg")
    with pytest.raises(KeyError, match="unknown method"):
        load_timm_backbone(RESNET, method="vgg")
    make_repo(root, "resnet18d.test", "resnet18d", legacy_config={"input_size": [3, 32, 32]})
    with pytest.raises(hub.WeightsError, match="not a plain timm module"):
        load_timm_backbone("resnet18d.test")  # deep stem: not TASN's ResNet
    make_repo(root, "vit_gap.test", "vit_tiny_patch16_224", img_size=32, depth=1, class_token=False, global_pool="avg")
    with pytest.raises(hub.WeightsError, match="one CLS token"):
        load_timm_backbone("vit_gap.test")
    make_repo(root, "vit_headless.test", "vit_tiny_patch16_224", img_size=32, depth=1, num_classes=0)
    with pytest.raises(hub.WeightsError, match="no classifier head"):
        load_timm_backbone("vit_headless.test")
    cfg = root / "timm" / RESNET / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "model_args": {"drop_path_rate": 0.1, "foo": 1}}))
    with pytest.raises(hub.WeightsError, match="unsupported model_args"):
        load_timm_backbone(RESNET)


@pytest.mark.skipif(
    "att_block" not in {f.name for f in dataclasses.fields(TASNConfig)},
    reason="bottleneck attention nets need TASNConfig.att_block",
)
def test_bottleneck_resnet_as_tasn(fake_hub, test_image):
    root, _ = fake_hub
    src = make_repo(root, "resnet26.test", "resnet26", channels=(8, 8, 16, 16))  # bottleneck, 64 features
    model = load_timm_backbone("resnet26.test")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.fc(model.backbone(x)), src(x))
        feats = model.att_net.forward_features(x)
        assert feats.shape == (1, 64, 4, 4)
        torch.testing.assert_close(model.att_head(feats), feats)
    assert model.explain(test_image).probs.shape == (1000,)


def test_init_from_timm_for_training(fake_hub):
    root, _ = fake_hub
    src = make_repo(
        root, "vit_tiny_patch16_224.orig_in21k", "vit_tiny_patch16_224", img_size=32, depth=2, num_classes=0
    )
    kw = dict(num_classes=7, img_size=(48, 48), crop_pct=1.0, patch_size=16, embed_dim=192, depth=2, num_heads=3)
    torch.manual_seed(0)
    tf = create_model("transfg", **kw, stride=12)  # 2x2 pretrained grid -> 3x3 at stride 12
    left = init_from_timm(tf, "timm:vit_tiny_patch16_224.orig_in21k")
    assert "vit.head.weight" in left
    assert "vit.blocks.1.attn.qkv.weight" in left
    assert "vit.blocks.0.norm1.weight" not in left
    assert torch.equal(tf.vit.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert not torch.equal(tf.vit.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)  # part layer random
    assert tf.vit.pos_embed.shape == (1, 10, 192)
    assert torch.equal(tf.vit.pos_embed[:, 0], src.pos_embed[:, 0])
    rams = create_model("rams_trans", **kw)
    assert sorted(init_from_timm(rams, "vit_tiny_patch16_224.orig_in21k")) == ["vit.head.bias", "vit.head.weight"]
    assert torch.equal(rams.vit.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    assert torch.equal(rams.vit.reg_token[0, 0], src.cls_token[0, 0])

    r18 = make_repo(root, RESNET, "resnet18")
    tasn = create_model(
        "tasn",
        num_classes=7,
        img_size=(64, 64),
        att_size=32,
        out_size=32,
        att_layers=(1, 1, 1, 1),
        att_channels=(8, 8, 16, 16),
        backbone_block="basic",
        backbone_layers=(2, 2, 2, 2),
    )
    left = init_from_timm(tasn, RESNET)  # the backbone is a resnet18, the attention net is not
    assert torch.equal(tasn.backbone.conv1.weight, r18.conv1.weight)
    assert any(k.startswith("att_net.") for k in left)
    assert not any(k.startswith("backbone.") for k in left)
    with pytest.raises(hub.WeightsError, match="needs a timm VisionTransformer, got ResNet"):
        init_from_timm(tf, RESNET)


def test_local_timm_folder_is_read_like_a_download(tmp_path):
    """A backbone folder in timm's layout (fgviz's pretraining writes one): same validation, never a pickle."""
    from fgviz.weights.timm_backbones import read_timm_folder

    with pytest.raises(hub.WeightsError, match=r"has no config\.json"):
        read_timm_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 4,
                                                      "model_args": {"layers": [1, 1, 1, 1]}}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(hub.WeightsError, match="not a readable safetensors file"):
        read_timm_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 4,
                                                      "model_args": {"act_layer": "os.system"}}))
    with pytest.raises(hub.WeightsError, match="unsupported model_args"):
        read_timm_folder(tmp_path)
