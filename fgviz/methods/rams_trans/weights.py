"""RAMS-Trans weights: ImageNet ViT inits (timm or Google npz) and backbone mode.

The official code (hyqyoung/RAMS-Trans) initialises from a Google ViT-B/32 npz: every block and the norm, the
pretrained CLS copied into every scale-wise CLS token and the CLS position-embedding row into every prefix row, the
patch grid resampled (scipy zoom order 1 = bilinear with aligned corners); the head is new. Backbone mode does the
same with a timm ImageNet ViT and keeps its classifier as the shared head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fgviz.methods.backbones.adapt import check_shapes, pretrained_from_timm
from fgviz.methods.backbones.vit.weights import (
    check_plain_vit,
    check_trunk,
    check_wrappable,
    npz_arch,
    read_vit_npz,
    resample_pos_embed,
    vit_arch,
    vit_grid,
)
from fgviz.methods.base import ConversionError, PretrainedCfg
from fgviz.methods.rams_trans.model import RAMSTrans, RAMSTransConfig


def init_from_vit_state(model: RAMSTrans, state: dict[str, torch.Tensor], *, load_head: bool = False) -> list[str]:
    """Copy a plain timm ViT state dict into a RAMS-Trans (module doc); returns the keys left as they were."""
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
    check_shapes(mapped, own, "ViT -> RAMS-Trans")
    missing = sorted(set(own) - set(mapped))
    if any(not k.startswith("head.") for k in missing):
        raise ConversionError(
            f"ViT -> RAMS-Trans: source is missing {[k for k in missing if not k.startswith('head.')][:8]}"
        )
    model.vit.load_state_dict(mapped, strict=not missing)
    return missing


def from_timm(src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> RAMSTrans:
    """Backbone mode: every scale token starts as the pretrained CLS; the shared head is the pretrained one."""
    src = check_plain_vit(src, "timm ViT as RAMS-Trans")
    model = RAMSTrans(RAMSTransConfig(**vit_arch(src)), pretrained_from_timm(labels, pretrained_cfg))
    check_wrappable(src, model.vit, "timm ViT as RAMS-Trans")
    with torch.no_grad():
        left = init_from_vit_state(model, src.state_dict(), load_head=True)
    if left:
        raise ConversionError(f"timm ViT as RAMS-Trans: keys left unloaded {left[:8]}")
    return model


def init_from_timm(model: RAMSTrans, src: nn.Module) -> list[str]:
    """Training init from a timm ImageNet ViT: everything but the head."""
    src = check_trunk(src, model.vit, "timm ViT -> RAMS-Trans")
    with torch.no_grad():
        left = init_from_vit_state(model, {k: v for k, v in src.state_dict().items()})
    return ["vit." + k for k in left]


def init_from_npz(path: str | Path, *, num_classes: int = 200, img_size: int | tuple[int, int] = 448,
                  stride: int | None = None, labels: Sequence[str] | None = None, **config: Any) -> RAMSTrans:
    """A RAMS-Trans ready for training from a Google ViT npz (non-overlapping patches: stride = patch size)."""
    state, geo = read_vit_npz(path)
    if stride not in (None, geo["patch_size"]):
        raise ConversionError("RAMS-Trans uses non-overlapping patches: --stride must equal the patch size")
    model = RAMSTrans(RAMSTransConfig(**npz_arch(geo, num_classes, img_size), **config),
                      PretrainedCfg(labels=tuple(labels or ())))
    init_from_vit_state(model, state)
    return model
