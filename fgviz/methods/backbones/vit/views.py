"""Views every ViT method shares: token maps on pixels, the rollout panel and the rollout pointing game."""

from __future__ import annotations

from typing import Any

import numpy as np

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_map_to_pixels, token_mask_to_pixels
from fgviz.viz.panels import relative


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
    out = {"grid": list(e.grid), "patch_size": e.patch_size, "stride": e.stride, "num_layers": e.num_layers}
    own = e.extras.get("backbone_probs")
    if own is not None:  # backbone mode: the wrapped network's own prediction beside the method's
        out["backbone_top5"] = [[e.labels[int(i)], float(own[i])] for i in np.argsort(own)[::-1][:5]]
    return out
