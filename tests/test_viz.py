"""Tests for fgviz.viz: overlays, drawing and figures.

References are independent of the implementation: hand-written matrices, published colormap endpoints, brute-force
loops and closed-form distances.
"""

from __future__ import annotations

import ast
import base64
import io
import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fgviz.core import geometry
from fgviz.core.explanation import Explanation
from fgviz.viz import figures, overlay, panels

ROOT = Path(__file__).resolve().parents[1]
VIZ_DIR = ROOT / "fgviz" / "viz"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _hex(h: str) -> np.ndarray:
    return np.array([int(h[i : i + 2], 16) for i in (1, 3, 5)])


# ---------------------------------------------------------------------------------------------------------------
# token maps on pixels (fgviz.core.geometry, the one mapping every view and metric uses)
# ---------------------------------------------------------------------------------------------------------------


def _brute_force_tokens(values, patch, stride, size):
    """Independent reference: paint each footprint, accumulate sums and counts pixel by pixel; pixels no footprint
    covers then copy the nearest covered row, then the nearest covered column."""
    H, W = size
    total = np.zeros((H, W))
    count = np.zeros((H, W))
    for r, c in itertools.product(range(values.shape[0]), range(values.shape[1])):
        for y in range(r * stride, r * stride + patch):
            for x in range(c * stride, c * stride + patch):
                if y < H and x < W:
                    total[y, x] += values[r, c]
                    count[y, x] += 1
    out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    rows, cols = np.flatnonzero(count.any(1)), np.flatnonzero(count.any(0))
    for y in range(H):
        if y not in rows:
            out[y] = out[rows[np.abs(rows - y).argmin()]]
    for x in range(W):
        if x not in cols:
            out[:, x] = out[:, cols[np.abs(cols - x).argmin()]]
    return out, count


def test_token_map_hand_computed_overlap():
    # 2x2 grid, 4-px patches at stride 3 on 7x7: tokens cover rows/cols 0-3 and 3-6, overlapping at 3.
    v = np.array([[1.0, 2.0], [3.0, 4.0]])
    expected = np.array(
        [
            [1, 1, 1, 1.5, 2, 2, 2],
            [1, 1, 1, 1.5, 2, 2, 2],
            [1, 1, 1, 1.5, 2, 2, 2],
            [2, 2, 2, 2.5, 3, 3, 3],  # row 3: mean of the rows above and below
            [3, 3, 3, 3.5, 4, 4, 4],
            [3, 3, 3, 3.5, 4, 4, 4],
            [3, 3, 3, 3.5, 4, 4, 4],
        ]
    )
    out = geometry.token_map_to_pixels(v, patch_size=4, stride=3, image_size=(7, 7))
    assert out.shape == (7, 7)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected)
    # Centre pixel (3, 3) is covered by all four tokens: (1 + 2 + 3 + 4) / 4.
    assert out[3, 3] == pytest.approx(2.5)


def test_token_map_non_square_and_uncovered_border():
    # 2x3 grid (patch 4, stride 3) covers 7 rows x 10 cols; the image is 9 x 11, so the last 2 rows and 1 col
    # are covered by no token: they take the nearest covered row/column (no unshaded strip on an overlay).
    v = np.array([[0.0, 6.0, 12.0], [3.0, 9.0, 15.0]])
    out = geometry.token_map_to_pixels(v, 4, 3, (9, 11))
    ref, count = _brute_force_tokens(v, 4, 3, (9, 11))
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert out[3, 3] == pytest.approx((0 + 6 + 3 + 9) / 4)
    assert out[0, 6] == pytest.approx((6 + 12) / 2)
    np.testing.assert_allclose(out[8], out[6])
    np.testing.assert_allclose(out[:, 10], out[:, 9])
    np.testing.assert_array_equal(geometry.token_coverage((2, 3), 4, 3, (9, 11)), count)


@pytest.mark.parametrize(("grid", "patch", "stride", "size"),
                         [((3, 5), 5, 5, (15, 25)), ((4, 2), 6, 4, (20, 11)), ((15, 15), 16, 12, (192, 192))])
