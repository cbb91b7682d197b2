"""The generator: deterministic, valid ground truth, small parts, and no class signal outside the parts.

Data version 1 is pinned bit for bit; version 2 (the default) adds salient nuisance parts whose colour, shape and
presence do not depend on the class, so that saliency alone no longer finds the deciding parts.
"""

from __future__ import annotations

import hashlib
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from fgviz.data.synthetic import (
    DOMAINS,
    LATEST_VERSION,
    PALETTE,
    VERSIONS,
    attributes,
    class_names,
    class_variants,
    deciding_parts,
    make_batch,
    make_sample,
    nuisance_parts,
    num_classes,
    part_names,
)

# The bound the generator is designed to: the deciding-part mask (dilated 1 px) covers at most this share of
# any image, and each deciding part at the old demo resolution (96 px) spans at least one 8-px patch; at the
# resolution the demo models are trained at from data version 2 on (192 px: 16-px patches, stride 12 or 16),
# every deciding part and every nuisance part spans at least 12 px.
MAX_PART_SHARE = 0.10
MIN_PART_EXTENT_PX = 8
DEMO_SIZE = 192
MIN_EXTENT_AT_DEMO_SIZE = 12


@pytest.fixture(scope="module", params=DOMAINS)
def domain(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def samples(domain):
    return [make_sample(domain, i, 3, 96) for i in range(160)]


@pytest.fixture(scope="module")
def demo_samples(domain):
    """Version 2 at the demo models' resolution."""
    return [make_sample(domain, i, 3, DEMO_SIZE) for i in range(100)]


def test_versions():
    assert LATEST_VERSION == 2 == max(VERSIONS)
    assert VERSIONS == (1, 2)
    s = make_sample("birds", 4, 0, 64)
    assert s.version == LATEST_VERSION  # the default
    assert make_sample("birds", 4, 0, 64, version=1).version == 1
    with pytest.raises(ValueError, match="data version"):
        make_sample("birds", 4, 0, 64, version=3)
    for domain in DOMAINS:
        assert nuisance_parts(domain, 1) == ()
        assert len(nuisance_parts(domain)) >= 5
        assert not set(nuisance_parts(domain)) & set(deciding_parts(domain))
        # the version changes the images, not the classes
        assert make_sample(domain, 5, 0, 64, 1).class_name == make_sample(domain, 5, 0, 64, 2).class_name
    images, labels = make_batch("cars", range(3), 2, 48, version=1)
    assert np.array_equal(images[1], make_sample("cars", 1, 2, 48, version=1).image)
    images2, labels2 = make_batch("cars", range(3), 2, 48)
    assert np.array_equal(images2[1], make_sample("cars", 1, 2, 48, version=2).image)
    assert labels.tolist() == labels2.tolist() == [0, 1, 2]


@pytest.mark.parametrize("version", VERSIONS)
def test_deterministic(domain, version):
    a, b = make_sample(domain, 17, 5, 96, version), make_sample(domain, 17, 5, 96, version)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.part_mask, b.part_mask)
    assert np.array_equal(a.nuisance_mask, b.nuisance_mask)
    assert np.array_equal(a.segmentation, b.segmentation)
    assert a.nuisance == b.nuisance
    assert a.parts == b.parts
    assert a.bbox == b.bbox
    assert a.label == b.label
    assert not np.array_equal(a.image, make_sample(domain, 17, 6, 96, version).image)  # the seed matters
    assert not np.array_equal(a.image, make_sample(domain, 33, 5, 96, version).image)  # same class, another image


