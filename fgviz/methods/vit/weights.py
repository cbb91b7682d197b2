"""The ViT baseline's weights: a timm ViT wrapped as it is (backbone mode) or copied in as a training init."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fgviz.methods.backbones.adapt import check_shapes, pretrained_from_timm
from fgviz.methods.backbones.vit.model import ViTConfig
from fgviz.methods.backbones.vit.weights import (
    check_plain_vit,
    check_trunk,
    check_wrappable,
    resample_pos_embed,
    vit_arch,
    vit_grid,
)
from fgviz.methods.base import ConversionError
from fgviz.methods.vit.model import ViT


def vit_from_timm(src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> ViT:
    """The baseline as a timm ImageNet ViT: the same weights, every key (it *is* that model)."""
    src = check_plain_vit(src, "timm ViT as ViT")
    model = ViT(ViTConfig(**vit_arch(src)), pretrained_from_timm(labels, pretrained_cfg))
    check_wrappable(src, model.vit, "timm ViT as ViT")
    with torch.no_grad():
        model.vit.load_state_dict(src.state_dict(), strict=True)
    return model


def vit_init_from_timm(model: ViT, src: nn.Module) -> list[str]:
    """Training init of the baseline: every weight but the head, the position grid resampled to the model's."""
    src = check_trunk(src, model.vit, "timm ViT -> ViT")
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], model.grid, old_grid=vit_grid(state))
    own = model.vit.state_dict()
    check_shapes(state, own, "timm ViT -> ViT")
    with torch.no_grad():
        missing, unexpected = model.vit.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("head.") for k in missing):
        raise ConversionError(f"timm ViT -> ViT: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return ["vit." + k for k in missing]

