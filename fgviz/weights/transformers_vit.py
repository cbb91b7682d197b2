"""transformers ViT classifiers (`ViTForImageClassification` repos) read as plain timm ViTs.

Most community fine-tunes on CUB-200-2011 and Stanford Cars are published in transformers' layout: config.json
(``model_type: "vit"``, ``id2label``, the architecture fields), model.safetensors and preprocessor_config.json. This
adapter maps such a checkpoint onto timm's `VisionTransformer` with an explicit key map, checked key by key and
shape by shape, so every ViT method can wrap it as it wraps a timm checkpoint:

==============================================================  =====================================
transformers key (as ``save_pretrained`` writes it)             timm key
==============================================================  =====================================
vit.embeddings.cls_token / position_embeddings                  cls_token / pos_embed
vit.embeddings.patch_embeddings.projection.{weight,bias}       patch_embed.proj.{weight,bias}
vit.encoder.layer.{i}.layernorm_before                          blocks.{i}.norm1
vit.encoder.layer.{i}.attention.attention.{query,key,value}     blocks.{i}.attn.qkv (rows q, k, v)
vit.encoder.layer.{i}.attention.output.dense                    blocks.{i}.attn.proj
vit.encoder.layer.{i}.layernorm_after                           blocks.{i}.norm2
vit.encoder.layer.{i}.intermediate.dense / output.dense         blocks.{i}.mlp.fc1 / fc2
vit.layernorm / classifier                                      norm / head
==============================================================  =====================================

transformers 5 names the same tensors ``vit.layers.{i}.attention.{q,k,v,o}_proj`` and ``vit.layers.{i}.mlp.fc{1,2}``
in memory (and writes the names above); both spellings are read. ``layer_norm_eps`` (1e-12 by default), the MLP
activation, ``qkv_bias``, the patch and image sizes are carried over; labels come from ``id2label``; mean, std, size
and the resize filter from preprocessor_config.json (a ViT processor resizes both sides: fgviz's "squash").

Hybrid (a CNN stem), distilled (DeiT's distillation token) and other architectures are refused with a message that
names what is unsupported. Like every fgviz load, only safetensors are read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.layers import LayerNorm
from timm.models.vision_transformer import VisionTransformer

from fgviz.methods import METHODS, FineGrainedModel
from fgviz.methods.backbones.vit.model import ACT_LAYERS
from fgviz.methods.base import MAX_CLASSES, MAX_DEPTH, MAX_IMG_SIDE, MAX_WIDTH, ConversionError
from fgviz.weights import sources
from fgviz.weights.download import card_metadata, optional_file, weights_file
from fgviz.weights.format import WeightsError
from fgviz.weights.format import read_json as format_read_json

PREPROCESSOR_NAME = "preprocessor_config.json"
SUPPORTED_ARCHITECTURES = ("ViTForImageClassification",)
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}
# model types that are ViT-like but not plain ViTs, and what makes them so
UNSUPPORTED_TYPES = {
    "deit": "a DeiT (its distillation token is a second prefix token; fgviz wraps ViTs with one CLS token)",
    "vit_hybrid": "a hybrid ViT (a ResNet stem before the transformer)",
    "vit-hybrid": "a hybrid ViT (a ResNet stem before the transformer)",
    "dinov2": "a DINOv2 (layer scale and register tokens)",
    "beit": "a BEiT (relative position biases, no absolute position embedding)",
    "swin": "a Swin transformer (windowed attention, no CLS token)",
    "vit_mae": "a ViT-MAE (a pretraining model without a classifier)",
    "vit_msn": "a ViT-MSN",
}
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL filter codes in preprocessor_config.json


@dataclass(frozen=True)
class TransformersViT:
    """The fields of a transformers ViT config fgviz uses."""

    num_classes: int
    labels: list[str]
    image_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    qkv_bias: bool
    norm_eps: float
    act_layer: str


def is_transformers_config(config: dict[str, Any]) -> bool:
    """A config.json written by transformers (not by fgviz or timm)."""
    return "model_type" in config and "fgviz_format" not in config and "architecture" not in config


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a repo's file (`fgviz.weights.format.read_json`'s checks)."""
    data = format_read_json(path, what)
    if not isinstance(data, dict):
        raise WeightsError(f"{what}: {path.name} is not a JSON object")
    return data


