"""The method seam: what a method folder tells the layers above it (explorer, export, evaluation, weights).

A method is one folder under `fgviz/methods/` holding its model (`model.py`), its weight adapters (`weights.py`) and
its views (`views.py`), plus a `Method` instance in its `__init__.py`; `fgviz.methods.METHODS` lists them. Nothing
above this layer branches on a method's name: the app builds its columns, tabs and controls, the exporter its
figures and `fgviz.training.evaluate` its figures from these hooks.

Views never re-state a method's maths: a preview for other parameters calls the functions the model's forward
calls, with those parameters (tests pin every preview to the model's own output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import plotly.graph_objects as go
from torch import nn

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.methods.base import FineGrainedModel, ModelConfig
from fgviz.viz.panels import Panel, Style


@dataclass(frozen=True)
class ParamSpec:
    """One control of a method's Internals tab: a parameter of `explain` the views can preview."""

    name: str  # keyword of explain(**params)
    label: str
    minimum: float
    maximum: float
    step: float
    default: float | None = None  # None: read from the explanation (`Method.params_of`)
    none_below: float | None = None  # values below this mean None (e.g. detail channel -1 = every channel)
    preview: bool = True  # False: only a re-run of the model shows its effect
    integer: bool = False


@dataclass
class Overview:
    """One column of the Overview tab, drawn from one explanation."""

    main: np.ndarray  # RGB: the method's signature view
    caption: str
    panels: list[Panel]  # further panels
    figures: dict[str, go.Figure] = field(default_factory=dict)  # extra plotly figures (RAMS-Trans: per-scale top-5)


@dataclass
class Backbone:
    """A backbone to pretrain for a method family (`Method.pretrain_backbone`): built as the method builds its own,
    and named so that timm rebuilds it (`timm.create_model(architecture, **model_args)`) from a Hub-layout folder."""

    module: nn.Module
    architecture: str  # timm model name
    model_args: dict[str, Any]
    input_size: tuple[int, int]  # (H, W) it is trained at
    recipe: dict[str, Any]  # fields of fgviz.training.recipe.Recipe for the pretraining run