def test_version_2_is_version_1_plus_nuisance_parts(domain):
    """Same object, pose, background, deciding parts and occluders; the pixels differ only at the nuisance parts
    (and the berries' stalks and the road signs' poles, which are in no mask: up to a few % of a 96 px image)."""
    for i in range(12):
        v1, v2 = make_sample(domain, i, 8, 96, 1), make_sample(domain, i, 8, 96, 2)
        assert v2.nuisance and not v1.nuisance
        assert not v1.nuisance_mask.any()
        assert v1.label == v2.label
        assert np.array_equal(v1.part_mask, v2.part_mask)
        assert v1.parts == v2.parts
        changed = (v1.image != v2.image).any(2)
        near = cv2.dilate(v2.nuisance_mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert changed[near].mean() > 0.5
        assert changed[~near].mean() < 0.04, (i, changed[~near].mean())


# Data version 1, pinned: sha1 of the image bytes, of the part-mask bytes, and of the label map together with the
# box, keypoints and label, computed from the generator before version 2 existed (commit 98531aa). Images that were
# exported, tagged or trained on with version 1 must regenerate bit for bit.
V1_PINS = [
    (
        "birds",
        0,
        0,
        96,
        "6cd4d6972bc7a46e4c1af2e4b8446fbc70e9b1a2",
        "fab8c58cabf3822cdc06328b63f361cb6dbc8427",
        "c9f5192ed5d9e482409ec9fd0faf53c6ceb0a494",
    ),
    (
        "birds",
        7,
        0,
        96,
        "b529f2baac229aaa5de247aa71881d6c61002862",
        "eb9dd8ee1ca5f227dc8b68dda6a038ce93625500",
        "c4f87a543b4147fc011bcaa3fb2ab6ad63b2e18a",
    ),
    (
        "birds",
        21,
        5,
        96,
        "f80c815595c124143a9952fd7e0a15a4da774d36",
        "4ef57f5bc73e2b352e403d68848e1076045d1b86",
        "cd200209ba563c7b74852a8d9689843098207d8e",
    ),
    (
        "birds",
        0,
        0,
        (80, 120),
        "7f382fda11f3f9d15a3bc5eb4eed1e33644582ae",
        "6867f1d35644647d625b1f9feabd399004d27081",
        "0823cd7ba24b57c7c47757c449fd3f7c38ac5010",
    ),
    (
        "birds",
        7,
        0,
        (80, 120),
        "f1362627a0260d9c38d134fa5c56b82283aec97c",
        "36cc3270315feeba6ba57598ac218cc202199514",
        "dd86ad5fd504385685e8bbf9dc4e0e6de8bc8785",
    ),
    (
        "birds",
        21,
        5,
        (80, 120),
        "bdd8310940e2080577981fa56c6604d01f5777c9",
        "8e8298dda8b0c6cf61587195428c8199dc075235",
        "7f4291e37ba3d76e2ef4fdeaf5cd684514d9abfc",
    ),
    (
        "cars",
        0,
        0,
        96,
        "d979958f227fd1262c1968565ac32e7c9159683f",
        "35025f5f24d53c6c831d792d3d42aba80aa73fea",
        "acaded00d5f105a41f49ee24746039ef7e641a4e",
    ),
    (
        "cars",
        7,
        0,
        96,
        "bafa8f0d2e609a8601125fa03ae51a8d1fcba3c9",
        "cae0c993a562290fbfa074abba96e84312a54cdc",
        "eaad6dbbacee5aa11391e7bd0fbe38f61e1dac0c",
    ),
    (
        "cars",
        21,
        5,
        96,
        "a34398c421fcaaeb1f5fe04d2da1c5c8c9caa33b",
        "6d77f56cbff42fe8b2dcbe2e97ec5008c2083983",
        "af07ad3a474659bd52dad83c8ee890eb352a8ed3",
    ),
    (
        "cars",
        0,
        0,
        (80, 120),
        "afe34aeab022ec41a36ef526dbf8ab874bcb3707",
        "e413ff5ea914b024423d657fe126e160fc9cf857",
        "855d04e75b468dab6acda0e3818703a84840294d",
    ),
    (
        "cars",
        7,
        0,
        (80, 120),
        "8ef17c551bff972dc5795c2e64e5109cd67d8352",
        "225ed4c7ef106a635749674ac60d79e9e294d3f8",
        "b2394a5c936fa8094031b874d30dbc7539e37456",
    ),
    (
        "cars",
        21,
        5,
        (80, 120),
        "b237a5dc67fdcb9b0ca6f426d2c0a48d0e7a2f3f",
        "f65b24acc9cfb8a57f9baaab9254ba0c8754e561",
        "e1300737e6da52e5cbaa4da0b4c536193cadee56",
    ),
]


@pytest.mark.parametrize(("dom", "index", "seed", "size", "image_sha1", "mask_sha1", "truth_sha1"), V1_PINS)
def test_version_1_is_pinned(dom, index, seed, size, image_sha1, mask_sha1, truth_sha1):
    s = make_sample(dom, index, seed, size, version=1)
    assert hashlib.sha1(s.image.tobytes()).hexdigest() == image_sha1
    assert hashlib.sha1(s.part_mask.tobytes()).hexdigest() == mask_sha1
    truth = s.segmentation.tobytes() + repr((s.bbox, s.parts, s.label)).encode()
    assert hashlib.sha1(truth).hexdigest() == truth_sha1


# Data version 2, pinned the same way, with the nuisance mask and the nuisance parts drawn added: sha1 of the image
# bytes, of the part-mask bytes, of the nuisance-mask bytes, and of the label map together with the box, keypoints,
# label and `Sample.nuisance`, computed from the generator before it was split into modules (commit f36fc5d), at the
# demo models' resolution too. Moving code between modules must not change a pixel.
V2_PINS = [
    (
        "birds",
        0,
        0,
        96,
        "def9745a2fe9770c707e46da7731204cc41e8a8e",
        "fab8c58cabf3822cdc06328b63f361cb6dbc8427",
        "fb346ea89888e6e585b3ecc5e6f9122f16cefea3",
        "3f3b02f8b19b1eac7d8bc99cb28a360fd66ef47d",
    ),
    (
        "birds",
        7,
        0,
        96,
        "e24d33792a7b91b3018c1f1cc88f3dead60ccfcb",
        "eb9dd8ee1ca5f227dc8b68dda6a038ce93625500",
        "925ac8306590bf1ca0ea6fe2daa938de6696f536",
        "1082e22a0c45b20a2b7c45876454933c0cbbddb7",
    ),
    (
        "birds",
        21,
        5,
        96,
        "b8e9d5ed6843d58a42c935834f9cd57d98bbe0d0",
        "4ef57f5bc73e2b352e403d68848e1076045d1b86",
        "561158674abd5ac0dd12cc392b3feb77f9d669c2",
        "c9dd3d277949ed4abcf0966d0c96165dd491a731",
    ),
    (
        "birds",
        0,
        0,
        (80, 120),
        "07220acbe125b24e8d9c98011bdae1af2b0da3e6",
        "6867f1d35644647d625b1f9feabd399004d27081",
        "bad7c828bc528d82fe80d6e305be9dfef660fb7d",
        "4244015463c0726e2ef8ed57d92e99ad04d1fa74",
    ),
    (
        "birds",
        7,
        0,
        (80, 120),
        "cdcf9ba09a4c32d73d7c6c4f7439d679e261a642",
        "36cc3270315feeba6ba57598ac218cc202199514",
        "264a8fb3e97d209d70e57b2a61f6d45d8738a499",
        "9d7fd87d4ce717be914029170aa1e6a574318887",
    ),
    (
        "birds",
        21,
        5,
        (80, 120),
        "e4c6a6caaf0dbb2f99a169d9fd06f3b6f0180277",
        "8e8298dda8b0c6cf61587195428c8199dc075235",
        "99e1e9edf034d60cb90fd5947ffe368470b9c24b",
        "11f204e87460b877cc99f76c8c4de2a92fc0721b",
    ),
    (
        "birds",
        0,
        0,
        192,
        "d5ee013020e3f18c7225a3a191f1d2f2b73f4b44",
        "9165aab631306f213ec2f50c437be2bb86b6dcb9",
        "f39d11df1f2e71026c143117e5ac6c5c25f7be96",
        "bf759164a762fe8bed4416c58fa4319e79b8eb85",
    ),
    (
        "birds",
        7,
        0,
        192,
        "99ca04b27c655587c1691df1ce8ee37bbb1aed8c",
        "b62ea010239d807638f377f07c8468fe9477d867",
        "1ddb274ff1dfab92edb2a19b425e38bdcd8813b4",
        "aad824602e3d6165f2de4d5c716c5a55dbe744b8",
    ),
    (
        "birds",
        21,
        5,
        192,
        "8b7428bd36dc3e691cd4d8deb7612337eb9d9cc4",
        "210a66e6b304980bd6c27e0c10edd2b6dec73281",
        "5c5b17d2745be3cbc0fe0be3694fa65b6a8e13f5",
        "37f014797d8e5df2be65ba7b5cedd596f882fbd8",
    ),
    (
        "cars",
        0,
        0,
        96,
        "97df0c58728c6a9fb8ef1766ec6eb6c454fd1447",
        "35025f5f24d53c6c831d792d3d42aba80aa73fea",
        "a5d84f3d2250471eacbf8e6eba3df1be740355cf",
        "7fc18c92ceef5199e6aca6bf5b273d11c9992435",
    ),
    (
        "cars",
        7,
        0,
        96,
        "3800738c33784328a7667713ddea6ce774736df7",
        "cae0c993a562290fbfa074abba96e84312a54cdc",
        "23d29ed54fbe36fff08e3c9fedf67894b6595843",
        "5efe04be1a2d4789e2bf46fecc682eb8459254fb",
    ),
    (
        "cars",
        21,
        5,
        96,
        "6969965c50427c97c8fb1b0ae1e083c85cd83656",
        "6d77f56cbff42fe8b2dcbe2e97ec5008c2083983",
        "d1dc0fff68cb9e3b3a06dc0c1c18e2f70e1f8669",
        "73d69ecf703ebad1767f8444889070cffd72ff29",
    ),
    (
        "cars",
        0,
        0,
        (80, 120),
        "a5088854d95539c1d2ce067cb893129516de929b",
        "e413ff5ea914b024423d657fe126e160fc9cf857",
        "389ad7a6beaff745ae54e2f074b4d13503b80f43",
        "a9df9e752c7355bc2b780110b2009388f249d4c2",
    ),
    (
        "cars",
        7,
        0,
        (80, 120),
        "1e964b6f77585739e6d3c84fc1b616cdfd5415b0",
        "225ed4c7ef106a635749674ac60d79e9e294d3f8",
        "fe4deb9f605e05fd37b7c29176ef5aebfb9fb269",
        "0798c29dcfd0ca272af1513909df6accb341842c",
    ),
    (
        "cars",
        21,
        5,
        (80, 120),
        "c4e4f7f1402a9e27245a1cb04b115d169055e77a",
        "f65b24acc9cfb8a57f9baaab9254ba0c8754e561",
        "6a22c2e3b80d04e4717790743f125404099d898f",
        "e29e3b441cffe59876665a6db03b2e1f1c245dbb",
    ),
    (
        "cars",
        0,
        0,
        192,
        "6a135ca28b8e177f5c1aa9d5cb03e563a98617c9",
        "578d530ff37b330b0551d5b5a6ed714a423105e0",
        "da7181160ebc48d05e74d757b360af2bd981a965",
        "29fb953f9fc588b6a1dc119fff0a9e8acfc970f7",
    ),
    (
        "cars",
        7,
        0,
        192,
        "16a96d31f6199c4adbe9ae76987321eaf4271101",
        "ce4df74687121b97c8f5a7d08a98fb8932a0ebd4",
        "ab2dbeda46246ca2511ee81ab16859b8fa9a66e6",
        "fcefde6fb50b45326a1d342abaccd38af431923c",
    ),
    (
        "cars",
        21,
        5,
        192,
        "da54e1c707744c498d453bb5541b44c5bb3a3a93",
        "fec86535467b8fb3a038bba07641ad449412f23b",
        "8416833e51fda44944ab324600ae5f5aa6f90fdf",
        "4005054a37dd0d28a33db070a3a317100be2660f",
    ),
]


@pytest.mark.parametrize(
    ("dom", "index", "seed", "size", "image_sha1", "mask_sha1", "nuisance_sha1", "truth_sha1"), V2_PINS
)
def test_version_2_is_pinned(dom, index, seed, size, image_sha1, mask_sha1, nuisance_sha1, truth_sha1):
    s = make_sample(dom, index, seed, size, version=2)
    assert hashlib.sha1(s.image.tobytes()).hexdigest() == image_sha1
    assert hashlib.sha1(s.part_mask.tobytes()).hexdigest() == mask_sha1
    assert hashlib.sha1(s.nuisance_mask.tobytes()).hexdigest() == nuisance_sha1
    truth = s.segmentation.tobytes() + repr((s.bbox, s.parts, s.label, s.nuisance)).encode()
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


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", [96, (72, 128), (150, 90), 224, 32])
def test_any_size(domain, size, version):
    s = make_sample(domain, 5, 0, size, version)
    H, W = (size, size) if isinstance(size, int) else size
    assert s.image.shape == (H, W, 3)
    assert s.image.dtype == np.uint8
    assert s.part_mask.shape == (H, W)
    assert s.part_mask.dtype == bool
    assert s.part_mask.any()
    assert s.nuisance_mask.shape == (H, W)
    assert s.nuisance_mask.dtype == bool
    assert not (s.nuisance_mask & s.part_mask).any()
    if min(H, W) >= 64:  # (a 32 px image may have no room for a nuisance part clear of the deciding parts)
        assert s.nuisance_mask.any() == (version >= 2)
    else:
        assert not (version == 1 and s.nuisance_mask.any())


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
        for name, m in s.nuisance_masks.items():  # nuisance parts never cover a deciding part
            assert m.any(), name
            assert not (m & ~s.nuisance_mask).any()
            assert not (m & s.part_mask).any()
    assert occluded > len(samples) // 4  # occluders do appear


def _extent(m: np.ndarray) -> int:
    ys, xs = np.nonzero(m)
    return int(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))


