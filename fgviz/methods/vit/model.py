"""The plain ViT baseline: "what does a vanilla ViT look at?" beside TransFG and RAMS-Trans.

Its explanation is the attention rollout (Abnar & Zuidema 2020) through every layer and the per-layer queries and
keys, from which the Layers and heads tab derives any head's attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgviz.methods.backbones.vit.model import ViTConfig, build_vit, layer_rollout
from fgviz.methods.backbones.vit.trunk import trunk
from fgviz.methods.base import FineGrainedModel, softmax_np


class ViT(FineGrainedModel):
    method = "vit"
    config_class = ViTConfig

    def __init__(self, config: ViTConfig, pretrained_cfg: Any = None) -> None:
        super().__init__(config, pretrained_cfg)
        self.vit = build_vit(config)

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor, *, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.vit(x)
        return F.cross_entropy(logits, y, label_smoothing=smoothing), logits

    def _explain(self, x: torch.Tensor, display: np.ndarray, *, keep_attention: bool = True,
                 **params: Any) -> dict[str, Any]:
        if params:
            raise TypeError(f"ViT.explain got unknown parameters {sorted(params)}")
        vit = self.vit
        p = trunk(vit, x, memo=True)  # timm's fused forward with q and k; shared by models of the same tensors
        logits = vit.forward_head(vit.norm(p.hidden[-1]))  # (1, C)
        P = self.config.patch_size
        return {
            "probs": softmax_np(logits[0]),
            "grid": self.grid,
            "patch_size": P,
            "stride": P,
            "num_prefix_tokens": 1,
            "params": {"head_fusion": "mean", "discard_ratio": 0.0},
            "rollout": layer_rollout(p.fused_upto(p.depth), self.grid, 1),
            **(p.qk_fields() if keep_attention else {}),
        }
