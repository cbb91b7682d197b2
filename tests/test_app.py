"""The explorer: `fgviz.explorer.ui` called directly (what every control shows, that view controls run no model, that
no panel outlives the request that made it), and the Gradio app end to end through its named endpoints.

Uses the demo registry models (about 1 M parameters each, CPU) and the example images in assets/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from fgviz.explorer import layout, views
from fgviz.explorer import ui as U
from fgviz.explorer.session import Explorer
from fgviz.methods import METHODS, FineGrainedModel
from fgviz.viz.panels import Style

ROOT = Path(__file__).resolve().parents[1]
BIRD = str(ROOT / "assets" / "birds_1.jpg")
CAR = str(ROOT / "assets" / "cars_2.jpg")
STYLE = Style("viridis", 0.5, "shared")
NAMED = {"/explain", "/faithfulness", "/sanity", "/export"}
SHOWN = layout.default_methods()
VITS = [m for m in layout.attention_methods() if m in SHOWN]


@pytest.fixture(scope="module")
def ui():
    u = U.UI(Explorer(device="cpu"))
    yield u
    u.close()


@pytest.fixture(scope="module")
def keys(ui) -> dict:
    """One bird explained by every default method (runs each model once)."""
    return ui.explain(BIRD, "birds", {}, SHOWN).keys


@pytest.fixture(scope="module")
def client(ui, tmp_path_factory):
    from gradio_client import Client

    demo = app.build_app(ui.explorer)
    _, url, _ = app.launch(demo, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("gradio_client")))
    finally:
        demo.close()


def _check_numbers(numbers: dict) -> None:
    """Probabilities sum to 1, top-5 is sorted and agrees with them, and every box lies inside its image."""
    assert set(numbers) == set(SHOWN)
    for m, n in numbers.items():
        H, W = n["image_size"]
        probs = np.asarray(n["probs"])
        assert probs.shape == (len(n["labels"]),)
        assert abs(probs.sum() - 1.0) < 1e-4, m
        assert (probs >= 0).all(), m
        top = [p for _, p in n["top5"]]
        assert len(top) == min(5, probs.size)
        assert top == sorted(top, reverse=True)
        assert top[0] == pytest.approx(probs.max(), abs=1e-6)
        assert n["prediction"] == n["top5"][0][0]
        for name in ("part_boxes", "crop_boxes"):
            for x0, y0, x1, y1 in n.get(name, []):
                assert 0 <= x0 < x1 <= W, (m, name)
                assert 0 <= y0 < y1 <= H, (m, name)
        for rows_cols in n.get("sample_coords", {}).values():
            assert min(rows_cols["rows"]) >= 0
            assert max(rows_cols["rows"]) <= H - 1
            assert min(rows_cols["cols"]) >= 0
            assert max(rows_cols["cols"]) <= W - 1
        assert n["made_by"].startswith(views.title(m))
    assert len(numbers["transfg"]["part_boxes"]) == len(numbers["transfg"]["part_tokens"]) > 0
    assert numbers["rams_trans"]["crop_boxes"], "the demo RAMS-Trans runs two scales, so one zoom box"


def _images(named: dict) -> dict[str, np.ndarray]:
    """Every image a result shows, by component name (gallery entries as name[i])."""
    out = {}
    for k, v in named.items():
        if isinstance(v, np.ndarray):
            out[k] = v
        elif isinstance(v, list) and v and isinstance(v[0], tuple):
            out.update({f"{k}[{i}]": im for i, (im, _) in enumerate(v)})
    return out


def _captions(named: dict) -> dict[str, str]:
    out = {k: v for k, v in named.items() if isinstance(v, str) and k.endswith("caption")}
    for k, v in named.items():
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            out.update({f"{k}[{i}]": cap for i, (_, cap) in enumerate(v)})
    return out


# ---- what each control shows ----------------------------------------------------------------------------------


def test_explain_returns_overview_images_and_numbers(ui) -> None:
    res = ui.explain(CAR, "cars", {}, SHOWN)
    _check_numbers(res.numbers)
    for m in SHOWN:
        img = res.mains[m]
        assert img.dtype == np.uint8
        assert list(img.shape[:2]) == res.numbers[m]["overview_size"]
        assert res.keys[m].spec == f"{m}-cars-demo"
    assert res.notes == {}


def test_explain_images_are_the_overview_tabs(ui, keys) -> None:
    """/explain draws only the main images (main_only); they must be the Overview tab's, pixel for pixel."""
    res = ui.explain(BIRD, "birds", {}, SHOWN)
    assert res.keys == keys
    shown = ui.render(keys, {}, SHOWN, VITS[0], STYLE)
    for m in SHOWN:
        np.testing.assert_array_equal(res.mains[m], shown[f"overview.{m}.main"])


