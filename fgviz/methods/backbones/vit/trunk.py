"""One pass of a ViT's embeddings and blocks over one input, computed once for every model made of the same tensors.

The baseline, TransFG in backbone mode (its lower blocks) and RAMS-Trans in backbone mode (its first scale) wrapping
one checkpoint run the same embeddings and blocks on the same image. `trunk(vit, x, depth)` returns the hidden states
after each block, each block's queries and keys, and, on demand, each layer's head-mean attention; a model whose ViT
is made of the same tensors gets the memoised pass (extended when it needs more blocks) instead of running it again.

The memo is keyed on the weights and the input, never on a method: a ViT's weights are named by a tag that
`wrap_plain_vit` gives every model wrapping one checkpoint (a model built any other way gets a tag of its own) and by
the version counters of its tensors (an in-place change of a weight is a new key); the input by a digest of its bytes.
Only explanations ask for the memo, and only inference passes use it (no gradients, eval mode).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

from fgviz.core.attention import fused_attention_qk
from fgviz.core.capture import record_attention

TAG = "_trunk_tag"  # attribute of a timm ViT module: which weights it is made of
MAX_PASSES = 2  # passes kept: one image explained by every column, and the next one
MAX_BYTES = 1 << 30  # and at most this much (a ViT-L/14 pass at 336 px takes ~200 MB with its attention)


@dataclass
class TrunkPass:
    """A pass over one input: `hidden[l]` is (B, N, D) after l blocks (0 = the embeddings, after `norm_pre`),
    `qs[l]`/`ks[l]` (B, H, N, d) are block l's queries and keys, `fused` the head-mean attention of the layers that
    asked for it."""

    hidden: list[torch.Tensor]
    qs: list[torch.Tensor] = field(default_factory=list)
    ks: list[torch.Tensor] = field(default_factory=list)
    fused: dict[int, torch.Tensor] = field(default_factory=dict)
    arrays: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # layers -> float16 (q, k)

    @property
    def depth(self) -> int:
        return len(self.qs)

    def fused_upto(self, n: int) -> list[torch.Tensor]:
        """Head-mean attention (B, N, N) of layers 0..n-1, each computed once."""
        for layer in range(n):
            if layer not in self.fused:
                self.fused[layer] = fused_attention_qk(self.qs[layer], self.ks[layer], "mean")
        return [self.fused[layer] for layer in range(n)]

    def qk_fields(self, n: int | None = None) -> dict[str, np.ndarray]:
        """The float16 queries and keys of layers 0..n-1 (default all) of image 0, as explanations store them:
        converted once and shared by every explanation of this pass (a shallower one gets a view)."""
        n = self.depth if n is None else n
        deep = next((a for have, a in sorted(self.arrays.items()) if have >= n), None)
        if deep is None:
            deep = self.arrays[n] = (half_numpy(self.qs[:n]), half_numpy(self.ks[:n]))
        return {"attn_q": deep[0][:n], "attn_k": deep[1][:n]}  # (n, H, N, d) each

    def nbytes(self) -> int:
        tensors = [*self.hidden, *self.qs, *self.ks, *self.fused.values()]
        return sum(t.numel() * t.element_size() for t in tensors) + sum(
            a.nbytes for pair in self.arrays.values() for a in pair)


class _Memo:
    def __init__(self) -> None:
        self.passes: OrderedDict[tuple, TrunkPass] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0  # passes served from the memo (tests and the bench read it)

    def get(self, key: tuple) -> TrunkPass | None:
        with self.lock:
            p = self.passes.get(key)
            if p is not None:
                self.passes.move_to_end(key)
                self.hits += 1
            return p

    def put(self, key: tuple, p: TrunkPass) -> None:
        with self.lock:
            self.passes[key] = p
            self.passes.move_to_end(key)
            while len(self.passes) > MAX_PASSES or (
                len(self.passes) > 1 and sum(q.nbytes() for q in self.passes.values()) > MAX_BYTES
            ):
                self.passes.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.passes.clear()


MEMO = _Memo()


def half_numpy(layers: list[torch.Tensor]) -> np.ndarray:
    """(L, H, N, d) float16 numpy of image 0 of L (B, H, N, d) tensors, converted by torch (numpy's float16 cast is
    several times slower). Explanations share it, as they share every array: nothing writes into one."""
    return torch.stack([t[0] for t in layers]).to(torch.float16).cpu().numpy()  # (L, H, N, d)


def tag_of(vit: VisionTransformer) -> str:
    """The weights tag of `vit`, given on first use to a ViT built on its own."""
    tag = vit.__dict__.get(TAG)
    if tag is None:
        tag = vit.__dict__[TAG] = uuid.uuid4().hex
    return tag


def share_tag(src: torch.nn.Module, dst: VisionTransformer) -> None:
    """`dst` is made of `src`'s tensors: they share a tag (and so their passes)."""
    dst.__dict__[TAG] = src.__dict__.setdefault(TAG, uuid.uuid4().hex)


def embed(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W) -> (B, N, D) tokens entering the first block, as timm's forward_features computes them."""
    return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))


def _key(vit: VisionTransformer, x: torch.Tensor) -> tuple:
    versions = tuple(t._version for t in vit.parameters())
    digest = hashlib.blake2b(x.detach().float().cpu().numpy().tobytes(), digest_size=16).hexdigest()
    stride = tuple(vit.patch_embed.proj.stride)
    return tag_of(vit), versions, stride, digest, tuple(x.shape), str(x.dtype), str(x.device)


def _extend(vit: VisionTransformer, p: TrunkPass, depth: int) -> None:
    """Run blocks p.depth..depth-1 on the last hidden state, recording their q and k."""
    blocks = list(vit.blocks[p.depth : depth])
    with record_attention(blocks, mode="qk") as rec:
        h = p.hidden[-1]
        for blk in blocks:
            h = blk(h)  # (B, N, D)
            p.hidden.append(h)
    qs, ks = rec.qk()
    p.qs.extend(qs)
    p.ks.extend(ks)


def trunk(vit: VisionTransformer, x: torch.Tensor, depth: int | None = None, *, memo: bool = False) -> TrunkPass:
    """The pass of `vit`'s embeddings and first `depth` blocks (default all) over `x` (B, 3, H, W).

    With `memo` (an explanation of an image that other columns explain too) the pass is memoised for inference (see
    the module docstring); forwards over inputs no other model sees (training batches, perturbed images for the
    metrics, a zoomed crop) leave it off. Under autograd or in training mode it is always computed.
    """
    depth = len(vit.blocks) if depth is None else depth
    if not 0 < depth <= len(vit.blocks):
        raise ValueError(f"depth={depth} outside [1, {len(vit.blocks)}]")
    cacheable = memo and not vit.training and not torch.is_grad_enabled()
    key = _key(vit, x) if cacheable else None
    p = MEMO.get(key) if cacheable else None
    if p is None:
        p = TrunkPass(hidden=[embed(vit, x)])
        _extend(vit, p, depth)
        if cacheable:
            MEMO.put(key, p)
    elif p.depth < depth:
        _extend(vit, p, depth)
    return p


def clear_memo() -> None:
    """Forget every memoised pass (an operator freeing memory; tests)."""
    MEMO.clear()
