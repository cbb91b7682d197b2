"""Label-free saliency baselines on the synthetic data: does mere saliency find the deciding parts?

Data version 1 made the deciding parts the only saturated colours in the image, so any saliency map (and the argmax
of a randomly initialised ViT's attention, TransFG's part selection) pointed at them without knowing the class.
Version 2 adds nuisance parts that are as salient. This module measures, per data version, where two classic
bottom-up saliency maps put their mass and their argmax:

- "chroma": max(R, G, B) - min(R, G, B) per pixel (HSV saturation times value), the simplest colourfulness map;
- "frequency-tuned": Achanta et al. (CVPR 2009), the CIELAB distance of each (5x5 Gaussian-blurred) pixel from
  the image's mean colour.

For each map: the share of its mass on the deciding-part mask and on the nuisance mask (with each mask's share of
the image), and how often the argmax token (the map averaged over patch x patch tokens, 16 px at 192 px, as the
demo ViTs see it) touches a deciding part or a nuisance part.

    python -m fgviz.data saliency --size 192 --n 200
"""

from __future__ import annotations

import cv2
import numpy as np

from fgviz.data.synthetic import DOMAINS, VERSIONS, Sample, make_sample


def chroma(image: np.ndarray) -> np.ndarray:
    """(H, W) float32: max - min over RGB."""
    im = image.astype(np.float32)
    return im.max(2) - im.min(2)


def frequency_tuned(image: np.ndarray) -> np.ndarray:
    """(H, W) float32: Achanta et al. 2009, ||mean Lab - blurred Lab|| per pixel."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    blur = cv2.GaussianBlur(lab, (5, 5), 0)
    return np.linalg.norm(blur - lab.reshape(-1, 3).mean(0), axis=2)


MAPS = {"chroma": chroma, "frequency-tuned": frequency_tuned}


def _argmax_token(sal: np.ndarray, patch: int) -> tuple[slice, slice]:
    H, W = sal.shape
    gh, gw = H // patch, W // patch
    tokens = sal[: gh * patch, : gw * patch].reshape(gh, patch, gw, patch).mean((1, 3))
    r, c = np.unravel_index(int(tokens.argmax()), tokens.shape)
    return slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch)


def sample_figures(s: Sample, patch: int) -> dict[str, float]:
    """Per-sample figures for every map: mass shares on the deciding and nuisance masks, argmax-token hits."""
    out = {"area_part": float(s.part_mask.mean()), "area_nuisance": float(s.nuisance_mask.mean())}
    for name, fn in MAPS.items():
        sal = fn(s.image)
        total = float(sal.sum()) + 1e-9
        out[f"{name}/mass_part"] = float(sal[s.part_mask].sum()) / total
        out[f"{name}/mass_nuisance"] = float(sal[s.nuisance_mask].sum()) / total
        rows, cols = _argmax_token(sal, patch)
        out[f"{name}/argmax_part"] = float(s.part_mask[rows, cols].any())
        out[f"{name}/argmax_nuisance"] = float(s.nuisance_mask[rows, cols].any())
    return out


def report(domain: str, version: int, n: int = 200, size: int = 192, seed: int = 424242) -> dict[str, float]:
    """Mean figures over samples 0..n-1 of (domain, seed, size, version); the patch is 16 px at 192 px."""
    patch = max(1, round(16 * size / 192))
    rows = [sample_figures(make_sample(domain, i, seed, size, version), patch) for i in range(n)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def markdown(n: int = 200, size: int = 192, seed: int = 424242) -> str:
    """The table docs/data_v2.md shows: one row per (domain, version, map)."""
    lines = [
        "| domain | version | map | mass on deciding parts (area) | mass on nuisance parts (area) "
        "| argmax token on a deciding part | argmax token on a nuisance part |",
        "|---|---|---|---|---|---|---|",
    ]
    for domain in DOMAINS:
        for version in VERSIONS:
            r = report(domain, version, n, size, seed)
            for name in MAPS:
                lines.append(
                    f"| {domain} | {version} | {name} | {r[f'{name}/mass_part']:.3f} ({r['area_part']:.3f}) "
                    f"| {r[f'{name}/mass_nuisance']:.3f} ({r['area_nuisance']:.3f}) "
                    f"| {r[f'{name}/argmax_part']:.3f} | {r[f'{name}/argmax_nuisance']:.3f} |"
                )
    return "\n".join(lines)
