"""What each control of the explorer does, as plain Python returning named results (the app binds them to Gradio).

Every result is made from the explanations of the current `keys` (method -> `CacheKey`), and its captions say which
model, image and parameters made it; with no keys (nothing explained yet, or the last request failed) every result is
empty, so a panel can never show an earlier image or model. Only `UI.explain`, `UI.ensure` (a method explained on
demand, for the Layers and Faithfulness tabs), `UI.rerun`, `UI.faithfulness` and `UI.sanity` can run a model (through
the `compute_*` hooks, which the app wraps for ZeroGPU).

Work is done once per request: the upload is decoded once (the explorer remembers its bytes' digest), the Overview
is drawn once per (explanations, style) and kept (`UI.explain` draws it, `UI.render` reuses it), and `UI.render`
draws only the tabs on screen (`tabs`); the others are emptied and drawn when they are opened (`UI.draw`).

A user error becomes one message (`user_error`: one line, no server folder, long values cut) and one log line.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from fgviz.core.explanation import Explanation
from fgviz.core.geometry import token_at
from fgviz.core.imageio import synthetic_params
from fgviz.explorer import analysis, views
from fgviz.explorer.export import FigureSet, figure_set, write_zip
from fgviz.explorer.layout import DEMO_SET, attention_methods, default_methods, model_sets, set_for_image
from fgviz.explorer.messages import (
    LOG,
    banner_error,
    request_digest,
    server_fault,
    set_fallback_note,
    short_message,
    upload_digest,
    user_error,
)
from fgviz.explorer.results import (
    EMPTY_RESULTS,
    SET_NOTE,
    TABS,
    Column,
    Context,
    ExplainResult,
    FaithResult,
    Keys,
    LayersResult,
    OverviewResult,
    Props,
    SanityResult,
    StepsResult,
    named_layers,
    named_steps,
    visible_tabs,
)
from fgviz.explorer.session import AUTO, DOMAINS, LRU, CacheKey, ExpiredError, Explorer
from fgviz.methods import METHODS
from fgviz.viz.panels import Style, caption_top1
from fgviz.weights import download, hub

MAX_EXPORTS = 8  # export ZIPs kept on disk (Gradio serves its own copy); older ones are deleted


def _caption(text: str, key: CacheKey, markdown: bool = True) -> str:
    """A caption with what made it; gallery captions are plain text (no Markdown backticks)."""
    return f"{text} · {key.describe(markdown=markdown)}"


def style_of(cmap: str, alpha: float | str, norm: str) -> Style:
    """The display style of the controls' values (a bad value: ValueError, a user error)."""
    return Style(cmap=cmap, alpha=float(alpha), norm=norm)


def downloading(progress: Callable[[float, str], Any]) -> download.Progress:
    """A download's progress as a bar: the fraction done and "downloading <file>: x of y GB"."""
    def report(filename: str, done: int, total: int) -> None:
        size = f"{done / 1e9:.2f} of {total / 1e9:.2f} GB" if total else f"{done / 1e9:.2f} GB"
        progress(done / total if total else 0.0, f"downloading {filename} from the Hugging Face Hub: {size}")

    return report


def _check_choice(value: Any, choices: Collection[str], what: str) -> str:
    if value not in choices:
        raise ValueError(f"unknown {what} {str(value)[:40]!r}; expected one of {', '.join(choices)}")
    return value


