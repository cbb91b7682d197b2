"""`Explanation`: everything a figure needs, as numpy, produced by one forward pass.

Figures, metrics and exports read an `Explanation`; none of them runs a model. All arrays are numpy so an
`Explanation` can be cached, deep-copied into UI state, pickled and compared in tests.

Coordinate conventions (all in pixels of `image`, the exact pixels the model saw):
- boxes are (x0, y0, x1, y1) with x1/y1 exclusive;
- token grids are (gh, gw); token (r, c) of a ViT covers rows `stride*r .. stride*r + patch - 1` and the same
  for columns (TransFG's overlapping 16-px patches at stride 12 overlap by 4 px);
- token indices count the prefix (CLS) tokens, so patch tokens start at `num_prefix_tokens`
(`fgviz.core.geometry` maps them to pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fgviz.core.geometry import token_box, token_rc

# What the weights of a model are: the one vocabulary of `FineGrainedModel.weights_kind`, `Explanation.weights_kind`
# and the provenance a checkpoint records (`fgviz.training.train` writes "demo" or "trained").
WEIGHTS_KINDS: dict[str, str] = {
    "demo": "demo weights trained by fgviz on its synthetic birds/cars",
    "trained": "weights trained by fgviz on a real dataset",
    "hub": "weights fine-tuned for this method, from the Hugging Face Hub",
    "local": "weights from a local folder",
    "backbone": "a published classifier wrapped in this method as it is (its own labels and training data): the "
                "method's own parts were never trained with it",
    "random": "random weights: the maps show the architecture, not anything learned",
}

# How an Explanation shows itself in a notebook: its method's signature view, drawn by `fgviz.methods` (a layer above
# this one), which registers the drawing function with `set_display` when it is imported; every model's `explain`
# imports it first. Until then an Explanation shows as its text repr.
_display: Callable[[Explanation], Any] | None = None


def set_display(draw: Callable[[Explanation], Any] | None) -> None:
    """Register `draw(expl) -> fgviz.viz.Figure`, what `Explanation.figure` and the notebook display return."""
    global _display
    _display = draw


@dataclass(frozen=True, eq=False, repr=False)
class Explanation:
    """One model's explanation of one image.

    Fields used by every method: `method`, `image`, `probs`, `labels`. The others are filled by the methods
    that have them (see each model's `explain`) and left `None`/empty otherwise.
    """

    method: str
    image: np.ndarray  # (H, W, 3) uint8: the model's input, after its own resize and crop
    probs: np.ndarray  # (C,) float32, sums to 1: the model's final prediction
    labels: tuple[str, ...]  # (C,) class names
    model_name: str = ""
    weights_kind: str = ""  # a key of WEIGHTS_KINDS: what the weights are, for the UI banner
    missed_targets: tuple[str, ...] = ()  # the model card's localisation targets this model misses (not evidence)
    source: dict[str, str] = field(default_factory=dict)  # the weights' repo, revision, dataset and license

    # ViT methods (TransFG, RAMS-Trans): token geometry and per-layer rollout.
    grid: tuple[int, int] | None = None  # (gh, gw)
    patch_size: int = 0  # token footprint side in `image` pixels
    stride: int = 0  # token step in `image` pixels (== patch_size unless overlapping)
    num_prefix_tokens: int = 1
    rollout: np.ndarray | None = None  # (L, gh, gw) float32: Abnar rollout CLS row through layers 1..l
    attn_q: np.ndarray | None = None  # (L, H, N, d) float16: per-layer queries, already scaled by 1/sqrt(d)
    attn_k: np.ndarray | None = None  # (L, H, N, d) float16: per-layer keys; softmax(q k^T) is the attention

    # TransFG
    part_tokens: np.ndarray | None = None  # (K,) int: PSM token index per head (>= num_prefix_tokens)
    part_boxes: np.ndarray | None = None  # (K, 4) int: pixel footprint of each selected token
    psm_rows: np.ndarray | None = None  # (K, gh, gw) float32: per-head CLS row of A_{L-1}...A_1 (what argmax saw)

    # RAMS-Trans (index s = 0 is the full image; crop s feeds scale s + 1)
    scale_probs: np.ndarray | None = None  # (S, C) float32: prediction of each scale alone
    crop_boxes: np.ndarray | None = None  # (S-1, 4) int: zoom box of each step in `image` pixels
    crops: tuple[np.ndarray, ...] = ()  # (S-1) images (H, W, 3) uint8: the zoomed input of scales 2..S
    dppm_maps: np.ndarray | None = None  # (S-1, gh, gw) float32 in (0, 1]: rollout vector g per step
    dppm_masks: np.ndarray | None = None  # (S-1, gh, gw) bool: g > alpha * mean(g)
    dppm_boxes: np.ndarray | None = None  # (S-1, 4) int: (r0, c0, r1, c1) grid box of the largest component

    # TASN
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # "structure"/"detail": (h, w) float32 >= 0
    sampled: dict[str, np.ndarray] = field(default_factory=dict)  # "structure"/"detail": (o, o, 3) uint8
    sample_coords: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # (rows (o,), cols (o,))
    trilinear: np.ndarray | None = None  # (C, h, w) float16: trilinear attention maps
    features: np.ndarray | None = None  # (C, h, w) float32: the attention net's feature maps X (what previews need)

    # (mean, std) the model normalised `image` with: previews rebuild the model's input exactly from `image`
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    params: dict[str, Any] = field(default_factory=dict)  # method parameters used (alpha, dense, iters, gamma...)
    extras: dict[str, Any] = field(default_factory=dict)  # small method-specific extras (logits, timings...)

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"method must be a method name, got {self.method!r}")
        if self.weights_kind and self.weights_kind not in WEIGHTS_KINDS:
            raise ValueError(f"unknown weights_kind {self.weights_kind!r}; expected one of {sorted(WEIGHTS_KINDS)}")
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        if self.probs.ndim != 1 or len(self.labels) != self.probs.shape[0]:
            raise ValueError(f"probs {self.probs.shape} and {len(self.labels)} labels disagree")
        if not np.all(np.isfinite(self.probs)) or abs(float(self.probs.sum()) - 1.0) > 1e-3:
            raise ValueError("probs must be finite and sum to 1")
        H, W = img.shape[:2]
        for name in ("part_boxes", "crop_boxes"):
            boxes = getattr(self, name)
            if boxes is not None and len(boxes):
                b = np.asarray(boxes)
                if (b[:, 0] < 0).any() or (b[:, 1] < 0).any() or (b[:, 2] > W).any() or (b[:, 3] > H).any() or (
                    b[:, 2] <= b[:, 0]
                ).any() or (b[:, 3] <= b[:, 1]).any():
                    raise ValueError(f"{name} must be non-empty boxes inside the {W}x{H} image, got {b.tolist()}")
        if self.rollout is not None and self.grid is not None and self.rollout.shape[1:] != tuple(self.grid):
            raise ValueError(f"rollout {self.rollout.shape} does not match grid {self.grid}")

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of `image`."""
        return self.image.shape[0], self.image.shape[1]

    @property
    def num_layers(self) -> int:
        return 0 if self.rollout is None else int(self.rollout.shape[0])

    def topk(self, k: int = 5, probs: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs, highest first."""
        p = self.probs if probs is None else probs
        idx = np.argsort(-p, kind="stable")[: min(k, p.shape[0])]
        return [(self.labels[i], float(p[i])) for i in idx]

    @property
    def prediction(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def token_box(self, token: int) -> tuple[int, int, int, int]:
        """Pixel footprint (x0, y0, x1, y1) of a token index in the full sequence (prefix tokens counted)."""
        if self.grid is None:
            raise ValueError(f"{self.method} has no token grid")
        return token_box(token - self.num_prefix_tokens, self.grid, self.patch_size, self.stride, self.size)

    def token_rc(self, token: int) -> tuple[int, int]:
        """(row, column) of a full-sequence token index on the patch grid."""
        if self.grid is None:
            raise ValueError(f"{self.method} has no token grid")
        return token_rc(token, self.grid, self.num_prefix_tokens)

    # ---- display (Jupyter, Colab) ----------------------------------------------------------------------------------
    def __repr__(self) -> str:
        top = self.topk(1)[0]
        return (f"Explanation(method={self.method!r}, model={self.model_name!r}, image {self.size[1]}x{self.size[0]}, "
                f"prediction={top[0]!r} {100 * top[1]:.1f}%)")

    def figure(self) -> Any:
        """The explanation as a `fgviz.viz.Figure` (what a notebook shows): its method's signature view, the model that
        made it, the top-5 and the localisation targets its model card records as missed."""
        if _display is None:
            raise RuntimeError("no display registered: import fgviz.methods first")
        return _display(self)

    def _repr_html_(self) -> str | None:
        return None if _display is None else self.figure()._repr_html_()

    def _repr_png_(self) -> Any:
        return None if _display is None else self.figure()._repr_png_()


def jsonable(v: Any) -> Any:
    """Numpy arrays and scalars, tuples and nested dicts as plain JSON values."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
