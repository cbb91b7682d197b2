"""TransFG: "TransFG: A Transformer Architecture for Fine-grained Recognition" (He et al., AAAI 2022).

Paper: https://arxiv.org/abs/2103.07976 · official code: https://github.com/TACJu/TransFG (models/modeling.py).

A timm ViT whose patch embedding is a single stride-S conv (overlapping patches: 16 px at stride 12 gives a 37x37
grid at 448 px), and whose last block runs only on [CLS + one token per head] chosen by the Part Selection Module
(PSM): per head, the CLS row of the raw product A_{L-1} ... A_1 of the first L-1 layers' attention (no identity, no
renormalisation, no head fusion), argmax, duplicates kept. Loss: cross-entropy + contrastive loss (alpha 0.4, 1/B^2).

How this port relates to the official code (README, "Deviations"):
- The PSM is evaluated as a row vector e0^T A_{L-1} ... A_1 from each block's queries and keys (``psm_select_qk``),
  not as the full per-head N x N x N products; the indices are the same (tests compare with the full product).
- timm's Block shares one ``proj_drop`` rate between the MLP and the attention projection; `build_vit` sets the
  attention projection's dropout to ``attn_drop_rate`` (0), as the official Attention uses its attention dropout
  rate there, so only the embeddings and the MLP drop at ``drop_rate`` (0.1), as in the official code.
- The part layer and the head start from the official init (PyTorch Linear defaults, xavier-uniform MLP weights
  with N(0, 1e-6) biases); the other blocks keep timm's init (the paper recipe overwrites them with ImageNet-21k).
- Attention is captured from q/k beside timm's fused attention, so the forward is the fast fused one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import nn

from fgviz.core.attention import psm_and_fused_qk, psm_select_qk
from fgviz.core.geometry import token_box
from fgviz.methods.backbones.vit.model import ViTConfig, build_vit, layer_rollout
from fgviz.methods.backbones.vit.trunk import trunk
from fgviz.methods.base import FineGrainedModel, check_int, softmax_np, to_numpy


class OverlapPatchEmbed(PatchEmbed):
    """timm PatchEmbed with a conv stride other than the patch size: grid (H - P) // S + 1 per side, no padding."""

    def __init__(self, *args: Any, stride: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        old = self.proj
        self.stride = stride
        self.proj = nn.Conv2d(
            old.in_channels, old.out_channels, kernel_size=self.patch_size, stride=stride, bias=old.bias is not None
        )
        H, W = self.img_size
        P = self.patch_size[0]
        self.grid_size = ((H - P) // stride + 1, (W - P) // stride + 1)  # (gh, gw)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        return self.stride if as_scalar else (self.stride, self.stride)


def grid_size(img_size: tuple[int, int], patch_size: int, stride: int) -> tuple[int, int]:
    """Token grid (gh, gw) of a stride-`stride` conv with kernel `patch_size` and no padding."""
    return ((img_size[0] - patch_size) // stride + 1, (img_size[1] - patch_size) // stride + 1)


@dataclass
class TransFGConfig(ViTConfig):
    """Paper size by default: ViT-B/16 at 448 px, stride 12 -> 37x37 + CLS = 1370 tokens."""

    stride: int = 12

    def validate(self) -> None:
        super().validate()
        check_int("stride", self.stride, 1, self.patch_size)
        check_int("depth", self.depth, 2, 48)  # the PSM needs at least one layer below the part layer


def contrastive_loss(features: torch.Tensor, labels: torch.Tensor, alpha: float = 0.4) -> torch.Tensor:
    """TransFG's contrastive loss on the final CLS features of the (per-process) batch.

    L = (1/B^2) [ sum_{y_i = y_j} (1 - cos_ij) + sum_{y_i != y_j} max(cos_ij - alpha, 0) ], i = j included.
    """
    B = features.shape[0]
    z = F.normalize(features, dim=-1)  # (B, D)
    cos = z @ z.t()  # (B, B)
    same = labels[:, None] == labels[None, :]  # (B, B)
    pos = (1 - cos).masked_fill(~same, 0).sum()
    neg = (cos - alpha).clamp(min=0).masked_fill(same, 0).sum()
    return (pos + neg) / (B * B)


def official_linear_init(block: nn.Module, head: nn.Linear) -> None:
    """TransFG's own init for what its loader never fills from ImageNet-21k: the part layer and the head.

    Official modeling.py: attention q/k/v/out and the head are plain `nn.Linear` (PyTorch's default init; q, k and v
    have the same fan-in as timm's fused qkv, so one reset draws from the same distribution), the MLP is
    xavier-uniform with N(0, 1e-6) biases, LayerNorms are ones/zeros.
    """
    block.attn.qkv.reset_parameters()
    block.attn.proj.reset_parameters()
    for fc in (block.mlp.fc1, block.mlp.fc2):
        nn.init.xavier_uniform_(fc.weight)
        nn.init.normal_(fc.bias, std=1e-6)
    for norm in (block.norm1, block.norm2):
        norm.reset_parameters()
    head.reset_parameters()


class TransFG(FineGrainedModel):
    method = "transfg"
    config_class = TransFGConfig

    def __init__(self, config: TransFGConfig, pretrained_cfg: Any = None) -> None:
        super().__init__(config, pretrained_cfg)
        c = config
        self.vit = build_vit(c, embed_layer=functools.partial(OverlapPatchEmbed, stride=c.stride))
        assert tuple(self.vit.patch_embed.grid_size) == c.grid
        official_linear_init(self.vit.blocks[-1], self.vit.head)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1] + 1

    def _forward(self, x: torch.Tensor, *, with_fused: bool = False, memo: bool = False) -> dict[str, Any]:
        """PSM forward. Returns logits, final CLS features, PSM indices/rows and the lower layers' q and k.

        With `with_fused`, also each lower layer's head-mean attention (B, N, N), computed in the same top-down pass
        that evaluates the PSM row so every layer is softmaxed once. `memo`: an explanation's pass, which models made
        of the same tensors share (`fgviz.methods.backbones.vit.trunk`).
        """
        vit = self.vit
        L = len(vit.blocks)
        p = trunk(vit, x, L - 1, memo=memo)  # the lower blocks with their q and k
        h = p.hidden[L - 1]  # (B, N, D): layer-(L-1) outputs, not normed, as in the official code
        qs, ks = p.qs[: L - 1], p.ks[: L - 1]
        fused = None
        with torch.no_grad():
            if with_fused and all(layer in p.fused for layer in range(L - 1)):  # another model's pass fused them
                idx, rows = psm_select_qk(qs, ks)
                fused = p.fused_upto(L - 1)
            elif with_fused:
                idx, rows, fused = psm_and_fused_qk(qs, ks, head_fusion="mean")
                p.fused.update(enumerate(fused))
            else:
                idx, rows = psm_select_qk(qs, ks)  # (B, K=H) indices into the sequence (>= 1), (B, H, N-1)
        parts = torch.gather(h, 1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))  # (B, K, D)
        z = vit.blocks[-1](torch.cat([h[:, :1], parts], dim=1))  # (B, 1 + K, D): the part layer sees 1 + K tokens
        cls = vit.norm(z)[:, 0]  # (B, D)
        logits = vit.head(vit.head_drop(cls))  # (B, C)
        return {"logits": logits, "features": cls, "part_tokens": idx, "psm_rows": rows, "q": qs, "k": ks,
                "fused": fused, "pass": p}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)["logits"]

    def loss(self, x: torch.Tensor, y: torch.Tensor, *, contrastive_alpha: float = 0.4,
             smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (label smoothing off by default, as the official flag) + contrastive loss (alpha 0.4)."""
        out = self._forward(x)
        logits = out["logits"]
        ce = F.cross_entropy(logits, y, label_smoothing=smoothing)
        return ce + contrastive_loss(out["features"], y, contrastive_alpha), logits

    def _explain(
        self, x: torch.Tensor, display: np.ndarray, *, keep_attention: bool = True, **params: Any
    ) -> dict[str, Any]:
        if params:
            raise TypeError(f"TransFG.explain got unknown parameters {sorted(params)}")
        out = self._forward(x, with_fused=True, memo=True)
        gh, gw = self.grid
        P, S = self.config.patch_size, self.config.stride
        tokens = out["part_tokens"][0].cpu().numpy().astype(np.int64)  # (K,)
        size = display.shape[:2]
        boxes = np.array([token_box(int(t) - 1, (gh, gw), P, S, size) for t in tokens], dtype=np.int64)  # (K, 4)
        extras = {}
        if self.weights_kind == "backbone":  # its last block was trained on every token, not on [CLS + PSM tokens]
            full = trunk(self.vit, x, memo=True)  # one more block over the lower pass (or the pass another model ran)
            extras["backbone_probs"] = softmax_np(self.vit.forward_head(self.vit.norm(full.hidden[-1]))[0])
        return {
            "probs": softmax_np(out["logits"][0]),
            "grid": (gh, gw),
            "patch_size": P,
            "stride": S,
            "num_prefix_tokens": 1,
            "part_tokens": tokens,
            "part_boxes": boxes,
            "psm_rows": to_numpy(out["psm_rows"][0]).reshape(-1, gh, gw),
            "params": {"psm_layers": len(out["q"]), "head_fusion": "mean", "discard_ratio": 0.0},
            "rollout": layer_rollout(out["fused"], (gh, gw), 1),
            "extras": extras,
            **(out["pass"].qk_fields(len(out["q"])) if keep_attention else {}),
        }
