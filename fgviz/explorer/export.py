"""Export: every figure of every tab as PNG (>= 1024 px on the long side) and every plotly chart as standalone HTML,
with `manifest.json` (each file: tab, method, caption, what made it) and `numbers.json`, in one ZIP or folder.

`figure_set` draws the views of a set of explanations (no model runs) through the same functions as the app, at
`EXPORT_SIZE`; charts are PNG (drawn with OpenCV, no browser needed: bar charts, and every line chart of the app
through `chart_png`) and HTML (plotly). Each HTML file carries its own copy of plotly.js, so a chart copied out of the
export alone still renders offline (about 3.5 MB each; the ZIP compresses them). Results that needed extra model runs
(Faithfulness, sanity check) join through `extra`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
from PIL import Image

from fgviz.core import __version__
from fgviz.core.explanation import Explanation
from fgviz.explorer import analysis, views
from fgviz.methods import METHODS
from fgviz.viz import overlay
from fgviz.viz.panels import EXPORT_SIZE, Style

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLUE = (0, 114, 178)
_SERIES = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))


def slug(text: str, n: int = 48) -> str:
    """A file-name-safe short form of a caption."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:n].rstrip("_") or "figure"


@dataclass
class FigureSet:
    """Figures by relative path: RGB images (PNG) and plotly charts (HTML), each with a caption and its source."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    charts: dict[str, go.Figure] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # path -> what made it (model, image, parameters)
    numbers: dict[str, Any] = field(default_factory=dict)

    def image(self, path: str, rgb: np.ndarray, caption: str, source: str = "") -> None:
        self.images[path] = ensure_min_side(np.asarray(rgb, np.uint8))
        self.captions[path], self.sources[path] = caption, source

    def chart(self, path: str, fig: go.Figure | None, caption: str, source: str = "", *, png: bool = False) -> None:
        """An interactive chart (HTML); with `png`, also as a PNG drawn from its line traces (`chart_png`)."""
        if fig is not None:
            self.charts[path] = fig
            self.captions[path], self.sources[path] = caption, source
            if png:
                self.image(path.rsplit(".", 1)[0] + ".png", chart_png(fig), caption, source)

    def merge(self, other: FigureSet) -> FigureSet:
        for name in ("images", "charts", "captions", "sources", "numbers"):
            getattr(self, name).update(getattr(other, name))
        return self


def ensure_min_side(rgb: np.ndarray, side: int = EXPORT_SIZE) -> np.ndarray:
    """`rgb` enlarged by an integer factor (nearest: pixels and text stay crisp) to >= `side` on the long side."""
    k = math.ceil(side / max(rgb.shape[:2]))
    return rgb if k <= 1 else np.repeat(np.repeat(rgb, k, 0), k, 1)


# ---------------------------------------------------------------------------------------------------------------
# Charts as PNG (OpenCV), drawn at slide size


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.9, color=(0, 0, 0), right: bool = False) -> None:
    (w, _), _ = cv2.getTextSize(s, _FONT, scale, 2)
    cv2.putText(img, s, (x - w if right else x, y), _FONT, scale, color, 2 if scale >= 0.8 else 1, cv2.LINE_AA)


def bar_chart(pairs: Sequence[tuple[str, float]], title: str, width: int = 1280) -> np.ndarray:
    """Horizontal bars of (label, probability) pairs, highest first, as an RGB image."""
    fs = 0.8
    bar_h, top = 56, 70
    left = max(240, min(width // 2, 16 + max((cv2.getTextSize(n, _FONT, fs, 2)[0][0] for n, _ in pairs), default=0)))
    H = top + bar_h * len(pairs) + 24
    img = np.full((H, width, 3), 255, np.uint8)
    _text(img, title, 16, 44, 1.1)
    span = width - left - 140
    for i, (name, p) in enumerate(pairs):
        y = top + i * bar_h
        _text(img, name, left - 12, y + 36, fs, right=True)
        w = round(span * float(np.clip(p, 0, 1)))
        cv2.rectangle(img, (left, y + 8), (left + max(w, 2), y + bar_h - 8), _BLUE, -1)
        _text(img, f"{100 * p:.1f}%", left + w + 12, y + 36, fs)
    return img


Series = tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, tuple[int, int, int] | None, bool]


def _dashed(img: np.ndarray, pts: np.ndarray, color: tuple[int, int, int], dash: int = 14) -> None:
    """A dashed polyline: `dash`-px strokes with `dash`-px gaps along its length."""
    walked, on = 0.0, True
    for a, b in itertools.pairwise(pts):
        seg = float(np.hypot(*(b - a)))
        t = 0.0
        while t < seg:
            step = min(dash - walked, seg - t)
            if on:
                p0, p1 = a + (b - a) * (t / seg), a + (b - a) * ((t + step) / seg)
                cv2.line(img, tuple(np.rint(p0).astype(int)), tuple(np.rint(p1).astype(int)), color, 3, cv2.LINE_AA)
            t += step
            walked += step
            if walked >= dash:
                walked, on = 0.0, not on


def line_chart(
    series: Mapping[str, Series], title: str, xlabel: str = "", ylabel: str = "",
    width: int = 1280, height: int = 720, ylim: tuple[float, float] | None = None,
) -> np.ndarray:
    """Lines of name -> (x, y) or (x, y, RGB colour or None, dashed) with a legend and axis ranges, as an RGB image."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 120, 32, 72, 116 + 34 * ((len(series) + 1) // 2)
    xs = np.concatenate([np.asarray(s[0], np.float64) for s in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(s[1], np.float64) for s in series.values()]) if series else np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    y0, y1 = ylim if ylim is not None else (min(0.0, float(ys.min())), 1.05 * float(ys.max()) or 1.0)
    y1 = y1 if y1 > y0 else y0 + 1
    pw, ph = width - left - right, height - top - bottom
    X = lambda v: round(left + (v - x0) / (x1 - x0) * pw)  # noqa: E731
    Y = lambda v: round(top + ph - (v - y0) / (y1 - y0) * ph)  # noqa: E731
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (160, 160, 160), 2)
    for t in np.linspace(y0, y1, 5):
        cv2.line(img, (left - 8, Y(t)), (left, Y(t)), (0, 0, 0), 2)
        _text(img, f"{t:.3g}", left - 12, Y(t) + 8, 0.7, right=True)
    for t in np.linspace(x0, x1, 6):
        cv2.line(img, (X(t), top + ph), (X(t), top + ph + 8), (0, 0, 0), 2)
        _text(img, f"{t:.3g}", X(t) - 16, top + ph + 34, 0.7)
    _text(img, title, 16, 44, 1.1)
    _text(img, xlabel, left + pw // 2 - 60, top + ph + 66, 0.8)
    if ylabel:
        _text(img, ylabel, 8, top - 12, 0.7)
    for i, (name, s) in enumerate(series.items()):
        x, y = s[0], s[1]
        c = s[2] if len(s) > 2 and s[2] is not None else _SERIES[i % len(_SERIES)]
        dashed = bool(s[3]) if len(s) > 3 else False
        pts = np.array([[X(a), Y(b)] for a, b in zip(np.asarray(x, float), np.asarray(y, float), strict=True)],
                       np.int32)
        if dashed:
            _dashed(img, pts.astype(np.float64), c)
        else:
            cv2.polylines(img, [pts], False, c, 3, cv2.LINE_AA)
        lx, ly = left + (i % 2) * (pw // 2), top + ph + 100 + 34 * (i // 2)  # legend below the plot
        if dashed:
            _dashed(img, np.array([[lx, ly - 8], [lx + 40, ly - 8]], np.float64), c, dash=8)
        else:
            cv2.line(img, (lx, ly - 8), (lx + 40, ly - 8), c, 4)
        _text(img, name[:48], lx + 50, ly, 0.7)
    return img


def _rgb(color: Any, default: tuple[int, int, int]) -> tuple[int, int, int]:
    m = re.fullmatch(r"rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*[\d.]+)?\)", str(color or "").replace(" ", ""))
    return tuple(int(v) for v in m.groups()) if m else default


def _plain_text(s: Any) -> str:
    return re.sub(r"<[^>]+>", " ", str(s or "")).replace("  ", " ").strip()


def chart_png(fig: go.Figure, width: int = 1280) -> np.ndarray:
    """A plotly figure of line traces (deletion/insertion curves, TASN's marginals) as an RGB image for slides: one
    `line_chart` per subplot (in the order of its x axes, titled by the subplot titles), one above the other, each
    trace in its own colour and dash. Traces that are not lines are skipped."""
    panels: dict[str, dict[str, Series]] = {}
    for i, t in enumerate(fig.data):
        if t.type != "scatter" or t.x is None or t.y is None or "lines" not in (t.mode or "lines"):
            continue
        name = _plain_text(t.name) or f"series {i + 1}"
        color = _rgb(t.line.color if t.line else None, _SERIES[i % len(_SERIES)])
        dashed = bool(t.line and t.line.dash not in (None, "solid"))
        series = panels.setdefault(t.xaxis or "x", {})
        series[name if name not in series else f"{name} ({i + 1})"] = (np.asarray(t.x, float),
                                                                       np.asarray(t.y, float), color, dashed)
    if not panels:
        raise ValueError("chart_png draws line charts; this figure has no line traces")
    titles = [_plain_text(a.text) for a in (fig.layout.annotations or ())]
    title = _plain_text(fig.layout.title.text if fig.layout.title else "")
    images = []
    for n, (axis, series) in enumerate(sorted(panels.items(), key=lambda kv: int(kv[0][1:] or 1))):
        lay = fig.layout[axis.replace("x", "xaxis", 1)]
        sub = titles[n] if n < len(titles) and len(panels) > 1 else ""
        head = ": ".join(t for t in (title if n == 0 or len(panels) == 1 else "", sub) if t) or title
        rng = fig.layout[f"yaxis{axis[1:]}"].range if fig.layout[f"yaxis{axis[1:]}"] else None
        images.append(line_chart(series, head[:70], _plain_text(lay.title.text if lay and lay.title else ""),
                                 width=width, ylim=tuple(rng) if rng else None))
    return np.concatenate(images, 0)


# ---------------------------------------------------------------------------------------------------------------
# Figure set


def figure_set(
    expls: Mapping[str, Explanation],
    style: Style | None = None,
    *,
    fusion: str = "mean",
    discard: float = 0.0,
    sources: Mapping[str, str] | None = None,
) -> FigureSet:
    """Every figure of the Overview, Layers and heads and Internals tabs for `expls` (name -> explanation), drawn at
    export size without running a model. `sources` gives each name's "what made it" line."""
    style = replace(style or Style(), min_size=EXPORT_SIZE)
    sources = dict(sources or {})
    fs = FigureSet()
    for name, ov in views.overview(dict(expls), style).items():
        e, method, src = expls[name], METHODS[expls[name].method], sources.get(name, "")
        fs.numbers[name] = views.summary(e)
        fs.image(f"overview/{name}.png", ov.main, ov.caption, src)
        for i, (rgb, cap) in enumerate(ov.panels, start=1):
            fs.image(f"overview/{name}_{i}_{slug(cap, 32)}.png", rgb, cap, src)
        own = e.extras.get("backbone_probs")  # backbone mode: the network's own top-5 first, as on screen
        top = "top-5 prediction" if own is None else views.BACKBONE_TITLE
        fs.image(f"charts/{name}_top5.png", bar_chart(e.topk(5, own), f"{method.title}: {top}"), top, src)
        fs.chart(f"charts/{name}_top5.html", views.topk_figure(e), top, src)
        if e.scale_probs is not None:
            for s, sp in enumerate(e.scale_probs):
                chart = bar_chart(e.topk(5, sp), f"{method.title} scale {s + 1}")
                fs.image(f"charts/{name}_scale{s + 1}_top5.png", chart,
                         f"top-5 of scale {s + 1} alone", src)
            fs.chart(f"charts/{name}_scales_top5.html", views.scale_figure(e), "top-5 of each scale alone", src)
        elif own is not None:  # backbone mode: the method's own path beside the network's top-5
            path = "top-5 of the method's own path"
            fs.image(f"charts/{name}_path_top5.png", bar_chart(e.topk(5), f"{method.title}: {path}"), path, src)
            fs.chart(f"charts/{name}_path_top5.html", views.scale_figure(e), path, src)
        steps = method.steps(e, style)
        if steps is not None:
            for i, (rgb, cap) in enumerate(steps.panels, start=1):
                fs.image(f"internals/{name}/{i:02d}_{slug(cap, 40)}.png", rgb, cap, src)
            fs.chart(f"internals/{name}/figure.html", steps.figure, f"{method.title} internals chart", src,
                     png=True)
            fs.numbers[name]["internals"] = steps.numbers
        if e.attn_q is not None and e.grid is not None:
            layers = layer_figures(name, e, style, fusion, discard, src)
            fs.numbers[name].update(layers.numbers.pop(name))
            fs.merge(layers)
    return fs


def layer_figures(name: str, e: Explanation, style: Style, fusion: str, discard: float, src: str) -> FigureSet:
    """The Layers and heads tab of one ViT explanation: the rollout at every layer, the layer x head grid, the
    per-layer statistics."""
    fs = FigureSet()
    an = analysis.AttentionAnalysis(e)
    roll = an.rollout(fusion, discard)
    for layer in range(1, an.L + 1):
        lv = analysis.layer_view(an, layer, style, fusion=fusion, discard=discard)
        fs.image(f"layers/{name}/rollout_layer{layer:02d}.png", lv.rollout, lv.caption, src)
    fs.chart(f"layers/{name}/rollout_layers.html", analysis.layer_view(an, an.L, style, fusion=fusion,
                                                                        discard=discard).rollout_fig,
             "rollout through every layer, token resolution", src)
    grid, _ = overlay.tile_maps(an.query_grid(0), cmap=style.cmap, norm="shared" if style.shared else "each", tile=96)
    fs.image(f"layers/{name}/heads_cls.png", grid, "raw attention of CLS over the patches, layers x heads", src)
    ent, dist = an.stats()
    x = np.arange(1, an.L + 1)
    fs.image(f"charts/{name}_layer_entropy.png", line_chart({"head mean": (x, ent.mean(1))}, "attention entropy",
                                                             "layer", "nats"),
             "per-layer attention entropy (head mean)", src)
    fs.image(f"charts/{name}_layer_distance.png", line_chart({"head mean": (x, dist.mean(1))},
                                                              "mean attention distance", "layer", "px"),
             "per-layer mean attention distance (head mean)", src)
    fs.chart(f"charts/{name}_layer_stats.html", analysis.stats_figure(an),
             "per-layer attention entropy and mean attention distance, every head", src)
    fs.numbers[name] = {"layers": {"fusion": fusion, "discard": float(discard), "entropy": ent.round(5).tolist(),
                                   "mean_distance": dist.round(4).tolist(),
                                   "rollout_max": roll.reshape(an.L, -1).max(1).round(6).tolist()}}
    return fs


# ---------------------------------------------------------------------------------------------------------------
# Writing


def png_bytes(rgb: np.ndarray, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8), "RGB").save(buf, "PNG", optimize=False, compress_level=compress_level)
    return buf.getvalue()


def png_file(rgb: np.ndarray, folder: str | Path) -> str:
    """`rgb` as a PNG under `folder` (in a subfolder named by its content, written atomically; an existing copy is
    reused), with fast compression (zlib level 1: about a quarter of the time of level 6 for 25% more bytes), for a
    view the app serves at once."""
    data = png_bytes(rgb, compress_level=1)
    path = Path(folder) / f"fgviz-{hashlib.sha256(data).hexdigest()[:32]}" / "view.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return str(path)


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def entries(fs: FigureSet, meta: Mapping[str, Any] | None = None) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every file of an export: PNGs, standalone HTML charts, the manifest and
    numbers.json."""
    from plotly.offline import get_plotlyjs

    manifest = []
    for path, rgb in fs.images.items():
        yield path, png_bytes(rgb)
        manifest.append({"file": path, "kind": "png", "size": list(rgb.shape[1::-1])})
    script = f"<script>{get_plotlyjs()}</script>" if fs.charts else ""
    for path, fig in fs.charts.items():
        # plotly.js inline: the file renders alone, offline, wherever it is copied to.
        html = fig.to_html(include_plotlyjs=False, full_html=True)
        yield path, html.replace("<head>", f'<head><meta charset="utf-8">{script}', 1).encode()
        manifest.append({"file": path, "kind": "html"})
    for item in manifest:
        item.update(tab=item["file"].split("/")[0], caption=fs.captions.get(item["file"], ""),
                    source=fs.sources.get(item["file"], ""))
    doc = {"fgviz_version": __version__, **(dict(meta) if meta else {})}
    yield "manifest.json", json.dumps({**doc, "files": manifest}, indent=1, default=_default).encode()
    yield "numbers.json", json.dumps({**doc, "methods": fs.numbers, "figures": fs.captions}, indent=1,
                                     default=_default).encode()


def write_zip(path: str | Path, fs: FigureSet, meta: Mapping[str, Any] | None = None) -> Path:
    """Every file of `fs` (see `entries`) in a ZIP; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries(fs, meta):
            # Each HTML chart carries plotly.js (4.8 MB): the fastest deflate level packs it nearly as small.
            z.writestr(name, data, compresslevel=1 if name.endswith(".html") else None)
    return path


def write_folder(folder: str | Path, fs: FigureSet, meta: Mapping[str, Any] | None = None) -> Path:
    """The same files as `write_zip`, as loose files under `folder`."""
    folder = Path(folder)
    for name, data in entries(fs, meta):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return folder
