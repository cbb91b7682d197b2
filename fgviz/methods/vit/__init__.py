"""The plain ViT baseline: rollout and per-head attention of a vanilla timm ViT, the column a class wants beside
TransFG. What every ViT method shares lives in `fgviz.methods.backbones.vit`."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from torch import nn

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.methods.backbones.vit import recipes
from fgviz.methods.backbones.vit.model import ViTConfig, build_vit
from fgviz.methods.backbones.vit.views import rollout_figures, rollout_pixels, token_pixels, vit_summary
from fgviz.methods.base import FineGrainedModel
from fgviz.methods.method import PRETRAIN_RECIPES, Backbone, Method, Overview, Steps
from fgviz.methods.vit import views, weights
from fgviz.methods.vit.model import ViT
from fgviz.viz.panels import Style


class ViTMethod(Method):
    name = "vit"
    title = "ViT"
    model_class = ViT
    backbone_family = "ViT"
    wraps_as_is = True
    has_attention = True
    overview_default = False  # an optional Overview column
    paper = "Dosovitskiy et al., ICLR 2021, arXiv 2010.11929 (rollout: Abnar & Zuidema, ACL 2020)"
    presets = recipes.PRESETS

    def signature(self, e: Explanation) -> np.ndarray:
        return rollout_pixels(e)

    def overview(self, e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
                 main_only: bool = False) -> Overview:
        return views.overview(e, maps, style, vrange, main_only)

    def steps(self, e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps:
        return views.steps(e, style)

    def map_choices(self) -> tuple[str, ...]:
        return ("rollout",)

    def named_map(self, e: Explanation, name: str) -> np.ndarray:
        if name != "rollout":
            return super().named_map(e, name)
        return token_pixels(e, e.rollout[-1])

    def summary(self, e: Explanation) -> dict[str, Any]:
        return vit_summary(e)

    def figures(self, e: Explanation, part_mask: np.ndarray, *, oracles: bool = True
                ) -> dict[str, metrics.MetricResult]:
        return rollout_figures(e, part_mask)

    def from_timm(self, src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> FineGrainedModel:
        return weights.vit_from_timm(src, labels, pretrained_cfg)

    def init_from_timm(self, model: FineGrainedModel, src: nn.Module) -> list[str]:
        return weights.vit_init_from_timm(model, src)

    def backbone_note(self) -> str:
        return "every weight is the pretrained ViT's: it is that model"

    def pretrain_backbone(self, preset: str, overrides: dict[str, Any] | None = None) -> Backbone | None:
        """The ViT of this preset: every ViT method of the preset (same width, depth, patch) starts from it."""
        if preset not in PRETRAIN_RECIPES:
            return None
        names = {f.name for f in dataclasses.fields(ViTConfig)}  # the architecture (crop_pct etc. are not)
        fields = {**self.presets[preset]["model"], **(overrides or {})}
        cfg = ViTConfig(**{k: v for k, v in fields.items() if k in names}, num_classes=1)
        args = {"img_size": list(cfg.img_size), "patch_size": cfg.patch_size, "embed_dim": cfg.embed_dim,
                "depth": cfg.depth, "num_heads": cfg.num_heads, "mlp_ratio": cfg.mlp_ratio, "qkv_bias": cfg.qkv_bias}
        return Backbone(build_vit(cfg), "vit_small_patch16_224", args, tuple(cfg.img_size), PRETRAIN_RECIPES[preset])


METHOD = ViTMethod()

__all__ = ["METHOD", "ViT", "ViTConfig", "ViTMethod"]
