"""The painters of the synthetic generator: bird and car body plans, their backgrounds, and foreground occluders.

`_bird` and `_car` return a display list of (points in the object frame, RGB colour, label-map code) with the
deciding parts in the variants a class asks for, the keypoints in the object frame, and the perch or ground line;
`_bird_background` and `_car_background` paint the scene around that line in pixels (sky, leaves, branches, perch;
sky, buildings, trees, road); `_occluder` draws the polygons of one foreground occluder. Colours outside the
deciding parts stay out of the reserved palette (`synthetic_spec.PALETTE`).
"""

from __future__ import annotations

import cv2
import numpy as np

from fgviz.data.synthetic_draw import _bar, _ellipse, _fill, _gradient_texture, _hsv, _jitter, _rot
from fgviz.data.synthetic_spec import _ATTRIBUTES, _PART_BASE


def _body_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """Desaturated HSV (never near the reserved part colours)."""
    return float(rng.uniform(0, 360)), float(rng.uniform(0.05, 0.42)), float(rng.uniform(0.3, 0.85))


# ---------------------------------------------------------------------------------------------------------------
# Birds. Object frame: facing left, body half-length 1, y down; the near side is the bird's left.


def _bird(rng: np.random.Generator, bits: tuple[int, ...]) -> tuple[list, dict, np.ndarray]:
    h, s, v = _body_colour(rng)
    body = _hsv(h, s, v)
    belly = _hsv(h + rng.uniform(-20, 20), s * 0.5, min(v + 0.2, 0.95))
    wing = _hsv(h, min(s * 1.1, 0.45), v * 0.72)
    tail = _hsv(h, s, v * 0.62)
    leg = _jitter(rng, (70, 62, 55), 15)
    far_leg = tuple(int(c * 0.7) for c in leg)
    eye = _jitter(rng, (25, 22, 20), 8)
    part = [_jitter(rng, a.variants[b].colour) for a, b in zip(_ATTRIBUTES["birds"], bits, strict=True)]
    ps = rng.uniform(0.92, 1.08, 4)  # per-part size jitter (class-independent)

    bb = rng.uniform(0.5, 0.62)  # body depth
    hr = rng.uniform(0.44, 0.5)  # head radius
    hx, hy = -1.0, -0.62
    leg_len = rng.uniform(0.45, 0.6)
    foot_y = 0.5 + leg_len
    dl: list = []
    # far leg, tail, tail tip, body, belly, near leg, wing, wing bar, head, eye, beak, crown
    dl.append((_bar((0.12, 0.45), (0.06, foot_y), 0.08), far_leg, 1))
    dl.append((_bar((0.06, foot_y), (-0.12, foot_y + 0.02), 0.06), far_leg, 1))
    dl.append((np.array([(0.75, -0.24), (1.72, -0.12), (1.72, 0.26), (0.75, 0.16)]), tail, 2))
    t = ps[3]
    if bits[3] == 0:  # forked: a V-notched tip
        tip = np.array([(1.66, -0.16), (2.22, -0.40), (2.0, 0.07), (2.22, 0.54), (1.66, 0.30)])
        tip = (tip - (1.66, 0.07)) * t + (1.66, 0.07)
    else:  # rounded
        tip = _ellipse(1.86, 0.07, 0.32 * t, 0.29 * t)
    dl.append((tip, part[3], _PART_BASE + 3))
    dl.append((_ellipse(0.0, 0.0, 1.0, bb, 12.0), body, 3))
    dl.append((_ellipse(-0.12, 0.22, 0.74, bb * 0.55, 12.0), belly, 4))
    if rng.random() < 0.3:  # speckled breast: class-independent pattern
        for _ in range(int(rng.integers(3, 7))):
            dl.append(
                (
                    _ellipse(-0.5 + rng.uniform(-0.3, 0.4), 0.2 + rng.uniform(-0.1, 0.15), 0.05, 0.05),
                    _hsv(h, s, v * 0.5),
                    4,
                )
            )
    dl.append((_bar((-0.2, 0.45), (-0.26, foot_y), 0.08), leg, 5))
    dl.append((_bar((-0.26, foot_y), (-0.48, foot_y + 0.02), 0.06), leg, 5))
    wx, wy, wa = 0.18, -0.1, 14.0
    dl.append((_ellipse(wx, wy, 0.8, 0.36, wa), wing, 6))
    R = _rot(wa)
    w = ps[2]
    if bits[2] == 0:  # two thin bars across the wing
        for off in (-0.3, 0.02):
            bar = _bar((off, -0.27 * w), (off, 0.27 * w), 0.11 * w) @ R.T + (wx, wy)
            dl.append((bar, part[2], _PART_BASE + 2))
    else:  # one broad bar
        bar = _bar((-0.14, -0.29 * w), (-0.14, 0.29 * w), 0.34 * w) @ R.T + (wx, wy)
        dl.append((bar, part[2], _PART_BASE + 2))
    dl.append((_ellipse(hx, hy, hr, hr), body, 7))
    dl.append((_ellipse(hx - 0.12, hy - 0.08, 0.095, 0.095), eye, 8))
    b = ps[0]
    front = hx - hr * 0.85
    if bits[0] == 0:  # short deep cone
        beak = np.array([(0.05, -0.2), (-0.62, 0.0), (0.05, 0.2)])
    else:  # long thin hook
        beak = np.array(
            [(0.05, -0.13), (-0.62, -0.1), (-0.92, -0.02), (-0.96, 0.12), (-0.84, 0.08), (-0.62, 0.04), (0.05, 0.11)]
        )
    dl.append((beak * b + (front, hy + 0.02), part[0], _PART_BASE + 0))
    c = ps[1]
    if bits[1] == 0:  # three-spiked crest
        angles = np.deg2rad([-150, -135, -118, -100, -82, -65, -45])
        radii = np.array([0.95, 1.0 + 0.68 * c, 1.02, 1.0 + 0.77 * c, 1.02, 1.0 + 0.63 * c, 0.95]) * hr
        outer = np.stack([hx + radii * np.cos(angles), hy + radii * np.sin(angles)], 1)
        inner_a = np.deg2rad(np.linspace(-45, -150, 6))
        inner = np.stack([hx + 0.55 * hr * np.cos(inner_a), hy + 0.55 * hr * np.sin(inner_a)], 1)
        crown = np.concatenate([outer, inner])
    else:  # flat cap stripe over the top of the head
        a = np.deg2rad(np.linspace(-160, -30, 9))
        outer = np.stack([hx + (hr + 0.07 * c) * np.cos(a), hy + (hr + 0.07 * c) * np.sin(a)], 1)
        inner = np.stack([hx + (hr - 0.26 * c) * np.cos(a[::-1]), hy + (hr - 0.26 * c) * np.sin(a[::-1])], 1)
        crown = np.concatenate([outer, inner])
    dl.append((crown, part[1], _PART_BASE + 1))

    # Keypoints: (object xy, on the near side). "left *" is the near side; the far eye and wing are hidden.
    kp = {
        "back": ((0.35, -0.42), True),
        "beak": ((front - 0.3 * b, hy + 0.02), True),
        "belly": ((0.05, 0.32), True),
        "breast": ((-0.62, 0.12), True),
        "crown": ((hx, hy - hr * 0.8), True),
        "forehead": ((hx - hr * 0.62, hy - hr * 0.55), True),
        "left eye": ((hx - 0.12, hy - 0.08), True),
        "left leg": ((-0.23, 0.45 + leg_len / 2), True),
        "left wing": ((wx - 0.14, wy), True),
        "nape": ((hx + hr * 0.7, hy - hr * 0.3), True),
        "right eye": ((hx - 0.12, hy - 0.08), False),
        "right leg": ((0.09, 0.45 + leg_len / 2), True),
        "right wing": ((wx - 0.14, wy), False),
        "tail": ((1.86, 0.07), True),
        "throat": ((hx - hr * 0.35, hy + hr * 0.75), True),
    }
    return dl, kp, np.array([(-0.6, foot_y + 0.04), (0.4, foot_y + 0.04)])  # perch line under the feet


