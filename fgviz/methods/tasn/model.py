"""TASN: "Looking for the Devil in the Details: Learning Trilinear Attention Sampling Network for Fine-grained
Image Recognition" (Zheng et al., CVPR 2019). Paper: https://arxiv.org/abs/1903.06150 ·
official code (MXNet): https://github.com/researchmm/tasn (example/tasn/model.py, att_sampler-inl.h).

Pipeline (shapes at the paper size): x (B, 3, 512, 512) -> attention net on x resized to 224 (ResNet-18 with
strides 1, 1, 2, 1 for stages 1-4 -> (B, 512, 28, 28), then the multi-dilation head) -> X; trilinear attention
T = N(N(X) X^T) X (gradient stopped) -> structure map (channel sum, resized to 512, squared) and detail map (one
random channel in training, channel sum at test) -> the attention sampler makes a structure-preserved and a
detail-preserved 224-px image -> one ResNet-50 on both -> fc1 (detail), fc2 (structure), shared fc on both.
Prediction = shared fc on the structure-preserved image ("master_net_aux").

Deviations from the MXNet code, all documented (README, "Deviations"):
- torchvision-style (post-activation) timm ResNets instead of MXNet's pre-activation ResNets (not in timm);
  widths and depths are config fields so the demo models can be small.
- The structure op's "unique energy" channel filter is applied to the channels it means (the MXNet op applies
  flags computed in sorted order to the channels in their own order) and counts maps equal within float rounding
  as one (the op compares energies exactly; `fgviz.core.sampling.unique_energy_mask`); `sampler_variant="mxnet"`
  uses the op as written. The training detail channel is drawn among the unique channels, as the official op
  does.
- The sampler follows the op's clipping; its inverse CDF counts every pixel and spans the first to the last pixel
  centre (`sampler_variant="mxnet"`: the op's grid exactly, see fgviz.core.sampling).
- Input normalisation is ImageNet mean/std (MXNet: mean subtraction in 0-255 units, no std).
- Extension: a ConvNeXt trunk (`trunk="convnext"`, for backbone mode on fine-grained ConvNeXt checkpoints such as
  timm's iNaturalist 2021 ones). The attention net is the ConvNeXt at output stride 16 (its last stage dilated, as
  timm's `output_stride` does: the same filters, dilated, on a finer grid, 28x28 at 448 px);
  its features end in a residual sum rather than a ReLU, so the trilinear attention takes their positive part; the
  attention net's logits are the ConvNeXt's own head on its features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from fgviz.core.sampling import (
    SAMPLER_VARIANTS,
    attention_sample,
    random_unique_channel,
    structure_detail,
    structure_detail_maps,
    trilinear_attention,
)
from fgviz.methods.base import FineGrainedModel, ModelConfig, check_int, softmax_np, to_numpy

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
TRUNKS = ("resnet", "convnext")
# ConvNeXt arguments a config may carry (timm's ConvNeXt; what `fgviz.methods.tasn.weights.convnext_args` reads)
CONVNEXT_ARGS = {"depths", "dims", "kernel_sizes", "ls_init_value", "head_hidden_size", "head_norm_first",
                 "conv_mlp", "conv_bias", "use_grn", "norm_eps"}


@dataclass
class TASNConfig(ModelConfig):
    img_size: tuple[int, int] = (512, 512)
    att_size: int = 224  # attention-net input side
    out_size: int = 224  # side of the resampled images (336 for the 88.0 % model)
    att_block: str = "basic"  # ResNet-18 in the paper; "bottleneck" lets backbone mode share a ResNet-50
    att_layers: tuple[int, ...] = (2, 2, 2, 2)  # ResNet-18
    att_channels: tuple[int, ...] = (64, 128, 256, 512)
    att_head: str = "multi_dilation"  # "identity": no head (backbone mode on ImageNet features)
    backbone_block: str = "bottleneck"
    backbone_layers: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50
    backbone_channels: tuple[int, ...] = (64, 128, 256, 512)
    gamma: float = 7.0  # trilinear softmax scale (MXNet 7, PyTorch port 2)
    dense: float = 4.0  # sampler density cap, x uniform
    iters: int = 5  # sampler clip-and-redistribute iterations
    sampler_variant: str = "tasn"  # "tasn" (official clipping, fixed CDF) or "mxnet" (the op's grid and filter)
    trunk: str = "resnet"  # both networks: "resnet" (the att_*/backbone_* fields) or "convnext" (`convnext`)
    convnext: dict[str, Any] = field(default_factory=dict)  # timm ConvNeXt arguments (CONVNEXT_ARGS) for "convnext"

    def validate(self) -> None:
        super().validate()
        check_int("att_size", self.att_size, 16, 1024)
        check_int("out_size", self.out_size, 8, 1024)
        check_int("iters", self.iters, 0, 50)
        self.att_layers, self.backbone_layers = tuple(self.att_layers), tuple(self.backbone_layers)
        self.att_channels, self.backbone_channels = tuple(self.att_channels), tuple(self.backbone_channels)
        for name in ("att_layers", "backbone_layers", "att_channels", "backbone_channels"):
            values = getattr(self, name)
            if len(values) != 4:
                raise ValueError(f"{name} needs 4 stages, got {values}")
            for v in values:
                check_int(name, v, 1, 64 if "layers" in name else 2048)
        for name in ("att_block", "backbone_block"):
            if getattr(self, name) not in BLOCKS:
                raise ValueError(f"{name} must be one of {sorted(BLOCKS)}, got {getattr(self, name)!r}")
        if self.att_head not in ("multi_dilation", "identity"):
            raise ValueError(f"att_head must be 'multi_dilation' or 'identity', got {self.att_head!r}")
        if self.sampler_variant not in SAMPLER_VARIANTS:
            raise ValueError(f"sampler_variant must be one of {SAMPLER_VARIANTS}, got {self.sampler_variant!r}")
        if not 1.0 <= self.dense <= 64.0:
            raise ValueError(f"dense={self.dense} outside [1, 64]")
        if not 0.0 < self.gamma <= 1000.0:
            raise ValueError(f"gamma={self.gamma} outside (0, 1000]")
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
        if self.trunk == "convnext":
            check_convnext(self.convnext)


def tasn_maps(X: torch.Tensor, size: tuple[int, int], *, detail_channel: int | str | torch.Tensor | None,
              gamma: float, variant: str) -> dict[str, torch.Tensor]:
    """Feature maps X -> trilinear maps -> structure and detail maps, at the feature and at the image resolution.

    What `TASN` computes between its attention net and its sampler; the Internals previews call it too.

    Args:
        X: (B, C, h, w) attention-net features.
        size: (H, W) of the image the sampler resamples.
        detail_channel: None (test mode: every channel), a channel (int or (B,) tensor), or "random" (training:
            one unique-energy channel per image).
        gamma: trilinear softmax scale.
        variant: structure filter, "tasn" or "mxnet" (`fgviz.core.sampling.unique_energy_mask`).
    """
    T = trilinear_attention(X.float(), gamma=gamma)  # (B, C, h, w), no gradient
    if isinstance(detail_channel, str):
        if detail_channel != "random":
            raise ValueError(f"detail_channel must be None, an int or 'random', got {detail_channel!r}")
        detail_channel = random_unique_channel(T)  # (B,)
    structure_full, detail_full = structure_detail_maps(T, detail_channel=detail_channel, size=size, variant=variant)
    structure, detail = structure_detail(T, detail_channel=detail_channel, variant=variant)  # (B, h, w) each
    return {
        "trilinear": T,
        "structure": structure,  # (B, h, w): before the resize and the squaring, for display
        "detail": detail,  # (B, h, w)
        "structure_full": structure_full,  # (B, H, W): resized to the image, then squared (MXNet's order)
        "detail_full": detail_full,  # (B, H, W)
    }


def sample_both(x: torch.Tensor, maps: dict[str, torch.Tensor], out_size: int, *, dense: float, iters: int,
                variant: str) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """The structure- and detail-preserved images of `x` (B, 3, H, W) and their sampling coordinates."""
    sampled, coords = {}, {}
    with torch.no_grad():
        for kind in ("structure", "detail"):
            sampled[kind], coords[kind] = attention_sample(x, maps[f"{kind}_full"], out_size, dense=dense,
                                                           iters=iters, variant=variant)
    return sampled, coords


class MultiDilation(nn.Module):
    """TASN's attention head: two 3x3 convs, each applied at several dilations with shared weights, ReLU, summed.

    a1 = ReLU(W1 *_1 F) + ReLU(W1 *_2 F);  a2 = ReLU(W2 *_1 a1) + ReLU(W2 *_2 a1) + ReLU(W2 *_3 a1)
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    @staticmethod
    def _dilated(conv: nn.Conv2d, x: torch.Tensor, dilations: tuple[int, ...]) -> torch.Tensor:
        return sum(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d)) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1 = self._dilated(self.conv1, x, (1, 2))  # (B, C, h, w)
        return self._dilated(self.conv2, a1, (1, 2, 3))  # (B, C, h, w)


