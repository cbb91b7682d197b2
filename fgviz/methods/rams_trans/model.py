"""RAMS-Trans: "RAMS-Trans: Recurrent Attention Multi-scale Transformer for Fine-grained Image Recognition"
(Hu et al., ACM MM 2021). Paper: https://arxiv.org/abs/2107.08192 · only public code: github.com/hyqyoung/RAMS-Trans.

One timm ViT shared by every scale (patch embedding, blocks, norm, head and position embedding), with one CLS token
per scale ("scale-wise class tokens"): the sequence is [CLS_1, ..., CLS_S, patches] in every pass and scale s reads
CLS_s. Between scales the Dynamic Patch Proposal Module (DPPM) rolls out the pass's attention over all layers
(head mean + I, rows normalised), averages all query rows, thresholds at alpha x mean (alpha 1.2, then 1.3),
keeps the largest 8-connected component and crops its box (in patch units, with the official one-pixel shift) out
of the normalised input, resized back to the input size with bilinear align_corners=True.

Choices and deviations:
- Patch size is a config field. The paper's table says ViT-B/16; the official code uses 32-px patches (a ViT-B/32
  init). The default here follows the code (32); the demo models use 8-px patches at 96 px.
- Loss = CE(scale 1) + CE(scale 2) (+ CE(scale 3)), as the paper's figure and text say; the official code trains
  on scale 1 only (the scale-2 term is commented out).
- The prediction is the softmax of the sum of the scales' logits; the official code reports each scale's accuracy
  separately (and selects models on scale 1). Each scale's own prediction is in ``scale_probs``.
- CLS_2..CLS_S are timm "register" tokens that each get their own position-embedding row (the official code copies
  the pretrained CLS position embedding once per scale, the same thing at initialisation).
- Backbone mode (a checkpoint with one CLS token wrapped as RAMS-Trans, `shared_cls`): every scale reads the one CLS
  and every pass is [CLS, patches], the sequence the checkpoint was trained on; the official [CLS_1, CLS_2, patches]
  would give the CLS key twice the attention it was trained with (identical tokens, counted twice by the softmax).
  So scale 1 is the checkpoint's own forward, which the baseline column computes too (the pass is shared).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgviz.core.attention import dppm_mask, dppm_vector_from_fused, largest_component_box
from fgviz.core.geometry import grid_box_to_pixels
from fgviz.methods.backbones.vit.model import ViTConfig, build_vit, layer_rollout
from fgviz.methods.backbones.vit.trunk import TrunkPass, trunk
from fgviz.methods.base import FineGrainedModel, check_int, softmax_np, to_numpy

DEFAULT_ALPHAS = (1.2, 1.3)


@dataclass
class RAMSTransConfig(ViTConfig):
    patch_size: int = 32  # official code; the paper's table says 16
    num_scales: int = 2
    alphas: tuple[float, ...] = DEFAULT_ALPHAS  # threshold ratio of each zoom step (1.2 -> scale 2, 1.3 -> scale 3)
    shared_cls: bool = False  # backbone mode: one CLS token read by every scale, each pass [CLS, patches]

    def validate(self) -> None:
        super().validate()
        check_int("num_scales", self.num_scales, 1, 3)
        self.alphas = tuple(float(a) for a in self.alphas)
        if len(self.alphas) < self.num_scales - 1:
            raise ValueError(f"{self.num_scales} scales need {self.num_scales - 1} alphas, got {self.alphas}")
        if any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}")


def propose(g: torch.Tensor, grid: tuple[int, int], alpha: float) -> dict[str, torch.Tensor]:
    """The DPPM after the rollout vector: threshold g at alpha x mean, keep the largest 8-connected component, box it.

    Args:
        g: (B, gh * gw) rollout vector.

    Returns:
        "g" (B, gh, gw), "mask" (B, gh, gw) bool, "component" (B, gh, gw) bool, "boxes" (B, 4) grid (r0, c0, r1, c1).
    """
    mask = dppm_mask(g, grid, alpha=alpha)  # (B, gh, gw)
    component, boxes = largest_component_box(mask)  # (B, gh, gw), (B, 4)
    return {"g": g.reshape(mask.shape), "mask": mask, "component": component, "boxes": boxes}


def crop_resize(x: torch.Tensor, box: tuple[int, int, int, int], patch: int) -> torch.Tensor:
    """One image's zoom: the grid box (official one-pixel shift) cropped from `x` (3, H, W) and resized back to
    (H, W) with bilinear align_corners=True, as the official code does on the normalised input. Returns (1, 3, H, W).
    """
    H, W = x.shape[-2:]
    y0, x0, y1, x1 = grid_box_to_pixels(box, patch, (H, W))
    crop = x[:, y0 : y1 + 1, x0 : x1 + 1].unsqueeze(0)  # (1, 3, h, w)
    return F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=True)


def crop_boxes_in_input(pixel_boxes: list[tuple[int, int, int, int]], size: tuple[int, int]
                        ) -> list[tuple[int, int, int, int]]:
    """Each zoom step's crop as an (x0, y0, x1, y1) box in the pixels of the original input.

    Crop s spans inclusive rows y0..y1 of the scale-s input, which was itself resized from the previous crop with
    align_corners=True (pixel i -> y0 + i * (y1 - y0) / (H - 1)), so the boxes nest.
    """
    H, W = size
    out, origin, step = [], np.zeros(2), np.ones(2)  # original coords = origin + coord * step
    for y0, x0, y1, x1 in pixel_boxes:
        top_left = origin + np.array([y0, x0]) * step
        bottom_right = origin + (np.array([y1, x1]) + 1) * step
        bx0, by0 = int(np.floor(top_left[1])), int(np.floor(top_left[0]))
        bx1, by1 = int(np.ceil(bottom_right[1] - 1e-6)), int(np.ceil(bottom_right[0] - 1e-6))
        out.append((max(bx0, 0), max(by0, 0), min(max(bx1, bx0 + 1), W), min(max(by1, by0 + 1), H)))
        origin = top_left
        step = step * np.array([(y1 - y0) / (H - 1), (x1 - x0) / (W - 1)])
    return out


class RAMSTrans(FineGrainedModel):
    method = "rams_trans"
    config_class = RAMSTransConfig

    def __init__(self, config: RAMSTransConfig, pretrained_cfg: Any = None) -> None:
        super().__init__(config, pretrained_cfg)
        c = config
        self.vit = build_vit(c, reg_tokens=0 if c.shared_cls else c.num_scales - 1)  # CLS_2..CLS_S: register tokens
        if c.num_scales > 1 and not c.shared_cls:
            with torch.no_grad():  # scale-wise CLS tokens start equal, as the official init copies one CLS
                self.vit.reg_token.copy_(self.vit.cls_token.expand_as(self.vit.reg_token))

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.config.shared_cls else self.config.num_scales

    def _pass(self, x: torch.Tensor, scale: int, memo: bool = False) -> tuple[torch.Tensor, TrunkPass]:
        """One pass of the shared ViT; scale `scale` (0-based) reads its own CLS token (the one, with `shared_cls`).

        With `memo` (an explanation), scale 1's pass over the input is memoised: models made of the same tensors share
        it. A zoomed crop is seen by no other model."""
        p = trunk(self.vit, x, memo=memo and scale == 0)  # q and k recorded beside timm's fused forward
        h = self.vit.norm(p.hidden[-1])  # (B, p + gh*gw, D), final norm applied
        cls = h[:, 0 if self.config.shared_cls else scale]  # (B, D)
        return self.vit.head(self.vit.head_drop(cls)), p

    def _propose(self, rec: TrunkPass, alpha: float) -> dict[str, torch.Tensor]:
        """DPPM on one pass: rollout vector g, threshold mask, largest component and its grid box."""
        with torch.no_grad():
            fused = rec.fused_upto(rec.depth)  # L x (B, N, N), head mean
            g = dppm_vector_from_fused(fused, num_prefix_tokens=self.num_prefix_tokens)  # (B, gh*gw) in (0, 1]
            return propose(g, self.grid, alpha)

    def _crop(self, x: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """Crop each image's box (official pixel shift) from the normalised input and resize it back."""
        P = self.config.patch_size
        crops = [crop_resize(img, tuple(box), P) for img, box in zip(x, boxes.tolist(), strict=True)]
        pixel_boxes = [grid_box_to_pixels(box, P, x.shape[-2:]) for box in boxes.tolist()]
        return torch.cat(crops).detach(), pixel_boxes  # the crop is detached, as in the official code

    def _forward(self, x: torch.Tensor, *, alphas: tuple[float, ...] | None = None, num_scales: int | None = None,
                 memo: bool = False):
        alphas = alphas or self.config.alphas
        S = num_scales or self.config.num_scales
        logits, records, proposals, inputs, boxes = [], [], [], [x], []
        for s in range(S):
            out, rec = self._pass(inputs[-1], s, memo)
            logits.append(out)
            records.append(rec)
            if s < S - 1:
                prop = self._propose(rec, alphas[s])
                crop, pixel_boxes = self._crop(inputs[-1], prop["boxes"])
                proposals.append(prop)
                inputs.append(crop)
                boxes.append(pixel_boxes)
        return {"logits": logits, "records": records, "proposals": proposals, "inputs": inputs, "boxes": boxes}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Combined prediction: the sum of every scale's logits."""
        return torch.stack(self._forward(x)["logits"]).sum(0)

    def loss(self, x: torch.Tensor, y: torch.Tensor, scales: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
        """CE of every scale, summed (`scales="all"`: the paper's figure and text); `scales="first"` is the official
        code, whose scale-2 term is commented out (`--loss-arg 'scales="first"'`), so its scale 2 is never trained."""
        if scales not in ("all", "first"):
            raise ValueError(f"scales must be 'all' or 'first', got {scales!r}")
        logits = self._forward(x)["logits"]
        trained = logits if scales == "all" else logits[:1]
        return sum(F.cross_entropy(lg, y) for lg in trained), torch.stack(logits).sum(0)

    def _explain(
        self,
        x: torch.Tensor,
        display: np.ndarray,
        *,
        alpha: float | None = None,
        num_scales: int | None = None,
        keep_attention: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        if params:
            raise TypeError(f"RAMSTrans.explain got unknown parameters {sorted(params)}")
        S = num_scales or self.config.num_scales
        check_int("num_scales", S, 1, self.config.num_scales)
        alphas = self.config.alphas if alpha is None else (float(alpha), *self.config.alphas[1:])
        out = self._forward(x, alphas=alphas, num_scales=S, memo=True)
        gh, gw = self.grid
        p = self.num_prefix_tokens
        H, W = display.shape[:2]

        first = out["records"][0]  # scale 1's pass: its rollout is the DPPM's (the same fused matrices)
        rollout = layer_rollout(first.fused_upto(first.depth), (gh, gw), p)
        crop_boxes = crop_boxes_in_input([b[0] for b in out["boxes"]], (H, W))

        props = out["proposals"]
        fields: dict[str, Any] = {
            "probs": softmax_np(torch.stack(out["logits"]).sum(0)[0]),
            "grid": (gh, gw),
            "patch_size": self.config.patch_size,
            "stride": self.config.patch_size,
            "num_prefix_tokens": p,
            "rollout": rollout,
            "scale_probs": np.stack([softmax_np(lg[0]) for lg in out["logits"]]),
            "params": {"alphas": list(alphas[: S - 1]), "num_scales": S, "connectivity": 8},
        }
        if props:
            fields.update(
                crop_boxes=np.array(crop_boxes, dtype=np.int64),
                crops=tuple(self.preprocess.denormalize(inp[0]) for inp in out["inputs"][1:]),
                dppm_maps=np.stack([to_numpy(pr["g"][0]) for pr in props]),
                dppm_masks=np.stack([pr["mask"][0].cpu().numpy() for pr in props]),
                dppm_boxes=np.stack([pr["boxes"][0].cpu().numpy().astype(np.int64) for pr in props]),
                extras={"dppm_components": np.stack([pr["component"][0].cpu().numpy() for pr in props])},
            )
        if keep_attention:
            fields.update(out["records"][0].qk_fields())
        return fields