def _bird_background(rng: np.random.Generator, H: int, W: int, perch: np.ndarray, unit: float) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:  # sky
        top, bottom = (
            _hsv(rng.uniform(195, 225), rng.uniform(0.1, 0.35), rng.uniform(0.75, 0.95)),
            _hsv(rng.uniform(190, 215), rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.97)),
        )
    elif kind == 1:  # dense foliage
        top, bottom = (
            _hsv(rng.uniform(100, 155), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.45)),
            _hsv(rng.uniform(100, 155), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.6)),
        )
    else:  # overcast / dusk
        g = rng.uniform(0.45, 0.85)
        top, bottom = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.12), g), _hsv(rng.uniform(0, 360), 0.08, g * 0.85)
    img = _gradient_texture(rng, H, W, top, bottom)
    S = min(H, W)
    n = int(rng.integers(3, 26))
    leaves = rng.random((n, 8)) * (60, 0.3, 0.45, 0.05, W, H, 0.25, 180) + (100, 0.3, 0.2, 0.03, 0, 0, 0.35, 0)
    for h, s, v, a, x, y, aspect, ang in leaves.tolist():  # leaves
        cv2.ellipse(
            img,
            (int(x), int(y)),
            (int(a * S) + 1, int(a * S * aspect) + 1),
            ang,
            0,
            360,
            _hsv(h, s, v),
            -1,
            cv2.LINE_AA,
        )
    for _ in range(int(rng.integers(0, 3))):  # side branches
        c = _hsv(rng.uniform(15, 40), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.45))
        p0 = (int(rng.uniform(0, W)), int(rng.uniform(0, H)))
        ang = rng.uniform(0, np.pi)
        p1 = (int(p0[0] + np.cos(ang) * S), int(p0[1] + np.sin(ang) * S))
        cv2.line(img, p0, p1, c, max(1, int(rng.uniform(0.01, 0.035) * S)), cv2.LINE_AA)
    # the perch under the feet, extended across the image
    c = _hsv(rng.uniform(15, 40), rng.uniform(0.3, 0.6), rng.uniform(0.22, 0.45))
    d = perch[1] - perch[0]
    d = d / (np.hypot(*d) + 1e-9)
    p0, p1 = perch[0] - d * 3 * max(H, W), perch[1] + d * 3 * max(H, W)
    _fill(img, np.zeros((H, W), np.uint8), _bar(tuple(p0), tuple(p1), 0.14 * unit), c, 0)
    return img


