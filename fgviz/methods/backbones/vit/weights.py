"""Weights every ViT method shares: resampling a position embedding, checking that a timm ViT is a plain one the
methods can wrap, its architecture as `ViTConfig` arguments, and reading an original Google ViT `.npz`.

Resampling is bilinear with ``align_corners=True``, exactly the ``scipy.ndimage.zoom(order=1)`` of the official
TransFG and RAMS-Trans loaders (timm's own resampler uses ``align_corners=False``, which is not).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from fgviz.methods.backbones.adapt import check_filled, same_modules, share_state
from fgviz.methods.backbones.vit.model import ACT_LAYERS
from fgviz.methods.backbones.vit.trunk import share_tag
from fgviz.methods.base import MAX_DEPTH, MAX_WIDTH, ConversionError

VIT_MODULES = ("blocks", "norm", "fc_norm", "norm_pre", "head")
NPZ_BLOCK = "Transformer/encoderblock_{}/"


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


def vit_grid(state: dict[str, torch.Tensor], num_prefix_tokens: int = 1) -> tuple[int, int]:
    n = state["pos_embed"].shape[1] - num_prefix_tokens
    side = math.isqrt(n)
    if side * side != n:
        raise ConversionError(f"pos_embed has {n} patch rows: not a square grid")
    return side, side


def check_plain_vit(vit: nn.Module, what: str) -> VisionTransformer:
    """`vit` if it is a plain timm ViT the methods can wrap: one CLS token, a learned position embedding added to it
    too, CLS pooling, square patches that tile the input, pre-norm blocks without layer scale or q/k norms, one
    LayerNorm eps and an activation `ViTConfig` knows. A CLIP-style norm after the embeddings (`pre_norm`) is fine.

    Raises ConversionError naming the first feature that is not supported."""
    if not isinstance(vit, VisionTransformer):
        raise ConversionError(f"{what}: needs a timm VisionTransformer, got {type(vit).__name__}")
    blk = vit.blocks[0]
    unsupported = [
        (vit.cls_token is None, "no CLS token"),
        (getattr(vit, "reg_token", None) is not None, f"{vit.num_prefix_tokens - 1} register tokens"),
        (vit.num_prefix_tokens != 1, f"{vit.num_prefix_tokens} prefix tokens"),
        (vit.no_embed_class, "a position embedding that skips the CLS token (no_embed_class)"),
        (vit.pos_embed is None, "no learned position embedding"),
        (getattr(vit, "dynamic_img_size", False), "dynamic image sizes"),
        (vit.global_pool != "token", f"global_pool={vit.global_pool!r} (CLS-token pooling needed)"),
        (getattr(vit, "attn_pool", None) is not None, "attention pooling"),
        (not isinstance(vit.fc_norm, nn.Identity), "a norm after pooling (fc_norm)"),
        (not isinstance(vit.patch_embed.norm, nn.Identity), "a norm inside the patch embedding"),
        (not isinstance(getattr(blk, "ls1", nn.Identity()), nn.Identity), "layer scale"),
        (not isinstance(getattr(blk.attn, "q_norm", nn.Identity()), nn.Identity), "q/k norms"),
        (not isinstance(vit.norm, nn.LayerNorm), "no final LayerNorm"),
    ]
    for bad, feature in unsupported:
        if bad:
            raise ConversionError(f"{what}: {feature} is not supported (fgviz wraps plain ViTs: one CLS token, "
                                  "learned position embeddings, square patches)")
    ph, pw = vit.patch_embed.patch_size
    if ph != pw or vit.patch_embed.img_size[0] % ph or vit.patch_embed.img_size[1] % pw:
        raise ConversionError(f"{what}: needs square patches that tile the input, got {ph}x{pw} patches on "
                              f"{tuple(vit.patch_embed.img_size)}")
    if vit.embed_dim > MAX_WIDTH or len(vit.blocks) > MAX_DEPTH:
        raise ConversionError(f"{what}: width {vit.embed_dim} / depth {len(vit.blocks)} above fgviz's bounds")
    act_layer(vit, what)
    norm_eps(vit, what)
    return vit


def act_layer(vit: VisionTransformer, what: str) -> str:
    """The `ViTConfig.act_layer` name of a timm ViT's MLP activation."""
    act = vit.blocks[0].mlp.act
    if isinstance(act, nn.GELU):
        return {"none": "gelu", "tanh": "gelu_tanh"}[act.approximate]
    if isinstance(act, QuickGELU):
        return "quick_gelu"
    raise ConversionError(f"{what}: MLP activation {type(act).__name__} is not supported "
                          f"(known: {sorted(ACT_LAYERS)})")