def test_explain_is_cached_per_image_model_and_parameters(ui, keys) -> None:
    before = ui.explorer.forward_count
    again = ui.explain(BIRD, "birds", {}, SHOWN, style=Style("magma", 0.3, "panel")).keys
    assert again == keys
    assert ui.explorer.forward_count == before


def test_every_panel_says_which_model_image_and_parameters_made_it(ui, keys) -> None:
    shown = ui.render(keys, {}, SHOWN, VITS[0], STYLE)
    caps = _captions(shown)
    for m in SHOWN:
        own = {k: c for k, c in caps.items() if k.startswith((f"overview.{m}.", f"steps.{m}."))}
        assert own, m
        for k, c in own.items():  # gallery captions are plain text: no Markdown backticks shown literally
            made_by = keys[m].describe(markdown="gallery" not in k)
            assert made_by in c, (k, c)
            assert "gallery" not in k or "`" not in c, (k, c)
    assert keys[VITS[0]].describe() in shown["layers.caption"]
    for m in SHOWN:
        assert keys[m].image_id[:8] in keys[m].describe()
        assert keys[m].spec in keys[m].describe()
    assert all(views.title(m) in shown["status"] for m in SHOWN)


def test_switching_the_model_leaves_no_panel_of_the_old_one(ui, keys) -> None:
    """Another model for the same image: every caption names the new model and no image is carried over."""
    res = ui.explain(BIRD, "birds", {"transfg": "transfg-cars-demo"}, SHOWN)
    assert res.keys["transfg"].spec == "transfg-cars-demo"
    assert res.keys["tasn"] == keys["tasn"]
    old, new = ui.render(keys, {}, SHOWN, "transfg", STYLE), ui.render(res.keys, {}, SHOWN, "transfg", STYLE)
    caps = _captions(new)
    for k, c in caps.items():
        if k.startswith(("overview.transfg.", "steps.transfg.", "layers.")):
            assert "transfg-cars-demo" in c, k
            assert "transfg-birds-demo" not in c, k
    changed = [k for k, im in _images(new).items() if k.startswith("overview.transfg.")
               and not (k in _images(old) and np.array_equal(im, _images(old)[k]))]
    assert "overview.transfg.main" in changed


def test_nothing_explained_shows_nothing(ui) -> None:
    """No keys (before the first explain, or after a failed one): every panel of every tab is empty."""
    empty = ui.render({}, {}, SHOWN, VITS[0], STYLE)
    assert not _images(empty)
    value = lambda v: v.get("value") if isinstance(v, U.Props) else v  # noqa: E731
    assert all(value(v) is None for k, v in empty.items()
               if k.endswith((".main", ".topk", "_fig", ".figure", ".rollout")))
    assert all(not empty[f"steps.{m}.figure"]["visible"] for m in METHODS)  # no empty chart placeholder
    assert all(empty[f"overview.{m}.gallery"] is None for m in METHODS)
    assert all(not empty[f"steps.{m}.gallery"] for m in METHODS)
    assert all(empty[k] is None for k in U.EMPTY_RESULTS)
    assert "Nothing explained" in empty["status"]
    # and the step controls go back to a fresh page's values
    for m in METHODS:
        for p in METHODS[m].step_params:
            assert empty[f"steps.{m}.controls.{p.name}"]["value"] == p.minimum


def test_render_empties_the_per_request_tabs(ui, keys) -> None:
    shown = ui.render(keys, {}, SHOWN, VITS[0], STYLE)
    assert all(shown[k] is None for k in U.EMPTY_RESULTS)
    assert shown["shown"] == {}
    assert shown["patch"] is None


def test_banner_says_what_the_image_and_the_weights_are(ui, keys) -> None:
    """An example's true class is in the banner; the real-photo warning is for real photos only."""
    status = ui.render(keys, {}, SHOWN, VITS[0], STYLE)["status"]
    truth, _ = ui.explorer.ground_truth(keys["tasn"])
    assert f"true class **{truth.class_name}**" in status
    assert "real photos" not in status
    assert "switch the Domain" not in status
    for m in SHOWN:
        e = ui.explorer.get(keys[m])
        assert e.weights_kind == "demo"
        assert f"`{e.model_name}`" in status
    photo = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    status = ui.render(ui.explain(photo, "birds", {}, SHOWN).keys, {}, SHOWN, VITS[0], STYLE)["status"]
    assert "no ground truth" in status
    assert "real photos are far outside what they learned" in status
    status = ui.render(ui.explain(CAR, "birds", {}, SHOWN).keys, {}, SHOWN, VITS[0], STYLE)["status"]
    assert "trained on birds, not cars: switch the Domain" in status


