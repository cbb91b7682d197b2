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

Modules: this one holds the public API and the sample pipeline (pose, compositing, occluders, lighting, ground
truth); `synthetic_spec` the domains, versions, label-map codes, palette, attributes and class names (re-exported
here); `synthetic_draw` the drawing primitives and textures; `synthetic_objects` the bird and car painters, their
backgrounds and the occluders; `synthetic_nuisance` the version-2 nuisance slots, shapes and planning.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import cv2
import numpy as np

from fgviz.data.synthetic_draw import (
    _NOISE_SLACK,
    _ONE,
    _SHIFT,
    _fill,
    _grid,
    _hsv,
    _jitter,
    _noise_bank,
    _raster,
    _rot,
)
from fgviz.data.synthetic_nuisance import _NUISANCE_SLOTS, _nuisance_shape, _place_scene, _plan_nuisance, _slot_frame
from fgviz.data.synthetic_objects import _bird, _bird_background, _car, _car_background, _occluder
from fgviz.data.synthetic_spec import (
    _NUISANCE_BASE,
    _OCCLUDER,
    _PART_BASE,
    _SCENE_BASE,
    DOMAINS,
    LATEST_VERSION,
    PALETTE,
    VERSIONS,
    Attribute,
    Variant,
    _check_domain,
    _check_version,
    attributes,
    class_description,
    class_names,
    class_variants,
    deciding_parts,
    num_classes,
    part_names,
)

__all__ = [
    "DOMAINS",
    "LATEST_VERSION",
    "PALETTE",
    "VERSIONS",
    "Attribute",
    "NuisancePart",
    "Sample",
    "Variant",
    "attributes",
    "class_description",
    "class_names",
    "class_variants",
    "deciding_parts",
    "make_batch",
    "make_sample",
    "nuisance_parts",
    "num_classes",
    "part_names",
]


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


def nuisance_parts(domain: str, version: int = LATEST_VERSION) -> tuple[str, ...]:
    """Names of the salient non-deciding parts a sample of `version` may show (none in version 1)."""
    _check_domain(domain)
    _check_version(version)
    return () if version < 2 else tuple(s.name for s in _NUISANCE_SLOTS[domain])


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