def norm_eps(vit: VisionTransformer, what: str) -> float:
    """The one eps of every LayerNorm of a timm ViT (`ViTConfig.norm_eps`)."""
    eps = {float(m.eps) for m in vit.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise ConversionError(f"{what}: LayerNorms with different eps {sorted(eps)} are not supported")
    return eps.pop()


def vit_arch(vit: VisionTransformer) -> dict[str, Any]:
    """`ViTConfig` arguments of a plain timm ViT (dropout 0: a wrapped checkpoint is an inference model)."""
    blk = vit.blocks[0]
    return dict(
        num_classes=int(vit.num_classes),
        img_size=tuple(int(s) for s in vit.patch_embed.img_size),
        patch_size=int(vit.patch_embed.patch_size[0]),
        embed_dim=int(vit.embed_dim),
        depth=len(vit.blocks),
        num_heads=int(blk.attn.num_heads),
        mlp_ratio=blk.mlp.fc1.out_features / vit.embed_dim,
        qkv_bias=blk.attn.qkv.bias is not None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        pre_norm=not isinstance(vit.norm_pre, nn.Identity),
        norm_eps=norm_eps(vit, "timm ViT"),
        act_layer=act_layer(vit, "timm ViT"),
    )


def check_wrappable(src: VisionTransformer, vit: VisionTransformer, what: str) -> None:
    """The method's timm ViT computes what `src` computes (same modules, same patch conv)."""
    same_modules(src, vit, VIT_MODULES, what)
    same_modules(src.patch_embed, vit.patch_embed, ("proj", "norm"), what)


def wrap_plain_vit(src: nn.Module, build: Callable[[dict[str, Any]], nn.Module], what: str) -> Any:
    """Backbone mode of a ViT method: `build(arch)` (the method's model for `vit_arch(src)`, whose `.vit` must print
    like `src`) is built on the meta device and its ViT made of `src`'s own tensors, so every method wrapping one
    checkpoint shares one copy of its weights."""
    src = check_plain_vit(src, what)
    with torch.device("meta"):
        model = build(vit_arch(src))
    check_wrappable(src, model.vit, what)
    share_state(model.vit, src.state_dict(), what)
    share_tag(src, model.vit)  # the same weights: the same memoised passes
    check_filled(model, what)
    return model


def check_trunk(src: nn.Module, vit: VisionTransformer, what: str) -> VisionTransformer:
    """`src` as a plain ViT whose blocks and norms have the target's architecture (for training inits)."""
    src = check_plain_vit(src, what)
    if len(src.blocks) != len(vit.blocks):
        raise ConversionError(f"{what}: {len(src.blocks)} blocks, the model has {len(vit.blocks)}")
    same_modules(src, vit, ("blocks", "norm", "norm_pre", "fc_norm"), what)
    return src


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
    geometry = {"embed_dim": D, "depth": depth, "num_heads": q_shape[1], "mlp_dim": mlp_dim, "patch_size": P,
                "grid": g}
    vit = VisionTransformer(img_size=g * P, patch_size=P, embed_dim=D, depth=depth, num_heads=q_shape[1],
                            mlp_ratio=mlp_dim / D, qkv_bias=True, num_classes=0, class_token=True,
                            global_pool="token")
    try:
        vit.load_pretrained(str(path))  # timm's _load_weights: Flax names, kernel transposes, q/k/v -> qkv
    except KeyError as e:
        raise ConversionError(f"{path}: missing array {e} for a {depth}-block ViT") from None
    return {k: v.detach().clone() for k, v in vit.state_dict().items()}, geometry


def npz_arch(geo: dict[str, int], num_classes: int, img_size: int | tuple[int, int]) -> dict[str, Any]:
    """`ViTConfig` arguments for a model initialised from an npz of geometry `geo`."""
    return dict(num_classes=num_classes, img_size=img_size, patch_size=geo["patch_size"],
                embed_dim=geo["embed_dim"], depth=geo["depth"], num_heads=geo["num_heads"],
                mlp_ratio=geo["mlp_dim"] / geo["embed_dim"], qkv_bias=True)

