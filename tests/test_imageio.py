"""The upload decoder (`fgviz.core.imageio.decode_image`): a corpus of good, odd and bad files, each generated here and
each with its exact outcome, plus a hypothesis fuzz test on mutated image bytes.

Every refusal is an `ImageError` whose whole message is asserted: it is what a user reads in the app.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fgviz.core import imageio
from fgviz.core.imageio import (
    MAX_ASPECT,
    MAX_BYTES,
    MAX_PIXELS,
    MAX_SIDE,
    MIN_SIDE,
    SUPPORTED,
    ImageError,
    decode_image,
)

FULL = os.environ.get("FGVIZ_FULL") == "1"  # `pytest --full` (tests/conftest.py) or FGVIZ_FULL=1
FUZZ_EXAMPLES = 20_000 if FULL else 1000
RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (48, 64, 3), np.uint8)  # (H, W, 3): a 64x48 noise image


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_raw(width: int, height: int, *, depth: int = 8, color: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG written byte by byte: any header (a bomb declares a size it does not hold) and 16-bit RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows or b"\0" * 16))
            + chunk(b"IEND", b""))


def gif_raw(screen: tuple[int, int], frame: tuple[int, int]) -> bytes:
    """A GIF whose first frame is `frame` px on a `screen` px logical screen (Pillow grows the image to fit)."""
    head = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    desc = b"," + struct.pack("<HHHHB", 0, 0, *frame, 0)
    return head + desc + b"\x02\x02\x4c\x01\x00;"


def error(data) -> str:
    with pytest.raises(ImageError) as e:
        decode_image(data)
    return str(e.value)


# --------------------------------------------------------------------------------------------------------------------
# Accepted, with the exact pixels


def test_rgb_png_and_bmp_are_lossless() -> None:
    for fmt in ("PNG", "BMP"):
        out = decode_image(encode(Image.fromarray(PIXELS), fmt))
        assert out.mode == "RGB"
        assert np.array_equal(np.asarray(out), PIXELS), fmt


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_to_the_source(fmt) -> None:
    smooth = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 48, 0).repeat(3, 2)
    out = np.asarray(decode_image(encode(Image.fromarray(smooth), fmt, quality=95)), np.int16)
    assert out.shape == (48, 64, 3)
    assert np.abs(out - smooth).max() <= 6


def test_lossless_webp() -> None:
    assert np.array_equal(np.asarray(decode_image(encode(Image.fromarray(PIXELS), "WEBP", lossless=True))), PIXELS)


def test_grayscale_and_one_bit() -> None:
    gray = RNG.integers(0, 256, (20, 32), np.uint8)
    out = np.asarray(decode_image(encode(Image.fromarray(gray), "PNG")))
    assert out.shape == (20, 32, 3)
    assert all(np.array_equal(out[:, :, c], gray) for c in range(3))
    bits = Image.fromarray(gray > 127).convert("1")
    assert np.array_equal(np.asarray(decode_image(encode(bits, "PNG")))[:, :, 0], np.where(gray > 127, 255, 0))


def test_16_bit_grayscale_png_is_scaled_not_clipped() -> None:
    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    out = np.asarray(decode_image(encode(Image.fromarray(ramp), "PNG")))[:, :, 0]
    assert np.array_equal(out, np.round(ramp / 257.0).astype(np.uint8))
    assert (out.min(), out.max()) == (0, 255)


def test_16_bit_rgb_png_keeps_the_high_bytes() -> None:
    rgb16 = RNG.integers(0, 65536, (16, 16, 3), np.uint16)
    rows = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(16))
    out = np.asarray(decode_image(png_raw(16, 16, depth=16, color=2, rows=rows)))
    assert np.array_equal(out, (rgb16 >> 8).astype(np.uint8))


def test_cmyk_jpeg_becomes_rgb() -> None:
    out = np.asarray(decode_image(encode(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG", quality=95)))
    assert out.shape == (24, 32, 3)
    r, g, b = out.reshape(-1, 3).mean(0)
    assert r > 245
    assert g < 10
    assert b < 10


def test_palette_png_with_and_without_transparency() -> None:
    idx = RNG.integers(0, 3, (16, 24), np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([10, 20, 30, 200, 0, 0, 0, 0, 255] + [0] * 759)
    colors = np.array([[10, 20, 30], [200, 0, 0], [0, 0, 255]], np.uint8)
    assert np.array_equal(np.asarray(decode_image(encode(pal, "PNG"))), colors[idx])
    colors[0] = 255  # index 0 transparent: white, not black
    assert np.array_equal(np.asarray(decode_image(encode(pal, "PNG", transparency=0))), colors[idx])


def test_rgba_and_la_are_composited_on_white() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (255, 0, 0, 0)  # transparent
    rgba[:, 8:12] = (255, 0, 0, 255)  # opaque red
    rgba[:, 12:] = (0, 0, 0, 128)  # half-transparent black
    out = np.asarray(decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 8].tolist() == [255, 0, 0]
    assert out[0, 12].tolist() == [127, 127, 127]
    la = Image.fromarray(np.dstack([np.full((16, 16), 40, np.uint8), np.zeros((16, 16), np.uint8)]), "LA")
    assert np.asarray(decode_image(encode(la, "PNG")))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("orientation", "corner"), [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1)), (8, (-1, 0))])
def test_exif_orientation_is_honoured(orientation, corner) -> None:
    """A 40x24 photo whose stored top-left corner is red; the decoder returns it upright, as the camera meant it."""
    stored = np.full((24, 40, 3), 255, np.uint8)
    stored[:8, :8] = (255, 0, 0)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    out = np.asarray(decode_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif)))
    assert out.shape == ((24, 40, 3) if orientation in (1, 3) else (40, 24, 3))
    green = {(cy, cx): out[2 if cy == 0 else -3, 2 if cx == 0 else -3, 1] for cy in (0, -1) for cx in (0, -1)}
    assert [c for c, g in green.items() if g < 40] == [corner], green  # only that corner is red


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_keeps_the_image() -> None:
    data = bytearray(encode(Image.fromarray(PIXELS), "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff"))
    assert decode_image(bytes(data)).size == (64, 48)


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animations_give_their_first_frame(fmt) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0,
                  **({"lossless": True} if fmt == "WEBP" else {}))
    assert np.asarray(decode_image(data))[16, 16].tolist() == [255, 0, 0]


def test_limits_that_pass_exactly() -> None:
    assert decode_image(np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8)).size == (MIN_SIDE, MIN_SIDE)
    side = int(MIN_SIDE * MAX_ASPECT)
    assert decode_image(encode(Image.new("RGB", (side, MIN_SIDE)), "PNG")).size == (side, MIN_SIDE)
    assert decode_image(encode(Image.new("RGB", (MIN_SIDE, side)), "PNG")).size == (MIN_SIDE, side)


def test_large_images_are_downscaled_once() -> None:
    out = decode_image(encode(Image.new("RGB", (3000, 1500), (0, 90, 0)), "PNG"))
    assert out.size == (MAX_SIDE, MAX_SIDE // 2)
    assert np.asarray(out)[100, 100].tolist() == [0, 90, 0]
    # a big JPEG (a phone photo) is decoded at a reduced DCT scale first, then resized to the same size
    pano = decode_image(encode(Image.new("RGB", (5000, 1000), (200, 30, 30)), "JPEG", quality=90))
    assert pano.size == (MAX_SIDE, round(1000 * MAX_SIDE / 5000))
    assert np.abs(np.asarray(pano, np.int16)[200, 1000] - (200, 30, 30)).max() <= 4
    assert decode_image(np.zeros((3000, 1500, 3), np.uint8)).size == (1024, 2048)
    # alpha and 16 bits are downscaled before conversion (less memory), with the same result as converting first
    rgba = np.zeros((1000, 2100, 4), np.uint8)
    rgba[:, 1050:] = (0, 0, 200, 255)
    out = np.asarray(decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert out.shape == (975, 2048, 3)
    assert out[500, 100].tolist() == [255, 255, 255]
    assert out[500, 1900].tolist() == [0, 0, 200]
    g16 = np.full((1000, 2100), 40000, np.uint16)
    assert np.asarray(decode_image(encode(Image.fromarray(g16), "PNG")))[500, 1000].tolist() == [156] * 3
    assert decode_image(Image.new("RGB", (40, 30)), max_side=None).size == (40, 30)


def test_inputs_other_than_bytes() -> None:
    data = encode(Image.fromarray(PIXELS), "PNG")
    assert np.array_equal(np.asarray(decode_image(io.BytesIO(data))), PIXELS)
    src = Image.fromarray(PIXELS)
    out = decode_image(src)
    assert out is not src
    assert np.array_equal(np.asarray(out), PIXELS)
    assert np.array_equal(np.asarray(decode_image(PIXELS.astype(np.float32) / 255)), PIXELS)


def test_synthetic_tag_survives_decoding(tmp_path) -> None:
    tag = imageio.synthetic_tag("birds", 3, 0, 64, 2)
    assert json.loads(tag)["version"] == 2  # the generator's default data version
    for suffix in (".png", ".jpg"):
        path = imageio.save_tagged(np.zeros((64, 64, 3), np.uint8), tmp_path / f"s{suffix}", tag)
        assert imageio.synthetic_params(decode_image(path)) == {"domain": "birds", "index": 3, "seed": 0,
                                                               "size": (64, 64), "version": 2}
    tag = imageio.synthetic_tag("cars", 5, 1, (48, 64), version=1)
    path = imageio.save_tagged(np.zeros((48, 64, 3), np.uint8), tmp_path / "v1.png", tag)
    assert imageio.synthetic_params(decode_image(path)) == {"domain": "cars", "index": 5, "seed": 1, "size": (48, 64),
                                                           "version": 1}


def test_synthetic_tag_without_version_is_version_1(tmp_path) -> None:
    """Files tagged before data version 2 (the app's example images among them) carry no version: version 1."""
    old = '{"domain":"birds","index":3,"seed":0,"size":64}'  # the format written before versions existed
    for suffix in (".png", ".jpg"):
        path = imageio.save_tagged(np.zeros((64, 64, 3), np.uint8), tmp_path / f"old{suffix}", old)
        assert imageio.synthetic_params(decode_image(path)) == {"domain": "birds", "index": 3, "seed": 0,
                                                               "size": (64, 64), "version": 1}
    # a plausible version is a claim like the rest (the explorer's ground truth checks which versions exist)
    path = imageio.save_tagged(np.zeros((64, 64, 3), np.uint8), tmp_path / "v7.png",
                               '{"domain":"birds","index":3,"seed":0,"size":64,"version":7}')
    assert imageio.synthetic_params(decode_image(path))["version"] == 7
    for bad in ('{"domain":"birds","index":3,"seed":0,"size":64,"version":0}',
                '{"domain":"birds","index":3,"seed":0,"size":64,"version":1000}',
                '{"domain":"birds","index":3,"seed":0,"size":64,"version":"2"}',
                '{"domain":"birds","index":3,"seed":0,"size":64,"version":true}',
                '{"domain":"birds","index":3,"seed":0,"size":64,"version":null}'):
        path = imageio.save_tagged(np.zeros((64, 64, 3), np.uint8), tmp_path / "bad.png", bad)
        assert imageio.synthetic_params(decode_image(path)) is None, bad


def test_example_assets_regenerate_with_their_tag() -> None:
    """The shipped example images (tagged with version 1, before versions existed) still match a regeneration."""
    from pathlib import Path

    from fgviz.data.synthetic import make_sample

    assets = sorted((Path(__file__).resolve().parents[1] / "assets").glob("*.jpg"))
    assert assets
    for path in assets:
        image = decode_image(path)
        params = imageio.synthetic_params(image)
        assert params is not None, path.name
        got = np.asarray(image, np.float32)

        def far_off(got: np.ndarray, params: dict, version: int) -> float:  # share of pixels beyond JPEG noise
            return float((np.abs(got - make_sample(**{**params, "version": version}).image).max(2) > 64).mean())

        other = 3 - params["version"]
        # the tag's version fits best
        assert far_off(got, params, params["version"]) < 0.5 * far_off(got, params, other), (path.name, params)
        assert float(np.abs(got - make_sample(**params).image).mean()) < 8.0, (path.name, params)


# --------------------------------------------------------------------------------------------------------------------
# Refused, with the exact message

NOT_AN_IMAGE = f"this file is not an image (fgviz reads {SUPPORTED})"


def unsupported(kind: str) -> str:
    return f"unsupported format: {kind}; please convert it to JPEG or PNG (fgviz reads {SUPPORTED})"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"hello, I am a text file\n", NOT_AN_IMAGE),
        (b"BMW 3 series, notes from the show\n" * 3, NOT_AN_IMAGE),
        (bytes(range(256)) * 4, NOT_AN_IMAGE),
        (b"\0" * 1000, NOT_AN_IMAGE),
        (b"PK\x03\x04" + b"\0" * 100, NOT_AN_IMAGE),  # a zip
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, unsupported("HEIC/HEIF")),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\0" * 64, unsupported("AVIF")),
        (b"\0\0\0\x18ftypisom\0\0\0\0isomiso2" + b"\0" * 64, unsupported("MP4/QuickTime video")),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64"/>', unsupported("SVG")),
        (b"  <svg width='10' height='10'></svg>", unsupported("SVG")),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", unsupported("PDF")),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", unsupported("PostScript/EPS")),
        (b"8BPS\0\x01" + b"\0" * 40, unsupported("Photoshop PSD")),
        (b"\0\0\0\x0cjP  \r\n\x87\n" + b"\0" * 40, unsupported("JPEG 2000")),
        (b"\xff\x0a" + b"\0" * 40, unsupported("JPEG XL")),
        (encode(Image.new("RGB", (32, 32)), "ICO"), unsupported("ICO")),
        (encode(Image.new("RGB", (32, 32)), "TIFF"), unsupported("TIFF")),
    ],
    ids=["empty", "text", "text-BM", "noise", "zeros", "zip", "heic", "avif", "mp4", "svg-xml", "svg", "pdf", "eps",
         "psd", "jp2", "jxl", "ico", "tiff"],
)
def test_not_images_and_unsupported_formats(data, message) -> None:
    assert error(data) == message


