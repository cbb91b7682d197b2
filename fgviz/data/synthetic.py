"""Procedural fine-grained birds and cars with part ground truth (OpenCV/numpy, no downloads).

Every class of a domain shares one body plan and the same distribution of global colour, size, pose, background
and lighting. A class is a combination of four binary attributes of small parts, so classes that differ in exactly
one part exist (each class has four such neighbours) and nothing outside the deciding parts tells the class:

- birds: beak (red cone | yellow hook), crown (magenta crest | cyan cap), wing bar (two thin orange bars | one
  broad violet bar), tail tip (blue fork | lime disc). Keypoints are CUB-200-2011's 15 parts.
- cars: rims (yellow star | cyan dish), headlight (orange round | lime slit), spoiler (blue wing | magenta
  ducktail), roof (violet rails | red box). Keypoints are 12 named car parts (Stanford Cars itself has none).

The two variants of a part differ in shape or pattern and in colour. Colour is what a small ViT learns within
minutes of CPU training (in learnability runs, shape-only pairs of one colour stayed at chance for those parts),
so the eight part colours (`PALETTE`) are kept out of the background: bodies, skies and buildings stay below HSV
saturation 0.45, foliage and branches below 0.6 and away from the lime hue, because a model that can find a part
colour anywhere in the image learns the clutter instead.

Nuisance that a model must look past: horizontal flip, rotation, scale, position, body colour and shape jitter,
textured and cluttered backgrounds (sky, leaves, branches; sky, buildings, road, trees), lighting gain, gradient
and colour cast, blur, noise, and foreground occluders that are rejected if they come near a deciding part.

Data versions (`make_sample(..., version=)`, `VERSIONS`, default `LATEST_VERSION`):

- 1: the above. The deciding parts are then the only saturated things in the image, so any saliency map, or the
  attention argmax of a randomly initialised ViT, finds them without knowing the class.
- 2: version 1's image plus nuisance parts (`nuisance_parts(domain)`) as salient as the deciding parts: the same
  palette colours, similar sizes and shapes, several per image, on the object (birds: leg band, throat patch,
  breast spot, wing spot, flank spot, tail band; cars: mirror, door decals, side stripe, window sticker) and around
  it (berries, flower; traffic cone, road sign). Their presence, colour and shape come from a separate random stream
  and never depend on the class; they are dropped, for either variant of every deciding part alike, where they
  would come within a few pixels of one, so they never touch or hide a deciding part. They are not in `part_mask`;
  `Sample.nuisance` lists them and `Sample.nuisance_mask` holds their pixels, so a metric can tell a map that
  finds the deciding parts from one that finds whatever is colourful. Version 1 samples are reproduced bit for bit.

Determinism: a sample is a pure function of (domain, index, seed, size, version); the label is
`index % num_classes`. Coordinates: pixel (x, y) has its centre at integer (x, y); boxes are (x0, y0, x1, y1)
with x1/y1 exclusive.
"""

from __future__ import annotations

import colorsys
import copy
import functools
import itertools
from dataclasses import dataclass

import cv2
import numpy as np

DOMAINS = ("birds", "cars")

# Label-map codes: 0 background, 1..99 object (non-deciding), 100 + k deciding part k, 200 + j nuisance part j on
# the object, 220 + j nuisance part j in the scene around it (data version 2), 255 occluder.
_PART_BASE = 100
_NUISANCE_BASE = 200
_SCENE_BASE = 220
_OCCLUDER = 255

# Data versions: 1 = the deciding parts are the only saturated colours in the image; 2 = salient nuisance parts in the
# same palette, on and around the object, whose colour and shape say nothing about the class.
VERSIONS = (1, 2)
LATEST_VERSION = 2
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn at 1/16 px
_ONE = float(1 << _SHIFT)
_CIRCLE = np.stack(
    [np.cos(np.linspace(0, 2 * np.pi, 32, endpoint=False)), np.sin(np.linspace(0, 2 * np.pi, 32, endpoint=False))], 1
)  # (32, 2) unit circle


@dataclass(frozen=True)
class Variant:
    """One appearance of a deciding part."""

    name: str  # word used in class names, e.g. "Redcone"
    description: str
    colour: tuple[int, int, int]  # RGB, reserved for this domain's parts


@dataclass(frozen=True)
class Attribute:
    """A deciding part: where it is (`keypoint`) and its two appearances."""

    part: str
    keypoint: str  # keypoint (in `part_names(domain)`) on this part; "left ..." is "right ..." in mirrored birds
    variants: tuple[Variant, Variant]


