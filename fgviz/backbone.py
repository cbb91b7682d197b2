"""Backbone mode: an ImageNet timm checkpoint from the Hub shown through a fine-grained method's machinery.

No trained TransFG, RAMS-Trans or TASN weights were ever published (docs methods.md §4.1), so ``timm:<name>`` specs
(e.g. ``timm:vit_base_patch16_224.augreg2_in21k_ft_in1k``, ``timm:resnet18.tv_in1k``) wrap a timm Hub checkpoint
as one of the methods, with its own ImageNet classifier. Only ``config.json`` and ``model.safetensors`` are fetched
from ``timm/<name>`` (through `fgviz.hub.hub_download`: cache, offline mode and error messages as every other
download); a repo with only a pickle is refused. The state dict is loaded strictly into the timm architecture named
by config.json, then copied into the method with explicit maps and shape checks. Such models are marked
``weights_kind = "backbone"``: they are **not** fine-tuned for the method.

What each wrapper keeps and what differs from a trained model of the method:
- ViT -> TransFG (default for ViTs): stride = patch size (no overlap), so the pretrained patch conv and position
  embedding fit exactly; every block (the part layer too) and the head are the pretrained ones. The PSM still runs
  the last block on [CLS + one token per head] only, so the logits differ from the plain ViT's.
- ViT -> RAMS-Trans (``method="rams_trans"``): every scale token starts as the pretrained CLS, every prefix row of
  the position embedding as the pretrained CLS row (as the official init); the shared head is the pretrained one.
- ResNet -> TASN (default for ResNets): the backbone (both sampled images) is the pretrained ResNet and its ``fc``
  is the shared ``fc`` (the prediction) and also ``fc1``/``fc2``. The attention net is the *same* pretrained
  ResNet with TASN's output-stride-8 strides, its multi-dilation head set to the identity (centre taps 1/2 and 1/3,
  so X is exactly the ResNet's last-stage features; an ``nn.Identity`` head when `TASNConfig` offers
  ``att_head="identity"``), the attention BN to the identity and ``att_fc`` = ``fc``. So the trilinear maps are
  computed from honest ImageNet features rather than from a random, untrained attention head. TASN's attention
  net is a basic-block ResNet, so this needs a basic-block backbone (resnet18/34) unless `TASNConfig` has an
  ``att_block`` field (bottleneck ResNets such as resnet50 then share their weights too).

`init_from_timm(model, name)` is the training counterpart: it copies an ImageNet backbone into an existing model as
the official code does (TransFG: all but the part layer and the head; RAMS-Trans: all but the head; TASN: every
sub-network whose architecture matches). Heads stay random.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from fgviz import hub
from fgviz.convert import ConversionError, init_rams_from_vit_state, init_transfg_from_vit_state
from fgviz.models import FineGrainedModel
from fgviz.models.base import MAX_CLASSES, MAX_DEPTH, MAX_IMG_SIDE, MAX_WIDTH
from fgviz.models.rams_trans import RAMSTrans, RAMSTransConfig
from fgviz.models.tasn import BLOCKS, TASN, MultiDilation, TASNConfig
from fgviz.models.transfg import TransFG, TransFGConfig

TIMM_ORG = "timm"
TASN_IMG_RATIO = 512 / 224  # TASN samples 224-px images out of a 512-px input; keep that zoom headroom
# timm model_args a config.json may pass to create_model (geometry only; anything else is refused)
ALLOWED_MODEL_ARGS = {
    "img_size",
    "in_chans",
    "num_classes",
    "global_pool",
    "patch_size",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "class_token",
    "layers",
    "channels",
}
_DROPOUT_RE = re.compile(r"Dropout\(p=[^)]*\)")
METHODS_BY_FAMILY = {"vit": ("transfg", "rams_trans"), "resnet": ("tasn",)}


@dataclass(frozen=True)
class TimmCheckpoint:
    """A timm Hub checkpoint: the parsed config.json and the state dict (from safetensors)."""

    name: str  # timm model name with tag, e.g. "resnet18.tv_in1k"
    repo_id: str
    architecture: str
    num_classes: int
    pretrained_cfg: dict[str, Any]
    model_args: dict[str, Any]
    labels: list[str]
    state: dict[str, torch.Tensor]


def _labels(config: dict[str, Any], num_classes: int) -> list[str]:
    """Class names: config.json's label names/descriptions, else timm's offline ImageNet names, else class_i."""
    names = config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names")
    descriptions = config.get("label_descriptions") or config.get("pretrained_cfg", {}).get("label_descriptions")
    if isinstance(names, dict):  # {index: name}
        names = [names.get(str(i), names.get(i, f"class_{i}")) for i in range(num_classes)]
    if isinstance(names, list) and len(names) == num_classes:
        if isinstance(descriptions, dict):
            return [str(descriptions.get(n, n)) for n in names]
        return [str(n) for n in names]
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset is not None:
        return list(ImageNetInfo(subset).label_descriptions())
    return [f"class_{i}" for i in range(num_classes)]


def fetch_timm_checkpoint(name: str, revision: str | None = None) -> TimmCheckpoint:
    """Download (or read from the cache) ``timm/<name>``'s config.json and model.safetensors; never a pickle.

    `revision` pins a branch, tag or commit of the timm repo (default: main).

    Raises:
        WeightsError: the repo, a file, or the network is unavailable, or the files are malformed.
    """
    name = name.removeprefix("timm:")
    repo = f"{TIMM_ORG}/{name}"
    what = f"timm:{name}"
    config_path = hub.hub_download(repo, "config.json", revision, what=what)
    if config_path.stat().st_size > hub.MAX_CONFIG_BYTES:
        raise hub.WeightsError(f"{what}: {repo}'s config.json is larger than {hub.MAX_CONFIG_BYTES} bytes")
    try:
        config = json.loads(config_path.read_text())
        arch = config["architecture"]
        pretrained_cfg = dict(config.get("pretrained_cfg", {}))
        num_classes = int(config.get("num_classes", pretrained_cfg.get("num_classes", 0)))
        model_args = dict(config.get("model_args", {}))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise hub.WeightsError(f"{what}: {repo}'s config.json is not a timm config: {e!r}") from None
    bad = sorted(set(model_args) - ALLOWED_MODEL_ARGS)
    if bad:
        raise hub.WeightsError(f"{what}: unsupported model_args {bad} in {repo}'s config.json")
    if not 0 <= num_classes <= MAX_CLASSES:
        raise hub.WeightsError(f"{what}: num_classes={num_classes} outside [0, {MAX_CLASSES}]")
    weights_path = hub.hub_download(repo, hub.WEIGHTS_NAME, revision, what=what)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise hub.WeightsError(f"{what}: {weights_path} is not a readable safetensors file: {e}") from None
    return TimmCheckpoint(
        name=name,
        repo_id=repo,
        architecture=str(arch),
        num_classes=num_classes,
        pretrained_cfg=pretrained_cfg,
        model_args=model_args,
        labels=_labels(config, num_classes),
        state=state,
    )


def build_timm_model(ckpt: TimmCheckpoint) -> nn.Module:
    """The timm architecture of `ckpt` (no download) with its weights loaded strictly."""
    import timm

    if not timm.is_model(ckpt.architecture):
        raise hub.WeightsError(f"timm:{ckpt.name}: unknown timm architecture {ckpt.architecture!r}")
    kwargs = {**ckpt.model_args, "num_classes": ckpt.num_classes}
    if not isinstance(kwargs.get("img_size", 224), (int, list, tuple)):
        raise hub.WeightsError(f"timm:{ckpt.name}: bad img_size {kwargs['img_size']!r}")
    try:
        model = timm.create_model(ckpt.architecture, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise hub.WeightsError(f"timm:{ckpt.name}: cannot build {ckpt.architecture} from config.json: {e}") from None
    try:
        model.load_state_dict(ckpt.state, strict=True)
    except RuntimeError as e:
        raise hub.WeightsError(f"timm:{ckpt.name}: weights do not fit {ckpt.architecture}: {e}") from None
    return model.eval()


def _family(model: nn.Module) -> str:
    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, ResNet):
        return "resnet"
    return type(model).__name__


def _arch_repr(module: nn.Module) -> str:
    """repr without dropout rates: what must match for two modules to compute the same function in eval mode."""
    return _DROPOUT_RE.sub("Dropout", repr(module))


def _same_modules(src: nn.Module, dst: nn.Module, names: tuple[str, ...], what: str) -> None:
    """Raise unless the named submodules print the same (types, widths, eps, activations, strides; not dropout)."""
    for n in names:
        a, b = _arch_repr(getattr(src, n)), _arch_repr(getattr(dst, n))
        if a != b:
            raise hub.WeightsError(
                f"{what}: {n} is not a plain timm module the method can wrap:\n{a[:400]}\nvs\n{b[:400]}"
            )


def _check_plain_vit(vit: VisionTransformer, what: str) -> None:
    if vit.cls_token is None or vit.num_prefix_tokens != 1 or vit.no_embed_class or vit.pos_embed is None:
        raise hub.WeightsError(f"{what}: needs a ViT with one CLS token and a learned position embedding")
    if vit.global_pool != "token" or getattr(vit, "attn_pool", None) is not None:
        raise hub.WeightsError(f"{what}: needs CLS-token pooling (global_pool='token'), got {vit.global_pool!r}")
    ph, pw = vit.patch_embed.patch_size
    if ph != pw or vit.patch_embed.img_size[0] % ph or vit.patch_embed.img_size[1] % pw:
        raise hub.WeightsError(f"{what}: needs square patches that tile the input")
    if vit.embed_dim > MAX_WIDTH or len(vit.blocks) > MAX_DEPTH:
        raise hub.WeightsError(f"{what}: width {vit.embed_dim} / depth {len(vit.blocks)} above fgviz's bounds")


def _vit_arch(vit: VisionTransformer, ckpt: TimmCheckpoint) -> dict[str, Any]:
    """Config arguments shared by TransFG and RAMS-Trans for a wrapped ViT (dropout 0: this is an inference model)."""
    blk = vit.blocks[0]
    img = tuple(int(s) for s in vit.patch_embed.img_size)
    crop = float(ckpt.pretrained_cfg.get("crop_pct", 1.0))
    return dict(
        num_classes=ckpt.num_classes,
        labels=ckpt.labels,
        img_size=img,
        crop_pct=min(max(crop, 0.1), 1.0),
        mean=tuple(ckpt.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(ckpt.pretrained_cfg.get("std", (0.229, 0.224, 0.225))),
        patch_size=int(vit.patch_embed.patch_size[0]),
        embed_dim=int(vit.embed_dim),
        depth=len(vit.blocks),
        num_heads=int(blk.attn.num_heads),
        mlp_ratio=blk.mlp.fc1.out_features / vit.embed_dim,
        qkv_bias=blk.attn.qkv.bias is not None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
    )


VIT_MODULES = ("blocks", "norm", "fc_norm", "norm_pre", "head")


def _vit_as_transfg(src: VisionTransformer, ckpt: TimmCheckpoint) -> TransFG:
    arch = _vit_arch(src, ckpt)
    model = TransFG(TransFGConfig(**arch, stride=arch["patch_size"]))
    what = f"timm:{ckpt.name} as TransFG"
    _same_modules(src, model.vit, VIT_MODULES, what)
    _same_modules(src.patch_embed, model.vit.patch_embed, ("proj", "norm"), what)
    with torch.no_grad():
        model.vit.load_state_dict(src.state_dict(), strict=True)  # same keys: the last block and the head included
    return model


def _vit_as_rams(src: VisionTransformer, ckpt: TimmCheckpoint) -> RAMSTrans:
    model = RAMSTrans(RAMSTransConfig(**_vit_arch(src, ckpt)))
    what = f"timm:{ckpt.name} as RAMS-Trans"
    _same_modules(src, model.vit, VIT_MODULES, what)
    _same_modules(src.patch_embed, model.vit.patch_embed, ("proj", "norm"), what)
    with torch.no_grad():
        left = init_rams_from_vit_state(model, src.state_dict(), load_head=True)
    assert not left, left
    return model


def resnet_signature(net: ResNet, what: str) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(block, layers, channels) of a plain timm ResNet; raises for variants (deep stem, SE, anti-aliasing...)."""
    block_type = type(net.layer1[0])
    names = {BasicBlock: "basic", Bottleneck: "bottleneck"}
    if block_type not in names:
        raise hub.WeightsError(f"{what}: ResNet blocks of type {block_type.__name__} are not supported")
    block = names[block_type]
    stages = [getattr(net, f"layer{i}") for i in range(1, 5)]
    layers = tuple(len(s) for s in stages)
    channels = tuple(
        int(s[-1].conv1.out_channels) if block == "basic" else int(s[-1].conv3.out_channels) // 4 for s in stages
    )
    with torch.device("meta"):
        ref = ResNet(BLOCKS[block], layers, channels=channels, num_classes=0)
    _same_modules(net, ref, ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"), what)
    return block, layers, channels


def _identity_attention_head(model: TASN) -> None:
    """Make TASN's attention head and attention BN the identity on non-negative features.

    A multi-dilation head becomes the identity with centre taps only: a1 = ReLU(F/2) + ReLU(F/2) = F and
    a2 = 3 ReLU(F/3) = F for F >= 0 (the ResNet's last ReLU), since the centre tap is the same at every dilation.
    """
    head = model.att_head
    with torch.no_grad():
        if isinstance(head, MultiDilation):
            eye = torch.eye(head.conv1.in_channels)
            for conv, dilations in ((head.conv1, 2), (head.conv2, 3)):
                conv.weight.zero_()
                conv.weight[:, :, 1, 1] = eye / dilations
                conv.bias.zero_()
        elif not isinstance(head, nn.Identity):
            raise hub.WeightsError(f"cannot make a {type(head).__name__} attention head the identity")
        bn = model.att_bn
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x


def _tasn_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(TASNConfig)}


