"""Write random-weight checkpoints for every registry entry that has no trained weights yet.

They let the app and its tests run on a fresh machine before demo weights are trained; the app labels them
"random weights". Usage: python scripts/make_random_weights.py [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fgviz.data import synthetic
from fgviz.hub import ROOT, registry, save_model
from fgviz.models import create_model
from fgviz.train import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--force", action="store_true", help="overwrite existing folders")
    args = ap.parse_args()
    for name, entry in registry().items():
        out = ROOT / entry["source"]
        if (out / "model.safetensors").exists() and not args.force:
            continue
        torch.manual_seed(0)
        labels = list(synthetic.class_names(entry["domain"]))
        model = create_model(entry["method"], num_classes=len(labels), labels=labels,
                             **PRESETS["demo"][entry["method"]].model)
        save_model(model, out, half=True, provenance={
            "name": name, "weights_kind": "random", "dataset": f"synth-{entry['domain']}",
            "description": "Random weights (untrained placeholder): maps show architecture, not learned parts.",
        })
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
