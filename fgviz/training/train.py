"""One training CLI for the three methods: single process or `torchrun`, CPU or GPU, synthetic or real data.

    python -m fgviz.train --method transfg --data synth-birds --preset demo --out weights/transfg-birds-demo
    torchrun --nproc-per-node 2 -m fgviz.train --method tasn --data cub --data-dir CUB --preset paper --out runs/x
    python -m fgviz.train --pretrain resnet --preset demo --out runs/pretrain-resnet   # backbone pretraining

Presets: `paper` follows docs/methods.md (TransFG/RAMS-Trans: SGD 0.9, lr 3e-2, warm-up 500 then cosine over 10k
steps, grad clip 1, 448 px; TASN: SGD lr 0.1 momentum 0, x0.1 at 1/3 and 2/3 of training, 512 px sampled to 224);
`demo` is a small model for a 2-core CPU on the synthetic data; `tiny` is for tests. Every knob can be overridden.

Runs resume exactly: the checkpoint holds model, optimiser, scheduler, step and RNG state, and the data order is a
pure function of (seed, step), so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from fgviz.methods import METHODS, FineGrainedModel, create_model
from fgviz.training.pretrain import families, pretrain
from fgviz.training.recipe import Recipe, lr_at
from fgviz.weights.format import save_model

# --------------------------------------------------------------------------------------------------------------------
# Recipes


def presets() -> dict[str, dict[str, Recipe]]:
    """Recipes by preset and method, from each method's folder (`Method.presets`): "paper" follows the official
    recipes, "demo" is a small model for a 2-core CPU on the synthetic data, "tiny" is for tests."""
    out: dict[str, dict[str, Recipe]] = {}
    for name, method in METHODS.items():
        for preset, fields in method.presets.items():
            out.setdefault(preset, {})[name] = Recipe(**{**fields, "model": dict(fields.get("model", {}))})
    return out


PRESETS = presets()

# --------------------------------------------------------------------------------------------------------------------
# Data: batches are a pure function of (seed, step, rank), so resuming replays nothing and skips nothing.


class SyntheticStream:
    """Batches of fgviz's procedural birds/cars; sample i of the run is `make_sample(domain, i, seed)`."""

    def __init__(self, domain: str, size: tuple[int, int], seed: int, version: int | None = None) -> None:
        from fgviz.data import synthetic

        self.synthetic, self.domain, self.size, self.seed = synthetic, domain, size, seed
        self.version = synthetic.LATEST_VERSION if version is None else version
        self.num_classes = synthetic.num_classes(domain)
        self.labels = list(synthetic.class_names(domain))

    def batch(self, step: int, batch_size: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
        start = (step * world + rank) * batch_size
        return self.synthetic.make_batch(self.domain, range(start, start + batch_size), self.seed, self.size,
                                         self.version)

    def eval_batches(self, n: int, batch_size: int, seed: int):
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            yield self.synthetic.make_batch(self.domain, idx, seed, self.size, self.version)


class DatasetStream:
    """Batches from a real dataset (CUB-200-2011, Stanford Cars): a seeded permutation per epoch, paper transforms
    (train: resize to size/crop_pct, random crop, flip; test: resize + centre crop)."""

    def __init__(self, train, test, size: tuple[int, int], crop_pct: float, seed: int) -> None:
        self.train, self.test, self.size, self.crop_pct, self.seed = train, test, size, crop_pct, seed
        self.labels = list(train.classes)
        self.num_classes = len(self.labels)

    def _load(self, ds, i: int, rng: np.random.Generator | None) -> np.ndarray:
        from PIL import Image

        img = ds[i][0]
        img = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        img = img.convert("RGB")
        H, W = self.size
        rh, rw = round(H / self.crop_pct), round(W / self.crop_pct)
        img = img.resize((rw, rh), Image.BILINEAR)
        if rng is None:
            top, left = (rh - H) // 2, (rw - W) // 2
        else:
            top, left = int(rng.integers(0, rh - H + 1)), int(rng.integers(0, rw - W + 1))
        arr = np.asarray(img.crop((left, top, left + W, top + H)))
        return arr[:, ::-1] if rng is not None and rng.random() < 0.5 else arr

    def batch(self, step: int, batch_size: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.train)
        start = (step * world + rank) * batch_size
        images, labels = [], []
        for j in range(start, start + batch_size):
            epoch, pos = divmod(j, n)
            perm = np.random.default_rng((self.seed, epoch)).permutation(n)
            rng = np.random.default_rng((self.seed, epoch, pos, 1))
            images.append(self._load(self.train, int(perm[pos]), rng))
            labels.append(int(self.train[int(perm[pos])][1]["label"]))
        return np.stack(images), np.array(labels, np.int64)

    def eval_batches(self, n: int, batch_size: int, seed: int):
        n = min(n, len(self.test))
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            yield (np.stack([self._load(self.test, i, None) for i in idx]),
                   np.array([int(self.test[i][1]["label"]) for i in idx], np.int64))


def make_stream(data: str, data_dir: str | None, size: tuple[int, int], crop_pct: float, seed: int,
                data_version: int | None = None):
    if data.startswith("synth-"):
        return SyntheticStream(data.removeprefix("synth-"), size, seed, data_version)
    if not data_dir:
        raise SystemExit(f"--data {data} needs --data-dir pointing at the dataset on disk")
    from fgviz.data import datasets

    if data == "cub":
        train, test = datasets.CUB200(data_dir, split="train"), datasets.CUB200(data_dir, split="test")
    elif data == "cars":
        train, test = datasets.StanfordCars(data_dir, split="train"), datasets.StanfordCars(data_dir, split="test")
    else:
        raise SystemExit(f"unknown --data {data}")
    return DatasetStream(train, test, size, crop_pct, seed)


def to_tensor(images: np.ndarray, model: FineGrainedModel, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) normalised with the model's own mean/std."""
    pre = model.preprocess
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------------------------------------------------
# Training


class LossModule(nn.Module):
    """Routes `forward` to `model.loss`, so DistributedDataParallel's gradient hooks see the training call."""

    def __init__(self, model: FineGrainedModel, loss_args: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.loss_args = dict(loss_args or {})

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.loss(x, y, **self.loss_args)


@torch.no_grad()
def evaluate_accuracy(model: FineGrainedModel, stream, n: int, batch_size: int, seed: int, device) -> float:
    model.eval()
    correct = total = 0
    for images, labels in stream.eval_batches(n, batch_size, seed):
        logits = model(to_tensor(images, model, device).to(model.dtype))
        correct += int((logits.argmax(-1).cpu() == torch.from_numpy(labels)).sum())
        total += len(labels)
    model.train()
    return correct / max(total, 1)


def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE: nccl on GPU, gloo on CPU. Returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local)
        return rank, world, torch.device("cpu")
    return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_model(method: str, recipe: Recipe, labels: list[str]) -> FineGrainedModel:
    """The method's model from the recipe, initialised from `recipe.init` (a timm Hub name or a local folder in
    timm's layout, e.g. a backbone from `--pretrain`) when one is given."""
    torch.manual_seed(recipe.seed)
    model = create_model(method, num_classes=len(labels), labels=labels, **recipe.model)
    for init in filter(None, recipe.init.split(",")):  # "a,b": both, e.g. the two ResNets of the TASN paper
        from fgviz.weights.timm_backbones import init_from_timm  # the Hub only when asked

        init_from_timm(model, init)
    return model


def init_provenance(init: str) -> dict[str, Any] | None:
    """What the card says about the initialisation: the timm name, or a pretrained folder's own provenance."""
    if not init:
        return None
    out: dict[str, Any] = {"source": init}
    for part in init.split(","):
        config = Path(part) / "config.json"
        if not part.startswith("timm:") and config.is_file():
            pre = json.loads(config.read_text())
            out.setdefault("pretraining", []).append({"architecture": pre.get("architecture"),
                                                      **pre.get("fgviz_pretraining", {})})
    return out


def train(args: argparse.Namespace) -> dict[str, Any]:
    rank, world, device = setup_distributed()
    recipe = resolve_recipe(args)
    out = Path(args.out)
    size = tuple(recipe.model.get("img_size", (448, 448)))
    stream = make_stream(args.data, args.data_dir, size, recipe.model.get("crop_pct", 1.0), recipe.seed,
                         args.data_version)
    model = build_model(args.method, recipe, stream.labels).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, recipe))
    step = 0
    elapsed = 0.0  # training seconds before this process (a resumed run's time is the whole run's)
    ckpt_path = out / "checkpoint.pt"
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # our own file; still no pickles
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        elapsed = float(ckpt.get("time_s", 0.0))
        if rank == 0:
            torch.set_rng_state(ckpt["rng"][0])  # single process: bitwise-exact resumption (tested)
        else:
            torch.manual_seed(recipe.seed + 1000 * rank + step)  # other ranks: a fresh, distinct dropout stream
        if torch.cuda.is_available() and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"])
    else:
        torch.manual_seed(recipe.seed + 1000 * rank)  # dropout / random channels differ per rank
    loss_module: nn.Module = LossModule(model, recipe.loss)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    amp = device.type == "cuda" and not args.no_amp
    log_path = out / "metrics.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    bar = None
    if rank == 0 and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=recipe.steps, initial=step, desc=f"{args.method} {args.data}", dynamic_ncols=True)
    model.train()
    t0 = time.time() - elapsed
    last_acc = None
    stop_at = min(recipe.steps, args.stop_after) if args.stop_after else recipe.steps
    while step < stop_at:
        images, labels = stream.batch(step, recipe.batch_size, rank, world)
        x = to_tensor(images, model, device)
        y = torch.from_numpy(labels).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss, logits = loss_module(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
        sched.step()
        step += 1
        if rank == 0:
            acc = float((logits.argmax(-1) == y).float().mean())
            rec = {"step": step, "loss": round(loss.item(), 5), "train_acc": round(acc, 4),
                   "lr": sched.get_last_lr()[0], "time_s": round(time.time() - t0, 2)}
            if step % recipe.eval_every == 0 or step == recipe.steps:
                last_acc = evaluate_accuracy(model, stream, recipe.eval_samples, recipe.batch_size,
                                             recipe.seed + 10_000, device)
                rec["eval_acc"] = round(last_acc, 4)
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}",
                                **({"eval": f"{last_acc:.3f}"} if last_acc is not None else {}))
        if rank == 0 and (step % args.checkpoint_every == 0 or step == stop_at):
            # Rank 0's RNG state only: under torchrun, ranks > 0 resume with a new seed (exact for one process).
            rngs = [torch.get_rng_state()]
            ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "rng": rngs, "time_s": time.time() - t0}
            if torch.cuda.is_available():
                ckpt["cuda_rng"] = torch.cuda.get_rng_state()
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(ckpt, tmp)
            tmp.replace(ckpt_path)  # atomic: a crash never leaves a half-written checkpoint
    if bar is not None:
        bar.close()
    result: dict[str, Any] = {"step": step}
    if rank == 0 and step >= recipe.steps:
        model.eval()
        acc = evaluate_accuracy(model, stream, recipe.eval_samples, recipe.batch_size, recipe.seed + 10_000, device)
        result["eval_acc"] = acc
        provenance = {
            "name": out.name,
            "dataset": args.data,
            "recipe": {**asdict(recipe), "preset": args.preset},
            "command": "python -m fgviz.train " + " ".join(shlex.quote(a) for a in args.argv),
            "steps": step,
            "seed": recipe.seed,
            "train_time_s": round(time.time() - t0, 1),
            "weights_kind": "demo" if args.data.startswith("synth-") else "trained",
            **({"data_version": stream.version} if isinstance(stream, SyntheticStream) else {}),
            **({"init": init_provenance(recipe.init)} if recipe.init else {}),
            "metrics": {"eval_accuracy": {"value": round(acc, 4), "chance": round(1 / stream.num_classes, 4)}},
        }
        save_model(model, out, provenance=provenance, half=args.half)
        if args.push_to_hub:
            from fgviz.weights.hub import push_to_hub

            push_to_hub(out, args.push_to_hub)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def resolve_recipe(args: argparse.Namespace) -> Recipe:
    if args.method not in METHODS:
        raise SystemExit(f"unknown --method {args.method}")
    if args.method not in PRESETS.get(args.preset, {}):
        raise SystemExit(f"{args.method} has no {args.preset!r} recipe (its folder's presets: "
                         f"{sorted(METHODS[args.method].presets)})")
    recipe = replace(PRESETS[args.preset][args.method])
    recipe.model = dict(recipe.model)
    for name in ("lr", "steps", "batch_size", "warmup_steps", "eval_every", "eval_samples", "seed", "grad_clip",
                 "weight_decay", "optimizer", "init"):
        value = getattr(args, name)
        if value is not None:
            setattr(recipe, name, value)
    if args.img_size:
        recipe.model["img_size"] = (args.img_size, args.img_size)
    for kv in args.model_arg or []:
        key, _, value = kv.partition("=")
        recipe.model[key] = json.loads(value)
    for kv in args.loss_arg or []:
        key, _, value = kv.partition("=")
        recipe.loss[key] = json.loads(value)
    return recipe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fgviz.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=sorted(METHODS), help="the method to train (not with --pretrain)")
    p.add_argument("--pretrain", choices=families(), help="pretrain a backbone family on every synthetic class "
                   "(fgviz.training.pretrain) instead; then --init OUT")
    p.add_argument("--data", help="synth-birds | synth-cars | cub | cars")
    p.add_argument("--data-version", type=int, help="synthetic data version (default: the latest)")
    p.add_argument("--data-dir")
    p.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    p.add_argument("--out", required=True)
    p.add_argument("--push-to-hub", help="org/name to upload the finished model to")
    p.add_argument("--lr", type=float)
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-samples", type=int)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--init", help="timm:<name> or a folder in timm's layout (from --pretrain); comma-separated for "
                   "several; '' for random")
    p.add_argument("--seed", type=int)
    p.add_argument("--img-size", type=int)
    p.add_argument("--model-arg", action="append", help="KEY=JSON model config override, repeatable")
    p.add_argument("--loss-arg", action="append", help="KEY=JSON loss argument (e.g. smoothing=0.1), repeatable")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this step; resume with --resume")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--half", action="store_true", help="store float16 weights")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.pretrain is None and (args.method is None or args.data is None):
        p.error("--method and --data are required (or --pretrain)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = pretrain(args) if args.pretrain else train(args)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
