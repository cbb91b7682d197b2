"""Real fine-grained recognisers from the Hub, with tiny checkpoints written by the source libraries themselves and
served by the loopback Hub (the real `hf_hub_download`):

- a timm `vit_large_patch14_clip_336`-architecture ViT (CLIP pre-norm, patch 14, eps 1e-5) at small widths with
  `label_names` and `label_descriptions`, as timm's iNaturalist 2021 fine-tunes are published;
- a timm `convnext_large_mlp`-architecture ConvNeXt, wrapped by TASN;
- a transformers `ViTForImageClassification` saved by `save_pretrained`, with its `ViTImageProcessor`.

Each is checked against its own library's forward on the same pixels, and its own preprocessing on the same photo;
the ViT methods loaded from one source share its tensors and compute their common pass once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.models._hub import save_for_hf

import fgviz
from fgviz.methods.backbones.vit import trunk as trunk_mod
from fgviz.methods.rams_trans.model import RAMSTrans
from fgviz.methods.tasn.model import TASN
from fgviz.methods.transfg.model import TransFG
from fgviz.methods.vit.model import ViT
from fgviz.weights import hub
from fgviz.weights.cache import model_bytes
from fgviz.weights.format import WeightsError, save_model
from tests.conftest import make_tiny

ROOT = Path(__file__).resolve().parents[1]
CLIP = "vit_large_patch14_clip_336.tiny_inat21"
CONVNEXT = "convnext_large_mlp.tiny_inat21"
SPECIES = [f"{i:05d}_Animalia_Chordata_Aves_Passeriformes_Family_Genus_species{i}" for i in range(7)]
COMMON = {name: f"Bird species {i}" for i, name in enumerate(SPECIES)}
HF_REPO = "org/tiny-vit-cub"


def timm_files(tmp: Path, name: str, arch: str, seed: int = 0, **kwargs) -> tuple[torch.nn.Module, dict[str, bytes]]:
    """A random timm checkpoint of `arch` with iNat-style label names, written by timm's own `save_for_hf`."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=len(SPECIES), **kwargs).eval()
    folder = tmp / name
    save_for_hf(model, str(folder), model_config={"label_names": SPECIES, "label_descriptions": COMMON},
                safe_serialization=True)
    return model, {p.name: p.read_bytes() for p in folder.iterdir()}