# The reserved part palette: eight saturated hues (HSV S ~0.9, V ~0.9) about 30-45 degrees apart, leaving out
# the greens of foliage. Nuisance colours stay below S 0.6 (foliage, branches) or S 0.45 (bodies, sky, buildings).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (228, 28, 28),
    "orange": (250, 128, 20),
    "yellow": (240, 222, 24),
    "lime": (150, 235, 20),
    "cyan": (22, 210, 232),
    "blue": (30, 62, 235),
    "violet": (135, 40, 232),
    "magenta": (232, 36, 196),
}
_P = PALETTE

# Each attribute's two variants differ in shape or pattern AND in colour; the colour is what a small model
# learns first (learnability runs with same-colour shape pairs stayed at chance on those parts).
_ATTRIBUTES: dict[str, tuple[Attribute, ...]] = {
    "birds": (
        Attribute(
            "beak",
            "beak",
            (
                Variant("Redcone", "short deep red cone", _P["red"]),
                Variant("Yellowhook", "long thin yellow hooked beak", _P["yellow"]),
            ),
        ),
        Attribute(
            "crown",
            "crown",
            (
                Variant("Crested", "three-spiked magenta crest", _P["magenta"]),
                Variant("Capped", "flat cyan cap stripe", _P["cyan"]),
            ),
        ),
        Attribute(
            "wing bar",
            "left wing",
            (
                Variant("Twinbar", "two thin orange wing bars", _P["orange"]),
                Variant("Broadbar", "one broad violet wing bar", _P["violet"]),
            ),
        ),
        Attribute(
            "tail tip",
            "tail",
            (
                Variant("Forktail", "blue forked tail tip", _P["blue"]),
                Variant("Roundtail", "lime round disc tail tip", _P["lime"]),
            ),
        ),
    ),
    "cars": (
        Attribute(
            "rims",
            "front wheel",
            (
                Variant("Starrim", "yellow five-spoke star rims", _P["yellow"]),
                Variant("Dishrim", "cyan dish rims", _P["cyan"]),
            ),
        ),
        Attribute(
            "headlight",
            "headlight",
            (
                Variant("Roundlamp", "round orange headlight", _P["orange"]),
                Variant("Slitlamp", "slim lime slit headlight", _P["lime"]),
            ),
        ),
        Attribute(
            "spoiler",
            "spoiler",
            (
                Variant("Wing", "raised blue wing spoiler", _P["blue"]),
                Variant("Ducktail", "magenta ducktail lip spoiler", _P["magenta"]),
            ),
        ),
        Attribute(
            "roof",
            "roof",
            (Variant("Rails", "violet roof rails", _P["violet"]), Variant("Roofbox", "red roof box", _P["red"])),
        ),
    ),
}

_PART_NAMES = {
    # CUB-200-2011 parts/parts.txt order.
    "birds": (
        "back",
        "beak",
        "belly",
        "breast",
        "crown",
        "forehead",
        "left eye",
        "left leg",
        "left wing",
        "nape",
        "right eye",
        "right leg",
        "right wing",
        "tail",
        "throat",
    ),
    "cars": (
        "front wheel",
        "rear wheel",
        "headlight",
        "taillight",
        "grille",
        "mirror",
        "door handle",
        "windshield",
        "roof",
        "spoiler",
        "front bumper",
        "rear bumper",
    ),
}


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise KeyError(f"unknown domain {domain!r}; available: {DOMAINS}")


def attributes(domain: str) -> tuple[Attribute, ...]:
    """The deciding parts of a domain, in the order that builds class indices (first = most significant)."""
    _check_domain(domain)
    return _ATTRIBUTES[domain]


def deciding_parts(domain: str) -> tuple[str, ...]:
    """Names of the parts whose appearance decides the class."""
    return tuple(a.part for a in attributes(domain))


def part_names(domain: str) -> tuple[str, ...]:
    """Keypoint names, in the order used by exports (CUB's order for birds)."""
    _check_domain(domain)
    return _PART_NAMES[domain]


def num_classes(domain: str) -> int:
    return 2 ** len(attributes(domain))


def class_variants(domain: str, label: int) -> tuple[int, ...]:
    """Variant index (0/1) of each attribute for a class: the binary digits of `label`, first attribute first."""
    n = len(attributes(domain))
    if not 0 <= label < 2**n:
        raise IndexError(f"label {label} outside 0..{2**n - 1}")
    return tuple((label >> (n - 1 - k)) & 1 for k in range(n))