def test_layers_tab_patch_click_and_heads(ui, keys) -> None:
    an = ui.explorer.analysis(keys["transfg"])
    full = ui.layers_view(keys, "transfg", 99, STYLE, fusion="mean", discard=0.0, heads="mean", patch=None, full=True)
    assert full["layers.layer"]["maximum"] == an.L
    assert full["layers.layer"]["value"] == an.L
    assert full["layers.heads"]["choices"] == ["mean"]  # the heads of a patch: offered once one is clicked
    assert full["layers.rollout"].dtype == np.uint8
    assert full["layers.attends_to"] is None
    assert full["layers.patch_fig"] is None
    assert full["layers.rollout_fig"].data[0].type == "heatmap"
    assert full["layers.grid_fig"].data[0].type == "image"
    e = ui.explorer.get(keys["transfg"])
    f = STYLE.factor(e.size)
    x0, y0, x1, y1 = e.token_box(e.num_prefix_tokens + 9)
    click = ((x0 + x1 - 1) / 2 * f, (y0 + y1 - 1) / 2 * f)
    out = ui.layers_view(keys, "transfg", 2, STYLE, fusion="max", discard=0.2, heads="h2", patch=None, click=click)
    assert out["patch"] == ("transfg", e.num_prefix_tokens + 9)
    assert out["layers.heads"]["choices"] == ["mean", "max", "min", *(f"h{h + 1}" for h in range(an.H))]
    r, c = e.token_rc(e.num_prefix_tokens + 9)
    assert out["layers.attends_to"].shape == out["layers.attended_by"].shape == out["layers.rollout"].shape
    assert len(out["layers.patch_fig"].data) == 2
    assert f"patch at row {r}, column {c}" in out["layers.caption"]
    assert "heads: h2" in out["layers.caption"]
    other = ui.layers_view(keys, "rams_trans", 1, STYLE, fusion="mean", discard=0.0, heads="mean",
                           patch=out["patch"])  # a patch of another method is not carried over
    assert other["layers.attends_to"] is None


def test_token_under_the_click_is_the_nearest_footprint(ui, keys) -> None:
    e = ui.explorer.get(keys["transfg"])
    s = STYLE.factor(e.size)
    for token in (e.num_prefix_tokens, e.num_prefix_tokens + 17, e.num_prefix_tokens + e.grid[0] * e.grid[1] - 1):
        x0, y0, x1, y1 = e.token_box(token)
        assert ui.token_at(keys, "transfg", (x0 + x1 - 1) / 2 * s, (y0 + y1 - 1) / 2 * s, STYLE) == token


def test_view_controls_run_no_model(ui, keys, monkeypatch) -> None:
    """Every view control re-renders from the cache: no nn.Module forward, no explain, forward_count unchanged."""
    for vit in VITS:  # the first render of each setting may derive attention; still no model
        ui.layers(keys, vit, 1, STYLE)
    calls: list[str] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, _: calls.append(type(m).__name__))

    def no_model(*args, **kwargs):
        raise AssertionError("a view control ran a model")

    monkeypatch.setattr(FineGrainedModel, "explain", no_model)
    before = ui.explorer.forward_count
    try:
        for vit in VITS:
            L = ui.explorer.analysis(keys[vit]).L
            for layer in range(1, L + 1):  # the slider
                out = ui.layers_view(keys, vit, layer, STYLE, fusion="mean", discard=0.0, heads="mean", patch=None)
                assert out["layers.rollout"].dtype == np.uint8
                assert f"1..{layer} of {L}" in out["layers.caption"]
            patch = (vit, ui.explorer.get(keys[vit]).num_prefix_tokens + 5)
            for fusion in ("mean", "max", "min"):
                for layer in (1, L):
                    ui.layers_view(keys, vit, layer, STYLE, fusion=fusion, discard=0.3, heads="h1", patch=patch)
            ui.layers_view(keys, vit, L, Style("cividis", 0.8, "panel"), fusion="min", discard=0.3, heads="max",
                           patch=patch, full=True)
            assert ui.layer_stats(keys, vit).data
        ui.render(keys, {}, SHOWN, VITS[0], Style("magma", 0.2, "panel"))
        ui.steps(keys, "rams_trans", STYLE, {"alpha": 1.6})
        ui.steps(keys, "tasn", STYLE, {"gamma": 3.0, "dense": 2.0, "iters": 3, "out_size": 48, "detail_channel": 5})
    finally:
        hook.remove()
    assert calls == [], f"modules ran: {sorted(set(calls))}"
    assert ui.explorer.forward_count == before