def sharpen(model: torch.nn.Module, factor: float = 6.0) -> None:
    """Scale q/k so random-weight attention has structure (the DPPM finds a component, the PSM a clear argmax)."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("attn.qkv.weight"):
                p.mul_(factor)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Source models and repo files: the CLIP ViT, the ConvNeXt and the transformers ViT (+ its processor)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    tmp = tmp_path_factory.mktemp("src")
    torch.manual_seed(0)
    clip = timm.create_model("vit_large_patch14_clip_336", pretrained=False, num_classes=len(SPECIES), img_size=56,
                             embed_dim=32, depth=3, num_heads=2,
                             pretrained_cfg_overlay={"crop_mode": "center", "crop_pct": 0.9}).eval()
    sharpen(clip)
    folder = tmp / CLIP
    save_for_hf(clip, str(folder), model_config={"label_names": SPECIES, "label_descriptions": COMMON},
                safe_serialization=True)
    clip_files = {p.name: p.read_bytes() for p in folder.iterdir()}
    convnext, convnext_files = timm_files(tmp, CONVNEXT, "convnext_large_mlp", depths=(1, 1, 1, 1),
                                          dims=(8, 16, 24, 32), head_hidden_size=32,
                                          pretrained_cfg_overlay={"input_size": (3, 64, 64), "crop_pct": 1.0})
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, image_size=48,
                    patch_size=8, num_labels=5, layer_norm_eps=1e-6, hidden_act="gelu_new",
                    id2label={i: f"Car model {i}" for i in range(5)}, label2id={f"Car model {i}": i for i in range(5)})
    torch.manual_seed(1)
    vit = ViTForImageClassification(cfg).eval()
    with torch.no_grad():
        for n, p in vit.named_parameters():
            if n.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(3.0)
    hf_folder = tmp / "hf"
    vit.save_pretrained(str(hf_folder))
    processor = ViTImageProcessor(size={"height": 48, "width": 48}, image_mean=[0.4, 0.45, 0.5],
                                  image_std=[0.2, 0.25, 0.3])
    processor.save_pretrained(str(hf_folder))
    (hf_folder / "README.md").write_text("---\nlicense: apache-2.0\ndatasets:\n- stanford_cars\n---\n# tiny\n")
    hf_files = {p.name: p.read_bytes() for p in hf_folder.iterdir()}
    repos = {f"timm/{CLIP}": {"main": clip_files}, f"timm/{CONVNEXT}": {"main": convnext_files},
             HF_REPO: {"main": hf_files}}
    return {"clip": clip, "convnext": convnext, "vit": vit, "processor": processor, "repos": repos}


@pytest.fixture
def loopback(checkpoints, hf_env, serve):
    server = serve(checkpoints["repos"])
    trunk_mod.clear_memo()
    yield server
    trunk_mod.clear_memo()


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(3)
    img = (rng.random((70, 95, 3)) * 255).astype(np.uint8)  # not square: the crop mode matters
    img[20:40, 50:70] = (250, 30, 30)
    return Image.fromarray(img)


def test_clip_vit_loads_as_every_vit_method_with_its_labels_and_probabilities(checkpoints, loopback, photo) -> None:
    clip = checkpoints["clip"]
    vit = fgviz.load(f"timm:{CLIP}#vit", device="cpu")
    assert isinstance(vit, ViT)
    assert (vit.config.pre_norm, vit.config.norm_eps, vit.config.patch_size) == (True, 1e-5, 14)
    assert vit.labels == tuple(COMMON[n] for n in SPECIES)  # label_descriptions over label_names
    assert vit.provenance["dataset"].startswith("iNaturalist 2021")
    # preprocessing: timm's own eval transform of the same photo, from the repo's pretrained_cfg
    written = json.loads(checkpoints["repos"][f"timm/{CLIP}"]["main"]["config.json"])["pretrained_cfg"]
    assert (written["crop_mode"], written["crop_pct"], written["interpolation"]) == ("center", 0.9, "bicubic")
    data_cfg = timm.data.resolve_data_config({}, pretrained_cfg=written)
    ref_x = timm.data.create_transform(**data_cfg)(photo).unsqueeze(0)
    x, _ = vit.preprocess(photo)
    torch.testing.assert_close(x, ref_x, atol=1e-5, rtol=0)
    # probabilities: timm's forward on the same pixels
    e = vit.explain(photo)
    with torch.no_grad():
        ref = torch.softmax(clip(x).double(), -1)[0].numpy()
    np.testing.assert_allclose(e.probs, ref, atol=1e-4)
    assert e.labels == vit.labels
    for method, cls in (("transfg", TransFG), ("rams_trans", RAMSTrans)):
        model = fgviz.load(f"timm:{CLIP}#{method}", device="cpu")
        assert isinstance(model, cls)
        other = model.explain(photo)
        assert other.grid == (4, 4) and other.weights_kind == "backbone"
    # TransFG's column carries the backbone's own prediction beside the part-layer path's
    np.testing.assert_allclose(fgviz.load(f"timm:{CLIP}#transfg", device="cpu").explain(photo)
                               .extras["backbone_probs"], ref, atol=1e-4)


def test_vit_methods_of_one_source_share_its_tensors_and_the_cache_counts_them_once(loopback) -> None:
    models = [fgviz.load(f"timm:{CLIP}#{m}", device="cpu") for m in ("rams_trans", "vit", "transfg")]
    ptrs = {m.vit.blocks[1].attn.qkv.weight.data_ptr() for m in models}
    assert len(ptrs) == 1  # one copy of the weights, whatever the order of loads
    assert len({m.vit.pos_embed.data_ptr() for m in models}) == 1
    assert len({m.vit.head.weight.data_ptr() for m in models}) == 1
    one = model_bytes(models[0])
    assert hub.MODELS.nbytes == one  # three entries, counted once
    assert len(hub.MODELS) == 3


def _block_calls(models) -> list[int]:
    calls = [0]
    handles = [blk.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
               for m in models for blk in m.vit.blocks]
    return calls, handles


@pytest.mark.parametrize("order", [("vit", "transfg", "rams_trans"), ("rams_trans", "transfg", "vit")])
def test_the_common_pass_is_computed_once_and_changes_nothing(loopback, photo, order) -> None:
    models = {m: fgviz.load(f"timm:{CLIP}#{m}", device="cpu") for m in order}
    L = len(models["vit"].vit.blocks)
    alone = {}
    for m in order:  # each explained on its own: nothing shared
        trunk_mod.clear_memo()
        alone[m] = models[m].explain(photo)
    trunk_mod.clear_memo()
    calls, handles = _block_calls(models.values())
    try:
        together = {m: models[m].explain(photo) for m in order}
    finally:
        for h in handles:
            h.remove()
    # one pass of the L blocks over the image, the part layer on [CLS + PSM tokens], RAMS-Trans's zoomed crop
    assert calls[0] == L + 1 + L
    for m in order:
        np.testing.assert_allclose(together[m].probs, alone[m].probs, atol=1e-6)
        np.testing.assert_allclose(together[m].rollout, alone[m].rollout, atol=1e-6)
    assert np.array_equal(together["transfg"].part_tokens, alone["transfg"].part_tokens)
    assert np.array_equal(together["rams_trans"].crop_boxes, alone["rams_trans"].crop_boxes)
    np.testing.assert_allclose(together["rams_trans"].scale_probs[0], together["vit"].probs, atol=1e-6)


def test_a_changed_weight_is_a_new_pass(loopback, photo) -> None:
    vit = fgviz.load(f"timm:{CLIP}#vit", device="cpu")
    before = vit.explain(photo)
    with torch.no_grad():
        vit.vit.blocks[0].mlp.fc2.bias[:4].add_(1.0)  # not a uniform shift, which the next LayerNorm would undo
    try:
        after = vit.explain(photo)
        assert not np.allclose(before.probs, after.probs, atol=1e-6)
    finally:
        with torch.no_grad():
            vit.vit.blocks[0].mlp.fc2.bias[:4].sub_(1.0)


def test_convnext_as_tasn(checkpoints, loopback, photo) -> None:
    src = checkpoints["convnext"]
    model = fgviz.load(f"timm:{CONVNEXT}", device="cpu")  # TASN is the ConvNeXt's method
    assert isinstance(model, TASN)
    c = model.config
    assert (c.trunk, c.att_size, c.out_size, c.img_size) == ("convnext", 64, 64, (146, 146))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.fc(model.backbone(x)), src(x))  # the prediction head is the ConvNeXt's
        dilated = timm.create_model("convnext_large_mlp", pretrained=False, num_classes=len(SPECIES),
                                    depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), head_hidden_size=32, output_stride=16)
        dilated.load_state_dict(src.state_dict())
        feats = model.att_net.forward_features(x)
        torch.testing.assert_close(feats, dilated.forward_features(x))  # timm's own output-stride-16 ConvNeXt
        assert feats.shape[-1] == 4
    for net in (model.backbone, model.att_net):  # one copy of the weights for both networks
        assert net.stages[2].blocks[0].conv_dw.weight.data_ptr() == model.backbone.stages[2].blocks[0].conv_dw \
            .weight.data_ptr()
    assert model.fc.weight.data_ptr() == model.fc1.weight.data_ptr() == model.att_fc.weight.data_ptr()
    e = model.explain(photo)
    assert e.trilinear.shape[0] == 32 and e.labels[0] == COMMON[SPECIES[0]]
    assert np.isfinite(e.sample_coords["structure"][0]).all()


def test_transformers_vit_classifier(checkpoints, loopback, photo) -> None:
    ref_model, processor = checkpoints["vit"], checkpoints["processor"]
    model = fgviz.load(HF_REPO, device="cpu")  # default method: the ViT baseline (it is that model)
    assert isinstance(model, ViT) and model.weights_kind == "hub"
    assert model.labels == tuple(f"Car model {i}" for i in range(5))
    assert (model.config.norm_eps, model.config.act_layer) == (1e-6, "gelu_tanh")
    assert model.pretrained_cfg.mean == (0.4, 0.45, 0.5)
    assert (model.provenance["license"], model.provenance["dataset"]) == ("apache-2.0", "stanford_cars")
    x, _ = model.preprocess(photo)
    # the repo's processor config run by transformers' PIL backend: the same PIL resize, the same arithmetic
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    pil = ViTImageProcessorPil(**{k: v for k, v in processor.to_dict().items() if k in (
        "size", "image_mean", "image_std", "resample", "do_resize", "do_rescale", "rescale_factor", "do_normalize")})
    ref_x = torch.as_tensor(np.asarray(pil(photo, return_tensors="np")["pixel_values"]))
    torch.testing.assert_close(x, ref_x, atol=1e-5, rtol=0)
    # its default (torchvision) backend resizes with torch's own bilinear kernel, whose rounding depends on the CPU
    # kernel torch picks: at most one 8-bit level apart from PIL's, wherever it rounds the other way
    tv_x = torch.as_tensor(np.asarray(processor(photo, return_tensors="np")["pixel_values"]))
    level = 1 / 255 / min(model.pretrained_cfg.std)
    assert (x - tv_x).abs().max() <= level * 1.001
    e = model.explain(photo)
    with torch.no_grad():
        ref = torch.softmax(ref_model(pixel_values=x).logits.double(), -1)[0].numpy()
    np.testing.assert_allclose(e.probs, ref, atol=1e-4)
    for method in ("transfg", "rams_trans"):
        other = fgviz.load(f"{HF_REPO}#{method}", device="cpu")
        assert other.vit.blocks[0].attn.qkv.weight.data_ptr() == model.vit.blocks[0].attn.qkv.weight.data_ptr()
        assert other.explain(photo).weights_kind == "backbone"


def test_transformers_5_names_load_too(checkpoints, hf_env, serve, photo, tmp_path) -> None:
    """The same tensors under transformers 5's in-memory names (q_proj, mlp.fc1...) map onto the same ViT."""
    ref_model = checkpoints["vit"]
    files = dict(checkpoints["repos"][HF_REPO]["main"])
    path = tmp_path / "v5.safetensors"
    save_file({k: v.contiguous() for k, v in ref_model.state_dict().items()}, str(path))
    assert any(".q_proj." in k for k in ref_model.state_dict())
    files["model.safetensors"] = path.read_bytes()
    serve({HF_REPO: {"main": files}})
    model = fgviz.load(HF_REPO, device="cpu")
    x, _ = model.preprocess(photo)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref_model(pixel_values=x).logits, atol=1e-4, rtol=1e-4)


