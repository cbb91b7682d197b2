"""TransFG's views: the rollout with the Part Selection Module's tokens, and the PSM step by step."""

from __future__ import annotations

import numpy as np

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_boxes
from fgviz.methods.backbones.vit.views import rollout_figures, token_pixels
from fgviz.methods.method import Overview, Steps
from fgviz.viz import overlay
from fgviz.viz.panels import Drawn, Panel, Style, caption_top1, heat, hstack, label_strip, plain, relative, tiles

BOX_COLORS = overlay.BOX_COLORS


def psm_pixels(e: Explanation) -> np.ndarray:
    """(H, W) head mean of the PSM rows (what the per-head argmaxes see), relative to its mean."""
    return relative(token_pixels(e, e.psm_rows.mean(0)))


def overview(e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
             main_only: bool = False) -> Overview:
    lo, hi = vrange or (None, None)
    d = heat_with_boxes(e, maps["signature"], style, lo, hi)
    L = e.num_layers
    cap = (f"rollout through layers 1..{L} (colour, x uniform); box n: the token that PSM head n selects "
           f"({len(e.part_boxes)} heads)")
    main = d.finish(style, key=[("boxes", BOX_COLORS[0], f"box n: the token PSM head n selects ({len(e.part_boxes)} "
                                                         "heads; the colours only tell the heads apart)")])
    if main_only:
        return Overview(main, cap, [])
    panels: list[Panel] = [
        (heat_of(e, maps["psm"], style, lo, hi), f"PSM input: CLS row of A_{L}...A_1, head mean (x uniform)"),
        (plain(e.image, style)[0], f"model input {e.size[1]}x{e.size[0]}"),
    ]
    return Overview(main, cap, panels)


def heat_of(e: Explanation, pixels: np.ndarray, style: Style, lo: float | None, hi: float | None) -> np.ndarray:

    return heat(e.image, pixels, style, lo, hi).finish(style)


def heat_with_boxes(e: Explanation, pixels: np.ndarray, style: Style, lo: float | None, hi: float | None) -> Drawn:

    d = heat(e.image, pixels, style, lo, hi)
    boxes = np.asarray(e.part_boxes)
    d.rgb = overlay.draw_boxes(d.rgb, boxes, labels=[str(h + 1) for h in range(len(boxes))], min_size=0,
                               image_scale=d.factor)
    return d


def steps(e: Explanation, style: Style) -> Steps:
    """Overlapping patches -> per-head product of layers 1..L-1 -> one token per head -> what the last layer sees."""

    gh, gw = e.grid
    P, S = e.patch_size, e.stride
    panels: list[Panel] = []
    # 1. Overlapping patches: a 3 x 3 block of neighbouring footprints at the centre.
    r0, c0 = max(0, gh // 2 - 1), max(0, gw // 2 - 1)
    toks = [e.num_prefix_tokens + r * gw + c for r in range(r0, min(r0 + 3, gh)) for c in range(c0, min(c0 + 3, gw))]
    img, f = plain(e.image, style)
    img = overlay.draw_boxes(img, [e.token_box(t) for t in toks], labels=[""] * len(toks),
                             colors=[BOX_COLORS[i % len(BOX_COLORS)] for i in range(len(toks))], thickness=2,
                             min_size=0, image_scale=f)
    uncovered = e.size[0] - ((gh - 1) * S + P)
    edge = f"; the last {uncovered} px rows/cols are in no patch" if uncovered > 0 else ""
    panels.append((img, f"1. overlapping patches: {P}-px patches every {S} px -> {gh}x{gw} tokens (neighbours share "
                        f"{max(P - S, 0)} px{edge}); 9 neighbours drawn"))
    # 2. Per-head CLS rows of A_{L-1} ... A_1 (what the PSM argmax sees), tiled.
    rows = e.psm_rows  # (K, gh, gw)
    K = rows.shape[0]
    panels.append((tiles(np.stack([relative(r) for r in rows]), [f"head {h + 1}" for h in range(K)], style),
                   f"2. per head: CLS row of A_{e.num_layers}...A_1 (product of the first {e.num_layers} layers, no "
                   "identity, no head fusion; x uniform)"))
    # 3. Each head's map with its argmax token.
    rel = [relative(token_pixels(e, r)) for r in rows]
    hi = max(float(np.nanmax(r)) for r in rel) if style.shared else None
    for h in range(K):
        d = heat(e.image, rel[h], style, 0.0 if style.shared else None, hi)
        d.rgb = overlay.draw_boxes(d.rgb, [e.part_boxes[h]], labels=[str(h + 1)],
                                   colors=[BOX_COLORS[h % len(BOX_COLORS)]], min_size=0, image_scale=d.factor)
        r, c = e.token_rc(int(e.part_tokens[h]))
        panels.append((d.finish(style), f"3. head {h + 1}: argmax -> token at row {r}, column {c}"))
    # 4. All selected tokens.
    img, f = plain(e.image, style)
    img = overlay.draw_boxes(img, e.part_boxes, labels=[str(h + 1) for h in range(K)], min_size=0, image_scale=f)
    n_unique = len(set(e.part_tokens.tolist()))
    panels.append((img, f"4. one token per head: {K} tokens ({n_unique} distinct; duplicates are kept)"))
    # 5. What the last layer sees: CLS + the K token footprints.
    crops = []
    side = max(64, style.min_size // 4)
    for h, (x0, y0, x1, y1) in enumerate(np.asarray(e.part_boxes)):
        crop = e.image[y0:y1, x0:x1]
        k = max(1, side // max(crop.shape[:2]))
        crops.append(label_strip(np.repeat(np.repeat(crop, k, 0), k, 1), f"h{h + 1}"))
    panels.append((hstack(crops), f"5. the last layer attends over [CLS + these {K} tokens] only, then the "
                                  f"classifier: {caption_top1(e.labels, e.probs)}"))
    return Steps(panels, params={}, preview=False)


def figures(e: Explanation, part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
    """PSM part hit rate (token footprints touching the deciding parts, chance: random tokens) + rollout pointing."""
    candidates = token_boxes(e.grid, e.patch_size, e.stride, e.size)
    return {**rollout_figures(e, part_mask),
            "psm_part_hit_rate": metrics.part_hit_rate(e.part_boxes, part_mask, candidates=candidates)}
