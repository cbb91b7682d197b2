"""Views every ViT method shares (token maps on pixels, rollout panels, the rollout pointing game) and the plain
ViT's own Overview column and steps."""

from __future__ import annotations

from typing import Any

import numpy as np

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_map_to_pixels, token_mask_to_pixels
from fgviz.methods.method import Overview, Steps
from fgviz.viz.panels import Panel, Style, caption_top1, heat, plain, relative, tiles


def token_pixels(e: Explanation, values: np.ndarray) -> np.ndarray:
    """(H, W) pixel map of a (gh, gw) token map over `e.image` (`fgviz.core.geometry`)."""
    return token_map_to_pixels(values, e.patch_size, e.stride, e.size)


def token_mask_pixels(e: Explanation, mask: np.ndarray) -> np.ndarray:
    return token_mask_to_pixels(mask, e.patch_size, e.stride, e.size)


def rollout_pixels(e: Explanation, layer: int | None = None) -> np.ndarray:
    """(H, W) rollout through layers 1..layer (default all), relative to its mean."""
    roll = e.rollout[-1 if layer is None else layer - 1]
    return relative(token_pixels(e, roll))


def rollout_figures(e: Explanation, part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
    """Energy pointing game of the last-layer rollout (mass inside the deciding parts)."""
    return {"rollout_energy_pointing": metrics.energy_pointing_game(token_pixels(e, e.rollout[-1]), part_mask)}


def vit_summary(e: Explanation) -> dict[str, Any]:
    return {"grid": list(e.grid), "patch_size": e.patch_size, "stride": e.stride, "num_layers": e.num_layers}


def overview(e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
             main_only: bool = False) -> Overview:
    """The plain ViT's column: rollout through every layer."""
    lo, hi = vrange or (None, None)
    d = heat(e.image, maps["signature"], style, lo, hi)
    cap = f"rollout through layers 1..{e.num_layers}, heads averaged (x uniform)"
    main = d.finish(style)
    if main_only:
        return Overview(main, cap, [])
    return Overview(main, cap, [(plain(e.image, style)[0], f"model input {e.size[1]}x{e.size[0]}")])


def steps(e: Explanation, style: Style) -> Steps:
    """Rollout layer by layer: how the CLS token's attention over the patches builds up."""
    rel = np.stack([relative(r) for r in e.rollout])  # (L, gh, gw)
    names = [f"layers 1..{li + 1}" for li in range(e.num_layers)]
    panels: list[Panel] = [
        (tiles(rel, names, style), f"1. rollout through layers 1..l, for every l (x uniform), {e.grid[0]}x{e.grid[1]} "
                                   "tokens"),
    ]
    panels.append((heat(e.image, rollout_pixels(e), style).finish(style),
                   f"2. the last one over the image; the classifier reads the CLS token: "
                   f"{caption_top1(e.labels, e.probs)}"))
    return Steps(panels, params={}, preview=False)
