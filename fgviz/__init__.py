"""fgviz: an interactive attention explorer for fine-grained image recognition (TransFG, RAMS-Trans, TASN).

The public names are imported lazily, so `import fgviz.viz` (numpy/plotly only) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from fgviz.core import __version__

_EXPORTS = {
    "rollout": "fgviz.core.attention",
    "psm_select": "fgviz.core.attention",
    "dppm": "fgviz.core.attention",
    "trilinear_attention": "fgviz.core.sampling",
    "attention_sample": "fgviz.core.sampling",
    "record_attention": "fgviz.core.capture",
    "Explanation": "fgviz.core.explanation",
    "METHODS": "fgviz.methods",
    "MODEL_CLASSES": "fgviz.methods",
    "FineGrainedModel": "fgviz.methods",
    "create_model": "fgviz.methods",
    "load": "fgviz.weights.hub",
    "save_model": "fgviz.weights.format",
    "push_to_hub": "fgviz.weights.download",
    "WeightsError": "fgviz.weights.format",
    # the notebook API (notebooks/): the app's views as figures and the checks that run a model
    "examples": "fgviz.notebook",
    "overview": "fgviz.notebook",
    "steps": "fgviz.notebook",
    "layers": "fgviz.notebook",
    "layer_rollout": "fgviz.notebook",
    "map_names": "fgviz.notebook",
    "saliency": "fgviz.notebook",
    "localisation": "fgviz.notebook",
    "pointing_game": "fgviz.notebook",
    "deletion_insertion": "fgviz.notebook",
    "sanity_check": "fgviz.notebook",
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
