"""fgviz explorer: UI only (layout, events, and `fgviz.explorer.ui` results bound to components by name). Columns,
tabs and controls come from the method registry; nothing runs at import (`build_app()`; `demo` on first access).

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto|cpu|cuda|mps] [--model SPEC ...]
                  [--spec-policy registry|hub|any] [--model-cache-gb GB]
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reporting

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from fgviz.core.imageio import MAX_BYTES
from fgviz.explorer import cli, views
from fgviz.explorer import layout as L
from fgviz.explorer import messages as M
from fgviz.explorer import ui as U
from fgviz.explorer.export import png_file
from fgviz.explorer.policy import SpecPolicy
from fgviz.explorer.requests import client_of, upload_value
from fgviz.explorer.session import DOMAINS, Explorer, env_specs
from fgviz.methods import METHODS
from fgviz.viz.panels import Style

try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator elsewhere
    import spaces

    GPU: Callable = spaces.GPU
except ImportError:
    def GPU(fn: Callable) -> Callable:  # noqa: N802
        return fn

ASSETS = Path(__file__).resolve().parent / "assets"
QUEUE_SIZE, CONCURRENCY, CACHE_CLEANUP = 64, 2, (1800, 3600)
# API parameter names; every method's model box comes last, so a new method or model set shifts no earlier parameter
CONTEXT, MODELS = ("image", "domain", "model_set", "columns"), tuple(f"{m}_model" for m in METHODS)
PRIVATE = {"api_visibility": "private"}
ERRORS = M.LastErrors()  # each session's last error message, for the banner line


def friendly(fn: Callable, names: tuple[str, ...], *, client: bool = False, event: bool = False,
             progress: bool = False) -> Callable:
    """The one place where an error becomes what the user sees: a user error is one message (a toast, gr.Error),
    one log line and one banner line (`ERRORS` hands it to the `.failure` handler that writes it); a server fault is
    one logged traceback and a generic message (Gradio prints neither again). `names` are the handler's parameters
    as the API shows them; Gradio also passes the request (left out of the API) and, with `event`, the select event
    (to `fn` as `evt=`). With `client`, `fn` also gets `client=` the sender (`client_of`); with `progress`,
    `progress=` Gradio's progress bar (a first load's download)."""
    where = getattr(fn, "__name__", None) or getattr(fn, "func", fn).__name__  # a partial: its function's name

    def wrapper(*args: Any) -> Any:
        bar, (*args, request) = (args[-1], args[:-1]) if progress else (None, args)
        kw: dict[str, Any] = {"client": client_of(request)} if client else {}
        if progress:
            kw["progress"] = bar
        if event:
            *args, kw["evt"] = args
        try:
            return fn(*args, **kw)
        except M.USER_ERRORS as e:
            message = M.user_error(where, [upload_value(a) for a in args], e)
        except Exception as e:  # anything else is ours to fix: one traceback, in the log
            message = M.server_fault(where, [upload_value(a) for a in args], e)
        ERRORS.put(getattr(request, "session_hash", None), message)
        raise gr.Error(message, print_exception=False) from None

    extra = ["evt"] if event else []  # Gradio passes event data only to a parameter annotated gr.SelectData itself
    bar = [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())]
    wrapper.__name__, wrapper.__signature__ = where, inspect.Signature(
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in (*names, *extra, "request")]
        + (bar if progress else []))
    wrapper.__annotations__ = {"request": gr.Request, **({"evt": gr.SelectData} if event else {})}
    return wrapper


def as_files(value: Any) -> Any:
    """A result with its images as PNG files in Gradio's cache (fast to write; Gradio serves them as they are)."""
    if isinstance(value, np.ndarray) and value.ndim == 3:
        return png_file(value, get_upload_folder())
    gallery = isinstance(value, list) and value and isinstance(value[0], tuple)  # (image, caption) pairs
    return [(as_files(im), cap) for im, cap in value] if gallery else value


COMPONENTS = {"markdown": gr.Markdown, "plot": gr.Plot, "json": gr.JSON, "file": gr.File, "button": gr.Button,
              "radio": gr.Radio, "dropdown": gr.Dropdown, "slider": gr.Slider, "checkboxes": gr.CheckboxGroup,
              "state": gr.State, "upload": lambda **kw: gr.Image(type="filepath", image_mode=None, **kw),
              "image": lambda **kw: gr.Image(format="png", interactive=False, **{"min_width": 300, **kw}),
              "gallery": lambda **kw: gr.Gallery(format="png", object_fit="contain", elem_classes="fg-gallery", **kw)}