def _int(config: dict[str, Any], name: str, lo: int, hi: int, what: str, default: Any = None) -> int:
    value = config.get(name, default)
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # image_size / patch_size may be [s, s]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise WeightsError(f"{what}: config.json {name}={value!r} is not supported (needs an integer in [{lo}, {hi}]"
                           f"{'; non-square sizes are not supported' if isinstance(value, (list, tuple)) else ''})")
    return value


def check_config(config: dict[str, Any], what: str) -> TransformersViT:
    """Validate a transformers config.json as a ViT classifier fgviz can wrap; raises WeightsError naming the
    unsupported feature (model type, architecture, hybrid stem, activation, sizes)."""
    model_type = str(config.get("model_type"))
    if model_type in UNSUPPORTED_TYPES:
        raise WeightsError(f"{what} is {UNSUPPORTED_TYPES[model_type]}: not supported")
    if model_type != "vit":  # transformers' model_type
        raise WeightsError(f"{what}: transformers model_type {model_type!r} is not supported (fgviz reads "
                           "ViTForImageClassification repos)")
    if config.get("backbone_config") is not None or config.get("backbone") is not None:
        raise WeightsError(f"{what} is a hybrid ViT (a CNN backbone before the transformer): not supported")
    archs = config.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise WeightsError(f"{what}: architectures {archs} has no classifier fgviz reads (needs "
                           f"{' or '.join(SUPPORTED_ARCHITECTURES)}, whose head gives the class scores)")
    act = config.get("hidden_act", "gelu")
    if act not in HIDDEN_ACTS:
        raise WeightsError(f"{what}: hidden_act {act!r} is not supported (known: {sorted(HIDDEN_ACTS)})")
    if _int(config, "num_channels", 3, 3, what, 3) != 3:
        raise WeightsError(f"{what}: needs 3 input channels")
    embed_dim = _int(config, "hidden_size", 8, MAX_WIDTH, what, 768)
    num_heads = _int(config, "num_attention_heads", 1, 64, what, 12)
    if embed_dim % num_heads:
        raise WeightsError(f"{what}: hidden_size {embed_dim} is not divisible by num_attention_heads {num_heads}")
    image_size = _int(config, "image_size", 8, MAX_IMG_SIDE, what, 224)
    patch_size = _int(config, "patch_size", 1, image_size, what, 16)
    if image_size % patch_size:
        raise WeightsError(f"{what}: patch_size {patch_size} does not tile image_size {image_size}")
    eps = config.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or not 0 < eps <= 1e-2:
        raise WeightsError(f"{what}: layer_norm_eps={eps!r} is not supported")
    labels = labels_of(config, what)
    if _int(config, "num_labels", 1, MAX_CLASSES, what, len(labels)) != len(labels):
        raise WeightsError(f"{what}: num_labels {config['num_labels']} but id2label names {len(labels)} classes")
    return TransformersViT(
        num_classes=len(labels),
        labels=labels,
        image_size=image_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=_int(config, "num_hidden_layers", 1, MAX_DEPTH, what, 12),
        num_heads=num_heads,
        mlp_dim=_int(config, "intermediate_size", 1, 4 * MAX_WIDTH, what, 3072),
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_eps=float(eps),
        act_layer=HIDDEN_ACTS[act],
    )


