"""fgviz explorer: UI only (layout, events, and `fgviz.explorer.ui` results bound to components by name). Columns,
tabs and controls come from the method registry; nothing runs at import (`build_app()`; `demo` on first access).

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto|cpu|cuda|mps] [--model SPEC ...]
                  [--spec-policy registry|hub|any] [--model-cache-gb GB]
"""

from __future__ import annotations

import argparse
import base64
import functools
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reporting

import gradio as gr

from fgviz.core.imageio import MAX_BYTES
from fgviz.explorer import layout as L
from fgviz.explorer import ui as U
from fgviz.explorer import views
from fgviz.explorer.policy import POLICIES, SpecPolicy
from fgviz.explorer.session import DOMAINS, Explorer, env_specs, resolve_device
from fgviz.methods import METHODS
from fgviz.viz.panels import Style
from fgviz.weights import hub

try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator elsewhere
    import spaces

    GPU: Callable = spaces.GPU
except ImportError:
    def GPU(fn: Callable) -> Callable:  # noqa: N802
        return fn

ASSETS = Path(__file__).resolve().parent / "assets"
QUEUE_SIZE, CONCURRENCY, CACHE_CLEANUP = 64, 2, (1800, 3600)
CONTEXT = ("image", "domain", *(f"{m}_model" for m in METHODS), "model_set", "columns")  # API parameter names
PRIVATE = {"api_visibility": "private"}


def client_of(request: gr.Request | None) -> str | None:
    """Who sends a request, for the rate of new model loads: on a Space the address its proxy forwards (Gradio sees
    the proxy's), elsewhere the peer's address; the session when neither is known."""
    if request is None:
        return None
    forwarded = request.headers.get("x-forwarded-for", "") if os.environ.get("SPACE_ID") else ""
    return forwarded.split(",")[0].strip() or getattr(request.client, "host", None) or request.session_hash


def friendly(fn: Callable, names: tuple[str, ...] | None = None, *, client: bool = False) -> Callable:
    """A user error becomes one message (gr.Error) and one log line, a server fault one logged traceback and a
    generic message (Gradio prints neither again); `names` become the API parameter names of a handler that takes
    *args. With `client`, `fn` also gets `client=` the sender (`client_of`; Gradio passes the request)."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        kw = {}
        if client:
            *args, request = args
            kw["client"] = client_of(request)
        try:
            return fn(*args, **kw)
        except U.USER_ERRORS as e:
            raise gr.Error(U.user_error(fn.__name__, args, e), print_exception=False) from None
        except Exception as e:  # anything else is ours to fix: one traceback, in the log
            raise gr.Error(U.server_fault(fn.__name__, args, e), print_exception=False) from None

    if names is not None:
        params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        if client:  # Gradio fills a parameter annotated gr.Request and leaves it out of the API
            params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD))
            wrapper.__annotations__ = {"request": gr.Request}
        wrapper.__signature__ = inspect.Signature(params)
    return wrapper


def upload_image(**kwargs: Any) -> gr.Image:
    """An image input whose value reaches the handler undecoded (`decode_image` is the one decoder)."""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    # An instance attribute: a subclass would make Gradio write a .pyi next to app.py.
    image.preprocess = lambda p: None if p is None else (
        base64.b64decode(p.url.split(",", 1)[1]) if p.url and p.url.startswith("data:") else p.path)
    return image


def image(**kw: Any) -> gr.Image:
    return gr.Image(format="png", interactive=False, **{"min_width": 300, **kw})


def gallery(**kw: Any) -> gr.Gallery:
    return gr.Gallery(format="png", object_fit="contain", elem_classes="fg-gallery", **kw)


COMPONENTS = {"markdown": gr.Markdown, "image": image, "plot": gr.Plot, "gallery": gallery, "json": gr.JSON,
              "file": gr.File, "button": gr.Button, "radio": gr.Radio, "dropdown": gr.Dropdown, "slider": gr.Slider,
              "checkboxes": gr.CheckboxGroup, "upload": upload_image, "state": gr.State}
CONTAINERS = {"row": gr.Row, "column": gr.Column, "accordion": gr.Accordion, "tabs": gr.Tabs, "tab": gr.Tab}


def style(c: str, a: float, n: str) -> Style:
    return Style(cmap=c, alpha=float(a), norm=n)


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
        """A result by name -> {component: value or gr.update(**properties)}."""
        return {self[k]: gr.update(**v) if isinstance(v, U.Props) else v for k, v in named.items() if k in self}


def build_app(explorer: Explorer | None = None) -> gr.Blocks:
    """The explorer's Blocks over `explorer` (default: one on the registry models and $FGVIZ_MODELS)."""
    explorer = explorer or Explorer(device=os.environ.get("FGVIZ_DEVICE", "auto"), extra_specs=env_specs(),
                                    policy=SpecPolicy.from_env())
    ui = U.UI(explorer, compute_explain=GPU(explorer.compute),
              compute_deletion=GPU(explorer.compute_deletion_insertion), compute_sanity=GPU(explorer.compute_sanity))
    notes = views.notes()
    with gr.Blocks(title="fgviz: fine-grained attention explorer", delete_cache=CACHE_CLEANUP) as demo:
        page = L.page({m: explorer.choices(m) for m in METHODS}, notes, DOMAINS, explorer.policy.describe())
        wire(Layout().render(page), ui, notes)
    demo.fgviz_ui = ui
    return demo