CONTAINERS = {"row": gr.Row, "column": gr.Column, "accordion": gr.Accordion, "tabs": gr.Tabs, "tab": gr.Tab}


class Layout(dict):
    """Components by name ("overview.tasn.main", "layers.rollout", ...): the names `fgviz.explorer.ui` results use."""

    def render(self, nodes: list[L.Node]) -> Layout:
        """Build the Gradio components of `fgviz.explorer.layout` nodes, registering the named ones."""
        for n in nodes:
            if n.kind in CONTAINERS:
                with CONTAINERS[n.kind](**n.props) as c:
                    self.render(n.children)
            elif n.kind == "examples":
                props = {**n.props, "inputs": [self[i] for i in n.props["inputs"]]}
                c = gr.Examples(**props, cache_examples=False, visible_columns=[0])
            else:
                c = COMPONENTS[n.kind](**n.props)
            if n.name:
                self[n.name] = c
        return self

    def apply(self, named: dict[str, Any]) -> dict:
        """A result by name -> {component: value or gr.update(**properties)}, images as PNG files."""
        return {self[k]: gr.update(**{p: as_files(x) if p == "value" else x for p, x in v.items()})
                if isinstance(v, U.Props) else as_files(v) for k, v in named.items() if k in self}


def build_app(explorer: Explorer | None = None) -> gr.Blocks:
    """The explorer's Blocks over `explorer` (default: one on the registry models and $FGVIZ_MODELS)."""
    explorer = explorer or Explorer(device=os.environ.get("FGVIZ_DEVICE", "auto"), extra_specs=env_specs(),
                                    policy=SpecPolicy.from_env())
    ui = U.UI(explorer, compute_explain=GPU(explorer.compute),
              compute_deletion=GPU(explorer.compute_deletion_insertion), compute_sanity=GPU(explorer.compute_sanity))
    notes = views.notes()
    with gr.Blocks(title="fgviz: fine-grained attention explorer", delete_cache=CACHE_CLEANUP) as demo:
        page = L.page({m: explorer.choices(m) for m in METHODS}, notes, DOMAINS, explorer.policy.describe(),
                      L.AUTO_SET if os.environ.get("SPACE_ID") else L.DEMO_SET)  # a Space: real birds for photos
        wire(Layout().render(page), ui, notes)
    demo.fgviz_ui = ui
    return demo


