"""Convert original checkpoints into fgviz models: official TransFG `.bin` files and Google ViT `.npz` inits.

Two conversions, each with an explicit key map and a shape assert per key (nanoGPT's ``from_pretrained`` style):

1. ``transfg-official``: a checkpoint written by TACJu/TransFG's ``train.py`` (``torch.save({'model': state_dict,
   'amp': ...})``, keys ``transformer.embeddings.*``, ``transformer.encoder.layer.{i}.*``, ``part_layer``,
   ``part_norm``, ``part_head``; see docs methods.md §1.8) becomes a `TransFG` saved by `fgviz.hub.save_model`.
   Read with ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
   The checkpoint stores no config: embed dim, depth, MLP width, patch size and the token grid are read from the
   tensor shapes, the stride is inferred from the grid (or checked against ``--stride``), the number of heads is
   not stored anywhere and comes from ``--num-heads`` (12 for ViT-B). Official q/k/v/out Linear layers become
   timm's fused ``attn.qkv`` (rows q, k, v) and ``attn.proj``; ``part_layer`` becomes the last timm block.

2. ``vit-npz``: a training initialisation from an original Google ViT ``.npz`` (ViT-B_16 / B_32 ImageNet-21k,
   Flax names such as ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``). The npz is
   read by timm's own Flax loader (``VisionTransformer.load_pretrained`` -> ``_load_weights``) into a plain timm ViT
   of the npz's geometry, then copied into the method:
   - TransFG: ``TransFG.load_backbone_state_dict``: blocks 0..L-2, patch conv (reused at the new stride), CLS,
     final norm (-> ``part_norm``); the part layer (block L-1) and the head stay random, as the official loader
     (it skips children named "part*").
   - RAMS-Trans: all blocks and the norm; the pretrained CLS goes into every scale token and the CLS
     position-embedding row into every prefix row (official: one copy per scale); the head stays random.
   What differs from the official loaders: the position-embedding grid is resampled with bilinear
   ``align_corners=True`` interpolation, which is exactly ``scipy.ndimage.zoom(order=1)`` of the originals
   (timm's own resampler uses ``align_corners=False``, which is not); the ImageNet-21k ``pre_logits`` and ``head``
   of the npz are not used (the official code does not use them for fine-tuning either).

CLI::

    python -m fgviz.convert transfg-official CKPT.bin --out DIR [--num-heads 12] [--img-size 448] [--stride 12]
        [--num-classes N] [--labels labels.txt] [--crop-pct 0.7467]
    python -m fgviz.convert vit-npz ViT-B_16.npz --out DIR [--method transfg|rams_trans] [--num-classes 200]
        [--img-size 448] [--stride 12] [--labels labels.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import pickle
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from fgviz.models import MODEL_CLASSES, FineGrainedModel
from fgviz.models.rams_trans import RAMSTrans, RAMSTransConfig
from fgviz.models.transfg import TransFG, TransFGConfig, grid_size


class ConversionError(ValueError):
    """A checkpoint does not have the layout a converter expects; the message names the key or shape."""


# --------------------------------------------------------------------------------------------------------------------
# Shared: position-embedding resampling


def resample_pos_embed(
    pos: torch.Tensor,
    new_grid: tuple[int, int],
    *,
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Resample the grid part of a (1, p + gh*gw, D) position embedding to `new_grid`; prefix rows are kept.

    Bilinear with ``align_corners=True``: the first and last row/column centres stay fixed, which is what
    ``scipy.ndimage.zoom(grid, new/old, order=1)`` in the official TransFG and RAMS-Trans loaders computes.
    """
    p = num_prefix_tokens
    n = pos.shape[1] - p
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ConversionError(f"position embedding has {n} grid rows: not a square grid, pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ConversionError(
            f"position embedding has {n} grid rows, old_grid {old_grid} needs {old_grid[0] * old_grid[1]}"
        )
    if tuple(old_grid) == tuple(new_grid):
        return pos
    D = pos.shape[-1]
    grid = pos[:, p:].reshape(1, old_grid[0], old_grid[1], D).permute(0, 3, 1, 2)  # (1, D, gh0, gw0)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bilinear", align_corners=True)  # (1, D, gh, gw)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], D).to(pos.dtype)  # (1, gh*gw, D)
    return torch.cat([pos[:, :p], grid], dim=1)  # (1, p + gh*gw, D)


def _check_shapes(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], what: str) -> None:
    for k, v in state.items():
        if k not in own:
            raise ConversionError(f"{what}: no parameter {k!r} in the target model")
        if v.shape != own[k].shape:
            raise ConversionError(
                f"{what}: shape mismatch for {k}: source {tuple(v.shape)}, model {tuple(own[k].shape)}"
            )


