"""The ViT baseline's weights: a timm ViT wrapped as it is (backbone mode) or copied in as a training init."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fgviz.methods.backbones.adapt import check_shapes, pretrained_from_timm
from fgviz.methods.backbones.vit.model import ViTConfig
from fgviz.methods.backbones.vit.weights import check_trunk, resample_pos_embed, vit_grid, wrap_plain_vit
from fgviz.methods.base import ConversionError
from fgviz.methods.vit.model import ViT


def vit_from_timm(src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> ViT:
    """The baseline as a timm ViT: the same tensors, every key (it *is* that model)."""
    return wrap_plain_vit(src, lambda arch: ViT(ViTConfig(**arch), pretrained_from_timm(labels, pretrained_cfg)),
                          "timm ViT as ViT")


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

