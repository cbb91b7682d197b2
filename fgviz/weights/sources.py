"""Checkpoints held once, however many methods wrap them.

The baseline, TransFG and RAMS-Trans can all show one ViT checkpoint (and TASN's two networks one ResNet or
ConvNeXt). A loader builds the checkpoint's module once per (source, device, dtype) through `shared`, and every
method's adapter makes its model of that module's tensors (`fgviz.methods.backbones.adapt.share_state`), so the
weights sit in memory once whatever the order of loads. Each model keeps its `Source` (`model.shared_source`); the
registry holds sources weakly, so a checkpoint lives exactly as long as some model made of it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable

from torch import nn


class Source:
    """A loaded checkpoint's module, held by every model made of its tensors."""

    def __init__(self, key: Hashable, module: nn.Module) -> None:
        self.key = key
        self.module = module

    def __repr__(self) -> str:
        return f"Source({self.key!r})"


_SOURCES: weakref.WeakValueDictionary[Hashable, Source] = weakref.WeakValueDictionary()
_LOCKS: dict[Hashable, threading.Lock] = {}
_LOCK = threading.Lock()


def shared(key: Hashable, build: Callable[[], nn.Module]) -> Source:
    """The source of `key`: the one alive, else `build()` once (concurrent callers of one key wait for it)."""
    with _LOCK:
        src = _SOURCES.get(key)
        if src is not None:
            return src
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        src = _SOURCES.get(key)
        if src is None:
            src = Source(key, build())
            _SOURCES[key] = src
    with _LOCK:
        if _LOCKS.get(key) is lock and not lock.locked():
            del _LOCKS[key]
    return src


def resident(key: Hashable) -> bool:
    """Whether the source of `key` is in memory (a model made of it is alive): loading another method of it costs
    no new weights."""
    return _SOURCES.get(key) is not None


def hold(model: nn.Module, source: Source) -> nn.Module:
    """`model` is made of `source`'s tensors: it keeps the source (and so the registry entry) alive."""
    model.__dict__["shared_source"] = source  # a plain attribute, not a submodule: no second copy in state_dict
    return model


def clear() -> None:
    """Forget every source (tests; an operator freeing memory): models alive keep their tensors, the next load of
    a checkpoint reads it again."""
    with _LOCK:
        _SOURCES.clear()