def _truncations() -> list:
    png = encode(Image.fromarray(PIXELS), "PNG")
    jpg = encode(Image.fromarray(PIXELS), "JPEG", quality=90)
    gif = encode(Image.fromarray(PIXELS).convert("P"), "GIF")
    webp = encode(Image.fromarray(PIXELS), "WEBP")
    return [
        ("png-half", png[: len(png) // 2], "PNG"),
        ("png-no-iend", png[:-12], None),  # every pixel is there: decodes
        ("png-header-only", png[:33], "PNG"),
        ("png-signature-only", png[:8], "PNG"),
        ("jpeg-half", jpg[: len(jpg) // 2], "JPEG"),
        ("jpeg-soi-only", jpg[:3], "JPEG"),
        ("jpeg-header-only", jpg[:200], "JPEG"),
        ("gif-half", gif[: len(gif) // 2], "GIF"),
        ("webp-half", webp[: len(webp) // 2], "WEBP"),
    ]


@pytest.mark.parametrize(("data", "kind"), [t[1:] for t in _truncations()], ids=[t[0] for t in _truncations()])
def test_truncated_files(data, kind) -> None:
    if kind is None:
        assert np.array_equal(np.asarray(decode_image(data)), PIXELS)
    else:
        assert error(data) == f"the {kind} file is truncated or corrupt and could not be decoded"


def test_corrupted_pixel_data() -> None:
    png = bytearray(encode(Image.fromarray(PIXELS), "PNG"))
    png[60:70] = b"\xff" * 10  # inside the zlib stream of IDAT (the CRC no longer matches either)
    assert error(bytes(png)) == "the PNG file is truncated or corrupt and could not be decoded"


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ((1, 1), "the image is 1x1 px; at least 16x16 px are needed"),
        ((15, 200), "the image is 15x200 px; at least 16x16 px are needed"),
        ((200, 16), "the image is 200x16 px, an aspect ratio of 12.5:1; at most 10:1 is supported: please crop it "
                    "around the bird or car"),
        ((16, 161), "the image is 16x161 px, an aspect ratio of 10.1:1; at most 10:1 is supported: please crop it "
                    "around the bird or car"),
    ],
)
def test_too_small_or_too_elongated(size, message) -> None:
    assert error(encode(Image.new("RGB", size), "PNG")) == message
    assert error(np.zeros((size[1], size[0], 3), np.uint8)) == message
    assert error(Image.new("L", size)) == message


BOMB = ("the image is {w}x{h} px ({mp} MP), more than the 50 MP limit: refused before decoding (decompression bomb "
        "guard); please downscale it")


@pytest.mark.parametrize(
    ("data", "w", "h", "mp"),
    [
        (png_raw(100_000, 100_000), 100_000, 100_000, 10000),
        (png_raw(8000, 8000), 8000, 8000, 64),
        (png_raw(2**31 - 1, 2**31 - 1), 2**31 - 1, 2**31 - 1, 4611686014132),
        (png_raw(1_000_000, 60), 1_000_000, 60, 60),  # also far too elongated: the bomb is named first
    ],
    ids=["100k-square", "64MP", "int-max", "long"],
)
@pytest.mark.parametrize("pillow_limit", ["default", None, 1000])
def test_decompression_bombs_are_refused_from_the_header(data, w, h, mp, pillow_limit, monkeypatch) -> None:
    """fgviz's own check, whatever Pillow's global limit (None is common in training code) or warning filters."""
    if pillow_limit != "default":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning would be an exception here
        assert error(data) == BOMB.format(w=w, h=h, mp=mp)
        # ...and a normal image still decodes under the same global settings
        assert decode_image(encode(Image.fromarray(PIXELS), "PNG")).size == (64, 48)


@pytest.mark.parametrize("pillow_limit", ["default", None])
def test_gif_frame_larger_than_its_screen_is_a_bomb(pillow_limit, monkeypatch) -> None:
    if pillow_limit != "default":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    msg = error(gif_raw((100, 100), (60000, 60000)))
    assert msg.endswith("more than the 50 MP limit: refused before decoding (decompression bomb guard); please "
                        "downscale it")
    assert decode_image(encode(Image.new("P", (20, 20)), "GIF")).size == (20, 20)


def test_file_size_limit(tmp_path) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_BYTES + 2**19)
    message = "the file is larger than the 20 MB limit{}: please upload a smaller image"
    assert error(big) == message.format(" (20.5 MB)")
    path = tmp_path / "big.png"
    path.write_bytes(big)
    assert error(path) == message.format(" (20.5 MB)")
    assert error(io.BytesIO(big)) == message.format("")
    assert decode_image(encode(Image.fromarray(PIXELS), "PNG"), max_bytes=10**4).size == (64, 48)
    assert error(encode(Image.fromarray(PIXELS), "PNG")[:2000] + b"\0" * 9000) != ""  # sanity: still refused
    assert (MAX_BYTES, MAX_PIXELS, MIN_SIDE, MAX_ASPECT, MAX_SIDE) == (20 * 2**20, 50_000_000, 16, 10.0, 2048)


def test_other_bad_inputs(tmp_path) -> None:
    assert error(None) == "no image given"
    assert error(str(tmp_path / "missing.png")) == "no such file: missing.png"
    assert error(42) == "cannot read an image from a int"
    assert error(np.zeros((20, 20, 2), np.uint8)) == "an image array must be (H, W), (H, W, 3) or (H, W, 4), got " \
                                                     "shape (20, 20, 2)"
    assert error(np.full((20, 20), np.nan, np.float32)) == "the image array contains NaN or infinite values"


# --------------------------------------------------------------------------------------------------------------------
# Fuzz: mutated bytes of valid files never raise anything but ImageError


def _seeds() -> list[bytes]:
    im = Image.fromarray(RNG.integers(0, 256, (24, 32, 3), np.uint8))
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    return [
        encode(im, "PNG"), encode(im.convert("P"), "PNG", transparency=2), encode(im.convert("RGBA"), "PNG"),
        encode(Image.fromarray(RNG.integers(0, 65536, (20, 20), np.uint16)), "PNG"),
        encode(im, "JPEG", quality=80), encode(im, "JPEG", progressive=True, exif=exif),
        encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), encode(im.convert("L"), "JPEG"),
        encode(im, "GIF"), encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        encode(im, "WEBP"), encode(im.convert("RGBA"), "WEBP", lossless=True),
        encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        encode(im, "BMP"), encode(im.convert("P"), "BMP"),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "int32"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "int32":  # a size field gone wild
            data[pos : pos + 4] = draw(st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])).to_bytes(4, "big")
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated())
def test_fuzz_mutated_images_only_raise_image_error(data) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata; only exceptions matter here
        try:
            out = decode_image(data)
        except ImageError as e:
            message = str(e)
            out = None
    if out is None:
        assert message
        return
    assert out.mode == "RGB"
    assert min(out.size) >= MIN_SIDE
    assert max(out.size) <= MAX_SIDE


@settings(max_examples=FUZZ_EXAMPLES // 4, deadline=None, derandomize=True)
@given(data=st.binary(max_size=256))
def test_fuzz_random_bytes(data) -> None:
    with pytest.raises(ImageError):
        decode_image(data)
