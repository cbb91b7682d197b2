"""Nuisance parts of data version 2: slots, shapes, placement and the per-sample plan.

The slots of each domain (on the object and in the scene around it), the shapes they may take, where an
on-object slot sits in the body plan, which slots a sample fills with which colour and shape (drawn from the
sample's own nuisance stream, never from the class), and where a scene part goes in pixels, clear of the object
and the deciding parts. `fgviz.data.synthetic` draws them (`_draw_with_nuisance`) and names them
(`nuisance_parts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgviz.data.synthetic_draw import _bar, _ellipse, _raster, _rot, _star

# ---------------------------------------------------------------------------------------------------------------
# Nuisance parts (data version 2): as salient as the deciding parts (the same palette, similar sizes and shapes) but
# with colour, shape and presence drawn from their own random stream, independent of the class. On-object slots sit
# where the body plan leaves room (a margin from every deciding part in object units); scene parts are placed in
# pixels around the object. Any that would come within 0.1 body units (at least 2 px) of a deciding part, in either
# of its variants (so that whether it is drawn never depends on the class), is not drawn.


@dataclass(frozen=True)
class _Slot:
    name: str
    shapes: tuple[str, ...]
    size: float  # half-extent, object units
    on_object: bool


_NUISANCE_SLOTS: dict[str, tuple[_Slot, ...]] = {
    "birds": (
        _Slot("leg band", ("band", "twin bands"), 0.3, True),
        _Slot("wing spot", ("disc", "bar", "triangle"), 0.22, True),
        _Slot("breast spot", ("disc", "star", "diamond"), 0.22, True),
        _Slot("tail band", ("bar", "twin bars"), 0.25, True),
        _Slot("flank spot", ("disc", "triangle", "star"), 0.22, True),
        _Slot("berries", ("round berries", "long berries"), 0.5, False),
        _Slot("flower", ("five petals", "six petals"), 0.56, False),
    ),
    "cars": (
        _Slot("mirror", ("cap", "pod"), 0.22, True),
        _Slot("door decal", ("disc", "star", "diamond"), 0.28, True),
        _Slot("rear door decal", ("disc", "bar", "triangle"), 0.26, True),
        _Slot("side stripe", ("stripe", "twin stripes", "dashes"), 0.5, True),
        _Slot("window sticker", ("disc", "star", "triangle"), 0.19, True),
        _Slot("traffic cone", ("cone", "tall cone"), 0.42, False),
        _Slot("road sign", ("disc", "triangle", "diamond", "square"), 0.34, False),
    ),
}
_N_ON_OBJECT = {"birds": (4, 5), "cars": (3, 5)}  # how many on-object slots a sample fills (low, high inclusive)
_THEME_COLOURS = 1  # distinct palette colours among one sample's nuisance parts
# The palette colours nuisance parts are drawn from: all but the two of the smallest deciding part (beak,
# headlight): the beak was the attribute a small ViT learned last and least while nuisance parts could wear its
# colours (the headlight is excluded by analogy; no cars run was made).
_NUISANCE_COLOURS = {
    "birds": ("orange", "lime", "cyan", "blue", "violet", "magenta"),
    "cars": ("red", "yellow", "cyan", "blue", "violet", "magenta"),
}
_P_SCENE = {"birds": 0.9, "cars": 0.8}  # chance that each scene slot is tried


def _nuisance_shape(shape: str, cx: float, cy: float, s: float, deg: float) -> list[np.ndarray]:
    """Polygons of a nuisance shape of half-extent `s` centred at (cx, cy), turned by `deg` (any frame, y down)."""
    R = _rot(deg)

    def place(pts) -> np.ndarray:
        return np.asarray(pts, float) @ R.T + (cx, cy)

    if shape == "disc":
        return [_ellipse(cx, cy, s, 0.82 * s, deg)]
    if shape == "diamond":
        return [place([(s, 0), (0, 0.75 * s), (-s, 0), (0, -0.75 * s)])]
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return [place(np.stack([s * np.cos(a), s * np.sin(a) + 0.2 * s], 1))]
    if shape == "star":
        return [_star(cx, cy, s, 5, 0.5, deg)]
    if shape in ("bar", "band", "cap"):
        return [place(_bar((-s, 0), (s, 0), 0.62 * s if shape != "cap" else 0.85 * s))]
    if shape in ("twin bars", "twin bands"):
        return [place(_bar((-s, o * s), (s, o * s), 0.38 * s)) for o in (-0.38, 0.38)]
    if shape == "stripe":
        return [place(_bar((-s, 0), (s, 0), 0.26 * s))]
    if shape == "twin stripes":
        return [place(_bar((-s, o * s), (s, o * s), 0.14 * s)) for o in (-0.13, 0.13)]
    if shape == "dashes":
        return [place(_bar((a * s, 0), ((a + 0.52) * s, 0), 0.3 * s)) for a in (-1.0, -0.26, 0.48)]
    if shape == "pod":
        return [_ellipse(cx, cy, s, 0.6 * s, deg)]
    if shape in ("round berries", "long berries"):
        b = (0.44 * s, 0.44 * s) if shape == "round berries" else (0.3 * s, 0.5 * s)
        return [_ellipse(cx + dx * s, cy + dy * s, *b, deg) for dx, dy in ((-0.52, -0.3), (0.52, -0.3), (0.0, 0.5))]
    if shape in ("five petals", "six petals"):
        n = 5 if shape == "five petals" else 6
        out = [_ellipse(cx, cy, 0.34 * s, 0.34 * s)]
        for k in range(n):
            a = deg + k * 360.0 / n
            out.append(
                _ellipse(
                    cx + 0.6 * s * np.cos(np.deg2rad(a)), cy + 0.6 * s * np.sin(np.deg2rad(a)), 0.42 * s, 0.26 * s, a
                )
            )
        return out
    if shape in ("cone", "tall cone"):  # base at cy + s, apex above; two-tone parts are the same palette colour
        w = 0.62 if shape == "cone" else 0.46
        body = [(-0.12 * s, -s), (0.12 * s, -s), (w * s, 0.8 * s), (-w * s, 0.8 * s)]
        foot = [(-0.95 * s, 0.78 * s), (0.95 * s, 0.78 * s), (0.95 * s, s), (-0.95 * s, s)]
        return [place(body), place(foot)]
    if shape == "square":
        return [place([(-0.8 * s, -0.8 * s), (0.8 * s, -0.8 * s), (0.8 * s, 0.8 * s), (-0.8 * s, 0.8 * s)])]
    raise ValueError(shape)


def _slot_frame(domain: str, name: str, kp: dict) -> tuple[float, float, float]:
    """(cx, cy, deg) of an on-object slot in the object frame, from the body plan's keypoints."""
    if domain == "birds":
        wing = _rot(14.0)  # the wing ellipse: centre (0.18, -0.1), turned 14 degrees (see `synthetic_objects._bird`)
        if name == "leg band":
            x, y = kp["left leg"][0]
            return x - 0.01, y + 0.04, -4.0
        if name == "wing spot":
            x, y = wing @ (0.62, 0.02) + (0.18, -0.1)
            return x, y, 14.0
        if name == "breast spot":
            return -0.72, 0.2, 12.0
        if name == "tail band":
            return 1.04, 0.03, 96.0
        if name == "flank spot":
            return 0.72, 0.34, 12.0
    else:
        cab_front = kp["mirror"][0][0] - 0.03
        roof_y = 2 * kp["windshield"][0][1] + 0.32
        if name == "mirror":
            return cab_front + 0.1, -0.58, -8.0
        if name == "door decal":
            return -0.4, 0.05, 0.0
        if name == "rear door decal":
            return 0.42, 0.04, 0.0
        if name == "side stripe":
            return 0.0, 0.39, 0.0
        if name == "window sticker":
            return 0.5, (roof_y - 0.32) / 2 + 0.15, 0.0
    raise KeyError(name)


