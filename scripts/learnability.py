"""Can a small ViT learn the synthetic data on a laptop CPU, and does it look at the deciding parts?

Trains a timm ViT (96 px, 8-px patches, 128 wide, 4 deep by default) from scratch on freshly generated samples
(seed 0, never repeated) for a fixed wall-clock budget, then evaluates on another seed's samples. Besides accuracy
it reports the TransFG part-selection (PSM: argmax of the head-wise product of all layers' attention) hit rate on
the deciding-part mask against the random-token chance, the feasibility number the data was tuned with, and (data
version 2) the same hit rate on the nuisance parts' mask. `--minutes 0` evaluates the randomly initialised model:
its PSM should not prefer the deciding parts over the equally salient nuisance parts.

This is a check, not a test (it takes minutes). Examples:

    python scripts/learnability.py --domain birds --minutes 4 --version 1
    python scripts/learnability.py --domain birds --minutes 5 --size 192 --patch 16 --depth 6 --dim 160 --heads 4
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python scripts/...`

from fgviz.core.geometry import token_boxes
from fgviz.core.metrics import part_hit_rate
from fgviz.data.synthetic import LATEST_VERSION, VERSIONS, attributes, class_variants, make_sample, num_classes

MEAN = STD = 0.5


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float, normalised."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - MEAN) / STD


def batch(domain: str, start: int, n: int, seed: int, size: int, version: int) -> tuple[np.ndarray, np.ndarray, list]:
    samples = [make_sample(domain, i, seed, size, version) for i in range(start, start + n)]
    return (np.stack([s.image for s in samples]), np.array([s.label for s in samples]), samples)


class AttentionRecorder:
    """Records each block's attention probabilities (fused attention off, hook on attn_drop)."""

    def __init__(self, model: VisionTransformer) -> None:
        self.records: list[torch.Tensor] = []
        self.handles = []
        for blk in model.blocks:
            blk.attn.fused_attn = False
            self.handles.append(blk.attn.attn_drop.register_forward_hook(self._hook))

    def _hook(self, module, inputs, output) -> None:
        self.records.append(output.detach())

    def psm_tokens(self) -> torch.Tensor:
        """(B, heads) patch index selected by each head (TransFG: product of layers 1..L-1 without residual)."""
        joint = self.records[0]  # (B, h, N, N)
        for a in self.records[1:-1]:
            joint = a @ joint
        return joint[:, :, 0, 1:].argmax(-1)  # (B, h): CLS row, patch tokens only

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def evaluate(model: VisionTransformer, domain: str, n: int, size: int, patch: int, version: int) -> dict[str, float]:
    model.eval()
    rec = AttentionRecorder(model)
    correct, hits, chance, n_hits, n_chance = 0, [], [], [], []
    bits = np.array([class_variants(domain, c) for c in range(num_classes(domain))])  # (C, parts)
    part_correct = np.zeros(bits.shape[1])
    grid = (size // patch, size // patch)
    cands = token_boxes(grid, patch, patch, (size, size))
    with torch.no_grad():
        for start in range(0, n, 100):
            images, labels, samples = batch(domain, start, min(100, n - start), 1, size, version)
            rec.records.clear()
            logits = model(to_tensor(images))
            pred = logits.argmax(1).numpy()
            correct += int((pred == labels).sum())
            part_correct += (bits[pred] == bits[labels]).sum(0)
            tokens = rec.psm_tokens().numpy()
            for s, tok in zip(samples, tokens, strict=True):
                r = part_hit_rate(cands[tok], s.part_mask, candidates=cands)
                hits.append(r.value)
                chance.append(r.chance)
                if s.nuisance_mask.any():
                    r = part_hit_rate(cands[tok], s.nuisance_mask, candidates=cands)
                    n_hits.append(r.value)
                    n_chance.append(r.chance)
    rec.close()
    model.train()
    hit, ch = float(np.mean(hits)), float(np.mean(chance))
    parts = {a.part: float(c / n) for a, c in zip(attributes(domain), part_correct, strict=True)}
    nh = float(np.mean(n_hits)) if n_hits else float("nan")
    nc = float(np.mean(n_chance)) if n_chance else float("nan")
    return {
        "acc": correct / n,
        "psm_hit": hit,
        "psm_chance": ch,
        "psm_ratio": hit / ch,
        "parts": parts,
        "psm_nuisance_hit": nh,
        "psm_nuisance_chance": nc,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="birds", choices=["birds", "cars"])
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-n", type=int, default=800)
    p.add_argument("--threads", type=int, default=1, help="torch threads (others share this machine)")
    p.add_argument("--version", type=int, default=LATEST_VERSION, choices=VERSIONS, help="synthetic data version")
    p.add_argument("--eval-every", type=float, default=0.0, help="also evaluate (on 200) every this many minutes")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    C = num_classes(args.domain)
    model = VisionTransformer(
        img_size=args.size,
        patch_size=args.patch,
        embed_dim=args.dim,
        depth=args.depth,
        num_heads=args.heads,
        num_classes=C,
        drop_path_rate=0.0,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    budget = args.minutes * 60.0
    warmup = 0.05
    t0 = time.perf_counter()
    step, seen, gen_time, losses = 0, 0, 0.0, []
    next_eval = args.eval_every * 60.0
    while (elapsed := time.perf_counter() - t0) < budget:
        frac = elapsed / budget  # time-based schedule: linear warm-up, cosine decay
        lr = args.lr * (
            frac / warmup if frac < warmup else 0.5 * (1 + math.cos(math.pi * (frac - warmup) / (1 - warmup)))
        )
        for g in opt.param_groups:
            g["lr"] = lr
        tg = time.perf_counter()
        images, labels, _ = batch(args.domain, seen, args.batch, 0, args.size, args.version)
        gen_time += time.perf_counter() - tg
        loss = F.cross_entropy(model(to_tensor(images)), torch.from_numpy(labels), label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        seen += args.batch
        if args.eval_every > 0 and elapsed >= next_eval:
            next_eval += args.eval_every * 60.0
            te = time.perf_counter()
            mid = evaluate(model, args.domain, 200, args.size, args.patch, args.version)
            print(f"eval at {elapsed:5.0f}s: accuracy {mid['acc']:.3f} on 200", flush=True)
            t0 += time.perf_counter() - te  # evaluation does not count against the training budget
        if step % 50 == 0:
            print(
                f"step {step:5d}  samples {seen:6d}  {elapsed:6.0f}s  lr {lr:.2e}  loss {np.mean(losses[-50:]):.3f}",
                flush=True,
            )
    train_s = time.perf_counter() - t0
    res = evaluate(model, args.domain, args.eval_n, args.size, args.patch, args.version)
    print(
        f"{args.domain} v{args.version}: {seen} training samples in {train_s:.0f}s ({gen_time:.0f}s generating), "
        f"held-out accuracy {res['acc']:.3f} on {args.eval_n} (chance {1 / C:.3f}); PSM part hit rate "
        f"{res['psm_hit']:.3f} vs random-token chance {res['psm_chance']:.3f} ({res['psm_ratio']:.1f}x); "
        f"PSM nuisance-part hit rate {res['psm_nuisance_hit']:.3f} vs chance {res['psm_nuisance_chance']:.3f}"
    )
    print(
        "per-part accuracy (of the predicted class's variant): "
        + ", ".join(f"{k} {v:.3f}" for k, v in res["parts"].items())
    )


if __name__ == "__main__":
    main()