def test_token_map_matches_brute_force(rng, grid, patch, stride, size):
    v = rng.random(grid)
    ref, _ = _brute_force_tokens(v, patch, stride, size)
    np.testing.assert_allclose(geometry.token_map_to_pixels(v, patch, stride, size), ref, rtol=1e-5, atol=1e-6)


def test_token_map_is_blocky_not_bilinear(rng):
    v = rng.random((3, 4))
    out = geometry.token_map_to_pixels(v, 8, 8, (24, 32))
    np.testing.assert_allclose(out, np.kron(v, np.ones((8, 8))), rtol=1e-6)


def test_token_map_transfg_geometry_covers_448():
    # TransFG: 16-px patches at stride 12 on 448 px -> 37 x 37 tokens, full coverage, a constant stays constant.
    cov = geometry.token_coverage((37, 37), 16, 12, (448, 448))
    assert cov.min() >= 1
    assert cov.max() == 4
    out = geometry.token_map_to_pixels(np.full((37, 37), 0.7), 16, 12, (448, 448))
    np.testing.assert_allclose(out, 0.7, rtol=1e-6)


def test_token_mask_to_pixels():
    m = np.array([[True, False], [False, False]])
    px = geometry.token_mask_to_pixels(m, 4, 3, (7, 7))
    assert px.dtype == bool
    assert px[:3, :3].all()
    assert not px[4:].any()
    assert not px[:, 4:].any()
    assert not px[3, 3]  # 1 of 4 covering tokens is in the mask: below half
    assert px[3, 0]  # 1 of 2


# ---------------------------------------------------------------------------------------------------------------
# colormaps and normalisation
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [
        # matplotlib's published endpoints
        ("viridis", "#440154", "#fde725"),
        ("cividis", "#00224e", "#fee838"),
        ("magma", "#000004", "#fcfdbf"),
        ("inferno", "#000004", "#fcffa4"),
    ],
)
def test_colormap_endpoints_rgb(name, lo, hi):
    out = overlay.colormap(np.array([[0.0, 1.0]]), name)
    assert out.shape == (1, 2, 3)
    assert out.dtype == np.uint8
    assert np.abs(out[0, 0].astype(int) - _hex(lo)).max() <= 2
    assert np.abs(out[0, 1].astype(int) - _hex(hi)).max() <= 2


def test_colormap_rgb_order_and_midpoint():
    top = overlay.colormap(np.array([1.0]), "viridis")[0]
    assert top[0] > 200 > 60 > top[2]  # yellow: R high, B low (BGR would be the reverse)
    mid = overlay.colormap(np.array([0.5]), "viridis")[0].astype(int)
    assert np.abs(mid - _hex("#21918c")).max() <= 3
    lut = overlay.colormap_lut("viridis")
    assert lut.shape == (256, 3)
    assert not lut.flags.writeable


def test_colormap_clips_and_unknown_name():
    out = overlay.colormap(np.array([-1.0, 2.0, np.nan]), "magma")
    np.testing.assert_array_equal(out[0], overlay.colormap(np.array([0.0]), "magma")[0])
    np.testing.assert_array_equal(out[1], overlay.colormap(np.array([1.0]), "magma")[0])
    np.testing.assert_array_equal(out[2], out[0])
    with pytest.raises(KeyError, match="viridis"):
        overlay.colormap(np.zeros(2), "rainbow")
    assert overlay.DEFAULT_CMAP in overlay.SAFE_COLORMAPS
    assert "jet" in overlay.COLORMAPS
    assert "jet" not in overlay.SAFE_COLORMAPS


def test_plotly_colorscale_matches_lut():
    cs = overlay.plotly_colorscale("cividis", n=5)
    assert [p for p, _ in cs] == [0.0, 0.25, 0.5, 0.75, 1.0]
    lut = overlay.colormap_lut("cividis")
    assert cs[0][1] == "rgb({},{},{})".format(*lut[0])
    assert cs[-1][1] == "rgb({},{},{})".format(*lut[255])