def _plan_nuisance(rng: np.random.Generator, domain: str) -> list[tuple[int, _Slot, str, str, float, float]]:
    """Which slots a sample fills, with (slot index, slot, colour name, shape, size factor, angle jitter).

    Drawn before anything is placed and from the sample's own nuisance stream: nothing here depends on the class.
    """
    slots = _NUISANCE_SLOTS[domain]
    on = [j for j, sl in enumerate(slots) if sl.on_object]
    lo, hi = _N_ON_OBJECT[domain]
    chosen = sorted(rng.choice(on, int(rng.integers(lo, hi + 1)), replace=False).tolist())
    chosen += [j for j, sl in enumerate(slots) if not sl.on_object and rng.random() < _P_SCENE[domain]]
    # A sample's nuisance parts share one random colour (`_THEME_COLOURS`) from `_NUISANCE_COLOURS`: colour alone
    # then still settles most attributes and only the part's place settles the rest, which a small ViT learns far
    # faster than with a colour per part (docs/data_v2.md: after 5 CPU minutes 0.33 with a colour per part, 0.71
    # with this, 0.96 on version 1).
    colours = _NUISANCE_COLOURS[domain]
    theme = rng.choice(len(colours), _THEME_COLOURS, replace=False).tolist()
    plan = []
    for j in chosen:
        sl = slots[j]
        plan.append(
            (
                j,
                sl,
                colours[theme[int(rng.integers(len(theme)))]],
                sl.shapes[int(rng.integers(len(sl.shapes)))],
                float(rng.uniform(0.9, 1.1)),
                float(rng.uniform(-15, 15)),
            )
        )
    return plan


