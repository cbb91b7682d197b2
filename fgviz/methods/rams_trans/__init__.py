"""RAMS-Trans (Hu et al., ACM MM 2021): a recurrent multi-scale ViT that zooms with its Dynamic Patch Proposal."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import nn

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.methods.backbones.vit.recipes import DEMO_OPT, DEMO_VIT, PAPER_VIT, TINY_OPT, TINY_VIT
from fgviz.methods.backbones.vit.views import token_pixels, vit_summary
from fgviz.methods.base import FineGrainedModel
from fgviz.methods.method import Method, Overview, ParamSpec, Steps
from fgviz.methods.rams_trans import views, weights
from fgviz.methods.rams_trans.model import RAMSTrans, RAMSTransConfig
from fgviz.viz.panels import Style


class RAMSTransMethod(Method):
    name = "rams_trans"
    title = "RAMS-Trans"
    model_class = RAMSTrans
    backbone_family = "ViT"
    has_attention = True
    starts_from_npz = True
    step_params = (
        ParamSpec("alpha", "alpha (threshold x mean)", 0.5, 3.0, 0.05),
        ParamSpec("num_scales", "scales", 1, 3, 1, preview=False, integer=True),
    )
    paper = "Hu et al., ACM MM 2021, arXiv 2107.08192, github.com/hyqyoung/RAMS-Trans"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"model": dict(PAPER_VIT, patch_size=32, num_scales=2),
                  "init": "timm:vit_base_patch32_224.orig_in21k"},
        "demo": {"model": dict(DEMO_VIT, num_scales=2), **DEMO_OPT},
        "tiny": {"model": dict(TINY_VIT), **TINY_OPT},
    }

    def signature(self, e: Explanation) -> np.ndarray:
        return views.signature(e)

    def overview(self, e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
                 main_only: bool = False) -> Overview:
        return views.overview(e, maps, style, vrange, main_only)

    def steps(self, e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps:
        return views.steps(e, style, params)

    def params_of(self, e: Explanation) -> dict[str, Any]:
        return {"alpha": float(e.params.get("alphas", [1.2])[0]) if e.params.get("alphas") else 1.2,
                "num_scales": int(e.params.get("num_scales", 1))}

    def param_limits(self, model: FineGrainedModel, e: Explanation) -> dict[str, float]:
        return {"num_scales": model.config.num_scales}

    def map_choices(self) -> tuple[str, ...]:
        return ("dppm g", "rollout")

    def named_map(self, e: Explanation, name: str) -> np.ndarray:
        if name == "rollout" or (name == "dppm g" and not views.has_zoom(e)):
            return token_pixels(e, e.rollout[-1])
        if name == "dppm g":
            return token_pixels(e, e.dppm_maps[0])
        return super().named_map(e, name)

    def summary(self, e: Explanation) -> dict[str, Any]:
        out = vit_summary(e)
        if views.has_zoom(e):
            out.update(crop_boxes=np.asarray(e.crop_boxes).tolist(), dppm_grid_boxes=np.asarray(e.dppm_boxes).tolist())
        out["scale_top5"] = [[[n, p] for n, p in e.topk(5, sp)] for sp in e.scale_probs]
        return out

    def figures(self, e: Explanation, part_mask: np.ndarray, *, oracles: bool = True
                ) -> dict[str, metrics.MetricResult]:
        return views.figures(e, part_mask, oracles)

    def official_figures(self, model: FineGrainedModel, image: np.ndarray, e: Explanation, label: int,
                         part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
        """The accuracy of each scale alone (the official code reports each; fgviz predicts with their sum)."""
        chance = 1 / len(e.labels)
        return {f"accuracy_scale{s + 1}": metrics.MetricResult(float(np.argmax(p) == label), chance)
                for s, p in enumerate(e.scale_probs)}

    def from_timm(self, src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> FineGrainedModel:
        return weights.from_timm(src, labels, pretrained_cfg)

    def init_from_npz(self, path: Any, **kwargs: Any) -> FineGrainedModel:
        return weights.init_from_npz(path, **kwargs)

    def init_from_timm(self, model: FineGrainedModel, src: nn.Module) -> list[str]:
        return weights.init_from_timm(model, src)

    def backbone_note(self) -> str:
        return "every scale token starts as the pretrained CLS; the head is the pretrained one"


METHOD = RAMSTransMethod()

__all__ = ["METHOD", "RAMSTrans", "RAMSTransConfig", "RAMSTransMethod"]
