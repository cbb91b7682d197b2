"""fgviz explorer: what TransFG, RAMS-Trans and TASN look at, side by side, layer by layer.

UI only: layout, events and conversion between Gradio values and fgviz calls. Models, the explanation cache and
every view live in `fgviz` (session, views, export); this file never holds an array in `gr.State` (only cache
keys) and only the handlers marked "runs a model" can run one.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--device auto|cpu|cuda|mps] [--model SPEC ...]
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline by default: no usage reporting

import gradio as gr

from fgviz import views
from fgviz.attention import HEAD_FUSIONS
from fgviz.export import export_zip
from fgviz.hub import WeightsError
from fgviz.imageio import MAX_BYTES, ImageError
from fgviz.session import AUTO, DOMAINS, ExpiredError, Explorer, env_specs, resolve_device
from fgviz.viz.overlay import COLORMAPS

try:  # ZeroGPU on Hugging Face Spaces; a no-op decorator elsewhere
    import spaces

    GPU: Callable = spaces.GPU
except ImportError:
    def GPU(fn: Callable) -> Callable:  # noqa: N802
        return fn

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
METHODS = ("transfg", "rams_trans", "tasn")
VITS = ("transfg", "rams_trans")
TITLES = views.METHOD_TITLES
ALL_MAPS = list(dict.fromkeys(name for m in METHODS for name in views.map_choices(m)))
EXPLORER = Explorer(device=os.environ.get("FGVIZ_DEVICE", "auto"), extra_specs=env_specs())
CSS = ".fg-note {font-size: 0.9em} .fg-banner {border-left: 4px solid #E69F00; padding-left: 8px}"
QUEUE_SIZE = 64  # events waiting at most (a class of 40, each click chaining a few fast view events); then "busy"
CONCURRENCY = 2  # events running at once; the events that may run a model share one slot (see build)
CACHE_CLEANUP = (1800, 3600)  # every 30 min, delete uploads and outputs older than 1 h from Gradio's cache
MAX_EXPORTS = 8  # export ZIPs kept on disk (Gradio serves its own copy); older ones are deleted
EXPORTS = tempfile.TemporaryDirectory(prefix="fgviz-exports-")  # removed when the app exits


# ---- model calls: the only functions that run a model (ZeroGPU runs them on the GPU, in a worker) --------------
@GPU
def gpu_explain(image: Any, spec: str, method: str, params: dict) -> Any:
    return EXPLORER.compute(image, spec, method, params)


@GPU
def gpu_deletion(spec: str, method: str, image: Any, saliency: Any, target: int, steps: int) -> Any:
    return EXPLORER.compute_deletion_insertion(spec, method, image, saliency, target, steps)


@GPU
def gpu_sanity(spec: str, method: str, image: Any, params: dict, seed: int) -> Any:
    return EXPLORER.compute_sanity(spec, method, image, params, seed)


def _raw_upload(payload: Any) -> str | bytes | None:
    """The upload's file path (or bytes of a data URL), undecoded: `fgviz.imageio.decode_image` is the one decoder
    (clear messages for non-images, bombs, 16-bit, CMYK, EXIF...), not Gradio's PIL round trip."""
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        return base64.b64decode(payload.url.split(",", 1)[1])
    return payload.path


def upload_image(**kwargs: Any) -> gr.Image:
    """A gr.Image input whose value reaches the handler undecoded. The instance's `preprocess` is replaced rather
    than subclassing gr.Image, because Gradio writes a .pyi stub next to any module that subclasses a component."""
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    image.preprocess = _raw_upload
    return image


