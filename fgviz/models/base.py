"""The shared model interface: a config dataclass per method and `FineGrainedModel.explain`.

Every method is an `nn.Module` built from a JSON-able config (so a checkpoint is `config.json` +
`model.safetensors`), has its own preprocessing, `forward(x) -> logits`, `loss(x, y) -> (loss, logits)` for training,
and `explain(image) -> Explanation` that runs one forward pass and returns numpy only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from fgviz.explanation import Explanation
from fgviz.preprocess import Preprocess

# Bounds checked before anything is allocated, so an untrusted config cannot ask for absurd sizes.
MAX_IMG_SIDE = 1024
MAX_CLASSES = 100_000
MAX_WIDTH = 4096
MAX_DEPTH = 48


@dataclass
class BaseConfig:
    """Fields every method shares. Subclasses add their architecture arguments."""

    num_classes: int = 200
    labels: list[str] = field(default_factory=list)
    img_size: tuple[int, int] = (448, 448)
    crop_pct: float = 448 / 600
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int):
            self.img_size = (self.img_size, self.img_size)
        self.img_size = tuple(int(s) for s in self.img_size)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes={self.num_classes!r} outside [1, {MAX_CLASSES}]")  # before making labels
        if not self.labels:
            self.labels = [f"class_{i}" for i in range(self.num_classes)]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for values out of bounds. Subclasses extend this."""
        if not 1 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes={self.num_classes} outside [1, {MAX_CLASSES}]")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for num_classes={self.num_classes}")
        if len(self.img_size) != 2 or not all(8 <= s <= MAX_IMG_SIDE for s in self.img_size):
            raise ValueError(f"img_size={self.img_size} outside [8, {MAX_IMG_SIDE}]")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct={self.crop_pct} outside [0.1, 1]")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values, std > 0")

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(img_size=self.img_size, crop_pct=self.crop_pct, mean=self.mean, std=self.std)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaseConfig:
        """Build from a parsed config.json, rejecting unknown argument names before anything is allocated."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} arguments: {unknown}; known: {sorted(names)}")
        return cls(**d)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def check_int(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} outside [{lo}, {hi}]")


class FineGrainedModel(nn.Module):
    """Base class: subclasses set `method`, `config_class` and implement `forward`, `loss` and `_explain`."""

    method: ClassVar[str]
    config_class: ClassVar[type[BaseConfig]]

    def __init__(self, config: BaseConfig) -> None:
        super().__init__()
        self.config = config
        self.name = ""  # set by the loader: registry name or spec
        self.weights_kind = "random"  # "demo" | "hub" | "local" | "backbone" | "random"
        self.provenance: dict[str, Any] = {}  # from config.json: dataset, recipe, command, metrics

    @property
    def preprocess(self) -> Preprocess:
        return self.config.preprocess

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.config.labels)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.inference_mode()
    def explain(self, image: Image.Image | np.ndarray, **params: Any) -> Explanation:
        """Run one forward pass on `image` and return everything the views need, as numpy.

        `image` is a PIL image or an (H, W, 3) uint8 array; the model's own preprocessing is applied. `params`
        are the method's parameters (see each subclass).
        """
        was_training = self.training
        self.eval()
        try:
            x, display = self.preprocess(image)
            x = x.to(device=self.device, dtype=self.dtype)
            fields = self._explain(x, display, **params)
        finally:
            self.train(was_training)
        return Explanation(
            method=self.method,
            image=display,
            labels=self.labels,
            model_name=self.name,
            weights_kind=self.weights_kind,
            **fields,
        )

    def _explain(self, x: torch.Tensor, display: np.ndarray, **params: Any) -> dict[str, Any]:
        raise NotImplementedError


def to_numpy(t: torch.Tensor, dtype: Any = np.float32) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(dtype, copy=False)


def softmax_np(logits: torch.Tensor) -> np.ndarray:
    """(C,) logits -> float32 probabilities computed in float64, so they sum to 1 in float32 too."""
    return torch.softmax(logits.detach().double().cpu(), dim=-1).numpy().astype(np.float32)