def _resnet_as_tasn(src: ResNet, ckpt: TimmCheckpoint) -> TASN:
    what = f"timm:{ckpt.name} as TASN"
    block, layers, channels = resnet_signature(src, what)
    extra: dict[str, Any] = {}
    fields = _tasn_fields()
    if "att_head" in fields:
        extra["att_head"] = "identity"  # no parameters; else a multi-dilation head set to the identity below
    if "att_block" in fields:
        extra["att_block"] = block
    elif block != "basic":
        raise hub.WeightsError(
            f"{what}: TASN's attention net takes basic-block ResNets only (resnet18/34), and {ckpt.architecture} "
            "has bottleneck blocks; use e.g. timm:resnet18.tv_in1k (or add TASNConfig.att_block)"
        )
    if not isinstance(src.fc, nn.Linear):
        raise hub.WeightsError(f"{what}: needs a linear classifier (fc), the checkpoint has none")
    H, _W = ckpt.pretrained_cfg.get("input_size", (3, 224, 224))[-2:]
    side = int(H)
    big = min(round(side * TASN_IMG_RATIO), MAX_IMG_SIDE)
    cfg = TASNConfig(
        num_classes=ckpt.num_classes,
        labels=ckpt.labels,
        img_size=(big, big),
        crop_pct=min(max(float(ckpt.pretrained_cfg.get("crop_pct", 1.0)), 0.1), 1.0),
        mean=tuple(ckpt.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(ckpt.pretrained_cfg.get("std", (0.229, 0.224, 0.225))),
        att_size=side,
        out_size=side,
        att_layers=layers,
        att_channels=channels,
        backbone_block=block,
        backbone_layers=layers,
        backbone_channels=channels,
        **extra,
    )
    model = TASN(cfg)
    state = src.state_dict()
    trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
    fc = {k[len("fc.") :]: v for k, v in state.items() if k.startswith("fc.")}
    with torch.no_grad():
        model.backbone.load_state_dict(trunk, strict=True)
        model.att_net.load_state_dict(trunk, strict=True)  # same weights, TASN's output-stride-8 strides
        for head in (model.fc, model.fc1, model.fc2, model.att_fc):
            head.load_state_dict(fc, strict=True)
    _identity_attention_head(model)
    return model


def load_timm_backbone(name: str, method: str | None = None, *, revision: str | None = None) -> FineGrainedModel:
    """Wrap the ImageNet timm checkpoint ``timm/<name>`` as `method` (default: transfg for ViTs, tasn for ResNets).

    Args:
        name: timm model name with its pretrained tag, with or without the ``timm:`` prefix.
        method: "transfg" or "rams_trans" for ViTs, "tasn" for ResNets.
        revision: branch, tag or commit of the timm repo to pin (default: main).

    Returns:
        The model in eval mode, ``weights_kind = "backbone"``, with a provenance saying it is not fine-tuned.

    Raises:
        WeightsError: download, format or architecture problems (the message names the spec and repo).
        KeyError: unknown method.
    """
    name = name.removeprefix("timm:")
    if method is not None and method not in ("transfg", "rams_trans", "tasn"):
        raise KeyError(f"unknown method {method!r}; available: ['rams_trans', 'tasn', 'transfg']")
    ckpt = fetch_timm_checkpoint(name, revision)
    src = build_timm_model(ckpt)
    family = _family(src)
    if family not in METHODS_BY_FAMILY:
        raise hub.WeightsError(f"timm:{name}: backbone mode wraps ViTs and ResNets, not {family}")
    method = method or METHODS_BY_FAMILY[family][0]
    if method not in METHODS_BY_FAMILY[family]:
        raise hub.WeightsError(
            f"timm:{name} is a {family}; {method} needs a {'ViT' if method != 'tasn' else 'ResNet'}"
        )
    if ckpt.num_classes < 1:
        raise hub.WeightsError(
            f"timm:{name} has no classifier head (num_classes=0): backbone mode needs one; use it for training "
            "initialisation (fgviz.backbone.init_from_timm) instead"
        )
    if family == "vit":
        _check_plain_vit(src, f"timm:{name}")
        model: FineGrainedModel = _vit_as_transfg(src, ckpt) if method == "transfg" else _vit_as_rams(src, ckpt)
    else:
        model = _resnet_as_tasn(src, ckpt)
    cfg = ckpt.pretrained_cfg
    notes = {
        "transfg": "all blocks (the part layer too) and the head are the pretrained ViT's; stride = patch size",
        "rams_trans": "every scale token starts as the pretrained CLS; the head is the pretrained one",
        "tasn": "backbone, attention net and every fc are the pretrained ResNet; the attention head is the identity",
    }
    model.weights_kind = "backbone"
    model.name = f"timm:{name}"
    model.provenance = {
        "description": f"ImageNet backbone, not fine-tuned for {method}: {ckpt.repo_id} ({ckpt.architecture}) "
        f"wrapped as {type(model).__name__}; {notes[method]}.",
        "weights_kind": "backbone",
        "source": f"https://huggingface.co/{ckpt.repo_id}" + (f"@{revision}" if revision else ""),
        "architecture": ckpt.architecture,
        "license": cfg.get("license", "see the source repo"),
        "dataset": "ImageNet" + (f" ({cfg['tag']})" if cfg.get("tag") else ""),
    }
    return model.eval()


def init_from_timm(model: FineGrainedModel, name: str) -> list[str]:
    """Initialise `model` for training from the ImageNet checkpoint ``timm/<name>`` (heads stay random).

    TransFG: everything but the part layer and the head (official loader), position grid resampled to the model's;
    RAMS-Trans: everything but the head, the CLS copied into every scale token; TASN: the backbone and/or the
    attention net, whichever has the checkpoint's architecture (call twice, e.g. resnet50 then resnet18, for
    TASN's original ResNet-50 + ResNet-18 init). Returns the parameter names left as they were.

    Raises:
        WeightsError: download problems, or nothing in `model` has the checkpoint's architecture.
    """
    name = name.removeprefix("timm:")
    ckpt = fetch_timm_checkpoint(name)
    src = build_timm_model(ckpt)
    what = f"timm:{name} -> {type(model).__name__}"
    state = {k: v for k, v in src.state_dict().items()}
    try:
        if isinstance(model, (TransFG, RAMSTrans)):
            if not isinstance(src, VisionTransformer):
                raise hub.WeightsError(f"{what}: needs a ViT checkpoint, got {ckpt.architecture}")
            _check_plain_vit(src, what)
            if len(src.blocks) != len(model.vit.blocks):
                raise hub.WeightsError(f"{what}: {len(src.blocks)} blocks, the model has {len(model.vit.blocks)}")
            _same_modules(src, model.vit, ("blocks", "norm", "norm_pre", "fc_norm"), what)
            with torch.no_grad():
                if isinstance(model, TransFG):
                    left = init_transfg_from_vit_state(model, state)
                else:
                    left = init_rams_from_vit_state(model, state)
            return ["vit." + k for k in left]
        if isinstance(model, TASN):
            if not isinstance(src, ResNet):
                raise hub.WeightsError(f"{what}: needs a ResNet checkpoint, got {ckpt.architecture}")
            sig = resnet_signature(src, what)
            c = model.config
            trunk = {k: v for k, v in state.items() if not k.startswith("fc.")}
            loaded = []
            with torch.no_grad():
                if sig == (c.backbone_block, c.backbone_layers, c.backbone_channels):
                    model.backbone.load_state_dict(trunk, strict=True)
                    loaded.append("backbone.")
                if sig == (getattr(c, "att_block", "basic"), c.att_layers, c.att_channels):
                    model.att_net.load_state_dict(trunk, strict=True)
                    loaded.append("att_net.")
            if not loaded:
                raise hub.WeightsError(
                    f"{what}: {ckpt.architecture} {sig} matches neither the backbone "
                    f"({c.backbone_block}, {c.backbone_layers}, {c.backbone_channels}) nor the attention net"
                )
            return [k for k in model.state_dict() if not k.startswith(tuple(loaded))]
    except ConversionError as e:
        raise hub.WeightsError(f"{what}: {e}") from None
    raise hub.WeightsError(f"{what}: no timm initialisation for {type(model).__name__}")
