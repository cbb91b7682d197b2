"""The explorer's page as data: every panel and control, its name, label and range (the app renders it with Gradio).

A `Node` is a container ("row", "column", "accordion", "tabs", "tab") or a component ("markdown", "image", "plot",
"gallery", "json", "file", "button", "radio", "dropdown", "slider", "checkboxes", "upload", "examples", "state").
Named nodes are what the handlers of `fgviz.explorer.ui` read and write by name ("overview.tasn.main",
"layers.rollout", "steps.rams_trans.controls.alpha", ...). One column and one Internals tab per registered method, so a
new method appears without touching the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fgviz.explorer import views
from fgviz.methods import METHODS
from fgviz.methods.method import Method
from fgviz.viz.overlay import COLORMAPS
from fgviz.weights import hub


@dataclass
class Node:
    kind: str
    name: str | None = None
    props: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)


def N(kind: str, name: str | None = None, *children: Node, **props: Any) -> Node:  # noqa: N802
    return Node(kind, name, props, list(children))


def md(text: str = "", name: str | None = None, **props: Any) -> Node:
    return N("markdown", name, value=text, **props)


def default_methods() -> list[str]:
    return [m.name for m in METHODS.values() if m.overview_default]


def attention_methods() -> list[str]:
    return [m.name for m in METHODS.values() if m.has_attention]


DEMO_SET, AUTO_SET = "demo", "auto"


def model_sets(auto: bool = True) -> dict[str, str]:
    """The Models radio's choices by name: the demo models, the registry's model sets (`fgviz.weights.hub.model_sets`)
    and, with `auto` (a public Space), "auto": the demo models for fgviz's own examples, the set meant for the
    domain for an uploaded photo (`space_default`)."""
    sets = hub.model_sets()
    out = {DEMO_SET: "demo models (fgviz synthetic birds and cars, offline)"}
    meant = [e for e in sets.values() if e.get("space_default")]
    if auto and meant:
        photos = ", ".join(f"{e['label'].split(':')[0]} for your {e.get('domain', 'own')} photos" for e in meant)
        out = {AUTO_SET: f"auto: the demo models for the examples, {photos}", **out}
    return {**out, **{name: e["label"] for name, e in sets.items()}}


def set_for_image(model_set: str, domain: str, synthetic: bool) -> str:
    """The set "auto" means for one image: the demo models for a generator image (fgviz's examples carry their
    tag), the registry's set meant for `domain`'s photos otherwise (the demo models when there is none)."""
    if model_set != AUTO_SET:
        return model_set
    if synthetic:
        return DEMO_SET
    return next((n for n, e in hub.model_sets().items() if e.get("space_default") and e.get("domain") == domain),
                DEMO_SET)
# Per session: explanation keys, fallback notes, the clicked patch, the Faithfulness results shown, which tab is on
# screen ("view": the main tab and the Internals method) and which of the Layers / Internals tabs are drawn.
STATES = {"keys": {}, "notes": {}, "patch": None, "shown": {}, "view": {"tab": "overview", "internals": None},
          "drawn": []}
TAB_IDS = ("overview", "layers", "internals", "faith", "export", "about")
DISPLAY = ("cmap", "alpha", "norm")
LAYER_CONTROLS = ("layers.layer", "layers.fusion", "layers.discard", "layers.heads")


SPEC_HELP = "auto = the demo model; or a registry name, a folder under weights/, org/repo[@revision], timm:<name>"


def page(choices: dict[str, list[str]], notes: dict[str, str], domains: tuple[str, ...],
         spec_help: str = SPEC_HELP, model_set: str = DEMO_SET) -> list[Node]:
    """The whole page; `choices[method]` are the model specs its dropdown offers, `spec_help` says what may be
    typed into them (the app's spec policy), `model_set` the Models radio's first value ("auto" on a Space)."""
    first = default_methods()[0]
    all_maps = list(dict.fromkeys(n for m in METHODS for n in views.map_choices(m)))
    return [
        *(N("state", k, value=v if k != "view" else {**v, "internals": next(iter(METHODS))})
          for k, v in STATES.items()),
        md("# fgviz: what do fine-grained recognisers look at?\n" + notes.get("intro", "")),
        N("row", None,
          N("column", None,
            N("upload", "image", label="Image (a bird or a car)", height=300, sources=["upload", "clipboard"],
              elem_id="fg-upload"),
            N("radio", "domain", choices=list(domains), value=domains[0], label="Domain (picks the demo models)",
              elem_id="domain"),
            N("radio", "model_set", choices=[(v, k) for k, v in model_sets(auto=model_set == AUTO_SET).items()],
              value=model_set, label="Models"),
            N("button", "run", value="Explain", variant="primary"), scale=2, min_width=300),
          N("column", None,
            N("examples", "examples", inputs=["image", "domain"], examples=views.examples(), examples_per_page=8,
              label="Examples (synthetic, with ground truth)"),
            N("checkboxes", "columns", choices=[(m.title, m.name) for m in METHODS.values()],
              value=default_methods(), label="Overview columns"),
            N("accordion", None, *(N("dropdown", f"spec.{m}", choices=choices[m], value="auto", label=meth.title,
                                     allow_custom_value=True, info=spec_help)
                                   for m, meth in METHODS.items()), label="Model per method", open=False),
            N("accordion", None, N("row", None,
              N("dropdown", "cmap", choices=list(COLORMAPS), value=COLORMAPS[0], label="Colormap",
                info="viridis, cividis, magma, inferno are colour-blind safe"),
              N("slider", "alpha", minimum=0, maximum=1, value=0.5, step=0.05, label="Overlay opacity",
                elem_id="fg-alpha"),
              N("radio", "norm", choices=[("one scale for all panels", "shared"), ("each panel its own", "panel")],
                value="shared", label="Normalisation")), label="Display", open=False),
            scale=3, min_width=300)),
        md("Pick an example or upload an image.", "status", elem_classes="fg-banner", elem_id="fg-status"),
        N("tabs", None,
          N("tab", "tab.overview", N("row", None, *(overview_column(meth, notes) for meth in METHODS.values()),
                                     equal_height=False),
            N("accordion", None, N("json", "numbers", label="prediction, top-5, probabilities, boxes, tokens, "
                                   "parameters, made by"), label="Numbers (JSON)", open=False), label="Overview"),
          N("tab", "tab.layers", *layers_tab(notes), label="Layers and heads"),
          N("tab", "tab.internals", N("tabs", None, *(steps_tab(meth, notes) for meth in METHODS.values())),
            label="Internals"),
          N("tab", "tab.faith",
            md(notes.get("faithfulness", ""), elem_classes="fg-note"),
            N("row", None,
              N("radio", "faith.method", choices=[(m.title, m.name) for m in METHODS.values()], value=first,
                label="Method", elem_id="faith-method"),
              N("dropdown", "faith.map", choices=all_maps, value=views.map_choices(first)[0], label="Map",
                info="another method's map falls back to the first of this one's"),
              N("slider", "faith.steps", minimum=4, maximum=32, value=16, step=1, label="Steps")),
            N("row", None, N("button", "faith.run", value="Deletion / insertion + pointing game", variant="primary"),
              N("button", "sanity.run", value="Sanity check: re-initialise the weights")),
            md(name="faith.summary", elem_id="faith-summary"),
            N("plot", "faith.figure", label="Deletion and insertion", elem_id="faith-figure"),
            N("json", "faith.numbers", label="deletion / insertion / pointing numbers"),
            md(name="sanity.summary", elem_id="sanity-summary"),
            N("image", "sanity.image", label="Same map, trained vs re-initialised", elem_id="sanity-image"),
            N("json", "sanity.numbers", label="sanity numbers"), label="Faithfulness"),
          N("tab", "tab.export", md(notes.get("export", ""), elem_classes="fg-note"),
            N("button", "export.run", value="Export ZIP"),
            N("file", "export.file", label="export", elem_id="export-file"), label="Export"),
          N("tab", "tab.about", md(notes.get("about", "")), label="About"), elem_id="fg-tabs"),
    ]


def overview_column(meth: type[Method] | Method, notes: dict[str, str]) -> Node:
    m, title = meth.name, meth.title
    return N("column", f"overview.{m}.col",
             md(f"### {title}\n{notes.get(m + ' short', '')}", elem_classes="fg-note"),
             N("image", f"overview.{m}.main", label=f"{title} signature view", elem_id=f"ov-{m}"),
             md(name=f"overview.{m}.caption", elem_id=f"ov-cap-{m}", elem_classes="fg-note"),
             N("plot", f"overview.{m}.topk", label=f"{title} top-5", elem_id=f"ov-top-{m}"),
             N("gallery", f"overview.{m}.gallery", label=f"{title} panels", columns=1, elem_id=f"ov-gal-{m}"),
             N("plot", f"overview.{m}.extra", label=f"{title}: top-5 per scale", visible=False),
             min_width=300, visible=meth.overview_default)


def layers_tab(notes: dict[str, str]) -> list[Node]:
    vits = attention_methods()
    return [
        md(notes.get("layers", ""), elem_classes="fg-note"),
        N("row", None,
          N("radio", "layers.method", choices=[(METHODS[m].title, m) for m in vits], value=vits[0], label="Model",
            elem_id="layers-method"),
          N("slider", "layers.layer", minimum=1, maximum=12, value=12, step=1, label="Layer", elem_id="layers-layer"),
          N("radio", "layers.fusion", choices=["mean", "max", "min"], value="mean", label="Head fusion (rollout)"),
          N("slider", "layers.discard", minimum=0, maximum=0.95, value=0.0, step=0.05,
            label="Discard ratio (lowest attentions)"),
          N("dropdown", "layers.heads", choices=["mean"], value="mean", label="Heads (clicked patch)",
            elem_id="layers-heads")),
        md(name="layers.caption", elem_id="layers-caption"),
        N("row", None, N("image", "layers.rollout", label="Rollout (click a patch)", elem_id="layers-rollout"),
          N("plot", "layers.rollout_fig", label="Rollout, token resolution (hover)", min_width=300),
          equal_height=False),
        N("row", None, N("image", "layers.attends_to", label="What the patch attends to", elem_id="layers-attends-to"),
          N("image", "layers.attended_by", label="What attends to the patch", elem_id="layers-attended-by"),
          equal_height=False),
        N("plot", "layers.patch_fig", label="Clicked patch, token resolution (hover)"),
        N("button", "layers.clear", value="Clear the clicked patch", size="sm"),
        N("plot", "layers.grid_fig", label="Raw attention, layers x heads"),
        N("plot", "layers.stats_fig", label="Entropy and mean attention distance"),
        N("button", "layers.stats_run", value="Compute entropy and distance", size="sm", visible=False),
    ]


def steps_tab(meth: Method, notes: dict[str, str]) -> Node:
    m = meth.name
    controls = [N("slider", f"steps.{m}.controls.{p.name}", minimum=p.minimum, maximum=p.maximum, value=p.minimum,
                  step=p.step, label=p.label + ("" if p.preview else " (re-run only)"), elem_id=f"steps-{m}-{p.name}")
                for p in meth.step_params]
    rerun = [N("button", f"steps.{m}.rerun", value=f"Re-run {meth.title} with these")] if controls else []
    return N("tab", f"tab.internals.{m}", md(notes.get(m, ""), elem_classes="fg-note"),
             N("row", None, *controls, *rerun),
             md(name=f"steps.{m}.notes", elem_id=f"steps-notes-{m}"),
             N("gallery", f"steps.{m}.gallery", label=f"{meth.title} step by step", columns=3, elem_id=f"steps-{m}"),
             N("plot", f"steps.{m}.figure", label=f"{meth.title} chart", visible=False, elem_id=f"steps-fig-{m}"),
             label=meth.title)
