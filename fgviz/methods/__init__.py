"""The methods, one folder each, and the registry the layers above use instead of branching on method names.

Adding a method = a folder `fgviz/methods/<name>/` (model, weights, views, a `Method` in `__init__.py`) + one line
in `METHODS` below.
"""

from __future__ import annotations

from typing import Any

from fgviz.core import explanation
from fgviz.methods import display
from fgviz.methods.base import PRETRAINED_FIELDS, FineGrainedModel, ModelConfig, PretrainedCfg
from fgviz.methods.method import Method
from fgviz.methods.rams_trans import METHOD as RAMS_TRANS
from fgviz.methods.tasn import METHOD as TASN
from fgviz.methods.transfg import METHOD as TRANSFG
from fgviz.methods.vit import METHOD as VIT

METHODS: dict[str, Method] = {m.name: m for m in (TRANSFG, RAMS_TRANS, TASN, VIT)}
MODEL_CLASSES: dict[str, type[FineGrainedModel]] = {name: m.model_class for name, m in METHODS.items()}


def get(method: str) -> Method:
    """The `Method` called `method`; KeyError listing the available ones."""
    try:
        return METHODS[method]
    except KeyError:
        raise KeyError(f"unknown method {method!r}; available: {sorted(METHODS)}") from None


def _display(e: explanation.Explanation) -> object:
    return display.figure(get(e.method), e)


explanation.set_display(_display)  # an Explanation in a notebook shows its method's signature view


def create_model(method: str, **kwargs: Any) -> FineGrainedModel:
    """A randomly initialised model of `method`; `kwargs` are its `ModelConfig` arguments plus, for convenience,
    `PretrainedCfg` ones (labels, mean, std, crop_pct). Validated before anything is allocated."""
    cls = get(method).model_class
    pretrained = {k: kwargs.pop(k) for k in list(kwargs) if k in PRETRAINED_FIELDS}
    return cls(cls.config_class.from_dict(kwargs), PretrainedCfg(**pretrained))


__all__ = ["METHODS", "MODEL_CLASSES", "FineGrainedModel", "Method", "ModelConfig", "PretrainedCfg", "create_model",
           "get"]
