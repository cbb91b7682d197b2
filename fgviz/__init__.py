"""fgviz: an interactive attention explorer for fine-grained image recognition (TransFG, RAMS-Trans, TASN)."""

from __future__ import annotations

from fgviz.attention import dppm, psm_select, rollout
from fgviz.capture import record_attention
from fgviz.explanation import Explanation
from fgviz.models import MODEL_CLASSES, FineGrainedModel, create_model
from fgviz.sampling import attention_sample, trilinear_attention

__version__ = "0.1.0"

__all__ = [
    "MODEL_CLASSES",
    "Explanation",
    "FineGrainedModel",
    "__version__",
    "attention_sample",
    "create_model",
    "dppm",
    "psm_select",
    "record_attention",
    "rollout",
    "trilinear_attention",
]