@functools.cache
def class_names(domain: str) -> tuple[str, ...]:
    """Human-readable class names, e.g. "Redcone Crested Twinbar Forktail"."""
    attrs = attributes(domain)
    return tuple(
        " ".join(a.variants[v].name for a, v in zip(attrs, bits, strict=True))
        for bits in itertools.product((0, 1), repeat=len(attrs))
    )


def class_description(domain: str, label: int) -> dict[str, str]:
    """Part -> variant description for a class (what a human would look at)."""
    attrs = attributes(domain)
    return {a.part: a.variants[v].description for a, v in zip(attrs, class_variants(domain, label), strict=True)}


@dataclass(frozen=True)
class NuisancePart:
    """A salient part that does not decide the class (data version 2): palette colour and shape drawn at random."""

    name: str  # slot, e.g. "leg band" (in `nuisance_parts(domain)`)
    colour: str  # a `PALETTE` key
    shape: str  # e.g. "disc", "star"
    code: int  # its value in `Sample.segmentation`
    on_object: bool  # on the bird/car (True) or in the scene around it


@dataclass(frozen=True, eq=False)
class Sample:
    """One generated image with its ground truth."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: int
    class_name: str
    bbox: tuple[int, int, int, int]  # tight object box (x0, y0, x1, y1), x1/y1 exclusive, occluded pixels included
    parts: dict[str, tuple[float, float, bool]]  # keypoint name -> (x, y, visible); hidden ones keep their position
    part_mask: np.ndarray  # (H, W) bool: pixels of the deciding parts (dilated 1 px to cover anti-aliasing)
    segmentation: np.ndarray  # (H, W) uint8: 0 background, 1..99 object, 100 + k deciding part k, 200 + j / 220 + j
    # nuisance part j on / around the object (version 2), 255 occluder
    domain: str = ""
    index: int = 0
    seed: int = 0
    version: int = 1
    nuisance: tuple[NuisancePart, ...] = ()  # the salient non-deciding parts drawn (visible at least in part)
    nuisance_mask: np.ndarray | None = None  # (H, W) bool: their visible pixels, dilated 1 px; all False in version 1

    def __post_init__(self) -> None:
        if self.nuisance_mask is None:
            object.__setattr__(self, "nuisance_mask", np.zeros(self.part_mask.shape, bool))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.image.shape[0], self.image.shape[1]

    @functools.cached_property
    def part_masks(self) -> dict[str, np.ndarray]:
        """Deciding part name -> (H, W) bool, dilated like `part_mask` (computed on first use)."""
        kernel = np.ones((3, 3), np.uint8)
        return {
            a.part: cv2.dilate((self.segmentation == _PART_BASE + k).astype(np.uint8), kernel) > 0
            for k, a in enumerate(attributes(self.domain))
        }

    @functools.cached_property
    def nuisance_masks(self) -> dict[str, np.ndarray]:
        """Nuisance part name -> (H, W) bool, dilated like `nuisance_mask` (computed on first use)."""
        kernel = np.ones((3, 3), np.uint8)
        return {n.name: cv2.dilate((self.segmentation == n.code).astype(np.uint8), kernel) > 0 for n in self.nuisance}

    @property
    def object_mask(self) -> np.ndarray:
        """(H, W) bool: visible object pixels (occluders and nuisance parts of the scene excluded)."""
        seg = self.segmentation
        return (seg > 0) & (seg != _OCCLUDER) & ~((seg >= _SCENE_BASE) & (seg < _OCCLUDER))


# ---------------------------------------------------------------------------------------------------------------
# Drawing helpers. Shapes are point arrays in an object frame (facing left, y down); a "display list" of
# (points, colour, label) is built first, so the pose can be fitted to the image before anything is drawn.


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 12) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, 3).tolist()
    return tuple(min(max(c + e, 0), 255) for c, e in zip(colour, d, strict=True))  # type: ignore[return-value]


def _rot(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _ellipse(cx: float, cy: float, a: float, b: float, deg: float = 0.0) -> np.ndarray:
    pts = _CIRCLE * (a, b)
    if deg:
        pts = pts @ _rot(deg).T
    return pts + np.array((cx, cy))


def _bar(p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
    """A quad of `width` along the segment p0-p1."""
    p0a, p1a = np.asarray(p0, float), np.asarray(p1, float)
    d = p1a - p0a
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9) * (width / 2)
    return np.stack([p0a + n, p1a + n, p1a - n, p0a - n])


def _fill(img: np.ndarray, lab: np.ndarray, pts_px: np.ndarray, colour: tuple[int, int, int], label: int) -> None:
    p = np.rint(pts_px * _ONE).astype(np.int32)
    cv2.fillPoly(img, [p], colour, cv2.LINE_AA, _SHIFT)
    cv2.fillPoly(lab, [p], int(label), cv2.LINE_8, _SHIFT)


@functools.lru_cache(maxsize=16)
def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates in [-1, 1] (for lighting gradients)."""
    ys = np.linspace(-1, 1, H, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, W, dtype=np.float32)[None, :]
    return ys, xs