# --------------------------------------------------------------------------------------------------------------------
# Plain timm ViT state dict -> TransFG / RAMS-Trans (shared by the npz init and fgviz.backbone)


def vit_grid(state: dict[str, torch.Tensor], num_prefix_tokens: int = 1) -> tuple[int, int]:
    n = state["pos_embed"].shape[1] - num_prefix_tokens
    side = math.isqrt(n)
    if side * side != n:
        raise ConversionError(f"pos_embed has {n} patch rows: not a square grid")
    return side, side


def init_transfg_from_vit_state(
    model: TransFG, state: dict[str, torch.Tensor], *, load_last_block: bool = False, load_head: bool = False
) -> list[str]:
    """Copy a plain timm ViT state dict (one CLS, square grid) into a TransFG; returns the keys left as they were.

    The grid of ``pos_embed`` is resampled to the model's grid (``resample_pos_embed``), then
    ``TransFG.load_backbone_state_dict`` loads everything but the part layer (unless `load_last_block`) and the head
    (unless `load_head`, which needs the same number of classes).
    """
    state = dict(state)
    own = model.vit.state_dict()
    pw, mw = state["patch_embed.proj.weight"].shape, own["patch_embed.proj.weight"].shape
    if pw != mw:
        raise ConversionError(
            f"patch embedding {tuple(pw)} does not fit the model's {tuple(mw)} (patch size or width)"
        )
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], model.grid, old_grid=vit_grid(state))
    head = {k: state.pop(k) for k in [k for k in state if k.startswith("head.")]}
    _check_shapes(state, own, "ViT -> TransFG")
    left = model.load_backbone_state_dict(state, load_last_block=load_last_block)
    if load_head:
        if set(head) != {"head.weight", "head.bias"}:
            raise ConversionError(f"load_head: the source has no linear head (keys {sorted(head)})")
        _check_shapes(head, own, "ViT head -> TransFG head")
        model.vit.head.load_state_dict({k[len("head.") :]: v for k, v in head.items()})
        left = [k for k in left if not k.startswith("head.")]
    return left


def init_rams_from_vit_state(
    model: RAMSTrans, state: dict[str, torch.Tensor], *, load_head: bool = False
) -> list[str]:
    """Copy a plain timm ViT state dict into a RAMS-Trans; returns the keys left as they were (the head, or none).

    Every scale-wise CLS token starts as the pretrained CLS and every prefix row of the position embedding as the
    pretrained CLS row (the official init copies both once per scale); the patch grid is resampled to the model's.
    """
    S = model.config.num_scales
    own = model.vit.state_dict()
    src_grid = vit_grid(state)
    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("head.") and not load_head:
            continue
        if k == "pos_embed":
            pos = resample_pos_embed(v, model.grid, old_grid=src_grid)  # (1, 1 + gh*gw, D)
            mapped[k] = torch.cat([pos[:, :1].expand(1, S, -1), pos[:, 1:]], dim=1)  # (1, S + gh*gw, D)
        elif k == "cls_token":
            mapped[k] = v
            if S > 1:
                mapped["reg_token"] = v.expand(1, S - 1, -1).clone()  # (1, S-1, D): CLS_2..CLS_S
        else:
            mapped[k] = v
    _check_shapes(mapped, own, "ViT -> RAMS-Trans")
    missing = sorted(set(own) - set(mapped))
    if any(not k.startswith("head.") for k in missing):
        raise ConversionError(
            f"ViT -> RAMS-Trans: source is missing {[k for k in missing if not k.startswith('head.')][:8]}"
        )
    model.vit.load_state_dict(mapped, strict=not missing)
    return missing


# --------------------------------------------------------------------------------------------------------------------
# Official TransFG checkpoint -> fgviz TransFG

OFFICIAL_EMBED = "transformer.embeddings."
OFFICIAL_ENCODER = "transformer.encoder."
_LAYER_RE = re.compile(r"^transformer\.encoder\.layer\.(\d+)\.")


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


def official_transfg_key_map(num_layers: int) -> dict[str, tuple[str, ...]]:
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