def wire(R: Layout, ui: U.UI, notes: dict[str, str]) -> None:
    """Events. An explain (button, upload, example, domain, models, columns) draws the Overview once and the tab on
    screen from its new keys, empties the other tabs (drawn when opened), Faithfulness and Export; a failed one
    empties every tab. View controls re-render from the cache; only the MODEL events run a model (an explain, a
    re-run, Faithfulness, a method explained on demand for a tab), on `max_loading + 1` workers: the explorer lets at
    most `max_loading` load typed specs, so one stays free for loaded models, and runs one forward pass at a time
    itself. Every handler goes through `friendly`, with its inputs as sent."""
    MODEL = {"concurrency_id": "model", "concurrency_limit": ui.explorer.max_loading + 1}
    n, api_methods, vm0, sty = len(METHODS), L.default_methods(), R["layers.method"], [R[k] for k in L.DISPLAY]
    specs = [R[f"spec.{m}"] for m in METHODS]
    ctx_in = [R["domain"], *specs, R["model_set"]]  # what explaining on demand needs (`U.Context.of`)
    outputs = list(dict.fromkeys([*R.apply(ui.render({}, {}, [], vm0.value, Style())), R["model_set"], *specs,
                                  *R.apply(U.named_layers(U.LayersResult())), R["keys"]]))  # what a render sets

    def on(triggers: Any, fn: Callable, inputs: list, outs: list, *, names: tuple[str, ...] | None = None,
           client: bool = True, event: bool = False, banner: bool = True, progress: bool = False, **kw: Any) -> Any:
        """An event (triggers, or one listener: `dependency.success`) through `friendly`; a failure: the banner."""
        wrapped = friendly(fn, names or tuple(f"in{i}" for i in range(len(inputs))), client=client, event=event,
                           progress=progress)
        kw = kw if "api_name" in kw else {**PRIVATE, **kw}
        ev = (gr.on(triggers, wrapped, inputs, outs, preprocess=False, **kw) if isinstance(triggers, list)
              else triggers(wrapped, inputs, outs, preprocess=False, **kw))
        if banner:  # (an explain's failure empties every tab and writes the banner itself: `cleared`)
            ev.failure(failed, R["status"], R["status"], **PRIVATE)
        return ev

    def failed(status, request: gr.Request):  # the banner line of the error `friendly` just reported
        return M.banner_error(ERRORS.pop(request.session_hash), status)

    def cleared(c, a, n_, request: gr.Request):
        return R.apply(ui.cleared((c, a, n_), vm0.value, ERRORS.pop(request.session_hash)))

    # ---- explain and render
    render_in = [R["keys"], R["notes"], R["columns"], vm0, R["view"], *ctx_in, *sty]

    def render(k, nts, shown, vm, view, dom, *rest, client=None):
        return R.apply(ui.render(k, nts, shown or api_methods, vm, U.style_of(*rest[-3:]), U.visible_tabs(view),
                                 U.Context.of(dom, rest[:-3], client)))

    def explain(img, dom, mset, cols, *rest, client=None, progress=None):
        res = ui.explain(upload_value(img), dom, rest[3:], cols or api_methods, mset, U.style_of(*rest[:3]), client,
                         progress=progress)
        if res.set_note:
            gr.Warning(res.set_note)  # a toast; the banner line comes with the render
        return (*(as_files(res.mains.get(m)) for m in api_methods), res.numbers, res.keys, res.notes)

    explain_args = ([R["image"], R["domain"], R["model_set"], R["columns"], *sty, *specs],
                    [*(R[f"overview.{m}.main"] for m in api_methods), R["numbers"], R["keys"], R["notes"]])
    for triggers, kw in (([R["run"].click, R["image"].upload], {"api_name": "explain", "api_description":
                                                               notes.get("api explain")}),
                         (R["examples"].load_input_event.then, {}),  # an example, then domain, models, columns:
                         ([R[k].input for k in ("domain", "model_set", "columns")] + [s.input for s in specs], {})):
        ev = on(triggers, explain, *explain_args, names=(*CONTEXT, "cmap", "alpha", "norm", *MODELS), banner=False,
                progress=True, **kw, **MODEL)
        on(ev.success, render, render_in, outputs, **MODEL)
        ev.failure(cleared, sty, [*outputs, R["notes"]], **PRIVATE)
    # Sliders answer `input` (mouse and keyboard alike), the newest value only, so dragging queues no backlog.
    on([R["cmap"].change, R["alpha"].input, R["norm"].change], render, render_in, outputs, trigger_mode="always_last",
       **MODEL)

    # ---- tabs: the Layers or Internals tab on screen is drawn when it opens (once per explanation and style)
    def open_tab(k, vm, view, drawn, dom, *rest, tab=None, sub=None, client=None):
        return R.apply(ui.open_tab(k, vm, view, drawn, U.style_of(*rest[-3:]), U.Context.of(dom, rest[:-3], client),
                                   tab=tab, sub=sub))

    tab_io = ([R["keys"], vm0, R["view"], R["drawn"], *ctx_in, *sty],
              [c for c in (*outputs, R["view"], R["drawn"], R["patch"]) if c not in specs])
    for tab, sub in [*((t, None) for t in L.TAB_IDS), *(("internals", m) for m in METHODS)]:
        on(R[f"tab.{tab}" + (f".{sub}" if sub else "")].select, functools.partial(open_tab, tab=tab, sub=sub),
           *tab_io, **MODEL)

    # ---- Layers and heads (`input`, not `change`: a draw that sets the slider or the heads must not draw again)
    lay_io = ([R["keys"], vm0, *(R[k] for k in L.LAYER_CONTROLS), R["patch"], *ctx_in, *sty],
              [*R.apply(U.named_layers(U.LayersResult())), R["patch"], R["keys"]])

    def layers(k, vm, li, fu, di, hd, pt, dom, *rest, full=False, evt=None, client=None):
        return R.apply(ui.layers_view(k, vm, li, U.style_of(*rest[-3:]), fusion=fu, discard=di, heads=hd, patch=pt,
                                      click=None if evt is None else tuple(map(float, evt.index[:2])), full=full,
                                      ctx=U.Context.of(dom, rest[:-3], client)))

    on([R[k].input for k in L.LAYER_CONTROLS], layers, *lay_io, trigger_mode="always_last")
    on(vm0.input, functools.partial(layers, full=True), *lay_io, **MODEL)
    on(R["layers.rollout"].select, layers, *lay_io, event=True)
    on(R["layers.clear"].click, lambda *a, client=None: layers(*a[:6], None, *a[7:], full=True, client=client),
       *lay_io)
    on(R["layers.stats_run"].click, lambda k, vm, client=None: R.apply(ui.layer_stats_view(k, vm)), [R["keys"], vm0],
       [R["layers.stats_fig"], R["layers.stats_run"]])

    # ---- Internals: a moved control previews from the cache; Re-run runs the model with it
    for m in METHODS:
        ctl = [c for k, c in R.items() if k.startswith(f"steps.{m}.controls.")]
        if ctl:
            on([c.input for c in ctl], lambda k, *v, m=m, client=None: R.apply(U.named_steps(m, ui.steps(
                k, m, U.style_of(*v[-3:]), ui.params(m, v[:-3])))), [R["keys"], *ctl, *sty],
               [*R.apply(U.named_steps(m, U.StepsResult())), *ctl], trigger_mode="always_last")
            rerun = on(R[f"steps.{m}.rerun"].click, lambda k, *v, m=m, client=None: ui.rerun(
                k, m, ui.params(m, v, preview_only=False)), [R["keys"], *ctl], R["keys"], **MODEL)
            on(rerun.success, render, render_in, outputs, **MODEL)

    # ---- Faithfulness and Export
    on(R["faith.method"].input, lambda m, shown, client=None: R.apply(ui.faith_method(m, shown)),
       [R["faith.method"], R["shown"]],
       [R["faith.map"], *(R[k] for k in U.EMPTY_RESULTS if k != "export.file"), R["shown"]])

    def endpoint(name: str, outs: tuple[str, ...]) -> Callable:
        def handler(k, img, dom, mset, cols, *rest, client=None):
            args, shown, typed = rest[:-n - 1], rest[-n - 1], rest[-n:]
            res = R.apply(ui.request(name, k, upload_value(img), U.Context.of(dom, [*typed, mset], client), cols,
                                     args, shown))
            return tuple(res[R[o]] for o in (*outs, "keys"))
        handler.__name__ = name
        return handler

    ctx = [R["keys"], R["image"], R["domain"], R["model_set"], R["columns"]]
    for name, params, args, outs in (  # outputs in the order API callers unpack them
            ("faithfulness", ("method", "map_name", "steps"), [R["faith.method"], R["faith.map"], R["faith.steps"]],
             ("faith.figure", "faith.summary", "faith.numbers", "shown")),
            ("sanity", ("method", "map_name", "cmap", "alpha", "norm"), [R["faith.method"], R["faith.map"], *sty],
             ("sanity.image", "sanity.summary", "sanity.numbers", "shown")),
            ("export", ("cmap", "alpha", "norm", "fusion", "discard"), [*sty, R["layers.fusion"], R["layers.discard"]],
             ("export.file",))):
        on(R[f"{outs[0].split('.')[0]}.run"].click, endpoint(name, outs), [*ctx, *args, R["shown"], *specs],
           [*(R[o] for o in outs), R["keys"]], names=("keys", *CONTEXT, *params, "shown", *MODELS), api_name=name,
           api_description=notes.get(f"api {name}"), **MODEL)


def launch(app: gr.Blocks, *, host: str | None = None, port: int | None = None, share: bool = False,
           queue_size: int | None = None, **kwargs: Any) -> Any:
    """Queue with limits (at most QUEUE_SIZE waiting, then "busy"; the model events share one slot) and launch."""
    size = queue_size if queue_size is not None else int(os.environ.get("FGVIZ_QUEUE_SIZE", QUEUE_SIZE))
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=size)
    return app.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(),
                      css=(ASSETS / "app.css").read_text(), max_file_size=MAX_BYTES, footer_links=["api", "gradio"],
                      **kwargs)


def main(argv: list[str] | None = None) -> None:
    args = cli.parse_args(argv)
    launch(build_app(cli.explorer(args)), host=args.host, port=args.port, share=args.share)


def __getattr__(name: str) -> Any:
    """`demo`, built on first access (importing app.py builds nothing)."""
    if name == "demo":
        globals()["demo"] = build_app()
        return globals()["demo"]
    raise AttributeError(name)


if __name__ == "__main__":
    main()
