"""What the synthetic data is made of: domains, data versions, label-map codes, the reserved part palette, the
deciding attributes with their two variants, keypoint names, and the class names built from the attributes.

Tables and small pure functions only, nothing is drawn here: the painters (`synthetic_objects`) and the sample
pipeline (`fgviz.data.synthetic`, which re-exports the public names) import them from this module.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

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


def _check_version(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unknown data version {version!r}; available: {VERSIONS}")


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