def friendly(fn: Callable) -> Callable:
    """Turn fgviz's specific errors into a message in the UI (gr.Error) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ImageError, WeightsError, ExpiredError, KeyError, ValueError) as e:
            raise gr.Error(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)) from None

    return wrapper


def style(cmap: str, alpha: float, norm: str) -> views.Style:
    return views.Style(cmap=cmap, alpha=float(alpha), norm=norm)


def explain_keys(image: Any, domain: str, specs: tuple[str, ...], progress: Any = None) -> tuple[dict, dict]:
    """Run (or fetch from the cache) the three methods on one image; returns (method -> cache key, method -> note).

    A typed model spec that cannot be used falls back to the domain's registry model; the note says why (shown as
    a warning and returned in the numbers)."""
    if image is None:
        raise gr.Error("Upload a bird or a car, or pick an example, first.")
    iid = EXPLORER.add_image(image)
    keys, notes = {}, {}
    for i, (method, spec) in enumerate(zip(METHODS, specs, strict=True)):
        if progress is not None:
            progress((i, len(METHODS)), desc=f"{TITLES[method]}: explaining")
        spec, note = EXPLORER.resolve_or_default(spec, method, domain)
        if note:
            notes[method] = note
            gr.Warning(note, duration=20)
        keys[method] = EXPLORER.explain(iid, spec, method, compute=gpu_explain)
    return keys, notes


def current(keys: dict | None, image: Any, domain: str, specs: tuple[str, ...]) -> dict[str, str]:
    """The session's explanations when it has them (UI), else explain the given image (API callers)."""
    if keys and all(m in keys for m in METHODS):
        try:
            for k in keys.values():
                EXPLORER.get(k)
            return keys
        except ExpiredError:
            pass
    return explain_keys(image, domain, specs)[0]


def expls(keys: dict) -> dict[str, Any]:
    return {m: EXPLORER.get(k) for m, k in keys.items()}


