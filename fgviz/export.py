"""Export: every figure of the explorer as PNG plus a JSON of the numbers, in one ZIP (app button and CLI).

`figure_set` renders the panels of `fgviz.views` for a set of explanations (no model runs), and the plotly charts
(top-5 bars, per-layer statistics, deletion/insertion curves) are redrawn as plain PNG charts with OpenCV, so the
export needs no browser and no plotting backend. `write_zip` packs them with `numbers.json`, which holds each
method's prediction, probabilities, boxes, tokens, parameters, per-layer statistics and the caption of every PNG.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fgviz import views
from fgviz.explanation import Explanation
from fgviz.viz import overlay

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLUE = (0, 114, 178)
_SERIES = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233))


def slug(text: str, n: int = 48) -> str:
    """A file-name-safe short form of a caption."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return s[:n].rstrip("_") or "figure"


# ---------------------------------------------------------------------------------------------------------------
# Charts as PNG (OpenCV)


def _text(img: np.ndarray, s: str, x: int, y: int, scale: float = 0.45, color=(0, 0, 0), right: bool = False) -> None:
    (w, _), _ = cv2.getTextSize(s, _FONT, scale, 1)
    cv2.putText(img, s, (x - w if right else x, y), _FONT, scale, color, 1, cv2.LINE_AA)


def bar_chart(pairs: Sequence[tuple[str, float]], title: str, width: int = 640) -> np.ndarray:
    """Horizontal bars of (label, probability) pairs, highest first, as an RGB image."""
    bar_h, top, left = 26, 36, max(120, min(width // 2, 8 + max((cv2.getTextSize(n, _FONT, 0.45, 1)[0][0]
                                                                  for n, _ in pairs), default=0)))
    H = top + bar_h * len(pairs) + 12
    img = np.full((H, width, 3), 255, np.uint8)
    _text(img, title, 8, 22, 0.55)
    span = width - left - 70
    for i, (name, p) in enumerate(pairs):
        y = top + i * bar_h
        _text(img, name, left - 6, y + 17, right=True)
        w = round(span * float(np.clip(p, 0, 1)))
        cv2.rectangle(img, (left, y + 4), (left + max(w, 1), y + bar_h - 4), _BLUE, -1)
        _text(img, f"{100 * p:.1f}%", left + w + 6, y + 17)
    return img


