"""TASN (Zheng et al., CVPR 2019): trilinear attention and the attention sampler on ResNets."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import nn

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.methods.base import FineGrainedModel
from fgviz.methods.method import PRETRAIN_RECIPES, Backbone, Method, Overview, ParamSpec, Steps
from fgviz.methods.tasn import views, weights
from fgviz.methods.tasn.model import TASN, TASNConfig
from fgviz.viz.panels import Style, relative


class TASNMethod(Method):
    name = "tasn"
    title = "TASN"
    model_class = TASN
    backbone_family = "ResNet"
    also_wraps = ("ConvNeXt",)  # backbone mode only (fgviz's extension; model.py)
    default_for_family = True
    step_params = (
        ParamSpec("gamma", "gamma (trilinear softmax)", 0.5, 20, 0.5),
        ParamSpec("dense", "dense (first-round cap, x uniform)", 1, 16, 0.5),
        ParamSpec("iters", "clipping rounds", 0, 20, 1, integer=True),
        ParamSpec("out_size", "output size", 16, 512, 8, integer=True),
        ParamSpec("detail_channel", "detail channel (-1 = all)", -1, 2047, 1, none_below=0, integer=True),
    )
    paper = "Zheng et al., CVPR 2019, arXiv 1903.06150, github.com/researchmm/tasn"
    # official: SGD lr 0.1 without momentum, x0.1 at 1/3 and 2/3 of 300 epochs, batch 96 on 8 GPUs
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"model": dict(img_size=(512, 512), crop_pct=1.0, att_size=224, out_size=224), "optimizer": "sgd",
                  "lr": 0.1, "momentum": 0.0, "schedule": "step", "warmup_steps": 0, "steps": 300 * 63,
                  "batch_size": 12, "grad_clip": 0.0, "init": "timm:resnet50.tv_in1k"},
        # Demo: one small ResNet for the attention net and the backbone (both start from the ResNet that
        # `python -m fgviz.train --pretrain resnet` trains on every synthetic class, as both start from ImageNet in
        # the paper); 192 px, the attention net sees 128 px, the sampler makes 128 px.
        "demo": {"model": dict(img_size=(192, 192), crop_pct=1.0, att_size=128, out_size=128, att_block="basic",
                               att_layers=(1, 1, 1, 1), att_channels=(32, 64, 96, 128), backbone_block="basic",
                               backbone_layers=(1, 1, 1, 1), backbone_channels=(32, 64, 96, 128)),
                 "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_steps": 60, "steps": 1000,
                 "batch_size": 32, "grad_clip": 0.0, "eval_every": 250, "eval_samples": 512},
        "tiny": {"model": dict(img_size=(48, 48), crop_pct=1.0, att_size=32, out_size=24, att_layers=(1, 1, 1, 1),
                               att_channels=(8, 8, 16, 16), backbone_block="basic", backbone_layers=(1, 1, 1, 1),
                               backbone_channels=(8, 8, 16, 16)),
                 "optimizer": "adamw", "lr": 1e-3, "warmup_steps": 2, "steps": 6, "batch_size": 4, "grad_clip": 0.0,
                 "eval_every": 3, "eval_samples": 8},
    }

    def signature(self, e: Explanation) -> np.ndarray:
        return relative(views.display_maps(e)["structure"])

    def overview_maps(self, e: Explanation) -> dict[str, np.ndarray]:
        shown = views.display_maps(e)
        return {"signature": relative(shown["structure"]), "detail": relative(shown["detail"])}

    def overview(self, e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
                 main_only: bool = False) -> Overview:
        return views.overview(e, maps, style, vrange, main_only)

    def params_of(self, e: Explanation) -> dict[str, Any]:
        p = e.params
        return {"gamma": float(p["gamma"]), "dense": float(p["dense"]), "iters": int(p["iters"]),
                "out_size": int(p["out_size"]), "detail_channel": p.get("detail_channel"),
                "variant": p.get("variant", "tasn")}

    def steps(self, e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps:
        return views.steps(e, style, {**self.params_of(e), **(params or {})})

    def param_limits(self, model: FineGrainedModel, e: Explanation) -> dict[str, float]:
        return {"detail_channel": int(e.features.shape[0]) - 1}

    def map_choices(self) -> tuple[str, ...]:
        return ("structure", "detail")

    def named_map(self, e: Explanation, name: str) -> np.ndarray:
        if name in ("structure", "detail"):
            return views.full_maps(e)[name]
        return super().named_map(e, name)

    def summary(self, e: Explanation) -> dict[str, Any]:
        return {"sample_coords": {k: {"rows": np.asarray(r).round(3).tolist(), "cols": np.asarray(c).round(3).tolist()}
                                  for k, (r, c) in e.sample_coords.items()},
                "head_top1": {k: e.labels[int(np.argmax(p))] for k, p in e.extras.get("head_probs", {}).items()}}

    def figures(self, e: Explanation, part_mask: np.ndarray, *, oracles: bool = True
                ) -> dict[str, metrics.MetricResult]:
        return views.figures(e, part_mask, oracles)

    def official_figures(self, model: FineGrainedModel, image: np.ndarray, e: Explanation, label: int,
                         part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
        """Accuracy and structure magnification with the op's exact grid and structure filter (variant "mxnet")."""
        if model.config.sampler_variant == "mxnet":
            return {}
        official = model.explain(image, variant="mxnet")
        return {"accuracy_mxnet": metrics.MetricResult(float(np.argmax(official.probs) == label), 1 / len(e.labels)),
                "structure_magnification_mxnet": metrics.magnification(*official.sample_coords["structure"],
                                                                       part_mask)}

    def from_timm(self, src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> FineGrainedModel:
        return weights.from_timm(src, labels, pretrained_cfg)

    def init_from_timm(self, model: FineGrainedModel, src: nn.Module) -> list[str]:
        return weights.init_from_timm(model, src)

    def pretrain_backbone(self, preset: str, overrides: dict[str, Any] | None = None) -> Backbone | None:
        """The ResNet of this preset, for both the attention net and the backbone (both start from ImageNet in the
        paper); only when the two share the architecture."""
        fields = {**self.presets.get(preset, {}).get("model", {}), **(overrides or {})}
        if preset not in PRETRAIN_RECIPES or not fields:
            return None
        c = TASNConfig(num_classes=1, **{k: v for k, v in fields.items() if k in TASNConfig.__dataclass_fields__})
        if (c.att_block, c.att_layers, c.att_channels) != (c.backbone_block, c.backbone_layers, c.backbone_channels):
            return None
        import timm

        arch = {"basic": "resnet18", "bottleneck": "resnet50"}[c.backbone_block]
        args = {"layers": list(c.backbone_layers), "channels": list(c.backbone_channels)}
        module = timm.create_model(arch, pretrained=False, num_classes=1, **args)
        # trained at the attention net's input size: where the trilinear maps come from
        # the small ResNet is at 100 % on the pretraining task's held-out samples by step 1000 (of the ViT's 4000)
        recipe = {**PRETRAIN_RECIPES[preset], **({"steps": 1500, "eval_every": 500} if preset == "demo" else {})}
        return Backbone(module, arch, args, (c.att_size, c.att_size), recipe)

    def backbone_note(self) -> str:
        return ("backbone, attention net and every fc are the pretrained network (one copy); the attention head is "
                "the identity")


METHOD = TASNMethod()

__all__ = ["METHOD", "TASN", "TASNConfig", "TASNMethod"]
