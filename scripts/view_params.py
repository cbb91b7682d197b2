"""How the demo models' localisation figures depend on the views' own parameters (not on training).

    python scripts/view_params.py [--n 200] weights/vit-birds-demo weights/rams_trans-birds-demo ...

For ViT methods: the rollout energy pointing game with the rollout's head fusion and discard ratio (Gildenblat's
vit-explain options; the app's default is the head mean without discarding, Abnar & Zuidema's rollout), and of each
layer's raw CLS attention (head mean, no rollout), for the trained model and its re-initialised copy. For
RAMS-Trans also the DPPM threshold alpha: crop recall and area of the model and of the oracle (the same DPPM fed the
deciding-part mask) at each alpha. Prints markdown; held-out samples
as `python -m fgviz.evaluate` draws them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.core import metrics
from fgviz.data import synthetic
from fgviz.explorer.analysis import AttentionAnalysis
from fgviz.methods.backbones.vit.views import token_pixels
from fgviz.methods.rams_trans.views import dppm_oracle_box
from fgviz.training.evaluate import HELD_OUT_SEED, data_version, domain_of
from fgviz.weights.format import load_folder

ROLLOUTS = (("mean", 0.0), ("mean", 0.5), ("mean", 0.9), ("max", 0.0), ("max", 0.9))
ALPHAS = (1.0, 1.2, 1.5, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| model | weights | map | energy pointing | x chance |\n|---|---|---|---|---|")
    alpha_rows = []
    for folder in args.models:
        trained = load_folder(folder).float().eval()
        domain, version = domain_of(trained), data_version(trained)
        H, W = trained.config.img_size
        samples = [synthetic.make_sample(domain, i, HELD_OUT_SEED, (H, W), version) for i in range(args.n)]
        masks = [trained.preprocess.mask(s.part_mask) for s in samples]  # in the model's input pixels
        chance = float(np.mean([m.mean() for m in masks]))
        for kind, model in (("trained", trained), ("re-init", trained.reinitialized(seed=0).eval())):
            sums = {r: [] for r in ROLLOUTS}
            recall = {a: [] for a in ALPHAS}
            area = {a: [] for a in ALPHAS}
            for s, part_mask in zip(samples, masks, strict=True):
                e = model.explain(s.image)
                analysis = AttentionAnalysis(e)
                for fusion, discard in ROLLOUTS:
                    last = analysis.rollout(fusion, discard)[-1]  # (gh, gw) CLS row of the last layer's rollout
                    epg = metrics.energy_pointing_game(token_pixels(e, last), part_mask)
                    sums[(fusion, discard)].append(epg.value)
                for layer, cls in enumerate(analysis.query_grid(0).mean(1)):  # (L, gh, gw): head-mean CLS attention
                    epg = metrics.energy_pointing_game(token_pixels(e, cls), part_mask)
                    sums.setdefault(f"raw CLS attention, layer {layer + 1}", []).append(epg.value)
                if trained.method == "rams_trans" and kind == "trained":  # the DPPM at other thresholds
                    default_alpha = float(e.params["alphas"][0])
                    for a in ALPHAS:
                        box = e.crop_boxes[0] if a == default_alpha else model.explain(s.image, alpha=a).crop_boxes[0]
                        recall[a].append(metrics.crop_recall(box, part_mask).value)
                        area[a].append(metrics.crop_area_share(box, part_mask.shape))
                        ob = dppm_oracle_box(part_mask, e.grid, e.patch_size, a)
                        recall.setdefault(("oracle", a), []).append(metrics.crop_recall(ob, part_mask).value)
                        area.setdefault(("oracle", a), []).append(metrics.crop_area_share(ob, part_mask.shape))
            for what, v in sums.items():
                mean = float(np.mean(v))
                what = what if isinstance(what, str) else f"rollout, {what[0]}, discard {what[1]}"
                print(f"| `{folder}` | {kind} | {what} | {mean:.3f} | {mean / chance:.2f} |")
            if trained.method == "rams_trans" and kind == "trained":
                for a in ALPHAS:
                    alpha_rows.append(f"| `{folder}` | {a} | {np.mean(recall[a]):.3f} ({np.mean(area[a]):.3f}) | "
                                      f"{np.mean(recall[('oracle', a)]):.3f} ({np.mean(area[('oracle', a)]):.3f}) | "
                                      f"{np.mean(recall[a]) / np.mean(recall[('oracle', a)]):.2f} |")
    if alpha_rows:
        print("\n| model | alpha | crop recall (area) | oracle recall (area) | model / oracle |")
        print("|---|---|---|---|---|")
        print("\n".join(alpha_rows))


if __name__ == "__main__":
    main()
