"""Views shared by every method: the Overview with one colour scale, top-k charts, numbers, Faithfulness figures.

Each method draws its own column, steps and maps (`fgviz.methods.<name>.views`, through `fgviz.methods.Method`); this
module only assembles them, so nothing here branches on a method's name or re-states its maths.

Normalisation: with `Style.norm == "shared"` (the default) every group of panels that shows one quantity uses one
colour scale (the methods of the Overview, where each map is first expressed relative to its own mean, "x uniform");
with "panel" each panel is stretched to its own range.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fgviz.core.explanation import WEIGHTS_KINDS, Explanation, jsonable
from fgviz.methods import METHODS
from fgviz.methods.method import Overview
from fgviz.viz import figures
from fgviz.viz.panels import Style, caption_top1, hstack, label_strip, relative, scale_range
from fgviz.viz.panels import heat as heat_panel

NOTES_PATH = Path(__file__).resolve().parents[2] / "assets" / "notes.md"


def examples() -> list[list[str]]:
    """The app's examples: [path, domain] of every image in assets/ (named <domain>_<n>)."""
    assets = NOTES_PATH.parent
    return [[str(p), p.name.split("_")[0]] for p in sorted(assets.glob("*.jpg")) + sorted(assets.glob("*.png"))]


def title(method: str) -> str:
    return METHODS[method].title if method in METHODS else method


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


def weights_note(e: Explanation, synthetic: bool = False) -> str:
    """One line of Markdown that says which weights produced `e` (the app's banner); the warning about real photos
    only for an image that is not one of the generator's (`synthetic`)."""
    kind = e.weights_kind or "local"
    extra = ": real photos are far outside what they learned" if kind == "demo" and not synthetic else ""
    mark = "⚠️ " if kind in ("random", "backbone") else ""
    line = f"{mark}**{title(e.method)}** `{e.model_name or '?'}`: {WEIGHTS_KINDS.get(kind, kind)}{extra}"
    if e.source.get("repo"):  # a published checkpoint: which repo and revision, trained on what, under which licence
        src = e.source
        line += (f" (`{src['repo']}`@{src.get('revision', 'main')[:8]}, trained on "
                 f"{src.get('dataset', 'data the repo does not state')}, "
                 f"licence {src.get('license') or 'not stated'})")
    if e.missed_targets:  # the card's own verdict: these figures did not beat chance / re-init / the oracle enough
        line += (f". ⚠️ Its card records missed localisation targets ({'; '.join(e.missed_targets)}): read those "
                 "maps as an illustration, not as evidence")
    return line


def overview(expls: dict[str, Explanation], style: Style, *, main_only: bool = False) -> dict[str, Overview]:
    """The Overview columns for any set of methods, one colour scale for all maps when shared.

    Each map is first expressed relative to its own mean (x times uniform) so that maps of different methods and
    resolutions can share a scale: vmin 0, vmax the largest value of any of them. `main_only` draws just the
    signature views (the same pixels as the full overview's mains).
    """
    rel = {m: METHODS[e.method].overview_maps(e) for m, e in expls.items()}
    shared_max = max((float(np.nanmax(v)) for maps in rel.values() for v in maps.values()), default=1.0)
    vrange = (0.0, shared_max) if style.shared else None
    return {m: METHODS[e.method].overview(e, rel[m], style, vrange, main_only) for m, e in expls.items()}


BACKBONE_TITLE = "the wrapped network's own top-5"


def topk_figure(e: Explanation, k: int = 5) -> go.Figure:
    """Top-k bar chart of the final prediction; in backbone mode, where the method's path re-uses the network's
    blocks on inputs they were not trained on (TransFG's part layer), of the network's own prediction instead."""
    own = e.extras.get("backbone_probs")
    fig = figures.topk_bar(e, k=k, probs=own, title=BACKBONE_TITLE if own is not None else None)
    fig.update_layout(height=230, yaxis={"automargin": True}, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def scale_figure(e: Explanation, k: int = 5) -> go.Figure | None:
    """The column's second chart: per-scale top-k (multi-scale methods); in backbone mode the method's own path,
    labelled as such; else None."""
    if e.scale_probs is not None:
        return figures.scale_topk(e.scale_probs, e.labels, k)
    if e.extras.get("backbone_probs") is not None:
        path = f"{title(e.method)}'s path: its extra parts run with the network's weights, not trained for them"
        return figures.topk_rows([(path, e.probs)], e.labels, k)
    return None


def summary(e: Explanation, k: int = 5) -> dict[str, Any]:
    """JSON-able numbers of an explanation: prediction, top-k, all probabilities, parameters, and the method's own
    (boxes, tokens, per-scale predictions, sampling grids)."""
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
        "params": jsonable(e.params),
    }
    out.update(jsonable(METHODS[e.method].summary(e)))
    return out


def map_choices(method: str) -> tuple[str, ...]:
    return METHODS[method].map_choices()


def named_map(e: Explanation, name: str) -> np.ndarray:
    """(H, W) pixel map of a Faithfulness map choice (metrics use it as is)."""
    return METHODS[e.method].named_map(e, name)


def curves_figure(res: Any, title_text: str) -> go.Figure:
    """Deletion/insertion curves with AUC (solid) and the random-map curves (dashed, mean of several draws)."""
    fig = figures.curves(res.deletion_curve, res.insertion_curve,
                         {"deletion": res.deletion.value, "insertion": res.insertion.value}, title=title_text)
    for name, y, auc, color in (("deletion", res.random_deletion_curve, res.deletion.chance, figures.DELETION_COLOR),
                                ("insertion", res.random_insertion_curve, res.insertion.chance,
                                 figures.INSERTION_COLOR)):
        fig.add_trace(go.Scatter(x=res.fractions, y=y, mode="lines", name=f"random maps, {name} (AUC {auc:.3f})",
                                 line={"color": color, "dash": "dash", "width": 1}))
    fig.update_layout(height=400)
    return fig


def side_by_side(e1: Explanation, e2: Explanation, map_name: str, style: Style, captions: tuple[str, str]
                 ) -> np.ndarray:
    """The same map of two explanations next to each other, captioned. Each map is expressed relative to its own
    mean (x uniform) and, with a shared `style` (the default), both use one colour scale: a map that hardly varies
    then looks flat beside one that does, which is what the model-randomisation test is there to show. With
    `style.norm == "panel"` each panel is stretched to its own range (the caption says so)."""
    maps = [relative(named_map(e, map_name)) for e in (e1, e2)]
    scale = "one colour scale for both" if style.shared else "each its own colour scale"
    panels = []
    for i, (e, cap) in enumerate(((e1, captions[0]), (e2, captions[1]))):
        lo, hi = scale_range(maps, style, i)
        panels.append(label_strip(heat_panel(e.image, maps[i], style, lo, hi).finish(style), f"{cap} ({scale})"))
    return hstack(panels, gap=8)


__all__ = ["caption_top1", "curves_figure", "map_choices", "named_map", "notes", "overview", "scale_figure",
           "side_by_side", "summary", "title", "topk_figure", "weights_note"]
