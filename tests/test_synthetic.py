"""The generator: deterministic, valid ground truth, small parts, and no class signal outside the parts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fgviz.data.synthetic import (
    DOMAINS,
    attributes,
    class_names,
    class_variants,
    deciding_parts,
    make_sample,
    num_classes,
    part_names,
)

# The bound the generator is designed to: the deciding-part mask (dilated 1 px) covers at most this share of
# any image, and each deciding part at the demo resolution (96 px) spans at least one 8-px patch.
MAX_PART_SHARE = 0.10
MIN_PART_EXTENT_PX = 8


@pytest.fixture(scope="module", params=DOMAINS)
def domain(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def samples(domain):
    return [make_sample(domain, i, 3, 96) for i in range(160)]


def test_deterministic(domain):
    a, b = make_sample(domain, 17, 5, 96), make_sample(domain, 17, 5, 96)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.part_mask, b.part_mask)
    assert a.parts == b.parts
    assert a.bbox == b.bbox
    assert a.label == b.label
    assert not np.array_equal(a.image, make_sample(domain, 17, 6, 96).image)  # the seed matters
    assert not np.array_equal(a.image, make_sample(domain, 33, 5, 96).image)  # same class, another image


def test_classes(domain):
    C = num_classes(domain)
    assert C >= 16
    names = class_names(domain)
    assert len(set(names)) == C
    assert [make_sample(domain, i, 0, 64).label for i in range(C + 2)] == [*range(C), 0, 1]
    # fine-grained: some classes differ in exactly one deciding part
    bits = np.array([class_variants(domain, c) for c in range(C)])
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    assert ((hamming == 1).sum(1) >= 1).all()
    assert len(deciding_parts(domain)) == bits.shape[1]
    assert all(a.keypoint in part_names(domain) for a in attributes(domain))


@pytest.mark.parametrize("size", [96, (72, 128), (150, 90), 224, 32])
def test_any_size(domain, size):
    s = make_sample(domain, 5, 0, size)
    H, W = (size, size) if isinstance(size, int) else size
    assert s.image.shape == (H, W, 3)
    assert s.image.dtype == np.uint8
    assert s.part_mask.shape == (H, W)
    assert s.part_mask.dtype == bool
    assert s.part_mask.any()


def test_keypoints_inside_image_and_box(domain):
    for size in (96, (80, 120), (120, 80)):
        for i in range(48):
            s = make_sample(domain, i, 1, size)
            H, W = s.size
            x0, y0, x1, y1 = s.bbox
            assert 0 <= x0 < x1 <= W
            assert 0 <= y0 < y1 <= H
            assert list(s.parts) == list(part_names(domain))
            for name, (x, y, _) in s.parts.items():
                inside_image = 0 <= x < W and 0 <= y < H
                inside_box = x0 <= x < x1 and y0 <= y < y1
                assert inside_image, (i, name, (x, y))
                assert inside_box, (i, name, (x, y), s.bbox)


def test_deciding_parts_visible_and_never_occluded(samples, domain):
    keypoints = [a.keypoint for a in attributes(domain)]
    occluded = 0
    for s in samples:
        for k in keypoints:  # the near side is "left" or, for a bird facing right, "right"
            assert s.parts[k][2] or s.parts[k.replace("left ", "right ")][2], (s.index, k)
        occ = s.segmentation == 255
        occluded += int(occ.any())
        assert not (occ & s.part_mask).any()
        for part, m in s.part_masks.items():
            assert m.any(), part
            assert not (m & ~s.part_mask).any()
    assert occluded > len(samples) // 4  # occluders do appear


def test_part_masks_are_small_but_span_a_patch(samples):
    shares = np.array([s.part_mask.mean() for s in samples])
    assert shares.max() <= MAX_PART_SHARE, shares.max()
    assert shares.min() > 0.01
    for s in samples:
        for part, m in s.part_masks.items():
            ys, xs = np.nonzero(m)
            extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert extent >= MIN_PART_EXTENT_PX, (s.index, part, extent)


def test_nuisance_varies(samples):
    """Pose, position and size change from image to image (a model cannot memorise a location)."""
    boxes = np.array([s.bbox for s in samples], float)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    widths = boxes[:, 2] - boxes[:, 0]
    assert centres.std(0).min() > 2.0
    assert widths.std() > 2.0
    means = np.array([s.image.reshape(-1, 3).mean(0) for s in samples])
    assert means.std(0).min() > 8.0  # backgrounds, bodies and lighting vary


# ---------------------------------------------------------------------------------------------------------------
# Nothing but the deciding parts tells the class.


def _histograms(samples, inside: bool, bins: int = 4) -> np.ndarray:
    """Normalised joint RGB histograms (bins^3) of the pixels inside or outside the part mask."""
    feats = []
    for s in samples:
        px = s.image[s.part_mask if inside else ~s.part_mask] // (256 // bins)  # (n, 3)
        code = (px[:, 0].astype(int) * bins + px[:, 1]) * bins + px[:, 2]
        feats.append(np.bincount(code, minlength=bins**3) / max(len(code), 1))
    return np.sqrt(np.array(feats))  # Hellinger map: a linear model on it is a fair histogram classifier


def _softmax_regression(x: np.ndarray, y: np.ndarray, C: int, steps: int = 300, l2: float = 1e-3):
    """Multinomial logistic regression by full-batch gradient descent (features standardised)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = np.zeros((z.shape[1], C))
    b = np.zeros(C)
    onehot = np.eye(C)[y]
    for _ in range(steps):
        logits = z @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(z)
        w -= 0.5 * (z.T @ g + l2 * w)
        b -= 0.5 * g.sum(0)
    return lambda q: (((q - mu) / sd) @ w + b).argmax(1)


