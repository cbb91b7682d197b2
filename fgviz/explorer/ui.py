"""What each control of the explorer does, as plain Python returning named results (the app binds them to Gradio).

Every result is made from the explanations of the current `keys` (method -> `CacheKey`), and its captions say which
model, image and parameters made it; with no keys (nothing explained yet, or the last request failed) every result is
empty, so a panel can never show an earlier image or model. Only `UI.explain`, `UI.rerun`, `UI.faithfulness` and
`UI.sanity` can run a model (through the `compute_*` hooks, which the app wraps for ZeroGPU).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_at
from fgviz.core.imageio import MAX_BYTES, ImageError
from fgviz.explorer import analysis, views
from fgviz.explorer.export import FigureSet, figure_set, write_zip
from fgviz.explorer.layout import MODEL_SETS, attention_methods, default_methods
from fgviz.explorer.session import CacheKey, ExpiredError, Explorer
from fgviz.methods import METHODS
from fgviz.viz.panels import Panel, Style, caption_top1
from fgviz.weights.format import WeightsError

Keys = dict[str, CacheKey]
LOG = logging.getLogger("fgviz.app")
USER_ERRORS = (ImageError, WeightsError, ExpiredError, KeyError, ValueError)  # the user's to fix: no traceback
MAX_EXPORTS = 8  # export ZIPs kept on disk (Gradio serves its own copy); older ones are deleted


def upload_digest(value: Any) -> str | None:
    """The first 12 hex digits of the sha1 of an upload's bytes (what `sha1sum` prints for the file), or None
    when `value` is not an upload (a path to a file, or bytes)."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str | os.PathLike) and len(str(value)) < 4096 and os.path.isfile(value):
        with open(value, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # what the decoder reads at most
    else:
        return None
    return hashlib.sha1(data).hexdigest()[:12]


def request_digest(args: Sequence[Any]) -> str:
    """The image of a request, for its log lines: the hash of its upload (`upload_digest`), else the id of the image
    its explanation keys name (`CacheKey.image_id`, also 12 hex digits here), else "-" (no image)."""
    for a in args:
        digest = upload_digest(a)
        if digest is not None:
            return digest
    for a in args:
        if isinstance(a, dict) and a and all(isinstance(k, CacheKey) for k in a.values()):
            return next(iter(a.values())).image_id[:12]
    return "-"


def user_error(where: str, args: Sequence[Any], error: BaseException) -> str:
    """The message of a user error, logged as one line with the request's image hash (no traceback: the log keeps
    tracebacks for faults of the server)."""
    msg = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    LOG.warning("user error in %s (image %s): %s", where, request_digest(args), (msg.splitlines() or [""])[0][:300])
    return msg


def server_fault(where: str, args: Sequence[Any], error: BaseException) -> str:
    """A fault of the server (anything but USER_ERRORS): logged once with its traceback and the request's image
    hash; the message tells the user it is not theirs to fix."""
    digest = request_digest(args)
    LOG.error("server fault in %s (image %s): %s", where, digest, error, exc_info=error)
    return f"Something went wrong on the server (logged with image {digest}); please try again later."


class Props(dict):
    """A control's properties besides its value (visible, maximum, choices, label); the app applies them."""


def named_layers(res: LayersResult, full: bool = True) -> dict[str, Any]:
    """The Layers and heads tab by component name ("layers.<field>"; with `full`, the slider, heads and button)."""
    out = {f"layers.{f}": getattr(res, f) for f in ("caption", "rollout", "rollout_fig", "attends_to", "attended_by",
                                                      "patch_fig", "grid_fig", "stats_fig")}
    if not full:
        return {k: v for k, v in out.items() if k not in ("layers.grid_fig", "layers.stats_fig")}
    # Gradio needs maximum > minimum (1): a one-layer model gets a slider to 2 (clipped to 1 by `UI.layers`).
    return {**out, "layers.layer": Props(maximum=max(res.layers, 2), value=res.layer,
                                         label=f"Layer (1..{res.layers})"),
            "layers.heads": Props(choices=res.heads, value=res.head),
            "layers.stats_run": Props(visible=res.stats_fig is not None and not res.stats_fig.data)}


def named_steps(method: str, res: StepsResult) -> dict[str, Any]:
    """One Internals tab by component name ("steps.<method>.<field>", its controls' values and maxima)."""
    out = {f"steps.{method}.{f}": getattr(res, f) for f in ("gallery", "figure", "notes")}
    for name, v in res.control_values.items():
        out[f"steps.{method}.controls.{name}"] = Props(value=v, **({"maximum": res.limits[name]}
                                                                    if name in res.limits else {}))
    return out


EMPTY_RESULTS = ("faith.figure", "faith.summary", "faith.numbers", "sanity.image", "sanity.summary", "sanity.numbers",
                 "export.file")


@dataclass
class Column:
    main: np.ndarray | None = None
    caption: str = ""
    gallery: list[Panel] = field(default_factory=list)
    topk: go.Figure | None = None
    extra: go.Figure | None = None


@dataclass
class ExplainResult:
    keys: Keys
    mains: dict[str, np.ndarray | None]
    numbers: dict[str, Any]
    notes: dict[str, str]  # method -> why its typed spec fell back to the registry model


@dataclass
class OverviewResult:
    status: str
    columns: dict[str, Column]


@dataclass
class LayersResult:
    rollout: np.ndarray | None = None
    rollout_fig: go.Figure | None = None
    attends_to: np.ndarray | None = None
    attended_by: np.ndarray | None = None
    patch_fig: go.Figure | None = None
    caption: str = ""
    layers: int = 1  # the model's layer count (the slider's maximum)
    layer: int = 1
    heads: list[str] = field(default_factory=lambda: ["mean"])
    head: str = "mean"
    grid_fig: go.Figure | None = None
    stats_fig: go.Figure | None = None


@dataclass
class StepsResult:
    gallery: list[Panel] = field(default_factory=list)
    figure: go.Figure | None = None
    notes: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)  # maxima of the controls for this model
    control_values: dict[str, float] = field(default_factory=dict)  # what each control shows (None as its "none")


