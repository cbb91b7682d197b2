"""Backbone pretraining: the stand-in for the ImageNet initialisation the official recipes start from.

TransFG and RAMS-Trans start from an ImageNet-21k ViT and TASN from ImageNet ResNets; none can be downloaded here, and
from scratch on a 2-core CPU the attention nets stay nearly flat. So fgviz pretrains each backbone once on a larger
task over the same generator, every class of every synthetic domain at once (32 classes: 16 birds, 16 cars), on a
seed range that neither the fine-tuning runs (recipe seed, seed + 10000) nor the evaluation (424242) use, and saves it
in timm's Hub layout (config.json with architecture + model_args, model.safetensors). `--init <folder>` of the
training CLI then initialises a method from it exactly as from a timm Hub checkpoint (`fgviz.weights.timm_backbones`).

    python -m fgviz.train --pretrain vit --preset demo --out runs/pretrain-vit
    python -m fgviz.train --pretrain resnet --preset demo --out runs/pretrain-resnet

The architectures come from the methods' own presets (`Method.pretrain_backbone`), so every method of a family can
start from them: the ViT of the ViT methods' preset, the ResNet that TASN's attention net and backbone share.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from fgviz.core.preprocess import IMAGENET_MEAN, IMAGENET_STD
from fgviz.methods import METHODS
from fgviz.methods.method import Backbone
from fgviz.training.recipe import Recipe, lr_at

PRETRAIN_SEED = 5150  # generator seed of the pretraining stream: not 0..10k+ (fine-tuning) nor 424242 (evaluation)


def families() -> list[str]:
    """The backbone families some method defines a pretraining for (lower case: the `--pretrain` choices)."""
    return sorted({m.backbone_family.lower() for m in METHODS.values()})


def backbone_for(family: str, preset: str, overrides: dict[str, Any] | None = None) -> Backbone:
    """The backbone of `family` that `preset`'s methods start from (`Method.pretrain_backbone`), with the model
    arguments in `overrides` changed (`--model-arg`, for experiments)."""
    for method in METHODS.values():
        if method.backbone_family.lower() == family:
            b = method.pretrain_backbone(preset, overrides)
            if b is not None:
                return b
    raise SystemExit(f"no method defines a {family!r} backbone pretraining for preset {preset!r}")


class JointStream:
    """Every synthetic domain at once: sample i is `make_sample(domains[i % D], i // D, seed)` with the class index
    offset by the domain's position, so one classifier learns all 16 x D classes."""

    def __init__(self, size: tuple[int, int], seed: int, version: int) -> None:
        from fgviz.data import synthetic

        self.synthetic, self.size, self.seed, self.version = synthetic, size, seed, version
        self.domains = synthetic.DOMAINS
        self.offsets = np.cumsum([0, *(synthetic.num_classes(d) for d in self.domains)])[:-1]
        self.labels = [f"{d}: {n}" for d in self.domains for n in synthetic.class_names(d)]

    def _samples(self, indices: range, seed: int) -> tuple[np.ndarray, np.ndarray]:
        D = len(self.domains)
        images, labels = [], []
        for i in indices:
            d = i % D
            s = self.synthetic.make_sample(self.domains[d], i // D, seed, self.size, self.version)
            images.append(s.image)
            labels.append(int(self.offsets[d]) + s.label)
        return np.stack(images), np.array(labels, np.int64)

    def batch(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        return self._samples(range(step * batch_size, (step + 1) * batch_size), self.seed)

    def eval_batches(self, n: int, batch_size: int):
        for start in range(0, n, batch_size):
            yield self._samples(range(start, min(start + batch_size, n)), self.seed + 1)


def pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """Train `args.pretrain`'s backbone on the joint task and save it in timm's Hub layout under `args.out`."""
    from fgviz.data import synthetic

    torch.manual_seed(PRETRAIN_SEED)
    overrides = {k: json.loads(v) for k, _, v in (kv.partition("=") for kv in args.model_arg or [])}
    bb = backbone_for(args.pretrain, args.preset, overrides)
    model, arch, model_args, size = bb.module, bb.architecture, bb.model_args, bb.input_size
    recipe = Recipe(**bb.recipe, seed=PRETRAIN_SEED)
    recipe = replace(recipe, **{k: v for k, v in (("steps", args.steps), ("lr", args.lr),
                                                  ("batch_size", args.batch_size)) if v is not None})
    version = args.data_version or synthetic.LATEST_VERSION
    stream = JointStream(size, recipe.seed, version)
    model.reset_classifier(len(stream.labels))
    opt = (torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
           if recipe.optimizer == "adamw" else
           torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, recipe))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def tensor(images: np.ndarray) -> torch.Tensor:  # (B, H, W, 3) uint8 -> (B, 3, H, W) normalised
        return (torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255) - mean) / std

    @torch.no_grad()
    def accuracy() -> float:
        model.eval()
        hits = total = 0
        for images, labels in stream.eval_batches(recipe.eval_samples, recipe.batch_size):
            hits += int((model(tensor(images)).argmax(-1) == torch.from_numpy(labels)).sum())
            total += len(labels)
        model.train()
        return hits / max(total, 1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "metrics.jsonl").open("w")
    t0, acc = time.time(), math.nan
    model.train()
    for step in range(recipe.steps):
        images, labels = stream.batch(step, recipe.batch_size)
        loss = F.cross_entropy(model(tensor(images)), torch.from_numpy(labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        sched.step()
        rec = {"step": step + 1, "loss": round(loss.item(), 5), "time_s": round(time.time() - t0, 1)}
        if (step + 1) % recipe.eval_every == 0 or step + 1 == recipe.steps:
            acc = accuracy()
            rec["eval_acc"] = round(acc, 4)
            if not args.quiet:
                print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
    log.close()
    model.eval()
    provenance = {"task": f"fgviz synthetic {'+'.join(stream.domains)}, {len(stream.labels)} classes "
                          f"(data version {version}), generator seed {recipe.seed}",
                  "recipe": {**asdict(recipe), "preset": args.preset},
                  "command": "python -m fgviz.train " + " ".join(shlex.quote(a) for a in args.argv),
                  "train_time_s": round(time.time() - t0, 1), "eval_accuracy": round(acc, 4),
                  "data_version": version}
    config = {"architecture": arch, "num_classes": len(stream.labels), "model_args": model_args,
              "pretrained_cfg": {"input_size": [3, *size], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                                 "label_names": stream.labels},
              "fgviz_pretraining": provenance}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    return {"out": str(out), "eval_acc": acc, "train_time_s": provenance["train_time_s"]}
