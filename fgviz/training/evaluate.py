"""Recompute every figure of a model card on freshly generated synthetic samples.

    python -m fgviz.evaluate weights/transfg-birds-demo [--n 200] [--seed 424242] [--update-card]

Held-out accuracy (a generator seed never used in training) and, per method (`Method.figures`, in each method's
folder), whether it looks at the deciding parts, each beside its chance value and beside the same figure for a
re-initialised copy (Adebayo et al.):
- TransFG: part hit rate of the PSM tokens (share of selected token footprints touching the deciding-part mask);
- RAMS-Trans: crop recall (share of deciding-part pixels inside the zoom box) and the crop's area share;
- TASN: magnification of the deciding parts by the structure and detail sampling grids (1 = uniform resize), and
  the energy pointing game of the structure attention as the sampler takes it (resized, squared);
- ViT methods (the baseline too): energy pointing game of the last-layer rollout (mass inside the deciding parts).

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

import numpy as np
import torch

from fgviz.data import synthetic
from fgviz.methods import METHODS, FineGrainedModel
from fgviz.training import targets
from fgviz.weights.format import CONFIG_NAME, load_folder, model_card, read_config

HELD_OUT_SEED = 424242  # never used by the training streams (they use the recipe seed and seed + 10000)


def domain_of(model: FineGrainedModel) -> str:
    """The synthetic domain a model was trained on (its dataset, else its labels)."""
    dataset = model.provenance.get("dataset", "")
    if dataset.startswith("synth-"):
        return dataset.removeprefix("synth-")
    labels = set(model.labels)
    for domain in synthetic.DOMAINS:
        if labels == set(synthetic.class_names(domain)):
            return domain
    raise ValueError("model was not trained on fgviz synthetic data: its labels match no synthetic domain")


def data_version(model: FineGrainedModel) -> int:
    """The synthetic data version a model was trained on (its card; cards from before version 2 existed say none and
    mean version 1)."""
    return int(model.provenance.get("data_version", 1))


def evaluate(model: FineGrainedModel, *, n: int = 200, seed: int = HELD_OUT_SEED,
             randomized: bool = True) -> dict[str, Any]:
    """Accuracy and mean localisation figures over `n` held-out samples (and for a re-initialised copy).

    The re-initialised copy is the architecture re-initialised by its own init scheme
    (`FineGrainedModel.reinitialized`, the state before training): Adebayo et al.'s model-parameter randomisation
    test. PyTorch's default resets give larger weights than timm's ViT init, whose sharper random attention still
    singles out the most salient tokens, so they would not show what training contributed.
    """
    domain = domain_of(model)
    version = data_version(model)
    method = METHODS[model.method]
    H, W = model.config.img_size
    samples = [synthetic.make_sample(domain, i, seed, (H, W), version) for i in range(n)]
    result: dict[str, Any] = {"domain": domain, "n": n, "seed": seed, "data_version": version}
    models = {"trained": model}
    if randomized:
        models["randomized"] = model.reinitialized(seed=0)
    for kind, m in models.items():
        m.eval()
        correct = 0
        sums: dict[str, list[float]] = {}
        for s in samples:
            expl = m.explain(s.image)
            correct += int(np.argmax(expl.probs) == s.label)
            part_mask = m.preprocess.mask(s.part_mask)  # in the model's input pixels, as explain saw the image
            # the oracles depend on the data and the algorithm only: computed once, for the trained model
            figures = {**method.figures(expl, part_mask, oracles=kind == "trained"),
                       **method.official_figures(m, s.image, expl, s.label, part_mask)}
            for name, r in figures.items():
                sums.setdefault(name, []).append(r.value)
                sums.setdefault(name + "/chance", []).append(r.chance)
        figures = {"accuracy": {"value": round(correct / n, 4), "chance": round(1 / model.config.num_classes, 4)}}
        for name in sorted(k for k in sums if not k.endswith("/chance")):
            chance = float(np.mean(sums[name + "/chance"]))
            figures[name] = {"value": round(float(np.mean(sums[name])), 4),
                             "chance": None if np.isnan(chance) else round(chance, 4)}
        result[kind] = figures
    result["targets"] = targets.check(result)
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
    ap.add_argument("--from-result", type=Path, help="with --update-card and one folder: take the figures from this "
                    "earlier output of the command (e.g. after moving the folder) instead of recomputing them")
    args = ap.parse_args(argv)
    if args.from_result and (not args.update_card or len(args.folders) != 1):
        ap.error("--from-result needs --update-card and exactly one folder")
    torch.manual_seed(0)
    for folder in map(Path, args.folders):
        if args.from_result:
            result = json.loads(args.from_result.read_text())
            result.pop("model", None)
            result["targets"] = targets.check(result)
        else:
            model = load_folder(folder)
            result = evaluate(model, n=args.n, seed=args.seed, randomized=not args.no_randomized)
        print(json.dumps({"model": str(folder), **result}, indent=2))
        if args.update_card:
            update_card(folder, result)


def update_card(folder: Path, result: dict[str, Any]) -> None:
    """Write an `evaluate` result into the folder's config.json provenance and regenerate its model card."""
    config = read_config(folder / CONFIG_NAME)  # format 1 is upgraded: the card is rewritten in format 2
    prov = config.setdefault("provenance", {})
    prov["metrics"] = card_metrics(result)
    prov["targets"] = result.get("targets", [])
    prov["evaluation"] = {"command": f"python -m fgviz.evaluate {folder} --n {result['n']} --seed {result['seed']}",
                          "n": result["n"], "seed": result["seed"], "domain": result["domain"],
                          "data_version": result["data_version"]}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(config))


if __name__ == "__main__":
    main()