def attention_resnet(layers: tuple[int, ...], channels: tuple[int, ...], block: str = "basic") -> ResNet:
    """ResNet with stage strides 1, 1, 2, 1: output stride 8 (224 -> 28), as TASN's attention net."""
    net = ResNet(BLOCKS[block], layers, channels=channels, num_classes=0, global_pool="")
    for stage in (net.layer2, net.layer4):
        first = stage[0]
        (first.conv2 if block == "bottleneck" else first.conv1).stride = (1, 1)  # where each block strides
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    return net


def check_convnext(args: dict[str, Any]) -> None:
    """Bounds of a ConvNeXt config (checked before anything is allocated)."""
    unknown = sorted(set(args) - CONVNEXT_ARGS)
    if unknown:
        raise ValueError(f"unknown ConvNeXt arguments {unknown}; known: {sorted(CONVNEXT_ARGS)}")
    depths, dims = list(args.get("depths", ())), list(args.get("dims", ()))
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(f"a ConvNeXt needs 4 depths and 4 dims, got {depths}, {dims}")
    for d in depths:
        check_int("depths", d, 1, 64)
    for d in dims:
        check_int("dims", d, 1, 4096)
    kernels = args.get("kernel_sizes", 7)
    for k in kernels if isinstance(kernels, (list, tuple)) else [kernels]:
        check_int("kernel_sizes", k, 1, 31)
    if args.get("head_hidden_size") is not None:
        check_int("head_hidden_size", args["head_hidden_size"], 1, 4096)


