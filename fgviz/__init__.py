"""fgviz: an interactive attention explorer for fine-grained image recognition (TransFG, RAMS-Trans, TASN).

The public names are imported lazily, so `import fgviz.viz` (numpy/plotly only) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "rollout": "fgviz.attention",
    "psm_select": "fgviz.attention",
    "dppm": "fgviz.attention",
    "trilinear_attention": "fgviz.sampling",
    "attention_sample": "fgviz.sampling",
    "record_attention": "fgviz.capture",
    "Explanation": "fgviz.explanation",
    "MODEL_CLASSES": "fgviz.models",
    "FineGrainedModel": "fgviz.models",
    "create_model": "fgviz.models",
    "load": "fgviz.hub",
    "save_model": "fgviz.hub",
    "push_to_hub": "fgviz.hub",
    "WeightsError": "fgviz.hub",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fgviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
