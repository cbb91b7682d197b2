"""Measured effects of three deviations in the README's table, on the sampler's test maps and on the demo models.

    python scripts/deviation_effects.py [--n 200] weights/tasn-birds-demo weights/rams_trans-birds-demo ...

- TASN sampler CDF: the largest distance, in output samples, between fgviz's default grid and the official op's
  (`variant="mxnet"`) on the reference maps of tests/test_sampling.py (out 224/336, 1 and 5 iterations), and on
  each TASN model's held-out samples (structure and detail grids; on the models the op's structure filter too);
- TASN all-zero attention: how many held-out samples give an all-zero structure map (the op would divide by zero);
- RAMS-Trans empty DPPM mask: how many held-out samples get no component (the crop is then the whole image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.core import sampling
from fgviz.data import synthetic
from fgviz.training.evaluate import HELD_OUT_SEED, data_version, domain_of
from fgviz.weights.format import load_folder
from scripts.tasn_filter_effect import samples_apart
from tests.test_sampling import REFERENCE_MAPS, reference_map


def reference_maps() -> list[float]:
    apart = []
    for name in REFERENCE_MAPS:
        att = torch.from_numpy(reference_map(name))[None]
        for out in (224, 336):
            for iters in (1, 5):
                ours = sampling.sampling_coords(att, out, iters=iters)
                official = sampling.sampling_coords(att, out, iters=iters, variant="mxnet")
                apart += [samples_apart(a[0].double().numpy(), b[0].double().numpy())
                          for a, b in zip(ours, official, strict=True)]
    return apart


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    apart = reference_maps()
    print(f"TASN default vs op grid, reference maps: max {max(apart):.2f}, median {np.median(apart):.2f} samples")
    for folder in args.models:
        model = load_folder(folder).float().eval()
        H, W = model.config.img_size
        samples = [synthetic.make_sample(domain_of(model), i, HELD_OUT_SEED, (H, W), data_version(model))
                   for i in range(args.n)]
        if model.method == "rams_trans":
            whole = sum(int(np.prod(np.subtract(e.crop_boxes[0][2:], e.crop_boxes[0][:2])) >= H * W)
                        for e in (model.explain(s.image) for s in samples))
            print(f"{folder}: empty DPPM mask (crop = whole image) on {whole} of {args.n} samples")
        elif model.method == "tasn":
            zero, apart = 0, []
            for s in samples:
                e, official = model.explain(s.image), model.explain(s.image, variant="mxnet")
                zero += int(not np.any(e.maps["structure"]))
                for kind in ("structure", "detail"):
                    apart += [samples_apart(np.asarray(a, float), np.asarray(b, float))
                              for a, b in zip(e.sample_coords[kind], official.sample_coords[kind], strict=True)]
            print(f"{folder}: all-zero structure maps {zero} of {args.n}; default vs op grid: max {max(apart):.2f}, "
                  f"median {np.median(apart):.2f} samples")


if __name__ == "__main__":
    main()
