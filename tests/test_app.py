"""The Gradio app: handlers called directly, the layer slider without a model, and every named endpoint end to end.

Uses the demo registry models (about 1 M parameters each, CPU) and the example images in assets/.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import app
from fgviz import views
from fgviz.models import FineGrainedModel

ROOT = Path(__file__).resolve().parents[1]
BIRD = str(ROOT / "assets" / "birds_1.jpg")
CAR = str(ROOT / "assets" / "cars_2.jpg")
STYLE = ("viridis", 0.5, "shared")
NAMED = {"/explain", "/faithfulness", "/sanity", "/export"}


@pytest.fixture(scope="module")
def keys() -> dict:
    """Explain one bird through the handler (runs the three models once)."""
    *_, k = app.explain(BIRD, "birds", "auto", "auto", "auto", *STYLE)
    return k


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from gradio_client import Client

    _, url, _ = app.launch(app.demo, host="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("gradio_client")))
    finally:
        app.demo.close()


def _check_numbers(numbers: dict) -> None:
    """Probabilities sum to 1, top-5 is sorted and agrees with them, and every box lies inside its image."""
    assert set(numbers) == set(app.METHODS)
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
        scale = views.overlay.upscale_factor((H, W), views.MIN_SIZE)
        assert n["overview_size"] == [H * scale, W * scale], m
    assert len(numbers["transfg"]["part_boxes"]) == len(numbers["transfg"]["part_tokens"]) > 0
    assert numbers["rams_trans"]["crop_boxes"], "the demo RAMS-Trans runs two scales, so one zoom box"


# ---- handlers, called directly -----------------------------------------------------------------------------------


def test_explain_handler_returns_overview_images_and_numbers() -> None:
    t, r, a, numbers, k = app.explain(CAR, "cars", "auto", "auto", "auto", *STYLE)
    _check_numbers(numbers)
    for img, m in zip((t, r, a), app.METHODS, strict=True):
        assert img.dtype == np.uint8
        assert list(img.shape[:2]) == numbers[m]["overview_size"]
    assert {app.EXPLORER.spec_of(v) for v in k.values()} == {"transfg-cars-demo", "rams_trans-cars-demo",
                                                             "tasn-cars-demo"}


def test_explain_returns_the_same_signature_views_the_overview_tab_draws(keys) -> None:
    """/explain draws only the three main images (main_only); they must be the Overview tab's, pixel for pixel."""
    t, r, a, _, again = app.explain(BIRD, "birds", "auto", "auto", "auto", *STYLE)
    assert again == keys
    rest = app.overview(keys, *STYLE)[1:-1]
    for fast, full in zip((t, r, a), rest[::3], strict=True):
        np.testing.assert_array_equal(fast, full)
    ov = views.overview(app.expls(keys), app.style(*STYLE), main_only=True)
    assert all(o.topk is None and len(o.panels) == 1 for o in ov.values())


def test_explain_is_cached_per_image_and_model(keys) -> None:
    before = app.EXPLORER.forward_count
    *_, again = app.explain(BIRD, "birds", "auto", "auto", "auto", "magma", 0.3, "panel")
    assert again == keys
    assert app.EXPLORER.forward_count == before


def test_overview_internals_and_banner(keys) -> None:
    out = app.overview(keys, *STYLE)
    banner, rest, scales = out[0], out[1:-1], out[-1]
    assert all(views.METHOD_TITLES[m] in banner and app.EXPLORER.spec_of(keys[m]) in banner for m in app.METHODS)
    for main, gallery, fig in zip(rest[::3], rest[1::3], rest[2::3], strict=True):
        assert main.ndim == 3
        assert main.dtype == np.uint8
        assert gallery
        assert all(im.ndim == 3 for im, _ in gallery)
        assert fig.data[0].type == "bar"
    assert len(scales.data) == 2  # one bar chart per RAMS-Trans scale
    t_gal, r_gal, r_md, *_, a_gal, _, a_md = app.internals(keys, *STYLE)[:8]
    assert len(t_gal) >= 5
    assert len(r_gal) == 5
    assert len(a_gal) == 8
    assert "Prediction" in r_md
    assert "Prediction" in a_md


def test_weights_banner_says_random_for_placeholders(keys) -> None:
    e = app.EXPLORER.get(keys["transfg"])
    note = views.weights_note(e)
    if e.weights_kind == "random":
        assert "random weights" in note
        assert "meaningless" in note
    else:
        assert e.weights_kind in ("demo", "hub", "backbone", "local")


