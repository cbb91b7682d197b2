"""Data for fgviz: synthetic fine-grained birds and cars with part ground truth, exports, real-dataset loaders.

`fgviz.data.synthetic` draws the images (numpy/OpenCV only). `fgviz.data.export` writes them in the
CUB-200-2011, Stanford Cars devkit and ImageFolder layouts, and `fgviz.data.datasets` reads those layouts (the
real datasets on disk, or the exports) as torch Datasets. Run `python -m fgviz.data --help` for the CLI.
"""

from __future__ import annotations

from typing import Any

from fgviz.data.synthetic import (
    DOMAINS,
    LATEST_VERSION,
    VERSIONS,
    NuisancePart,
    Sample,
    attributes,
    class_names,
    deciding_parts,
    make_batch,
    make_sample,
    nuisance_parts,
    num_classes,
    part_names,
)

__all__ = [
    "CUB200",
    "DOMAINS",
    "LATEST_VERSION",
    "VERSIONS",
    "NuisancePart",
    "Sample",
    "StanfordCars",
    "StanfordCarsFolder",
    "SyntheticDataset",
    "attributes",
    "class_names",
    "deciding_parts",
    "make_batch",
    "make_sample",
    "nuisance_parts",
    "num_classes",
    "part_names",
]

_LAZY = {
    "CUB200": "datasets",
    "StanfordCars": "datasets",
    "StanfordCarsFolder": "datasets",
    "SyntheticDataset": "datasets",
}


def __getattr__(name: str) -> Any:
    """Import the torch Datasets on first use, so `import fgviz.data` stays torch-free."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"fgviz.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fgviz.data' has no attribute {name!r}")