def wire(R: Layout, ui: U.UI, notes: dict[str, str]) -> None:
    """Events. An explain (button, upload, example, domain, models, columns) renders every tab from its new keys and
    empties Faithfulness and Export; a failed one empties every tab. View controls re-render from the cache; only
    the MODEL events run a model. They share `max_loading + 1` workers: the explorer lets at most `max_loading` of
    them load typed specs, so one is always free for loaded models, and runs one forward pass at a time itself."""
    MODEL = {"concurrency_id": "model", "concurrency_limit": ui.explorer.max_loading + 1}
    api_methods, sty = L.default_methods(), [R["cmap"], R["alpha"], R["norm"]]
    specs = [R[f"spec.{m}"] for m in METHODS]
    outputs = [*R.apply(ui.render({}, {}, [], R["layers.method"].value, Style())), *specs]  # what a render changes
    render_in = [R["keys"], R["notes"], R["columns"], R["layers.method"], *sty]

    def render(k, nts, shown, vm, *st):
        return R.apply(ui.render(k, nts, shown, vm, style(*st)))

    def cleared(*st):  # the keys go too: a control moved after the error must not draw the earlier image again
        return {**render({}, {}, api_methods, R["layers.method"].value, *st), R["keys"]: {}, R["notes"]: {},
                R["status"]: "Nothing shown: the last request failed (the message says why)."}

    def explain(img, dom, *rest, client=None):
        typed, (mset, cols) = rest[: len(METHODS)], rest[len(METHODS): len(METHODS) + 2]
        res = ui.explain(img, dom, typed, cols or api_methods, mset, style=style(*rest[-3:]), client=client)
        return (*(res.mains.get(m) for m in api_methods), res.numbers, res.keys, res.notes)

    def chain(ev: Any) -> None:
        ev.success(render, render_in, outputs, **PRIVATE)
        ev.failure(cleared, sty, [*outputs, R["keys"], R["notes"]], **PRIVATE)

    explain_in = [R["image"], R["domain"], *specs, R["model_set"], R["columns"], *sty]
    explain_out = [*(R[f"overview.{m}.main"] for m in api_methods), R["numbers"], R["keys"], R["notes"]]
    explain_fn = friendly(explain, (*CONTEXT, "cmap", "alpha", "norm"), client=True)
    chain(gr.on([R["run"].click, R["image"].upload], explain_fn, explain_in, explain_out, api_name="explain",
                api_description=notes.get("api explain"), **MODEL))
    chain(R["examples"].load_input_event.then(explain_fn, explain_in, explain_out, **PRIVATE, **MODEL))
    chain(gr.on([R["domain"].input, R["model_set"].input, R["columns"].input, *(s.input for s in specs)],
                explain_fn, explain_in, explain_out, **PRIVATE, **MODEL))
    # Sliders answer `input` (mouse and keyboard alike), the newest value only, so dragging queues no backlog.
    gr.on([R["cmap"].change, R["alpha"].input, R["norm"].change], render, render_in, outputs,
          trigger_mode="always_last", **PRIVATE)

    lay_in = [R["keys"], R["layers.method"], *(R[k] for k in L.LAYER_CONTROLS), R["patch"], *sty]
    lay_out = [*R.apply(U.named_layers(U.LayersResult())), R["patch"]]

    def layers(k, vm, li, fu, di, hd, pt, c, a, n, full=False, evt: gr.SelectData | None = None):
        return R.apply(ui.layers_view(k, vm, li, style(c, a, n), fusion=fu, discard=di, heads=hd, patch=pt,
                                      click=None if evt is None else tuple(map(float, evt.index[:2])), full=full))

    gr.on([R["layers.layer"].change, R["layers.fusion"].change, R["layers.discard"].input,
           R["layers.heads"].change], layers, lay_in, lay_out, trigger_mode="always_last", **PRIVATE)
    R["layers.method"].change(lambda k, vm, li, *r: layers(k, vm, None, *r, full=True), lay_in, lay_out, **PRIVATE)
    R["layers.rollout"].select(lambda *a, evt=None: layers(*a, evt=evt), lay_in, lay_out, **PRIVATE)
    R["layers.clear"].click(lambda *a: layers(*a[:6], None, *a[7:], full=True), lay_in, lay_out, **PRIVATE)
    R["layers.stats_run"].click(lambda k, vm: R.apply({"layers.stats_fig": ui.layer_stats(k, vm),
                                                       "layers.stats_run": U.Props(visible=False)}),
                                [R["keys"], R["layers.method"]], [R["layers.stats_fig"], R["layers.stats_run"]],
                                **PRIVATE)
    for m in METHODS:
        ctl = [c for k, c in R.items() if k.startswith(f"steps.{m}.controls.")]
        out = [*R.apply(U.named_steps(m, U.StepsResult())), *ctl]
        preview = friendly(lambda k, *v, m=m: R.apply(U.named_steps(m, ui.steps(k, m, style(*v[-3:]),
                                                                                 ui.params(m, v[:-3])))))
        gr.on([c.input for c in ctl], preview, [R["keys"], *ctl, *sty], out, trigger_mode="always_last", **PRIVATE)
        if ctl:
            rerun = friendly(lambda k, *v, m=m: ui.rerun(k, m, ui.params(m, v, preview_only=False)))
            chain(R[f"steps.{m}.rerun"].click(rerun, [R["keys"], *ctl], R["keys"], **PRIVATE, **MODEL))
    faith_out = [R["faith.map"], *(R[k] for k in U.EMPTY_RESULTS if k != "export.file"), R["shown"]]

    def faith_method(m, shown):  # results of the previous method would read as this one's: clear them
        return (gr.update(choices=list(views.map_choices(m)), value=views.map_choices(m)[0]),
                *[None] * (len(faith_out) - 2), {k: v for k, v in shown.items() if k not in ("faith", "sanity")})

    R["faith.method"].input(faith_method, [R["faith.method"], R["shown"]], faith_out, **PRIVATE)

    def on_context(fn: Callable, names: tuple[str, ...]) -> Callable:
        """`fn(keys, *rest)` with the session's keys for the given image (or explained now, for API callers)."""
        def handler(k, img, dom, *rest, client=None):
            n = len(METHODS)
            typed, (mset, cols), rest = rest[:n], rest[n: n + 2], rest[n + 2:]
            return R.apply(fn(ui.current(k, img, dom, typed, cols or api_methods, mset, client), *rest))
        handler.__name__ = fn.__name__
        return friendly(handler, ("keys", *CONTEXT, *names, "shown"), client=True)

    def faithfulness(k, method, map_name, steps, shown):
        return ui.faithfulness_view(k, method, map_name, steps, shown)

    def sanity(k, method, map_name, c, a, n, shown):
        return ui.sanity_view(k, method, map_name, style(c, a, n), shown)

    def export(k, c, a, n, fu, di, shown):
        return {"export.file": str(ui.export(k, style(c, a, n), fusion=fu, discard=float(di),
                                             faith=shown.get("faith"), sanity=shown.get("sanity")))}

    ctx = [R["keys"], R["image"], R["domain"], *specs, R["model_set"], R["columns"]]
    for fn, names, args, outs in (  # outputs in the order API callers unpack them
            (faithfulness, ("method", "map_name", "steps"), [R["faith.method"], R["faith.map"], R["faith.steps"]],
             ("faith.figure", "faith.summary", "faith.numbers", "shown")),
            (sanity, ("method", "map_name", "cmap", "alpha", "norm"), [R["faith.method"], R["faith.map"], *sty],
             ("sanity.image", "sanity.summary", "sanity.numbers", "shown")),
            (export, ("cmap", "alpha", "norm", "fusion", "discard"), [*sty, R["layers.fusion"], R["layers.discard"]],
             ("export.file",))):
        R[f"{outs[0].split('.')[0]}.run"].click(on_context(fn, names), [*ctx, *args, R["shown"]], [R[o] for o in outs],
                                                api_name=fn.__name__, api_description=notes.get(f"api {fn.__name__}"),
                                                **MODEL)


