"""The Layers and heads tab: attention derived from a ViT explanation's stored queries and keys, without a model.

`AttentionAnalysis` softmaxes the stored (float16) q kᵀ with `fgviz.core.attention.softmax_row_blocks`, fuses heads
with `fuse_heads` and rolls out with `rollout_from_fused`: the functions the models call. Each result is computed
once per explanation and cached, so a layer slider only indexes arrays that already exist; the head-mean rollout is
the model's own (`Explanation.rollout`, full precision).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from fgviz.core.attention import (
    HEAD_FUSIONS,
    attention_distance,
    attention_entropy,
    fuse_heads,
    rollout_from_fused,
    softmax_row_blocks,
    token_distances,
)
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_map_to_pixels
from fgviz.viz import figures, overlay
from fgviz.viz.overlay import OKABE_ITO
from fgviz.viz.panels import Style, heat, relative

BLOCK_ROWS = 256  # query rows per block for the full sweep (one pass over L*H*N*N entries)


class AttentionAnalysis:
    """Attention derived from an explanation's stored queries and keys; each result is computed once and cached.

    Results: per-layer rollout for any head fusion and discard ratio; per-layer, per-head log-normalisers (so any
    column of the attention is cheap afterwards); entropy and mean attention distance per layer and head; rows and
    columns of any token.
    """

    def __init__(self, expl: Explanation, block_rows: int = BLOCK_ROWS) -> None:
        if expl.attn_q is None or expl.attn_k is None or expl.grid is None:
            raise ValueError(f"{expl.method} stores no attention (needs attn_q/attn_k); run explain with "
                             "keep_attention=True")
        self.expl = expl
        self.block_rows = block_rows
        # Stored as in the explanation (float16: 23 MB each at paper size); upcast per layer or slice when used.
        self.q = torch.from_numpy(np.ascontiguousarray(expl.attn_q))  # (L, H, N, d)
        self.k = torch.from_numpy(np.ascontiguousarray(expl.attn_k))  # (L, H, N, d)
        self.L, self.H, self.N, _ = self.q.shape
        self.p = expl.num_prefix_tokens
        self._rollouts: dict[tuple[str, float], np.ndarray] = {}
        self._lse: torch.Tensor | None = None  # (L, H, N)
        self._stats: tuple[np.ndarray, np.ndarray] | None = None
        self._rows: dict[int, np.ndarray] = {}  # token -> (L, H, N), the last few clicked patches
        self._cols: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def grid(self) -> tuple[int, int]:
        return self.expl.grid

    @property
    def has_stats(self) -> bool:
        """Whether the full sweep (entropy, distance, column normalisers) has been computed."""
        return self._lse is not None

    @property
    def expensive(self) -> bool:
        """A full sweep over every attention entry takes seconds (paper-size ViTs: L*H*N*N ~ 2.5e8)."""
        return self.L * self.H * self.N * self.N > 2e7

    def _pass(self, fusion: str | None) -> list[torch.Tensor] | None:
        """One blocked sweep over every layer: log-normalisers, entropy and distance (the first time), and the fused
        (N, N) matrices of `fusion` when asked."""
        need_stats = self._lse is None
        if fusion is None and not need_stats:
            return None
        dist = token_distances(self.grid, self.expl.patch_size, self.expl.stride)  # (Np, Np) pixels
        lse = torch.empty(self.L, self.H, self.N)
        ent = torch.zeros(self.L, self.H)
        mdist = torch.zeros(self.L, self.H)
        fused = []
        for layer in range(self.L):
            out = torch.empty(self.N, self.N) if fusion is not None else None
            for s, logits, a in softmax_row_blocks(self.q[layer][None], self.k[layer][None], self.block_rows):
                logits, a = logits[0], a[0]  # (H, b, N) each
                b = a.shape[1]
                if out is not None:
                    out[s : s + b] = fuse_heads(a[None], fusion)[0]  # (b, N)
                if need_stats:
                    lse[layer, :, s : s + b] = torch.logsumexp(logits, dim=-1)  # (H, b)
                    ent[layer] += attention_entropy(a).sum(-1)  # (H,): summed over these query rows
                    rows = torch.arange(s, s + b)
                    patch_rows = rows >= self.p
                    if patch_rows.any():
                        pa = a[:, patch_rows, self.p :]  # (H, b', Np): patch queries over patch keys
                        mdist[layer] += attention_distance(pa, dist[rows[patch_rows] - self.p]).sum(-1)  # (H,)
            if out is not None:
                fused.append(out[None])  # (1, N, N)
        if need_stats:
            self._lse = lse
            self._stats = ((ent / self.N).numpy(), (mdist / (self.N - self.p)).numpy())
        return fused if fusion is not None else None

    def rollout(self, fusion: str = "mean", discard: float = 0.0) -> np.ndarray:
        """(L, gh, gw) rollout of the first prefix token through layers 1..l, for every l."""
        if fusion not in HEAD_FUSIONS:
            raise ValueError(f"head fusion must be one of {HEAD_FUSIONS}, got {fusion!r}")
        key = (fusion, round(float(discard), 4))
        with self._lock:
            if key not in self._rollouts:
                if key == ("mean", 0.0) and self.expl.rollout is not None and len(self.expl.rollout) == self.L:
                    self._rollouts[key] = self.expl.rollout  # what the model computed, in full precision
                else:
                    fused = self._pass(fusion)
                    r = rollout_from_fused(fused, discard_ratio=key[1], num_prefix_tokens=self.p)[0]  # (L, Np)
                    self._rollouts[key] = r.numpy().reshape(self.L, *self.grid).astype(np.float32)
            return self._rollouts[key]

    def _ensure_lse(self) -> torch.Tensor:
        with self._lock:
            if self._lse is None:
                self._pass(None)
            return self._lse

    @staticmethod
    def _remember(store: dict[int, np.ndarray], token: int, value: np.ndarray, keep: int = 8) -> np.ndarray:
        store[token] = value
        while len(store) > keep:
            store.pop(next(iter(store)))
        return value

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(entropy, mean distance), each (L, H): `attention_entropy` (nats) of every query row over all keys,
        averaged over the N queries; `attention_distance` (pixels between footprint centres) of each patch query
        over the patch keys, averaged over the patch queries (`fgviz.core.attention`)."""
        self._ensure_lse()
        return self._stats

    def rows(self, token: int) -> np.ndarray:
        """(L, H, N) attention of query `token` over all keys, every layer and head (rows sum to 1)."""
        if token in self._rows:
            return self._rows[token]
        q = self.q[:, :, token : token + 1]  # (L, H, 1, d): the layers as a batch
        _, _, a = next(softmax_row_blocks(q, self.k, 1))  # (L, H, 1, N)
        return self._remember(self._rows, token, a[:, :, 0].numpy())

    def columns(self, token: int) -> np.ndarray:
        """(L, H, N) attention that each query pays to key `token`, every layer and head."""
        if token in self._cols:
            return self._cols[token]
        lse = self._ensure_lse()  # (L, H, N)
        k = self.k[:, :, token : token + 1].float()  # (L, H, 1, d)
        cols = torch.exp((self.q.float() @ k.transpose(-2, -1))[..., 0] - lse).numpy()  # (L, H, N)
        return self._remember(self._cols, token, cols)

    def query_grid(self, token: int = 0) -> np.ndarray:
        """(L, H, gh, gw): raw attention of query `token` (0 = the CLS token) over the patches."""
        return self.rows(token)[:, :, self.p :].reshape(self.L, self.H, *self.grid)