@dataclass
class FaithResult:
    figure: go.Figure | None = None
    summary: str = ""
    numbers: dict[str, Any] | None = None


@dataclass
class SanityResult:
    image: np.ndarray | None = None
    summary: str = ""
    numbers: dict[str, Any] | None = None


def _caption(text: str, key: CacheKey) -> str:
    return f"{text} · {key.describe()}"


class UI:
    """The explorer's controls over one `Explorer` (shared by every user of an app)."""

    def __init__(self, explorer: Explorer, *, compute_explain: Callable | None = None,
                 compute_deletion: Callable | None = None, compute_sanity: Callable | None = None) -> None:
        self.explorer = explorer
        self.compute_explain = compute_explain or explorer.compute
        self.compute_deletion = compute_deletion or explorer.compute_deletion_insertion
        self.compute_sanity = compute_sanity or explorer.compute_sanity
        self._exports = tempfile.TemporaryDirectory(prefix="fgviz-exports-")

    def close(self) -> None:
        self._exports.cleanup()

    # ---- running models --------------------------------------------------------------------------------------
    def specs_for(self, model_set: str, typed: dict[str, str]) -> dict[str, str]:
        """The spec of each method: ImageNet backbones for real photos, else what the user typed (or "auto")."""
        if model_set == "imagenet":
            return {m: METHODS[m].imagenet_spec or "auto" for m in typed}
        return typed

    def explain(self, image: Any, domain: str, typed: dict[str, str] | Sequence[str], methods: Sequence[str] = (),
                model_set: str = "demo", *, style: Style | None = None, client: str | None = None) -> ExplainResult:
        """Run (or fetch from the cache) each method on one image. A typed spec that cannot be used falls back to the
        domain's registry model; `notes` says why, and the log gets one line per fallback (a user error, with the
        upload's hash). `client` identifies the caller for the rate of new model loads (the app passes its address).
        Raises ImageError, WeightsError... for the app to report."""
        if image is None:
            raise ValueError("Upload a bird or a car, or pick an example, first.")
        methods = [m for m in (methods or default_methods()) if m in METHODS]
        typed = typed if isinstance(typed, dict) else dict(zip(METHODS, typed, strict=True))
        iid = self.explorer.add_image(image)
        keys, fallbacks = {}, {}
        for method, spec in self.specs_for(model_set, {m: typed.get(m, "auto") for m in methods}).items():
            spec, note = self.explorer.resolve_or_default(spec, method, domain, client)
            if note:
                fallbacks[method] = note
                LOG.warning("user error in explain (image %s): %s", upload_digest(image) or iid[:12],
                            (note.splitlines() or [""])[0][:300])
            keys[method] = self.explorer.explain(iid, spec, method, compute=self.compute_explain)
        expls = {m: self.explorer.get(k) for m, k in keys.items()}
        mains = {m: ov.main for m, ov in views.overview(expls, style or Style(), main_only=True).items()}
        numbers = {m: {**views.summary(e), "overview_size": list(mains[m].shape[:2]), "made_by": keys[m].describe(),
                       **({"fallback": fallbacks[m]} if m in fallbacks else {})} for m, e in expls.items()}
        return ExplainResult(keys, mains, numbers, fallbacks)

    def current(self, keys: Keys, image: Any, domain: str, typed: dict[str, str] | Sequence[str],
                methods: Sequence[str] = (), model_set: str = "demo", client: str | None = None) -> Keys:
        """The session's keys when they explain `image` (the UI), else the explanations of `image` made now (an API
        caller that sends an image without a session)."""
        if keys and image is not None:
            try:
                iid = self.explorer.add_image(image)
                if all(k.image_id == iid for k in keys.values()):
                    for k in keys.values():
                        self.explorer.get(k)
                    return keys
            except ExpiredError:
                pass
        elif keys and image is None:
            return keys
        typed = typed if isinstance(typed, dict) else dict(zip(METHODS, typed, strict=True))
        return self.explain(image, domain, typed, methods, model_set, client=client).keys

    def render(self, keys: Keys, notes: dict[str, str] | None, shown: Sequence[str], layers_method: str,
               style: Style) -> dict[str, Any]:
        """Every tab for `keys`, by component name; Faithfulness and Export are emptied (they are per request). A
        model box whose typed spec fell back (`notes`) goes back to "auto": it shows what is explained."""
        shown = shown or default_methods()
        notes = notes or {}
        res = self.overview(keys, style, list(notes.values()))
        out: dict[str, Any] = {"status": res.status, **named_layers(self.layers(keys, layers_method, None, style)),
                               **{f"spec.{m}": Props(value="auto") for m in notes}}
        for m in METHODS:
            c = res.columns.get(m)
            out.update({f"overview.{m}.{f}": getattr(c, f) if c else None for f in ("main", "caption", "topk",
                                                                                     "gallery")})
            out[f"overview.{m}.col"] = Props(visible=m in shown)
            out[f"overview.{m}.extra"] = Props(value=c and c.extra, visible=bool(c and c.extra))
            out.update(named_steps(m, self.steps(keys, m, style)))
        return {**out, **dict.fromkeys(EMPTY_RESULTS), "patch": None, "shown": {}}

    def rerun(self, keys: Keys, method: str, params: dict[str, Any]) -> Keys:
        """Run `method` again on the same image and model with other parameters; the new keys."""
        if not keys or method not in keys:
            raise ValueError("Explain an image first.")
        old = keys[method]
        new = self.explorer.explain(old.image_id, old.spec, method, params, compute=self.compute_explain)
        return {**keys, method: new}

    def _expls(self, keys: Keys) -> dict[str, Explanation]:
        return {m: self.explorer.get(k) for m, k in keys.items()}

    # ---- views from the cache ----------------------------------------------------------------------------------
    def overview(self, keys: Keys, style: Style, notes: Sequence[str] = ()) -> OverviewResult:
        if not keys:
            return OverviewResult("Nothing explained yet: pick an example or upload an image.", {})
        expls = self._expls(keys)
        first = next(iter(keys.values()))
        truth, why = self.explorer.ground_truth(first)
        if truth is not None:
            domain = truth.params["domain"]
            image = f"Image: fgviz synthetic {domain} example, true class **{truth.class_name}** ({why})."
            models = {self.explorer.registry().get(k.spec, {}).get("domain") for k in keys.values()} - {None}
            if models and models != {domain}:
                image += f" ⚠️ The models were trained on {', '.join(sorted(models))}, not {domain}: switch the Domain."
        else:
            image = f"Image {first.image_id[:8]}: {why}."
        lines = [image, *(views.weights_note(e, synthetic=truth is not None) for e in expls.values()),
                 *(f"⚠️ {n}" for n in notes)]
        columns = {}
        for m, ov in views.overview(expls, style).items():
            e = expls[m]
            columns[m] = Column(ov.main, _caption(ov.caption, keys[m]),
                                [(im, _caption(cap, keys[m])) for im, cap in ov.panels],
                                views.topk_figure(e), views.scale_figure(e))
        return OverviewResult("\n\n".join(lines), columns)

    def layers(self, keys: Keys, method: str, layer: int | None, style: Style, *, fusion: str = "mean",
               discard: float = 0.0, heads: str = "mean", token: int | None = None,
               full: bool = True) -> LayersResult:
        """The Layers and heads tab for `method` (the layer is clipped to the model's depth; None = the last)."""
        if not keys or method not in keys:
            return LayersResult(caption="Explain an image with a ViT method first.")
        an = self.explorer.analysis(keys[method])
        layer = an.L if layer is None else int(np.clip(int(layer), 1, an.L))
        head_choices = ["mean", "max", "min", *(f"h{h + 1}" for h in range(an.H))]
        heads = heads if heads in head_choices else "mean"
        lv = analysis.layer_view(an, layer, style, fusion=fusion, discard=float(discard), token=token, heads=heads)
        hint = "" if lv.attends_to is not None else " Click a patch on the rollout to see its rows and columns."
        out = LayersResult(lv.rollout, lv.rollout_fig, lv.attends_to, lv.attended_by, lv.patch_fig,
                           _caption(lv.caption + "." + hint, keys[method]), an.L, layer, head_choices, heads)
        if full:
            out.grid_fig = analysis.head_grid(an, style, token)
            out.stats_fig = analysis.stats_figure(an, compute=not an.expensive)
        return out

    def layer_stats(self, keys: Keys, method: str) -> go.Figure | None:
        return analysis.stats_figure(self.explorer.analysis(keys[method])) if keys and method in keys else None

    def layers_view(self, keys: Keys, method: str, layer: int | None, style: Style, *, fusion: str, discard: float,
                    heads: str, patch: tuple[str, int] | None, click: tuple[float, float] | None = None,
                    full: bool = False) -> dict[str, Any]:
        """The Layers and heads tab by component name, with the clicked patch ("patch": (method, token)); a `click`
        at pixel (x, y) of the rollout panel picks the patch under it."""
        if click is not None:
            token = self.token_at(keys, method, *click, style)
            patch, full = (None if token is None else (method, token)), True
        res = self.layers(keys, method, layer, style, fusion=fusion, discard=discard, heads=heads,
                          token=patch[1] if patch and patch[0] == method else None, full=full)
        return {**named_layers(res, full), "patch": patch}

    def token_at(self, keys: Keys, method: str, x: float, y: float, style: Style) -> int | None:
        """The patch token under pixel (x, y) of the rollout panel."""
        if not keys or method not in keys:
            return None
        e = self.explorer.get(keys[method])
        return token_at(x, y, e.grid, e.patch_size, e.stride, e.num_prefix_tokens, style.factor(e.size))

    def steps(self, keys: Keys, method: str, style: Style, params: dict[str, Any] | None = None) -> StepsResult:
        """The Internals tab of `method`, previewed for `params` (None: as the model ran)."""
        if not keys or method not in keys:  # the controls back to their minimum, as a fresh page has them
            return StepsResult(notes="Explain an image first.",
                               control_values={p.name: p.minimum for p in METHODS[method].step_params})
        e = self.explorer.get(keys[method])
        m = METHODS[method]
        st = m.steps(e, style, params)
        if st is None:
            return StepsResult(notes=f"{m.title} has no step-by-step view.")
        key = keys[method]
        limits = m.param_limits(self.explorer.model(key.spec, method), e)
        shown = {**m.params_of(e), **st.params}
        values = {p.name: (p.minimum if shown.get(p.name) is None else shown[p.name]) for p in m.step_params}
        return StepsResult([(im, _caption(cap, key)) for im, cap in st.panels], st.figure,
                           st.notes + f"\n\n*{key.describe()}*", st.params, limits, values)

    @staticmethod
    def params(method: str, values: Sequence[float], *, preview_only: bool = True) -> dict[str, Any]:
        """Control values -> `explain` parameters of `method` (integers, None below `none_below`); with
        `preview_only`, only the parameters a preview can show."""
        specs = METHODS[method].step_params
        out = {}
        for p, v in zip(specs, values, strict=True):
            if preview_only and not p.preview:
                continue
            out[p.name] = None if p.none_below is not None and v < p.none_below else int(v) if p.integer else float(v)
        return out

    # ---- faithfulness ----------------------------------------------------------------------------------------------
    def faithfulness(self, keys: Keys, method: str, map_name: str, steps: int) -> FaithResult:
        """Runs a model (on the perturbed images): deletion/insertion curves and the pointing game."""
        if not keys or method not in keys:
            raise ValueError(f"Explain an image with {views.title(method)} first.")
        key = keys[method]
        choices = views.map_choices(method)
        map_name = map_name if map_name in choices else choices[0]
        res = self.explorer.deletion_insertion(key, map_name, int(steps), compute=self.compute_deletion)
        point = self.explorer.pointing(key, map_name)
        _, why = self.explorer.ground_truth(key)
        e = self.explorer.get(key)
        fig = views.curves_figure(res, f"{views.title(method)}, map '{map_name}', class {e.prediction}")
        md = [f"**Deletion AUC** {res.deletion.value:.3f} (random maps {res.deletion.chance:.3f}; lower is better) · "
              f"**Insertion AUC** {res.insertion.value:.3f} (random maps {res.insertion.chance:.3f}; higher is better)"
              ]
        if point:
            md.append(f"**Pointing game** vs the deciding parts (class {point['class']}): energy inside the parts "
                      f"{point['energy']:.3f} (uniform map {point['energy_chance']:.3f}); the map's maximum is "
                      f"{'ON' if point['hit'] else 'not on'} a part (chance {point['hit_chance']:.3f}).")
        md.append(f"*{why}* · *{key.describe()}, map '{map_name}', {int(steps)} steps*")
        numbers = {"method": method, "map": map_name, "made_by": key.describe(), "model": e.model_name,
                   "weights_kind": e.weights_kind, "target": e.prediction, "deletion_auc": res.deletion.value,
                   "deletion_chance": res.deletion.chance, "insertion_auc": res.insertion.value,
                   "insertion_chance": res.insertion.chance, "fractions": res.fractions.tolist(),
                   "deletion": res.deletion_curve.tolist(), "insertion": res.insertion_curve.tolist(),
                   "pointing": point}
        return FaithResult(fig, "\n\n".join(md), numbers)

    def faithfulness_view(self, keys: Keys, method: str, map_name: str, steps: int, shown: dict) -> dict[str, Any]:
        """`faithfulness` by component name; "shown" remembers it for the export."""
        res = self.faithfulness(keys, method, map_name, int(steps))
        return {"faith.figure": res.figure, "faith.summary": res.summary, "faith.numbers": res.numbers,
                "shown": {**shown, "faith": {"method": method, "map": map_name, "steps": int(steps),
                                             "key": keys[method]}}}

    def sanity_view(self, keys: Keys, method: str, map_name: str, style: Style, shown: dict) -> dict[str, Any]:
        """`sanity` by component name; "shown" remembers it for the export."""
        res = self.sanity(keys, method, map_name, style)
        return {"sanity.image": res.image, "sanity.summary": res.summary, "sanity.numbers": res.numbers,
                "shown": {**shown, "sanity": {"method": method, "map": map_name, "key": keys[method]}}}

    def sanity(self, keys: Keys, method: str, map_name: str, style: Style) -> SanityResult:
        """Runs a model (a re-initialised copy): the Adebayo et al. model-randomisation sanity check."""
        if not keys or method not in keys:
            raise ValueError(f"Explain an image with {views.title(method)} first.")
        key = keys[method]
        choices = views.map_choices(method)
        map_name = map_name if map_name in choices else choices[0]
        rnd, corr = self.explorer.sanity_check(key, map_name, compute=self.compute_sanity)
        e = self.explorer.get(key)
        pair = views.side_by_side(e, rnd, map_name, style, ("trained weights", "re-initialised weights"))
        md = (f"Spearman rank correlation between the two maps: **{corr:.3f}** (near 1 = the map ignores the weights, "
              f"a failed sanity check; near 0 = it depends on them). The re-initialised model predicts "
              f"{caption_top1(rnd.labels, rnd.probs)}. *{key.describe()}, map '{map_name}'*")
        if e.weights_kind == "random":
            md += "\n\n⚠️ The loaded weights are themselves random placeholders, so this compares two random models."
        return SanityResult(pair, md, {"method": method, "map": map_name, "made_by": key.describe(), "spearman": corr,
                                       "randomized_prediction": rnd.prediction})

    # ---- export ----------------------------------------------------------------------------------------------------
    def export(self, keys: Keys, style: Style, *, fusion: str = "mean", discard: float = 0.0,
               faith: dict[str, Any] | None = None, sanity: dict[str, Any] | None = None) -> Path:
        """A ZIP of every figure of every tab for `keys`, with the Faithfulness and sanity results shown for them
        (`faith`: method, map, steps, key; `sanity`: method, map, key; both served from the cache). A result shown
        for another explanation (another image, model or parameters) is left out: it is not what these keys made."""
        if not keys:
            raise ValueError("Explain an image first.")
        expls = self._expls(keys)
        fs = figure_set(expls, style, fusion=fusion, discard=discard,
                        sources={m: k.describe() for m, k in keys.items()})
        extra = FigureSet()
        export_style = replace(style, min_size=1024)
        if faith and faith.get("method") in keys and faith.get("key") == keys[faith["method"]]:
            res = self.faithfulness(keys, faith["method"], faith["map"], int(faith["steps"]))
            extra.chart(f"faithfulness/{faith['method']}_deletion_insertion.html", res.figure, res.summary,
                        keys[faith["method"]].describe())
            extra.numbers["faithfulness"] = res.numbers
        if sanity and sanity.get("method") in keys and sanity.get("key") == keys[sanity["method"]]:
            res = self.sanity(keys, sanity["method"], sanity["map"], export_style)
            extra.image(f"faithfulness/{sanity['method']}_sanity.png", res.image, res.summary,
                        keys[sanity["method"]].describe())
            extra.numbers["sanity"] = res.numbers
        return write_zip(self._export_path(f"fgviz-{next(iter(keys.values())).image_id[:12]}.zip"), fs.merge(extra),
                         {"style": {"cmap": style.cmap, "alpha": style.alpha, "norm": style.norm},
                          "made_by": {m: k.describe() for m, k in keys.items()}})

    def _export_path(self, name: str) -> Path:
        """A fresh folder for one export, deleting all but the newest MAX_EXPORTS - 1 earlier ones first (Gradio
        copies a returned file into its own cache, so an old ZIP is no longer needed)."""
        root = Path(self._exports.name)
        earlier = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        for old in earlier[: max(len(earlier) - (MAX_EXPORTS - 1), 0)]:
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=root)) / name


__all__ = [
    "EMPTY_RESULTS",
    "MODEL_SETS",
    "UI",
    "Column",
    "ExpiredError",
    "ExplainResult",
    "FaithResult",
    "LayersResult",
    "OverviewResult",
    "Props",
    "SanityResult",
    "StepsResult",
    "attention_methods",
    "default_methods",
    "named_layers",
    "named_steps",
    "request_digest",
    "server_fault",
    "upload_digest",
    "user_error",
]
