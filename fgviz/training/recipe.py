"""A training run's recipe (optimiser, schedule, model arguments) and its learning-rate schedule, shared by the
method training loop (`fgviz.training.train`) and backbone pretraining (`fgviz.training.pretrain`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recipe:
    """Optimisation and model arguments of a run (everything the model card reports)."""

    model: dict[str, Any] = field(default_factory=dict)  # config arguments of the method (+ crop_pct, mean, std)
    loss: dict[str, Any] = field(default_factory=dict)  # arguments of the method's loss (weights, temperatures)
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 3e-2
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine (after linear warm-up) | step (x0.1 at 1/3 and 2/3)
    warmup_steps: int = 500
    steps: int = 10_000
    batch_size: int = 16  # per process, as the official scripts
    grad_clip: float = 1.0
    eval_every: int = 500
    eval_samples: int = 1000
    init: str = ""  # timm:<name> backbone initialisation ("" = random)
    seed: int = 0


def lr_at(step: int, r: Recipe) -> float:
    """Learning rate multiplier: linear warm-up then cosine to 0, or x0.1 steps at 1/3 and 2/3."""
    if step < r.warmup_steps:
        return (step + 1) / r.warmup_steps
    if r.schedule == "step":
        return 0.1 ** sum(step >= r.steps * f for f in (1 / 3, 2 / 3))
    progress = (step - r.warmup_steps) / max(1, r.steps - r.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