def fuse(a: np.ndarray, heads: str) -> np.ndarray:
    """Reduce the head axis (axis 1 of (L, H, ...)) with `fgviz.core.attention.fuse_heads`: "mean", "max", "min"
    or "h<k>" for one head (1-based)."""
    return fuse_heads(torch.from_numpy(np.ascontiguousarray(a)), heads).numpy()


@dataclass
class LayerView:
    """What the layer slider re-renders."""

    rollout: np.ndarray  # RGB overlay of the rollout at the layer, the clicked patch boxed
    rollout_fig: go.Figure  # token-resolution heatmap of the same
    attends_to: np.ndarray | None  # RGB overlay: the clicked patch's attention row at the layer
    attended_by: np.ndarray | None  # RGB overlay: attention paid to the clicked patch at the layer
    patch_fig: go.Figure | None  # both as heatmaps
    caption: str
    scale: int = 1
    numbers: dict[str, Any] = field(default_factory=dict)


def _layer_maps(maps: np.ndarray, style: Style, li: int) -> tuple[np.ndarray, float]:
    """The relative (x uniform) map of layer `li` and the colour maximum: over all layers when shared."""
    rel = np.stack([relative(m) for m in maps])  # (L, gh, gw)
    return rel[li], float(rel.max() if style.shared else rel[li].max())


