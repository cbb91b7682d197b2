"""Measured effect of RAMS-Trans's backbone mode reading one CLS token (the README's deviations table).

    python scripts/backbone_mode_effects.py [--n 200] weights/vit-birds-demo weights/vit-cars-demo

A checkpoint with one CLS token (here fgviz's demo ViT baselines, plain ViTs) wrapped as RAMS-Trans: fgviz runs every
pass on [CLS, patches], the sequence the checkpoint was trained on (`RAMSTransConfig.shared_cls`); the official
sequence would be [CLS_1, CLS_2, patches] with CLS_2 a copy of CLS_1. On held-out samples (generator seed 424242)
this prints how often scale 1's top-1 under each sequence agrees with the checkpoint's own prediction, and how far
its probabilities move (mean L1), and the zoom boxes both sequences propose.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.data import synthetic
from fgviz.methods.rams_trans.model import RAMSTrans, RAMSTransConfig
from fgviz.methods.rams_trans.weights import from_timm
from fgviz.training.evaluate import HELD_OUT_SEED, data_version, domain_of
from fgviz.weights.format import load_folder


def official_sequence(backbone: RAMSTrans) -> RAMSTrans:
    """The same weights with the official two scale-wise CLS tokens (CLS_2 = CLS_1, its position row copied)."""
    c = backbone.config
    model = RAMSTrans(RAMSTransConfig(**{**c.to_dict(), "shared_cls": False}), backbone.pretrained_cfg)
    state = dict(backbone.vit.state_dict())
    state["reg_token"] = state["cls_token"].clone()
    pos = state["pos_embed"]
    state["pos_embed"] = torch.cat([pos[:, :1], pos], dim=1)  # (1, 2 + gh*gw, D)
    model.vit.load_state_dict(state, strict=True)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="plain ViT checkpoints (fgviz ViT baselines)")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    for folder in args.folders:
        vit = load_folder(folder).eval()
        p = vit.pretrained_cfg
        ours = from_timm(vit.vit, list(p.labels), {"mean": p.mean, "std": p.std, "crop_pct": p.crop_pct,
                                                   "crop_mode": p.crop_mode}).eval()
        official = official_sequence(ours)
        domain, version = domain_of(vit), data_version(vit)
        agree = {"one CLS (fgviz)": 0, "two CLS (official)": 0}
        l1 = {k: [] for k in agree}
        same_box = 0
        with torch.inference_mode():
            for i in range(args.n):
                s = synthetic.make_sample(domain, i, HELD_OUT_SEED, vit.config.img_size[0], version)
                own = vit.explain(s.image).probs
                e1, e2 = ours.explain(s.image, keep_attention=False), official.explain(s.image, keep_attention=False)
                for name, e in (("one CLS (fgviz)", e1), ("two CLS (official)", e2)):
                    agree[name] += int(np.argmax(e.scale_probs[0]) == np.argmax(own))
                    l1[name].append(float(np.abs(e.scale_probs[0] - own).sum()))
                same_box += int(np.array_equal(e1.crop_boxes, e2.crop_boxes))
        print(f"{folder.name} ({args.n} held-out {domain} samples), scale 1 vs the checkpoint's own prediction:")
        for name in agree:
            print(f"  {name}: top-1 agrees {agree[name] / args.n:.3f}, mean L1 of the probabilities "
                  f"{np.mean(l1[name]):.4f} (max {np.max(l1[name]):.4f})")
        print(f"  the two sequences propose the same zoom box on {same_box / args.n:.3f} of the samples")


if __name__ == "__main__":
    main()
