"""Every view the explorer shows, computed from a cached `Explanation`; nothing here runs a model.

The app (and the exporter and the CLI) call these functions with an `Explanation` and a `Style`; they return RGB
uint8 panels, plotly figures and JSON-able numbers. Three groups:

- `overview`: each method's prediction and signature view (TransFG rollout + PSM boxes, RAMS-Trans map, DPPM
  mask, zoom box and crops, TASN structure/detail maps, sampling grids and resampled images);
- `AttentionAnalysis` + `layer_view` / `head_grid` / `stats_figure`: per-layer rollout with any head fusion and
  discard ratio, raw attention per layer and head, the rows and columns of a clicked patch, entropy and mean
  attention distance. They are derived from the explanation's stored queries and keys (`attn_q`, `attn_k`) with
  the functions of `fgviz.attention`, computed lazily and cached per explanation, so a layer slider only indexes
  arrays that already exist;
- `transfg_steps`, `rams_steps`, `tasn_steps`: each method step by step, where the method's parameters (RAMS-Trans
  alpha; TASN gamma, dense, iters, out size, detail channel) can be changed and previewed from the stored maps and
  features; only the prediction for new parameters needs the model again (the app's "re-run" button).

Normalisation: with `Style.norm == "shared"` (the default) every group of panels that shows one quantity uses one
colour scale (all layers of a rollout, all tiles of a grid, the three methods of the overview, where each map is
first expressed relative to its own mean, i.e. "x times uniform"); with "panel" each panel is stretched to its
own range.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from fgviz.attention import (
    HEAD_FUSIONS,
    dppm_mask,
    fuse_heads,
    largest_component_box,
    rollout_from_fused,
)
from fgviz.explanation import Explanation
from fgviz.models.rams_trans import grid_box_to_pixels
from fgviz.sampling import attention_sample, trilinear_attention
from fgviz.viz import figures, overlay, stats
from fgviz.viz.overlay import BOX_COLORS, OKABE_ITO, SAFE_COLORMAPS

METHOD_TITLES = {"transfg": "TransFG", "rams_trans": "RAMS-Trans", "tasn": "TASN"}
NORMS = ("shared", "panel")
NOTES_PATH = Path(__file__).resolve().parent.parent / "assets" / "notes.md"
MIN_SIZE = 384  # panels are upscaled (nearest) so the longer side is at least this

Panel = tuple[np.ndarray, str]  # (RGB uint8, caption)


@dataclass(frozen=True)
class Style:
    """How maps are drawn: colormap, heat opacity, normalisation and the minimum panel size."""

    cmap: str = SAFE_COLORMAPS[0]
    alpha: float = 0.5
    norm: str = "shared"  # "shared" | "panel"
    min_size: int = MIN_SIZE

    def __post_init__(self) -> None:
        if self.cmap not in overlay.COLORMAPS:
            raise ValueError(f"unknown colormap {self.cmap!r}; available: {overlay.COLORMAPS}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def shared(self) -> bool:
        return self.norm == "shared"


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers


def to_pixels(expl: Explanation, values: np.ndarray, uncovered: float = np.nan) -> np.ndarray:
    """A token-grid map (on its true footprints) or a CNN/pixel map (bilinear) as (H, W) float32 over `expl.image`.

    Pixels that no token covers (e.g. the last 4 px of a 96-px image cut into 8-px patches at stride 6) get
    `uncovered`: NaN by default, which `heat` leaves unshaded and the normalisations ignore.
    """
    v = np.asarray(values, np.float32)
    if expl.grid is not None and v.shape == tuple(expl.grid):
        tables = _footprints(tuple(expl.grid), expl.patch_size, expl.stride, tuple(expl.size))
        px = _spread(v, tables)  # (H, W): mean of the covering tokens, as overlay.token_map_to_pixels
        px[tables[-1]] = uncovered
        return px
    return overlay.upsample_map(v, expl.size)


@cache
def _footprints(grid: tuple[int, int], patch: int, stride: int, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Per-axis gather tables of `overlay.token_map_to_pixels` for one geometry, cached (the layer slider draws the
    same geometry every time): for every pixel row (column), the k tokens covering it and their weights 1/count
    (0 for padding), plus the mask of pixels no token covers. Gathers instead of matrix products keep a redraw off
    BLAS, whose thread wake-ups cost tens of ms on a busy 2-core machine."""
    (gh, gw), (H, W) = grid, size
    k = -(-patch // stride)  # at most ceil(patch / stride) tokens cover a pixel along one axis

    def axis(n_tok: int, n_px: int) -> tuple[np.ndarray, np.ndarray]:
        p = np.arange(n_px)[:, None]
        start = np.arange(n_tok)[None, :] * stride
        cov = (p >= start) & (p < start + patch)  # (n_px, n_tok)
        idx = np.zeros((n_px, k), np.int64)
        w = np.zeros((n_px, k), np.float32)
        for y in range(n_px):
            toks = np.flatnonzero(cov[y])[:k]
            idx[y, : len(toks)] = toks
            w[y, : len(toks)] = 1.0 / len(toks) if len(toks) else 0.0
        return idx, w

    iy, wy = axis(gh, H)
    ix, wx = axis(gw, W)
    uncovered = (wy.sum(1) == 0)[:, None] | (wx.sum(1) == 0)[None, :]
    out = (iy, wy, ix, wx, uncovered)
    for a in out:
        a.setflags(write=False)
    return out


def _spread(v: np.ndarray, tables: tuple[np.ndarray, ...]) -> np.ndarray:
    """(gh, gw) token values -> (H, W): the mean over the covering tokens (the same as `token_map_to_pixels`)."""
    iy, wy, ix, wx, _ = tables
    out = np.zeros((iy.shape[0], ix.shape[0]), np.float32)
    for a in range(iy.shape[1]):
        rows = v[iy[:, a]]  # (H, gw)
        for b in range(ix.shape[1]):
            out += rows[:, ix[:, b]] * (wy[:, a, None] * wx[None, :, b])
    return out


def relative(values: np.ndarray) -> np.ndarray:
    """A non-negative map divided by its mean: 1 = uniform attention, 3 = three times the uniform share (NaN
    pixels are ignored and kept)."""
    v = np.asarray(values, np.float32)
    v = np.where(np.isnan(v), np.nan, np.clip(v, 0.0, None)).astype(np.float32)
    finite = v[np.isfinite(v)]
    m = float(finite.mean()) if finite.size else 0.0
    return v / m if m > 0 else np.where(np.isnan(v), np.nan, 0.0).astype(np.float32)


def heat(
    image: np.ndarray, pixels: np.ndarray, style: Style, vmin: float | None = None, vmax: float | None = None
) -> tuple[np.ndarray, int]:
    """Blend an (H, W) pixel map over `image` (NaN pixels stay unshaded), then upscale (nearest).

    Returns (RGB, factor).
    """
    px = np.asarray(pixels, np.float32)
    rgb = overlay.blend(image, overlay.normalize(px, vmin, vmax), float(style.alpha), style.cmap)
    nan = np.isnan(px)
    if nan.any():
        rgb[nan] = np.asarray(image)[nan]
    return overlay.upscale(rgb, style.min_size)


def big(image: np.ndarray, style: Style) -> tuple[np.ndarray, int]:
    """The plain image, upscaled like the overlays."""
    return overlay.upscale(np.asarray(image, np.uint8), style.min_size)


def _range(maps: Sequence[np.ndarray], style: Style, index: int) -> tuple[float | None, float | None]:
    """(vmin, vmax) for panel `index` of a group: one range for all (shared) or the panel's own."""
    if style.shared:
        return overlay.shared_range(maps)
    return overlay.shared_range([maps[index]])


def caption_top1(labels: Sequence[str], probs: np.ndarray) -> str:
    i = int(np.argmax(probs))
    return f"{labels[i]} ({100 * float(probs[i]):.1f}%)"


def _label_strip(image: np.ndarray, text: str) -> np.ndarray:
    """Add a white strip with a caption above an RGB image (for tiled exports and token crops)."""
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.45
    (_, th), base = cv2.getTextSize(text, font, fs, 1)
    strip = np.full((th + base + 8, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, th + 4), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, image], 0)