# ---------------------------------------------------------------------------------------------------------------
# Cars. Object frame: facing left, length 4 (x in [-2, 2]), y down, ground at y = 0.92.


def _car(rng: np.random.Generator, bits: tuple[int, ...]) -> tuple[list, dict, np.ndarray]:
    h = float(rng.uniform(0, 360))
    s = float(rng.uniform(0.0, 0.38))
    v = float(rng.choice([rng.uniform(0.12, 0.3), rng.uniform(0.3, 0.95)]))
    body = _hsv(h, s, v)
    dark = _hsv(h, s, v * 0.6)
    glass = _hsv(rng.uniform(190, 230), rng.uniform(0.1, 0.35), rng.uniform(0.2, 0.45))
    tire = _jitter(rng, (28, 28, 30), 6)
    trim = _jitter(rng, (55, 55, 58), 10)
    part = [_jitter(rng, a.variants[b].colour) for a, b in zip(_ATTRIBUTES["cars"], bits, strict=True)]
    ps = rng.uniform(0.92, 1.08, 4)

    roof_y = -rng.uniform(0.86, 0.96)
    cab_front = rng.uniform(-1.15, -0.95)
    cab_back = rng.uniform(1.25, 1.5)
    wheel_x = rng.uniform(1.15, 1.3)
    dl: list = []
    lower = np.array(
        [
            (-2.0, -0.16),
            (-1.97, 0.36),
            (-1.82, 0.5),
            (1.86, 0.5),
            (2.0, 0.3),
            (2.0, -0.22),
            (1.55, -0.3),
            (-1.0, -0.3),
            (-1.78, -0.24),
        ]
    )
    cabin = np.array([(cab_front, -0.28), (-0.5, roof_y), (0.85, roof_y), (cab_back, -0.28)])
    dl.append((cabin, body, 1))
    dl.append((lower, body, 2))
    dl.append(
        (np.array([(cab_front + 0.16, -0.32), (-0.45, roof_y + 0.08), (0.12, roof_y + 0.08), (0.12, -0.32)]), glass, 3)
    )
    dl.append(
        (np.array([(0.22, -0.32), (0.22, roof_y + 0.08), (0.8, roof_y + 0.08), (cab_back - 0.18, -0.32)]), glass, 3)
    )
    dl.append((_bar((0.17, -0.28), (0.17, 0.42), 0.03), dark, 4))  # door line
    if rng.random() < 0.5:  # four-door: second door line (class-independent)
        dl.append((_bar((-0.9, -0.28), (-0.9, 0.42), 0.03), dark, 4))
    dl.append((_bar((-0.25, -0.12), (-0.05, -0.12), 0.06), trim, 5))  # door handle
    dl.append(
        (
            np.array(
                [
                    (cab_front - 0.05, -0.36),
                    (cab_front + 0.15, -0.36),
                    (cab_front + 0.1, -0.5),
                    (cab_front - 0.1, -0.48),
                ]
            ),
            dark,
            6,
        )
    )  # mirror
    dl.append((np.array([(-2.02, 0.04), (-1.9, 0.04), (-1.9, 0.3), (-2.0, 0.3)]), trim, 7))  # grille
    taillight = _jitter(rng, (92, 46, 46), 8)  # dark and dull: red is a part colour
    dl.append((np.array([(1.9, -0.2), (2.02, -0.2), (2.02, 0.06), (1.9, 0.06)]), taillight, 8))
    dl.append((np.array([(-2.04, 0.32), (-1.6, 0.32), (-1.6, 0.46), (-1.95, 0.46)]), trim, 9))  # front bumper
    dl.append((np.array([(1.6, 0.32), (2.03, 0.32), (1.96, 0.46), (1.6, 0.46)]), trim, 9))  # rear bumper
    r_rim = 0.23 * ps[0]
    for cx in (-wheel_x, wheel_x):
        dl.append((_ellipse(cx, 0.5, 0.42, 0.42), tire, 10))
        dl.append((_ellipse(cx, 0.5, r_rim, r_rim), tire, _PART_BASE + 0))
        if bits[0] == 0:  # five-spoke star
            ang = np.deg2rad(np.arange(10) * 36.0 - 90)
            rad = np.where(np.arange(10) % 2 == 0, r_rim, r_rim * 0.38)
            dl.append((np.stack([cx + rad * np.cos(ang), 0.5 + rad * np.sin(ang)], 1), part[0], _PART_BASE + 0))
        else:  # dish: a full disc with a dark hub
            dl.append((_ellipse(cx, 0.5, r_rim, r_rim), part[0], _PART_BASE + 0))
            dl.append((_ellipse(cx, 0.5, r_rim * 0.42, r_rim * 0.42), tire, _PART_BASE + 0))
    hl = ps[1]
    if bits[1] == 0:  # round
        lamp = _ellipse(-1.8, -0.06, 0.21 * hl, 0.21 * hl)
    else:  # slit, swept back
        lamp = _bar((-1.98, -0.02), (-1.45, -0.18), 0.14 * hl)
    dl.append((lamp, part[1], _PART_BASE + 1))
    sp = ps[2]
    if bits[2] == 0:  # raised wing on two posts
        dl.append((_bar((1.62, -0.3), (1.62, -0.3 - 0.3 * sp), 0.08), part[2], _PART_BASE + 2))
        dl.append((_bar((1.88, -0.28), (1.88, -0.3 - 0.3 * sp), 0.08), part[2], _PART_BASE + 2))
        dl.append((_bar((1.34, -0.3 - 0.34 * sp), (2.06, -0.3 - 0.27 * sp), 0.15 * sp), part[2], _PART_BASE + 2))
    else:  # ducktail: an up-swept wedge on the trunk
        dl.append(
            (np.array([(1.35, -0.29), (2.02, -0.23), (2.06, -0.3 - 0.42 * sp), (1.8, -0.34)]), part[2], _PART_BASE + 2)
        )
    rf = ps[3]
    if bits[3] == 0:  # rails: two bars with feet
        for x in (-0.35, 0.7):
            dl.append((_bar((x, roof_y), (x, roof_y - 0.2 * rf), 0.09), part[3], _PART_BASE + 3))
        dl.append((_bar((-0.5, roof_y - 0.2 * rf), (0.85, roof_y - 0.2 * rf), 0.11 * rf), part[3], _PART_BASE + 3))
    else:  # box: a rounded cargo box
        box = np.array(
            [
                (-0.3, roof_y + 0.02),
                (-0.37, roof_y - 0.18 * rf),
                (-0.24, roof_y - 0.3 * rf),
                (0.6, roof_y - 0.3 * rf),
                (0.74, roof_y - 0.18 * rf),
                (0.7, roof_y + 0.02),
            ]
        )
        dl.append((box, part[3], _PART_BASE + 3))
    kp = {
        "front wheel": ((-wheel_x, 0.5), True),
        "rear wheel": ((wheel_x, 0.5), True),
        "headlight": ((-1.8, -0.06) if bits[1] == 0 else (-1.72, -0.1), True),
        "taillight": ((1.96, -0.07), True),
        "grille": ((-1.96, 0.17), True),
        "mirror": ((cab_front + 0.03, -0.42), True),
        "door handle": ((-0.15, -0.12), True),
        "windshield": ((cab_front + 0.5 * (-0.45 - cab_front) + 0.12, (roof_y - 0.32) / 2), True),
        "roof": ((0.2, roof_y - 0.14 * rf), True),
        "spoiler": ((1.72, -0.3 - 0.3 * sp) if bits[2] == 0 else (1.9, -0.33), True),
        "front bumper": ((-1.8, 0.39), True),
        "rear bumper": ((1.8, 0.39), True),
    }
    return dl, kp, np.array([(-2.0, 0.92), (2.0, 0.92)])  # ground line under the wheels