def test_rerun_runs_the_model_with_new_parameters(ui, keys) -> None:
    new = ui.rerun(keys, "rams_trans", ui.params("rams_trans", [1.5, 2], preview_only=False))
    assert new["rams_trans"] != keys["rams_trans"]
    assert new["transfg"] == keys["transfg"]
    assert ui.explorer.get(new["rams_trans"]).params["alphas"] == [1.5]
    assert "alpha 1.5" in new["rams_trans"].describe()
    new = ui.rerun(keys, "tasn", ui.params("tasn", [3.0, 2.0, 3, 48, 5], preview_only=False))
    p = ui.explorer.get(new["tasn"]).params
    assert (p["gamma"], p["dense"], p["iters"], p["out_size"], p["detail_channel"]) == (3.0, 2.0, 3, 48, 5)
    assert ui.params("tasn", [3.0, 2.0, 3, 48, -1], preview_only=False)["detail_channel"] is None  # -1 = all


@pytest.mark.parametrize(("method", "values"), [("rams_trans", [1.7]), ("tasn", [2.5, 3.0, 2, 40, 7])])
def test_a_preview_shows_what_the_rerun_computes(ui, keys, method, values) -> None:
    """The Internals preview of new parameters and the tab after Re-run with them: the same pixels."""
    names = [p.name for p in METHODS[method].step_params if p.preview]
    params = dict(zip(names, values, strict=True))
    preview = ui.steps(keys, method, STYLE, params)
    rerun = ui.steps(ui.rerun(keys, method, params), method, STYLE)
    assert preview.params == {**preview.params, **params}
    for (a, ca), (b, _) in zip(preview.gallery, rerun.gallery, strict=False):
        np.testing.assert_array_equal(a, b, err_msg=ca)


def test_errors_are_messages(ui, keys, caplog) -> None:
    with pytest.raises(ValueError, match="Upload"):
        ui.explain(None, "birds", {}, SHOWN)
    with pytest.raises(ValueError, match="Explain an image first"):
        ui.rerun({}, "tasn", {})
    wrapped = app.friendly(lambda img: ui.explain(img, "birds", {}, SHOWN), ("image",))
    with caplog.at_level(logging.WARNING, logger="fgviz.app"), pytest.raises(gr.Error, match="not an image"):
        wrapped(__file__, None)  # the request comes last (Gradio fills it)
    assert app.ERRORS.pop(None).startswith("this file is not an image")  # for the banner line
    lines = [r for r in caplog.records if r.name == "fgviz.app"]
    assert len(lines) == 1
    assert "not an image" in lines[0].getMessage()
    assert lines[0].exc_info is None  # one line, no traceback
    # a typed model that cannot be used: a note, and the domain's registry model instead (tests/test_robustness.py)
    for spec, why in [("/etc", "outside the allowed weights folders"), ("tasn-birds-demo", "is a TASN model")]:
        res = ui.explain(BIRD, "birds", {"transfg": spec}, SHOWN)
        assert res.keys["transfg"].spec == "transfg-birds-demo"
        assert set(res.notes) == {"transfg"}
        assert why in res.notes["transfg"]
        assert res.numbers["transfg"]["fallback"] == res.notes["transfg"]
        shown = ui.render(res.keys, res.notes, SHOWN, "transfg", STYLE)
        assert shown["spec.transfg"]["value"] == "auto"  # the box shows what is explained, the banner says why
        assert "spec.tasn" not in shown
        assert f"⚠️ {res.notes['transfg']}" in shown["status"]


def test_examples_cover_both_domains() -> None:
    ex = views.examples()
    for domain in ("birds", "cars"):
        files = [p for p, d in ex if d == domain]
        assert len(files) >= 3
        for p in files:
            assert Image.open(p).size[0] >= 256  # larger than the demo models' inputs, like a photo


def test_cli_flags_reach_launch(monkeypatch) -> None:
    from fgviz.weights import hub
    from fgviz.weights.cache import ModelCache

    seen = {}
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(kw, demo=demo))
    monkeypatch.setattr(hub, "MODELS", ModelCache())
    app.main(["--host", "127.0.0.1", "--port", "7999", "--share", "--device", "cpu", "--model",
              "weights/tasn-cars-demo", "--spec-policy", "registry", "--model-cache-gb", "1.5"])
    assert seen["host"] == "127.0.0.1"
    assert seen["port"] == 7999
    assert seen["share"] is True
    assert isinstance(seen["demo"], gr.Blocks)
    explorer = seen["demo"].fgviz_ui.explorer
    assert explorer.device == "cpu"
    assert "weights/tasn-cars-demo" in explorer.choices("tasn")
    assert "weights/tasn-cars-demo" not in explorer.choices("transfg")
    assert explorer.policy.name == "registry"
    assert hub.MODELS.max_bytes == 3 << 29
    monkeypatch.setenv("FGVIZ_SPEC_POLICY", "hub")
    app.main(["--device", "cpu"])
    assert seen["demo"].fgviz_ui.explorer.policy.name == "hub"


