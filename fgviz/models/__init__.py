"""The three methods, by name. A plain dict: three models do not need a decorator registry."""

from __future__ import annotations

from typing import Any

from fgviz.models.base import BaseConfig, FineGrainedModel
from fgviz.models.rams_trans import RAMSTrans, RAMSTransConfig
from fgviz.models.tasn import TASN, TASNConfig
from fgviz.models.transfg import TransFG, TransFGConfig

MODEL_CLASSES: dict[str, type[FineGrainedModel]] = {"transfg": TransFG, "rams_trans": RAMSTrans, "tasn": TASN}


def create_model(method: str, **config: Any) -> FineGrainedModel:
    """Build a randomly initialised model of `method` from config arguments (validated before allocation)."""
    try:
        cls = MODEL_CLASSES[method]
    except KeyError:
        raise KeyError(f"unknown method {method!r}; available: {sorted(MODEL_CLASSES)}") from None
    return cls(cls.config_class.from_dict(config))


__all__ = [
    "MODEL_CLASSES",
    "TASN",
    "BaseConfig",
    "FineGrainedModel",
    "RAMSTrans",
    "RAMSTransConfig",
    "TASNConfig",
    "TransFG",
    "TransFGConfig",
    "create_model",
]
