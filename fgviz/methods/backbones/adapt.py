"""What every weight adapter shares: key-by-key shape checks, module-architecture checks, and the
`PretrainedCfg` of a timm checkpoint. Adapters (each method's weights.py, each loader's layout adapter) map tensors
by explicit key maps; these helpers make a mismatch an error that names the key or the module."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from fgviz.methods.base import ConversionError, PretrainedCfg

_DROPOUT_RE = re.compile(r"Dropout\(p=[^)]*\)")


def check_shapes(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], what: str) -> None:
    for k, v in state.items():
        if k not in own:
            raise ConversionError(f"{what}: no parameter {k!r} in the target model")
        if v.shape != own[k].shape:
            raise ConversionError(
                f"{what}: shape mismatch for {k}: source {tuple(v.shape)}, model {tuple(own[k].shape)}"
            )


def arch_repr(module: nn.Module) -> str:
    """repr without dropout rates: what must match for two modules to compute the same function in eval mode."""
    return _DROPOUT_RE.sub("Dropout", repr(module))


def same_modules(src: nn.Module, dst: nn.Module, names: tuple[str, ...], what: str) -> None:
    """Raise unless the named submodules print the same (types, widths, eps, activations, strides; not dropout)."""
    for n in names:
        a, b = arch_repr(getattr(src, n)), arch_repr(getattr(dst, n))
        if a != b:
            raise ConversionError(f"{what}: {n} is not a plain timm module the method can wrap:\n"
                                  f"{a[:400]}\nvs\n{b[:400]}")


def pretrained_from_timm(labels: list[str], cfg: dict[str, Any]) -> PretrainedCfg:
    """A `PretrainedCfg` from a timm checkpoint's pretrained_cfg (mean/std, crop_pct, crop mode, interpolation) and
    its class names: the preprocessing timm's eval transform applies to it."""
    interpolation = str(cfg.get("interpolation", "bicubic"))
    return PretrainedCfg(
        labels=tuple(labels),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        crop_pct=min(max(float(cfg.get("crop_pct", 1.0)), 0.1), 1.0),
        crop_mode="squash" if cfg.get("crop_mode") == "squash" else "center",
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bicubic",
    )


def share_state(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Make `module`'s parameters and buffers the very tensors of `state`, without a copy.

    A module built on the meta device becomes a view of a loaded checkpoint, so several methods wrapping one backbone
    hold one copy of its weights. Strict: every key of the module and no other, each with the module's shape.
    """
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConversionError(f"{what}: keys missing from the source {missing[:8]}, unexpected {unexpected[:8]}")
    check_shapes(state, own, what)
    module.load_state_dict(state, strict=True, assign=True)


def check_filled(module: nn.Module, what: str) -> None:
    """Raise if a tensor of `module` was left on the meta device (an adapter forgot to share or fill it)."""
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.device.type == "meta"]
    if left:
        raise ConversionError(f"{what}: tensors left unfilled {left[:8]}")
