"""The notebook API: the app's views as figures that show themselves in Jupyter and Colab, and the checks that need a
model (deletion/insertion, the pointing game, the randomisation sanity check), for `notebooks/` and for slides.

Each function draws through the function the app's tab calls (`fgviz.explorer.views`, `.analysis`, `.export`, the
`fgviz.methods` seam) and measures through `fgviz.core.metrics`, so a notebook shows the app's pixels and the model
cards' figures; nothing here restates a method's maths. Figures are `fgviz.viz.Figure`s (PNG panels with captions as
text, sized for a projector); results that carry a figure show it when they are the last value of a cell.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_map_to_pixels
from fgviz.explorer import analysis, export, views
from fgviz.methods import METHODS, FineGrainedModel, Method
from fgviz.viz import overlay
from fgviz.viz.display import Figure
from fgviz.viz.overlay import OKABE_ITO
from fgviz.viz.panels import Style, caption_top1, heat, relative, tiles

STYLE = Style()  # the app's default style: shared colour scale, viridis, 384-px panels for the demo models
CHART_SCALE = 0.62  # charts are drawn at slide size (1280 px): shown about 800 px wide

_ANALYSES: weakref.WeakKeyDictionary[Explanation, analysis.AttentionAnalysis] = weakref.WeakKeyDictionary()


def examples(domain: str | None = None) -> list[Path]:
    """The app's example images (`assets/<domain>_<n>.jpg`, generator images that carry their arguments), of one
    domain ("birds", "cars") or all."""
    return [Path(p) for p, d in views.examples() if domain is None or d == domain]


def _method(e: Explanation) -> Method:
    try:
        return METHODS[e.method]
    except KeyError:
        raise ValueError(f"unknown method {e.method!r}; available: {sorted(METHODS)}") from None


def _missed(expls: tuple[Explanation, ...]) -> str:
    """A line per model whose card records missed localisation targets (the app's banner)."""
    return "\n".join(f"- **{_method(e).title}** `{e.model_name}`: its model card records missed localisation targets "
                     f"({'; '.join(e.missed_targets)}): an illustration, not evidence." for e in expls
                     if e.missed_targets)


# ---------------------------------------------------------------------------------------------------------------
# The app's views as figures


def overview(*expls: Explanation, shared: bool = True, panels: bool = False, style: Style | None = None) -> Figure:
    """The Overview tab: each explanation's signature view side by side, with its model and top-1.

    Args:
        expls: explanations of the same image by several models (any methods).
        shared: one colour scale for all maps ("x uniform", the app's default), else each map its own.
        panels: add each column's further panels (TransFG's PSM input, RAMS-Trans's zoomed crops, TASN's detail map
            and resampled images).
        style: colormap, opacity, panel size (default `STYLE`).
    """
    if not expls:
        raise ValueError("overview needs at least one explanation")
    style = replace(style or STYLE, norm="shared" if shared else "panel")
    named = {str(i): e for i, e in enumerate(expls)}
    columns = views.overview(named, style, main_only=not panels)
    out = []
    for key, e in named.items():
        ov, title = columns[key], _method(e).title
        out.append((ov.main, f"{title} ({e.model_name}), {caption_top1(e.labels, e.probs)}: {ov.caption}"))
        out += [(rgb, f"{title}: {cap}") for rgb, cap in ov.panels]
    scale = "one colour scale for all maps" if shared else "each map on its own colour scale"
    return Figure(out, title=f"Overview ({scale}, x uniform: 1 = attention spread evenly)", notes=_missed(expls))


def steps(expl: Explanation, *, shared: bool = True, style: Style | None = None, **params: Any) -> Figure:
    """The Internals tab: the method step by step, as the model ran or previewed for other parameters.

    A preview (RAMS-Trans `alpha`; TASN `gamma`, `dense`, `iters`, `out_size`, `detail_channel`) calls the model's
    own functions on the explanation's stored map or features, without a forward pass; what needs one (the zoomed
    crop's prediction, TASN's prediction) comes from `model.explain(image, **params)`. The figure's notes say which.
    `shared`: the maps of one step on one colour scale (the app's default), else each its own.
    """
    style = replace(style or STYLE, norm="shared" if shared else "panel")
    method = _method(expl)
    known = {p.name for p in method.step_params}
    if set(params) - known:
        raise ValueError(f"{method.title} steps take {sorted(known) or 'no parameters'}, got {sorted(params)}")
    st = method.steps(expl, style, {**method.params_of(expl), **params} if known else None)
    if st is None:
        raise ValueError(f"{method.title} has no step-by-step view")
    shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in st.params.items())
    title = f"{method.title} step by step ({expl.model_name}{'; ' + shown if shown else ''})"
    return Figure(st.panels, title=title + (": preview" if st.preview else ""), notes=st.notes,
                  numbers=dict(st.numbers))