def test_normalize_and_shared():
    np.testing.assert_allclose(overlay.normalize(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(overlay.normalize(np.full((3, 3), 5.0)), 0.0)
    np.testing.assert_allclose(overlay.normalize(np.array([0.0, 5.0, 10.0]), vmin=0, vmax=5), [0, 1, 1])
    np.testing.assert_allclose(overlay.normalize(np.array([np.nan, 1.0, 3.0])), [0.0, 0.0, 1.0])
    a, b = np.array([0.0, 1.0]), np.array([[0.0, 2.0]])
    assert overlay.shared_range([a, b]) == (0.0, 2.0)
    na, nb = overlay.normalize_shared([a, b])
    np.testing.assert_allclose(na, [0.0, 0.5])
    np.testing.assert_allclose(nb, [[0.0, 1.0]])
    stacked = overlay.normalize_shared(np.stack([a, 2 * a]))
    np.testing.assert_allclose(stacked[0], [0.0, 0.5])


# ---------------------------------------------------------------------------------------------------------------
# blending
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "cmap"), list(itertools.product([(7, 7), (96, 128), (37, 20)], ["viridis", "inferno"]))
)
def test_blend_alpha_bounds(rng, size, cmap):
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    heat = rng.random(size)
    np.testing.assert_array_equal(overlay.blend(img, heat, 0.0, cmap), img)
    np.testing.assert_array_equal(overlay.blend(img, heat, 1.0, cmap), overlay.colormap(heat, cmap))
    half = overlay.blend(img, heat, 0.5, cmap)
    assert half.dtype == np.uint8
    assert half.shape == img.shape
    ref = (img.astype(float) + overlay.colormap(heat, cmap)) / 2
    assert np.abs(half - ref).max() <= 0.5 + 1e-9