def _hf_repo_with(config_edit) -> dict[str, dict[str, bytes]]:
    from transformers import ViTConfig

    cfg = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
                    patch_size=8, num_labels=2).to_dict()
    cfg["architectures"] = ["ViTForImageClassification"]
    config_edit(cfg)
    return {"org/other": {"main": {"config.json": json.dumps(cfg).encode(), "model.safetensors": b"unused"}}}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(model_type="deit", architectures=["DeiTForImageClassificationWithTeacher"]),
     "distillation token"),
    (lambda c: c.update(model_type="vit-hybrid"), "hybrid"),
    (lambda c: c.update(backbone_config={"model_type": "bit"}), "hybrid"),
    (lambda c: c.update(architectures=["ViTModel"]), "no classifier"),
    (lambda c: c.update(hidden_act="relu6"), "hidden_act"),
    (lambda c: c.update(model_type="swin"), "Swin"),
])
def test_unsupported_transformers_models_are_named(hf_env, serve, edit, message) -> None:
    server = serve(_hf_repo_with(edit))
    with pytest.raises(WeightsError, match=message):
        fgviz.load("org/other", device="cpu")
    assert not server.requests(filename="model.safetensors")  # refused from the config alone


def test_method_suffix_on_fgviz_checkpoints(tmp_path, photo) -> None:
    vit = make_tiny("vit", img_size=(40, 48))  # patches that tile the input, as backbone mode needs
    folder = save_model(vit, tmp_path / "tiny-vit")
    hub.clear_cache()
    try:
        plain = hub.load(str(folder), device="cpu")
        wrapped = hub.load(f"{folder}#transfg", device="cpu")
        assert isinstance(wrapped, TransFG) and wrapped.weights_kind == "backbone"
        assert wrapped.vit.blocks[0].attn.qkv.weight.data_ptr() == plain.vit.blocks[0].attn.qkv.weight.data_ptr()
        assert wrapped.explain(photo).part_tokens.shape == (vit.config.num_heads,)
        transfg = save_model(make_tiny("transfg"), tmp_path / "tiny-transfg")  # overlapping patches
        with pytest.raises(WeightsError, match="cannot be shown as ViT"):
            hub.load(f"{transfg}#vit", device="cpu")
        with pytest.raises(WeightsError, match="unknown method"):
            hub.parse_spec("org/name@v1#nope")
        parsed = hub.parse_spec("org/name@v1#rams_trans")
        assert (parsed.kind, parsed.value, parsed.revision, parsed.method) == ("hub", "org/name", "v1", "rams_trans")
        from fgviz.explorer.session import Explorer

        explorer = Explorer(device="cpu")  # the model boxes offer a spec in its method's column before it loads
        assert explorer.spec_method("org/name@v1#rams_trans") == "rams_trans"
        assert explorer.spec_method(f"timm:{CLIP}#vit") == "vit" and explorer.spec_method("org/name") is None
    finally:
        hub.clear_cache()


