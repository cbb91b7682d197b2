"""Decoding user images: the ONE place where uploads, examples and CLI inputs become RGB pixels.

`decode_image` accepts bytes, a path, a file object, a PIL image or a numpy array and returns an upright RGB PIL
image, or raises `ImageError` with a message meant for the person who gave the file (not a traceback): what is
wrong and what would work. It handles

- things that are not images, empty files, truncated or corrupt files, and known formats fgviz does not read
  (HEIC, AVIF, TIFF, SVG, PDF, PSD...: "unsupported format");
- limits, all checked from the header before any pixel is decoded: file size (`MAX_BYTES`), pixel count
  (`MAX_PIXELS`, the decompression-bomb guard), smallest side (`MIN_SIDE`) and aspect ratio (`MAX_ASPECT`);
  larger images are then downscaled once to `MAX_SIDE` (big JPEGs are decoded at a reduced DCT scale, so a
  48 MP phone photo never takes 48 MP of memory);
- modes: 16-bit and 32-bit grayscale (scaled, not clipped), float, CMYK, YCbCr/LAB/HSV, palette, 1-bit, and every
  mode with transparency (composited on white, so a transparent background does not turn black);
- EXIF orientation (applied, so a phone photo is upright) and animated GIF/WebP/APNG (the first frame).

Only the readers of `FORMATS` ever parse an upload: Pillow's others (TIFF through libtiff, EPS through Ghostscript,
...) never see one. The guards do not depend on Pillow's global settings: the pixel limit is fgviz's own check
made from the header, so it holds when other code sets `PIL.Image.MAX_IMAGE_PIXELS = None`, and no warning filter
is touched (`warnings.catch_warnings` is process-global and not thread-safe in a server). fgviz never sets
`PIL.ImageFile.LOAD_TRUNCATED_IMAGES`, which would turn a truncated file into a half-grey image.

Images from the synthetic generator carry their generator arguments (a PNG text chunk or a JPEG comment named
`SYNTHETIC_KEY`, JSON with domain, index, seed, size and the data version; tags written before version 2 have no
version and mean version 1); `synthetic_params` reads them back so the app can regenerate the ground truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

MAX_BYTES = 20 * 1024 * 1024  # 20 MB per file (the app's Gradio upload limit is the same number)
MAX_PIXELS = 50_000_000  # 50 MP from the header: 48/50 MP phone photos pass, a bomb is refused before decoding
MIN_SIDE = 16  # smaller images have no detail left for any model here
MAX_ASPECT = 10.0  # longer side / shorter side; models squash the image to their (near-square) input
MAX_SIDE = 2048  # larger images are downscaled once here (every model input is far smaller)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # the only Pillow readers an upload reaches (JPEG covers MPO)
SUPPORTED = "PNG, JPEG, WebP, GIF or BMP"
SYNTHETIC_KEY = "fgviz_synthetic"

# Errors Pillow's readers raise on malformed data; the fuzz test (tests/test_imageio.py) checks that no other escapes.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error,
                  ZeroDivisionError, OverflowError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageError(ValueError):
    """The input is not an image fgviz can use; the message says why, in words for the person who gave it."""


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def _too_big(size: int | None, max_bytes: int) -> ImageError:
    got = f" ({_mb(size)})" if size is not None else ""
    return ImageError(f"the file is larger than the {_mb(max_bytes)} limit{got}: please upload a smaller image")


def _read_limited(f: BinaryIO, max_bytes: int) -> bytes:
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_big(None, max_bytes)
    return data


def _to_bytes(src: Any, max_bytes: int) -> bytes:
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        if len(data) > max_bytes:
            raise _too_big(len(data), max_bytes)
        return data
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"no such file: {path.name}")
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_big(size, max_bytes)
        with path.open("rb") as f:
            return _read_limited(f, max_bytes)
    if hasattr(src, "read"):
        return _read_limited(src, max_bytes)
    raise ImageError(f"cannot read an image from a {type(src).__name__}")


# Magic numbers: the supported formats (to tell "corrupt PNG" from "not an image") and common formats fgviz does
# not read (to say "unsupported format: HEIC" rather than "not an image").
_ISO_BRANDS = {b"heic": "HEIC/HEIF", b"heix": "HEIC/HEIF", b"hevc": "HEIC/HEIF", b"hevx": "HEIC/HEIF",
               b"heim": "HEIC/HEIF", b"heis": "HEIC/HEIF", b"mif1": "HEIC/HEIF", b"msf1": "HEIC/HEIF",
               b"avif": "AVIF", b"avis": "AVIF"}


def sniff(data: bytes) -> str | None:
    """The format the first bytes announce ("PNG", "JPEG", ... or an unsupported one such as "HEIC/HEIF"), or None.

    Only a claim: the decoder still has to agree.
    """
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124):
        return "BMP"  # the DIB header size, so a text file that starts with "BM" is not called a broken BMP
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"  # also camera raw files (CR2, NEF, DNG)
    if head[4:8] == b"ftyp":
        return _ISO_BRANDS.get(head[8:12], "MP4/QuickTime video")
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG 2000"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "PostScript/EPS"
    if head.startswith(b"8BPS"):
        return "Photoshop PSD"
    if head.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")):
        return "ICO"
    text = data[:1024].lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in text:
        return "SVG"
    return None


def _from_array(arr: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1|3|4) uint8/uint16/float array -> PIL image (floats are taken as 0..1)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image array contains NaN or infinite values")
        a = (np.clip(a, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    else:
        raise ImageError(f"unsupported image array dtype {a.dtype} (use uint8, uint16 or float in 0..1)")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


def _high_bit_depth_to_l(im: Image.Image) -> Image.Image:
    """16/32-bit integer or float grayscale -> 8-bit "L", scaled to the data's bit depth rather than clipped."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(a.max()) if a.size else 1.0
        scale = 255.0 if hi <= 1.0 else 255.0 / max(hi, 1e-12)
        out = a * scale
    else:
        a = a.astype(np.float64)
        sixteen = im.mode.startswith("I;16") or (a.size and float(a.max()) > 255.0)
        out = a / 257.0 if sixteen else a
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), mode="L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white."""
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        im = _high_bit_depth_to_l(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "La", "PA", "RGBa", "RGBA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return im


def _synthetic_tag(im: Image.Image) -> str | None:
    """The generator tag of a PNG text chunk or a JPEG/WebP comment, if any."""
    tag = im.info.get(SYNTHETIC_KEY)
    if isinstance(tag, str):
        return tag
    comment = im.info.get("comment")
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", "replace")
    if isinstance(comment, str) and comment.startswith(SYNTHETIC_KEY + "="):
        return comment[len(SYNTHETIC_KEY) + 1 :]
    return None


def _bomb(size: tuple[int, int] | None, max_pixels: int) -> ImageError:
    what = f"is {size[0]}x{size[1]} px ({size[0] * size[1] / 1e6:.0f} MP)" if size else "declares a huge size"
    return ImageError(f"the image {what}, more than the {max_pixels / 1e6:.0f} MP limit: refused before decoding "
                      "(decompression bomb guard); please downscale it")


def check_size(width: int, height: int, *, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               max_aspect: float = MAX_ASPECT) -> None:
    """Raise ImageError when an image of this size is refused (pixel count, smallest side, aspect ratio)."""
    if width * height > max_pixels:
        raise _bomb((width, height), max_pixels)
    if width < min_side or height < min_side:
        raise ImageError(f"the image is {width}x{height} px; at least {min_side}x{min_side} px are needed")
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect:
        raise ImageError(f"the image is {width}x{height} px, an aspect ratio of {ratio:.1f}:1; at most "
                         f"{max_aspect:g}:1 is supported: please crop it around the bird or car")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header with the readers of FORMATS only; no pixel is decoded yet.

    This is `PIL.Image.open` restricted to FORMATS, minus its decompression-bomb check, which reads the global
    `Image.MAX_IMAGE_PIXELS` (and warns through the global warning filters): `check_size` is fgviz's own check.
    """
    kind = sniff(data)
    if kind is not None and kind not in FORMATS:
        raise ImageError(f"unsupported format: {kind}; please convert it to JPEG or PNG (fgviz reads {SUPPORTED})")
    Image.init()  # registers Pillow's readers (once per process)
    fp = io.BytesIO(data)
    for fmt in FORMATS:
        factory, accept = Image.OPEN[fmt]
        ok = accept(data[:16]) if accept else True
        if not ok or isinstance(ok, str):  # a string: "maybe, with a warning"; Image.open skips it too
            continue
        fp.seek(0)
        try:
            return factory(fp, "")
        except _BOMB_ERRORS:  # a GIF frame larger than its screen, checked by Pillow during the header
            raise _bomb(None, max_pixels) from None
        except _DECODE_ERRORS:
            if kind is None:  # a loose match (BMP only checks "BM"): not an image rather than a broken BMP
                continue
            raise _corrupt(kind) from None
    if kind is None:
        raise ImageError(f"this file is not an image (fgviz reads {SUPPORTED})")
    raise _corrupt(kind)


def _corrupt(kind: str | None) -> ImageError:
    # Pillow's own reason ("unpack_from requires a buffer of at least 4 bytes...") helps no user: not shown.
    return ImageError(f"the {kind or 'image'} file is truncated or corrupt and could not be decoded")


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)  # EXIF Orientation
    except _DECODE_ERRORS:  # a broken EXIF block must not lose the image; orientation stays as stored
        return 1
    return value if isinstance(value, int) else 1


def _downscale(im: Image.Image, max_side: int | None) -> Image.Image:
    """Resize (Lanczos, aspect kept; alpha premultiplied by Pillow) so the longer side is at most max_side."""
    if max_side is None or max(im.size) <= max_side:
        return im
    scale = max_side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.LANCZOS, reducing_gap=3.0)


def decode_image(
    src: bytes | str | os.PathLike | BinaryIO | Image.Image | np.ndarray,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_aspect: float = MAX_ASPECT,
    max_side: int | None = MAX_SIDE,
) -> Image.Image:
    """Decode any supported input into an upright RGB PIL image.

    Args:
        src: encoded bytes, a file path, a binary file object, a PIL image or an image array.
        max_bytes: refuse larger files.
        max_pixels: refuse images with more pixels (checked from the header, before decoding).
        min_side: refuse images whose smaller side is shorter.
        max_aspect: refuse images whose longer side is more than this many times the shorter one.
        max_side: downscale (aspect kept, Lanczos) so the longer side is at most this; None keeps the size.

    Returns:
        An RGB image. `info[SYNTHETIC_KEY]` holds the generator tag when the file had one (see `synthetic_params`).

    Raises:
        ImageError: with a one-sentence reason.
    """
    if src is None:
        raise ImageError("no image given")
    limits = {"max_pixels": max_pixels, "min_side": min_side, "max_aspect": max_aspect}
    if isinstance(src, np.ndarray):
        if src.ndim >= 2:
            check_size(int(src.shape[1]), int(src.shape[0]), **limits)
        im, tag = _from_array(src), None
    elif isinstance(src, Image.Image):
        check_size(*src.size, **limits)
        im, tag = src, _synthetic_tag(src)
    else:
        data = _to_bytes(src, max_bytes)
        if not data:
            raise ImageError("the file is empty (0 bytes)")
        im = _open(data, max_pixels)
        kind = "JPEG" if im.format == "MPO" else im.format  # a multi-picture JPEG (some cameras) is a JPEG to users
        check_size(*im.size, **limits)
        tag = _synthetic_tag(im)
        if max_side is not None and im.format in ("JPEG", "MPO") and max(im.size) > 2 * max_side:
            s = max_side / max(im.size)  # decode at 1/2, 1/4 or 1/8 scale, still at least max_side
            im.draft(None, (math.ceil(im.width * s), math.ceil(im.height * s)))
        try:
            im.load()  # the first frame of an animated GIF / WebP / APNG
        except _BOMB_ERRORS:
            raise _bomb(None, max_pixels) from None
        except _DECODE_ERRORS:
            raise _corrupt(kind) from None
    if _orientation(im) in range(2, 9):
        with contextlib.suppress(*_DECODE_ERRORS):  # a broken EXIF block keeps the image as stored
            im = ImageOps.exif_transpose(im)
    try:
        if max_side is not None and im.mode not in ("1", "P", "PA") and "transparency" not in im.info:
            im = _downscale(im, max_side)  # first: a 48 MP RGBA or 16-bit PNG is never converted at full size
        rgb = _downscale(_to_rgb(im), max_side)
    except _DECODE_ERRORS:
        raise ImageError(f"the image's color mode {im.mode!r} cannot be converted to RGB") from None
    if rgb is src:
        rgb = rgb.copy()
    rgb.info = {SYNTHETIC_KEY: tag} if tag else {}
    return rgb


def synthetic_params(image: Image.Image) -> dict[str, Any] | None:
    """Generator arguments (domain, index, seed, size, version) of an image decoded from a tagged synthetic file,
    else None. A tag without "version" (written before data version 2 existed) means version 1.

    The tag is only a claim; callers regenerate the sample (and check the domain) and compare pixels before trusting
    it.
    """
    tag = image.info.get(SYNTHETIC_KEY) if isinstance(image, Image.Image) else None
    if not tag or len(tag) > 1000:
        return None
    try:
        p = json.loads(tag)
        out = {"domain": str(p["domain"]), "index": int(p["index"]), "seed": int(p["seed"])}
        size = p["size"]
        out["size"] = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        version = p.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            return None
        out["version"] = version
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    plausible = out["domain"].isalpha() and len(out["domain"]) <= 16 and out["index"] >= 0
    if not plausible or not all(16 <= s <= 1024 for s in out["size"]):
        return None
    if not 1 <= out["version"] <= 99:  # which versions exist is fgviz.data's to say (callers check)
        return None
    return out


def synthetic_tag(domain: str, index: int, seed: int, size: int | tuple[int, int], version: int) -> str:
    """The tag `decode_image` reads back: JSON of the generator arguments, e.g.
    `{"domain":"birds","index":3,"seed":0,"size":96,"version":2}` (`fgviz.data.synthetic.Sample.tag` writes it)."""
    return json.dumps({"domain": domain, "index": int(index), "seed": int(seed),
                       "size": size if isinstance(size, int) else list(size), "version": int(version)},
                      separators=(",", ":"))


def save_tagged(image: np.ndarray, path: str | Path, tag: str, *, quality: int = 92) -> Path:
    """Save an RGB uint8 image as PNG (tag in a text chunk) or JPEG/WebP (tag in the comment)."""
    from PIL import PngImagePlugin

    path = Path(path)
    im = Image.fromarray(np.asarray(image, np.uint8), "RGB")
    suffix = path.suffix.lower()
    if suffix == ".png":
        meta = PngImagePlugin.PngInfo()
        meta.add_text(SYNTHETIC_KEY, tag)
        im.save(path, "PNG", pnginfo=meta, optimize=True)
    elif suffix in (".jpg", ".jpeg"):
        im.save(path, "JPEG", quality=quality, subsampling=0, comment=f"{SYNTHETIC_KEY}={tag}".encode())
    else:
        raise ValueError(f"unsupported suffix {suffix!r}; use .png or .jpg")
    return path
