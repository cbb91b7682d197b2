"""RAMS-Trans weights: ImageNet ViT inits (timm or Google npz) and backbone mode.

The official code (hyqyoung/RAMS-Trans) initialises from a Google ViT-B/32 npz: every block and the norm, the
pretrained CLS copied into every scale-wise CLS token and the CLS position-embedding row into every prefix row, the
patch grid resampled (scipy zoom order 1 = bilinear with aligned corners); the head is new. Backbone mode wraps a
timm ViT as it is, its classifier the shared head, with one CLS token for every scale (`shared_cls`: each pass is the
[CLS, patches] sequence the checkpoint was trained on; model.py says why), made of the checkpoint's own tensors.
"""

from __future__ import annotations

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
from fgviz.methods.rams_trans.model import RAMSTrans, RAMSTransConfig


def init_from_vit_state(model: RAMSTrans, state: dict[str, torch.Tensor], *, load_head: bool = False) -> list[str]:
    """Copy a plain timm ViT state dict into a RAMS-Trans (module doc); returns the keys left as they were."""
    S = 1 if model.config.shared_cls else model.config.num_scales  # CLS tokens in the sequence
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
    """Backbone mode: the checkpoint's ViT as it is (one CLS read by every scale), its classifier the shared head."""
    cfg = pretrained_from_timm(labels, pretrained_cfg)
    return wrap_plain_vit(src, lambda arch: RAMSTrans(RAMSTransConfig(**arch, shared_cls=True), cfg),
                          "timm ViT as RAMS-Trans")


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
