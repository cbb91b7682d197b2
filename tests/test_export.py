"""Export: a ZIP with every figure as PNG (>= 1024 px) and HTML, a manifest and numbers.json, from the app's cache or
from `python -m fgviz explain`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgviz.__main__ import main as cli
from fgviz.explorer import export
from fgviz.explorer.session import Explorer
from fgviz.viz.panels import EXPORT_SIZE, Style

ROOT = Path(__file__).resolve().parents[1]
BIRD = ROOT / "assets" / "birds_2.jpg"
CAR = ROOT / "assets" / "cars_1.jpg"


@pytest.fixture(scope="module")
def expls():
    ex = Explorer(device="cpu")
    iid = ex.add_image(BIRD)
    return {m: ex.get(ex.explain(iid, ex.default_spec(m, "birds"), m)) for m in ("transfg", "rams_trans", "tasn")}


def test_figure_set_runs_no_model(expls) -> None:
    calls: list[str] = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, _: calls.append(type(m).__name__))
    try:
        fs = export.figure_set(expls, Style(cmap="cividis", norm="panel"), fusion="max", discard=0.2)
    finally:
        hook.remove()
    assert calls == []
    images, numbers = fs.images, fs.numbers
    assert set(images) | set(fs.charts) == set(fs.captions)
    for name, rgb in images.items():
        assert name.endswith(".png")
        assert rgb.dtype == np.uint8
        assert rgb.ndim == 3
        assert rgb.shape[2] == 3
        assert max(rgb.shape[:2]) >= EXPORT_SIZE, name  # slide-sized
    assert all(name.endswith(".html") for name in fs.charts)
    for m in expls:
        assert f"overview/{m}.png" in images
        assert f"charts/{m}_top5.png" in images
        assert f"charts/{m}_top5.html" in fs.charts
        assert any(n.startswith(f"internals/{m}/") for n in images)
    L = expls["transfg"].num_layers
    assert sum(n.startswith("layers/transfg/rollout_layer") for n in images) == L
    assert np.asarray(numbers["transfg"]["layers"]["entropy"]).shape == (L, expls["transfg"].attn_q.shape[1])
    assert numbers["transfg"]["layers"]["fusion"] == "max"


def test_zip_holds_pngs_html_manifest_and_numbers(expls, tmp_path) -> None:
    fs = export.figure_set(expls, sources={m: f"made by {m}" for m in expls})
    fs.numbers["tasn"]["faithfulness"] = {"deletion_auc": 0.1}
    path = export.write_zip(tmp_path / "out.zip", fs, {"note": "test", "style": {"norm": "shared"}})
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        doc = json.loads(z.read("numbers.json"))
        manifest = json.loads(z.read("manifest.json"))
        pngs = [n for n in names if n.endswith(".png")]
        htmls = [n for n in names if n.endswith(".html")]
        assert len(names) == len(set(names)) == len(pngs) + len(htmls) + 2  # + manifest, numbers
        for n in pngs:
            with Image.open(io.BytesIO(z.read(n))) as im:
                assert im.format == "PNG"
                assert im.mode == "RGB"
                assert max(im.size) >= EXPORT_SIZE
        for name in htmls:  # standalone: plotly.js inline, no file to fetch (a chart copied out alone renders)
            html = z.read(name).decode()
            assert "<script src=" not in html, name
            assert "* plotly.js v" in html[:2000], name  # the library's own header, in the file's <head>
            assert "Plotly.newPlot" in html, name
    assert {f["file"] for f in manifest["files"]} == set(pngs) | set(htmls)
    assert all(f["caption"] and f["source"].startswith("made by") for f in manifest["files"])
    assert set(doc["figures"]) == set(pngs) | set(htmls)
    assert doc["note"] == "test"
    assert doc["style"]["norm"] == "shared"
    assert doc["methods"]["tasn"]["faithfulness"] == {"deletion_auc": 0.1}
    for m, n in doc["methods"].items():
        assert abs(sum(n["probs"]) - 1) < 1e-4, m
        assert n["top5"][0][0] == n["prediction"]
        H, W = n["image_size"]
        for x0, y0, x1, y1 in n.get("part_boxes", []) + n.get("crop_boxes", []):
            assert 0 <= x0 < x1 <= W
            assert 0 <= y0 < y1 <= H


def test_charts_are_drawn() -> None:
    bars = export.bar_chart([("a long class name", 0.7), ("b", 0.2), ("c", 0.1)], "top-3")
    assert bars.shape[1] == 1280
    assert bars.shape[0] > 3 * 50
    assert (bars != 255).any()
    x = np.linspace(0, 1, 9)
    lines = export.line_chart({"deletion": (x, 1 - x), "insertion": (x, x)}, "curves", "fraction", "p")
    assert lines.shape == (720, 1280, 3)


def test_line_figures_become_pngs_for_slides() -> None:
    """Issue 21, item 9: the deletion/insertion curves and TASN's marginals exist as PNG too (drawn from the plotly
    figure's own traces: each trace's colour where its points are, one chart per subplot)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = np.linspace(0, 1, 17)
    curves = go.Figure([go.Scatter(x=x, y=1 - x, mode="lines", name="deletion", line={"color": "rgb(213,94,0)"}),
                        go.Scatter(x=x, y=x, mode="lines", name="random", line={"color": "rgb(0,158,115)",
                                                                                 "dash": "dash"})])
    curves.update_layout(title="curves", yaxis={"range": [0, 1]})
    png = export.chart_png(curves)
    assert png.shape == (720, 1280, 3)
    for color in ((213, 94, 0), (0, 158, 115)):
        assert (np.abs(png.astype(int) - color).sum(-1) < 40).sum() > 500, color  # the line is drawn
    two = make_subplots(rows=1, cols=2, subplot_titles=["rows", "columns"])
    two.add_trace(go.Scatter(x=x, y=x, mode="lines", name="a"), row=1, col=1)
    two.add_trace(go.Scatter(x=x, y=x, mode="lines", name="b"), row=1, col=2)
    assert export.chart_png(two).shape == (2 * 720, 1280, 3)  # one chart per subplot, one above the other
    with pytest.raises(ValueError, match="no line traces"):
        export.chart_png(go.Figure(go.Bar(x=[1], y=["a"])))
    assert export.slug("3. head 1: argmax -> token (2, 9)") == "3_head_1_argmax_token_2_9"