class UI:
    """The explorer's controls over one `Explorer` (shared by every user of an app)."""

    def __init__(self, explorer: Explorer, *, compute_explain: Callable | None = None,
                 compute_deletion: Callable | None = None, compute_sanity: Callable | None = None) -> None:
        self.explorer = explorer
        self.compute_explain = compute_explain or explorer.compute
        self.compute_deletion = compute_deletion or explorer.compute_deletion_insertion
        self.compute_sanity = compute_sanity or explorer.compute_sanity
        self._exports = tempfile.TemporaryDirectory(prefix="fgviz-exports-")
        self._overviews = LRU(8)  # (keys, style) -> drawn Overview columns: drawn once per explain, reused by render
        self.overview_draws = 0  # Overviews drawn (tests and benchmarks check that an explain draws one)

    def close(self) -> None:
        self._exports.cleanup()

    # ---- running models --------------------------------------------------------------------------------------
    def specs_for(self, model_set: str, typed: dict[str, str]) -> dict[str, str]:
        """The spec of each method: the model set's (registry.json), else what the user typed (or "auto")."""
        entry = hub.model_sets().get(model_set)
        return typed if entry is None else {m: entry["specs"].get(m, AUTO) for m in typed}

    def explain(self, image: Any, domain: str, typed: dict[str, str] | Sequence[str], methods: Sequence[str] = (),
                model_set: str = "demo", style: Style | None = None, client: str | None = None, *,
                progress: Callable[[float, str], Any] | None = None) -> ExplainResult:
        """Run (or fetch from the cache) each method on one image and draw its Overview (once: `render` reuses it).
        A typed spec that cannot be used falls back to the domain's registry model, and a model set whose models
        cannot be loaded (offline, a failing Hub) falls back to the demo models as a whole; `notes` says why in one
        sentence each, and the log gets one line each. `client` identifies the caller for the rate of new model
        loads (the app passes its address). `progress(fraction, text)` is told of a first load's downloads, with
        their size (the app's progress bar). Raises ImageError, WeightsError, ValueError... for the app to report."""
        if image is None:
            raise ValueError("Upload a bird or a car, or pick an example, first.")
        ctx = Context(domain, typed if isinstance(typed, dict) else dict(zip(METHODS, typed, strict=True)),
                      model_set, client)
        _check_choice(domain, DOMAINS, "domain")
        _check_choice(model_set, model_sets(), "model set")
        methods = [m for m in (methods or default_methods()) if m in METHODS]
        iid = self.explorer.add_image(image)
        with download.progress(downloading(progress)) if progress is not None else contextlib.nullcontext():
            keys, notes = self._explain(iid, methods, ctx, upload_digest(image) or iid[:12])
        expls = self._expls(keys)
        mains = {m: ov.main for m, ov in self._overview(keys, style or Style()).items()}
        numbers = {m: {**views.summary(e), "overview_size": list(mains[m].shape[:2]), "made_by": keys[m].describe(),
                       **({"fallback": notes.get(m) or notes[SET_NOTE]} if m in notes or SET_NOTE in notes else {})}
                   for m, e in expls.items()}
        return ExplainResult(keys, mains, numbers, notes)

    def _specs(self, iid: str, methods: Sequence[str], ctx: Context, digest: str
               ) -> tuple[dict[str, str], dict[str, str]]:
        """The spec of each method and the notes of fallbacks (see `explain`), each logged as one line."""
        notes: dict[str, str] = {}
        model_set = set_for_image(ctx.model_set, ctx.domain, synthetic_params(self.explorer.image(iid)) is not None)
        if model_set != DEMO_SET:
            wanted = self.specs_for(model_set, {m: ctx.typed.get(m, AUTO) for m in methods})
            reasons = {m: why for m, spec in wanted.items()
                       if (why := self.explorer.spec_failure(spec, m, ctx.domain, ctx.client)) is not None}
            if not reasons:
                return {m: self.explorer.resolve(s, m, ctx.domain) for m, s in wanted.items()}, notes
            notes[SET_NOTE] = set_fallback_note(model_set, reasons)
            LOG.warning("user error in explain (image %s): %s (%s)", digest, notes[SET_NOTE],
                        short_message(next(iter(reasons.values())), 200))
            return {m: self.explorer.default_spec(m, ctx.domain) for m in methods}, notes
        specs = {}
        for m in methods:
            specs[m], note = self.explorer.resolve_or_default(ctx.typed.get(m, AUTO), m, ctx.domain, ctx.client)
            if note:
                notes[m] = short_message(note, limit=None)
                LOG.warning("user error in explain (image %s): %s", digest, notes[m])
        return specs, notes

    def _explain(self, iid: str, methods: Sequence[str], ctx: Context, digest: str) -> tuple[Keys, dict[str, str]]:
        specs, notes = self._specs(iid, methods, ctx, digest)
        return {m: self.explorer.explain(iid, specs[m], m, compute=self.compute_explain) for m in methods}, notes

    def ensure(self, keys: Keys, methods: Sequence[str], ctx: Context | None) -> Keys:
        """`keys` with each of `methods` explained too (on the same image, with `ctx`'s domain, specs and model set):
        the Layers and Faithfulness tabs offer every method, ticked in the Overview or not. No keys: nothing to
        explain (the tabs say "Explain an image first")."""
        missing = [m for m in methods if m in METHODS and m not in keys]
        if not keys or not missing or ctx is None:
            return keys
        iid = next(iter(keys.values())).image_id
        self.explorer.image(iid)  # ExpiredError when the image is gone: "upload it again"
        more, _ = self._explain(iid, missing, ctx, iid[:12])
        return {**keys, **more}

    def current(self, keys: Keys, image: Any, domain: str, typed: dict[str, str] | Sequence[str],
                methods: Sequence[str] = (), model_set: str = "demo", client: str | None = None) -> Keys:
        """The session's keys when they explain `image` (the UI; the upload is not decoded again), with `methods`
        explained on demand; else the explanations of `image` by `methods` made now (an API caller that sends an
        image without a session)."""
        methods = [m for m in (methods or default_methods()) if m in METHODS]
        ctx = Context(domain, typed if isinstance(typed, dict) else dict(zip(METHODS, typed, strict=True)),
                      model_set, client)
        if keys and image is not None:
            try:
                iid = self.explorer.add_image(image)
                if all(k.image_id == iid for k in keys.values()):
                    for k in keys.values():
                        self.explorer.get(k)
                    return self.ensure(keys, methods, ctx)
            except ExpiredError:
                pass
        elif keys and image is None:
            return self.ensure(keys, methods, ctx)
        return self.explain(image, domain, ctx.typed, methods, model_set, client=client).keys

    def render(self, keys: Keys, notes: dict[str, str] | None, shown: Sequence[str], layers_method: str,
               style: Style, tabs: Collection[str] | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Every tab for `keys`, by component name. The Overview (its columns: the `shown` methods) is always
        drawn; of the Layers and Internals tabs (`TABS`) only those in `tabs` (None: all), the others are emptied
        and listed out of "drawn" (`draw` draws them when they are opened). Faithfulness and Export are emptied
        (they are per request). A model box whose typed spec fell back (`notes`) goes back to "auto", and the
        Models radio to the demo models when the chosen set fell back: they show what is explained. With `ctx`, a
        Layers method not explained yet is explained now ("keys" then holds it)."""
        shown = [m for m in (shown or default_methods()) if m in METHODS]
        notes = dict(notes or {})
        set_note = notes.pop(SET_NOTE, None)
        res = self.overview({m: k for m, k in keys.items() if m in shown}, style,
                            [set_note] if set_note else list(notes.values()))
        out: dict[str, Any] = {"status": res.status, **{f"spec.{m}": Props(value="auto") for m in notes}}
        if set_note:
            out["model_set"] = Props(value="demo")
        for m in METHODS:
            c = res.columns.get(m)
            out.update({f"overview.{m}.{f}": getattr(c, f) if c else None for f in ("main", "caption", "topk",
                                                                                     "gallery")})
            out[f"overview.{m}.col"] = Props(visible=m in shown)
            out[f"overview.{m}.extra"] = Props(value=c and c.extra, visible=bool(c and c.extra))
        drawn = set(TABS if tabs is None else tabs) & set(TABS) if keys else set()
        # Emptied until drawn; the slider and the heads keep their values (setting them would fire their events).
        out.update({k: v for k, v in named_layers(LayersResult(caption=""), full=False).items()},
                   **{"layers.grid_fig": None, "layers.stats_fig": None, "layers.stats_run": Props(visible=False)})
        for m in METHODS:  # the controls back to their minimum until the tab is drawn
            out.update(named_steps(m, StepsResult(control_values={p.name: p.minimum for p in METHODS[m].step_params})))
        out.update(self.draw(keys, drawn, layers_method, style, ctx))
        return {**out, **dict.fromkeys(EMPTY_RESULTS), "patch": None, "shown": {}, "drawn": sorted(drawn)}

    def draw(self, keys: Keys, tabs: Collection[str], layers_method: str, style: Style, ctx: Context | None = None
             ) -> dict[str, Any]:
        """The Layers and Internals tabs in `tabs` (`TABS` names) for `keys`, by component name, with "keys" (a
        method they show that is not explained yet, not ticked in the Overview, is explained on demand with `ctx`)."""
        out: dict[str, Any] = {}
        wanted = [layers_method] if "layers" in tabs else []
        keys = self.ensure(keys, [*wanted, *(m for m in METHODS if f"internals.{m}" in tabs)], ctx)
        if "layers" in tabs:
            out.update(named_layers(self.layers(keys, layers_method, None, style)), patch=None)
        for m in METHODS:
            if f"internals.{m}" in tabs:
                out.update(named_steps(m, self.steps(keys, m, style)))
        return {**out, "keys": keys}

    def open_tab(self, keys: Keys, layers_method: str, view: dict, drawn: Sequence[str] | None, style: Style,
                 ctx: Context | None, *, tab: str, sub: str | None = None) -> dict[str, Any]:
        """A main tab (`tab`) or an Internals method's tab (`sub`) opened: the new "view", and the Layers or
        Internals tab now on screen drawn unless it already is for these keys and this style ("drawn")."""
        view = {**view, "tab": tab} if sub is None else {**view, "tab": "internals", "internals": sub}
        need = visible_tabs(view) - set(drawn or []) if keys else set()
        if not need:
            return {"view": view}
        return {**self.draw(keys, need, layers_method, style, ctx), "view": view,
                "drawn": sorted({*(drawn or []), *need})}

    def cleared(self, style: Sequence[Any], layers_method: str, message: str) -> dict[str, Any]:
        """After a failed explain: every tab empty, no keys (a control moved later must not draw the earlier image
        again), and the banner saying why. `style`: the display controls' values (the default style if invalid)."""
        try:
            st = style_of(*style)
        except (TypeError, ValueError):
            st = Style()
        return {**self.render({}, {}, default_methods(), layers_method, st), "keys": {}, "notes": {},
                "status": banner_error(f"Nothing shown: {message}", "")}

    @staticmethod
    def faith_method(method: str, shown: dict) -> dict[str, Any]:
        """Another method for Faithfulness: its maps, and the previous method's results cleared (they would read as
        this one's)."""
        choices = list(views.map_choices(method)) if method in METHODS else []
        if not choices:
            raise ValueError(f"unknown method {str(method)[:40]!r}")
        return {"faith.map": Props(choices=choices, value=choices[0]),
                **dict.fromkeys(k for k in EMPTY_RESULTS if k != "export.file"),
                "shown": {k: v for k, v in shown.items() if k not in ("faith", "sanity")}}

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
    def _overview(self, keys: Keys, style: Style) -> dict[str, Any]:
        """The Overview columns of `keys` (`views.overview`, one colour scale for them all), drawn once per (keys,
        style) and kept."""
        ck = (tuple(sorted(keys.items())), style)
        drawn = self._overviews.get(ck)
        if drawn is None:
            drawn = self._overviews.put(ck, views.overview(self._expls(keys), style))
            self.overview_draws += 1
        return drawn

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
        for m, ov in self._overview(keys, style).items():
            e = expls[m]
            columns[m] = Column(ov.main, _caption(ov.caption, keys[m]),
                                [(im, _caption(cap, keys[m], markdown=False)) for im, cap in ov.panels],
                                views.topk_figure(e), views.scale_figure(e))
        return OverviewResult("\n\n".join(lines), columns)

    def layers(self, keys: Keys, method: str, layer: int | None, style: Style, *, fusion: str = "mean",
               discard: float = 0.0, heads: str = "mean", token: int | None = None,
               full: bool = True) -> LayersResult:
        """The Layers and heads tab for `method` (the layer is clipped to the model's depth; None = the last)."""
        if not keys or method not in keys:
            return LayersResult(caption="Explain an image first.")
        an = self.explorer.analysis(keys[method])
        layer = an.L if layer is None else int(np.clip(int(layer), 1, an.L))
        # The heads apply to the clicked patch's views: offered once a patch is clicked.
        head_choices = ["mean", "max", "min", *(f"h{h + 1}" for h in range(an.H))] if token is not None else ["mean"]
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

    def layer_stats_view(self, keys: Keys, method: str) -> dict[str, Any]:
        """The entropy and distance chart computed on request (its button then goes)."""
        return {"layers.stats_fig": self.layer_stats(keys, method), "layers.stats_run": Props(visible=False)}

    def layers_view(self, keys: Keys, method: str, layer: int | None, style: Style, *, fusion: str, discard: float,
                    heads: str, patch: tuple[str, int] | None, click: tuple[float, float] | None = None,
                    full: bool = False, ctx: Context | None = None) -> dict[str, Any]:
        """The Layers and heads tab by component name, with the clicked patch ("patch": (method, token)); a `click`
        at pixel (x, y) of the rollout panel picks the patch under it. With `ctx`, a method not explained yet (not
        ticked in the Overview) is explained now, and "keys" holds it."""
        if ctx is not None:
            keys = self.ensure(keys, [method], ctx)
            return {**self.layers_view(keys, method, layer, style, fusion=fusion, discard=discard, heads=heads,
                                       patch=patch, click=click, full=full), "keys": keys}
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
        return StepsResult([(im, _caption(cap, key, markdown=False)) for im, cap in st.panels], st.figure,
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
        fig = views.curves_figure(res, f"{views.title(method)}, map '{map_name}'<br><sup>class {e.prediction}</sup>")
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

    def request(self, name: str, keys: Keys, image: Any, ctx: Context, columns: Sequence[str], args: Sequence[Any],
                shown: dict) -> dict[str, Any]:
        """The Faithfulness, sanity and Export requests (the app's /faithfulness, /sanity, /export; `args` as the
        API names them) by component name, with "keys": on the session's keys for `image` (explained now for an API
        caller without a session), the method asked for explained on demand."""
        need = (columns or default_methods()) if name == "export" else [args[0]]
        keys = self.current(keys, image, ctx.domain, ctx.typed, need, ctx.model_set, ctx.client)
        if name == "faithfulness":
            out = self.faithfulness_view(keys, args[0], args[1], int(args[2]), shown)
        elif name == "sanity":
            out = self.sanity_view(keys, args[0], args[1], style_of(*args[2:5]), shown)
        elif name == "export":
            out = {"export.file": str(self.export(keys, style_of(*args[:3]), fusion=args[3], discard=float(args[4]),
                                                  faith=shown.get("faith"), sanity=shown.get("sanity")))}
        else:
            raise ValueError(f"unknown request {name!r}")
        return {**out, "keys": keys}

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
                        keys[faith["method"]].describe(), png=True)
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
    "SET_NOTE",
    "TABS",
    "UI",
    "Column",
    "Context",
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
    "set_fallback_note",
    "short_message",
    "style_of",
    "upload_digest",
    "user_error",
    "visible_tabs",
]