def test_layers_tab_patch_click_and_heads(keys) -> None:
    full = app.layers_full(keys, "transfg", 99, "mean", 0.0, "mean", None, *STYLE)
    slider, heads, grid, stats, roll, roll_fig, to_img, by_img, patch_fig, md = full
    L = app.EXPLORER.analysis(keys["transfg"]).L
    assert slider["maximum"] == L
    assert slider["value"] == L
    assert heads["choices"] == ["mean", "max", "min", *(f"h{h + 1}" for h in range(e_heads(keys)))]
    assert roll.dtype == np.uint8
    assert to_img is None
    assert by_img is None
    assert patch_fig is None
    assert roll_fig.data[0].type == "heatmap"
    assert "row %{y}, col %{x}" in roll_fig.data[0].hovertemplate
    assert grid.data[0].type == "image"
    assert stats.data
    evt = gr.SelectData(None, {"index": [200, 120], "value": None, "selected": True})
    patch, _, roll, _, to_img, by_img, patch_fig, md = app.select_patch(
        keys, "transfg", 2, "max", 0.2, "h2", *STYLE, evt)
    e = app.EXPLORER.get(keys["transfg"])
    r, c = views.token_rc(e, patch[1])
    assert patch[0] == "transfg"
    assert 0 <= r < e.grid[0]
    assert 0 <= c < e.grid[1]
    assert to_img.shape == by_img.shape == roll.shape
    assert len(patch_fig.data) == 2
    assert f"patch ({r}, {c})" in md
    assert "heads: h2" in md
    cleared = app.clear_patch(keys, "transfg", 2, "mean", 0.0, "mean", *STYLE)
    assert cleared[0] is None
    assert cleared[4] is None


def e_heads(keys: dict) -> int:
    return int(app.EXPLORER.get(keys["transfg"]).attn_q.shape[1])


def test_token_under_the_click_is_the_nearest_footprint(keys) -> None:
    e = app.EXPLORER.get(keys["transfg"])
    s = views.overlay.upscale_factor(e.size, views.MIN_SIZE)
    for token in (e.num_prefix_tokens, e.num_prefix_tokens + 17, e.num_prefix_tokens + e.grid[0] * e.grid[1] - 1):
        x0, y0, x1, y1 = e.token_box(token)
        assert views.token_at(e, (x0 + x1 - 1) / 2 * s, (y0 + y1 - 1) / 2 * s, s) == token


def test_moving_the_layer_slider_runs_no_model(keys, monkeypatch) -> None:
    """Every view control re-renders from the cache: no nn.Module forward, no explain, forward_count unchanged."""
    for vit in app.VITS:  # the first render of each setting may derive attention; still no model
        app.layers_full(keys, vit, 1, "mean", 0.0, "mean", None, *STYLE)
    calls: list[str] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, _: calls.append(type(m).__name__))

    def no_model(*args, **kwargs):
        raise AssertionError("a view control ran a model")

    monkeypatch.setattr(FineGrainedModel, "explain", no_model)
    before = app.EXPLORER.forward_count
    try:
        for vit in app.VITS:
            L = app.EXPLORER.analysis(keys[vit]).L
            for layer in range(1, L + 1):  # the slider's release event
                out = app.layers_fast(keys, vit, layer, "mean", 0.0, "mean", None, *STYLE)
                assert out[0].dtype == np.uint8
                assert f"1..{layer} of {L}" in out[-1]
            patch = [vit, app.EXPLORER.get(keys[vit]).num_prefix_tokens + 5]
            for fusion in ("mean", "max", "min"):
                for layer in (1, L):
                    app.layers_fast(keys, vit, layer, fusion, 0.3, "h1", patch, *STYLE)
            app.layers_full(keys, vit, L, "min", 0.3, "max", patch, "cividis", 0.8, "panel")
            assert app.layer_stats(keys, vit).data
        app.overview(keys, "magma", 0.2, "panel")
        app.internals(keys, *STYLE)
        app.rams_preview(keys, 1.6, *STYLE)
        app.tasn_preview(keys, 3.0, 2.0, 3, 48, 5, *STYLE)
    finally:
        hook.remove()
    assert calls == [], f"modules ran: {sorted(set(calls))}"
    assert app.EXPLORER.forward_count == before


def test_rerun_buttons_run_the_model_with_new_parameters(keys) -> None:
    new = app.rams_rerun(keys, 1.5, 2)
    assert new["rams_trans"] != keys["rams_trans"]
    assert new["transfg"] == keys["transfg"]
    assert app.EXPLORER.get(new["rams_trans"]).params["alphas"] == [1.5]
    new = app.tasn_rerun(keys, 3.0, 2.0, 3, 48, 5)
    p = app.EXPLORER.get(new["tasn"]).params
    assert (p["gamma"], p["dense"], p["iters"], p["out_size"], p["detail_channel"]) == (3.0, 2.0, 3, 48, 5)


