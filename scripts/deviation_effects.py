"""Measured effects of three deviations in the README's table, on the sampler's test maps and on the demo models.

    python scripts/deviation_effects.py [--n 200] weights/tasn-birds-demo weights/rams_trans-birds-demo ...

- TASN sampler CDF: the largest distance, in output samples, between fgviz's default grid and the official op's
  (`variant="mxnet"`), beside the bound derived in tests/test_sampling.py (`cdf_fix_bound`, about 1 + d_peak/2
  samples, d_peak the grid's peak density in output samples per input pixel):
  - on the reference maps of tests/test_sampling.py (out 224/336/448, 1 and 5 iterations);
  - on sharp-peak maps (two Gaussian peaks on a 2 % floor, `peaked_map`), square and not (512x512, 384x512,
    512x320), peak widths 0.3-30 % of the short side, out 224/336/448, 5 iterations: the gap against the peak
    density;
  - the op's batch position: how far image b >= 1's grid lies from the same map's grid as image 0;
  - on each TASN model's held-out samples (structure and detail grids; on the models the op's structure filter
    too);
- TASN all-zero attention: how many held-out samples give an all-zero structure map (the op has no result there);
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
from fgviz.methods.tasn import views as tasn_views
from fgviz.training.evaluate import HELD_OUT_SEED, data_version, domain_of
from fgviz.weights.format import load_folder
from scripts.tasn_filter_effect import samples_apart
from tests.test_sampling import REFERENCE_MAPS, cdf_fix_bound, peaked_map, reference_map

OUTS = (224, 336, 448)
SHAPES = ((512, 512), (384, 512), (512, 320))
PEAK_WIDTHS = (0.003, 0.01, 0.03, 0.1, 0.3)  # Gaussian sigma, fraction of the short side


def grid_gaps(att: torch.Tensor, out: int, iters: int = 5, dense: float = 4.0) -> list[tuple[float, float, float]]:
    """Per axis (rows, columns): (samples apart, the derived bound, peak density in samples per input pixel)."""
    ours = sampling.sampling_coords(att, out, iters=iters, dense=dense)
    official = sampling.sampling_coords(att, out, iters=iters, dense=dense, variant="mxnet")
    densities = sampling.sampler_densities(att, out, iters=iters, dense=dense)
    return [(samples_apart(a[0].numpy(), b[0].numpy()), cdf_fix_bound(d[0].numpy(), out), float(d.max()))
            for a, b, d in zip(ours, official, densities, strict=True)]


def reference_maps() -> None:
    gaps = [g for name in REFERENCE_MAPS for out in OUTS for iters in (1, 5)
            for g in grid_gaps(torch.from_numpy(reference_map(name)).double()[None], out, iters)]
    apart = [g[0] for g in gaps]
    print(f"TASN default vs op grid, reference maps ({', '.join(REFERENCE_MAPS)}; out {OUTS}; 1 and 5 iterations): "
          f"max {max(apart):.2f}, median {np.median(apart):.2f} samples; every gap within its bound: "
          f"{all(a <= b + 1e-9 for a, b, _ in gaps)}")


def peaked_maps() -> None:
    print("\n| map | peak width (x short side) | out | peak density, rows / columns (samples per input px; "
          "x uniform) | default vs op, rows / columns (samples) | bound 1 + d/2 (samples) |")
    print("|---|---|---|---|---|---|")
    for H, W in SHAPES:
        for width in PEAK_WIDTHS:
            att = torch.from_numpy(peaked_map(H, W, 0, sigma=width)).double()[None]
            for out in OUTS:
                (ra, rb, rd), (ca, cb, cd) = grid_gaps(att, out)
                print(f"| {H}x{W} | {width:g} | {out} | {rd:.2f} / {cd:.2f} ({rd * H / out:.1f}x / "
                      f"{cd * W / out:.1f}x) | {ra:.2f} / {ca:.2f} | {rb:.2f} / {cb:.2f} |")


def batch_position() -> None:
    """The op's C[-1] comes from the previous image for images 1..B-1: their first sample moves off pixel -1."""
    worst, first = 0.0, []
    for H, W in SHAPES:
        att = torch.from_numpy(np.stack([peaked_map(H, W, 1), peaked_map(H, W, 0)])).double()  # (2, H, W)
        alone = sampling.sampling_coords(att[1:], 224, variant="mxnet")  # the second map as image 0
        in_batch = sampling.sampling_coords(att, 224, variant="mxnet")  # ... and as image 1
        for a, b in zip(alone, in_batch, strict=True):
            worst = max(worst, samples_apart(a[0].numpy(), b[1].numpy()))
            first.append((float(a[0, 0]), float(b[1, 0])))
    print(f"\nop's batch position (out 224): first sample at {first[0][0]:.3f} px as image 0, "
          f"{min(f[1] for f in first):.4f}-{max(f[1] for f in first):.4f} px as image 1; the grids otherwise equal "
          f"(largest distance {worst:.2f} samples, at the first sample)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    reference_maps()
    peaked_maps()
    batch_position()
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
            zero, cdf_gaps, total = 0, [], []
            for s in samples:
                e, official = model.explain(s.image), model.explain(s.image, variant="mxnet")
                zero += int(not np.any(e.maps["structure"]))
                full = tasn_views.full_maps(e)  # the maps the sampler took
                p = e.params
                for kind in ("structure", "detail"):
                    # the CDF alone: both grids from fgviz's maps, in float64, beside the derived bound
                    cdf_gaps += grid_gaps(torch.from_numpy(full[kind]).double()[None], p["out_size"], p["iters"],
                                          p["dense"])
                    # everything the op does differently: its grid and its structure filter, as explain runs them
                    total += [samples_apart(np.asarray(a, float), np.asarray(b, float))
                              for a, b in zip(e.sample_coords[kind], official.sample_coords[kind], strict=True)]
            worst = max(cdf_gaps)
            print(f"{folder} ({args.n} held-out samples): all-zero structure maps {zero}; default vs op grid on the "
                  f"same maps: max {worst[0]:.2f} samples (bound {worst[1]:.2f}, peak density {worst[2]:.2f}), "
                  f"median {np.median([g[0] for g in cdf_gaps]):.2f}, within the bound: "
                  f"{all(a <= b + 1e-6 for a, b, _ in cdf_gaps)}, peak densities up to "
                  f"{max(g[2] for g in cdf_gaps):.2f} samples per input px; with the op's structure filter too: "
                  f"max {max(total):.2f}, median {np.median(total):.2f} samples")


if __name__ == "__main__":
    main()
