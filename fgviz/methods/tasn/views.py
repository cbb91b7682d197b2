"""TASN's views: the structure/detail attention the sampler takes, its sampling grids and resampled images, and the
pipeline step by step.

Every map is what the model computed: the stored feature-resolution maps go through `sampler_maps` (the resize and
squaring the model applies), and a preview for other parameters calls the model's own `tasn_maps` and `sample_both`
on the stored features X and on the model's input rebuilt from the explanation (tests pin it to `TASN.explain`)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from fgviz.core import metrics
from fgviz.core.explanation import Explanation
from fgviz.core.preprocess import Preprocess
from fgviz.core.sampling import sampler_densities, sampler_maps, sampling_coords
from fgviz.methods.method import Overview, Steps
from fgviz.methods.tasn.model import sample_both, tasn_maps
from fgviz.viz import overlay
from fgviz.viz.overlay import OKABE_ITO
from fgviz.viz.panels import Panel, Style, caption_top1, heat, plain, relative, tiles

KINDS = ("structure", "detail")
GRID_COLORS = {"structure": OKABE_ITO["yellow"], "detail": OKABE_ITO["sky_blue"]}


def full_maps(e: Explanation) -> dict[str, np.ndarray]:
    """(H, W) structure and detail maps as the sampler took them (resized to the input; structure squared)."""
    s, d = sampler_maps(torch.from_numpy(np.asarray(e.maps["structure"], np.float32))[None],
                        torch.from_numpy(np.asarray(e.maps["detail"], np.float32))[None], e.size)
    return {"structure": s[0].numpy(), "detail": d[0].numpy()}


def display_maps(e: Explanation) -> dict[str, np.ndarray]:
    """(H, W) structure and detail maps resized to the input as the sampler's are, the structure map *before* the
    squaring (its square is what the sampler takes: same peaks, but on a shared colour scale it would dwarf every
    other method's map)."""
    full = full_maps(e)
    return {"structure": np.sqrt(np.clip(full["structure"], 0.0, None)), "detail": full["detail"]}


def grid_panel(rgb: np.ndarray, factor: int, coords: tuple[np.ndarray, np.ndarray], kind: str,
               every: int | None = None) -> np.ndarray:
    rows, cols = coords
    every = every or max(1, len(rows) // 16)
    return overlay.draw_grid(rgb, rows, cols, every=every, color=GRID_COLORS[kind], min_size=0, image_scale=factor)


def grid_key(kind: str, every: int, o: int) -> tuple[str, tuple[int, int, int], str]:
    return ("grid", GRID_COLORS[kind], f"{kind} sampling grid: every {every}th of its {o} rows/columns; dense lines = "
                                       "magnified")


def overview(e: Explanation, maps: dict[str, np.ndarray], style: Style, vrange: tuple[float, float] | None,
             main_only: bool = False) -> Overview:
    lo, hi = vrange or (None, None)
    o = len(e.sample_coords["structure"][0])
    every = max(1, o // 16)
    d = heat(e.image, maps["signature"], style, lo, hi)
    d.rgb = grid_panel(d.rgb, d.factor, e.sample_coords["structure"], "structure", every)
    cap = (f"structure map (colour, x uniform; the sampler takes its square); yellow lines: its sampling grid (every "
           f"{every}th of {o} rows/columns)")
    main = d.finish(style, key=[grid_key("structure", every, o)])
    if main_only:
        return Overview(main, cap, [])
    dd = heat(e.image, maps["detail"], style, lo, hi)
    dd.rgb = grid_panel(dd.rgb, dd.factor, e.sample_coords["detail"], "detail", every)
    detail = "the sum of every channel (test mode)" if e.params.get("detail_channel") is None else \
        f"channel {e.params['detail_channel']}"
    panels: list[Panel] = [
        (dd.finish(style, key=[grid_key("detail", every, o)]),
         f"detail attention = {detail} (x uniform) + its sampling grid (blue)"),
        (plain(e.sampled["structure"], style)[0], f"structure-preserved image ({o}x{o}): what the prediction sees"),
        (plain(e.sampled["detail"], style)[0], f"detail-preserved image ({o}x{o})"),
    ]
    return Overview(main, cap, panels)


def recompute(e: Explanation, params: dict[str, Any]) -> dict[str, Any]:
    """TASN from the stored features X on for `params` (gamma, dense, iters, out_size, detail_channel, variant): the
    model's `tasn_maps` and `sample_both`, on the model's input rebuilt exactly from `e.image`."""
    X = torch.from_numpy(np.asarray(e.features, np.float32))[None]  # (1, C, h, w)
    maps = tasn_maps(X, e.size, detail_channel=params["detail_channel"], gamma=params["gamma"],
                     variant=params["variant"])
    pre = Preprocess.of(e.image, e.normalization)
    sampled, coords = sample_both(pre.normalize(e.image), maps, params["out_size"], dense=params["dense"],
                                  iters=params["iters"], variant=params["variant"])
    return {
        "maps": {k: maps[k][0].numpy() for k in KINDS},
        "full": {k: maps[f"{k}_full"][0].numpy() for k in KINDS},
        "trilinear": maps["trilinear"][0].numpy().astype(e.trilinear.dtype),  # stored precision (float16), as drawn
        "sampled": {k: pre.denormalize(v[0]) for k, v in sampled.items()},
        "coords": {k: (r[0].numpy(), c[0].numpy()) for k, (r, c) in coords.items()},
    }


def marginals_figure(full: dict[str, np.ndarray], params: dict[str, Any]) -> go.Figure:
    """Max-marginals of the structure and detail attention and the densities the sampler makes of them
    (`sampler_densities`: output samples per input row/column, after the official clipping)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["rows (y)", "columns (x)"], horizontal_spacing=0.1)
    for kind in KINDS:
        m = torch.from_numpy(full[kind])[None]
        d_row, d_col = sampler_densities(m, params["out_size"], dense=params["dense"], iters=params["iters"])
        rgb = "rgb({},{},{})".format(*(OKABE_ITO["orange"] if kind == "structure" else OKABE_ITO["blue"]))
        for col, (marg, dens) in enumerate(((full[kind].max(1), d_row[0].numpy()),
                                            (full[kind].max(0), d_col[0].numpy())), 1):
            x = np.arange(len(marg))
            fig.add_trace(go.Scatter(x=x, y=marg / max(float(marg.max()), 1e-12), name=f"{kind} max-marginal",
                                     line={"color": rgb, "dash": "dot"}, legendgroup=kind + "m",
                                     showlegend=col == 1), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=dens, name=f"{kind}: output samples per input pixel",
                                     line={"color": rgb}, legendgroup=kind + "d", showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="input pixel", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title_text="marginal (rel. to max) / density", row=1, col=1)
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 70, "b": 10}, legend={"orientation": "h", "y": -0.25},
                      title="4. marginals -> sampling density<br><sup>1 = as many output samples as input "
                            "pixels</sup>")
    return fig


def steps(e: Explanation, style: Style, params: dict[str, Any]) -> Steps:
    """Feature maps -> trilinear maps -> structure/detail maps -> marginals -> sampling grid -> resampled images."""
    ran = {k: e.params.get(k) for k in params}
    preview = any(params[k] != ran[k] for k in params)
    r = recompute(e, params) if preview else {
        "maps": {k: e.maps[k] for k in KINDS}, "full": full_maps(e), "trilinear": np.asarray(e.trilinear, np.float32),
        "sampled": e.sampled, "coords": e.sample_coords}
    tag = " (preview: re-run for the prediction)" if preview else ""
    X = np.asarray(e.features, np.float32)  # (C, h, w)
    top = np.argsort(-X.reshape(X.shape[0], -1).sum(1), kind="stable")[:8]
    names = [f"ch {int(c)}" for c in top]
    panels: list[Panel] = [
        (tiles(X[top], names, style, unit="activation"),
         f"1. feature maps X of the attention net ({X.shape[0]} channels, {X.shape[1]}x{X.shape[2]}); the 8 strongest "
         "channels (ch)"),
        (tiles(np.asarray(r["trilinear"], np.float32)[top], names, style, unit="value of T"),
         f"2. trilinear maps T = N(N(X) X^T) X, gamma {params['gamma']:g}, same channels{tag}"),
    ]
    rel = {k: relative(r["full"][k]) for k in KINDS}
    hi = max(float(np.nanmax(v)) for v in rel.values()) if style.shared else None
    ch = params["detail_channel"]
    what = {"structure": "unique-energy channels of T summed, resized, squared",
            "detail": "every channel of T summed (test mode)" if ch is None else f"channel {ch} of T"}
    if ch is None:
        what["detail"] += ": the structure map before squaring, so the two grids differ only by the squaring"
    for letter, k in zip("ab", KINDS, strict=True):
        panels.append((heat(e.image, rel[k], style, 0.0 if hi else None, hi).finish(style),
                       f"3{letter}. {k} attention = {what[k]} (x uniform){tag}"))
    for letter, k in zip("ab", KINDS, strict=True):
        img, f = plain(e.image, style)
        every = max(1, len(r["coords"][k][0]) // 24)
        panels.append((grid_panel(img, f, r["coords"][k], k, every),
                       f"5{letter}. {k} sampling grid ({'yellow' if k == 'structure' else 'blue'}), from the "
                       f"densities of step 4 (the chart below): dense {params['dense']:g}, {params['iters']} rounds, "
                       f"{len(r['coords'][k][0])}x{len(r['coords'][k][1])} samples{tag}"))
    official = "mxnet" if params["variant"] == "tasn" else "tasn"
    oc = [c[0].numpy() for c in sampling_coords(torch.from_numpy(r["full"]["structure"])[None], params["out_size"],
                                                dense=params["dense"], iters=params["iters"], variant=official)]
    img, f = plain(e.image, style)
    every = max(1, len(oc[0]) // 24)
    img = grid_panel(img, f, r["coords"]["structure"], "structure", every)
    img = overlay.draw_grid(img, oc[0], oc[1], every=every, color=OKABE_ITO["vermillion"], min_size=0, image_scale=f)
    panels.append((img, f"5c. structure grid (yellow) and the same map through the {official} variant (red): the "
                        "op's exact grid starts one pixel before the image and stops short of its last pixel"))
    for letter, k in zip("ab", KINDS, strict=True):
        panels.append((plain(r["sampled"][k], style)[0], f"6{letter}. {k}-preserved image{tag}"))
    notes = f"Prediction (shared fc on the structure-preserved image): **{caption_top1(e.labels, e.probs)}**"
    if preview:
        notes += "\n\n*Preview from the stored features X: press **Re-run** for the prediction.*"
    return Steps(panels, params=dict(params), preview=preview, figure=marginals_figure(r["full"], params),
                 notes=notes, numbers={"top_channels": [int(c) for c in top]})


def figures(e: Explanation, part_mask: np.ndarray, oracles: bool) -> dict[str, metrics.MetricResult]:
    """Magnification of the deciding parts by both grids, the structure attention's energy pointing game, and with
    `oracles` the magnification the sampler gives the part mask itself."""
    full = full_maps(e)
    out = {"structure_energy_pointing": metrics.energy_pointing_game(full["structure"], part_mask)}
    for kind in KINDS:
        out[f"{kind}_magnification"] = metrics.magnification(*e.sample_coords[kind], part_mask)
    if oracles:
        out["structure_magnification_oracle"] = metrics.magnification(*oracle_coords(e, part_mask), part_mask)
    return out


def oracle_coords(e: Explanation, part_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The structure grid when the attention is the deciding-part mask at the feature resolution (area-averaged to
    (h, w), then resized and squared by `sampler_maps`, as the model's structure map)."""
    h, w = np.asarray(e.maps["structure"]).shape
    cells = torch.from_numpy(cv2.resize(part_mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA))[None]
    structure, _ = sampler_maps(cells, cells, part_mask.shape)  # (1, H, W)
    p = e.params
    rows, cols = sampling_coords(structure, int(p["out_size"]), dense=float(p["dense"]), iters=int(p["iters"]),
                                 variant=p.get("variant", "tasn"))
    return rows[0].numpy(), cols[0].numpy()