def test_importing_the_app_builds_nothing_and_gpu_is_a_no_op_without_spaces() -> None:
    assert "demo" not in vars(app)
    try:
        import spaces  # noqa: F401
    except ImportError:
        assert app.GPU(len) is len


def test_the_page_has_a_column_and_a_tab_per_method() -> None:
    """The layout comes from the registry: adding a method adds its column, dropdown and Internals tab."""
    names = set()

    def walk(nodes):
        for n in nodes:
            if n.name:
                names.add(n.name)
            walk(n.children)

    walk(layout.page({m: ["auto"] for m in METHODS}, {}, ("birds", "cars")))
    for m in METHODS:
        assert {f"overview.{m}.main", f"overview.{m}.col", f"spec.{m}"} <= names
        assert all(f"steps.{m}.controls.{p.name}" in names for p in METHODS[m].step_params)


# ---- issue 21: work done once, tabs drawn when opened, methods explained on demand, honest pictures --------------


def test_an_explain_draws_the_overview_once_and_decodes_the_upload_once(ui, keys, tmp_path) -> None:
    """Item 13: the Overview is drawn once per explain (render reuses it); a request on the explained image
    (Faithfulness, sanity, export: `current`) does not decode the upload again."""
    style = Style("inferno", 0.4, "shared")  # not drawn before in this module
    draws, decodes = ui.overview_draws, ui.explorer.decode_count
    res = ui.explain(BIRD, "birds", {}, SHOWN, style=style)
    assert ui.overview_draws == draws + 1
    assert ui.explorer.decode_count == decodes  # the same file as the fixture's: recognised by its bytes
    shown = ui.render(res.keys, {}, SHOWN, VITS[0], style, tabs=())
    assert ui.overview_draws == draws + 1
    for m in SHOWN:
        np.testing.assert_array_equal(shown[f"overview.{m}.main"], res.mains[m])
    assert ui.current(res.keys, BIRD, "birds", {}, ["tasn"]) == res.keys
    assert ui.explorer.decode_count == decodes
    copy = tmp_path / "same-bytes.jpg"
    copy.write_bytes(Path(BIRD).read_bytes())  # another upload of the same file (Gradio stores each one anew)
    assert ui.current(res.keys, str(copy), "birds", {}, ["tasn"]) == res.keys
    assert ui.explorer.decode_count == decodes


def test_render_draws_only_the_tab_on_screen(ui, keys) -> None:
    """Item 13: of the Layers and Internals tabs only the one on screen is drawn; the others are empty (never an
    earlier image's) and drawn when they open, once."""
    shown = ui.render(keys, {}, SHOWN, VITS[0], STYLE, tabs={"internals.tasn"})
    assert shown["drawn"] == ["internals.tasn"]
    assert shown["steps.tasn.gallery"] and not shown["steps.rams_trans.gallery"]
    assert shown["layers.rollout"] is None and shown["layers.caption"] == ""
    view = {"tab": "internals", "internals": "tasn"}
    opened = ui.open_tab(keys, VITS[0], view, shown["drawn"], STYLE, U.Context("birds"), tab="layers")
    assert opened["view"] == {"tab": "layers", "internals": "tasn"}
    assert opened["drawn"] == ["internals.tasn", "layers"]
    assert opened["layers.rollout"] is not None and keys[VITS[0]].describe() in opened["layers.caption"]
    again = ui.open_tab(keys, VITS[0], opened["view"], opened["drawn"], STYLE, None, tab="layers")
    assert again == {"view": opened["view"]}  # already drawn for these keys and this style: nothing to redo


def test_layers_internals_and_faithfulness_explain_a_method_on_demand(ui, keys) -> None:
    """Item 4: the ViT's Overview column is not ticked; its Layers, Internals and Faithfulness views explain it on
    the same image with the domain's model."""
    assert "vit" not in keys
    ctx = U.Context("birds")
    out = ui.draw(keys, {"layers", "internals.vit"}, "vit", STYLE, ctx)
    assert out["keys"]["vit"].spec == "vit-birds-demo"
    assert out["keys"]["vit"].image_id == keys["tasn"].image_id
    assert {m: out["keys"][m] for m in keys} == keys
    assert out["layers.rollout"] is not None and "vit-birds-demo" in out["layers.caption"]
    assert out["steps.vit.gallery"]
    faith = ui.request("faithfulness", keys, BIRD, ctx, SHOWN, ["vit", "rollout", 4], {})
    assert faith["faith.numbers"]["method"] == "vit"
    assert faith["keys"]["vit"] == out["keys"]["vit"]  # the same explanation: explained once, cached


