"""The model interface every method implements: configs, `FineGrainedModel.explain`, and numpy conversion helpers.

A model is built from two JSON-able records, as timm separates model arguments from ``pretrained_cfg``:
- its `ModelConfig`: constructor arguments, i.e. the architecture and the algorithm parameters its forward pass
  uses (RAMS-Trans's alphas, TASN's sampler settings; `explain(**params)` overrides them per call);
- its `PretrainedCfg`: what a checkpoint says about inputs and outputs (class labels, mean/std, crop fraction).
Training knobs (loss weights, temperatures) are arguments of `loss`, recorded in the training recipe.
So a checkpoint is `config.json` (both records) + `model.safetensors` (`fgviz.weights.format`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from fgviz.core.explanation import WEIGHTS_KINDS, Explanation
from fgviz.core.preprocess import CROP_MODES, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, Preprocess

# Bounds checked before anything is allocated, so an untrusted config cannot ask for absurd sizes.
MAX_IMG_SIDE = 1024
MAX_CLASSES = 100_000
MAX_WIDTH = 4096
MAX_DEPTH = 48
# provenance fields an explanation carries, so every column can say which weights made it
SOURCE_FIELDS = ("repo", "revision", "dataset", "license", "source")


class ConversionError(ValueError):
    """Weights do not have the layout an adapter expects (official checkpoint, timm model, npz); the message names
    the key or shape."""


def check_int(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} outside [{lo}, {hi}]")


def _jsonable(v: Any) -> Any:
    return [_jsonable(x) for x in v] if isinstance(v, tuple | list) else v


class _Record:
    """to_dict / from_dict for the config dataclasses; unknown names are refused before anything is allocated."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} arguments: {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class ModelConfig(_Record):
    """Constructor arguments every method shares; subclasses add theirs and extend `validate`."""

    num_classes: int = 200
    img_size: tuple[int, int] = (448, 448)

    def __post_init__(self) -> None:
        if isinstance(self.img_size, int):
            self.img_size = (self.img_size, self.img_size)
        self.img_size = tuple(int(s) for s in self.img_size)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for values out of bounds. Subclasses extend this."""
        check_int("num_classes", self.num_classes, 1, MAX_CLASSES)
        if len(self.img_size) != 2 or not all(8 <= s <= MAX_IMG_SIDE for s in self.img_size):
            raise ValueError(f"img_size={self.img_size} outside [8, {MAX_IMG_SIDE}]")


@dataclass
class PretrainedCfg(_Record):
    """Input and output metadata of a checkpoint (timm's pretrained_cfg): labels, normalisation, test-time crop.

    `crop_pct`: the image is resized to img_size / crop_pct, then centre-cropped (TransFG: Resize(600) ->
    CenterCrop(448), 448/600)."""

    labels: tuple[str, ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 1.0
    crop_mode: str = "squash"  # "squash" (fgviz, transformers ViT processors) or "center" (timm: aspect kept)
    interpolation: str = "bilinear"  # the resize: "bilinear" or "bicubic" (most timm checkpoints)

    def __post_init__(self) -> None:
        self.labels = tuple(str(s) for s in self.labels)
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        self.crop_pct = float(self.crop_pct)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values, std > 0")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct={self.crop_pct} outside [0.1, 1]")
        if len(self.labels) > MAX_CLASSES:
            raise ValueError(f"more than {MAX_CLASSES} labels")
        if self.crop_mode not in CROP_MODES or self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"crop_mode {self.crop_mode!r} / interpolation {self.interpolation!r}: known "
                             f"{CROP_MODES} / {sorted(INTERPOLATIONS)}")

    def for_classes(self, num_classes: int) -> PretrainedCfg:
        """This record with one label per class (`class_i` when it names none); refuses a wrong count."""
        if not self.labels:
            return dataclasses.replace(self, labels=tuple(f"class_{i}" for i in range(num_classes)))
        if len(self.labels) != num_classes:
            raise ValueError(f"{len(self.labels)} labels for num_classes={num_classes}")
        return self


PRETRAINED_FIELDS = frozenset(f.name for f in dataclasses.fields(PretrainedCfg))


class FineGrainedModel(nn.Module):
    """Base class: subclasses set `method` and `config_class` and implement `forward`, `loss` and `_explain`."""

    method: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]

    def __init__(self, config: ModelConfig, pretrained_cfg: PretrainedCfg | None = None) -> None:
        super().__init__()
        self.config = config
        self.pretrained_cfg = (pretrained_cfg or PretrainedCfg()).for_classes(config.num_classes)
        self.name = ""  # set by the loader: registry name or spec
        self.weights_kind = "random"  # a key of fgviz.core.explanation.WEIGHTS_KINDS
        self.provenance: dict[str, Any] = {}  # from config.json: dataset, recipe, command, metrics

    @property
    def preprocess(self) -> Preprocess:
        p = self.pretrained_cfg
        return Preprocess(img_size=self.config.img_size, crop_pct=p.crop_pct, mean=p.mean, std=p.std,
                          crop_mode=p.crop_mode, interpolation=p.interpolation)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.pretrained_cfg.labels

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def loss(self, x: torch.Tensor, y: torch.Tensor, **loss_args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, logits); `loss_args` are the method's loss weights and temperatures."""
        raise NotImplementedError

    @torch.inference_mode()
    def explain(self, image: Image.Image | np.ndarray, **params: Any) -> Explanation:
        """Run one forward pass on `image` and return everything the views need, as numpy.

        `image` is a PIL image or an (H, W, 3) uint8 array; the model's own preprocessing is applied. `params`
        are the method's parameters (see each subclass).
        """
        if self.weights_kind not in WEIGHTS_KINDS:
            raise ValueError(f"unknown weights_kind {self.weights_kind!r}")
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
            missed_targets=self.missed_targets(),
            source=self.source(),
            normalization=(self.pretrained_cfg.mean, self.pretrained_cfg.std),
            **fields,
        )

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 images at the model's input size (no resize) -> (B, C) float32 probabilities of the
        model's prediction (its `forward`), in eval mode: what deletion/insertion re-runs on perturbed images."""
        was_training = self.training
        self.eval()
        try:
            pre = self.preprocess
            x = torch.cat([pre.normalize(im) for im in images]).to(self.device, self.dtype)  # (B, 3, H, W)
            return torch.softmax(self(x).float(), dim=-1).cpu().numpy()
        finally:
            self.train(was_training)

    def _explain(self, x: torch.Tensor, display: np.ndarray, **params: Any) -> dict[str, Any]:
        raise NotImplementedError

    def source(self) -> dict[str, str]:
        """Where a published checkpoint comes from (repo, revision, training data, licence), for every column that
        shows it; empty for fgviz's own models (their card says the rest)."""
        p = self.provenance
        return {k: str(p[k]) for k in SOURCE_FIELDS if p.get(k)} if p.get("repo") else {}

    def plain_backbone(self) -> nn.Module | None:
        """The timm network another method could wrap in backbone mode (`fgviz.load("...#method")`), if any."""
        return getattr(self, "vit", None)

    def missed_targets(self) -> tuple[str, ...]:
        """The localisation targets its card (`fgviz.evaluate --update-card`) records as missed: the UI says that
        those figures are not evidence. Accuracy is not a localisation target and is left out."""
        return tuple(t["target"] for t in self.provenance.get("targets", ())
                     if not t.get("met", True) and not t["target"].startswith("accuracy"))

    def reinitialized(self, seed: int = 0) -> FineGrainedModel:
        """The same architecture re-initialised by its own init scheme (the state before training), for Adebayo et
        al.'s model-parameter randomisation test."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = type(self)(self.config, self.pretrained_cfg)
        fresh.name, fresh.weights_kind = f"{self.name} (re-initialised, seed {seed})", "random"
        return fresh.to(self.device, self.dtype).eval()


def to_numpy(t: torch.Tensor, dtype: Any = np.float32) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(dtype, copy=False)


def softmax_np(logits: torch.Tensor) -> np.ndarray:
    """(C,) logits -> float32 probabilities computed in float64, so they sum to 1 in float32 too."""
    return torch.softmax(logits.detach().double().cpu(), dim=-1).numpy().astype(np.float32)


def field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


__all__ = [
    "MAX_CLASSES",
    "MAX_DEPTH",
    "MAX_IMG_SIDE",
    "MAX_WIDTH",
    "PRETRAINED_FIELDS",
    "ConversionError",
    "FineGrainedModel",
    "ModelConfig",
    "PretrainedCfg",
    "check_int",
    "field_names",
    "softmax_np",
    "to_numpy",
]