def hstack(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Place RGB images side by side on white, top-aligned."""
    H = max(im.shape[0] for im in images)
    W = sum(im.shape[1] for im in images) + gap * (len(images) - 1)
    out = np.full((H, W, 3), 255, np.uint8)
    x = 0
    for im in images:
        out[: im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


@cache
def notes() -> dict[str, str]:
    """Teaching notes from assets/notes.md, by `## key` section (empty when the file is missing)."""
    if not NOTES_PATH.is_file():
        return {}
    out: dict[str, str] = {}
    for part in re.split(r"^## ", NOTES_PATH.read_text(), flags=re.M)[1:]:
        key, _, body = part.partition("\n")
        out[key.strip()] = body.strip()
    return out


def weights_note(expl: Explanation) -> str:
    """One line of Markdown that says which weights produced `expl` (the app's banner)."""
    name = expl.model_name or "?"
    kind = expl.weights_kind or "unknown"
    text = {
        "random": "**random weights** (untrained placeholder): the maps show the architecture, not learned parts, "
        "and the prediction is meaningless",
        "demo": "demo weights trained on fgviz synthetic data: real photos are far outside what they learned",
        "hub": "weights fine-tuned for this method, from the Hugging Face Hub",
        "backbone": "ImageNet backbone mode: a pretrained timm model wrapped in this method, NOT fine-tuned for "
        "it; labels are ImageNet classes",
        "local": "local weights",
    }.get(kind, f"weights of kind {kind!r}")
    mark = "⚠️ " if kind in ("random", "backbone") else ""
    return f"{mark}**{METHOD_TITLES.get(expl.method, expl.method)}** `{name}`: {text}"


# ---------------------------------------------------------------------------------------------------------------
# Figures


def topk_figure(expl: Explanation, k: int = 5, probs: np.ndarray | None = None, title: str | None = None) -> go.Figure:
    """Top-k bar chart (plotly) of the final prediction, or of `probs`; no title unless given (the UI labels it)."""
    fig = figures.topk_bar(expl, k=k, probs=probs, title=title)
    fig.update_layout(height=250, yaxis={"automargin": True}, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def scale_topk_figure(expl: Explanation, k: int = 5) -> go.Figure:
    """RAMS-Trans: one top-k bar chart per scale (scale 1 = full image, scale s + 1 = crop s)."""
    sp = expl.scale_probs if expl.scale_probs is not None else expl.probs[None]
    S = sp.shape[0]
    fig = make_subplots(rows=S, cols=1, subplot_titles=[f"scale {s + 1}" + (" (full image)" if s == 0 else
                                                                            f" (crop {s})") for s in range(S)],
                        vertical_spacing=0.12)
    for s in range(S):
        pairs = expl.topk(k, sp[s])
        fig.add_trace(go.Bar(x=[100 * p for _, p in pairs], y=[n for n, _ in pairs], orientation="h",
                             marker_color=figures.MEAN_COLOR, text=[f"{100 * p:.1f}%" for _, p in pairs],
                             textposition="auto", hovertemplate="%{y}: %{x:.2f}%<extra></extra>", showlegend=False),
                      row=s + 1, col=1)
        fig.update_xaxes(range=[0, 100], ticksuffix="%", row=s + 1, col=1)
        fig.update_yaxes(autorange="reversed", type="category", automargin=True, row=s + 1, col=1)
    fig.update_layout(height=90 + 170 * S, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title="RAMS-Trans: top-5 per scale")
    return fig


def heatmaps(
    panels: Sequence[tuple[np.ndarray, str, float | None, float | None]], style: Style, value_name: str = "attention",
    title: str | None = None, height: int = 360,
) -> go.Figure:
    """Token-resolution heatmaps side by side, image orientation (row 0 on top), square cells; hover reads
    'row r, col c, <value_name> v'. Built in one constructor call (a few ms, versus tens for make_subplots), since
    the layer slider rebuilds it on every move.

    Args:
        panels: (values (gh, gw), subplot title, zmin, zmax) per heatmap; None limits mean the map's own range.
    """
    n = len(panels)
    gap = 0.1 if n > 1 else 0.0
    width = (1.0 - gap * (n - 1)) / n
    colorscale = overlay.plotly_colorscale(style.cmap)
    data, layout, notes = [], {}, []
    for i, (z, sub, zmin, zmax) in enumerate(panels):
        z = np.asarray(z, np.float32)
        gh, gw = z.shape
        sx = "" if i == 0 else str(i + 1)
        x0 = i * (width + gap)
        data.append({"type": "heatmap", "z": z, "zmin": zmin, "zmax": zmax, "colorscale": colorscale,
                     "xaxis": f"x{sx}", "yaxis": f"y{sx}", "showscale": i == n - 1,
                     "colorbar": {"thickness": 12},
                     "hovertemplate": f"row %{{y}}, col %{{x}}, {value_name} %{{z:.4g}}<extra></extra>"})
        layout[f"xaxis{sx}"] = {"domain": [x0, x0 + width], "range": [-0.5, gw - 0.5], "constrain": "domain",
                                "showgrid": False, "zeroline": False, "anchor": f"y{sx}"}
        layout[f"yaxis{sx}"] = {"range": [gh - 0.5, -0.5], "scaleanchor": f"x{sx}", "constrain": "domain",
                                "showgrid": False, "zeroline": False, "anchor": f"x{sx}"}
        notes.append({"text": sub, "x": x0 + width / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                      "xanchor": "center", "yanchor": "bottom", "showarrow": False})
    layout.update(annotations=notes, height=height, margin={"l": 10, "r": 10, "t": 80 if title else 50, "b": 10},
                  plot_bgcolor="white", title=title)
    return go.Figure(data=data, layout=layout)


# ---------------------------------------------------------------------------------------------------------------
# Overview


@dataclass
class MethodOverview:
    """One column of the Overview tab."""

    main: np.ndarray  # RGB: the method's signature view
    caption: str
    panels: list[Panel]  # further panels (gallery); only the main one with main_only
    topk: go.Figure | None  # None with main_only
    extra: go.Figure | None = None  # RAMS-Trans: per-scale top-5
    scale: int = 1  # upscale factor of `main` over expl.image


def signature_map(expl: Explanation) -> np.ndarray:
    """The map of each method's signature view: TransFG's last rollout, RAMS-Trans's DPPM map g (its rollout when
    it ran one scale only), TASN's structure map."""
    if expl.method == "tasn":
        return expl.maps["structure"]
    if expl.method == "rams_trans" and expl.dppm_maps is not None and len(expl.dppm_maps):
        return expl.dppm_maps[0]
    return expl.rollout[-1]


def overview_maps(e: Explanation) -> dict[str, np.ndarray]:
    """The maps an Overview column draws, as (H, W) pixel maps relative to their mean ("x uniform")."""
    maps = {"signature": relative(to_pixels(e, signature_map(e)))}
    if e.method == "transfg" and e.psm_rows is not None:
        maps["psm"] = relative(to_pixels(e, e.psm_rows.mean(0)))
    if e.method == "tasn":
        maps["detail"] = relative(to_pixels(e, e.maps["detail"]))
    return maps


def overview(
    expls: dict[str, Explanation], style: Style, *, main_only: bool = False
) -> dict[str, MethodOverview]:
    """The Overview tab for any subset of the methods, with one colour scale for all maps when shared.

    Each map is first expressed relative to its own mean (x times uniform) so that maps of different methods and
    resolutions can share a scale: vmin 0, vmax the largest value of any of them. `main_only` draws just the
    signature views (same pixels as the full overview's mains) and no gallery or top-5 figure: the `/explain`
    endpoint returns only those, and the rest costs more than the three demo explains together.
    """
    rel = {m: overview_maps(e) for m, e in expls.items()}
    shared_max = max((float(np.nanmax(v)) for maps in rel.values() for v in maps.values()), default=1.0)
    vmin, vmax = (0.0, shared_max) if style.shared else (None, None)
    render = {"transfg": _overview_transfg, "rams_trans": _overview_rams, "tasn": _overview_tasn}
    return {m: render[m](e, rel[m], style, vmin, vmax, main_only) for m, e in expls.items()}


def _overview_transfg(e: Explanation, rel: dict[str, np.ndarray], style: Style, vmin, vmax,
                      main_only: bool = False) -> MethodOverview:
    img, s = heat(e.image, rel["signature"], style, vmin, vmax)
    boxes = np.asarray(e.part_boxes) if e.part_boxes is not None else np.zeros((0, 4))
    main = overlay.draw_boxes(img, boxes, labels=[str(h + 1) for h in range(len(boxes))], min_size=0, image_scale=s)
    L = e.num_layers
    cap = (f"rollout through layers 1..{L} (x uniform) + PSM: box n = the token head n selects "
           f"({len(boxes)} heads)")
    panels: list[Panel] = [(main, cap)]
    if main_only:
        return MethodOverview(main, cap, panels, None, scale=s)
    if "psm" in rel:
        panels.append((heat(e.image, rel["psm"], style, vmin, vmax)[0],
                       f"PSM input: CLS row of A_{L}...A_1, head mean (x uniform)"))
    panels.append((big(e.image, style)[0], f"model input {e.size[1]}x{e.size[0]}"))
    return MethodOverview(main, cap, panels, topk_figure(e), scale=s)


def _rams_box_panel(e: Explanation, pixels: np.ndarray, mask: np.ndarray | None, boxes: np.ndarray,
                    style: Style, vmin, vmax) -> tuple[np.ndarray, int]:
    img, s = heat(e.image, pixels, style, vmin, vmax)
    if mask is not None:
        pm = overlay.token_mask_to_pixels(mask, e.patch_size, e.stride, e.size)
        img = overlay.draw_mask_outline(img, pm, color=OKABE_ITO["orange"], thickness=2, min_size=0, image_scale=s)
    if len(boxes):
        img = overlay.draw_boxes(img, boxes, labels=[f"zoom {i + 1}" for i in range(len(boxes))],
                                 colors=[OKABE_ITO["sky_blue"]] * len(boxes), thickness=3, min_size=0, image_scale=s)
    return img, s


def _overview_rams(e: Explanation, rel: dict[str, np.ndarray], style: Style, vmin, vmax,
                   main_only: bool = False) -> MethodOverview:
    has_zoom = e.dppm_maps is not None and len(e.dppm_maps) > 0
    mask = e.dppm_masks[0] if has_zoom else None
    boxes = np.asarray(e.crop_boxes) if has_zoom else np.zeros((0, 4))
    main, s = _rams_box_panel(e, rel["signature"], mask, boxes, style, vmin, vmax)
    if has_zoom:
        alpha = e.params.get("alphas", [1.2])[0]
        cap = (f"DPPM map g (x uniform), mask g > {alpha:g} x mean (orange), zoom box of its largest component "
               "(blue)")
    else:
        cap = "rollout (x uniform); one scale only, so no zoom"
    panels: list[Panel] = [(main, cap)]
    if main_only:
        return MethodOverview(main, cap, panels, None, scale=s)
    sp = e.scale_probs
    for i, crop in enumerate(e.crops):
        top = caption_top1(e.labels, sp[i + 1]) if sp is not None and len(sp) > i + 1 else ""
        panels.append((big(crop, style)[0], f"scale {i + 2} input = zoom {i + 1}, resized; scale {i + 2} says {top}"))
    return MethodOverview(main, cap, panels, topk_figure(e),
                          extra=scale_topk_figure(e), scale=s)


def _grid_panel(e: Explanation, base: np.ndarray, s: int, which: str) -> np.ndarray:
    rows, cols = e.sample_coords[which]
    every = max(1, len(rows) // 16)
    color = OKABE_ITO["yellow"] if which == "structure" else OKABE_ITO["sky_blue"]
    return overlay.draw_grid(base, rows, cols, every=every, color=color, min_size=0, image_scale=s)


def _overview_tasn(e: Explanation, rel: dict[str, np.ndarray], style: Style, vmin, vmax,
                   main_only: bool = False) -> MethodOverview:
    img, s = heat(e.image, rel["signature"], style, vmin, vmax)
    main = _grid_panel(e, img, s, "structure")
    o = len(e.sample_coords["structure"][0])
    cap = f"structure map (x uniform) + its sampling grid (every {max(1, o // 16)}th of {o} rows/cols)"
    if main_only:
        return MethodOverview(main, cap, [(main, cap)], None, scale=s)
    dimg, ds = heat(e.image, rel["detail"], style, vmin, vmax)
    panels: list[Panel] = [
        (main, cap),
        (_grid_panel(e, dimg, ds, "detail"), "detail map (x uniform) + its sampling grid"),
        (big(e.sampled["structure"], style)[0], f"structure-preserved image ({o}x{o})"),
        (big(e.sampled["detail"], style)[0], f"detail-preserved image ({o}x{o})"),
    ]
    return MethodOverview(main, cap, panels, topk_figure(e), scale=s)


# ---------------------------------------------------------------------------------------------------------------
# Layers and heads (ViT methods)


def token_at(expl: Explanation, x: float, y: float, scale: int = 1) -> int:
    """The patch token (full-sequence index) whose footprint centre is nearest to pixel (x, y) of a panel drawn
    at `scale` times the model input."""
    gh, gw = expl.grid
    off = (expl.patch_size - 1) / 2.0
    r = int(np.clip(round((y / scale - off) / expl.stride), 0, gh - 1))
    c = int(np.clip(round((x / scale - off) / expl.stride), 0, gw - 1))
    return expl.num_prefix_tokens + r * gw + c


def token_rc(expl: Explanation, token: int) -> tuple[int, int]:
    return divmod(int(token) - expl.num_prefix_tokens, expl.grid[1])


class AttentionAnalysis:
    """Attention derived from an explanation's stored queries and keys; each result is computed once and cached.

    softmax(q k^T) is evaluated in blocks of query rows (fgviz.attention's convention), never as a full
    (L, H, N, N) stack. Results: per-layer rollout for any head fusion and discard ratio; per-layer, per-head
    log-normalisers (so any column of the attention is cheap afterwards); entropy and mean attention distance per
    layer and head; rows and columns of any token.
    """

    def __init__(self, expl: Explanation, block_rows: int = 256) -> None:
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
        """One blocked sweep over every layer: log-normalisers, entropy and distance (first time), and the fused
        (N, N) matrices of `fusion` when asked."""
        need_stats = self._lse is None
        if fusion is None and not need_stats:
            return None
        pos = torch.from_numpy(stats.token_centers(self.grid, self.expl.patch_size, self.expl.stride)).float()
        dist = torch.cdist(pos, pos)  # (Np, Np) pixels between footprint centres
        lse = torch.empty(self.L, self.H, self.N)
        ent = torch.zeros(self.L, self.H)
        mdist = torch.zeros(self.L, self.H)
        fused = []
        for layer in range(self.L):
            q, kt = self.q[layer].float(), self.k[layer].float().transpose(-2, -1)  # (H, N, d), (H, d, N)
            out = torch.empty(self.N, self.N) if fusion is not None else None
            for s in range(0, self.N, self.block_rows):
                logits = q[:, s : s + self.block_rows] @ kt  # (H, b, N)
                z = torch.logsumexp(logits, dim=-1)  # (H, b)
                a = torch.exp(logits - z[..., None])  # (H, b, N)
                if out is not None:
                    out[s : s + self.block_rows] = fuse_heads(a[None], fusion)[0]  # (b, N)
                if need_stats:
                    lse[layer, :, s : s + self.block_rows] = z
                    ent[layer] += (z - (a * logits).sum(-1)).sum(-1)  # (H,): sum over rows of -sum a log a
                    rows = torch.arange(s, min(s + self.block_rows, self.N))
                    patch_rows = rows >= self.p
                    if patch_rows.any():
                        pa = a[:, patch_rows, self.p :]  # (H, b', Np): patch queries over patch keys
                        d = (pa * dist[rows[patch_rows] - self.p][None]).sum(-1) / pa.sum(-1).clamp_min(1e-12)
                        mdist[layer] += d.sum(-1)  # (H,)
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
        """(entropy, mean distance), each (L, H): entropy (nats) of every query row over all keys, averaged over
        queries; mean attention distance (pixels) of patch queries over patch keys (`fgviz.viz.stats`)."""
        self._ensure_lse()
        return self._stats

    def rows(self, token: int) -> np.ndarray:
        """(L, H, N) attention of query `token` over all keys, every layer and head (rows sum to 1)."""
        if token in self._rows:
            return self._rows[token]
        q = self.q[:, :, token : token + 1].float()  # (L, H, 1, d)
        rows = torch.softmax(q @ self.k.float().transpose(-2, -1), dim=-1)[:, :, 0].numpy()  # (L, H, N)
        return self._remember(self._rows, token, rows)

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


def fuse_np(a: np.ndarray, head: str) -> np.ndarray:
    """Reduce the head axis (axis 1 of (L, H, ...)): "mean"/"max"/"min" or "h<k>" for one head (1-based)."""
    if head in HEAD_FUSIONS:
        return {"mean": a.mean, "max": a.max, "min": a.min}[head](axis=1)
    k = int(head[1:]) - 1
    return a[:, k]


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


def layer_view(
    an: AttentionAnalysis, layer: int, style: Style, *, fusion: str = "mean", discard: float = 0.0,
    token: int | None = None, heads: str = "mean",
) -> LayerView:
    """Rollout at `layer` (1-based) and, when a patch `token` is clicked, what it attends to / what attends to it.

    `heads` reduces the clicked patch's per-head attention: "mean", "max", "min" or "h3" (one head).
    """
    e = an.expl
    L = an.L
    li = int(np.clip(layer, 1, L)) - 1
    roll = an.rollout(fusion, discard)  # (L, gh, gw), cached
    vmin, vmax = _range(roll, style, li)
    img, s = heat(e.image, to_pixels(e, overlay.normalize(roll[li], vmin, vmax)), style, 0.0, 1.0)
    if token is not None:
        img = overlay.draw_boxes(img, [e.token_box(token)], labels=["*"], colors=[OKABE_ITO["vermillion"]],
                                 min_size=0, image_scale=s)
    cap = f"rollout through layers 1..{li + 1} of {L} (fusion {fusion}, discard {discard:g})"
    fig = heatmaps([(roll[li], f"rollout through layers 1..{li + 1}", vmin, vmax)], style, "rollout")
    numbers: dict[str, Any] = {"layer": li + 1, "fusion": fusion, "discard": float(discard)}
    if token is None:
        return LayerView(img, fig, None, None, None, cap, s, numbers)

    r, c = token_rc(e, token)
    full_rows = an.rows(token)  # (L, H, N), cached per token
    rows = fuse_np(full_rows[:, :, an.p :], heads).reshape(L, *an.grid)  # (L, gh, gw)
    cols = fuse_np(an.columns(token)[:, :, an.p :], heads).reshape(L, *an.grid)
    panels, hm = [], []
    for name, maps in ((f"patch ({r}, {c}) attends to", rows), (f"attends to patch ({r}, {c})", cols)):
        lo, hi = _range(maps, style, li)
        im, ps = heat(e.image, to_pixels(e, overlay.normalize(maps[li], lo, hi)), style, 0.0, 1.0)
        im = overlay.draw_boxes(im, [e.token_box(token)], labels=[""], colors=[OKABE_ITO["vermillion"]],
                                min_size=0, image_scale=ps)
        panels.append(im)
        hm.append((maps[li], name, lo, hi))
    pf = heatmaps(hm, style, "attention", height=340)
    numbers.update(patch=[r, c], token=int(token), heads=heads,
                   attends_to_cls=float(fuse_np(full_rows[:, :, : an.p].sum(-1, keepdims=True), heads)[li, 0]))
    cap += f"; patch ({r}, {c}) at layer {li + 1}, heads: {heads}"
    return LayerView(img, fig, panels[0], panels[1], pf, cap, s, numbers)


def head_grid(an: AttentionAnalysis, style: Style, token: int | None = None) -> go.Figure:
    """Layer x head grid of raw attention of the CLS token (or of a clicked patch) over the patches."""
    q = 0 if token is None else int(token)
    who = "CLS" if token is None else "patch ({}, {})".format(*token_rc(an.expl, token))
    fig = figures.attention_grid(an.query_grid(q), cmap=style.cmap, norm="shared" if style.shared else "each",
                                 title=f"raw attention of {who}, layers x heads")
    fig.update_layout(height=max(300, 60 * an.L + 80))
    return fig


def stats_figure(an: AttentionAnalysis, compute: bool = True) -> go.Figure:
    """Entropy and mean attention distance per layer and head; with `compute=False` and no statistics yet, an empty
    figure that says how to get them (they need one sweep over all L*H*N*N attention entries)."""
    if not compute and not an.has_stats:
        fig = go.Figure()
        fig.update_layout(height=120, xaxis={"visible": False}, yaxis={"visible": False},
                          annotations=[{"text": f"{an.L} layers x {an.H} heads x {an.N}^2 tokens: press 'Compute "
                                                "entropy and distance' (a few seconds)", "showarrow": False,
                                        "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}])
        return fig
    ent, dist = an.stats()
    fig = figures.layer_stats(ent, dist, title="per-layer attention entropy and mean attention distance")
    fig.update_layout(height=320)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Internals: TransFG


def transfg_steps(e: Explanation, style: Style) -> list[Panel]:
    """Overlapping patches -> per-head product of layers 1..L-1 -> one token per head -> what the last layer sees."""
    gh, gw = e.grid
    P, S = e.patch_size, e.stride
    panels: list[Panel] = []
    # 1. Overlapping patches: a 3 x 3 block of neighbouring footprints at the centre.
    r0, c0 = max(0, gh // 2 - 1), max(0, gw // 2 - 1)
    toks = [e.num_prefix_tokens + r * gw + c for r in range(r0, min(r0 + 3, gh)) for c in range(c0, min(c0 + 3, gw))]
    img, s = big(e.image, style)
    img = overlay.draw_boxes(img, [e.token_box(t) for t in toks], labels=[""] * len(toks),
                             colors=[BOX_COLORS[i % len(BOX_COLORS)] for i in range(len(toks))], thickness=2,
                             min_size=0, image_scale=s)
    panels.append((img, f"1. overlapping patches: {P}-px patches every {S} px -> {gh}x{gw} tokens "
                        f"(neighbours share {max(P - S, 0)} px); 9 neighbours drawn"))
    # 2. Per-head CLS rows of A_{L-1} ... A_1 (what the PSM argmax sees), tiled.
    rows = e.psm_rows  # (K, gh, gw)
    K = rows.shape[0]
    tiles, _ = overlay.tile_maps(rows[None], cmap=style.cmap, norm="shared" if style.shared else "each",
                                 tile=max(48, style.min_size // max(K, 1)), row_prefix="", col_prefix="head ")
    panels.append((tiles, f"2. per head: CLS row of A_{e.num_layers}...A_1 (product of the first "
                          f"{e.num_layers} layers, no identity, no head fusion)"))
    # 3. Each head's map with its argmax token.
    vmin, vmax = overlay.shared_range(rows) if style.shared else (None, None)
    for h in range(K):
        im, hs = heat(e.image, to_pixels(e, overlay.normalize(rows[h], vmin, vmax)), style, 0.0, 1.0)
        im = overlay.draw_boxes(im, [e.part_boxes[h]], labels=[str(h + 1)], colors=[BOX_COLORS[h % len(BOX_COLORS)]],
                                min_size=0, image_scale=hs)
        r, c = token_rc(e, e.part_tokens[h])
        panels.append((im, f"3. head {h + 1}: argmax -> token ({r}, {c})"))
    # 4. All selected tokens.
    img, s = big(e.image, style)
    img = overlay.draw_boxes(img, e.part_boxes, labels=[str(h + 1) for h in range(K)], min_size=0, image_scale=s)
    n_unique = len(set(e.part_tokens.tolist()))
    panels.append((img, f"4. one token per head: {K} tokens ({n_unique} distinct; duplicates are kept)"))
    # 5. What the last layer sees: CLS + the K token footprints.
    crops = []
    for h, (x0, y0, x1, y1) in enumerate(np.asarray(e.part_boxes)):
        crop = e.image[y0:y1, x0:x1]
        f = max(1, 64 // max(crop.shape[:2]))
        crops.append(_label_strip(np.repeat(np.repeat(crop, f, 0), f, 1), f"h{h + 1}"))
    panels.append((hstack(crops), f"5. the last layer attends over [CLS + these {K} tokens] only, then the "
                                  f"classifier: {caption_top1(e.labels, e.probs)}"))
    return panels


# ---------------------------------------------------------------------------------------------------------------
# Internals: RAMS-Trans


def rams_grid_box_to_pixels(box: Sequence[int], patch: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grid box (r0, c0, r1, c1) -> pixel box (x0, y0, x1, y1), exclusive, with the official one-pixel shift."""
    y0, x0, y1, x1 = grid_box_to_pixels(tuple(int(v) for v in box), patch, size)  # inclusive rows/cols
    return x0, y0, x1 + 1, y1 + 1


def dppm_preview(e: Explanation, alpha: float, step: int = 0) -> dict[str, Any]:
    """Threshold, component and box of step `step` recomputed from the stored map g with another alpha."""
    g = torch.from_numpy(np.asarray(e.dppm_maps[step], np.float32)).reshape(1, -1)  # (1, gh * gw)
    mask = dppm_mask(g, e.grid, alpha=float(alpha))  # (1, gh, gw)
    component, boxes = largest_component_box(mask)
    box = boxes[0].tolist()
    return {"mask": mask[0].numpy(), "component": component[0].numpy(), "grid_box": box}


def rams_steps(e: Explanation, style: Style, alpha: float | None = None) -> tuple[list[Panel], dict[str, Any]]:
    """Map -> threshold -> largest component -> box -> crop -> next scale, for every zoom step.

    With `alpha` different from the one the model ran with, step 1 is previewed from the stored map g (mask,
    component, box and the crop the next scale would see); its prediction needs a re-run.
    """
    panels: list[Panel] = []
    info: dict[str, Any] = {"steps": []}
    if e.dppm_maps is None or not len(e.dppm_maps):
        img, _ = heat(e.image, to_pixels(e, e.rollout[-1]), style)
        return [(img, "one scale only: no zoom step (set num_scales = 2 and re-run)")], info
    ran = e.params.get("alphas", [1.2])
    for st in range(len(e.dppm_maps)):
        g = e.dppm_maps[st]
        a_run = float(ran[st]) if st < len(ran) else float("nan")
        preview = alpha is not None and st == 0 and not math.isclose(float(alpha), a_run)
        a = float(alpha) if preview else a_run
        if preview:
            p = dppm_preview(e, a, st)
            mask, comp, gbox = p["mask"], p["component"], p["grid_box"]
        else:
            mask, gbox = e.dppm_masks[st], e.dppm_boxes[st].tolist()
            comp = e.extras.get("dppm_components", [mask] * (st + 1))[st]
        base = e.image if st == 0 else e.crops[st - 1]
        tag = f"step {st + 1}" + (f" (preview, alpha {a:g}; the model ran with {a_run:g})" if preview else "")
        gm, gs = heat(base, to_pixels(e, g), style)
        panels.append((gm, f"{tag}: 1. DPPM map g = mean row of the rollout (all layers, heads averaged)"))
        pm = overlay.token_mask_to_pixels(mask, e.patch_size, e.stride, e.size)
        mk = overlay.draw_mask_outline(gm, pm, color=OKABE_ITO["orange"], fill_alpha=0.25, min_size=0, image_scale=gs)
        panels.append((mk, f"{tag}: 2. threshold g > {a:g} x mean(g): {int(mask.sum())} of {mask.size} tokens"))
        cm = overlay.token_mask_to_pixels(comp, e.patch_size, e.stride, e.size)
        ck = overlay.draw_mask_outline(gm, cm, color=OKABE_ITO["vermillion"], fill_alpha=0.35, min_size=0,
                                       image_scale=gs)
        panels.append((ck, f"{tag}: 3. largest 8-connected component ({int(np.asarray(comp).sum())} tokens)"))
        pbox = rams_grid_box_to_pixels(gbox, e.patch_size, e.size)
        bx = overlay.draw_boxes(big(base, style)[0], [pbox], labels=["zoom"], colors=[OKABE_ITO["sky_blue"]],
                                thickness=3, min_size=0, image_scale=gs)
        panels.append((bx, f"{tag}: 4. its box, grid rows {gbox[0]}..{gbox[2] - 1}, cols {gbox[1]}..{gbox[3] - 1}"))
        if preview:
            x0, y0, x1, y1 = pbox
            crop = cv2.resize(np.ascontiguousarray(base[y0:y1, x0:x1]), (e.size[1], e.size[0]),
                              interpolation=cv2.INTER_LINEAR)
            panels.append((big(crop, style)[0], f"{tag}: 5. crop, resized = the next scale's input (re-run for its "
                                                "prediction)"))
        else:
            sp = e.scale_probs[st + 1] if e.scale_probs is not None and len(e.scale_probs) > st + 1 else None
            said = f": scale {st + 2} says {caption_top1(e.labels, sp)}" if sp is not None else ""
            panels.append((big(e.crops[st], style)[0],
                           f"step {st + 1}: 5. crop, resized = scale {st + 2} input{said}"))
        info["steps"].append({"alpha": a, "preview": preview, "grid_box": [int(v) for v in gbox],
                              "pixel_box_in_step_input": [int(v) for v in pbox], "mask_tokens": int(mask.sum())})
    return panels, info


# ---------------------------------------------------------------------------------------------------------------
# Internals: TASN


@dataclass(frozen=True)
class TASNParams:
    gamma: float = 7.0
    dense: float = 4.0
    iters: int = 5
    out_size: int = 224
    detail_channel: int | None = None  # None: sum of all channels (test mode)

    @classmethod
    def of(cls, e: Explanation) -> TASNParams:
        p = e.params
        return cls(float(p.get("gamma", 7.0)), float(p.get("dense", 4.0)), int(p.get("iters", 5)),
                   int(p.get("out_size", len(e.sample_coords["structure"][0]))), p.get("detail_channel"))


def tasn_recompute(e: Explanation, params: TASNParams) -> dict[str, Any]:
    """TASN's maps, sampling grids and resampled images for other parameters, from the stored features X.

    Same operations as `TASN.attention_maps` + `attention_sample` (bilinear resize without corner alignment,
    structure squared after the resize), applied to the display image, which equals sampling the normalised
    input and denormalising (bilinear sampling is linear and never leaves the image).
    """
    if params == TASNParams.of(e):
        return {"maps": e.maps, "sampled": e.sampled, "coords": e.sample_coords, "trilinear": e.trilinear,
                "preview": False}
    X = torch.from_numpy(np.asarray(e.features, np.float32))[None]  # (1, C, h, w)
    T = trilinear_attention(X, gamma=params.gamma)  # (1, C, h, w)
    structure = T.sum(dim=1)  # (1, h, w)
    if params.detail_channel is None:
        detail = structure
    else:
        if not 0 <= params.detail_channel < T.shape[1]:
            raise ValueError(f"detail_channel must be in [0, {T.shape[1] - 1}], got {params.detail_channel}")
        detail = T[:, params.detail_channel]
    size = e.size
    up = lambda m: F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
    full = {"structure": up(structure) ** 2, "detail": up(detail)}
    img = torch.from_numpy(e.image).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    sampled, coords = {}, {}
    for k, m in full.items():
        out, (rows, cols) = attention_sample(img, m, params.out_size, dense=params.dense, iters=params.iters)
        sampled[k] = out[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        coords[k] = (rows[0].numpy(), cols[0].numpy())
    return {"maps": {"structure": structure[0].numpy(), "detail": detail[0].numpy()}, "sampled": sampled,
            "coords": coords, "trilinear": T[0].numpy(), "preview": True}


def channel_tiles(maps: np.ndarray, channels: Sequence[int], style: Style, cols: int = 4) -> np.ndarray:
    """Colormapped (C, h, w) maps of the given channels, each labelled with its channel index, `cols` per row."""
    m = np.asarray(maps, np.float32)[list(channels)]
    if style.shared:
        lo, hi = overlay.shared_range(m)
        normed = [overlay.normalize(x, lo, hi) for x in m]
    else:
        normed = [overlay.normalize(x) for x in m]
    side = max(48, style.min_size // cols - 8)
    tiles = []
    for c, x in zip(channels, normed, strict=True):
        rgb = overlay.colormap(x, style.cmap)
        f = max(1, side // max(rgb.shape[:2]))
        tiles.append(_label_strip(np.repeat(np.repeat(rgb, f, 0), f, 1), f"channel {int(c)}"))
    rows = [hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, 0)


def marginals_figure(e: Explanation, maps: dict[str, np.ndarray], coords: dict[str, tuple]) -> go.Figure:
    """Max-marginals of the structure/detail attention and the sampling density they produce, per axis."""
    from fgviz.metrics import axis_density

    H, W = e.size
    fig = make_subplots(rows=1, cols=2, subplot_titles=["rows (y)", "columns (x)"], horizontal_spacing=0.1)
    colors = {"structure": OKABE_ITO["orange"], "detail": OKABE_ITO["blue"]}
    for name in ("structure", "detail"):
        m = to_pixels(e, maps[name])
        m = m**2 if name == "structure" else m
        rgb = "rgb({},{},{})".format(*colors[name])
        for col, (marg, n, c) in enumerate(((m.max(1), H, coords[name][0]), (m.max(0), W, coords[name][1])), 1):
            x = np.arange(n)
            mm = marg / max(float(marg.max()), 1e-12)
            dens = axis_density(np.asarray(c), n)
            dens = dens / max(float(dens.max()), 1e-12)
            fig.add_trace(go.Scatter(x=x, y=mm, name=f"{name} max-marginal", line={"color": rgb, "dash": "dot"},
                                     legendgroup=name + "m", showlegend=col == 1), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=dens, name=f"{name} sampling density", line={"color": rgb},
                                     legendgroup=name + "d", showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="pixel", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], title_text="relative to max", row=1, col=1)
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title="marginals -> sampling density (output pixels per input pixel)")
    return fig


def tasn_steps(e: Explanation, style: Style, params: TASNParams | None = None) -> tuple[list[Panel], go.Figure,
                                                                                         dict[str, Any]]:
    """Feature maps -> trilinear maps -> structure/detail maps -> marginals -> sampling grid -> resampled images."""
    params = params or TASNParams.of(e)
    r = tasn_recompute(e, params)
    tag = " (preview: re-run for the prediction)" if r["preview"] else ""
    X = np.asarray(e.features, np.float32)  # (C, h, w)
    T = np.asarray(r["trilinear"], np.float32)
    top = np.argsort(-X.reshape(X.shape[0], -1).sum(1), kind="stable")[:8]
    xt = channel_tiles(X, top, style)
    tt = channel_tiles(T, top, style)
    chans = ", ".join(str(int(c)) for c in top)
    panels: list[Panel] = [
        (xt, f"1. feature maps X of the attention net ({X.shape[0]} channels, {X.shape[1]}x{X.shape[2]}); the 8 "
             f"strongest: {chans}"),
        (tt, f"2. trilinear maps T = N(N(X) X^T) X, gamma {params.gamma:g}, same channels{tag}"),
    ]
    maps = r["maps"]
    rels = {k: relative(to_pixels(e, v)) for k, v in maps.items()}
    vmin, vmax = (0.0, max(float(np.nanmax(v)) for v in rels.values())) if style.shared else (None, None)
    for k in ("structure", "detail"):
        what = "sum of all T channels" if k == "structure" or params.detail_channel is None else \
            f"T channel {params.detail_channel}"
        panels.append((heat(e.image, rels[k], style, vmin, vmax)[0], f"3. {k} map = {what} (x uniform){tag}"))
    for k in ("structure", "detail"):
        rows, cols = r["coords"][k]
        base, s = big(e.image, style)
        grid = overlay.draw_grid(base, rows, cols, every=max(1, len(rows) // 24),
                                 color=OKABE_ITO["yellow"] if k == "structure" else OKABE_ITO["sky_blue"],
                                 min_size=0, image_scale=s)
        panels.append((grid, f"5. {k} sampling grid: dense {params.dense:g}, {params.iters} iterations, "
                             f"{len(rows)}x{len(cols)} samples{tag}"))
    for k in ("structure", "detail"):
        panels.append((big(r["sampled"][k], style)[0], f"6. {k}-preserved image{tag}"))
    info = {"params": params.__dict__, "preview": r["preview"], "top_channels": [int(c) for c in top]}
    return panels, marginals_figure(e, maps, r["coords"]), info


# ---------------------------------------------------------------------------------------------------------------
# Faithfulness helpers (maps only; the metrics that need the model live in fgviz.session)


def map_choices(method: str) -> list[str]:
    """Names of the maps of a method that the Faithfulness tab can score."""
    return {"transfg": ["rollout", "psm (head mean)"], "rams_trans": ["dppm g", "rollout"],
            "tasn": ["structure", "detail"]}[method]


def named_map(e: Explanation, name: str, uncovered: float = 0.0) -> np.ndarray:
    """(H, W) pixel map of `map_choices(e.method)` entry `name`; pixels no token covers get `uncovered` (0 for the
    metrics, NaN to leave them unshaded in a figure)."""
    if name == "rollout":
        values = e.rollout[-1]
    elif name == "psm (head mean)":
        values = e.psm_rows.mean(0)
    elif name == "dppm g":
        values = e.dppm_maps[0] if e.dppm_maps is not None and len(e.dppm_maps) else e.rollout[-1]
    elif name in ("structure", "detail"):
        values = e.maps[name]
    else:
        raise KeyError(f"unknown map {name!r} for {e.method}; available: {map_choices(e.method)}")
    return to_pixels(e, values, uncovered=uncovered)


def curves_figure(res: Any, title: str) -> go.Figure:
    """Deletion/insertion curves with AUC (solid) and the random-map chance curves (dashed)."""
    fig = figures.curves(res.deletion_curve, res.insertion_curve,
                         {"deletion": res.deletion.value, "insertion": res.insertion.value}, title=title)
    for name, y, auc, color in (("deletion", res.random_deletion_curve, res.deletion.chance, figures.DELETION_COLOR),
                                ("insertion", res.random_insertion_curve, res.insertion.chance,
                                 figures.INSERTION_COLOR)):
        fig.add_trace(go.Scatter(x=res.fractions, y=y, mode="lines", name=f"random map {name} (AUC {auc:.3f})",
                                 line={"color": color, "dash": "dash", "width": 1}))
    fig.update_layout(height=360)
    return fig


def side_by_side(
    e1: Explanation, e2: Explanation, map_name: str, style: Style, captions: tuple[str, str]
) -> np.ndarray:
    """The same map of two explanations next to each other (each stretched to its own range), captioned."""
    a = _label_strip(heat(e1.image, named_map(e1, map_name, np.nan), style)[0], captions[0])
    b = _label_strip(heat(e2.image, named_map(e2, map_name, np.nan), style)[0], captions[1])
    return hstack([a, b], gap=8)


# ---------------------------------------------------------------------------------------------------------------
# Numbers


def summary(e: Explanation, k: int = 5) -> dict[str, Any]:
    """JSON-able numbers of an explanation: prediction, top-k, all probabilities, boxes, tokens, parameters."""
    H, W = e.size
    out: dict[str, Any] = {
        "method": e.method,
        "model": e.model_name,
        "weights_kind": e.weights_kind,
        "image_size": [H, W],
        "prediction": e.prediction,
        "top5": [[n, p] for n, p in e.topk(k)],
        "probs": [float(p) for p in e.probs],
        "labels": list(e.labels),
        "params": _jsonable(e.params),
    }
    if e.grid is not None:
        out.update(grid=list(e.grid), patch_size=e.patch_size, stride=e.stride, num_layers=e.num_layers)
    if e.part_tokens is not None:
        out["part_tokens"] = [int(t) for t in e.part_tokens]
        out["part_patches"] = [list(token_rc(e, t)) for t in e.part_tokens]
        out["part_boxes"] = np.asarray(e.part_boxes).tolist()
    if e.crop_boxes is not None:
        out["crop_boxes"] = np.asarray(e.crop_boxes).tolist()
        out["dppm_grid_boxes"] = np.asarray(e.dppm_boxes).tolist()
    if e.scale_probs is not None:
        out["scale_top5"] = [[[n, p] for n, p in e.topk(k, sp)] for sp in e.scale_probs]
    if e.sample_coords:
        out["sample_coords"] = {kk: {"rows": np.asarray(r).round(3).tolist(), "cols": np.asarray(c).round(3).tolist()}
                                for kk, (r, c) in e.sample_coords.items()}
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v