def test_messages_are_one_short_line_without_server_folders(ui) -> None:
    """Item 11: a 300-character spec gives a short message that does not show where the server keeps its files."""
    from fgviz.weights import hub

    res = ui.explain(BIRD, "birds", {"transfg": "weights/" + "x" * 292}, SHOWN)
    note = res.notes["transfg"]
    assert len(note) <= 300, len(note)
    assert str(hub.ROOT) not in note and str(hub.weights_dir()) not in note, note
    assert "\n" not in note
    assert U.short_message(f"{hub.weights_dir()}/x has no config.json") == "weights/x has no config.json"


def test_sanity_panels_share_one_colour_scale(ui, keys) -> None:
    """Item 3: with one scale for both panels the re-initialised map (nearly flat: a failed-looking map is what the
    randomisation test shows) looks flat beside the trained one; at full opacity the panels are the colour map."""
    pair = ui.sanity(keys, "transfg", "rollout", Style(alpha=1.0)).image.astype(np.float64).mean(-1)
    half = (pair.shape[1] - 8) // 2
    trained, reinit = (pair[30: pair.shape[0] - 50, x: x + half].std() for x in (0, half + 8))
    assert reinit < 0.25 * trained, (trained, reinit)


def test_the_patch_click_reaches_the_handler() -> None:
    """Item 1: Gradio passes a select event only to a parameter annotated gr.SelectData; the click handler has one
    (a keyword `evt=None` got nothing, so the click did nothing)."""
    from gradio.helpers import special_args

    got = {}
    wrapped = app.friendly(lambda k, evt=None: got.update(evt=evt), ("keys",), event=True)
    event = gr.SelectData(None, {"index": [12, 34], "value": None})
    inputs, _, event_index, _ = special_args(wrapped, inputs=[{}], event_data=event)
    assert event_index == 1
    wrapped(*inputs)
    assert got["evt"].index == [12, 34]


# ---- end to end: launch, then every named endpoint with gradio_client -------------------------------------------