def layer_view(an: AttentionAnalysis, layer: int, style: Style, *, fusion: str = "mean", discard: float = 0.0,
               token: int | None = None, heads: str = "mean") -> LayerView:
    """Rollout at `layer` (1-based) and, when a patch `token` is clicked, what it attends to / what attends to it.

    `heads` reduces the clicked patch's per-head attention: "mean", "max", "min" or "h3" (one head).
    """
    e = an.expl
    L = an.L
    li = int(np.clip(layer, 1, L)) - 1
    rel, hi = _layer_maps(an.rollout(fusion, discard), style, li)
    d = heat(e.image, token_map_to_pixels(rel, e.patch_size, e.stride, e.size), style, 0.0, hi)
    if token is not None:
        d.rgb = overlay.draw_boxes(d.rgb, [e.token_box(token)], labels=["*"], colors=[OKABE_ITO["vermillion"]],
                                   min_size=0, image_scale=d.factor)
    cap = f"rollout through layers 1..{li + 1} of {L} (fusion {fusion}, discard {discard:g}; x uniform)"
    fig = figures.token_heatmaps([(rel, f"rollout through layers 1..{li + 1}", 0.0, hi)], style.cmap, "x uniform")
    numbers: dict[str, Any] = {"layer": li + 1, "fusion": fusion, "discard": float(discard)}
    if token is None:
        return LayerView(d.finish(style), fig, None, None, None, cap, d.factor, numbers)

    r, c = e.token_rc(token)
    full_rows = an.rows(token)  # (L, H, N), cached per token
    rows = fuse(full_rows[:, :, an.p :], heads).reshape(L, *an.grid)  # (L, gh, gw)
    cols = fuse(an.columns(token)[:, :, an.p :], heads).reshape(L, *an.grid)
    panels, hm = [], []
    for name, maps in ((f"({r}, {c}) attends to", rows), (f"attends to ({r}, {c})", cols)):  # short: a phone
        m, top = _layer_maps(maps, style, li)
        p = heat(e.image, token_map_to_pixels(m, e.patch_size, e.stride, e.size), style, 0.0, top)
        p.rgb = overlay.draw_boxes(p.rgb, [e.token_box(token)], labels=[""], colors=[OKABE_ITO["vermillion"]],
                                   min_size=0, image_scale=p.factor)
        panels.append(p.finish(style))
        hm.append((m, name, 0.0, top))
    pf = figures.token_heatmaps(hm, style.cmap, "x uniform", height=340)
    numbers.update(patch=[r, c], token=int(token), heads=heads,
                   attends_to_cls=float(fuse(full_rows[:, :, : an.p].sum(-1, keepdims=True), heads)[li, 0]))
    cap += f"; patch at row {r}, column {c}, layer {li + 1}, heads: {heads}"
    return LayerView(d.finish(style), fig, panels[0], panels[1], pf, cap, d.factor, numbers)


def head_grid(an: AttentionAnalysis, style: Style, token: int | None = None) -> go.Figure:
    """Layer x head grid of raw attention of the CLS token (or of a clicked patch) over the patches."""
    q = 0 if token is None else int(token)
    who = "CLS" if token is None else "the patch at row {}, column {}".format(*an.expl.token_rc(token))
    fig = figures.attention_grid(an.query_grid(q), cmap=style.cmap, norm="shared" if style.shared else "each",
                                 tile=64, title=f"raw attention of {who}, layers x heads")
    fig.update_layout(height=max(320, 76 * an.L + 100))
    return fig


def stats_figure(an: AttentionAnalysis, compute: bool = True) -> go.Figure:
    """Entropy and mean attention distance per layer and head; with `compute=False` and no statistics yet, an empty
    figure that says they come with the next press of the button (one sweep over all L*H*N*N attention entries)."""
    if not compute and not an.has_stats:
        fig = go.Figure()
        fig.update_layout(height=120, xaxis={"visible": False}, yaxis={"visible": False},
                          annotations=[{"text": f"{an.L} layers x {an.H} heads x {an.N}^2 tokens: press 'Compute "
                                                "entropy and distance' (a few seconds)", "showarrow": False,
                                        "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}])
        return fig
    ent, dist = an.stats()
    fig = figures.layer_stats(ent, dist)  # the panel's label names it; a long title was cut on a phone
    fig.update_layout(height=560, margin={"t": 40})
    return fig