def launch(app: gr.Blocks, *, host: str | None = None, port: int | None = None, share: bool = False,
           queue_size: int | None = None, **kwargs: Any) -> Any:
    """Queue with limits (at most QUEUE_SIZE waiting, then "busy"; the model events share one slot) and launch."""
    size = queue_size if queue_size is not None else int(os.environ.get("FGVIZ_QUEUE_SIZE", QUEUE_SIZE))
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=size)
    return app.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(),
                      css=(ASSETS / "app.css").read_text(), max_file_size=MAX_BYTES, footer_links=["api", "gradio"],
                      **kwargs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="fgviz explorer (Gradio app)")
    ap.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    ap.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link (needs the internet)")
    ap.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    ap.add_argument("--model", action="append", default=[], metavar="SPEC", help="offer another model (registry "
                    "name, weights folder, org/repo[@rev], timm:<name>); repeatable; also $FGVIZ_MODELS")
    ap.add_argument("--spec-policy", choices=sorted(POLICIES), default=None, help="which typed model specs load: "
                    "registry, hub (+ Hub repos, timm:; for a public Space) or any (+ local folders); default "
                    "$FGVIZ_SPEC_POLICY, else hub on a Space and any elsewhere")
    ap.add_argument("--model-cache-gb", type=float, default=None, help="bound of the loaded-model cache in GiB "
                    "(default $FGVIZ_MODEL_CACHE_GB, else 4)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.model_cache_gb is not None:
        hub.MODELS.resize(int(args.model_cache_gb * (1 << 30)))
    explorer = Explorer(device=resolve_device(args.device or os.environ.get("FGVIZ_DEVICE", "auto")),
                        extra_specs=[*env_specs(), *args.model], policy=SpecPolicy.from_env(args.spec_policy))
    launch(build_app(explorer), host=args.host, port=args.port, share=args.share)


def __getattr__(name: str) -> Any:
    """`demo`, built on first access (importing app.py builds nothing)."""
    if name == "demo":
        globals()["demo"] = build_app()
        return globals()["demo"]
    raise AttributeError(name)


if __name__ == "__main__":
    main()
