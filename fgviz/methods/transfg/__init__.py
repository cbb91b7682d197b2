"""TransFG (He et al., AAAI 2022): a ViT with overlapping patches and the Part Selection Module."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import nn

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.methods.backbones.vit.recipes import DEMO_OPT, DEMO_VIT, PAPER_VIT, TINY_OPT, TINY_VIT
from fgviz.methods.backbones.vit.views import rollout_pixels, token_pixels, vit_summary
from fgviz.methods.base import FineGrainedModel
from fgviz.methods.method import Method, Overview, Steps
from fgviz.methods.transfg import views, weights
from fgviz.methods.transfg.model import TransFG, TransFGConfig
from fgviz.viz.panels import Style


class TransFGMethod(Method):
    name = "transfg"
    title = "TransFG"
    model_class = TransFG
    backbone_family = "ViT"
    has_attention = True
    starts_from_npz = True
    default_for_family = True
    paper = "He et al., AAAI 2022, arXiv 2103.07976, github.com/TACJu/TransFG"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"model": dict(PAPER_VIT, patch_size=16, stride=12), "init": "timm:vit_base_patch16_224.orig_in21k"},
        # 196 px at stride 12: 16 x 16 overlapping 16-px patches that cover the image exactly (as 448 px does)
        # From scratch for 1500 steps, not from the pretrained ViT (scripts/train_demo.sh gives it no --init):
        # fine-tuned from it, the PSM tokens hit the deciding parts only 1.46x / 1.20x as often as a re-initialised
        # ViT's; from scratch 2.1x, at 98.5 % accuracy (birds; docs/training/experiments.md).
        "demo": {"model": dict(DEMO_VIT, img_size=(196, 196), stride=12),
                 **dict(DEMO_OPT, steps=1500, eval_every=500)},
        "tiny": {"model": dict(TINY_VIT, stride=6), **TINY_OPT},
    }

    def signature(self, e: Explanation) -> np.ndarray:
        return rollout_pixels(e)

    def overview_maps(self, e: Explanation) -> dict[str, np.ndarray]:
        return {"signature": self.signature(e), "psm": views.psm_pixels(e)}

    def overview(self, e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
                 main_only: bool = False) -> Overview:
        return views.overview(e, maps, style, vrange, main_only)

    def steps(self, e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps:
        return views.steps(e, style)

    def map_choices(self) -> tuple[str, ...]:
        return ("rollout", "psm (head mean)")

    def named_map(self, e: Explanation, name: str) -> np.ndarray:
        if name == "rollout":
            return token_pixels(e, e.rollout[-1])
        if name == "psm (head mean)":
            return token_pixels(e, e.psm_rows.mean(0))
        return super().named_map(e, name)

    def summary(self, e: Explanation) -> dict[str, Any]:
        return {**vit_summary(e), "part_tokens": [int(t) for t in e.part_tokens],
                "part_patches": [list(e.token_rc(int(t))) for t in e.part_tokens],
                "part_boxes": np.asarray(e.part_boxes).tolist()}

    def figures(self, e: Explanation, part_mask: np.ndarray, *, oracles: bool = True
                ) -> dict[str, metrics.MetricResult]:
        return views.figures(e, part_mask)

    def from_timm(self, src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> FineGrainedModel:
        return weights.from_timm(src, labels, pretrained_cfg)

    def init_from_npz(self, path: Any, **kwargs: Any) -> FineGrainedModel:
        return weights.init_from_npz(path, **kwargs)

    def init_from_timm(self, model: FineGrainedModel, src: nn.Module) -> list[str]:
        return weights.init_from_timm(model, src)

    def backbone_note(self) -> str:
        return "all blocks (the part layer too) and the head are the pretrained ViT's; stride = patch size"


METHOD = TransFGMethod()

__all__ = ["METHOD", "TransFG", "TransFGConfig", "TransFGMethod"]
