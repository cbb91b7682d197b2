"""RAMS-Trans's views: the DPPM map, mask and zoom box, the zoomed crops, and the DPPM step by step.

A preview for another alpha calls the DPPM functions the model calls (`propose`, `crop_resize`) on the stored map g
and on the model's own input rebuilt from the explanation, so it is what the model would compute (tests pin it)."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import torch

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import grid_box_to_xyxy
from fgviz.core.preprocess import Preprocess
from fgviz.methods.backbones.vit.views import rollout_figures, rollout_pixels, token_mask_pixels, token_pixels
from fgviz.methods.method import Overview, Steps
from fgviz.methods.rams_trans.model import crop_resize, propose
from fgviz.viz import overlay
from fgviz.viz.overlay import OKABE_ITO
from fgviz.viz.panels import Panel, Style, caption_top1, heat, plain, relative


def has_zoom(e: Explanation) -> bool:
    return e.dppm_maps is not None and len(e.dppm_maps) > 0


def signature(e: Explanation) -> np.ndarray:
    """The DPPM map g of the first zoom step (the rollout when the model ran one scale only), x uniform."""
    return relative(token_pixels(e, e.dppm_maps[0])) if has_zoom(e) else rollout_pixels(e)


def overview(e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
             main_only: bool = False) -> Overview:
    lo, hi = vrange or (None, None)
    d = heat(e.image, maps["signature"], style, lo, hi)
    key = []
    if has_zoom(e):
        d.rgb = overlay.draw_mask_outline(d.rgb, token_mask_pixels(e, e.dppm_masks[0]), color=OKABE_ITO["orange"],
                                          thickness=2, min_size=0, image_scale=d.factor)
        boxes = np.asarray(e.crop_boxes)
        d.rgb = overlay.draw_boxes(d.rgb, boxes, labels=[f"zoom {i + 1}" for i in range(len(boxes))],
                                   colors=[OKABE_ITO["sky_blue"]] * len(boxes), thickness=3, min_size=0,
                                   image_scale=d.factor)
        alpha = e.params.get("alphas", [1.2])[0]
        cap = (f"DPPM map g (colour, x uniform); orange outline: the DPPM mask, tokens with g > {alpha:g} x mean(g); "
               "blue box: the zoom box, around the mask's largest connected component (cropped for scale 2)")
        key = [("outline", OKABE_ITO["orange"], f"DPPM mask: tokens with g > {alpha:g} x mean(g)"),
               ("box", OKABE_ITO["sky_blue"], "zoom box: the largest component's box, cropped and resized for "
                                              "scale 2")]
    else:
        cap = "rollout (x uniform); one scale only, so no zoom"
    main = d.finish(style, key=key)
    if main_only:
        return Overview(main, cap, [])
    sp = e.scale_probs
    panels: list[Panel] = []
    for i, crop in enumerate(e.crops):
        top = caption_top1(e.labels, sp[i + 1]) if sp is not None and len(sp) > i + 1 else ""
        panels.append((plain(crop, style)[0],
                       f"scale {i + 2} input = zoom {i + 1}, resized; scale {i + 2} says {top}"))
    return Overview(main, cap, panels)


def preview_step(e: Explanation, alpha: float, step: int = 0) -> dict[str, Any]:
    """Step `step` of the DPPM for another alpha: the model's `propose` on the stored g and its `crop_resize` on
    the model's own input (rebuilt exactly from `e.image` and `e.normalization`)."""
    g = torch.from_numpy(np.asarray(e.dppm_maps[step], np.float32)).reshape(1, -1)  # (1, gh * gw)
    prop = propose(g, e.grid, float(alpha))
    box = tuple(int(v) for v in prop["boxes"][0].tolist())
    base = e.image if step == 0 else e.crops[step - 1]
    pre = Preprocess.of(base, e.normalization)
    crop = pre.denormalize(crop_resize(pre.normalize(base)[0], box, e.patch_size)[0])
    return {"mask": prop["mask"][0].numpy(), "component": prop["component"][0].numpy(), "grid_box": box,
            "crop": crop}


