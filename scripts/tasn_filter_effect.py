"""How much TASN's structure-map channel filter matters: fgviz's filter (aligned, tolerant of rounding), the same
comparing exactly, the op as written, the plain sum.

    python scripts/tasn_filter_effect.py [--n 50] [weights/tasn-birds-demo ...]

The official ``Structure_Att`` counts each distinct trilinear-map energy once, but applies flags computed in sorted
order to the channels in their own order, and compares the energies exactly (docs/methods.md 3.4,
`fgviz.core.sampling.unique_energy_mask`). Duplicates come from dead feature channels: their trilinear maps are equal
mathematically, but not always bit for bit. fgviz counts two maps as one when their energies and the maps themselves
(L1) agree within `duplicate_rtol` = (sqrt(h·w) + sqrt(C))·eps. Prints, as markdown, per input:
- bit-equal duplicates (channels beyond the first of each group of bit-equal maps), the channels fgviz merges beyond
  them (duplicates that rounding made unequal), and how many energy alone would merge at that tolerance (distinct maps
  whose energies happen to agree) and at the worst-case bound (h·w + C)·eps;
- the relative L1 difference between fgviz's structure map (before the resize and the squaring) and the others, each
  map normalised to unit sum first (the sampler sees only normalised marginals, so a map's scale does not matter);
- the largest distance between the structure sampling grids, in output samples;
on 512-channel random ReLU features (28x28, as the paper's attention net) with 0, 8 and 64 dead channels, and on the
given TASN models over held-out synthetic samples (their own feature maps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.core.sampling import duplicate_rtol, sampling_coords, trilinear_attention, unique_energy_mask
from fgviz.data import synthetic
from fgviz.training.evaluate import HELD_OUT_SEED, data_version, domain_of
from fgviz.weights.format import load_folder

COLUMNS = ("exact ties", "merged", "energy alone", "energy alone, worst case", "L1 exact", "L1 mxnet", "L1 plain",
           "grid exact", "grid mxnet", "grid plain")


def samples_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance, in output samples of grid `a`, between sample i of `a` and sample i of `b`."""
    return float(np.abs(np.arange(len(a)) - np.interp(b, a, np.arange(len(a)))).max())


def energy_alone(T: torch.Tensor, rtol: float) -> int:
    """Channels a filter on energy alone would drop: sorted energies within rtol x Σ|map| of their predecessor."""
    energy, order = T.flatten(2).sum(-1).sort(dim=-1)
    scale = T.flatten(2).abs().sum(-1).gather(-1, order)
    return int((energy[:, 1:] - energy[:, :-1] <= rtol * torch.maximum(scale[:, 1:], scale[:, :-1])).sum())


def compare(T: torch.Tensor, size: tuple[int, int], out: int) -> dict[str, float]:
    """One image's trilinear maps T (1, C, h, w): merged channels, normalised L1 and grid distances against fgviz."""
    n, C = T[0, 0].numel(), T.shape[1]
    eps = torch.finfo(T.dtype).eps
    masks = {"fgviz": unique_energy_mask(T), "exact": unique_energy_mask(T, rtol=0.0),
             "mxnet": unique_energy_mask(T, variant="mxnet"),
             "plain": torch.ones_like(T[:, :, 0, 0], dtype=torch.bool)}
    row = {"exact ties": int((~masks["exact"]).sum()), "merged": int((masks["exact"] & ~masks["fgviz"]).sum()),
           "energy alone": energy_alone(T, duplicate_rtol(n, C)),
           "energy alone, worst case": energy_alone(T, (n + C) * eps)}
    maps = {k: torch.einsum("bc,bchw->bhw", m.to(T.dtype), T) for k, m in masks.items()}
    unit = {k: m / m.sum() for k, m in maps.items()}
    grids = {}
    for name, m in maps.items():
        full = torch.nn.functional.interpolate(m[:, None], size=size, mode="bilinear", align_corners=True)[:, 0] ** 2
        grids[name] = [c[0].numpy() for c in sampling_coords(full, out)]
    for name in ("exact", "mxnet", "plain"):
        row[f"L1 {name}"] = float((unit[name] - unit["fgviz"]).abs().sum())
        row[f"grid {name}"] = max(samples_apart(a, b) for a, b in zip(grids["fgviz"], grids[name], strict=True))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="TASN model folders")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"fgviz's tolerance (sqrt(h·w) + sqrt(C))·eps: {duplicate_rtol(28 * 28, 512):.2e} at 512 x 28x28, "
          f"{duplicate_rtol(16 * 16, 128):.2e} at 128 x 16x16 (float32)\n")
    print("| input | bit-equal duplicates | merged beyond them | energy alone would merge (worst-case tolerance) "
          "| rel. L1: exact comparison / op as written / plain sum | grid (samples): exact comparison / op as "
          "written / plain sum |")
    print("|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for dead in (0, 8, 64):
        rows = []
        for _ in range(10):
            x = torch.relu(torch.randn(1, 512, 28, 28, generator=gen))
            x[:, torch.randperm(512, generator=gen)[:dead]] = 0.0
            rows.append(compare(trilinear_attention(x), (512, 512), 224))
        print(_line(f"random ReLU features, {dead} dead of 512 (10 draws)", rows))
    for folder in args.models:
        model = load_folder(folder).float().eval()
        H, W = model.config.img_size
        rows = []
        for i in range(args.n):
            s = synthetic.make_sample(domain_of(model), i, HELD_OUT_SEED, (H, W), data_version(model))
            x, _ = model.preprocess(s.image)
            with torch.no_grad():
                X, _ = model.attention_features(x)
            T = trilinear_attention(X.float(), gamma=model.config.gamma)
            rows.append(compare(T, (H, W), model.config.out_size))
        print(_line(f"`{folder}` ({args.n} held-out samples)", rows))


def _line(name: str, rows: list[dict[str, float]]) -> str:
    """Mean counts, mean L1 and the largest grid distance over the rows."""
    mean = {k: float(np.mean([r[k] for r in rows])) for k in COLUMNS}
    worst = {k: float(np.max([r[k] for r in rows])) for k in COLUMNS}
    return (f"| {name} | {mean['exact ties']:.2f} | {mean['merged']:.2f} | {mean['energy alone']:.1f} "
            f"({mean['energy alone, worst case']:.1f}) "
            f"| {100 * mean['L1 exact']:.3f} / {100 * mean['L1 mxnet']:.3f} / {100 * mean['L1 plain']:.3f} % "
            f"| {worst['grid exact']:.2f} / {worst['grid mxnet']:.2f} / {worst['grid plain']:.2f} |")


if __name__ == "__main__":
    main()