def convnext_trunk(args: dict[str, Any], output_stride: int = 32) -> ConvNeXt:
    """A timm ConvNeXt without a classifier (its head keeps the pooling, norm and MLP: pre-logit features)."""
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return ConvNeXt(num_classes=0, output_stride=output_stride, **kw)


class TASN(FineGrainedModel):
    method = "tasn"
    config_class = TASNConfig

    def __init__(self, config: TASNConfig, pretrained_cfg: Any = None) -> None:
        super().__init__(config, pretrained_cfg)
        c = config
        if c.trunk == "convnext":  # one architecture for both networks; the attention net's last stage dilated
            self.att_net = convnext_trunk(c.convnext, output_stride=16)
            self.backbone = convnext_trunk(c.convnext)
            C, F_dim = self.att_net.num_features, self.backbone.head_hidden_size
        else:
            self.att_net = attention_resnet(c.att_layers, c.att_channels, c.att_block)
            self.backbone = ResNet(
                BLOCKS[c.backbone_block], c.backbone_layers, channels=c.backbone_channels, num_classes=0
            )
            C, F_dim = self.att_net.num_features, self.backbone.num_features
        self.att_head = MultiDilation(C) if c.att_head == "multi_dilation" else nn.Identity()
        self.att_bn = nn.BatchNorm2d(C) if c.trunk == "resnet" else nn.Identity()
        self.att_fc = nn.Linear(F_dim if c.trunk == "convnext" else C, c.num_classes)
        self.fc1 = nn.Linear(F_dim, c.num_classes)  # part net (detail image)
        self.fc2 = nn.Linear(F_dim, c.num_classes)  # master net (structure image)
        self.fc = nn.Linear(F_dim, c.num_classes)  # shared: final prediction on the structure image

    def attention_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, H, W) -> (X (B, C, h, w) feature maps for the trilinear attention, att-net logits (B, classes))."""
        s = self.config.att_size
        small = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=True)  # (B, 3, s, s): BilinearResize2D
        feats = self.att_net.forward_features(small)  # (B, C, h, w): s/8 (ResNet), s/16 (ConvNeXt)
        if self.config.trunk == "convnext":  # features end in a residual sum: their positive part, as after a ReLU
            X = self.att_head(F.relu(feats))  # (B, C, h, w)
            return X, self.att_fc(self.att_net.forward_head(feats, pre_logits=True))  # the ConvNeXt's own head
        X = self.att_head(feats)  # (B, C, h, w)
        logits = self.att_fc(F.relu(self.att_bn(X)).mean(dim=(2, 3)))  # (B, classes)
        return X, logits

    def _forward(self, x: torch.Tensor, *, dense: float | None = None, iters: int | None = None,
                 out_size: int | None = None, detail_channel: int | str | torch.Tensor | None = None,
                 gamma: float | None = None, variant: str | None = None) -> dict[str, Any]:
        c = self.config
        dense, iters, out_size = dense or c.dense, c.iters if iters is None else iters, out_size or c.out_size
        variant = variant or c.sampler_variant
        X, att_logits = self.attention_features(x)
        maps = tasn_maps(X.detach(), x.shape[-2:], detail_channel=detail_channel,
                         gamma=c.gamma if gamma is None else gamma, variant=variant)
        sampled, coords = sample_both(x, maps, out_size, dense=dense, iters=iters, variant=variant)
        feats = self.backbone(torch.cat([sampled["detail"], sampled["structure"]]))  # (2B, F): one backbone
        f_d, f_s = feats.chunk(2)
        return {
            "att": att_logits,
            "part": self.fc1(f_d),
            "master": self.fc2(f_s),
            "part_aux": self.fc(f_d),
            "master_aux": self.fc(f_s),
            "X": X,
            "maps": maps,
            "sampled": sampled,
            "coords": coords,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)["master_aux"]

    def loss(self, x: torch.Tensor, y: torch.Tensor, *, distill_temperature: float = 10.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """att CE + 0.5 x (part, master, part_aux, master_aux CE) + distillation (T = 10, teacher not detached).

        The detail map is one trilinear channel per image, drawn among the channels with a unique energy."""
        out = self._forward(x, detail_channel="random")
        T = distill_temperature
        ce = F.cross_entropy
        kd = -(F.softmax(out["part"] / T, -1) * F.log_softmax(out["master"] / T, -1)).sum(-1).mean()
        loss = ce(out["att"], y) + 0.5 * (
            ce(out["part"], y) + ce(out["master"], y) + ce(out["part_aux"], y) + ce(out["master_aux"], y)
        ) + kd
        return loss, out["master_aux"]

    def _explain(
        self,
        x: torch.Tensor,
        display: np.ndarray,
        *,
        dense: float | None = None,
        iters: int | None = None,
        out_size: int | None = None,
        gamma: float | None = None,
        detail_channel: int | None = None,
        variant: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        if params:
            raise TypeError(f"TASN.explain got unknown parameters {sorted(params)}")
        c = self.config
        if detail_channel is not None:
            check_int("detail_channel", detail_channel, 0, self.att_net.num_features - 1)
        out = self._forward(
            x, dense=dense, iters=iters, out_size=out_size, detail_channel=detail_channel, gamma=gamma,
            variant=variant,
        )
        pre = self.preprocess
        maps = out["maps"]
        return {
            "probs": softmax_np(out["master_aux"][0]),
            "maps": {"structure": to_numpy(maps["structure"][0]), "detail": to_numpy(maps["detail"][0])},
            "sampled": {k: pre.denormalize(v[0]) for k, v in out["sampled"].items()},
            "sample_coords": {k: (to_numpy(r[0]), to_numpy(cc[0])) for k, (r, cc) in out["coords"].items()},
            "trilinear": to_numpy(maps["trilinear"][0], np.float16),
            "features": to_numpy(out["X"][0]),  # float32: previews recompute from it exactly
            "params": {
                "dense": float(dense or c.dense),
                "iters": int(c.iters if iters is None else iters),
                "out_size": int(out_size or c.out_size),
                "gamma": float(c.gamma if gamma is None else gamma),
                "detail_channel": detail_channel,
                "variant": variant or c.sampler_variant,
            },
            "extras": {
                "head_probs": {k: softmax_np(out[k][0]) for k in ("att", "part", "master", "part_aux", "master_aux")},
            },
        }
