"""Plotly figure builders. They read an `Explanation` or plain numpy arrays; no torch, no gradio.

- RGB overlays are composed in numpy (`fgviz.viz.overlay`) and shown with `image_figure`, which ships them as a
  compressed PNG data URI (`px.imshow(binary_string=True)`).
- Token/CNN-resolution maps go to `heatmap` (a `go.Heatmap`), so hovering shows row, column and value.
- The layer x head grid of raw attention (`attention_grid`) is ONE tiled RGB image (144 tiles for ViT-B), not a
  12 x 12 plotly subplot grid: 144 heatmap subplots take seconds to build and to render in the browser. A
  transparent L x H heatmap on top still gives "layer l, head h" hover per tile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fgviz.viz.overlay import DEFAULT_CMAP, plotly_colorscale, tile_maps

if TYPE_CHECKING:
    from fgviz.core.explanation import Explanation

_MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}  # room above the plot for plotly's toolbar
MEAN_COLOR = "rgb(0,114,178)"  # Okabe-Ito blue
HEAD_COLOR = "rgba(0,114,178,0.25)"
DELETION_COLOR = "rgb(213,94,0)"  # Okabe-Ito vermillion
INSERTION_COLOR = "rgb(0,158,115)"  # Okabe-Ito bluish green


BAR_TEXT_SIZE = 14  # every bar's percentage, inside a long bar or beside a short one


def _bars(pct: Sequence[float], names: Sequence[str]) -> go.Bar:
    """Horizontal bars of percentages with their values at one text size: inside (white) a bar longer than half the
    axis, beside the others (plotly's "auto" shrinks the text to fit a bar, so the top class read smallest)."""
    inside = [v >= 50.0 for v in pct]
    return go.Bar(
        x=list(pct),
        y=list(names),
        orientation="h",
        text=[f"{v:.1f}%" for v in pct],
        textposition=["inside" if i else "outside" for i in inside],
        insidetextanchor="end",
        textfont={"size": BAR_TEXT_SIZE, "color": ["white" if i else "black" for i in inside]},
        cliponaxis=False,
        marker_color=MEAN_COLOR,
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
        showlegend=False,
    )


def topk_bar(
    expl: Explanation | None,
    k: int = 5,
    probs: np.ndarray | None = None,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> go.Figure:
    """Horizontal bar chart of the k most probable classes, highest on top, in percent.

    Args:
        expl: the explanation whose `labels` (and `probs`, unless `probs` is given) are shown; may be None when
            `probs` and `labels` are both given.
        k: number of bars.
        probs: (C,) probabilities to show instead of `expl.probs` (e.g. one RAMS-Trans scale's `scale_probs[s]`).
        title: figure title.
        labels: (C,) class names when `expl` is None.

    Returns:
        A figure with one horizontal `go.Bar`; x axis 0..100 (%).
    """
    if expl is not None:
        pairs = expl.topk(k, probs)
    else:
        if probs is None or labels is None:
            raise ValueError("topk_bar needs an Explanation or both probs and labels")
        p = np.asarray(probs, dtype=np.float64)
        idx = np.argsort(-p, kind="stable")[: min(k, p.shape[0])]
        pairs = [(labels[i], float(p[i])) for i in idx]
    names = [n for n, _ in pairs]
    pct = [100.0 * v for _, v in pairs]
    fig = go.Figure(_bars(pct, names))
    fig.update_layout(
        title=title,
        margin=_MARGIN,
        uniformtext={"minsize": BAR_TEXT_SIZE, "mode": "show"},
        height=60 + 32 * max(1, len(names)),
        xaxis={"range": [0, 100], "ticksuffix": "%", "title": "probability"},
        # Categories are plotted bottom-up by default; reverse so the most probable class is on top.
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return fig


def heatmap(
    values: np.ndarray,
    title: str | None = None,
    cmap: str = DEFAULT_CMAP,
    zmin: float | None = None,
    zmax: float | None = None,
    value_name: str = "value",
) -> go.Figure:
    """Interactive token/CNN-resolution map: one `go.Heatmap`, image aspect, y axis reversed like an image.

    Args:
        values: (gh, gw) map.
        title: figure title.
        cmap: one of `overlay.COLORMAPS` (the colorscale is sampled from the same LUT as the overlays).
        zmin: value at the bottom of the colour scale (map minimum when None); pass a shared pair across panels.
        zmax: value at the top of the colour scale.
        value_name: word used for the value in the hover text.

    Returns:
        A figure whose hover reads "row r, col c, value v"; x range [-0.5, gw - 0.5], y range [gh - 0.5, -0.5].
    """
    z = np.asarray(values, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"values must be (gh, gw), got {z.shape}")
    gh, gw = z.shape
    fig = go.Figure(
        go.Heatmap(
            z=z,
            colorscale=plotly_colorscale(cmap),
            zmin=zmin,
            zmax=zmax,
            hovertemplate=f"row %{{y}}, col %{{x}}, {value_name} %{{z:.4g}}<extra></extra>",
            colorbar={"thickness": 12},
        )
    )
    fig.update_layout(
        title=title,
        margin=_MARGIN,
        xaxis={"range": [-0.5, gw - 0.5], "constrain": "domain", "showgrid": False, "zeroline": False},
        # Reversed range: row 0 on top like an image; scaleanchor keeps square token cells.
        yaxis={
            "range": [gh - 0.5, -0.5],
            "scaleanchor": "x",
            "scaleratio": 1,
            "constrain": "domain",
            "showgrid": False,
            "zeroline": False,
        },
        plot_bgcolor="white",
    )
    return fig


def image_figure(rgb: np.ndarray, title: str | None = None) -> go.Figure:
    """Show an RGB uint8 image (an overlay composed in numpy) as a compressed PNG inside a plotly figure.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        title: figure title.

    Returns:
        A figure with one `go.Image` trace whose `source` is a PNG data URI; axes hidden, image aspect kept.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    fig = px.imshow(img, binary_string=True, binary_format="png")
    fig.update_traces(hovertemplate="x %{x}, y %{y}<extra></extra>")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, margin=_MARGIN)
    return fig


def _as_lh(a: np.ndarray | None, name: str) -> np.ndarray | None:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (L,) or (L, H), got {a.shape}")
    return a


def layer_stats(
    entropy: np.ndarray | None = None,
    distance: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per-layer attention entropy and mean attention distance, side by side.

    Args:
        entropy: (L, H) per layer and head, or (L,) already averaged; e.g. from `AttentionAnalysis.stats`.
        distance: (L, H) or (L,) mean attention distance in pixels (`fgviz.core.attention.attention_distance`).
        title: figure title.

    Returns:
        A 2 x 1 subplot figure (entropy above, distance below; a missing input leaves its panel empty). With heads,
        every head is a faint thin line (legend group "heads", one legend entry) and the head mean a bold line.
        Layers are numbered from 1 on the x axis.
    """
    panels = [("entropy (nats)", _as_lh(entropy, "entropy")), ("mean distance (px)", _as_lh(distance, "distance"))]
    # One above the other: side by side, the two panel titles ran into each other at phone width.
    fig = make_subplots(rows=2, cols=1, subplot_titles=[p[0] for p in panels], vertical_spacing=0.22)
    heads_in_legend = False
    for col, (name, a) in enumerate(panels, start=1):
        if a is None:
            continue
        L, H = a.shape
        x = np.arange(1, L + 1)
        if H > 1:
            for h in range(H):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=a[:, h],
                        mode="lines",
                        line={"color": HEAD_COLOR, "width": 1},
                        name="heads",
                        legendgroup="heads",
                        showlegend=not heads_in_legend,
                        hovertemplate=f"layer %{{x}}, head {h + 1}: %{{y:.3g}}<extra></extra>",
                    ),
                    row=col,
                    col=1,
                )
                heads_in_legend = True
        fig.add_trace(
            go.Scatter(
                x=x,
                y=a.mean(1),
                mode="lines+markers",
                line={"color": MEAN_COLOR, "width": 3},
                name="head mean" if H > 1 else name,
                legendgroup="mean",
                showlegend=col == 1 or entropy is None,
                hovertemplate="layer %{x}, mean: %{y:.3g}<extra></extra>",
            ),
            row=col,
            col=1,
        )
        fig.update_xaxes(title_text="layer", range=[0.5, L + 0.5], dtick=1, row=col, col=1)
        fig.update_yaxes(title_text=name, rangemode="tozero", row=col, col=1)
    fig.update_layout(title=title, margin={**_MARGIN, "t": 60}, hovermode="closest")
    return fig


def _auc(y: np.ndarray) -> float:
    """Area under a curve sampled at equally spaced fractions 0..1 (trapezoid rule)."""
    if y.size < 2:
        return float(y[0]) if y.size else 0.0
    return float(((y[1:] + y[:-1]) / 2).sum() / (y.size - 1))


def curves(
    deletion: np.ndarray | None = None,
    insertion: np.ndarray | None = None,
    aucs: Mapping[str, float] | Sequence[float] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Deletion / insertion curves (RISE-style) with their AUC in the legend.

    Args:
        deletion: (steps,) class probability after removing the top fraction `t` of pixels, t = linspace(0, 1).
        insertion: (steps,) class probability after inserting the top fraction `t` of pixels.
        aucs: {"deletion": a, "insertion": b} or (a, b); computed by the trapezoid rule over [0, 1] when None or
            missing. Lower deletion AUC and higher insertion AUC are better.
        title: figure title.

    Returns:
        A figure with one `go.Scatter` per given curve; x axis "fraction of pixels" in [0, 1], y in [0, 1] when
        every value is a probability.
    """
    if aucs is None:
        given: dict[str, float] = {}
    elif isinstance(aucs, Mapping):
        given = {str(k): float(v) for k, v in aucs.items()}
    else:
        given = dict(zip(("deletion", "insertion"), (float(v) for v in aucs), strict=False))
    fig = go.Figure()
    ys = []
    for name, y, color in (("deletion", deletion, DELETION_COLOR), ("insertion", insertion, INSERTION_COLOR)):
        if y is None:
            continue
        y = np.asarray(y, dtype=np.float64).ravel()
        ys.append(y)
        auc = given.get(name, _auc(y))
        x = np.linspace(0.0, 1.0, y.size)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"{name} (AUC {auc:.3f})",
                line={"color": color, "width": 2},
                hovertemplate=f"{name}: %{{x:.0%}} of pixels, p = %{{y:.3f}}<extra></extra>",
            )
        )
    in_unit = all(((y >= 0) & (y <= 1)).all() for y in ys)
    fig.update_layout(
        title=title,
        margin=_MARGIN,
        xaxis={"title": "fraction of pixels", "range": [0, 1], "tickformat": ".0%"},
        yaxis={"title": "class probability", **({"range": [0, 1.02]} if in_unit else {})},
        legend={"orientation": "h", "x": 0.0, "y": -0.25, "yanchor": "top"},  # below the plot: never on a curve
    )
    return fig


def attention_grid(
    maps: np.ndarray,
    cmap: str = DEFAULT_CMAP,
    norm: str = "shared",
    tile: int = 48,
    title: str | None = None,
    value_name: str = "attention",
) -> go.Figure:
    """Layer x head grid of raw attention maps as ONE tiled image, with per-tile hover and a colour bar.

    Args:
        maps: (L, H, gh, gw) e.g. each layer's and head's CLS row over the patches.
        cmap: one of `overlay.COLORMAPS`.
        norm: "shared" (one scale for all tiles) or "each" (each tile stretched to its own range).
        tile: tile size in pixels.
        title: figure title.
        value_name: what the values are, the colour bar's title when shared.

    Returns:
        A figure with a `go.Image` (the tiled RGB, labelled "L1.." rows and "h1.." columns), an invisible
        `go.Heatmap` over the tiles whose hover reads "layer l, head h, max v, entropy e", and an empty marker trace
        that carries the colour bar (the tiles' range when shared, 0..1 of each tile's own range otherwise).
        Use `overlay.tile_maps` directly for the bare uint8 image.
    """
    m = np.asarray(maps, dtype=np.float32)
    rgb, lay = tile_maps(m, cmap=cmap, norm=norm, tile=tile)
    L, H = m.shape[:2]
    fig = image_figure(rgb, title=title)
    fig.update_traces(hoverinfo="skip", hovertemplate=None)
    step_x, step_y = lay["tile_w"] + lay["gap"], lay["tile_h"] + lay["gap"]
    flat = m.reshape(L, H, -1).astype(np.float64)
    p = np.clip(flat, 0, None)
    p = p / np.maximum(p.sum(-1, keepdims=True), 1e-12)
    ent = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    layer, head = np.meshgrid(np.arange(1, L + 1), np.arange(1, H + 1), indexing="ij")
    fig.add_trace(
        go.Heatmap(
            z=flat.max(-1),
            x0=lay["left"] + (lay["tile_w"] - 1) / 2,
            dx=step_x,
            y0=lay["top"] + (lay["tile_h"] - 1) / 2,
            dy=step_y,
            customdata=np.stack([layer, head, ent], -1),
            colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
            showscale=False,
            hovertemplate="layer %{customdata[0]}, head %{customdata[1]}, max %{z:.3g}, "
            "entropy %{customdata[2]:.2f}<extra></extra>",
        )
    )
    # The colour bar (an empty marker trace carries it): the tiles' one range when shared; each tile its own otherwise.
    lo, hi = (float(m.min()), float(m.max())) if norm == "shared" else (0.0, 1.0)
    bar = value_name if norm == "shared" else "each tile: 0 = its min, 1 = its max"
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            showlegend=False,
            hoverinfo="skip",
            marker={"colorscale": plotly_colorscale(cmap), "cmin": lo, "cmax": hi if hi > lo else lo + 1e-6,
                    "color": [lo], "showscale": True,
                    "colorbar": {"thickness": 12, "title": {"text": bar, "side": "right"}}},
        )
    )
    return fig


def token_heatmaps(
    panels: Sequence[tuple[np.ndarray, str, float | None, float | None]], cmap: str = DEFAULT_CMAP,
    value_name: str = "attention", title: str | None = None, height: int = 360,
) -> go.Figure:
    """Token-resolution heatmaps side by side, image orientation (row 0 on top), square cells; hover reads
    'row r, column c, <value_name> v'. Built in one constructor call (a few ms, versus tens for make_subplots), since
    the layer slider rebuilds it on every move.

    Args:
        panels: (values (gh, gw), subplot title, zmin, zmax) per heatmap; None limits mean the map's own range.
    """
    n = len(panels)
    gap = 0.1 if n > 1 else 0.0
    width = (1.0 - gap * (n - 1)) / n
    colorscale = plotly_colorscale(cmap)
    data, layout, notes = [], {}, []
    for i, (z, sub, zmin, zmax) in enumerate(panels):
        z = np.asarray(z, np.float32)
        gh, gw = z.shape
        sx = "" if i == 0 else str(i + 1)
        x0 = i * (width + gap)
        data.append({"type": "heatmap", "z": z, "zmin": zmin, "zmax": zmax, "colorscale": colorscale,
                     "xaxis": f"x{sx}", "yaxis": f"y{sx}", "showscale": i == n - 1,
                     "colorbar": {"thickness": 12, "title": {"text": value_name, "side": "right"}},
                     "hovertemplate": f"row %{{y}}, column %{{x}}, {value_name} %{{z:.4g}}<extra></extra>"})
        layout[f"xaxis{sx}"] = {"domain": [x0, x0 + width], "range": [-0.5, gw - 0.5], "constrain": "domain",
                                "showgrid": False, "zeroline": False, "anchor": f"y{sx}"}
        layout[f"yaxis{sx}"] = {"range": [gh - 0.5, -0.5], "scaleanchor": f"x{sx}", "constrain": "domain",
                                "showgrid": False, "zeroline": False, "anchor": f"x{sx}"}
        notes.append({"text": sub, "x": x0 + width / 2, "y": 1.0, "xref": "paper", "yref": "paper",
                      "xanchor": "center", "yanchor": "bottom", "showarrow": False})
    layout.update(annotations=notes, height=height, margin={"l": 10, "r": 10, "t": 80 if title else 50, "b": 10},
                  plot_bgcolor="white", title=title)
    return go.Figure(data=data, layout=layout)


def scale_topk(scale_probs: np.ndarray, labels: Sequence[str], k: int = 5) -> go.Figure:
    """One top-k bar chart per scale of a multi-scale model (scale 1 = full image, scale s + 1 = crop s)."""
    S = scale_probs.shape[0]
    names = [f"scale {s + 1}" + (" (full image)" if s == 0 else f" (crop {s})") for s in range(S)]
    return topk_rows(list(zip(names, scale_probs, strict=True)), labels, k)


def topk_rows(rows: Sequence[tuple[str, np.ndarray]], labels: Sequence[str], k: int = 5) -> go.Figure:
    """One titled top-k bar chart per (title, (C,) probabilities) row, stacked."""
    S = len(rows)
    fig = make_subplots(rows=S, cols=1, subplot_titles=[t for t, _ in rows], vertical_spacing=0.12)
    for s, (_, probs) in enumerate(rows):
        p = np.asarray(probs, np.float64)
        idx = np.argsort(-p, kind="stable")[: min(k, p.shape[0])]
        fig.add_trace(_bars([100 * p[i] for i in idx], [labels[i] for i in idx]), row=s + 1, col=1)
        fig.update_xaxes(range=[0, 100], ticksuffix="%", row=s + 1, col=1)
        fig.update_yaxes(autorange="reversed", type="category", automargin=True, row=s + 1, col=1)
    fig.update_layout(height=110 + 170 * S, margin={"l": 10, "r": 10, "t": 60, "b": 10},  # titles below the toolbar
                      uniformtext={"minsize": BAR_TEXT_SIZE, "mode": "show"})
    return fig