def test_friendly_errors() -> None:
    with pytest.raises(gr.Error, match="Upload"):
        app.explain(None, "birds", "auto", "auto", "auto", *STYLE)
    with pytest.raises(gr.Error, match="not an image"):
        app.explain(__file__, "birds", "auto", "auto", "auto", *STYLE)
    # a typed model that cannot be used: a warning, and the domain's registry model instead (tests/test_robustness.py)
    for spec, why in [("/etc", "outside the allowed weights folders"), ("tasn-birds-demo", "is a TASN model")]:
        with pytest.warns(UserWarning, match=why):
            numbers = app.explain(BIRD, "birds", spec, "auto", "auto", *STYLE)[3]
        assert numbers["transfg"]["model"] == "transfg-birds-demo"
        assert why in numbers["transfg"]["fallback"]


def test_examples_cover_both_domains() -> None:
    ex = app.examples()
    for domain in ("birds", "cars"):
        files = [p for p, d in ex if d == domain]
        assert len(files) >= 3
        for p in files:
            assert Image.open(p).size[0] >= 256  # larger than the demo models' inputs, like a photo


def test_cli_flags_reach_launch(monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(app, "launch", lambda demo, **kw: seen.update(kw, demo=demo))
    device = app.EXPLORER.device
    try:
        app.main(["--host", "127.0.0.1", "--port", "7999", "--share", "--device", "cpu", "--model",
                  "weights/tasn-cars-demo"])
    finally:
        app.EXPLORER.device = device
    assert seen["host"] == "127.0.0.1"
    assert seen["port"] == 7999
    assert seen["share"] is True
    assert "weights/tasn-cars-demo" in app.EXPLORER.choices("tasn")
    assert isinstance(seen["demo"], gr.Blocks)


def test_gpu_decorator_is_a_no_op_without_spaces() -> None:
    try:
        import spaces  # noqa: F401
    except ImportError:
        assert app.gpu_explain.__name__ == "gpu_explain"
        assert app.GPU(len) is len


# ---- end to end: launch, then every named endpoint with gradio_client -------------------------------------------


def test_named_endpoints_are_documented(client) -> None:
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == NAMED


def test_e2e_explain(client) -> None:
    from gradio_client import handle_file

    t, r, a, numbers = client.predict(handle_file(BIRD), "birds", api_name="/explain")
    _check_numbers(numbers)
    for path, m in zip((t, r, a), app.METHODS, strict=True):
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
    assert json.loads(fig["plot"])["data"]
    img, md, numbers = client.predict(handle_file(BIRD), "birds", method="transfg", map_name="rollout",
                                      api_name="/sanity")
    assert -1 <= numbers["spearman"] <= 1
    assert "Spearman" in md
    with Image.open(img) as im:
        assert im.width > im.height  # two panels side by side


def test_exports_do_not_pile_up_on_disk(keys, monkeypatch) -> None:
    monkeypatch.setattr(app, "MAX_EXPORTS", 2)
    paths = [Path(app.export(keys, BIRD, "birds", "auto", "auto", "auto", *STYLE, "mean", 0.0)) for _ in range(3)]
    assert not paths[0].exists()
    assert paths[1].exists() and paths[2].exists()
    assert zipfile.is_zipfile(paths[2])
    assert len(list(Path(app.EXPORTS.name).iterdir())) == 2


def test_e2e_export(client) -> None:
    from gradio_client import handle_file

    path = client.predict(handle_file(CAR), "cars", api_name="/export")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        doc = json.loads(z.read("numbers.json"))
        pngs = [n for n in names if n.endswith(".png")]
        assert len(pngs) >= 30
        assert set(doc["figures"]) == set(pngs)
        Image.open(z.open(pngs[0])).verify()
    assert set(doc["methods"]) == set(app.METHODS)


def test_e2e_bad_upload_gets_a_clear_message(client, tmp_path) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(bad)), "birds", api_name="/explain")


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
    from fgviz.imageio import decode_image

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
    from fgviz.imageio import ImageError, decode_image

    if data is None:
        data = (_saved(Image.new("RGB", (1, 1)), tmp_path / "one.png")).read_bytes()
    elif data == "truncated":
        full = _saved(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)),
                      tmp_path / "full.png").read_bytes()
        data = full[: len(full) // 2]
    with pytest.raises(ImageError, match=message):
        decode_image(data)


def test_models_from_the_environment(monkeypatch) -> None:
    from fgviz.session import Explorer, env_specs

    monkeypatch.setenv("FGVIZ_MODELS", "weights/transfg-cars-demo, org/fine-tuned-transfg@v1 ,")
    assert env_specs() == ["weights/transfg-cars-demo", "org/fine-tuned-transfg@v1"]
    ex = Explorer(device="cpu", extra_specs=env_specs())
    assert ex.choices("transfg")[-2:] == ["weights/transfg-cars-demo", "org/fine-tuned-transfg@v1"]
    assert "weights/transfg-cars-demo" not in ex.choices("tasn")  # a local folder says its method
    assert "org/fine-tuned-transfg@v1" in ex.choices("tasn")  # a Hub spec's method is known only once loaded
