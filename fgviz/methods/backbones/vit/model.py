"""The ViT every fgviz ViT method builds on: its config, `build_vit`, and what their explanations share.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), https://arxiv.org/abs/2010.11929, as timm's
`VisionTransformer`: one CLS token, learned position embeddings, square patches, CLS-token pooling, a linear head.
The baseline (`fgviz.methods.vit`), TransFG and RAMS-Trans build their ViT with `build_vit`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.layers import LayerNorm, QuickGELU
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from fgviz.core.attention import rollout_from_fused
from fgviz.methods.base import MAX_DEPTH, MAX_WIDTH, ModelConfig, check_int, to_numpy

# MLP activations by config name; "gelu" is timm's default (nn.GELU), so default models print as before.
ACT_LAYERS: dict[str, Any] = {
    "gelu": nn.GELU,
    "gelu_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "quick_gelu": QuickGELU,
}


@dataclass
class ViTConfig(ModelConfig):
    """A timm ViT (ViT-B/16 by default) with the official dropout of TransFG's and RAMS-Trans's ViT."""

    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.1  # embeddings and MLP, as the official config
    attn_drop_rate: float = 0.0  # attention probabilities and the attention projection
    # Plain-ViT variants of other checkpoints (timm CLIP towers, transformers ViTs); the defaults are the original ViT.
    pre_norm: bool = False  # a LayerNorm after the embeddings (CLIP); timm then drops the patch conv's bias
    norm_eps: float = 1e-6  # every LayerNorm's eps (CLIP 1e-5, transformers ViT 1e-12)
    act_layer: str = "gelu"  # MLP activation: "gelu" (exact), "gelu_tanh" or "quick_gelu" (OpenAI CLIP)

    def validate(self) -> None:
        super().validate()
        check_int("patch_size", self.patch_size, 1, min(self.img_size))
        check_int("embed_dim", self.embed_dim, 8, MAX_WIDTH)
        check_int("depth", self.depth, 1, MAX_DEPTH)
        check_int("num_heads", self.num_heads, 1, 64)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} not divisible by num_heads={self.num_heads}")
        for name in ("drop_rate", "attn_drop_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} outside [0, 1)")
        if self.act_layer not in ACT_LAYERS:
            raise ValueError(f"act_layer={self.act_layer!r}; known: {sorted(ACT_LAYERS)}")
        if not 0.0 < self.norm_eps <= 1e-2:
            raise ValueError(f"norm_eps={self.norm_eps} outside (0, 0.01]")

    @property
    def stride(self) -> int:
        return self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        P, S = self.patch_size, self.stride
        return (self.img_size[0] - P) // S + 1, (self.img_size[1] - P) // S + 1


def build_vit(c: ViTConfig, **extra: Any) -> VisionTransformer:
    """The timm ViT every ViT method builds on, from its config (pre-norm blocks; by default exact GELU, LayerNorm
    eps 1e-6 and no norm after the embeddings, as the original ViT; CLIP towers set `pre_norm` and eps 1e-5).

    Dropout as the official code (jeonsworld's ViT, shared by TransFG and RAMS-Trans): `drop_rate` on the embeddings
    and in the MLP, `attn_drop_rate` on the attention probabilities *and* after the attention projection (timm's
    Block would use `drop_rate` there too).
    """
    vit = VisionTransformer(
        img_size=c.img_size,
        patch_size=c.patch_size,
        num_classes=c.num_classes,
        embed_dim=c.embed_dim,
        depth=c.depth,
        num_heads=c.num_heads,
        mlp_ratio=c.mlp_ratio,
        qkv_bias=c.qkv_bias,
        class_token=True,
        global_pool="token",
        pos_drop_rate=c.drop_rate,
        proj_drop_rate=c.drop_rate,
        attn_drop_rate=c.attn_drop_rate,
        pre_norm=c.pre_norm,
        norm_layer=functools.partial(LayerNorm, eps=c.norm_eps),
        act_layer=ACT_LAYERS[c.act_layer],
        **extra,
    )
    for blk in vit.blocks:
        blk.attn.proj_drop.p = float(c.attn_drop_rate)
    return vit


def layer_rollout(fused: list[torch.Tensor], grid: tuple[int, int], num_prefix_tokens: int) -> np.ndarray:
    """(L, gh, gw) rollout of the first prefix token through layers 1..l, for every l, from the layers' head-mean
    attention (L x (1, N, N), what the forward's pass computed: `TrunkPass.fused_upto`)."""
    return to_numpy(rollout_from_fused(fused, num_prefix_tokens=num_prefix_tokens)[0]).reshape(-1, *grid)