def line_chart(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, xlabel: str = "", ylabel: str = "",
    width: int = 640, height: int = 360, ylim: tuple[float, float] | None = None,
) -> np.ndarray:
    """Lines of name -> (x, y) with a legend and axis ranges, as an RGB image."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, 16, 36, 44
    xs = np.concatenate([np.asarray(x, np.float64) for x, _ in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, np.float64) for _, y in series.values()]) if series else np.zeros(1)
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1
    y0, y1 = ylim if ylim is not None else (min(0.0, float(ys.min())), 1.05 * float(ys.max()) or 1.0)
    y1 = y1 if y1 > y0 else y0 + 1
    pw, ph = width - left - right, height - top - bottom
    X = lambda v: round(left + (v - x0) / (x1 - x0) * pw)  # noqa: E731
    Y = lambda v: round(top + ph - (v - y0) / (y1 - y0) * ph)  # noqa: E731
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (160, 160, 160), 1)
    for t in np.linspace(y0, y1, 5):
        cv2.line(img, (left - 4, Y(t)), (left, Y(t)), (0, 0, 0), 1)
        _text(img, f"{t:.3g}", left - 6, Y(t) + 4, 0.38, right=True)
    for t in np.linspace(x0, x1, 6):
        cv2.line(img, (X(t), top + ph), (X(t), top + ph + 4), (0, 0, 0), 1)
        _text(img, f"{t:.3g}", X(t) - 8, top + ph + 18, 0.38)
    _text(img, title, 8, 22, 0.55)
    _text(img, xlabel, left + pw // 2 - 30, height - 8, 0.42)
    if ylabel:
        _text(img, ylabel, 4, top - 6, 0.38)
    for i, (name, (x, y)) in enumerate(series.items()):
        c = _SERIES[i % len(_SERIES)]
        pts = np.array([[X(a), Y(b)] for a, b in zip(np.asarray(x, float), np.asarray(y, float), strict=True)],
                       np.int32)
        cv2.polylines(img, [pts], False, c, 2, cv2.LINE_AA)
        ly = top + 14 + 16 * i
        cv2.line(img, (left + pw - 200, ly - 4), (left + pw - 180, ly - 4), c, 2)
        _text(img, name[:30], left + pw - 175, ly, 0.4)
    return img


# ---------------------------------------------------------------------------------------------------------------
# Figure set


def figure_set(
    expls: Mapping[str, Explanation],
    style: views.Style | None = None,
    *,
    fusion: str = "mean",
    discard: float = 0.0,
    extra: Mapping[str, tuple[np.ndarray, str]] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, Any]]:
    """Render every panel for `expls` (method -> explanation) without running a model.

    Returns:
        images: relative PNG path -> RGB uint8;
        captions: relative PNG path -> caption;
        numbers: method -> JSON-able numbers (views.summary + per-layer statistics + step details).
    """
    style = style or views.Style()
    images: dict[str, np.ndarray] = {}
    captions: dict[str, str] = {}
    numbers: dict[str, Any] = {}

    def add(path: str, rgb: np.ndarray, caption: str) -> None:
        images[path] = np.asarray(rgb, np.uint8)
        captions[path] = caption

    for method, ov in views.overview(dict(expls), style).items():
        e = expls[method]
        numbers[method] = views.summary(e)
        add(f"overview/{method}.png", ov.main, ov.caption)
        for i, (rgb, cap) in enumerate(ov.panels[1:], start=1):
            add(f"overview/{method}_{i}_{slug(cap, 32)}.png", rgb, cap)
        add(f"charts/{method}_top5.png", bar_chart(e.topk(5), f"{views.METHOD_TITLES[method]}: top-5"),
            "top-5 prediction")
        if method == "rams_trans" and e.scale_probs is not None:
            for s, sp in enumerate(e.scale_probs):
                add(f"charts/rams_trans_scale{s + 1}_top5.png", bar_chart(e.topk(5, sp), f"RAMS-Trans scale {s + 1}"),
                    f"top-5 of scale {s + 1} alone")
        # Internals
        if method == "transfg":
            steps = views.transfg_steps(e, style)
        elif method == "rams_trans":
            steps, info = views.rams_steps(e, style)
            numbers[method]["steps"] = info["steps"]
        else:
            steps, _, info = views.tasn_steps(e, style)
            numbers[method]["internals"] = info
        for i, (rgb, cap) in enumerate(steps, start=1):
            add(f"internals/{method}/{i:02d}_{slug(cap, 40)}.png", rgb, cap)
        # Layers and heads
        if e.attn_q is not None and e.grid is not None:
            an = views.AttentionAnalysis(e)
            roll = an.rollout(fusion, discard)
            for layer in range(1, an.L + 1):
                lv = views.layer_view(an, layer, style, fusion=fusion, discard=discard)
                add(f"layers/{method}/rollout_layer{layer:02d}.png", lv.rollout, lv.caption)
            grid, _ = overlay.tile_maps(an.query_grid(0), cmap=style.cmap, norm="shared" if style.shared else "each")
            add(f"layers/{method}/heads_cls.png", grid, "raw attention of CLS over the patches, layers x heads")
            ent, dist = an.stats()
            x = np.arange(1, an.L + 1)
            add(f"charts/{method}_layer_stats.png", views.hstack([
                line_chart({"head mean": (x, ent.mean(1))}, "attention entropy", "layer", "nats"),
                line_chart({"head mean": (x, dist.mean(1))}, "mean attention distance", "layer", "px"),
            ]), "per-layer attention entropy and mean attention distance (head mean)")
            numbers[method]["layers"] = {"fusion": fusion, "discard": float(discard),
                                         "entropy": ent.round(5).tolist(), "mean_distance": dist.round(4).tolist(),
                                         "rollout_max": roll.reshape(an.L, -1).max(1).round(6).tolist()}
    for path, (rgb, cap) in (extra or {}).items():
        add(path, rgb, cap)
    return images, captions, numbers


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8), "RGB").save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_zip(path: str | Path, images: Mapping[str, np.ndarray], numbers: Mapping[str, Any],
              captions: Mapping[str, str] | None = None, meta: Mapping[str, Any] | None = None) -> Path:
    """Write `images` as PNGs and `numbers.json` (numbers, captions, meta) into a ZIP; returns its path."""
    from fgviz import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"fgviz_version": __version__, **(dict(meta) if meta else {}), "methods": dict(numbers),
           "figures": dict(captions or {})}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, rgb in images.items():
            z.writestr(name, png_bytes(rgb))
        z.writestr("numbers.json", json.dumps(doc, indent=1, default=_default))
    return path


def write_folder(folder: str | Path, images: Mapping[str, np.ndarray], numbers: Mapping[str, Any],
                 captions: Mapping[str, str] | None = None, meta: Mapping[str, Any] | None = None) -> Path:
    """The same content as `write_zip`, as loose files under `folder`."""
    from fgviz import __version__

    folder = Path(folder)
    for name, rgb in images.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(png_bytes(rgb))
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"fgviz_version": __version__, **(dict(meta) if meta else {}), "methods": dict(numbers),
           "figures": dict(captions or {})}
    (folder / "numbers.json").write_text(json.dumps(doc, indent=1, default=_default))
    return folder


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def export_zip(path: str | Path, expls: Mapping[str, Explanation], style: views.Style | None = None, *,
               fusion: str = "mean", discard: float = 0.0, meta: Mapping[str, Any] | None = None,
               extra_numbers: Mapping[str, Any] | None = None) -> Path:
    """`figure_set` + `write_zip` in one call."""
    style = style or views.Style()
    images, captions, numbers = figure_set(expls, style, fusion=fusion, discard=discard)
    for k, v in (extra_numbers or {}).items():
        if isinstance(v, dict) and isinstance(numbers.get(k), dict):
            numbers[k].update(v)
        else:
            numbers[k] = v
    info = {"style": {"cmap": style.cmap, "alpha": style.alpha, "norm": style.norm}, **(dict(meta) if meta else {})}
    return write_zip(path, images, numbers, captions, info)