def test_part_masks_are_small_but_span_a_patch(samples):
    shares = np.array([s.part_mask.mean() for s in samples])
    assert shares.max() <= MAX_PART_SHARE, shares.max()
    assert shares.min() > 0.01
    for s in samples:
        for part, m in s.part_masks.items():
            assert _extent(m) >= MIN_PART_EXTENT_PX, (s.index, part, _extent(m))


def test_parts_span_a_patch_at_the_demo_size(demo_samples):
    """At 192 px every deciding part, and every nuisance part that no occluder or image edge cuts, spans at least
    12 px (a 16-px token at stride 12 or 16 sees it); the deciding-part mask stays under 10 % of the image."""
    shares = np.array([s.part_mask.mean() for s in demo_samples])
    assert shares.max() <= MAX_PART_SHARE, shares.max()
    checked = 0
    for s in demo_samples:
        for part, m in s.part_masks.items():
            assert _extent(m) >= MIN_EXTENT_AT_DEMO_SIZE, (s.index, part, _extent(m))
        cut = cv2.dilate((s.segmentation == 255).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        cut[:2], cut[-2:], cut[:, :2], cut[:, -2:] = True, True, True, True
        for name, m in s.nuisance_masks.items():
            if not (m & cut).any():
                assert _extent(m) >= MIN_EXTENT_AT_DEMO_SIZE, (s.index, name, _extent(m))
                checked += 1
    assert checked > 3 * len(demo_samples)


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


@pytest.mark.parametrize(("version", "size"), [(1, 64), (2, 96)])
def test_colour_outside_the_parts_does_not_tell_the_class(domain, version, size):
    """A colour-histogram classifier on the pixels outside the part mask stays near chance (1/16), while the same
    classifier on the part pixels alone does well (the test has the power to see a signal). In version 2 the
    outside holds the nuisance parts, in the same palette colours as the deciding parts."""
    C = num_classes(domain)
    train = [make_sample(domain, i, 10, size, version) for i in range(480)]
    test = [make_sample(domain, i, 11, size, version) for i in range(320)]
    y_train, y_test = np.array([s.label for s in train]), np.array([s.label for s in test])
    outside = _softmax_regression(_histograms(train, False), y_train, C)
    acc_out = float((outside(_histograms(test, False)) == y_test).mean())
    inside = _softmax_regression(_histograms(train, True), y_train, C)
    acc_in = float((inside(_histograms(test, True)) == y_test).mean())
    assert acc_out < 2.0 / C, acc_out  # chance is 1/C = 0.0625
    assert acc_in > 0.8, acc_in


@pytest.mark.parametrize("version", VERSIONS)
def test_part_colours_are_reserved(domain, version):
    """Pixels far from the deciding parts (and, in version 2, from the nuisance parts) rarely come close to a part
    colour: the background clutter never imitates the parts; only the nuisance parts deliberately do."""
    colours = {v.colour for a in attributes(domain) for v in a.variants}
    near = 0
    total = 0
    for i in range(60):
        s = make_sample(domain, i, 3, 96, version)
        far = cv2.dilate((s.part_mask | s.nuisance_mask).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        px = s.image[far].astype(int)
        hsv = cv2.cvtColor(s.image, cv2.COLOR_RGB2HSV)[far].astype(int)
        for c in colours:
            c_hsv = cv2.cvtColor(np.uint8([[c]]), cv2.COLOR_RGB2HSV)[0, 0].astype(int)
            dh = np.abs(hsv[:, 0] - c_hsv[0])
            dh = np.minimum(dh, 180 - dh)
            near += int(((dh <= 6) & (hsv[:, 1] >= 166) & (hsv[:, 2] >= 115)).sum())  # S >= .65, V >= .45
        total += len(px)
    assert near / total < 0.002, near / total


# ---------------------------------------------------------------------------------------------------------------
# Version 2: nuisance parts as salient as the deciding parts, which say nothing about the class.


def _hsv(s) -> np.ndarray:
    return cv2.cvtColor(s.image, cv2.COLOR_RGB2HSV).astype(np.float32) / (180.0, 255.0, 255.0)


def _core(m: np.ndarray) -> np.ndarray:
    """The mask without its 1-px dilation ring and anti-aliased edge (the pure part colour)."""
    return cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def test_nuisance_parts_are_salient_and_comparable(demo_samples, domain):
    """Nuisance parts are drawn in the palette colours (saturated, bright, hue of a palette colour), several per
    image, and together cover an area comparable to the deciding parts'."""
    palette_hues = np.array(
        [cv2.cvtColor(np.uint8([[c]]), cv2.COLOR_RGB2HSV)[0, 0, 0] / 180.0 for c in PALETTE.values()]
    )
    sat = {"part": [], "nuisance": []}
    area_part, area_nuisance, counts = [], [], []
    colours = set()
    for s in demo_samples:
        hsv = _hsv(s)
        for key, m in (("part", _core(s.part_mask)), ("nuisance", _core(s.nuisance_mask))):
            sat[key].extend(hsv[m, 1].tolist())
        core = _core(s.nuisance_mask)
        if core.any():
            dh = np.abs(hsv[core, 0][:, None] - palette_hues[None, :])
            dh = np.minimum(dh, 1 - dh).min(1)  # hue distance to the nearest palette colour
            assert np.median(dh) < 0.04, s.index
        area_part.append(s.part_mask.mean())
        area_nuisance.append(s.nuisance_mask.mean())
        counts.append(len(s.nuisance))
        colours |= {n.colour for n in s.nuisance}
    assert len(colours) >= 6 and colours <= set(PALETTE)  # (nearly) every palette colour is worn by nuisance parts
    assert np.median(sat["nuisance"]) > 0.7
    assert np.median(sat["nuisance"]) > 0.9 * np.median(sat["part"])
    ratio = np.mean(area_nuisance) / np.mean(area_part)
    assert 0.8 < ratio < 1.8, ratio
    assert np.mean(counts) >= 4 and min(counts) >= 1
    assert max(area_nuisance) < 0.15


@pytest.mark.parametrize("size", [64, 96, (80, 120), 192])
def test_nuisance_and_part_masks_are_disjoint_with_a_gap(domain, size):
    """The (1-px dilated) deciding-part and nuisance masks never meet; from 128 px on (where the generator keeps
    nuisance parts 0.1 body units, at least 3 px, away) at least one pixel lies between them."""
    ring = np.ones((3, 3), np.uint8)
    for i in range(40):
        s = make_sample(domain, i, 12, size)
        assert not (s.part_mask & s.nuisance_mask).any(), i
        if min(s.size) >= 128:
            assert not (cv2.dilate(s.part_mask.astype(np.uint8), ring).astype(bool) & s.nuisance_mask).any(), i
        assert len({n.code for n in s.nuisance}) == len(s.nuisance)
        assert set(s.nuisance_masks) == {n.name for n in s.nuisance} <= set(nuisance_parts(domain))


def _nuisance_features(samples, domain) -> np.ndarray:
    """One-hot nuisance attributes: per slot, present / colour / shape."""
    slots = nuisance_parts(domain)
    shapes = sorted({n.shape for s in samples for n in s.nuisance})
    colours = list(PALETTE)
    x = np.zeros((len(samples), len(slots) * (1 + len(colours) + len(shapes))))
    for r, s in enumerate(samples):
        for n in s.nuisance:
            base = slots.index(n.name) * (1 + len(colours) + len(shapes))
            x[r, base] = 1
            x[r, base + 1 + colours.index(n.colour)] = 1
            x[r, base + 1 + len(colours) + shapes.index(n.shape)] = 1
    return x


def test_nuisance_attributes_do_not_tell_the_class(domain):
    """Which nuisance parts appear, in which colour and shape, is independent of the label: a classifier on those
    attributes stays at chance (with the deciding attributes added it is perfect: the classifier has the power),
    and a chi-square test finds no dependence between the label and each slot's presence."""
    from scipy.stats import chi2_contingency

    C = num_classes(domain)
    train = [make_sample(domain, i, 20, 96) for i in range(640)]
    test = [make_sample(domain, i, 21, 96) for i in range(480)]
    y_train, y_test = np.array([s.label for s in train]), np.array([s.label for s in test])
    x_train, x_test = _nuisance_features(train, domain), _nuisance_features(test, domain)
    clf = _softmax_regression(x_train, y_train, C)
    acc = float((clf(x_test) == y_test).mean())
    assert acc < 2.0 / C, acc
    bits_train = np.array([class_variants(domain, y) for y in y_train], float)
    bits_test = np.array([class_variants(domain, y) for y in y_test], float)
    clf = _softmax_regression(np.hstack([x_train, bits_train]), y_train, C)
    assert float((clf(np.hstack([x_test, bits_test])) == y_test).mean()) > 0.9
    samples = train + test
    labels = np.concatenate([y_train, y_test])
    slots = nuisance_parts(domain)
    for name in slots:
        present = np.array([any(n.name == name for n in s.nuisance) for s in samples])
        table = np.array([[np.sum((labels == c) & (present == p)) for p in (False, True)] for c in range(C)])
        if table.min(0).min() == 0 and table.sum(0).min() > 0.5 * len(samples):
            continue  # (almost) always drawn
        p = chi2_contingency(table)[1]
        assert p > 1e-3 / len(slots), (name, p)


def _chroma(image: np.ndarray) -> np.ndarray:
    """A label-free saliency baseline: max - min over RGB (HSV saturation times value)."""
    im = image.astype(np.float32)
    return im.max(2) - im.min(2)


def _saliency_figures(domain: str, version: int, n: int = 80, patch: int = 16):
    """Mean share of the chroma map's mass on the deciding / nuisance masks, and how often its argmax 16-px token
    touches either (at 192 px)."""
    mass_part, mass_nuisance, arg_part, arg_nuisance, area_part = [], [], [], [], []
    for i in range(n):
        s = make_sample(domain, i, 31, DEMO_SIZE, version)
        sal = _chroma(s.image)
        mass_part.append(sal[s.part_mask].sum() / sal.sum())
        mass_nuisance.append(sal[s.nuisance_mask].sum() / sal.sum())
        g = DEMO_SIZE // patch
        tokens = sal.reshape(g, patch, g, patch).mean((1, 3))
        r, c = np.unravel_index(tokens.argmax(), tokens.shape)
        window = (slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch))
        arg_part.append(s.part_mask[window].any())
        arg_nuisance.append(s.nuisance_mask[window].any())
        area_part.append(s.part_mask.mean())
    return {
        k: float(np.mean(v))
        for k, v in locals().items()
        if k in ("mass_part", "mass_nuisance", "arg_part", "arg_nuisance", "area_part")
    }


def test_saliency_alone_no_longer_finds_the_deciding_parts(domain):
    """Version 1: a colourfulness map puts several times its fair share of mass on the deciding parts and its argmax
    token on them nearly always (what made a random ViT's part selection look good). Version 2: it puts no more
    mass, and its argmax no more often, on the deciding parts than on the nuisance parts."""
    v1 = _saliency_figures(domain, 1)
    assert v1["mass_part"] > 3 * v1["area_part"]
    assert v1["arg_part"] > 0.9
    v2 = _saliency_figures(domain, 2)
    assert v2["mass_part"] <= v2["mass_nuisance"], v2
    assert v2["arg_part"] <= v2["arg_nuisance"], v2


def test_saliency_report_matches_a_direct_computation():
    """`fgviz.data.saliency` (the docs' table) against the inline chroma computation above."""
    from fgviz.data import saliency

    r = saliency.report("birds", 2, n=10, size=DEMO_SIZE, seed=31)
    direct = _saliency_figures("birds", 2, n=10)
    assert r["chroma/mass_part"] == pytest.approx(direct["mass_part"], abs=1e-4)
    assert r["chroma/mass_nuisance"] == pytest.approx(direct["mass_nuisance"], abs=1e-4)
    assert r["chroma/argmax_part"] == pytest.approx(direct["arg_part"])
    assert r["chroma/argmax_nuisance"] == pytest.approx(direct["arg_nuisance"])
    assert 0 <= r["frequency-tuned/mass_part"] <= 1


def test_synthetic_dataset_and_export_take_the_version(tmp_path):
    from fgviz.data.datasets import SyntheticDataset
    from fgviz.data.export import export

    for version in VERSIONS:
        ds = SyntheticDataset("cars", 4, seed=1, size=48, version=version)
        image, target = ds[2]
        s = make_sample("cars", 2, 1, 48, version)
        assert np.array_equal(np.asarray(image), s.image)
        assert np.array_equal(target["nuisance_mask"], s.nuisance_mask)
        out = export(
            "birds", 2, tmp_path / f"v{version}", size=48, seed=1, layout="folder", ext="png", version=version
        )
        files = sorted(out.glob("train/*/*.png"))
        assert np.array_equal(
            np.asarray(Image.open(files[0]).convert("RGB")), make_sample("birds", 0, 1, 48, version).image
        )


def test_generation_is_fast():
    for domain in DOMAINS:
        make_sample(domain, 0)
        t = time.process_time()
        for i in range(100):
            make_sample(domain, i, 1, 96)
        rate = 100 / max(time.process_time() - t, 1e-9)
        assert rate > 150, f"{domain}: {rate:.0f} samples/s"  # ~500/s on one core when the machine is idle