def test_inat_class_folders_read_as_species() -> None:
    from fgviz.weights.timm_backbones import species_name

    assert species_name("02912_Animalia_Chordata_Aves_Passeriformes_Cardinalidae_Cardinalis_cardinalis") == \
        "Cardinalis cardinalis"
    assert species_name("tench, Tinca tinca") == "tench, Tinca tinca"


def test_card_front_matter() -> None:
    from fgviz.weights.download import card_metadata

    card = "---\nlicense: cc-by-nc-4.0\ntags:\n- timm\ndatasets:\n- inat2021\n- laion-2b\n---\n# x\nlicense: no"
    assert card_metadata(card) == {"license": "cc-by-nc-4.0", "datasets": ["inat2021", "laion-2b"]}
    assert card_metadata("# no front matter\nlicense: mit") == {}
    assert card_metadata("---\nlicense: 'apache-2.0'\nbase_model: [a/b, c/d]\n---") == {
        "license": "apache-2.0", "base_model": ["a/b", "c/d"]}


def test_download_progress_reports_the_size(checkpoints, loopback) -> None:
    from fgviz.weights import download

    seen = []
    with download.progress(lambda name, done, total: seen.append((name, done, total))):
        fgviz.load(f"timm:{CLIP}#vit", device="cpu")
    weights = [(d, t) for n, d, t in seen if n == "model.safetensors"]
    size = len(checkpoints["repos"][f"timm/{CLIP}"]["main"]["model.safetensors"])
    assert weights and weights[0] == (0, size) and weights[-1] == (size, size)
    seen.clear()
    fgviz.load(f"timm:{CLIP}#vit", device="cpu")  # outside the block: nothing reported
    assert seen == []


def test_transfg_column_shows_the_backbones_own_top5_and_labels_the_part_layer_path(loopback, photo) -> None:
    from fgviz.explorer import views

    e = fgviz.load(f"timm:{CLIP}#transfg", device="cpu").explain(photo)
    own = e.extras["backbone_probs"]
    main = views.topk_figure(e)
    assert main.layout.title.text == views.BACKBONE_TITLE
    assert list(main.data[0].y) == [n for n, _ in e.topk(5, own)]  # the network's own ranking, not the path's
    path = views.scale_figure(e)
    assert "TransFG's path" in path.layout.annotations[0].text
    assert list(path.data[0].y) == [n for n, _ in e.topk(5)]
    assert views.summary(e)["backbone_top5"][0][0] == e.topk(1, own)[0][0]
    from fgviz.explorer.export import figure_set

    fs = figure_set({"transfg": e})  # the export says the same as the screen: the network's own top-5 first
    assert {"charts/transfg_top5.png", "charts/transfg_path_top5.png", "charts/transfg_path_top5.html"} <= set(
        fs.images) | set(fs.charts)
    assert fs.captions["charts/transfg_top5.png"] == views.BACKBONE_TITLE
