"""Recompute every figure of a model card on freshly generated synthetic samples.

    python -m fgviz.evaluate weights/transfg-birds-demo [--n 200] [--seed 424242] [--update-card]

Held-out accuracy (a generator seed never used in training) and, per method, whether it looks at the deciding
parts, each beside its chance value and beside the same figure for a weight-randomised copy (Adebayo et al.):
- TransFG: part hit rate of the PSM tokens (share of selected token footprints touching the deciding-part mask);
- RAMS-Trans: crop recall (share of deciding-part pixels inside the zoom box) and the crop's area share;
- TASN: magnification of the deciding parts by the structure and detail sampling grids (1 = uniform resize), and
  the energy pointing game of the structure map (the summed trilinear maps the structure grid is built from);
- ViT methods: energy pointing game of the last-layer rollout map (mass inside the deciding parts).

Where fgviz departs from the official code at explain time, the figures are also given as the official code computes
them, so the README's deviations table can cite the effect: RAMS-Trans's accuracy of each scale alone
(`accuracy_scale<s>`; fgviz predicts with the sum of the scales' logits) and TASN's accuracy and magnification with
the op's exact sampling grid and structure filter (`*_mxnet`, `variant="mxnet"`).

Beside RAMS-Trans's crop and TASN's magnification, `*_oracle` figures run the same DPPM / sampler on a perfect part
map, the deciding-part mask itself at the model's attention resolution, so a miss can be told apart as the map's
fault or the algorithm's (for the DPPM it is not an upper bound: attention covering the whole object in one blob
would give a larger box).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from fgviz import metrics
from fgviz.data import synthetic
from fgviz.explanation import Explanation, token_box
from fgviz.hub import CONFIG_NAME, load_folder, model_card
from fgviz.models import FineGrainedModel
from fgviz.viz.overlay import token_map_to_pixels

HELD_OUT_SEED = 424242  # never used by the training streams (they use the recipe seed and seed + 10000)


def _domain(model: FineGrainedModel) -> str:
    dataset = model.provenance.get("dataset", "")
    if dataset.startswith("synth-"):
        return dataset.removeprefix("synth-")
    labels = set(model.labels)
    for domain in synthetic.DOMAINS:
        if labels == set(synthetic.class_names(domain)):
            return domain
    raise ValueError("model was not trained on fgviz synthetic data: its labels match no synthetic domain")


def reinitialized(model: FineGrainedModel, seed: int = 0) -> FineGrainedModel:
    """The same architecture re-initialised by its own init scheme (the state before training): Adebayo et al.'s
    model-parameter randomisation test. `metrics.randomized_copy` (PyTorch default resets) gives larger weights
    than timm's ViT init, whose sharper random attention still singles out the colourful, high-contrast part tokens,
    so it does not show what training contributed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    fresh.provenance = {"weights_kind": "random"}
    return fresh.to(model.device, model.dtype).eval()


def dppm_oracle_box(part_mask: np.ndarray, grid: tuple[int, int], patch: int,
                    alpha: float = 1.2) -> tuple[int, int, int, int]:
    """The zoom box (x0, y0, x1, y1) RAMS-Trans's DPPM draws when its map g is each token's share of deciding-part
    pixels: threshold at alpha x mean, largest 8-connected component, official one-pixel shift."""
    from fgviz.attention import dppm_mask, largest_component_box
    from fgviz.models.rams_trans import grid_box_to_pixels

    gh, gw = grid
    g = cv2.resize(part_mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)  # (gh, gw) part share
    mask = dppm_mask(torch.from_numpy(g).reshape(1, gh * gw), (gh, gw), alpha=alpha)  # (1, gh, gw)
    _, boxes = largest_component_box(mask)  # (1, 4) grid (r0, c0, r1, c1)
    y0, x0, y1, x1 = grid_box_to_pixels(tuple(boxes[0].tolist()), patch, part_mask.shape)  # inclusive
    return x0, y0, x1 + 1, y1 + 1


def oracle_crop(expl: Explanation, part_mask: np.ndarray) -> tuple[int, int, int, int]:
    """The first zoom box of `expl`'s DPPM (its grid, patch and alpha) on a perfect part map."""
    return dppm_oracle_box(part_mask, expl.grid, expl.patch_size, float(expl.params.get("alphas", [1.2])[0]))


