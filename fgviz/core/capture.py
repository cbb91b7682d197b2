"""Capture what the explanations need of each timm attention block, with one context manager.

Two ways to see a block's post-softmax attention:

- ``mode="attn"`` (the simple way): turn the block's fused scaled-dot-product attention off and hook
  ``attn.attn_drop``, whose input in eval mode is the softmax itself. This costs the eager attention forward
  (1.6x the fused forward at 1370 tokens on a 2-core CPU, measured in the Benchmarks issue).
- ``mode="qk"`` (the fast way, default): keep the fused forward and record each block's queries and keys (hooks
  on ``attn.q_norm``/``attn.k_norm``, which are identities or LayerNorms applied right before attention). The
  attention is ``softmax(q_scaled @ k.T)`` and can be recomputed later in row blocks, only where and when an
  explanation needs it, without ever holding all L x H x N x N probabilities.

Either way every hook is removed and every ``fused_attn`` flag restored on exit, also when the body raises, and
the recorder checks that every block produced the same, non-zero number of records, so a timm change that
bypasses the hooks fails loudly instead of returning nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class AttentionRecord:
    """What a ``record_attention`` context captured: one list of records per block, one record per forward."""

    mode: str
    num_blocks: int
    q: list[list[torch.Tensor]] = field(default_factory=list)  # [block][pass] (B, H, N, d), scaled by 1/sqrt(d)
    k: list[list[torch.Tensor]] = field(default_factory=list)  # [block][pass] (B, H, N, d)
    attn: list[list[torch.Tensor]] = field(default_factory=list)  # [block][pass] reduce((B, H, N, N)), mode "attn"

    @property
    def num_passes(self) -> int:
        lists = self.q if self.mode == "qk" else self.attn
        return len(lists[0]) if lists else 0

    def check(self) -> None:
        """Every block must have been recorded the same, non-zero number of times."""
        lists = [self.q, self.k] if self.mode == "qk" else [self.attn]
        counts = {len(per_block) for recs in lists for per_block in recs}
        if counts == {0} or len(counts) != 1:
            got = [len(per_block) for per_block in lists[0]]
            raise RuntimeError(
                f"attention capture ({self.mode}) recorded {got} passes for the {self.num_blocks} blocks; expected "
                "the "
                "same non-zero count for every block. Did timm's Attention module change?"
            )

    def qk(self, pass_index: int = -1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-block (q, k) of one forward pass, block order."""
        return [q[pass_index] for q in self.q], [k[pass_index] for k in self.k]

    def attentions(self, pass_index: int = -1) -> list[torch.Tensor]:
        """Per-block attention of one pass: the reduced records (mode "attn") or softmax(q k^T) (mode "qk")."""
        if self.mode == "attn":
            return [a[pass_index] for a in self.attn]
        return [
            torch.softmax(q[pass_index] @ k[pass_index].transpose(-2, -1), dim=-1)
            for q, k in zip(self.q, self.k, strict=True)
        ]


def _attention_module(block: nn.Module) -> nn.Module:
    attn = getattr(block, "attn", None)
    if attn is None or not all(hasattr(attn, name) for name in ("q_norm", "k_norm", "attn_drop", "scale")):
        raise TypeError(f"{type(block).__name__} has no timm-style attention module (attn.q_norm/k_norm/attn_drop)")
    return attn


@contextmanager
def record_attention(
    blocks: Sequence[nn.Module],
    *,
    mode: str = "qk",
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach: bool = True,
) -> Iterator[AttentionRecord]:
    """Record every block's attention during the forward passes run inside the ``with`` body.

    Args:
        blocks: timm ViT blocks (each with ``.attn``), in layer order.
        mode: "qk" keeps the fused forward and records scaled queries and keys; "attn" switches to eager attention
            and records ``reduce(softmax)`` from the ``attn_drop`` hook.
        reduce: applied inside the hook in mode "attn" (e.g. a head mean or the CLS row), so memory stays small.
        detach: detach recorded tensors (set False only when gradients must flow through the attention).
    """
    if mode not in ("qk", "attn"):
        raise ValueError(f"mode must be 'qk' or 'attn', got {mode!r}")
    attns = [_attention_module(b) for b in blocks]
    record = AttentionRecord(mode=mode, num_blocks=len(attns))
    handles: list[torch.utils.hooks.RemovableHandle] = []
    saved_flags = [getattr(a, "fused_attn", None) for a in attns]

    def keep(t: torch.Tensor) -> torch.Tensor:
        return t.detach() if detach else t

    try:
        for attn in attns:
            if mode == "qk":
                qs: list[torch.Tensor] = []
                ks: list[torch.Tensor] = []
                record.q.append(qs)
                record.k.append(ks)
                scale = float(attn.scale)
                # q_norm/k_norm see (B, H, N, d) right before the attention product.
                handles.append(
                    attn.q_norm.register_forward_hook(lambda m, i, o, qs=qs, s=scale: qs.append(keep(o) * s))
                )
                handles.append(attn.k_norm.register_forward_hook(lambda m, i, o, ks=ks: ks.append(keep(o))))
            else:
                recs: list[torch.Tensor] = []
                record.attn.append(recs)
                attn.fused_attn = False
                fn = reduce or (lambda a: a)
                # attn_drop's input is the post-softmax attention (B, H, N, N), before dropout.
                handles.append(
                    attn.attn_drop.register_forward_hook(
                        lambda m, i, o, recs=recs, fn=fn: recs.append(fn(keep(i[0])))
                    )
                )
        yield record
        record.check()
    finally:
        for h in handles:
            h.remove()
        for attn, flag in zip(attns, saved_flags, strict=True):
            if flag is not None:
                attn.fused_attn = flag