def _place_scene(
    rng: np.random.Generator,
    domain: str,
    sl: _Slot,
    shape: str,
    s: float,
    deg: float,
    H: int,
    W: int,
    anchor_px: np.ndarray,
    unit: float,
    keep_out: np.ndarray,
):
    """Pixel polygons (and an unlabelled stem/pole) of a scene part clear of `keep_out`, or None after 8 tries."""
    d = anchor_px[1] - anchor_px[0]
    d = d / (np.hypot(*d) + 1e-9)
    for _ in range(8):
        x = float(rng.uniform(s, W - s))
        base_y = float(anchor_px[0, 1] + (x - anchor_px[0, 0]) * d[1] / (d[0] if abs(d[0]) > 1e-6 else 1e-6))
        stem = None
        if sl.name == "berries":  # hanging below the perch on a short stalk
            n = np.array([-d[1], d[0]]) * (1 if d[0] >= 0 else -1)
            top = np.array([x, base_y]) + n * 0.07 * unit
            c = top + n * (0.18 * unit + 0.75 * s)
            polys = _nuisance_shape(shape, c[0], c[1], s, deg)
            stem = _bar(tuple(top - n * 0.05 * unit), tuple(c), 0.05 * unit)
        elif sl.name == "flower":  # among the leaves, anywhere off the bird
            c = np.array([x, rng.uniform(s, H - s)])
            polys = _nuisance_shape(shape, c[0], c[1], s, deg)
        elif sl.name == "traffic cone":  # on the road in front of the car
            c = np.array([x, base_y + rng.uniform(0.1, 1.4) * unit - s])
            polys = _nuisance_shape(shape, c[0], c[1], s, deg * 0.2)
        else:  # road sign: a plate on a pole that stands on the pavement behind the car
            foot = base_y - rng.uniform(0.15, 0.45) * unit
            c = np.array([x, rng.uniform(s, max(s + 1.0, foot - 1.4 * unit))])
            polys = _nuisance_shape(shape, c[0], c[1], s, deg * 0.3)
            stem = _bar((x, c[1]), (x, foot), max(1.5, 0.07 * unit))
        pts = np.concatenate(polys)
        if pts[:, 0].min() < 1 or pts[:, 1].min() < 1 or pts[:, 0].max() > W - 2 or pts[:, 1].max() > H - 2:
            continue
        m = _raster(H, W, polys)
        if not (m & keep_out).any():
            return polys, stem, m
    return None
