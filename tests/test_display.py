"""Rich display: `fgviz.viz.Figure` and `Explanation` show themselves in Jupyter (`_repr_png_`, `_repr_html_`), as the
method's signature view, sized for a projector.

The references are independent: PNGs are decoded with PIL, HTML images are read back from their base64, and the
signature view is drawn through the method seam (`Method.overview`) in the test.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fgviz
from fgviz.core import explanation
from fgviz.methods import METHODS
from fgviz.viz import Figure
from fgviz.viz.display import DISPLAY_SCALE, markdown_html, wrap
from fgviz.viz.panels import Style
from tests.conftest import make_tiny

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_MAGIC)
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    return np.asarray(im.convert("RGB"))


def html_images(html: str) -> list[np.ndarray]:
    return [decode(base64.b64decode(b)) for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)]


def panel(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---- Figure ---------------------------------------------------------------------------------------------------------


def test_figure_png_tiles_the_panels_with_their_captions() -> None:
    a, b, c = panel(60, 80, 0), panel(50, 70, 1), panel(40, 90, 2)
    fig = Figure([(a, "first"), (b, "second"), (c, "third")], title="three panels", notes="**bold** note", columns=2)
    data, meta = fig._repr_png_()
    rgb = decode(data)
    assert rgb.shape == fig.image().shape
    assert meta == {"width": round(rgb.shape[1] * DISPLAY_SCALE), "height": round(rgb.shape[0] * DISPLAY_SCALE)}
    # a and b side by side on the first row (12 px apart), c under a
    ya = [y for y in range(rgb.shape[0] - 60) if np.array_equal(rgb[y : y + 60, :80], a)]
    assert len(ya) == 1
    assert np.array_equal(rgb[ya[0] : ya[0] + 50, 92 : 92 + 70], b)
    assert any(np.array_equal(rgb[y : y + 40, :90], c) for y in range(ya[0] + 60, rgb.shape[0] - 39))
    assert rgb.shape[1] == 80 + 12 + 70


def test_figure_html_has_every_panel_lossless_with_escaped_captions() -> None:
    a, b = panel(30, 40, 3), panel(20, 50, 4)
    fig = Figure([(a, "map <b>x</b> & y"), (b, "second")], title="T <1>",
                 notes="Prediction: **Forktail**\n- one\n- two", scale=1.5)
    html = fig._repr_html_()
    imgs = html_images(html)
    assert len(imgs) == 2 and np.array_equal(imgs[0], a) and np.array_equal(imgs[1], b)
    assert "map &lt;b&gt;x&lt;/b&gt; &amp; y" in html and "<b>x</b>" not in html
    assert "T &lt;1&gt;" in html
    assert "<b>Forktail</b>" in html and html.count("<li>") == 2
    assert "width:60px" in html and "width:75px" in html  # 40 and 50 px panels at 1.5x
    assert "max-width:100%" in html  # never wider than the notebook


def test_figure_selects_and_joins_panels() -> None:
    fig = Figure([(panel(10, 10, i), f"p{i}") for i in range(4)], title="t", notes="n")
    assert fig[1:3].captions == ["p1", "p2"] and fig[0].captions == ["p0"] and fig[[3, 0]].captions == ["p3", "p0"]
    joined = fig[0] + Figure([(panel(5, 5, 9), "q")], title="u", notes="m")
    assert joined.captions == ["p0", "q"] and joined.title == "t | u" and joined.notes == "n\nm"


def test_figure_rejects_what_is_not_an_rgb_panel() -> None:
    with pytest.raises(ValueError, match="RGB"):
        Figure([(np.zeros((4, 4), np.uint8), "grey")])
    with pytest.raises(ValueError, match="RGB"):
        Figure([(np.zeros((4, 4, 3), np.float32), "float")])
    with pytest.raises(ValueError, match="at least one"):
        Figure([])


def test_captions_wrap_to_the_panel_width() -> None:
    import cv2

    text = "rollout through layers 1..6, heads averaged (x uniform) " * 3
    lines = wrap(text, 200)
    assert len(lines) > 2 and " ".join(lines).split() == text.split()
    assert all(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0] <= 200 for line in lines)


def test_markdown_notes() -> None:
    out = markdown_html("a *b* `c` 2 * 3 <x>\n- **d**")
    assert out == ("<div>a <i>b</i> <code>c</code> 2 * 3 &lt;x&gt;</div>"
                   "<ul style='margin:0.2em 0'><li><b>d</b></li></ul>")


# ---- Explanation --------------------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(METHODS))
def explained(request, test_image):
    model = make_tiny(request.param, **({"num_scales": 2} if request.param == "rams_trans" else {}))
    model.name = f"tiny-{request.param}"
    return model.explain(test_image)


def signature_view(e) -> tuple[np.ndarray, str]:
    """The Overview column's main panel drawn through the method seam, on its own colour scale."""
    m = METHODS[e.method]
    ov = m.overview(e, m.overview_maps(e), Style(), None, main_only=True)
    return ov.main, ov.caption