def test_cli_writes_a_zip_per_image(tmp_path, capsys) -> None:
    rc = cli(["explain", str(BIRD), str(CAR), "--out", str(tmp_path), "--device", "cpu", "--method", "transfg",
              "--method", "tasn", "--cmap", "magma"])
    assert rc == 0
    out = capsys.readouterr().out
    for img in (BIRD, CAR):
        path = tmp_path / f"{img.stem}.zip"
        assert path.is_file()
        assert f"-> {path}" in out
        with zipfile.ZipFile(path) as z:
            doc = json.loads(z.read("numbers.json"))
        assert set(doc["methods"]) == {"transfg", "tasn"}
        assert doc["style"]["cmap"] == "magma"
    assert doc["domain"] == "cars"  # read from the example's generator tag
    assert doc["methods"]["tasn"]["model"] == "tasn-cars-demo"


def test_cli_folder_output_explicit_model_and_errors(tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rc = cli(["explain", str(BIRD), str(bad), "--model", "weights/rams_trans-cars-demo", "--out", str(tmp_path / "o"),
              "--no-zip", "--device", "cpu"])
    assert rc == 2  # one image was unreadable; the other was still written
    err = capsys.readouterr().err
    assert "broken.jpg" in err
    assert "corrupt" in err or "not an image" in err
    folder = tmp_path / "o" / BIRD.stem
    doc = json.loads((folder / "numbers.json").read_text())
    assert set(doc["methods"]) == {"rams_trans"}
    assert doc["methods"]["rams_trans"]["model"] == "weights/rams_trans-cars-demo"
    assert all((folder / name).is_file() for name in doc["figures"])
    assert (folder / "manifest.json").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub spec fails fast and clearly when offline
    assert cli(["explain", str(BIRD), "--model", "no-such/model-xyz@main", "--out", str(tmp_path), "--device",
                "cpu", "--method", "tasn"]) == 2
    assert "no-such/model-xyz" in capsys.readouterr().err