def test_named_endpoints_are_documented(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == NAMED
    params = [p["parameter_name"] for p in api["named_endpoints"]["/explain"]["parameters"]]
    assert params[:4] == ["image", "domain", "model_set", "columns"]
    assert "request" not in params and "progress" not in params  # Gradio's, not the caller's
    for name in NAMED:  # the model boxes come last: a new method or model set shifts no earlier parameter
        named = [p["parameter_name"] for p in api["named_endpoints"][name]["parameters"]]
        assert named[:4] == ["image", "domain", "model_set", "columns"], name
        assert named[-len(METHODS):] == [f"{m}_model" for m in METHODS], name
    notes = views.notes()
    assert all(notes.get(f"api {n.strip('/')}") for n in NAMED)


def test_e2e_explain(client) -> None:
    from gradio_client import handle_file

    *paths, numbers = client.predict(handle_file(BIRD), "birds", api_name="/explain")
    _check_numbers(numbers)
    for path, m in zip(paths, SHOWN, strict=True):
        with Image.open(path) as im:
            assert im.format == "PNG"
            assert im.mode == "RGB"
            assert [im.height, im.width] == numbers[m]["overview_size"]
            assert np.asarray(im).std() > 1  # not blank


def test_e2e_faithfulness_and_sanity(client) -> None:
    from gradio_client import handle_file

    fig, md, numbers = client.predict(handle_file(BIRD), "birds", method="tasn", map_name="structure", steps=8,
                                      api_name="/faithfulness")
    assert numbers["method"] == "tasn"
    assert len(numbers["deletion"]) == len(numbers["insertion"]) == 9
    assert 0 <= numbers["deletion_auc"] <= 1
    assert 0 <= numbers["insertion_auc"] <= 1
    assert numbers["pointing"] is not None
    assert 0 <= numbers["pointing"]["energy"] <= 1
    assert "Deletion AUC" in md
    assert numbers["made_by"] in md
    assert json.loads(fig["plot"])["data"]
    img, md, numbers = client.predict(handle_file(BIRD), "birds", method="transfg", map_name="rollout",
                                      api_name="/sanity")
    assert -1 <= numbers["spearman"] <= 1
    assert "Spearman" in md
    with Image.open(img) as im:
        assert im.width > im.height  # two panels side by side


def test_exports_do_not_pile_up_on_disk(ui, keys, monkeypatch) -> None:
    monkeypatch.setattr(U, "MAX_EXPORTS", 2)
    paths = [ui.export(keys, STYLE) for _ in range(3)]
    assert not paths[0].exists()
    assert paths[1].exists() and paths[2].exists()
    assert zipfile.is_zipfile(paths[2])
    assert len(list(Path(ui._exports.name).iterdir())) == 2


def test_the_export_holds_every_figure_of_every_tab(ui, keys) -> None:
    """The ZIP against the tabs: each Overview and Internals panel (same caption, same order), each layer's rollout,
    the top-5 charts; drawn at export size."""
    shown = ui.render(keys, {}, SHOWN, VITS[0], STYLE)
    with zipfile.ZipFile(ui.export(keys, STYLE)) as z:
        caps = {f["file"]: f["caption"] for f in json.loads(z.read("manifest.json"))["files"]}
    strip = lambda panels: [c.rsplit(" · ", 1)[0] for _, c in panels]  # noqa: E731  (the UI adds "made by")
    for m in SHOWN:
        assert f"overview/{m}.png" in caps
        assert f"charts/{m}_top5.png" in caps and f"charts/{m}_top5.html" in caps
        prefix = f"overview/{m}_"
        over = sorted((f for f in caps if f.startswith(prefix)), key=lambda f: int(f[len(prefix):].split("_")[0]))
        assert [caps[f] for f in over] == strip(shown[f"overview.{m}.gallery"]), m
        steps = sorted(f for f in caps if f.startswith(f"internals/{m}/") and f.endswith(".png")
                       and not f.endswith("/figure.png"))
        assert [caps[f] for f in steps] == strip(shown[f"steps.{m}.gallery"]), m
        chart = shown[f"steps.{m}.figure"]["value"]  # a chart (TASN's marginals) also as a PNG for slides
        assert (f"internals/{m}/figure.png" in caps) == (chart is not None) == (f"internals/{m}/figure.html" in caps)
    for m in VITS:
        L = ui.explorer.analysis(keys[m]).L
        assert sum(f.startswith(f"layers/{m}/rollout_layer") and f.endswith(".png") for f in caps) == L
        assert f"layers/{m}/heads_cls.png" in caps


def test_e2e_export(client) -> None:
    """Every figure at >= 1024 px, listed in the manifest; the Faithfulness result shown for this image joins, one
    shown for another image does not."""
    from gradio_client import handle_file

    client.predict(handle_file(BIRD), "birds", method="tasn", map_name="structure", steps=4, api_name="/faithfulness")
    path = client.predict(handle_file(CAR), "cars", api_name="/export")
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        numbers = json.loads(z.read("numbers.json"))
        pngs = [n for n in names if n.endswith(".png")]
        assert len(pngs) >= 30
        listed = {f["file"] for f in manifest["files"]}
        assert listed == names - {"manifest.json", "numbers.json", "charts/plotly.min.js"}
        for n in pngs:
            with Image.open(z.open(n)) as im:
                assert max(im.size) >= 1024, n
    assert set(numbers["methods"]) == set(SHOWN)  # the bird's Faithfulness result is not the car's
    client.predict(handle_file(CAR), "cars", method="tasn", map_name="structure", steps=4, api_name="/faithfulness")
    with zipfile.ZipFile(client.predict(handle_file(CAR), "cars", api_name="/export")) as z:
        numbers = json.loads(z.read("numbers.json"))
        assert numbers["methods"]["faithfulness"]["made_by"] == numbers["made_by"]["tasn"]
        assert {"faithfulness/tasn_deletion_insertion.html", "faithfulness/tasn_deletion_insertion.png"} <= set(
            z.namelist())  # the curves as a chart and as a PNG for slides


def test_e2e_bad_upload_gets_a_clear_message(client, tmp_path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad)), "birds", api_name="/explain")