def _analysis(expl: Explanation) -> analysis.AttentionAnalysis:
    an = _ANALYSES.get(expl)
    if an is None:
        an = _ANALYSES[expl] = analysis.AttentionAnalysis(expl)
    return an


def layer_rollout(expl: Explanation, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """(L, gh, gw) rollout of the CLS token through layers 1..l, for every l, from the explanation's stored queries and
    keys (the Layers tab's: the models' softmax, head fusion and rollout functions; "mean" with no discard is the
    model's own `expl.rollout`).

    Args:
        head_fusion: "mean", "max" or "min" over the heads of each layer.
        discard_ratio: share of the weakest attention links of each layer set to zero (vit-explain's option;
            links to and from the CLS token are kept).
    """
    return np.array(_analysis(expl).rollout(head_fusion, discard_ratio), np.float32)


def layers(expl: Explanation, head_fusion: str = "mean", discard_ratio: float = 0.0, layer: int | None = None, *,
           shared: bool = True, style: Style | None = None) -> Figure:
    """The Layers tab: the rollout through layers 1..l for every l (token maps) and the rollout at `layer` (default
    the last) over the image; `shared`: one colour scale for every layer (the app's default, so the layers compare),
    else each map its own (shows the structure of a flat one)."""
    style = replace(style or STYLE, norm="shared" if shared else "panel")
    an = _analysis(expl)
    roll = an.rollout(head_fusion, discard_ratio)  # (L, gh, gw)
    rel = np.stack([relative(r) for r in roll])
    names = [f"1..{li + 1}" for li in range(an.L)]
    setting = f"head fusion {head_fusion}, discard ratio {discard_ratio:g}"
    lv = analysis.layer_view(an, layer or an.L, style, fusion=head_fusion, discard=discard_ratio)
    cols = -(-an.L // 2)  # two rows: tiles large enough to read
    return Figure([(tiles(rel, names, style, cols=cols), f"rollout through layers 1..l for every l ({setting}; x "
                                                         f"uniform), {an.grid[0]}x{an.grid[1]} tokens"),
                   (lv.rollout, lv.caption)],
                  title=f"{_method(expl).title} ({expl.model_name}): per-layer rollout, {setting}",
                  numbers={"rollout_max": rel.reshape(an.L, -1).max(1).round(3).tolist()})


# ---------------------------------------------------------------------------------------------------------------
# Maps and the pointing game


def map_names(expl: Explanation) -> tuple[str, ...]:
    """The maps of `expl` the Faithfulness tab can score (the first is the default)."""
    return _method(expl).map_choices()


def saliency(expl: Explanation, name: str | None = None) -> np.ndarray:
    """(H, W) pixel map `name` of `expl` (one of `map_names(expl)`, default the first) over `expl.image`."""
    return _method(expl).named_map(expl, name or map_names(expl)[0])


def _pixels(expl: Explanation, m: str | np.ndarray | None) -> tuple[np.ndarray, str]:
    """A map name, an (H, W) pixel map or a (gh, gw) token map of `expl` as an (H, W) pixel map, and its name."""
    if m is None or isinstance(m, str):
        name = m or map_names(expl)[0]
        return saliency(expl, name), name
    a = np.asarray(m, np.float32)
    if a.shape == expl.size:
        return a, "given map"
    if expl.grid is not None and a.shape == tuple(expl.grid):
        return token_map_to_pixels(a, expl.patch_size, expl.stride, expl.size), "given token map"
    raise ValueError(f"a map must be (H, W) = {expl.size} or the token grid {expl.grid}, got {a.shape}")


def localisation(expl: Explanation, part_mask: np.ndarray) -> dict[str, metrics.MetricResult]:
    """The model card's localisation figures for one image (`fgviz.evaluate` averages them over 200 samples): the
    rollout's energy pointing game, TransFG's PSM part hit rate, RAMS-Trans's crop recall and area, TASN's
    magnification, each with its chance value; `*_oracle` = the same algorithm fed the part mask itself.

    Args:
        part_mask: (H, W) bool deciding-part mask in `expl.image`'s pixels, e.g. `make_sample(domain, index, seed,
            size=model.config.img_size).part_mask` for a sample explained at the model's input size.
    """
    return _method(expl).figures(expl, _mask(expl, part_mask), oracles=True)


def _mask(expl: Explanation, part_mask: np.ndarray) -> np.ndarray:
    m = np.asarray(part_mask).astype(bool)
    if m.shape != expl.size:
        raise ValueError(f"the part mask {m.shape} must be in the explained image's pixels {expl.size}: explain the "
                         "sample at the model's input size (make_sample(..., size=model.config.img_size))")
    if not m.any():
        raise ValueError("the part mask is empty")
    return m


@dataclass(frozen=True)
class PointingGame:
    """Does a map point at the deciding parts? `energy`: the share of its mass on them (chance: their share of the
    image, what a uniform map scores); `hit`: its maximum lies on a part, within 1 px (chance: the same share)."""

    map_name: str
    energy: metrics.MetricResult
    hit: bool
    hit_chance: float
    max_at: tuple[int, int]  # (x, y) in the explained image's pixels
    figure: Figure = field(repr=False)

    def _repr_html_(self) -> str:
        return self.figure._repr_html_()


def pointing_game(expl: Explanation, part_mask: np.ndarray, saliency_map: str | np.ndarray | None = None, *,
                  style: Style | None = None) -> PointingGame:
    """The pointing game of one map against the synthetic ground truth (the Faithfulness tab's).

    Args:
        part_mask: (H, W) bool deciding-part mask in `expl.image`'s pixels (see `localisation`).
        saliency_map: a map name (`map_names(expl)`, default the first), an (H, W) pixel map or a (gh, gw) token map
            (e.g. a row of `layer_rollout`).
    """
    style = style or STYLE
    mask = _mask(expl, part_mask)
    m, name = _pixels(expl, saliency_map)
    energy = metrics.energy_pointing_game(m, mask)
    hit, (x, y) = metrics.pointing_hit(m, mask)
    d = heat(expl.image, relative(m), style)
    d.rgb = overlay.draw_mask_outline(d.rgb, mask, color=OKABE_ITO["orange"], thickness=2, min_size=0,
                                      image_scale=d.factor)
    d.rgb = overlay.draw_boxes(d.rgb, [(x - 2, y - 2, x + 3, y + 3)], labels=["max"],
                               colors=[OKABE_ITO["sky_blue"]], min_size=0, image_scale=d.factor)
    cap = (f"{_method(expl).title} map '{name}' (x uniform), deciding parts outlined (orange), its maximum boxed "
           f"(blue): energy on the parts {energy.value:.3f} = {energy.ratio:.1f}x chance ({energy.chance:.3f}); "
           f"maximum {'ON' if hit else 'not on'} a part")
    fig = Figure([(d.finish(style), cap)], title=f"Pointing game: {expl.model_name}", notes=_missed((expl,)),
                 columns=1)
    return PointingGame(name, energy, hit, float(mask.mean()), (x, y), fig)


# ---------------------------------------------------------------------------------------------------------------
# Checks that run the model


def predict_fn(model: FineGrainedModel) -> Callable[[np.ndarray], np.ndarray]:
    """(B, H, W, 3) uint8 images at the model's input size -> (B, C) probabilities of `model`'s prediction (the
    `predict_fn` of `fgviz.core.metrics.deletion_insertion`): `model.predict`."""
    return model.predict


def _check_pair(model: FineGrainedModel, expl: Explanation) -> None:
    if model.method != expl.method or tuple(model.labels) != tuple(expl.labels) or \
            tuple(model.config.img_size) != expl.size:
        raise ValueError(f"the explanation ({expl.method}, {expl.model_name!r}) was not made by this model "
                         f"({model.method}, {model.name!r})")


@dataclass(frozen=True)
class DeletionInsertion:
    """RISE deletion and insertion of one map (`curves`: `fgviz.core.metrics.DeletionInsertion`, whose AUCs carry
    the random maps' AUC as their chance) and their chart."""

    map_name: str
    target: str  # the class whose probability is tracked (the prediction)
    curves: metrics.DeletionInsertion
    figure: Figure = field(repr=False)

    def _repr_html_(self) -> str:
        return self.figure._repr_html_()


def deletion_insertion(model: FineGrainedModel, expl: Explanation, map_name: str | None = None, *, steps: int = 16,
                       n_random: int = 4, seed: int = 0) -> DeletionInsertion:
    """Deletion/insertion curves of one map of `expl` for its predicted class, beside the mean of `n_random` random
    maps (`fgviz.core.metrics.deletion_insertion`, the Faithfulness tab's): deleting the map's most important pixels
    first (black) should make the probability drop faster than deleting random ones (lower AUC), inserting them
    into a blurred copy should make it rise faster (higher AUC)."""
    _check_pair(model, expl)
    name = map_name or map_names(expl)[0]
    target = int(np.argmax(expl.probs))
    res = metrics.deletion_insertion(predict_fn(model), expl.image, saliency(expl, name), target, steps=steps,
                                     n_random=n_random, seed=seed)
    d, i = res.deletion, res.insertion
    series = {f"deletion (AUC {d.value:.3f})": (res.fractions, res.deletion_curve),
              f"insertion (AUC {i.value:.3f})": (res.fractions, res.insertion_curve),
              f"random maps, deletion ({d.chance:.3f})": (res.fractions, res.random_deletion_curve),
              f"random maps, insertion ({i.chance:.3f})": (res.fractions, res.random_insertion_curve)}
    title = f"{_method(expl).title}, map '{name}'"
    chart = export.line_chart(series, f"{title}: p(predicted class)", "fraction of pixels deleted / inserted",
                              ylim=(0.0, 1.0))
    cap = (f"{title}, class {expl.labels[target]} ({expl.model_name}): deletion AUC {d.value:.3f} (random maps "
           f"{d.chance:.3f}; lower is better), insertion AUC {i.value:.3f} (random maps {i.chance:.3f}; higher is "
           f"better), {steps} steps, mean of {n_random} random maps")
    fig = Figure([(chart, cap)], title=f"Deletion / insertion: {expl.model_name}", scale=CHART_SCALE, columns=1)
    return DeletionInsertion(name, expl.labels[target], res, fig)


@dataclass(frozen=True)
class SanityCheck:
    """Adebayo et al.'s model-randomisation test: the same map from the trained model and from its architecture
    re-initialised (`FineGrainedModel.reinitialized`, the copy the model cards' re-initialised figures use).
    `correlation`: Spearman rank correlation of the two maps (near 1: the map ignores the weights)."""

    map_name: str
    trained: Explanation = field(repr=False)
    randomized: Explanation = field(repr=False)
    correlation: float
    figure: Figure = field(repr=False)

    def _repr_html_(self) -> str:
        return self.figure._repr_html_()


def sanity_check(model: FineGrainedModel, image: Any, map_name: str | None = None, *, seed: int = 0,
                 style: Style | None = None, **params: Any) -> SanityCheck:
    """Explain `image` with `model` and with `model.reinitialized(seed)` (same parameters) and compare one map (the
    Faithfulness tab's sanity check)."""
    style = style or STYLE
    trained = model.explain(image, **params)
    randomized = model.reinitialized(seed=seed).explain(image, **params)
    name = map_name or map_names(trained)[0]
    corr = metrics.rank_correlation(saliency(trained, name), saliency(randomized, name))
    pair = views.side_by_side(trained, randomized, name, style, ("trained weights", "re-initialised weights"))
    cap = (f"{_method(trained).title} map '{name}' ({model.name}), each map on its own scale: Spearman rank "
           f"correlation {corr:.3f} (near 1 = the map ignores the weights). Trained: "
           f"{caption_top1(trained.labels, trained.probs)}; re-initialised: "
           f"{caption_top1(randomized.labels, randomized.probs)}")
    fig = Figure([(pair, cap)], title=f"Sanity check: {model.name}", columns=1)
    return SanityCheck(name, trained, randomized, corr, fig)


__all__ = ["CHART_SCALE", "STYLE", "DeletionInsertion", "PointingGame", "SanityCheck", "deletion_insertion",
           "examples", "layer_rollout", "layers", "localisation", "map_names", "overview", "pointing_game",
           "predict_fn", "saliency", "sanity_check", "steps"]
