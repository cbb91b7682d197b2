"""The plain ViT's own Overview column and steps."""

from __future__ import annotations

import numpy as np

from fgviz.core.explanation import Explanation
from fgviz.methods.backbones.vit.views import rollout_pixels
from fgviz.methods.method import Overview, Steps
from fgviz.viz.panels import Panel, Style, caption_top1, heat, plain, relative, tiles


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
