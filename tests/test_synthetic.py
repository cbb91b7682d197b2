"""The generator: deterministic, valid ground truth, small parts, and no class signal outside the parts."""

from __future__ import annotations

import hashlib
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


# Data version 1, pinned: sha1 of the image bytes, of the part-mask bytes, and of the label map together with the
# box, keypoints and label, computed from the generator before version 2 existed (commit 98531aa). Images that were
# exported, tagged or trained on with version 1 must regenerate bit for bit.
V1_PINS = [
    ("birds", 0, 0, 96, "6cd4d6972bc7a46e4c1af2e4b8446fbc70e9b1a2", "fab8c58cabf3822cdc06328b63f361cb6dbc8427", "c9f5192ed5d9e482409ec9fd0faf53c6ceb0a494"),
    ("birds", 7, 0, 96, "b529f2baac229aaa5de247aa71881d6c61002862", "eb9dd8ee1ca5f227dc8b68dda6a038ce93625500", "c4f87a543b4147fc011bcaa3fb2ab6ad63b2e18a"),
    ("birds", 21, 5, 96, "f80c815595c124143a9952fd7e0a15a4da774d36", "4ef57f5bc73e2b352e403d68848e1076045d1b86", "cd200209ba563c7b74852a8d9689843098207d8e"),
    ("birds", 0, 0, (80, 120), "7f382fda11f3f9d15a3bc5eb4eed1e33644582ae", "6867f1d35644647d625b1f9feabd399004d27081", "0823cd7ba24b57c7c47757c449fd3f7c38ac5010"),
    ("birds", 7, 0, (80, 120), "f1362627a0260d9c38d134fa5c56b82283aec97c", "36cc3270315feeba6ba57598ac218cc202199514", "dd86ad5fd504385685e8bbf9dc4e0e6de8bc8785"),
    ("birds", 21, 5, (80, 120), "bdd8310940e2080577981fa56c6604d01f5777c9", "8e8298dda8b0c6cf61587195428c8199dc075235", "7f4291e37ba3d76e2ef4fdeaf5cd684514d9abfc"),
    ("cars", 0, 0, 96, "d979958f227fd1262c1968565ac32e7c9159683f", "35025f5f24d53c6c831d792d3d42aba80aa73fea", "acaded00d5f105a41f49ee24746039ef7e641a4e"),
    ("cars", 7, 0, 96, "bafa8f0d2e609a8601125fa03ae51a8d1fcba3c9", "cae0c993a562290fbfa074abba96e84312a54cdc", "eaad6dbbacee5aa11391e7bd0fbe38f61e1dac0c"),
    ("cars", 21, 5, 96, "a34398c421fcaaeb1f5fe04d2da1c5c8c9caa33b", "6d77f56cbff42fe8b2dcbe2e97ec5008c2083983", "af07ad3a474659bd52dad83c8ee890eb352a8ed3"),
    ("cars", 0, 0, (80, 120), "afe34aeab022ec41a36ef526dbf8ab874bcb3707", "e413ff5ea914b024423d657fe126e160fc9cf857", "855d04e75b468dab6acda0e3818703a84840294d"),
    ("cars", 7, 0, (80, 120), "8ef17c551bff972dc5795c2e64e5109cd67d8352", "225ed4c7ef106a635749674ac60d79e9e294d3f8", "b2394a5c936fa8094031b874d30dbc7539e37456"),
    ("cars", 21, 5, (80, 120), "b237a5dc67fdcb9b0ca6f426d2c0a48d0e7a2f3f", "f65b24acc9cfb8a57f9baaab9254ba0c8754e561", "e1300737e6da52e5cbaa4da0b4c536193cadee56"),
]  # fmt: skip


@pytest.mark.parametrize(("dom", "index", "seed", "size", "image_sha1", "mask_sha1", "truth_sha1"), V1_PINS)
def test_version_1_is_pinned(dom, index, seed, size, image_sha1, mask_sha1, truth_sha1):
    s = make_sample(dom, index, seed, size)
    assert hashlib.sha1(s.image.tobytes()).hexdigest() == image_sha1
    assert hashlib.sha1(s.part_mask.tobytes()).hexdigest() == mask_sha1
    truth = s.segmentation.tobytes() + repr((s.bbox, s.parts, s.label)).encode()
    assert hashlib.sha1(truth).hexdigest() == truth_sha1


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