def test_colour_outside_the_parts_does_not_tell_the_class(domain):
    """A colour-histogram classifier on the pixels outside the part mask stays near chance (1/16), while the same
    classifier on the part pixels alone does well (the test has the power to see a signal)."""
    C = num_classes(domain)
    train = [make_sample(domain, i, 10, 64) for i in range(480)]
    test = [make_sample(domain, i, 11, 64) for i in range(320)]
    y_train, y_test = np.array([s.label for s in train]), np.array([s.label for s in test])
    outside = _softmax_regression(_histograms(train, False), y_train, C)
    acc_out = float((outside(_histograms(test, False)) == y_test).mean())
    inside = _softmax_regression(_histograms(train, True), y_train, C)
    acc_in = float((inside(_histograms(test, True)) == y_test).mean())
    assert acc_out < 2.0 / C, acc_out  # chance is 1/C = 0.0625
    assert acc_in > 0.8, acc_in


def test_part_colours_are_reserved(samples, domain):
    """Pixels far from the parts rarely come close to a part colour (clutter must not imitate the parts)."""
    import cv2

    colours = {v.colour for a in attributes(domain) for v in a.variants}
    near = 0
    total = 0
    for s in samples[:60]:
        far = cv2.dilate(s.part_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        px = s.image[far].astype(int)
        hsv = cv2.cvtColor(s.image, cv2.COLOR_RGB2HSV)[far].astype(int)
        for c in colours:
            c_hsv = cv2.cvtColor(np.uint8([[c]]), cv2.COLOR_RGB2HSV)[0, 0].astype(int)
            dh = np.abs(hsv[:, 0] - c_hsv[0])
            dh = np.minimum(dh, 180 - dh)
            near += int(((dh <= 6) & (hsv[:, 1] >= 166) & (hsv[:, 2] >= 115)).sum())  # S >= .65, V >= .45
        total += len(px)
    assert near / total < 0.002, near / total


def test_generation_is_fast():
    for domain in DOMAINS:
        make_sample(domain, 0)
        t = time.process_time()
        for i in range(100):
            make_sample(domain, i, 1, 96)
        rate = 100 / max(time.process_time() - t, 1e-9)
        assert rate > 150, f"{domain}: {rate:.0f} samples/s"  # ~500/s on one core when the machine is idle