def test_explanation_png_is_its_signature_view_at_projector_size(explained) -> None:
    main, _ = signature_view(explained)
    assert max(main.shape[:2]) >= 384  # the app's panel size, whatever the model's input size (here 40-72 px)
    data, meta = explained._repr_png_()
    rgb = decode(data)
    where = [y for y in range(rgb.shape[0] - main.shape[0] + 1)
             if np.array_equal(rgb[y : y + main.shape[0], : main.shape[1]], main)]
    assert len(where) == 1, "the PNG shows the signature view once, pixel for pixel"
    assert meta["width"] == round(rgb.shape[1] * DISPLAY_SCALE) >= 1.4 * 384 - 1


def test_explanation_html_names_the_model_prediction_and_view(explained) -> None:
    main, caption = signature_view(explained)
    html = explained._repr_html_()
    imgs = html_images(html)
    assert len(imgs) == 1 and np.array_equal(imgs[0], main)
    assert f"width:{round(main.shape[1] * DISPLAY_SCALE)}px" in html
    assert METHODS[explained.method].title in html and explained.model_name in html
    from html import escape

    assert escape(caption) in html
    for name, p in explained.topk(5):
        assert f"{escape(name)}: {100 * p:.1f}%" in html
    assert f"<b>{escape(explained.prediction)}</b>" in html
    assert "random weights" in html  # what the weights are (a tiny model's: random)
    assert "Warning" not in html


def test_explanation_html_warns_about_missed_targets(explained) -> None:
    e = dataclasses.replace(explained, missed_targets=("rollout_energy_pointing >= 4x chance",))
    html = e._repr_html_()
    assert "<b>Warning:</b>" in html and "rollout_energy_pointing &gt;= 4x chance" in html
    assert "not as evidence" in html


def test_demo_model_explanation_shows_its_cards_missed_targets() -> None:
    model = fgviz.load("rams_trans-birds-demo")
    e = model.explain(Image.open(Path(__file__).resolve().parents[1] / "assets" / "birds_1.jpg"))
    html = e._repr_html_()
    assert "rams_trans-birds-demo" in html and "demo weights trained by fgviz" in html
    assert "crop_recall &gt;= 0.9x oracle" in html
    assert "DPPM map g" in html  # the RAMS-Trans signature view's caption


def test_explanation_repr_is_one_line(explained) -> None:
    r = repr(explained)
    assert "\n" not in r and len(r) < 200 and explained.method in r and explained.prediction in r


def test_explanation_without_a_registered_display_falls_back(explained, monkeypatch) -> None:
    monkeypatch.setattr(explanation, "_display", None)
    assert explained._repr_html_() is None and explained._repr_png_() is None
    with pytest.raises(RuntimeError, match="display"):
        explained.figure()