def steps(e: Explanation, style: Style, params: dict[str, Any] | None = None) -> Steps:
    """Map -> threshold -> largest component -> box -> crop -> next scale, for every zoom step; with an `alpha` in
    `params` other than the one the model ran with, step 1 is a preview (its prediction needs a re-run)."""
    params = params or {}
    if not has_zoom(e):
        d = heat(e.image, rollout_pixels(e), style)
        return Steps([(d.finish(style), "one scale only: no zoom step (set scales = 2 and re-run)")],
                     params={"num_scales": 1}, preview=False, notes="One scale only: nothing to zoom.")
    ran = [float(a) for a in e.params.get("alphas", [1.2])]
    alpha = params.get("alpha")
    preview = alpha is not None and not math.isclose(float(alpha), ran[0])
    panels: list[Panel] = []
    numbers: list[dict[str, Any]] = []
    for st in range(len(e.dppm_maps)):
        if st == 0 and preview:
            a, p = float(alpha), preview_step(e, float(alpha), 0)
            mask, comp, gbox, crop = p["mask"], p["component"], p["grid_box"], p["crop"]
            tag = f"zoom 1 (preview for alpha {a:g}; the model ran alpha {ran[0]:g})"
        elif st > 0 and preview:
            break  # later steps depend on the crop of step 1: only a re-run shows them
        else:
            a = ran[st] if st < len(ran) else float("nan")
            mask, gbox, crop = e.dppm_masks[st], [int(v) for v in e.dppm_boxes[st]], e.crops[st]
            comp = e.extras.get("dppm_components", [mask] * (st + 1))[st]
            tag = f"zoom {st + 1}"
        base = e.image if st == 0 else e.crops[st - 1]
        rel = relative(token_pixels(e, e.dppm_maps[st]))
        d = heat(base, rel, style)
        panels.append((d.finish(style), f"{tag}, step 1: DPPM map g = mean row of the rollout (all layers, heads "
                                        "averaged)"))
        for n, (m, color, fill, what) in enumerate(((mask, "orange", 0.25, f"threshold g > {a:g} x mean(g): "
                                                     f"{int(np.sum(mask))} of {np.size(mask)} tokens (orange)"),
                                                    (comp, "vermillion", 0.35, "largest 8-connected component "
                                                     f"({int(np.sum(comp))} tokens, red)")), start=2):
            rgb = overlay.draw_mask_outline(d.rgb, token_mask_pixels(e, m), color=OKABE_ITO[color], fill_alpha=fill,
                                            min_size=0, image_scale=d.factor)
            panels.append((d.drawn_over(rgb).finish(style), f"{tag}, step {n}: {what}"))
        img, f = plain(base, style)
        box = grid_box_to_xyxy(gbox, e.patch_size, e.size)
        img = overlay.draw_boxes(img, [box], labels=["zoom"], colors=[OKABE_ITO["sky_blue"]], thickness=3,
                                 min_size=0, image_scale=f)
        what = f"its box (blue): grid rows {gbox[0]}..{gbox[2] - 1}, columns {gbox[1]}..{gbox[3] - 1}"
        panels.append((img, f"{tag}, step 4: {what}"))
        sp = e.scale_probs
        said = "" if preview and st == 0 else (
            f": scale {st + 2} says {caption_top1(e.labels, sp[st + 1])}"
            if sp is not None and len(sp) > st + 1 else "")
        panels.append((plain(crop, style)[0], f"{tag}, step 5: crop, resized = the scale {st + 2} input{said}"))
        numbers.append({"alpha": a, "preview": st == 0 and preview, "grid_box": [int(v) for v in gbox],
                        "pixel_box": list(box), "mask_tokens": int(np.sum(mask))})
    notes = [f"Prediction (sum of the scales' logits): **{caption_top1(e.labels, e.probs)}**"]
    notes += [f"- scale {s + 1} alone: {caption_top1(e.labels, p)}" for s, p in enumerate(e.scale_probs)]
    if preview:
        notes.append("\n*Zoom 1 is a preview from the stored map g: press **Re-run** for the prediction with this "
                     "alpha.*")
    return Steps(panels, params={"alpha": float(alpha) if preview else ran[0],
                                 "num_scales": int(e.params.get("num_scales", 2))},
                 preview=preview, notes="\n".join(notes), numbers={"steps": numbers})


def figures(e: Explanation, part_mask: np.ndarray, oracles: bool) -> dict[str, metrics.MetricResult]:
    """Crop recall and area of the first zoom box; with `oracles`, the same DPPM fed the part mask itself."""
    out = rollout_figures(e, part_mask)
    if not has_zoom(e):
        return out
    H, W = e.size
    out["crop_recall"] = metrics.crop_recall(e.crop_boxes[0], part_mask)
    out["crop_area_share"] = metrics.MetricResult(metrics.crop_area_share(e.crop_boxes[0], (H, W)), float("nan"))
    if oracles:
        box = oracle_box(e, part_mask)
        out["crop_recall_oracle"] = metrics.crop_recall(box, part_mask)
        out["crop_area_share_oracle"] = metrics.MetricResult(metrics.crop_area_share(box, (H, W)), float("nan"))
    return out


def oracle_box(e: Explanation, part_mask: np.ndarray) -> tuple[int, int, int, int]:
    """The first zoom box when g is each token's share of deciding-part pixels (the part mask itself at the model's
    grid), through the model's own DPPM (`propose`): what the algorithm makes of perfect part attention."""
    return dppm_oracle_box(part_mask, e.grid, e.patch_size, float(e.params.get("alphas", [1.2])[0]))


def dppm_oracle_box(part_mask: np.ndarray, grid: tuple[int, int], patch: int, alpha: float = 1.2
                    ) -> tuple[int, int, int, int]:
    gh, gw = grid
    g = cv2.resize(part_mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)  # (gh, gw) part share
    box = propose(torch.from_numpy(g).reshape(1, gh * gw), grid, alpha)["boxes"][0].tolist()
    return grid_box_to_xyxy(box, patch, part_mask.shape)