def labels_of(config: dict[str, Any], what: str) -> list[str]:
    """Class names in index order from ``id2label`` ({"0": "name", ...}); every index 0..n-1 must be named."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise WeightsError(f"{what}: config.json has no id2label (the class names)")
    try:
        named = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise WeightsError(f"{what}: id2label keys must be class indices") from None
    if sorted(named) != list(range(len(named))):
        raise WeightsError(f"{what}: id2label does not name every class 0..{len(named) - 1}")
    return [named[i] for i in range(len(named))]


def pretrained_cfg(preprocessor: dict[str, Any] | None, vit: TransformersViT, what: str) -> dict[str, Any]:
    """timm-style pretrained_cfg (mean, std, crop, interpolation) of a transformers image processor config.

    A ViT processor resizes both sides to `size` (aspect not kept: crop mode "squash"), rescales to [0, 1] and
    normalises; one that also centre-crops (`do_center_crop`, `crop_size`) gives crop_pct = crop / size. Without a
    preprocessor_config.json, transformers' ViT defaults: mean = std = 0.5, bilinear, the model's image size.
    """
    p = preprocessor or {}
    size = p.get("size", {"height": vit.image_size, "width": vit.image_size})
    if isinstance(size, int):
        size = {"height": size, "width": size}
    side = size.get("height", size.get("shortest_edge", vit.image_size)) if isinstance(size, dict) else vit.image_size
    crop_pct = 1.0
    if p.get("do_center_crop"):
        crop = p.get("crop_size", side)
        crop = crop.get("height", side) if isinstance(crop, dict) else crop
        crop_pct = float(crop) / float(side)
    if p.get("do_resize", True) is False:
        raise WeightsError(f"{what}: a processor that does not resize is not supported (fgviz feeds the model's "
                           f"{vit.image_size} px)")
    mean = p.get("image_mean", [0.5, 0.5, 0.5]) if p.get("do_normalize", True) else [0.0, 0.0, 0.0]
    std = p.get("image_std", [0.5, 0.5, 0.5]) if p.get("do_normalize", True) else [1.0, 1.0, 1.0]
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3):
        raise WeightsError(f"{what}: image_mean / image_std must list 3 values")
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std], "crop_pct": crop_pct,
            "crop_mode": "squash", "interpolation": RESAMPLE.get(p.get("resample", 2), "bilinear")}


def _block_keys(i: int, legacy: bool) -> dict[str, tuple[str, ...]]:
    """timm key -> transformers key(s) of block i (two spellings: what save_pretrained writes, and transformers 5's
    in-memory names)."""
    if legacy:
        b = f"vit.encoder.layer.{i}."
        att, names = b + "attention.", {"q": "attention.query", "k": "attention.key", "v": "attention.value",
                                        "o": "output.dense"}
        fc1, fc2 = b + "intermediate.dense", b + "output.dense"
    else:
        b = f"vit.layers.{i}."
        att, names = b + "attention.", {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}
        fc1, fc2 = b + "mlp.fc1", b + "mlp.fc2"
    out: dict[str, tuple[str, ...]] = {}
    for p in ("weight", "bias"):
        t = f"blocks.{i}."
        out[t + f"norm1.{p}"] = (b + f"layernorm_before.{p}",)
        out[t + f"norm2.{p}"] = (b + f"layernorm_after.{p}",)
        out[t + f"attn.qkv.{p}"] = tuple(att + names[n] + f".{p}" for n in "qkv")
        out[t + f"attn.proj.{p}"] = (att + names["o"] + f".{p}",)
        out[t + f"mlp.fc1.{p}"] = (fc1 + f".{p}",)
        out[t + f"mlp.fc2.{p}"] = (fc2 + f".{p}",)
    return out


def key_map(depth: int, legacy: bool = True) -> dict[str, tuple[str, ...]]:
    """timm key -> the transformers key(s) it is made of (several: concatenated on dim 0, q k v)."""
    out = {
        "cls_token": ("vit.embeddings.cls_token",),
        "pos_embed": ("vit.embeddings.position_embeddings",),
        "patch_embed.proj.weight": ("vit.embeddings.patch_embeddings.projection.weight",),
        "patch_embed.proj.bias": ("vit.embeddings.patch_embeddings.projection.bias",),
        "norm.weight": ("vit.layernorm.weight",),
        "norm.bias": ("vit.layernorm.bias",),
        "head.weight": ("classifier.weight",),
        "head.bias": ("classifier.bias",),
    }
    for i in range(depth):
        out.update(_block_keys(i, legacy))
    return out


# keys a ViTForImageClassification checkpoint may carry that its classification forward never reads
UNUSED = ("vit.pooler.dense.weight", "vit.pooler.dense.bias", "vit.embeddings.mask_token")


def build_timm_vit(vit: TransformersViT) -> VisionTransformer:
    """The timm ViT computing what the transformers config describes (no weights)."""
    ratio = vit.mlp_dim / vit.embed_dim
    if int(vit.embed_dim * ratio) != vit.mlp_dim:  # timm's Mlp: hidden = int(dim * mlp_ratio)
        raise WeightsError(f"intermediate_size {vit.mlp_dim} is not a width timm's ViT can express")
    return VisionTransformer(
        img_size=vit.image_size, patch_size=vit.patch_size, num_classes=vit.num_classes, embed_dim=vit.embed_dim,
        depth=vit.depth, num_heads=vit.num_heads, mlp_ratio=ratio, qkv_bias=vit.qkv_bias, class_token=True,
        global_pool="token", norm_layer=functools.partial(LayerNorm, eps=vit.norm_eps),
        act_layer=ACT_LAYERS[vit.act_layer],
    )


def parameter_count(vit: TransformersViT) -> int:
    """Parameters of the ViT a config describes (on the meta device: nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_timm_vit(vit).parameters())