def test_e2e_log_one_line_per_user_error_a_traceback_per_server_fault(ui, client, tmp_path, caplog, capfd,
                                                                       monkeypatch) -> None:
    """What the server log gets through the running app: a user error (a bad upload, a model spec that cannot be
    used) is one line with the image's hash (the sha1 of the upload, as `sha1sum` prints it) and no traceback,
    from fgviz or from Gradio; a fault of the server keeps its traceback, once."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "fgviz.app"]

    def sha(path) -> str:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]

    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a png")
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="fgviz.app"):
        with pytest.raises(AppError, match="not an image"):
            client.predict(handle_file(str(bad)), "birds", api_name="/explain")
        assert [r.getMessage() for r in lines()] == [
            f"user error in explain (image {sha(bad)}): this file is not an image (fgviz reads PNG, JPEG, WebP, GIF "
            "or BMP)"]
        assert lines()[0].exc_info is None
        caplog.clear()

        numbers = client.predict(handle_file(BIRD), "birds", transfg_model="/etc", api_name="/explain")[-1]
        assert "outside the allowed weights folders" in numbers["transfg"]["fallback"]
        assert [r.getMessage() for r in lines()] == [
            f"user error in explain (image {sha(BIRD)}): {numbers['transfg']['fallback']}"]
        assert lines()[0].exc_info is None
        caplog.clear()

        def broken(*args, **kwargs):
            raise RuntimeError("a bug of ours")

        monkeypatch.setattr(ui.explorer, "explain", broken)  # the app's explorer is the fixture's
        fresh = tmp_path / "fresh.png"
        Image.new("RGB", (64, 48), (10, 200, 30)).save(fresh)
        with pytest.raises(AppError, match=rf"Something went wrong on the server \(logged with image {sha(fresh)}\)"):
            client.predict(handle_file(str(fresh)), "birds", api_name="/explain")
        (fault,) = lines()
        assert fault.getMessage() == f"server fault in explain (image {sha(fresh)}): a bug of ours"
        assert fault.exc_info is not None and fault.exc_info[0] is RuntimeError  # the traceback, in the log
        caplog.clear()

        with pytest.raises(AppError, match="unknown domain 'fish'"):  # checked by the app, not by Gradio's radio
            client.predict(handle_file(BIRD), "fish", api_name="/explain")
        assert [r.getMessage() for r in lines()] == [
            f"user error in explain (image {sha(BIRD)}): unknown domain 'fish'; expected one of birds, cars"]
    err = capfd.readouterr().err
    assert "Traceback" not in err, err  # Gradio printed none of them again
    assert re.fullmatch(r"[0-9a-f]{12}", sha(bad))


# ---- uploads: one decoder, clear messages ---------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (no real pixel data): a decompression-bomb probe."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def _saved(im: Image.Image, path: Path, **kw) -> Path:
    im.save(path, **kw)
    return path


def test_decoder_accepts_every_common_kind_of_image(tmp_path) -> None:
    from fgviz.core.imageio import decode_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    sixteen = decode_image(_saved(Image.fromarray(ramp), tmp_path / "g16.png"))
    a = np.asarray(sixteen)
    assert sixteen.mode == "RGB"
    assert a.max() >= 250  # scaled from 16 bits, not clipped to white
    assert a.min() == 0
    assert np.asarray(decode_image(_saved(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), tmp_path / "c.jpg")))[
        0, 0, 0] > 200  # CMYK red
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    assert np.asarray(decode_image(_saved(rgba, tmp_path / "t.png")))[0, 0].tolist() == [255, 255, 255]
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    assert np.asarray(decode_image(_saved(pal, tmp_path / "p.png", transparency=0)))[0, 0].tolist() == [255] * 3
    gray = decode_image(_saved(Image.new("L", (32, 20), 77), tmp_path / "l.png"))
    assert gray.size == (32, 20)
    assert np.asarray(gray)[0, 0].tolist() == [77, 77, 77]
    exif = Image.new("RGB", (80, 40), (0, 128, 0)).getexif()
    exif[274] = 6  # rotate 90 degrees when shown
    assert decode_image(_saved(Image.new("RGB", (80, 40)), tmp_path / "e.jpg", exif=exif)).size == (40, 80)
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "a.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert np.asarray(decode_image(gif))[0, 0, 0] > 200  # the first (red) frame
    assert decode_image(_saved(Image.new("RGB", (40, 30), (9, 9, 9)), tmp_path / "w.webp")).size == (40, 30)
    big = decode_image(np.zeros((3000, 1500, 3), np.uint8))
    assert max(big.size) == 2048  # downscaled once, aspect kept
    assert big.size[0] * 2 == big.size[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not an image"),
        (_png_header(100_000, 100_000), "decompression bomb"),
        (_png_header(8_000, 8_000), "decompression bomb"),
        (None, "at least 16x16"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_decoder_refuses_with_a_clear_message(data, message, tmp_path) -> None:
    from fgviz.core.imageio import ImageError, decode_image

    if data is None:
        data = (_saved(Image.new("RGB", (1, 1)), tmp_path / "one.png")).read_bytes()
    elif data == "truncated":
        full = _saved(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                      tmp_path / "full.png").read_bytes()
        data = full[: len(full) // 2]
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_models_from_the_environment(monkeypatch) -> None:
    from fgviz.explorer.session import Explorer, env_specs

    monkeypatch.setenv("FGVIZ_MODELS", "weights/transfg-cars-demo, org/fine-tuned-transfg@v1 ,")
    assert env_specs() == ["weights/transfg-cars-demo", "org/fine-tuned-transfg@v1"]
    ex = Explorer(device="cpu", extra_specs=env_specs())
    assert ex.choices("transfg")[-2:] == ["weights/transfg-cars-demo", "org/fine-tuned-transfg@v1"]
    assert "weights/transfg-cars-demo" not in ex.choices("tasn")  # a local folder says its method
    assert "org/fine-tuned-transfg@v1" in ex.choices("tasn")  # a Hub spec's method is known only once loaded