_NOISE_SLACK = 8192


@functools.lru_cache(maxsize=16)
def _noise_bank(n: int) -> np.ndarray:
    """Fixed standard-normal noise; a sample takes a window at a random offset (drawing fresh noise costs 2x)."""
    return np.random.default_rng(12345).standard_normal(n + _NOISE_SLACK).astype(np.float32)


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


def _gradient_texture(rng: np.random.Generator, H: int, W: int, top, bottom, amp: float | None = None) -> np.ndarray:
    """Vertical gradient plus low-frequency colour noise."""
    g = np.linspace(0.0, 1.0, max(H, 1), dtype=np.float32)[:, None, None]
    img = np.asarray(top, np.float32) * (1 - g) + np.asarray(bottom, np.float32) * g  # (H, 1, 3)
    amp = float(rng.uniform(3, 14)) if amp is None else amp
    k = int(rng.integers(3, 7))
    noise = cv2.resize(
        rng.standard_normal((k, k, 3)).astype(np.float32) * np.float32(amp),
        (W, max(H, 1)),
        interpolation=cv2.INTER_LINEAR,
    )
    return np.clip(img + noise, 0, 255).astype(np.uint8)


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


def nuisance_parts(domain: str, version: int = LATEST_VERSION) -> tuple[str, ...]:
    """Names of the salient non-deciding parts a sample of `version` may show (none in version 1)."""
    _check_domain(domain)
    _check_version(version)
    return () if version < 2 else tuple(s.name for s in _NUISANCE_SLOTS[domain])