def _car_background(rng: np.random.Generator, H: int, W: int, ground: np.ndarray, unit: float) -> np.ndarray:
    gy = float(np.clip(ground[:, 1].mean(), 0.3 * H, H - 1))
    horizon = int(np.clip(gy - rng.uniform(0.6, 1.6) * unit, 0.15 * H, gy - 2))
    sky = _hsv(rng.uniform(195, 225), rng.uniform(0.05, 0.35), rng.uniform(0.65, 0.95))
    img = _gradient_texture(
        rng, H, W, sky, _hsv(rng.uniform(190, 220), rng.uniform(0.0, 0.15), rng.uniform(0.7, 0.95))
    )
    S = min(H, W)
    x = -int(rng.uniform(0, 0.2) * W)
    while x < W:  # buildings along the horizon
        bw = int(rng.uniform(0.15, 0.4) * W) + 2
        top = int(horizon - rng.uniform(0.15, 0.7) * H)
        c = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.85))
        cv2.rectangle(img, (x, top), (x + bw, horizon), c, -1)
        wc = _hsv(rng.uniform(190, 230), rng.uniform(0.0, 0.25), rng.uniform(0.15, 0.9))
        step = max(3, int(rng.uniform(0.05, 0.09) * S))
        win = max(1, step // 2)
        y0 = max(top + 2, 0)
        region = img[y0 : max(horizon - 2, y0), max(x + 2, 0) : max(min(x + bw - 1, W), 0)]
        for dy in range(win):  # a grid of win x win windows every `step` px
            for dx in range(win):
                region[dy::step, dx::step] = wc
        x += bw + int(rng.uniform(0, 0.08) * W)
    for _ in range(int(rng.integers(0, 3))):  # trees behind the car
        tx = int(rng.uniform(0, W))
        cv2.line(img, (tx, horizon), (tx, int(horizon - 0.25 * H)), _hsv(25, 0.4, 0.3), max(1, S // 40))
        for _ in range(4):
            cv2.circle(
                img,
                (int(tx + rng.uniform(-0.07, 0.07) * S), int(horizon - rng.uniform(0.22, 0.38) * H)),
                int(rng.uniform(0.04, 0.08) * S) + 1,
                _hsv(rng.uniform(100, 155), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5)),
                -1,
                cv2.LINE_AA,
            )
    # sidewalk and road (asphalt texture, lane dashes)
    walk = int(horizon + max(1, 0.04 * H))
    img[horizon:walk] = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.1), rng.uniform(0.55, 0.8))
    asphalt = _gradient_texture(
        rng, H - walk, W, _hsv(0, 0, rng.uniform(0.25, 0.45)), _hsv(0, 0, rng.uniform(0.2, 0.4)), amp=10.0
    )
    img[walk:] = asphalt
    lane_y = int(gy + rng.uniform(0.05, 0.4) * (H - gy))
    if lane_y < H:
        dash, gap, x0 = int(0.12 * W) + 1, int(0.08 * W) + 1, int(rng.uniform(-0.2, 0) * W)
        lc = _hsv(0, 0, rng.uniform(0.75, 0.95))
        for xs in range(x0, W, dash + gap):
            cv2.rectangle(img, (xs, lane_y), (xs + dash, lane_y + max(1, H // 60)), lc, -1)
    return img


# ---------------------------------------------------------------------------------------------------------------
# Foreground occluders: never allowed near a deciding part.


def _occluder(rng: np.random.Generator, domain: str, H: int, W: int, unit: float) -> tuple[list, tuple]:
    S = min(H, W)
    cx, cy = rng.uniform(0, W), rng.uniform(0, H)
    if domain == "birds":
        c = _hsv(rng.uniform(100, 160), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.6))
        ang = rng.uniform(0, 180)
        n = int(rng.integers(1, 4))
        polys = [
            _ellipse(
                cx + rng.uniform(-0.6, 0.6) * unit,
                cy + rng.uniform(-0.6, 0.6) * unit,
                rng.uniform(0.35, 0.6) * unit,
                rng.uniform(0.12, 0.25) * unit,
                ang + rng.uniform(-40, 40),
            )
            for _ in range(n)
        ]
        return polys, c
    kind = rng.integers(2)
    if kind == 0:  # pole
        w = rng.uniform(0.08, 0.16) * unit
        return [np.array([(cx - w, -1.0), (cx + w, -1.0), (cx + w, H + 1.0), (cx - w, H + 1.0)])], _hsv(
            rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.25, 0.7)
        )
    c = _hsv(rng.uniform(100, 155), rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.5))  # bush at the bottom
    cy = H - rng.uniform(0, 0.12) * S
    return [
        _ellipse(
            cx + rng.uniform(-0.5, 0.5) * unit,
            cy + rng.uniform(-0.3, 0.2) * unit,
            rng.uniform(0.3, 0.55) * unit,
            rng.uniform(0.25, 0.45) * unit,
        )
        for _ in range(3)
    ], c