def oracle_coords(expl: Explanation, part_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TASN's structure sampling grid when its attention is the deciding-part mask at the feature resolution
    (area-averaged to (h, w), then resized and squared exactly as the structure map is)."""
    from fgviz.sampling import sampling_coords, structure_detail_maps

    h, w = expl.maps["structure"].shape
    cells = cv2.resize(part_mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)  # (h, w)
    structure, _ = structure_detail_maps(torch.from_numpy(cells)[None, None], size=part_mask.shape)  # (1, H, W)
    p = expl.params
    rows, cols = sampling_coords(structure, int(p["out_size"]), dense=float(p["dense"]), iters=int(p["iters"]))
    return rows[0].numpy(), cols[0].numpy()


def sample_metrics(
    expl: Explanation, part_mask: np.ndarray, *, oracles: bool = True
) -> dict[str, metrics.MetricResult]:
    """Localisation figures of one explanation against the deciding-part mask (same pixel grid as expl.image).

    `oracles` adds the `*_oracle` figures, which depend on the data and the algorithm but not on the weights."""
    out: dict[str, metrics.MetricResult] = {}
    H, W = expl.size
    if expl.rollout is not None:
        pixel_map = token_map_to_pixels(expl.rollout[-1], expl.patch_size, expl.stride, (H, W))
        out["rollout_energy_pointing"] = metrics.energy_pointing_game(pixel_map, part_mask)
    if expl.method == "transfg":
        gh, gw = expl.grid
        candidates = np.array([token_box(i, (gh, gw), expl.patch_size, expl.stride, (H, W)) for i in range(gh * gw)])
        out["psm_part_hit_rate"] = metrics.part_hit_rate(expl.part_boxes, part_mask, candidates=candidates)
    elif expl.method == "rams_trans" and expl.crop_boxes is not None:
        recall = metrics.crop_recall(expl.crop_boxes[0], part_mask)
        out["crop_recall"] = recall
        area = metrics.crop_area_share(expl.crop_boxes[0], (H, W))
        out["crop_area_share"] = metrics.MetricResult(area, float("nan"))  # a size, not a score: no chance value
        if oracles:
            box = oracle_crop(expl, part_mask)
            out["crop_recall_oracle"] = metrics.crop_recall(box, part_mask)
            out["crop_area_share_oracle"] = metrics.MetricResult(metrics.crop_area_share(box, (H, W)), float("nan"))
    elif expl.method == "tasn":
        structure = np.clip(expl.maps["structure"], 0.0, None)  # (h, w) over the whole image, before squaring
        out["structure_energy_pointing"] = metrics.energy_pointing_game(structure, part_mask)
        for kind in ("structure", "detail"):
            rows, cols = expl.sample_coords[kind]
            out[f"{kind}_magnification"] = metrics.magnification(rows, cols, part_mask)
        if oracles:
            out["structure_magnification_oracle"] = metrics.magnification(*oracle_coords(expl, part_mask), part_mask)
    return out


def official_variants(model: FineGrainedModel, expl: Explanation, sample: Any) -> dict[str, metrics.MetricResult]:
    """The figures as the official code computes them where fgviz's explain departs from it (see module doc)."""
    out: dict[str, metrics.MetricResult] = {}
    chance = 1 / model.config.num_classes
    if expl.scale_probs is not None:
        for s, probs in enumerate(expl.scale_probs):
            out[f"accuracy_scale{s + 1}"] = metrics.MetricResult(float(np.argmax(probs) == sample.label), chance)
    if expl.method == "tasn" and model.config.sampler_variant != "mxnet":
        official = model.explain(sample.image, variant="mxnet")
        out["accuracy_mxnet"] = metrics.MetricResult(float(np.argmax(official.probs) == sample.label), chance)
        rows, cols = official.sample_coords["structure"]
        out["structure_magnification_mxnet"] = metrics.magnification(rows, cols, sample.part_mask)
    return out


def evaluate(model: FineGrainedModel, *, n: int = 200, seed: int = HELD_OUT_SEED, randomized: bool = True,
             batch_size: int = 32) -> dict[str, Any]:
    """Accuracy and mean localisation figures over `n` held-out samples (and for a randomised copy)."""
    domain = _domain(model)
    H, W = model.config.img_size
    samples = [synthetic.make_sample(domain, i, seed, (H, W)) for i in range(n)]
    result: dict[str, Any] = {"domain": domain, "n": n, "seed": seed}
    models = {"trained": model}
    if randomized:
        models["randomized"] = reinitialized(model, seed=0)
    for kind, m in models.items():
        m.eval()
        correct = 0
        sums: dict[str, list[float]] = {}
        for s in samples:
            expl = m.explain(s.image)
            correct += int(np.argmax(expl.probs) == s.label)
            for name, r in official_variants(m, expl, s).items():
                sums.setdefault(name, []).append(r.value)
                sums.setdefault(name + "/chance", []).append(r.chance)
            # the oracles depend on the data and the algorithm only: computed once, for the trained model
            for name, r in sample_metrics(expl, s.part_mask, oracles=kind == "trained").items():
                sums.setdefault(name, []).append(r.value)
                sums.setdefault(name + "/chance", []).append(r.chance)
        figures = {"accuracy": {"value": round(correct / n, 4), "chance": round(1 / model.config.num_classes, 4)}}
        for name in sorted(k for k in sums if not k.endswith("/chance")):
            chance = float(np.mean(sums[name + "/chance"]))
            figures[name] = {"value": round(float(np.mean(sums[name])), 4),
                             "chance": None if np.isnan(chance) else round(chance, 4)}
        result[kind] = figures
    return result


def card_metrics(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flatten an `evaluate` result into the provenance `metrics` the model card prints."""
    out = {}
    for name, fig in result["trained"].items():
        entry = dict(fig)
        if name in result.get("randomized", {}):  # the oracles are computed for the trained model only
            entry["randomized"] = result["randomized"][name]["value"]
        out[name] = entry
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fgviz.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="model folders (config.json + model.safetensors)")
    ap.add_argument("--n", type=int, default=200, help="held-out samples per model")
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--no-randomized", action="store_true", help="skip the weight-randomisation sanity check")
    ap.add_argument("--update-card", action="store_true", help="write the figures into config.json and README.md")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    for folder in map(Path, args.folders):
        model = load_folder(folder)
        result = evaluate(model, n=args.n, seed=args.seed, randomized=not args.no_randomized)
        print(json.dumps({"model": str(folder), **result}, indent=2))
        if args.update_card:
            config = json.loads((folder / CONFIG_NAME).read_text())
            prov = config.setdefault("provenance", {})
            prov["metrics"] = card_metrics(result)
            prov["evaluation"] = {"command": f"python -m fgviz.evaluate {folder} --n {args.n} --seed {args.seed}",
                                  "n": args.n, "seed": args.seed, "domain": result["domain"]}
            (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
            (folder / "README.md").write_text(model_card(config))


if __name__ == "__main__":
    main()