def _check_version(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown data version {version!r}; available: {VERSIONS}")


def _star(cx: float, cy: float, r: float, points: int = 5, inner: float = 0.45, deg: float = 0.0) -> np.ndarray:
    ang = np.deg2rad(np.arange(2 * points) * 180.0 / points - 90 + deg)
    rad = np.where(np.arange(2 * points) % 2 == 0, r, r * inner)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


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
        wing = _rot(14.0)  # the wing ellipse: centre (0.18, -0.1), turned 14 degrees (see `_bird`)
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


def _raster(H: int, W: int, polys: list[np.ndarray]) -> np.ndarray:
    tmp = np.zeros((H, W), np.uint8)
    cv2.fillPoly(tmp, [np.rint(p * _ONE).astype(np.int32) for p in polys], 1, cv2.LINE_8, _SHIFT)
    return tmp.view(bool)


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


# ---------------------------------------------------------------------------------------------------------------


def _domain_seed(domain: str) -> int:
    return DOMAINS.index(domain) + 1


def make_sample(
    domain: str, index: int, seed: int = 0, size: int | tuple[int, int] = 96, version: int = LATEST_VERSION
) -> Sample:
    """Render sample `index` of `domain`; the same arguments always give the same pixels.

    Args:
        domain: "birds" or "cars".
        index: any non-negative integer; label = index % num_classes(domain).
        seed: selects an independent stream (train/test sets use different seeds).
        size: side length, or (height, width) for non-square images.
        version: data version (`VERSIONS`). 1: the deciding parts are the only saturated colours. 2 (the default,
            `LATEST_VERSION`): the same image plus salient nuisance parts (`Sample.nuisance`); version 1 samples are
            reproduced bit for bit.
    """
    _check_domain(domain)
    _check_version(version)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    H, W = (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))
    if H < 16 or W < 16:
        raise ValueError(f"image size must be at least 16 px, got {H}x{W}")
    rng = np.random.default_rng([int(seed), _domain_seed(domain), int(index)])
    C = num_classes(domain)
    label = int(index) % C
    bits = class_variants(domain, label)
    draw = _bird if domain == "birds" else _car
    twin = copy.deepcopy(rng) if version >= 2 else None
    dl, kp, anchor = draw(rng, bits)
    if twin is not None:  # the same body with every deciding part in its other variant (draws do not depend on bits)
        other = [p for p, _, code in draw(twin, tuple(1 - b for b in bits))[0] if code >= _PART_BASE]

    # Pose: flip, rotation, then the largest scale that fits times a random factor, then a random position.
    flip = bool(rng.random() < 0.5)
    deg = float(rng.uniform(-15, 15) if domain == "birds" else rng.uniform(-6, 6))
    A = _rot(deg) @ np.diag([-1.0 if flip else 1.0, 1.0])
    pts = np.concatenate([p for p, _, _ in dl]) @ A.T
    lo, hi = pts.min(0), pts.max(0)
    margin = 2.0
    fit = min((W - 2 * margin) / (hi[0] - lo[0]), (H - 2 * margin) / (hi[1] - lo[1]))
    unit = fit * float(rng.uniform(0.8, 1.0))
    A = A * unit
    lo, hi = lo * unit, hi * unit
    t = np.array([rng.uniform(margin - lo[0], W - margin - hi[0]), rng.uniform(margin - lo[1], H - margin - hi[1])])

    anchor_px = anchor @ A.T + t
    bg = _bird_background if domain == "birds" else _car_background
    img = bg(rng, H, W, anchor_px, unit)
    lab = np.zeros((H, W), np.uint8)
    drawn: list[NuisancePart] = []
    if version == 1:
        for p, colour, code in dl:
            _fill(img, lab, p @ A.T + t, colour, code)
    else:
        drawn = _draw_with_nuisance(
            img, lab, dl, other, kp, A, t, anchor_px, unit, domain, [int(seed), int(index)], version
        )

    obj = (lab > 0) & (lab < _SCENE_BASE)
    x, y, bw, bh = cv2.boundingRect(obj.astype(np.uint8))
    bbox = (int(x), int(y), int(x + bw), int(y + bh))
    deciding = (lab >= _PART_BASE) & (lab < _NUISANCE_BASE)  # occluders below never overlap it, so it stays valid
    guard = cv2.dilate(deciding.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
    for _ in range(int(rng.integers(0, 3))):
        for _try in range(4):
            polys, colour = _occluder(rng, domain, H, W, unit)
            tmp = np.zeros((H, W), np.uint8)
            for p in polys:
                cv2.fillPoly(tmp, [np.rint(p * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
            if not (tmp.astype(bool) & guard).any():
                for p in polys:
                    _fill(img, lab, p, colour, _OCCLUDER)
                break

    # Photometric nuisance: gain, gradient, colour cast, blur, noise.
    ys, xs = _grid(H, W)
    ang = rng.uniform(0, 2 * np.pi)
    light = np.float32(rng.uniform(0.75, 1.2)) * (
        1 + np.float32(rng.uniform(-0.2, 0.2)) * (np.float32(np.cos(ang)) * xs + np.float32(np.sin(ang)) * ys)
    )
    cast = (1 + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
    out = img * (light[:, :, None] * cast)  # (H, W, 3) float32
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (3, 3), float(rng.uniform(0.3, 0.8)))
    sigma = float(rng.uniform(0, 6))
    offset = int(rng.integers(_NOISE_SLACK))
    if sigma > 0.5:
        out += _noise_bank(H * W * 3)[offset : offset + H * W * 3].reshape(H, W, 3) * np.float32(sigma)
    np.clip(out, 0, 255, out=out)
    image = out.astype(np.uint8)

    part_mask = cv2.dilate(deciding.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    nuisance_mask = None
    if version >= 2:
        drawn = [n for n in drawn if (lab == n.code).any()]  # an occluder may hide one entirely
        raw = (lab >= _NUISANCE_BASE) & (lab < _OCCLUDER)
        nuisance_mask = cv2.dilate(raw.view(np.uint8), np.ones((3, 3), np.uint8)) > 0

    # Keypoints: mirrored names when flipped (the near side is then the bird's right); hidden if occluded.
    names = part_names(domain)
    xy = (np.array([p for p, _ in kp.values()]) @ A.T + t).round(1).tolist()
    parts: dict[str, tuple[float, float, bool]] = {}
    for (name, (_, near)), (px, py) in zip(kp.items(), xy, strict=True):
        key = name
        if flip and name.startswith(("left ", "right ")):
            key = ("right " + name[5:]) if name.startswith("left ") else ("left " + name[6:])
        xi, yi = min(max(round(px), 0), W - 1), min(max(round(py), 0), H - 1)
        parts[key] = (px, py, bool(near and lab[yi, xi] != _OCCLUDER))
    parts = {n: parts[n] for n in names}
    return Sample(
        image=image,
        label=label,
        class_name=class_names(domain)[label],
        bbox=bbox,
        parts=parts,
        part_mask=part_mask,
        segmentation=lab,
        domain=domain,
        index=int(index),
        seed=int(seed),
        version=int(version),
        nuisance=tuple(drawn),
        nuisance_mask=nuisance_mask,
    )


def _draw_with_nuisance(img, lab, dl, other, kp, A, t, anchor_px, unit, domain, key, version) -> list[NuisancePart]:
    """Draw the object of display list `dl` (posed by A, t) with version-2 nuisance parts; returns those drawn.

    The object's pixels and draw order are those of version 1; the nuisance parts come from their own random stream
    (so a version-2 sample is its version-1 twin plus nuisance parts). Scene parts are drawn first (behind the
    object, never touching it); on-object parts last. A part is dropped if it comes within `gap` px of a deciding
    part in EITHER variant (`other`: the other variant's polygons), so whether it is drawn never depends on the class.
    """
    H, W = lab.shape
    rng = np.random.default_rng([key[0], _domain_seed(domain), key[1], version])
    plan = _plan_nuisance(rng, domain)
    posed = [(p @ A.T + t, colour, code) for p, colour, code in dl]
    pts = [np.rint(p * _ONE).astype(np.int32) for p, _, _ in posed]
    for p, (_, _, code) in zip(pts, posed, strict=True):  # the label map first: where the object and its parts are
        cv2.fillPoly(lab, [p], int(code), cv2.LINE_8, _SHIFT)
    gap = max(2, round(0.1 * unit))  # raw pixels this far from a deciding part stay free (the masks dilate by 1)
    deciding = _raster(H, W, [p @ A.T + t for p in other]) | ((lab >= _PART_BASE) & (lab < _NUISANCE_BASE))
    guard = cv2.dilate(deciding.view(np.uint8), np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)) > 0
    keep_out = guard | (cv2.dilate((lab > 0).view(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    drawn: list[NuisancePart] = []
    for j, sl, colour, shape, f, deg in plan:
        if sl.on_object:
            continue
        placed = _place_scene(rng, domain, sl, shape, sl.size * f * unit, deg, H, W, anchor_px, unit, keep_out)
        if placed is None:
            continue
        polys, stem, m = placed
        if stem is not None:
            stem_colour = _hsv(25, 0.45, 0.3) if domain == "birds" else _hsv(0, 0, 0.55)
            cv2.fillPoly(img, [np.rint(stem * _ONE).astype(np.int32)], stem_colour, cv2.LINE_AA, _SHIFT)
        code = _SCENE_BASE + j
        for p in polys:
            _fill(img, lab, p, _jitter(rng, PALETTE[colour]), code)
        keep_out = keep_out | m
        drawn.append(NuisancePart(sl.name, colour, shape, code, False))
    for p, (_, colour, _) in zip(pts, posed, strict=True):  # the object, over the scene
        cv2.fillPoly(img, [p], colour, cv2.LINE_AA, _SHIFT)
    for j, sl, colour, shape, f, deg in plan:
        if not sl.on_object:
            continue
        cx, cy, base = _slot_frame(domain, sl.name, kp)
        polys = [p @ A.T + t for p in _nuisance_shape(shape, cx, cy, sl.size * f, base + deg * 0.3)]
        if (_raster(H, W, polys) & guard).any():
            continue
        code = _NUISANCE_BASE + j
        rgb = _jitter(rng, PALETTE[colour])
        for p in polys:
            _fill(img, lab, p, rgb, code)
        drawn.append(NuisancePart(sl.name, colour, shape, code, True))
    return drawn


def make_batch(
    domain: str, indices, seed: int = 0, size: int | tuple[int, int] = 96, version: int = LATEST_VERSION
) -> tuple[np.ndarray, np.ndarray]:
    """Images (B, H, W, 3) uint8 and labels (B,) int64 for a batch of indices (for training loops)."""
    samples = [make_sample(domain, int(i), seed, size, version) for i in indices]
    return np.stack([s.image for s in samples]), np.array([s.label for s in samples], np.int64)
