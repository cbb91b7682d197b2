"""TASN weights: ImageNet ResNet inits and backbone mode, from plain timm ResNets.

The official recipe starts both networks from MXNet ImageNet ResNets (pre-activation, not in timm): the attention
net from a ResNet-18 with TASN's output-stride-8 strides, the part/master backbone from a ResNet-50; the heads are
new. `init_from_timm` copies a timm ResNet into whichever of the two has its architecture.

Backbone mode wraps one timm ResNet or ConvNeXt as TASN: the backbone (both sampled images) is the pretrained network
and its classifier is the shared ``fc`` (the prediction) and also ``fc1``/``fc2``/``att_fc``; the attention net is
the *same* network with TASN's output stride (a ResNet with strides 1, 1, 2, 1; a ConvNeXt with its last stage
dilated), its multi-dilation head the identity (``att_head="identity"``) and, for a ResNet, the attention BN the
identity. So the trilinear maps come from honest pretrained features rather than from a random, untrained attention
head. Every one of those modules is made of the checkpoint's own tensors: one copy in memory.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import GlobalResponseNormMlp, NormMlpClassifierHead
from timm.models.convnext import ConvNeXt
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from fgviz.methods.backbones.adapt import check_filled, pretrained_from_timm, same_modules, share_state
from fgviz.methods.base import MAX_IMG_SIDE, ConversionError
from fgviz.methods.tasn.model import BLOCKS, TASN, MultiDilation, TASNConfig, convnext_trunk

IMG_RATIO = 512 / 224  # TASN samples 224-px images out of a 512-px input; backbone mode keeps that zoom headroom


def resnet_signature(net: nn.Module, what: str) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(block, layers, channels) of a plain timm ResNet; raises for variants (deep stem, SE, anti-aliasing...)."""
    if not isinstance(net, ResNet):
        raise ConversionError(f"{what}: needs a timm ResNet, got {type(net).__name__}")
    block_type = type(net.layer1[0])
    names = {BasicBlock: "basic", Bottleneck: "bottleneck"}
    if block_type not in names:
        raise ConversionError(f"{what}: ResNet blocks of type {block_type.__name__} are not supported")
    block = names[block_type]
    stages = [getattr(net, f"layer{i}") for i in range(1, 5)]
    layers = tuple(len(s) for s in stages)
    channels = tuple(
        int(s[-1].conv1.out_channels) if block == "basic" else int(s[-1].conv3.out_channels) // 4 for s in stages
    )
    with torch.device("meta"):
        ref = ResNet(BLOCKS[block], layers, channels=channels, num_classes=0)
    same_modules(net, ref, ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4"), what)
    return block, layers, channels


def identity_attention_head(model: TASN) -> None:
    """Make TASN's attention head and attention BN the identity on non-negative features.

    A multi-dilation head becomes the identity with centre taps only: a1 = ReLU(F/2) + ReLU(F/2) = F and
    a2 = 3 ReLU(F/3) = F for F >= 0 (the ResNet's last ReLU), since the centre tap is the same at every dilation.
    """
    head = model.att_head
    with torch.no_grad():
        if isinstance(head, MultiDilation):
            eye = torch.eye(head.conv1.in_channels)
            for conv, dilations in ((head.conv1, 2), (head.conv2, 3)):
                conv.weight.zero_()
                conv.weight[:, :, 1, 1] = eye / dilations
                conv.bias.zero_()
        elif not isinstance(head, nn.Identity):
            raise ConversionError(f"cannot make a {type(head).__name__} attention head the identity")
        bn = model.att_bn
        if isinstance(bn, nn.Identity):  # a ConvNeXt trunk has none
            return
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(1 - eps + eps) = x


def convnext_args(net: nn.Module, what: str) -> dict[str, Any]:
    """`TASNConfig.convnext` of a plain timm ConvNeXt (patch stem, linear classifier); raises for other variants."""
    if not isinstance(net, ConvNeXt):
        raise ConversionError(f"{what}: needs a timm ConvNeXt, got {type(net).__name__}")
    blocks = [stage.blocks[0] for stage in net.stages]
    head = net.head
    if not isinstance(getattr(head, "fc", None), nn.Linear):
        raise ConversionError(f"{what}: needs a linear classifier (head.fc), the checkpoint has none")
    hidden = head.pre_logits.fc.out_features if isinstance(head, NormMlpClassifierHead) and hasattr(
        head.pre_logits, "fc") else None
    args = {
        "depths": [len(stage.blocks) for stage in net.stages],
        "dims": [int(b.conv_dw.in_channels) for b in blocks],
        "kernel_sizes": [int(b.conv_dw.kernel_size[0]) for b in blocks],
        "ls_init_value": 1e-6 if blocks[0].gamma is not None else None,  # its value is the checkpoint's gamma
        "head_hidden_size": hidden,
        "head_norm_first": not isinstance(net.norm_pre, nn.Identity),
        "conv_mlp": isinstance(blocks[0].mlp.fc1, nn.Conv2d),
        "conv_bias": blocks[0].conv_dw.bias is not None,
        "use_grn": isinstance(blocks[0].mlp, GlobalResponseNormMlp),
        "norm_eps": float(net.stem[1].eps),
    }
    with torch.device("meta"):
        ref = convnext_trunk(args)
    same_modules(net, ref, ("stem", "stages", "norm_pre"), what)
    same_modules(net.head, ref.head, ("global_pool", "norm", "pre_logits"), what)
    return args


def from_timm(src: nn.Module, labels: list[str], pretrained_cfg: dict[str, Any]) -> TASN:
    """Backbone mode (module doc), made of `src`'s tensors."""
    side = int(pretrained_cfg.get("input_size", (3, 224, 224))[-2])
    big = min(round(side * IMG_RATIO), MAX_IMG_SIDE)
    sizes = dict(img_size=(big, big), att_size=side, out_size=side, att_head="identity")
    state = src.state_dict()
    if isinstance(src, ConvNeXt):
        what = "timm ConvNeXt as TASN"
        args = convnext_args(src, what)  # raises unless the head ends in a linear classifier
        cfg = TASNConfig(num_classes=int(src.head.fc.out_features), trunk="convnext", convnext=args, **sizes)
        fc_prefix = "head.fc."
    else:
        what = "timm ResNet as TASN"
        block, layers, channels = resnet_signature(src, what)
        if not isinstance(src.fc, nn.Linear):
            raise ConversionError(f"{what}: needs a linear classifier (fc), the checkpoint has none")
        cfg = TASNConfig(num_classes=int(src.fc.out_features), att_block=block, att_layers=layers,
                         att_channels=channels, backbone_block=block, backbone_layers=layers,
                         backbone_channels=channels, **sizes)
        fc_prefix = "fc."
    with torch.device("meta"):
        model = TASN(cfg, pretrained_from_timm(labels, pretrained_cfg))
    trunk = {k: v for k, v in state.items() if not k.startswith(fc_prefix)}
    fc = {k[len(fc_prefix):]: v for k, v in state.items() if k.startswith(fc_prefix)}
    share_state(model.backbone, trunk, what)
    share_state(model.att_net, trunk, what)  # the same tensors at TASN's output stride
    for head in (model.fc, model.fc1, model.fc2, model.att_fc):
        share_state(head, fc, what)
    weight = next(iter(trunk.values()))
    model.att_bn.to_empty(device=weight.device)  # TASN's own (identity) BN: no checkpoint tensor
    identity_attention_head(model)
    check_filled(model, what)
    return model


def init_from_timm(model: TASN, src: nn.Module) -> list[str]:
    """Training init: the backbone and/or the attention net, whichever has the checkpoint's architecture (call twice,
    e.g. resnet50 then resnet18, for the original ResNet-50 + ResNet-18 init). Returns the parameters left."""
    what = "timm ResNet -> TASN"
    sig = resnet_signature(src, what)
    c = model.config
    trunk = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    loaded = []
    with torch.no_grad():
        if sig == (c.backbone_block, c.backbone_layers, c.backbone_channels):
            model.backbone.load_state_dict(trunk, strict=True)
            loaded.append("backbone.")
        if sig == (c.att_block, c.att_layers, c.att_channels):
            model.att_net.load_state_dict(trunk, strict=True)
            loaded.append("att_net.")
    if not loaded:
        raise ConversionError(f"{what}: {sig} matches neither the backbone ({c.backbone_block}, {c.backbone_layers}, "
                              f"{c.backbone_channels}) nor the attention net ({c.att_block}, {c.att_layers}, "
                              f"{c.att_channels})")
    return [k for k in model.state_dict() if not k.startswith(tuple(loaded))]