# ---- handlers ---------------------------------------------------------------------------------------------------
@friendly
def explain(image: Any, domain: str, transfg_model: str, rams_trans_model: str, tasn_model: str, cmap: str,
            alpha: float, norm: str, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """Runs a model (once per image and model). Returns the three signature views, their numbers and the keys."""
    keys, notes = explain_keys(image, domain, (transfg_model, rams_trans_model, tasn_model), progress)
    ov = views.overview(expls(keys), style(cmap, alpha, norm), main_only=True)  # the UI's overview() draws the rest
    numbers = {m: {**views.summary(EXPLORER.get(k)), "overview_size": list(ov[m].main.shape[:2]),
                   **({"fallback": notes[m]} if m in notes else {})} for m, k in keys.items()}
    return ov["transfg"].main, ov["rams_trans"].main, ov["tasn"].main, numbers, keys


@friendly
def overview(keys: dict, cmap: str, alpha: float, norm: str) -> tuple:
    if not keys:
        return (gr.skip(),) * 11
    ov = views.overview(expls(keys), style(cmap, alpha, norm))
    banner = "\n\n".join(views.weights_note(EXPLORER.get(k)) for k in keys.values())
    out = [banner]
    for m in METHODS:
        out += [ov[m].main, [(im, cap) for im, cap in ov[m].panels[1:]], ov[m].topk]
    return (*out, ov["rams_trans"].extra)


def _patch(patch: Any, vit: str) -> int | None:
    return patch[1] if patch and patch[0] == vit else None


@friendly
def layers_fast(keys: dict, vit: str, layer: int, fusion: str, discard: float, heads: str, patch: Any, cmap: str,
                alpha: float, norm: str) -> tuple:
    """Re-renders from the cache only (the layer slider's handler)."""
    if not keys:
        return (gr.skip(),) * 6
    an = EXPLORER.analysis(keys[vit])
    lv = views.layer_view(an, int(layer), style(cmap, alpha, norm), fusion=fusion, discard=float(discard),
                          token=_patch(patch, vit), heads=heads if heads else "mean")
    hint = "" if lv.attends_to is not None else " Click a patch on the rollout to see its rows and columns."
    note = (" TransFG's last (part) layer attends over CLS + one token per head only and is not part of the rollout."
            if vit == "transfg" else " Scale 1 (the full image).")
    return lv.rollout, lv.rollout_fig, lv.attends_to, lv.attended_by, lv.patch_fig, lv.caption + "." + hint + note


@friendly
def layers_full(keys: dict, vit: str, layer: int, fusion: str, discard: float, heads: str, patch: Any, cmap: str,
                alpha: float, norm: str) -> tuple:
    if not keys:
        return (gr.skip(),) * 10
    an = EXPLORER.analysis(keys[vit])
    layer = min(int(layer), an.L) if layer else an.L
    head_choices = [*HEAD_FUSIONS, *(f"h{h + 1}" for h in range(an.H))]
    heads = heads if heads in head_choices else "mean"
    st = style(cmap, alpha, norm)
    fast = layers_fast(keys, vit, layer, fusion, discard, heads, patch, cmap, alpha, norm)
    return (gr.update(maximum=an.L, value=layer, label=f"Layer (1..{an.L})"),
            gr.update(choices=head_choices, value=heads), views.head_grid(an, st, _patch(patch, vit)),
            views.stats_figure(an, compute=not an.expensive), *fast)


@friendly
def layer_stats(keys: dict, vit: str) -> Any:
    """Entropy and mean attention distance (one sweep over the stored attention; no model)."""
    return views.stats_figure(EXPLORER.analysis(keys[vit])) if keys else gr.skip()


@friendly
def select_patch(keys: dict, vit: str, layer: int, fusion: str, discard: float, heads: str, cmap: str, alpha: float,
                 norm: str, evt: gr.SelectData) -> tuple:
    if not keys:
        return (gr.skip(),) * 8
    an = EXPLORER.analysis(keys[vit])
    e = an.expl
    li = min(int(layer), an.L)
    scale = views.overlay.upscale_factor(e.size, views.MIN_SIZE)
    token = views.token_at(e, float(evt.index[0]), float(evt.index[1]), scale)
    patch = [vit, token]
    return (patch, views.head_grid(an, style(cmap, alpha, norm), token),
            *layers_fast(keys, vit, li, fusion, discard, heads, patch, cmap, alpha, norm))


@friendly
def clear_patch(keys: dict, vit: str, layer: int, fusion: str, discard: float, heads: str, cmap: str, alpha: float,
                norm: str) -> tuple:
    if not keys:
        return (None, *(gr.skip(),) * 7)
    an = EXPLORER.analysis(keys[vit])
    return (None, views.head_grid(an, style(cmap, alpha, norm)),
            *layers_fast(keys, vit, layer, fusion, discard, heads, None, cmap, alpha, norm))


def _gallery(panels: list) -> list:
    return [(im, cap) for im, cap in panels]


@friendly
def internals(keys: dict, cmap: str, alpha: float, norm: str) -> tuple:
    if not keys:
        return (gr.skip(),) * 13
    st = style(cmap, alpha, norm)
    t, r, a = (EXPLORER.get(keys[m]) for m in METHODS)
    r_panels, r_info = views.rams_steps(r, st)
    a_params = views.TASNParams.of(a)
    a_panels, a_fig, a_info = views.tasn_steps(a, st, a_params)
    model_r = EXPLORER.model(EXPLORER.spec_of(keys["rams_trans"]), "rams_trans")
    alphas = r.params.get("alphas") or [1.2]
    channels = int(a.features.shape[0])
    return (
        _gallery(views.transfg_steps(t, st)),
        _gallery(r_panels), _rams_md(r, r_info),
        gr.update(value=float(alphas[0])),
        gr.update(maximum=model_r.config.num_scales, value=int(r.params.get("num_scales", 2))),
        _gallery(a_panels), a_fig, _tasn_md(a, a_info),
        gr.update(value=a_params.gamma), gr.update(value=a_params.dense), gr.update(value=a_params.iters),
        gr.update(value=a_params.out_size),
        gr.update(maximum=channels - 1, value=-1 if a_params.detail_channel is None else a_params.detail_channel),
    )


def _rams_md(e: Any, info: dict) -> str:
    if not info["steps"]:
        return "One scale only: nothing to zoom."
    sp = e.scale_probs
    lines = [f"Prediction (sum of the scales' logits): **{views.caption_top1(e.labels, e.probs)}**"]
    lines += [f"- scale {s + 1} alone: {views.caption_top1(e.labels, p)}" for s, p in enumerate(sp)]
    if any(st["preview"] for st in info["steps"]):
        lines.append("\n*Preview from the stored map g: press **Re-run** for the prediction with this alpha.*")
    return "\n".join(lines)


def _tasn_md(e: Any, info: dict) -> str:
    p = info["params"]
    head = f"Prediction (shared fc on the structure-preserved image): **{views.caption_top1(e.labels, e.probs)}**"
    params = ", ".join(f"{k} {'all channels' if v is None else v}" for k, v in p.items())
    tail = "\n\n*Preview from the stored features X: press **Re-run** for the prediction.*" if info["preview"] else ""
    return f"{head}\n\nparameters: {params}{tail}"


@friendly
def rams_preview(keys: dict, alpha_r: float, cmap: str, alpha: float, norm: str) -> tuple:
    if not keys:
        return gr.skip(), gr.skip()
    e = EXPLORER.get(keys["rams_trans"])
    panels, info = views.rams_steps(e, style(cmap, alpha, norm), alpha=float(alpha_r))
    return _gallery(panels), _rams_md(e, info)


def _tasn_params(gamma: float, dense: float, iters: int, out_size: int, detail: int) -> views.TASNParams:
    return views.TASNParams(float(gamma), float(dense), int(iters), int(out_size), None if detail < 0 else int(detail))


@friendly
def tasn_preview(keys: dict, gamma: float, dense: float, iters: int, out_size: int, detail: int, cmap: str,
                 alpha: float, norm: str) -> tuple:
    if not keys:
        return gr.skip(), gr.skip(), gr.skip()
    e = EXPLORER.get(keys["tasn"])
    panels, fig, info = views.tasn_steps(e, style(cmap, alpha, norm), _tasn_params(gamma, dense, iters, out_size,
                                                                                   detail))
    return _gallery(panels), fig, _tasn_md(e, info)


def _rerun(keys: dict, method: str, params: dict) -> dict:
    if not keys:
        raise gr.Error("Explain an image first.")
    old = keys[method]
    key = EXPLORER.explain(EXPLORER.iid_of(old), EXPLORER.spec_of(old), method, params, compute=gpu_explain)
    return {**keys, method: key}


@friendly
def rams_rerun(keys: dict, alpha_r: float, scales: int) -> dict:
    """Runs a model: RAMS-Trans with another alpha / number of scales."""
    return _rerun(keys, "rams_trans", {"alpha": float(alpha_r), "num_scales": int(scales)})


@friendly
def tasn_rerun(keys: dict, gamma: float, dense: float, iters: int, out_size: int, detail: int) -> dict:
    """Runs a model: TASN with other sampler / attention parameters."""
    p = _tasn_params(gamma, dense, iters, out_size, detail)
    return _rerun(keys, "tasn", {"gamma": p.gamma, "dense": p.dense, "iters": p.iters, "out_size": p.out_size,
                                 "detail_channel": p.detail_channel})


def map_choices(method: str) -> dict:
    choices = views.map_choices(method)
    return gr.update(choices=choices, value=choices[0])


@friendly
def faithfulness(keys: dict, image: Any, domain: str, transfg_model: str, rams_trans_model: str, tasn_model: str,
                 method: str, map_name: str, steps: int, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """Runs a model (on the perturbed images): deletion/insertion curves and the pointing game."""
    keys = current(keys, image, domain, (transfg_model, rams_trans_model, tasn_model))
    key = keys[method]
    map_name = map_name if map_name in views.map_choices(method) else views.map_choices(method)[0]
    progress(0.1, desc=f"{TITLES[method]}: deletion and insertion ({2 * (int(steps) + 1)} images x 2)")
    res = EXPLORER.deletion_insertion(key, map_name, int(steps), compute=gpu_deletion)
    point = EXPLORER.pointing(key, map_name)
    _, why = EXPLORER.ground_truth(key)
    e = EXPLORER.get(key)
    fig = views.curves_figure(res, f"{TITLES[method]}, map '{map_name}', class {e.prediction}")
    md = [f"**Deletion AUC** {res.deletion.value:.3f} (random map {res.deletion.chance:.3f}; lower is better) · "
          f"**Insertion AUC** {res.insertion.value:.3f} (random map {res.insertion.chance:.3f}; higher is better)"]
    if point:
        md.append(f"**Pointing game** vs the deciding parts: energy inside the parts {point['energy']:.3f} "
                  f"(uniform map {point['energy_chance']:.3f}); the map's maximum is "
                  f"{'ON' if point['hit'] else 'not on'} a part (chance {point['hit_chance']:.3f}).")
    md.append(f"*{why}*")
    numbers = {"method": method, "map": map_name, "model": e.model_name, "weights_kind": e.weights_kind,
               "target": e.prediction, "deletion_auc": res.deletion.value, "deletion_chance": res.deletion.chance,
               "insertion_auc": res.insertion.value, "insertion_chance": res.insertion.chance,
               "fractions": res.fractions.tolist(), "deletion": res.deletion_curve.tolist(),
               "insertion": res.insertion_curve.tolist(), "pointing": point}
    return fig, "\n\n".join(md), numbers


@friendly
def sanity(keys: dict, image: Any, domain: str, transfg_model: str, rams_trans_model: str, tasn_model: str,
           method: str, map_name: str, cmap: str, alpha: float, norm: str) -> tuple:
    """Runs a model (a weight-randomised copy): the Adebayo et al. model-randomisation sanity check."""
    keys = current(keys, image, domain, (transfg_model, rams_trans_model, tasn_model))
    key = keys[method]
    map_name = map_name if map_name in views.map_choices(method) else views.map_choices(method)[0]
    rnd, corr = EXPLORER.sanity_check(key, map_name, compute=gpu_sanity)
    e = EXPLORER.get(key)
    pair = views.side_by_side(e, rnd, map_name, style(cmap, alpha, norm), ("trained weights", "weights randomised"))
    md = (f"Spearman rank correlation between the two maps: **{corr:.3f}** (near 1 = the map ignores the weights, "
          f"a failed sanity check; near 0 = it depends on them). Randomised model predicts "
          f"{views.caption_top1(rnd.labels, rnd.probs)}.")
    if e.weights_kind == "random":
        md += "\n\n⚠️ The loaded weights are themselves random placeholders, so this compares two random models."
    return pair, md, {"method": method, "map": map_name, "spearman": corr, "randomized_prediction": rnd.prediction}


def export_path(name: str) -> Path:
    """A fresh folder for one export under the app's export directory, deleting all but the newest MAX_EXPORTS - 1
    earlier ones first (Gradio copies a returned file into its own cache, so an old ZIP is no longer needed)."""
    root = Path(EXPORTS.name)
    earlier = sorted(root.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    for old in earlier[: max(len(earlier) - (MAX_EXPORTS - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root)) / name


@friendly
def export(keys: dict, image: Any, domain: str, transfg_model: str, rams_trans_model: str, tasn_model: str,
           cmap: str, alpha: float, norm: str, fusion: str, discard: float) -> str:
    """ZIP of every figure as PNG + numbers.json, from the cache (runs a model only for an unseen image)."""
    keys = current(keys, image, domain, (transfg_model, rams_trans_model, tasn_model))
    out = export_path(f"fgviz-{EXPLORER.iid_of(keys['transfg'])}.zip")
    return str(export_zip(out, expls(keys), style(cmap, alpha, norm), fusion=fusion, discard=float(discard),
                          meta={"keys": keys}))


# ---- layout -----------------------------------------------------------------------------------------------------
def examples() -> list[list[str]]:
    return [[str(p), p.name.split("_")[0]] for p in sorted(ASSETS.glob("*.jpg")) + sorted(ASSETS.glob("*.png"))]


def build(explorer: Explorer = EXPLORER) -> gr.Blocks:
    notes = views.notes()
    with gr.Blocks(title="fgviz: fine-grained attention explorer", delete_cache=CACHE_CLEANUP) as demo:
        keys = gr.State({})
        patch = gr.State(None)
        gr.Markdown("# fgviz: what do fine-grained recognisers look at?\n" + notes.get("intro", ""))
        with gr.Row():
            with gr.Column(scale=2):
                image = upload_image(label="Image (a bird or a car)", height=300, sources=["upload", "clipboard"])
                domain = gr.Radio(list(DOMAINS), value="birds", label="Domain (picks the registry models)")
                run = gr.Button("Explain", variant="primary")
            with gr.Column(scale=3):
                ex = gr.Examples(examples(), inputs=[image, domain], label="Examples (synthetic, with ground truth)",
                                 examples_per_page=8, cache_examples=False, visible_columns=[0])
                with gr.Accordion("Models", open=False):
                    specs = [gr.Dropdown(explorer.choices(m), value=AUTO, allow_custom_value=True, label=TITLES[m],
                                         info="auto = registry model of the domain; or a registry name, a folder "
                                              "under weights/, org/repo[@revision] or timm:<name>")
                             for m in METHODS]
                with gr.Accordion("Display", open=True):
                    with gr.Row():
                        cmap = gr.Dropdown(list(COLORMAPS), value=COLORMAPS[0], label="Colormap",
                                           info="viridis, cividis, magma, inferno are colour-blind safe")
                        opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Overlay opacity")
                        norm = gr.Radio([("one scale for all panels", "shared"), ("each panel its own", "panel")],
                                        value="shared", label="Normalisation")
        banner = gr.Markdown("Pick an example or upload an image.", elem_classes="fg-banner")
        ov_main, ov_gal, ov_top = {}, {}, {}
        with gr.Tabs():
            with gr.Tab("Overview"):
                with gr.Row(equal_height=False):
                    for m in METHODS:
                        with gr.Column(min_width=280):
                            gr.Markdown(f"### {TITLES[m]}\n{notes.get(m + ' short', '')}", elem_classes="fg-note")
                            ov_main[m] = gr.Image(label=f"{TITLES[m]} signature view", format="png",
                                                  interactive=False, elem_id=f"ov-{m}")
                            ov_top[m] = gr.Plot(label=f"{TITLES[m]} top-5" + (" (sum of the scales' logits)" if
                                                m == "rams_trans" else ""), elem_id=f"ov-top-{m}")
                            ov_gal[m] = gr.Gallery(label=f"{TITLES[m]} panels", format="png", object_fit="contain",
                                                   columns=2, height=260,
                                                   elem_id=f"ov-gal-{m}")
                            if m == "rams_trans":
                                ov_scales = gr.Plot(label="RAMS-Trans top-5 per scale")
                with gr.Accordion("Numbers (JSON)", open=False):
                    numbers = gr.JSON(label="prediction, top-5, probabilities, boxes, tokens, parameters")
            with gr.Tab("Layers and heads"):
                gr.Markdown(notes.get("layers", ""), elem_classes="fg-note")
                with gr.Row():
                    vit = gr.Radio([(TITLES[m], m) for m in VITS], value="transfg", label="Model")
                    layer = gr.Slider(1, 12, value=12, step=1, label="Layer")
                    fusion = gr.Radio(list(HEAD_FUSIONS), value="mean", label="Head fusion (rollout)")
                    discard = gr.Slider(0, 0.95, value=0.0, step=0.05, label="Discard ratio (lowest attentions)")
                    heads = gr.Dropdown(list(HEAD_FUSIONS), value="mean", label="Heads (clicked patch)")
                layer_md = gr.Markdown()
                with gr.Row():
                    roll_img = gr.Image(label="Rollout (click a patch)", format="png", interactive=False)
                    roll_fig = gr.Plot(label="Rollout, token resolution (hover)")
                with gr.Row():
                    to_img = gr.Image(label="What the patch attends to", format="png", interactive=False)
                    by_img = gr.Image(label="What attends to the patch", format="png", interactive=False)
                patch_fig = gr.Plot(label="Clicked patch, token resolution (hover)")
                clear = gr.Button("Clear the clicked patch", size="sm")
                grid_fig = gr.Plot(label="Raw attention, layers x heads")
                stats_fig = gr.Plot(label="Entropy and mean attention distance")
                stats_run = gr.Button("Compute entropy and distance", size="sm")
            with gr.Tab("Internals"):
                with gr.Tab("TransFG"):
                    gr.Markdown(notes.get("transfg", ""), elem_classes="fg-note")
                    t_gal = gr.Gallery(label="TransFG step by step", format="png", object_fit="contain", columns=3,
                                       height=520)
                with gr.Tab("RAMS-Trans"):
                    gr.Markdown(notes.get("rams_trans", ""), elem_classes="fg-note")
                    with gr.Row():
                        r_alpha = gr.Slider(0.5, 3.0, value=1.2, step=0.05, label="alpha (threshold x mean)")
                        r_scales = gr.Slider(1, 3, value=2, step=1, label="scales")
                        r_run = gr.Button("Re-run RAMS-Trans with these")
                    r_md = gr.Markdown()
                    r_gal = gr.Gallery(label="RAMS-Trans step by step", format="png", object_fit="contain", columns=5,
                                       height=420)
                with gr.Tab("TASN"):
                    gr.Markdown(notes.get("tasn", ""), elem_classes="fg-note")
                    with gr.Row():
                        a_gamma = gr.Slider(0.5, 20, value=7, step=0.5, label="gamma (trilinear softmax)")
                        a_dense = gr.Slider(1, 16, value=4, step=0.5, label="dense (max magnification)")
                        a_iters = gr.Slider(0, 20, value=5, step=1, label="iterations")
                        a_out = gr.Slider(16, 512, value=224, step=8, label="output size")
                        a_detail = gr.Slider(-1, 511, value=-1, step=1, label="detail channel (-1 = all)")
                        a_run = gr.Button("Re-run TASN with these")
                    a_md = gr.Markdown()
                    a_gal = gr.Gallery(label="TASN step by step", format="png", object_fit="contain", columns=4,
                                       height=520)
                    a_fig = gr.Plot(label="Marginals and sampling density")
            with gr.Tab("Faithfulness"):
                gr.Markdown(notes.get("faithfulness", ""), elem_classes="fg-note")
                with gr.Row():
                    f_method = gr.Radio([(TITLES[m], m) for m in METHODS], value="transfg", label="Method")
                    f_map = gr.Dropdown(ALL_MAPS, value="rollout", label="Map",
                                        info="maps of the chosen method (another method's map falls back to the "
                                             "first of this one's)")
                    f_steps = gr.Slider(4, 32, value=16, step=1, label="Steps")
                with gr.Row():
                    f_run = gr.Button("Deletion / insertion + pointing game", variant="primary")
                    s_run = gr.Button("Sanity check: randomise the weights")
                f_md = gr.Markdown(label="summary")
                f_fig = gr.Plot(label="Deletion and insertion")
                with gr.Accordion("Numbers (JSON)", open=False):
                    f_json = gr.JSON(label="deletion / insertion / pointing numbers")
                s_md = gr.Markdown(label="summary")
                s_img = gr.Image(label="Same map, trained vs randomised weights", format="png", interactive=False)
                with gr.Accordion("Sanity numbers (JSON)", open=False):
                    s_json = gr.JSON(label="sanity numbers")
            with gr.Tab("Export"):
                gr.Markdown("A ZIP with every figure as PNG and `numbers.json` (the same as `python -m fgviz "
                            "explain IMAGE --out DIR`). Uses the current display settings and head fusion.")
                e_run = gr.Button("Export ZIP")
                e_file = gr.File(label="export")
            with gr.Tab("About"):
                gr.Markdown(notes.get("about", ""))

        # ---- events -------------------------------------------------------------------------------------------
        sty = [cmap, opacity, norm]
        explain_in = [image, domain, *specs, *sty]
        explain_out = [ov_main["transfg"], ov_main["rams_trans"], ov_main["tasn"], numbers, keys]
        ov_out = [banner, *[c for m in METHODS for c in (ov_main[m], ov_gal[m], ov_top[m])], ov_scales]
        lay_in = [keys, vit, layer, fusion, discard, heads, patch, *sty]
        lay_fast = [roll_img, roll_fig, to_img, by_img, patch_fig, layer_md]
        lay_full = [layer, heads, grid_fig, stats_fig, *lay_fast]
        int_out = [t_gal, r_gal, r_md, r_alpha, r_scales, a_gal, a_fig, a_md, a_gamma, a_dense, a_iters, a_out,
                   a_detail]
        model = {"concurrency_id": "model", "concurrency_limit": 1}  # events that may run a model share one slot
        private = {"api_visibility": "private"}

        def after(ev: Any, *, reset_patch: bool = True) -> None:
            """Everything else is re-rendered from the cache once new explanations are in `keys`."""
            if reset_patch:
                ev = ev.success(lambda: None, None, patch, **private)
            ev.success(overview, [keys, *sty], ov_out, **private).then(layers_full, lay_in, lay_full, **private).then(
                internals, [keys, *sty], int_out, **private)

        after(gr.on([run.click, image.upload], explain, explain_in, explain_out, api_name="explain",
                    api_description="Explain an image with the three methods: their signature views (PNG) and, "
                                    "as JSON, each one's prediction, top-5, probabilities, boxes and tokens.",
                    **model))
        after(ex.load_input_event.then(explain, explain_in, explain_out, **private, **model))
        gr.on([cmap.change, opacity.release, norm.change], overview, [keys, *sty], ov_out, **private)
        gr.on([cmap.change, opacity.release, norm.change, vit.change], layers_full, lay_in, lay_full, **private)
        gr.on([cmap.change, opacity.release, norm.change], internals, [keys, *sty], int_out, **private)
        gr.on([layer.release, fusion.change, discard.release, heads.change], layers_fast, lay_in, lay_fast,
              **private)
        patch_in = [keys, vit, layer, fusion, discard, heads, *sty]
        roll_img.select(select_patch, patch_in, [patch, grid_fig, *lay_fast], **private)
        clear.click(clear_patch, patch_in, [patch, grid_fig, *lay_fast], **private)
        stats_run.click(layer_stats, [keys, vit], stats_fig, **private)
        r_alpha.release(rams_preview, [keys, r_alpha, *sty], [r_gal, r_md], **private)
        tasn_in = [keys, a_gamma, a_dense, a_iters, a_out, a_detail]
        gr.on([a_gamma.release, a_dense.release, a_iters.release, a_out.release, a_detail.release], tasn_preview,
              [*tasn_in, *sty], [a_gal, a_fig, a_md], **private)
        after(r_run.click(rams_rerun, [keys, r_alpha, r_scales], keys, **private, **model), reset_patch=False)
        after(a_run.click(tasn_rerun, tasn_in, keys, **private, **model), reset_patch=False)
        f_method.change(map_choices, f_method, f_map, **private)
        doc_in = [keys, image, domain, *specs]
        f_run.click(faithfulness, [*doc_in, f_method, f_map, f_steps], [f_fig, f_md, f_json], api_name="faithfulness",
                    api_description="Deletion/insertion curves with AUC (and random-map chance) for one map of one "
                                    "method, plus the pointing game when the image comes from the generator.",
                    **model)
        s_run.click(sanity, [*doc_in, f_method, f_map, *sty], [s_img, s_md, s_json], api_name="sanity",
                    api_description="Model-randomisation sanity check: the map of a weight-randomised copy, and the "
                                    "Spearman correlation with the trained model's map.", **model)
        e_run.click(export, [*doc_in, *sty, fusion, discard], e_file, api_name="export",
                    api_description="ZIP of every figure as PNG plus numbers.json.", **model)
    return demo


demo = build()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="fgviz explorer (Gradio app)")
    ap.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    ap.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link (needs the internet)")
    ap.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    ap.add_argument("--model", action="append", default=[], metavar="SPEC",
                    help="offer another model (registry name, weights folder, org/repo[@rev], timm:<name>); "
                         f"repeatable; also ${'FGVIZ_MODELS'} (comma-separated)")
    args = ap.parse_args(argv)
    app = demo
    if args.device:
        EXPLORER.device = resolve_device(args.device)
    if args.model:
        EXPLORER.add_specs(args.model)
        app = build()  # the model dropdowns list the new specs
    launch(app, host=args.host, port=args.port, share=args.share)


def launch(app: gr.Blocks, *, host: str | None = None, port: int | None = None, share: bool = False,
           queue_size: int | None = None, **kwargs: Any) -> Any:
    """Queue with limits and launch with the theme and CSS (Gradio 6).

    At most QUEUE_SIZE events wait (default 64, $FGVIZ_QUEUE_SIZE): beyond that Gradio answers 503 and the page
    says "This application is currently busy. Please try again." (gradio_client raises QueueError "Queue is full!
    Please try again."). CONCURRENCY events run at once, and the events that run a model share one slot. Uploads
    over imageio.MAX_BYTES are refused by Gradio before they reach a handler. No allowed_paths: Gradio serves only
    its own cache (uploads, outputs, the examples it copied there), never the app's folder or weights/.
    """
    size = queue_size if queue_size is not None else int(os.environ.get("FGVIZ_QUEUE_SIZE", QUEUE_SIZE))
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=size)
    return app.launch(server_name=host, server_port=port, share=share, theme=gr.themes.Soft(), css=CSS,
                      max_file_size=MAX_BYTES, footer_links=["api", "gradio"], **kwargs)


if __name__ == "__main__":
    main()