def test_blend_rejects_bad_inputs():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="does not match"):
        overlay.blend(img, np.zeros((4, 4)), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        overlay.blend(img, np.zeros((8, 8)), 1.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay.blend(img.astype(np.float32), np.zeros((8, 8)), 0.5)


def test_heat_panel_token_geometry_display_size_and_colour_bar():
    img = np.zeros((7, 7, 3), np.uint8)
    v = np.array([[0.0, 0.0], [0.0, 1.0]])
    pixels = geometry.token_map_to_pixels(v, 4, 3, (7, 7))
    style = panels.Style(alpha=1.0, min_size=21)  # 3x the 7-px input
    d = panels.heat(img, pixels, style, 0.0, 1.0)
    assert d.factor == 3 and d.rgb.shape == (21, 21, 3)
    np.testing.assert_array_equal(d.rgb[20, 20], overlay.colormap(np.array([1.0]))[0])
    np.testing.assert_array_equal(d.rgb[0, 0], overlay.colormap(np.array([0.0]))[0])
    np.testing.assert_array_equal(d.rgb[3 * 3 + 1, 3 * 3 + 1], overlay.colormap(np.array([0.25]))[0])  # a 3x3 block
    done = d.finish(style)
    assert done.shape[1] == 120 and done.shape[0] > 21  # the colour bar below, at least 120 px wide
    assert (d.finish(style, unit=None) == d.rgb).all()


def test_heat_panel_leaves_nan_pixels_unshaded():
    img = np.full((4, 4, 3), 200, np.uint8)
    px = np.ones((4, 4), np.float32)
    px[0, 0] = np.nan
    d = panels.heat(img, px, panels.Style(alpha=1.0, min_size=0))
    np.testing.assert_array_equal(d.rgb[0, 0], [200, 200, 200])
    assert not (d.rgb[1, 1] == 200).all()


def test_relative_maps_are_x_uniform():
    m = np.array([[1.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(panels.relative(m), m / 1.0)
    assert panels.relative(m).mean() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------------------------


def test_upscale_factor():
    assert overlay.upscale_factor((96, 96)) == 4
    assert overlay.upscale_factor((96, 128)) == 3
    assert overlay.upscale_factor((448, 448)) == 1
    assert overlay.upscale_factor((96, 128), min_size=0) == 1
    big, s = overlay.upscale(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), min_size=4)
    assert s == 2
    np.testing.assert_array_equal(big[2, 3], [9, 10, 11])


def test_draw_boxes_edges_land_on_pixels():
    img = np.zeros((96, 128, 3), np.uint8)
    color = (230, 159, 0)
    out = overlay.draw_boxes(img, np.array([[10, 20, 40, 50]]), labels=[""], colors=[color], thickness=2)
    assert out.shape == (288, 384, 3)
    assert out.dtype == np.uint8
    s = 3
    # exclusive box (10, 20, 40, 50) -> upscaled pixels x 30..119, y 60..149
    for y, x in [(60, 75), (61, 75), (149, 75), (148, 75), (105, 30), (105, 119)]:
        np.testing.assert_array_equal(out[y, x], color)  # RGB order preserved
    for y, x in [(59, 75), (150, 75), (147, 75), (105, 29), (105, 120), (105, 75)]:
        np.testing.assert_array_equal(out[y, x], 0)
    # Layering: a second call on the upscaled image with image_scale keeps coordinates in original units.
    out2 = overlay.draw_boxes(out, np.array([[50, 10, 60, 20]]), labels=[""], colors=[(0, 114, 178)], image_scale=s)
    assert out2.shape == out.shape
    np.testing.assert_array_equal(out2[30, 155], (0, 114, 178))
    np.testing.assert_array_equal(out2[60, 75], color)


def test_draw_boxes_labels_and_palette():
    img = np.full((96, 96, 3), 128, np.uint8)
    boxes = np.array([[0, 0, 48, 48], [0, 0, 48, 48], [48, 48, 96, 96]])
    out = overlay.draw_boxes(img, boxes)
    assert out.shape == (384, 384, 3)
    # numbered tags are filled with each box's Okabe-Ito colour and carry dark or light text
    for i, (x0, y0) in enumerate([(0, 0), (None, 0), (192, 192)]):
        color = np.array(overlay.BOX_COLORS[i])
        region = out[y0 : y0 + 20, :120] if x0 is None else out[y0 : y0 + 20, x0 : x0 + 20]
        assert (region == color).all(-1).sum() > 50, i
    assert len(set(overlay.BOX_COLORS)) == 7
    assert (0, 0, 0) not in overlay.BOX_COLORS
    with pytest.raises(ValueError, match="labels"):
        overlay.draw_boxes(img, boxes, labels=["a"])


def test_draw_grid_lines_at_coordinates():
    img = np.zeros((96, 128, 3), np.uint8)
    color = (240, 228, 66)
    rows = np.array([0.0, 10.0, 20.0, 95.0])
    out = overlay.draw_grid(img, rows, np.array([]), every=1, color=color)
    s = 3
    for r in rows:
        y = round((r + 0.5) * s - 0.5)  # centre of the upscaled block of input row r
        assert (out[y] == color).all()
    drawn = np.flatnonzero((out == color).all(-1).all(1))
    assert drawn.tolist() == [1, 31, 61, 286]


def test_draw_grid_is_dense_where_it_magnifies():
    img = np.zeros((128, 128, 3), np.uint8)
    o = 224
    u = np.linspace(0, 1, o)
    cols = 127 * u**2  # slow at the left: many samples there -> magnified
    out = overlay.draw_grid(img, np.linspace(0, 127, o), cols, every=8, min_size=0)
    vertical = (out == overlay.OKABE_ITO["yellow"]).all(-1).all(0)
    assert vertical[:32].sum() >= 2 * vertical[96:].sum() > 0
    with pytest.raises(ValueError, match="every"):
        overlay.draw_grid(img, cols, cols, every=0)


def test_draw_mask_outline():
    img = np.zeros((96, 96, 3), np.uint8)
    mask = np.zeros((96, 96), bool)
    mask[24:48, 12:60] = True
    color = (213, 94, 0)
    out = overlay.draw_mask_outline(img, mask, color=color, thickness=2)
    assert out.shape == (384, 384, 3)
    np.testing.assert_array_equal(out[96, 100], color)  # top boundary row, inside the mask
    np.testing.assert_array_equal(out[97, 100], color)
    np.testing.assert_array_equal(out[98, 100], 0)  # interior untouched
    np.testing.assert_array_equal(out[95, 100], 0)  # outside untouched
    np.testing.assert_array_equal(out[150, 48], color)  # left boundary column
    np.testing.assert_array_equal(out[150, 239], color)  # right boundary column (x = 60*4 - 1)
    np.testing.assert_array_equal(out[150, 240], 0)
    tinted = overlay.draw_mask_outline(img, mask, color=color, fill_alpha=0.5)
    np.testing.assert_array_equal(tinted[150, 150], np.rint(np.array(color) * 0.5))
    with pytest.raises(ValueError, match="token_mask_to_pixels"):
        overlay.draw_mask_outline(img, np.ones((8, 8), bool))


def test_tile_maps_layout():
    maps = np.zeros((3, 4, 5, 5), np.float32)
    maps[2, 1] = 1.0
    rgb, lay = overlay.tile_maps(maps, tile=20, gap=2)
    assert rgb.dtype == np.uint8
    assert lay["tile_h"] == lay["tile_w"] == 20
    y = lay["top"] + 2 * (20 + 2) + 10
    x = lay["left"] + 1 * (20 + 2) + 10
    np.testing.assert_array_equal(rgb[y, x], overlay.colormap(np.array([1.0]))[0])
    np.testing.assert_array_equal(rgb[lay["top"] + 5, lay["left"] + 5], overlay.colormap(np.array([0.0]))[0])


# ---------------------------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def expl():
    probs = np.array([0.05, 0.6, 0.1, 0.25], np.float32)
    return Explanation(
        method="transfg",
        image=np.zeros((16, 16, 3), np.uint8),
        probs=probs,
        labels=("albatross", "blue jay", "cardinal", "dove"),
    )


def test_topk_bar(expl):
    fig = figures.topk_bar(expl, k=3, title="top-3")
    assert [t.type for t in fig.data] == ["bar"]
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(bar.y) == ["blue jay", "dove", "cardinal"]
    np.testing.assert_allclose(bar.x, [60.0, 25.0, 10.0], rtol=1e-5)
    assert list(bar.text) == ["60.0%", "25.0%", "10.0%"]
    assert fig.layout.yaxis.autorange == "reversed"  # first (highest) category on top
    assert tuple(fig.layout.xaxis.range) == (0, 100)
    assert fig.layout.title.text == "top-3"
    other = figures.topk_bar(expl, k=2, probs=np.array([0.7, 0.1, 0.1, 0.1]))
    assert list(other.data[0].y) == ["albatross", "blue jay"]
    plain = figures.topk_bar(None, k=1, probs=np.array([0.2, 0.8]), labels=["a", "b"])
    assert list(plain.data[0].y) == ["b"]
    # one text size for every bar: the top class's long bar carries its value inside, the short ones beside them
    # (plotly's "auto" position shrank the top class's text to fit inside, about 8 px beside the others' 14)
    sure = figures.topk_bar(None, k=3, probs=np.array([0.98, 0.015, 0.005]), labels=["a", "b", "c"])
    assert tuple(sure.data[0].textposition) == ("inside", "outside", "outside")
    assert sure.data[0].textfont.size == 14
    assert (sure.layout.uniformtext.minsize, sure.layout.uniformtext.mode) == (14, "show")


def test_heatmap_figure():
    v = np.arange(12, dtype=np.float32).reshape(3, 4)
    fig = figures.heatmap(v, title="rollout", cmap="magma")
    assert [t.type for t in fig.data] == ["heatmap"]
    hm = fig.data[0]
    np.testing.assert_array_equal(np.asarray(hm.z), v)
    assert hm.hovertemplate.startswith("row %{y}, col %{x}, value %{z")
    assert tuple(fig.layout.xaxis.range) == (-0.5, 3.5)
    assert tuple(fig.layout.yaxis.range) == (2.5, -0.5)  # reversed: row 0 on top
    assert fig.layout.yaxis.scaleanchor == "x"
    lut = overlay.colormap_lut("magma")
    assert hm.colorscale[0][1] == "rgb({},{},{})".format(*lut[0])
    assert hm.colorscale[-1][1] == "rgb({},{},{})".format(*lut[255])
    shared = figures.heatmap(v, zmin=0.0, zmax=20.0)
    assert (shared.data[0].zmin, shared.data[0].zmax) == (0.0, 20.0)


def test_image_figure_is_lossless_png(rng):
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    fig = figures.image_figure(img, title="overlay")
    assert [t.type for t in fig.data] == ["image"]
    src = fig.data[0].source
    assert src.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    np.testing.assert_array_equal(decoded, img)
    with pytest.raises(ValueError, match="uint8"):
        figures.image_figure(img.astype(np.float32))


def test_layer_stats_traces():
    L, H = 12, 4
    ent = np.tile(np.arange(H, dtype=float), (L, 1))
    dist = np.tile(np.arange(L, dtype=float)[:, None], (1, H))
    fig = figures.layer_stats(ent, dist)
    assert all(t.type == "scatter" for t in fig.data)
    assert len(fig.data) == 2 * (H + 1)
    means = [t for t in fig.data if t.legendgroup == "mean"]
    heads = [t for t in fig.data if t.legendgroup == "heads"]
    assert len(means) == 2
    assert len(heads) == 2 * H
    assert all(t.line.width == 3 for t in means)
    assert all(t.line.width == 1 for t in heads)
    assert sum(bool(t.showlegend) for t in heads) == 1
    np.testing.assert_allclose(means[0].y, np.full(L, 1.5))
    np.testing.assert_array_equal(means[0].x, np.arange(1, L + 1))
    assert tuple(fig.layout.xaxis.range) == (0.5, L + 0.5)
    assert "head 2" in heads[1].hovertemplate
    only_mean = figures.layer_stats(np.arange(5.0), None)
    assert len(only_mean.data) == 1


def test_curves_auc_in_legend():
    steps = 11
    fig = figures.curves(np.linspace(1, 0, steps), np.linspace(0, 1, steps) ** 2)
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    assert fig.data[0].name == "deletion (AUC 0.500)"
    assert fig.data[1].name == "insertion (AUC 0.335)"  # trapezoid of x^2 on 11 points = 0.335
    assert tuple(fig.layout.xaxis.range) == (0, 1)
    assert tuple(fig.layout.yaxis.range) == (0, 1.02)
    np.testing.assert_allclose(fig.data[0].x, np.linspace(0, 1, steps))
    given = figures.curves(np.ones(3), np.ones(3), aucs={"deletion": 0.123, "insertion": 0.9})
    assert [t.name for t in given.data] == ["deletion (AUC 0.123)", "insertion (AUC 0.900)"]
    assert figures.curves(None, np.ones(3), aucs=(0.1, 0.2)).data[0].name == "insertion (AUC 0.200)"


def test_attention_grid_figure(rng):
    maps = rng.random((3, 2, 4, 4))
    fig = figures.attention_grid(maps, tile=16)
    assert [t.type for t in fig.data] == ["image", "heatmap", "scatter"]
    bar = fig.data[2].marker  # the colour bar spans the tiles' shared range
    assert bar.showscale
    assert (bar.cmin, bar.cmax) == pytest.approx((maps.min(), maps.max()))
    each = figures.attention_grid(maps, tile=16, norm="each").data[2].marker
    assert (each.cmin, each.cmax) == (0.0, 1.0)
    assert "each tile" in each.colorbar.title.text
    hm = fig.data[1]
    assert np.asarray(hm.z).shape == (3, 2)
    cd = np.asarray(hm.customdata)
    assert cd[2, 1, 0] == 3  # layer numbering from 1
    assert cd[2, 1, 1] == 2  # head numbering from 1
    assert "layer %{customdata[0]}, head %{customdata[1]}" in hm.hovertemplate
    np.testing.assert_allclose(np.asarray(hm.z), maps.reshape(3, 2, -1).max(-1))


# ---------------------------------------------------------------------------------------------------------------
# dependency rules
# ---------------------------------------------------------------------------------------------------------------


def test_viz_sources_do_not_import_torch_or_gradio():
    for path in sorted(VIZ_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"torch", "gradio", "torchvision", "timm"}, f"{path.name} imports {name}"
                if root == "fgviz":
                    assert name.startswith(("fgviz.viz", "fgviz.core.explanation")), f"{path.name} imports {name}"


def test_importing_viz_loads_neither_torch_nor_gradio():
    # The parent package `fgviz/__init__.py` may import torch (models); stub it out so only viz's own imports
    # (and fgviz.core.explanation) are measured.
    code = textwrap.dedent(
        f"""
        import sys, types
        pkg = types.ModuleType("fgviz")
        pkg.__path__ = [{str(ROOT / "fgviz")!r}]
        sys.modules["fgviz"] = pkg
        import fgviz.viz, fgviz.viz.figures, fgviz.viz.overlay, fgviz.core.explanation
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "gradio"))
        print("BAD" if bad else "OK", bad[:5])
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK"), res.stdout