def to_timm(vit: TransformersViT, state: dict[str, torch.Tensor], what: str) -> VisionTransformer:
    """The timm ViT made of a transformers state dict, strictly: every mapped key present with its shape, no key
    left over but the ones the classifier never reads (`UNUSED`)."""
    legacy = "vit.embeddings.cls_token" in state and any(k.startswith("vit.encoder.") for k in state)
    mapping = key_map(vit.depth, legacy)
    with torch.device("meta"):
        model = build_timm_vit(vit)
    own = model.state_dict()
    if set(mapping) != set(own):  # the map and the architecture must name the same tensors
        raise WeightsError(f"{what}: fgviz's key map does not cover timm's ViT "
                           f"({sorted(set(own) ^ set(mapping))[:6]})")
    used = {k for keys in mapping.values() for k in keys}
    missing = sorted(used - set(state))
    unexpected = sorted(set(state) - used - set(UNUSED))
    if missing or unexpected:
        raise WeightsError(f"{what}: not a ViTForImageClassification checkpoint of this config: missing "
                           f"{missing[:6]}, unexpected {unexpected[:6]}")
    mapped = {}
    for dst, srcs in mapping.items():
        t = state[srcs[0]] if len(srcs) == 1 else torch.cat([state[k] for k in srcs], dim=0)  # rows q, k, v
        if t.shape != own[dst].shape:
            raise WeightsError(f"{what}: {' + '.join(srcs)} has shape {tuple(t.shape)}, timm's {dst} needs "
                               f"{tuple(own[dst].shape)}")
        mapped[dst] = t
    model.load_state_dict(mapped, strict=True, assign=True)
    return model.eval()


def source_key(repo_id: str, pinned: str | None, device: str | torch.device, dtype: torch.dtype) -> tuple:
    """What names one loaded transformers checkpoint in `fgviz.weights.sources`."""
    return ("transformers", repo_id, pinned or "main", str(torch.device(device)), str(dtype))


def default_method() -> str:
    """The method a transformers repo is shown as unless the spec says `#method`: the one that is the checkpoint as
    it is (the plain ViT baseline)."""
    return next(m.name for m in METHODS.values() if m.wraps_as_is and m.backbone_family == "ViT")


def load_repo(repo_id: str, vit: TransformersViT, pinned: str | None, revision: str | None, method: str, *,
              what: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> FineGrainedModel:
    """A transformers ViT repo as `method`: the checkpoint read once per (repo, commit, device, dtype) and every
    method made of its tensors; preprocessing from preprocessor_config.json, licence and datasets from the card."""

    def build() -> VisionTransformer:
        path = weights_file(repo_id, pinned, revision, what)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{what}: {path.name} is not a readable safetensors file: {e}") from None
        return to_timm(vit, state, what).to(device=device, dtype=dtype)

    source = sources.shared(source_key(repo_id, pinned, device, dtype), build)
    pre_path = optional_file(repo_id, PREPROCESSOR_NAME, pinned, what=what, shown_revision=revision)
    cfg = pretrained_cfg(read_json(pre_path, what) if pre_path else None, vit, what)
    chosen = METHODS[method]
    try:
        model = chosen.from_timm(source.module, vit.labels, cfg)
    except (ConversionError, NotImplementedError) as e:
        raise WeightsError(f"{what} as {chosen.title}: {e}") from None
    card_path = optional_file(repo_id, "README.md", pinned, what=what, shown_revision=revision)
    card = card_metadata(card_path.read_text(errors="replace")) if card_path else {}
    datasets = card.get("datasets")
    model.weights_kind = "hub" if chosen.wraps_as_is else "backbone"
    model.provenance = {
        "description": f"transformers ViTForImageClassification {repo_id}"
        + ("" if chosen.wraps_as_is else f", wrapped as {chosen.title} (not trained for it; {chosen.backbone_note()})")
        + ("" if pre_path else f"; no {PREPROCESSOR_NAME} in the repo: transformers' ViT defaults (mean = std = 0.5)"),
        "weights_kind": model.weights_kind,
        "source": f"https://huggingface.co/{repo_id}",
        "repo": repo_id,
        "revision": pinned or "main",
        "architecture": f"ViT-{vit.depth}L/{vit.patch_size} at {vit.image_size} px (transformers)",
        "license": str(card.get("license") or "not stated by the repo"),
        "dataset": ", ".join(datasets) if isinstance(datasets, list) else str(datasets or "not stated by the repo"),
    }
    return sources.hold(model.eval(), source)