def convert_official_transfg(
    state: dict[str, torch.Tensor],
    *,
    num_heads: int = 12,
    img_size: int = 448,
    stride: int | None = None,
    num_classes: int | None = None,
    labels: Sequence[str] | None = None,
    **config: Any,
) -> TransFG:
    """Build a `TransFG` from an official state dict (see `load_official_checkpoint`).

    Args:
        state: the official ``model`` state dict.
        num_heads: attention heads; not stored in the checkpoint (12 for ViT-B/16).
        img_size: input side the checkpoint was trained at (448; 304 for iNat2017).
        stride: patch-embedding stride; inferred from the position-embedding length when None.
        num_classes: if given, checked against ``part_head``.
        labels: class names, one per class.
        config: other `TransFGConfig` fields (crop_pct, mean, std, ...).

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

    cfg = TransFGConfig(
        num_classes=C,
        labels=list(labels) if labels is not None else [],
        img_size=(img_size, img_size),
        patch_size=P,
        stride=stride,
        embed_dim=D,
        depth=num_layers + 1,
        num_heads=num_heads,
        mlp_ratio=hidden / D,
        qkv_bias=f"{OFFICIAL_ENCODER}layer.0.attn.query.bias" in state,
        **config,
    )
    model = TransFG(cfg)
    own = model.state_dict()
    key_map = official_transfg_key_map(num_layers)
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
            raise ConversionError(
                f"{' + '.join(srcs)}: shape {tuple(v.shape)} does not fit {dst} {tuple(own[dst].shape)}"
            )
        new[dst] = v.to(own[dst].dtype)
    model.load_state_dict(new, strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------------------------------------
# Google ViT .npz -> plain timm ViT -> TransFG / RAMS-Trans

NPZ_BLOCK = "Transformer/encoderblock_{}/"


def read_vit_npz(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Read an original Google ViT npz through timm's Flax loader. Returns (plain timm ViT state dict, geometry).

    Geometry (embed_dim, depth, num_heads, mlp_dim, patch_size, grid) is read from the array shapes: the query
    kernel is (D, heads, head_dim), so even the number of heads is stored.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            shapes = {k: npz[k].shape for k in npz.files}
    except (OSError, ValueError, EOFError) as e:
        raise ConversionError(f"{path} is not a readable .npz: {e}") from None
    if "conv_root/kernel" in shapes:
        raise ConversionError(f"{path}: hybrid R50+ViT checkpoints are not supported")
    for k in ("embedding/kernel", "cls", "Transformer/posembed_input/pos_embedding", "Transformer/encoder_norm/scale"):
        if k not in shapes:
            raise ConversionError(f"{path} is not a Google ViT npz (no {k!r}; found {sorted(shapes)[:6]} ...)")
    P, P2, in_chans, D = shapes["embedding/kernel"]  # Flax conv kernel: (P, P, 3, D)
    if P != P2 or in_chans != 3:
        raise ConversionError(f"embedding/kernel has shape {shapes['embedding/kernel']}, expected (P, P, 3, D)")
    depth = 0
    while f"{NPZ_BLOCK.format(depth)}LayerNorm_0/scale" in shapes:
        depth += 1
    if depth == 0:
        raise ConversionError(f"{path}: no Transformer/encoderblock_0/...")
    q_shape = shapes[f"{NPZ_BLOCK.format(0)}MultiHeadDotProductAttention_1/query/kernel"]  # (D, heads, head_dim)
    if len(q_shape) != 3 or q_shape[0] != D or q_shape[1] * q_shape[2] != D:
        raise ConversionError(f"query kernel has shape {q_shape}, expected ({D}, heads, head_dim)")
    mlp_dim = shapes[f"{NPZ_BLOCK.format(0)}MlpBlock_3/Dense_0/kernel"][1]  # (D, mlp_dim)
    n = shapes["Transformer/posembed_input/pos_embedding"][1] - 1
    g = math.isqrt(n)
    if g * g != n:
        raise ConversionError(f"pos_embedding has {n + 1} rows: not CLS + a square grid")
    geometry = {
        "embed_dim": D,
        "depth": depth,
        "num_heads": q_shape[1],
        "mlp_dim": mlp_dim,
        "patch_size": P,
        "grid": g,
    }
    vit = VisionTransformer(
        img_size=g * P,
        patch_size=P,
        embed_dim=D,
        depth=depth,
        num_heads=q_shape[1],
        mlp_ratio=mlp_dim / D,
        qkv_bias=True,
        num_classes=0,
        class_token=True,
        global_pool="token",
    )
    try:
        vit.load_pretrained(str(path))  # timm's _load_weights: Flax names, kernel transposes, q/k/v -> qkv
    except KeyError as e:
        raise ConversionError(f"{path}: missing array {e} for a {depth}-block ViT") from None
    return {k: v.detach().clone() for k, v in vit.state_dict().items()}, geometry


def init_from_vit_npz(
    path: str | Path,
    method: str = "transfg",
    *,
    num_classes: int = 200,
    img_size: int | tuple[int, int] = 448,
    stride: int | None = None,
    labels: Sequence[str] | None = None,
    **config: Any,
) -> FineGrainedModel:
    """A TransFG or RAMS-Trans ready for training, initialised from a Google ViT npz as the official code does.

    Architecture (width, depth, heads, MLP, patch size) comes from the npz; `img_size`, `num_classes`, `labels`,
    `stride` (TransFG only; default 3/4 of the patch, the paper's 12 for 16) and other config fields from the
    caller. The heads (and TransFG's part layer) are random: train before use.
    """
    if method not in ("transfg", "rams_trans"):
        raise KeyError(f"vit-npz initialises 'transfg' or 'rams_trans', not {method!r}")
    state, geo = read_vit_npz(path)
    arch = dict(
        num_classes=num_classes,
        labels=list(labels) if labels is not None else [],
        img_size=img_size,
        patch_size=geo["patch_size"],
        embed_dim=geo["embed_dim"],
        depth=geo["depth"],
        num_heads=geo["num_heads"],
        mlp_ratio=geo["mlp_dim"] / geo["embed_dim"],
        qkv_bias=True,
    )
    if method == "transfg":
        model = TransFG(TransFGConfig(**arch, stride=stride or max(1, geo["patch_size"] * 3 // 4), **config))
        init_transfg_from_vit_state(model, state)
    else:
        if stride not in (None, geo["patch_size"]):
            raise ConversionError("RAMS-Trans uses non-overlapping patches: --stride must equal the patch size")
        model = RAMSTrans(RAMSTransConfig(**arch, **config))
        init_rams_from_vit_state(model, state)
    return model


# --------------------------------------------------------------------------------------------------------------------
# CLI


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not labels:
        raise ConversionError(f"{path} holds no labels (one class name per line)")
    return labels


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fgviz.convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("transfg-official", help="official TACJu/TransFG checkpoint (.bin) -> fgviz TransFG")
    o.add_argument("checkpoint", type=Path)
    o.add_argument("--out", type=Path, required=True, help="output folder (config.json + model.safetensors)")
    o.add_argument("--num-heads", type=int, default=12, help="attention heads (not stored in the checkpoint)")
    o.add_argument("--img-size", type=int, default=448)
    o.add_argument("--stride", type=int, default=None, help="patch stride (default: inferred from the grid)")
    o.add_argument("--num-classes", type=int, default=None, help="checked against part_head")
    o.add_argument("--labels", default=None, help="text file, one class name per line")
    o.add_argument("--crop-pct", type=float, default=448 / 600, help="test resize: img_size / crop_pct (600 px)")

    n = sub.add_parser("vit-npz", help="Google ViT .npz -> TransFG / RAMS-Trans initialisation for training")
    n.add_argument("npz", type=Path)
    n.add_argument("--out", type=Path, required=True)
    n.add_argument("--method", choices=["transfg", "rams_trans"], default="transfg")
    n.add_argument("--num-classes", type=int, default=200)
    n.add_argument("--img-size", type=int, default=448)
    n.add_argument("--stride", type=int, default=None, help="TransFG patch stride (default 3/4 of the patch)")
    n.add_argument("--labels", default=None, help="text file, one class name per line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from fgviz.hub import save_model

    args = build_parser().parse_args(argv)
    labels = _read_labels(args.labels)
    command = "python -m fgviz.convert " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command == "transfg-official":
        state = load_official_checkpoint(args.checkpoint)
        model = convert_official_transfg(
            state,
            num_heads=args.num_heads,
            img_size=args.img_size,
            stride=args.stride,
            num_classes=args.num_classes,
            labels=labels,
            crop_pct=args.crop_pct,
        )
        provenance = {
            "description": "Converted from an official TransFG checkpoint (github.com/TACJu/TransFG).",
            "source": args.checkpoint.name,
            "source_sha256": _sha256(args.checkpoint),
            "command": command,
        }
    else:
        num_classes = len(labels) if labels is not None else args.num_classes
        model = init_from_vit_npz(
            args.npz, args.method, num_classes=num_classes, img_size=args.img_size, stride=args.stride, labels=labels
        )
        random_part = "the part layer and the head are" if args.method == "transfg" else "the head is"
        provenance = {
            "description": f"{args.method} initialised from the Google ViT checkpoint {args.npz.name}; "
            f"{random_part} random. Train before use: predictions are meaningless.",
            "weights_kind": "random",
            "source": args.npz.name,
            "source_sha256": _sha256(args.npz),
            "command": command,
        }
    out = save_model(model, args.out, provenance=provenance)
    c = model.config
    print(f"wrote {out} ({MODEL_CLASSES[model.method].__name__}, {c.num_classes} classes, {c.img_size} px)")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