@dataclass
class Steps:
    """The method step by step (the Internals tab), for the parameters in `params`."""

    panels: list[Panel]
    params: dict[str, Any]  # the parameters drawn
    preview: bool  # True when `params` differ from what the model ran with (the prediction needs a re-run)
    figure: go.Figure | None = None
    notes: str = ""  # Markdown under the panels (prediction, what is a preview)
    numbers: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base of every method's seam; a method overrides what it has (defaults: nothing)."""

    name: ClassVar[str]
    title: ClassVar[str]
    model_class: ClassVar[type[FineGrainedModel]]
    backbone_family: ClassVar[str | None] = None  # timm checkpoints it wraps and pretrains: "ViT" | "ResNet" | None
    also_wraps: ClassVar[tuple[str, ...]] = ()  # further families backbone mode can wrap (TASN: "ConvNeXt")
    wraps_as_is: ClassVar[bool] = False  # backbone mode is the checkpoint itself (the ViT baseline): not a wrapper
    default_for_family: ClassVar[bool] = False  # the method a bare timm:<name> of that family becomes
    overview_default: ClassVar[bool] = True  # a column of the Overview unless the user hides it
    has_attention: ClassVar[bool] = False  # its explanations store q/k: the Layers and heads tab applies
    step_params: ClassVar[tuple[ParamSpec, ...]] = ()
    paper: ClassVar[str] = ""  # one line: authors, venue, link
    starts_from_npz: ClassVar[bool] = False  # `init_from_npz` exists (the official ViT methods' init)
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # training recipes by name ("paper", "demo", "tiny")

    @property
    def config_class(self) -> type[ModelConfig]:
        return self.model_class.config_class

    # ---- views ------------------------------------------------------------------------------------------------
    def signature(self, e: Explanation) -> np.ndarray:
        """(H, W) pixel map of the method's signature view, relative to its mean, over `e.image`."""
        raise NotImplementedError

    def overview_maps(self, e: Explanation) -> dict[str, np.ndarray]:
        """Every map the Overview column draws, as (H, W) relative pixel maps (for one shared colour scale)."""
        return {"signature": self.signature(e)}

    def overview(self, e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
                 main_only: bool = False) -> Overview:
        """The Overview column; `vrange` is the shared colour range (None: each panel its own)."""
        raise NotImplementedError

    def steps(self, e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps | None:
        """The Internals tab; None when the method has none."""
        return None

    def params_of(self, e: Explanation) -> dict[str, Any]:
        """The values of `step_params` the explanation was made with."""
        return {p.name: e.params.get(p.name, p.default) for p in self.step_params}

    def param_limits(self, model: FineGrainedModel, e: Explanation) -> dict[str, float]:
        """Maxima of `step_params` that depend on the model (e.g. its number of scales or channels)."""
        return {}

    def map_choices(self) -> tuple[str, ...]:
        """Names of the maps the Faithfulness tab can score."""
        return ()

    def named_map(self, e: Explanation, name: str) -> np.ndarray:
        """(H, W) pixel map of `map_choices()` entry `name` over `e.image`."""
        raise KeyError(f"unknown map {name!r} for {self.title}; available: {list(self.map_choices())}")

    def summary(self, e: Explanation) -> dict[str, Any]:
        """Method-specific numbers of an explanation (boxes, tokens, per-scale predictions...)."""
        return {}

    # ---- evaluation -------------------------------------------------------------------------------------------
    def figures(self, e: Explanation, part_mask: np.ndarray, *, oracles: bool = True
                ) -> dict[str, metrics.MetricResult]:
        """Localisation figures against the deciding-part mask (same pixels as `e.image`); `oracles` adds the
        figures of the algorithm fed the part mask itself (they do not depend on the weights)."""
        return {}

    def official_figures(self, model: FineGrainedModel, image: np.ndarray, e: Explanation, label: int,
                         part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
        """The figures as the official code computes them where fgviz's explain departs from it (`e` is
        `model.explain(image)`)."""
        return {}

    # ---- weights ----------------------------------------------------------------------------------------------
    def from_timm(self, src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> FineGrainedModel:
        """Wrap a plain timm model with ImageNet weights as this method ("backbone mode", not fine-tuned)."""
        raise NotImplementedError(f"{self.title} cannot wrap a timm checkpoint")

    def init_from_npz(self, path: Any, **kwargs: Any) -> FineGrainedModel:
        """A model ready for training, initialised from an original Google ViT `.npz` (ViT methods)."""
        raise NotImplementedError(f"{self.title} cannot start from a ViT npz")

    def init_from_timm(self, model: FineGrainedModel, src: nn.Module) -> list[str]:
        """Initialise `model` for training from a plain timm model, as the official recipe does; returns the
        parameter names left as they were."""
        raise NotImplementedError(f"{self.title} has no timm initialisation")

    def backbone_note(self) -> str:
        """What backbone mode keeps of the timm model (shown in the model's provenance)."""
        return ""

    def pretrain_backbone(self, preset: str, overrides: dict[str, Any] | None = None) -> Backbone | None:
        """The backbone this method's `preset` starts from (its model arguments updated by `overrides`), when this
        method defines its family's pretraining (`python -m fgviz.train --pretrain <family>`: the stand-in for
        ImageNet initialisation); else None."""
        return None


PRETRAIN_RECIPES: dict[str, dict[str, Any]] = {  # Recipe fields of backbone pretraining, by preset (any family)
    "demo": dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, warmup_steps=200, steps=4000, batch_size=32,
                 grad_clip=1.0, eval_every=1000, eval_samples=512),
    "tiny": dict(optimizer="adamw", lr=1e-3, warmup_steps=2, steps=4, batch_size=4, eval_every=2, eval_samples=8),
}
