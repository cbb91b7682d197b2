"""How much TASN's structure-map channel filter matters: fgviz's aligned filter, the op as written, the plain sum.

    python scripts/tasn_filter_effect.py [--n 50] [weights/tasn-birds-demo ...]

The official ``Structure_Att`` counts each distinct trilinear-map energy once, but applies flags computed in sorted
order to the channels in their own order (docs/methods.md 3.4, `fgviz.core.sampling.unique_energy_mask`). Ties come
from dead feature channels: their trilinear maps are identical. Prints, as markdown, the relative L1 difference between
the structure maps (before the resize and the squaring) and the largest distance between the structure sampling grids
in output samples:
- on 512-channel random ReLU features (28x28, as the paper's attention net) with 0, 8 and 64 dead channels;
- on the given TASN models, over held-out synthetic samples (their own feature maps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.core.sampling import sampling_coords, structure_detail, trilinear_attention
from fgviz.data import synthetic
from fgviz.training.evaluate import HELD_OUT_SEED, domain_of
from fgviz.weights.format import load_folder


def samples_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance, in output samples of grid `a`, between sample i of `a` and sample i of `b`."""
    return float(np.abs(np.arange(len(a)) - np.interp(b, a, np.arange(len(a)))).max())


def compare(T: torch.Tensor, size: tuple[int, int], out: int) -> dict[str, float]:
    """Relative L1 of the mxnet-filter and plain-sum structure maps against the aligned one, and grid distances."""
    aligned, _ = structure_detail(T)
    mx, _ = structure_detail(T, variant="mxnet")
    plain = T.sum(1)
    energy = T.flatten(2).sum(-1)[0]
    ties = int(energy.numel() - torch.unique(energy).numel())
    row = {"tied channels": ties}
    grids = {}
    for name, m in (("aligned", aligned), ("mxnet", mx), ("plain", plain)):
        row[f"L1 {name}"] = float((m - aligned).abs().sum() / aligned.abs().sum())
        full = torch.nn.functional.interpolate(m[:, None], size=size, mode="bilinear", align_corners=True)[:, 0] ** 2
        grids[name] = [c[0].numpy() for c in sampling_coords(full, out)]
    for name in ("mxnet", "plain"):
        row[f"grid {name}"] = max(samples_apart(a, b) for a, b in zip(grids["aligned"], grids[name], strict=True))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", help="TASN model folders")
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    print("| input | tied channels | rel. L1, op as written | rel. L1, plain sum | grid, op as written (samples) | "
          "grid, plain sum (samples) |")
    print("|---|---|---|---|---|---|")
    gen = torch.Generator().manual_seed(0)
    for dead in (0, 8, 64):
        rows = []
        for _ in range(10):
            x = torch.relu(torch.randn(1, 512, 28, 28, generator=gen))
            x[:, torch.randperm(512, generator=gen)[:dead]] = 0.0
            rows.append(compare(trilinear_attention(x), (512, 512), 224))
        print(_line(f"random ReLU features, {dead} dead of 512", rows))
    for folder in args.models:
        model = load_folder(folder).eval()
        domain = domain_of(model)
        H, W = model.config.img_size
        rows = []
        for i in range(args.n):
            s = synthetic.make_sample(domain, i, HELD_OUT_SEED, (H, W))
            x, _ = model.preprocess(s.image)
            with torch.no_grad():
                X, _ = model.attention_features(x)
            T = trilinear_attention(X.float(), gamma=model.config.gamma)
            rows.append(compare(T, (H, W), model.config.out_size))
        print(_line(f"`{folder}` ({args.n} held-out samples)", rows))


def _line(name: str, rows: list[dict[str, float]]) -> str:
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    worst = {k: float(np.max([r[k] for r in rows])) for k in rows[0]}
    return (f"| {name} | {mean['tied channels']:.1f} | {100 * mean['L1 mxnet']:.2f} % "
            f"| {100 * mean['L1 plain']:.2f} % "
            f"| {worst['grid mxnet']:.2f} | {worst['grid plain']:.2f} |")


if __name__ == "__main__":
    main()
