"""TransFG weights: official TACJu/TransFG checkpoints, ImageNet ViT inits (timm or Google npz), backbone mode.

1. Official checkpoints written by TransFG's ``train.py`` (``torch.save({'model': state_dict, 'amp': ...})``, keys
   ``transformer.embeddings.*``, ``transformer.encoder.layer.{i}.*``, ``part_layer``, ``part_norm``, ``part_head``;
   docs methods.md 1.8) become a `TransFG` with an explicit key map and a shape check per key. Read with
   ``torch.load(weights_only=True)``: tensors and plain containers only. The checkpoint stores no config: width,
   depth, MLP, patch size and grid come from the shapes, the stride from the grid (or is checked against
   ``stride``), the number of heads from the caller (12 for ViT-B). Official q/k/v/out become timm's fused
   ``attn.qkv`` (rows q, k, v) and ``attn.proj``; ``part_layer`` becomes the last timm block.
2. Training init from a plain ImageNet ViT, as the official loader: blocks 0..L-2, patch conv (reused at the new
   stride), CLS, position embedding (resampled), final norm; the part layer (block L-1) and the head stay at their
   official init (the loader skips children named "part*").
3. Backbone mode: a timm ImageNet ViT shown through TransFG's machinery at stride = patch size, every block (the
   part layer too) and the head the pretrained ones. The PSM still runs the last block on [CLS + one token per head]
   only, so the logits differ from the plain ViT's.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fgviz.methods.backbones.adapt import check_shapes, pretrained_from_timm
from fgviz.methods.backbones.vit.weights import (
    check_trunk,
    npz_arch,
    read_vit_npz,
    resample_pos_embed,
    vit_grid,
    wrap_plain_vit,
)
from fgviz.methods.base import ConversionError, PretrainedCfg
from fgviz.methods.transfg.model import TransFG, TransFGConfig, grid_size

OFFICIAL_EMBED = "transformer.embeddings."
OFFICIAL_ENCODER = "transformer.encoder."
_LAYER_RE = re.compile(r"^transformer\.encoder\.layer\.(\d+)\.")


def init_from_vit_state(model: TransFG, state: dict[str, torch.Tensor], *, load_last_block: bool = False,
                        load_head: bool = False) -> list[str]:
    """Copy a plain timm ViT state dict (one CLS, square grid) into a TransFG; returns the keys left as they were.

    The grid of ``pos_embed`` is resampled to the model's; everything but the part layer (unless `load_last_block`)
    and the head (unless `load_head`, which needs the same number of classes) is loaded.
    """
    state = dict(state)
    own = model.vit.state_dict()
    pw, mw = state["patch_embed.proj.weight"].shape, own["patch_embed.proj.weight"].shape
    if pw != mw:
        raise ConversionError(f"patch embedding {tuple(pw)} does not fit the model's {tuple(mw)} "
                              "(patch size or width)")
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], model.grid, old_grid=vit_grid(state))
    head = {k: state.pop(k) for k in [k for k in state if k.startswith("head.")]}
    last = f"blocks.{model.config.depth - 1}."
    if not load_last_block:
        state = {k: v for k, v in state.items() if not k.startswith(last)}
    check_shapes(state, own, "ViT -> TransFG")
    missing, unexpected = model.vit.load_state_dict(state, strict=False)
    bad = [k for k in missing if not (k.startswith("head.") or k.startswith(last))]
    if unexpected or bad:
        raise ConversionError(f"ViT -> TransFG: unexpected keys {unexpected[:8]}, missing {bad[:8]}")
    left = list(missing)
    if load_head:
        if set(head) != {"head.weight", "head.bias"}:
            raise ConversionError(f"load_head: the source has no linear head (keys {sorted(head)})")
        check_shapes(head, own, "ViT head -> TransFG head")
        model.vit.head.load_state_dict({k[len("head.") :]: v for k, v in head.items()})
        left = [k for k in left if not k.startswith("head.")]
    return left


def from_timm(src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> TransFG:
    """Backbone mode (module doc, 3): stride = patch size, so the pretrained conv and grid fit exactly."""
    return wrap_plain_vit(  # same keys: the last block and the head included
        src, lambda arch: TransFG(TransFGConfig(**arch, stride=arch["patch_size"]),
                                  pretrained_from_timm(labels, pretrained_cfg)), "timm ViT as TransFG")


def init_from_timm(model: TransFG, src: nn.Module) -> list[str]:
    """Training init (module doc, 2) from a timm ImageNet ViT."""
    src = check_trunk(src, model.vit, "timm ViT -> TransFG")
    with torch.no_grad():
        left = init_from_vit_state(model, {k: v for k, v in src.state_dict().items()})
    return ["vit." + k for k in left]


def init_from_npz(path: str | Path, *, num_classes: int = 200, img_size: int | tuple[int, int] = 448,
                  stride: int | None = None, labels: Sequence[str] | None = None, **config: Any) -> TransFG:
    """A TransFG ready for training from a Google ViT npz (module doc, 2); stride defaults to 3/4 of the patch."""
    state, geo = read_vit_npz(path)
    cfg = TransFGConfig(**npz_arch(geo, num_classes, img_size), stride=stride or max(1, geo["patch_size"] * 3 // 4),
                        **config)
    model = TransFG(cfg, PretrainedCfg(labels=tuple(labels or ())))
    init_from_vit_state(model, state)
    return model


# ---- official checkpoints (module doc, 1) ------------------------------------------------------------------------


def official_block_map(src: str, dst: str) -> dict[str, tuple[str, ...]]:
    """One official block (``src`` prefix) -> one timm block (``dst`` prefix); values are concatenated on dim 0."""
    m: dict[str, tuple[str, ...]] = {}
    for p in ("weight", "bias"):
        m[f"{dst}norm1.{p}"] = (f"{src}attention_norm.{p}",)
        m[f"{dst}attn.qkv.{p}"] = tuple(f"{src}attn.{n}.{p}" for n in ("query", "key", "value"))  # rows q, k, v
        m[f"{dst}attn.proj.{p}"] = (f"{src}attn.out.{p}",)
        m[f"{dst}norm2.{p}"] = (f"{src}ffn_norm.{p}",)
        m[f"{dst}mlp.fc1.{p}"] = (f"{src}ffn.fc1.{p}",)
        m[f"{dst}mlp.fc2.{p}"] = (f"{src}ffn.fc2.{p}",)
    return m


def official_key_map(num_layers: int) -> dict[str, tuple[str, ...]]:
    """fgviz `TransFG` key -> official key(s), for `num_layers` ordinary layers plus the part layer."""
    m: dict[str, tuple[str, ...]] = {
        "vit.cls_token": (f"{OFFICIAL_EMBED}cls_token",),
        "vit.pos_embed": (f"{OFFICIAL_EMBED}position_embeddings",),
        "vit.patch_embed.proj.weight": (f"{OFFICIAL_EMBED}patch_embeddings.weight",),
        "vit.patch_embed.proj.bias": (f"{OFFICIAL_EMBED}patch_embeddings.bias",),
        "vit.norm.weight": (f"{OFFICIAL_ENCODER}part_norm.weight",),
        "vit.norm.bias": (f"{OFFICIAL_ENCODER}part_norm.bias",),
        "vit.head.weight": ("part_head.weight",),
        "vit.head.bias": ("part_head.bias",),
    }
    for i in range(num_layers):
        m.update(official_block_map(f"{OFFICIAL_ENCODER}layer.{i}.", f"vit.blocks.{i}."))
    m.update(official_block_map(f"{OFFICIAL_ENCODER}part_layer.", f"vit.blocks.{num_layers}."))
    return m


def load_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official TransFG checkpoint as tensors only (``weights_only=True``); returns the model state dict.

    Accepts ``{'model': state_dict, ...}`` (what ``train.py`` saves, 'amp' state included) or a bare state dict, and
    strips a DDP ``module.`` prefix.
    """
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConversionError(
            f"{path}: not a plain torch checkpoint, or it holds non-tensor objects that fgviz refuses to unpickle "
            f"(loaded with weights_only=True): {e}"
        ) from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError) as e:  # corrupt or not torch
        raise ConversionError(f"{path}: not a readable torch checkpoint: {e}") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        ckpt = ckpt["model"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ConversionError(f"{path}: expected {{'model': state_dict}} or a state dict of tensors")
    if ckpt and all(k.startswith("module.") for k in ckpt):
        ckpt = {k[len("module.") :]: v for k, v in ckpt.items()}
    return ckpt


def infer_stride(img_size: int, patch_size: int, grid: int) -> list[int]:
    """Strides s in 1..patch_size for which a kernel-`patch_size` conv on `img_size` pixels gives `grid` per side."""
    return [s for s in range(1, patch_size + 1) if (img_size - patch_size) // s + 1 == grid]


def convert_official(
    state: dict[str, torch.Tensor],
    *,
    num_heads: int = 12,
    img_size: int = 448,
    stride: int | None = None,
    num_classes: int | None = None,
    labels: Sequence[str] | None = None,
    crop_pct: float = 448 / 600,
) -> TransFG:
    """Build a `TransFG` from an official state dict (see `load_official_checkpoint`).

    Args:
        state: the official ``model`` state dict.
        num_heads: attention heads; not stored in the checkpoint (12 for ViT-B/16).
        img_size: input side the checkpoint was trained at (448; 304 for iNat2017).
        stride: patch-embedding stride; inferred from the position-embedding length when None.
        num_classes: if given, checked against ``part_head``.
        labels: class names, one per class.
        crop_pct: test-time resize img_size / crop_pct, then centre crop (448 / 600 officially).

    Raises:
        ConversionError: a key is missing, unexpected or has the wrong shape, or the geometry is inconsistent.
    """
    if any(k.startswith("transformer.embeddings.hybrid_model.") for k in state):
        raise ConversionError("hybrid (ResNet + ViT) TransFG checkpoints are not supported")
    for k in (
        f"{OFFICIAL_EMBED}cls_token",
        f"{OFFICIAL_EMBED}patch_embeddings.weight",
        f"{OFFICIAL_EMBED}position_embeddings",
        "part_head.weight",
        f"{OFFICIAL_ENCODER}part_layer.ffn.fc1.weight",
    ):
        if k not in state:
            raise ConversionError(f"not an official TransFG checkpoint: missing {k!r}")
    layer_ids = sorted({int(m.group(1)) for k in state if (m := _LAYER_RE.match(k))})
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
        raise ConversionError(f"encoder layers must be numbered 0..n-1, found {layer_ids}")
    num_layers = len(layer_ids)  # ordinary layers; the part layer is one more

    D = state[f"{OFFICIAL_EMBED}cls_token"].shape[-1]
    conv = state[f"{OFFICIAL_EMBED}patch_embeddings.weight"]  # (D, 3, P, P)
    if conv.ndim != 4 or conv.shape[0] != D or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3]:
        raise ConversionError(f"patch_embeddings.weight has shape {tuple(conv.shape)}, expected ({D}, 3, P, P)")
    P = conv.shape[-1]
    n_pos = state[f"{OFFICIAL_EMBED}position_embeddings"].shape[1]
    g = math.isqrt(n_pos - 1)
    if g * g != n_pos - 1:
        raise ConversionError(f"position_embeddings has {n_pos} rows: not CLS + a square grid")
    strides = infer_stride(img_size, P, g)
    if stride is None:
        if len(strides) != 1:
            raise ConversionError(
                f"a {g}x{g} grid of {P}-px patches at {img_size} px fits strides {strides}: pass --stride/--img-size"
            )
        stride = strides[0]
    elif stride not in strides:
        raise ConversionError(
            f"stride {stride} at {img_size} px gives a {grid_size((img_size, img_size), P, stride)} grid, the "
            f"checkpoint's position embedding has {g}x{g} (strides that fit: {strides})"
        )
    hidden = state[f"{OFFICIAL_ENCODER}part_layer.ffn.fc1.weight"].shape[0]
    C = state["part_head.weight"].shape[0]
    if num_classes is not None and num_classes != C:
        raise ConversionError(f"--num-classes {num_classes} but part_head has {C} rows")
    if labels is not None and len(labels) != C:
        raise ConversionError(f"{len(labels)} labels for {C} classes")
    if D % num_heads:
        raise ConversionError(f"hidden size {D} is not divisible by num_heads={num_heads}")

    cfg = TransFGConfig(num_classes=C, img_size=(img_size, img_size), patch_size=P, stride=stride, embed_dim=D,
                        depth=num_layers + 1, num_heads=num_heads, mlp_ratio=hidden / D,
                        qkv_bias=f"{OFFICIAL_ENCODER}layer.0.attn.query.bias" in state)
    model = TransFG(cfg, PretrainedCfg(labels=tuple(labels or ()), crop_pct=crop_pct))
    own = model.state_dict()
    key_map = official_key_map(num_layers)
    if set(key_map) != set(own):
        raise ConversionError(f"internal key map does not cover the model: {sorted(set(own) ^ set(key_map))[:8]}")
    missing = sorted({s for srcs in key_map.values() for s in srcs} - set(state))
    unexpected = sorted(set(state) - {s for srcs in key_map.values() for s in srcs})
    if missing or unexpected:
        raise ConversionError(f"official TransFG keys: missing {missing[:8]}, unexpected {unexpected[:8]}")
    new: dict[str, torch.Tensor] = {}
    for dst, srcs in key_map.items():
        parts = [state[s] for s in srcs]
        v = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
        if v.shape != own[dst].shape:
            raise ConversionError(f"{' + '.join(srcs)}: shape {tuple(v.shape)} does not fit "
                                  f"{dst} {tuple(own[dst].shape)}")
        new[dst] = v.to(own[dst].dtype)
    model.load_state_dict(new, strict=True)
    return model.eval()
