"""Decoding user images: the ONE place where uploads, examples and CLI inputs become RGB pixels.

`decode_image` accepts bytes, a path, a file object, a PIL image or a numpy array and returns an RGB PIL image, or
raises `ImageError` with a message meant for the person who gave the file (not a traceback): what is wrong and
what would work. It handles

- things that are not images, empty files, truncated or corrupt files;
- decompression bombs (the pixel count is checked from the header, before any pixel is decoded) and size limits
  (bytes, pixels, smallest side);
- modes: 16-bit and 32-bit grayscale (scaled, not clipped), float, CMYK, YCbCr/LAB/HSV, palette, 1-bit, and every
  mode with transparency (composited on white, so a transparent background does not turn black);
- EXIF orientation (applied, so a phone photo is upright) and animated GIF/WebP/APNG (the first frame).

Images from the synthetic generator carry their generator arguments (a PNG text chunk or a JPEG comment named
`SYNTHETIC_KEY`); `synthetic_params` reads them back so the app can regenerate the ground truth.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 20 * 1024 * 1024  # a 20 MB file is plenty for a photo
MAX_PIXELS = 40_000_000  # 40 MP: refuse decompression bombs from the header, before decoding
MIN_SIDE = 16  # smaller images have no detail left for any model here
MAX_SIDE = 2048  # larger images are downscaled once here (every model input is far smaller)
SYNTHETIC_KEY = "fgviz_synthetic"


class ImageError(ValueError):
    """The input is not an image fgviz can use; the message says why, in words for the person who gave it."""


def _read_limited(f: BinaryIO, max_bytes: int) -> bytes:
    data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(f"file is larger than {max_bytes / 2**20:.0f} MB; please upload a smaller image")
    return data


def _to_bytes(src: Any, max_bytes: int) -> bytes:
    if isinstance(src, bytes | bytearray | memoryview):
        data = bytes(src)
        if len(data) > max_bytes:
            raise ImageError(f"file is larger than {max_bytes / 2**20:.0f} MB; please upload a smaller image")
        return data
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"no such file: {path.name}")
        if path.stat().st_size > max_bytes:
            raise ImageError(f"{path.name} is larger than {max_bytes / 2**20:.0f} MB; please upload a smaller image")
        with path.open("rb") as f:
            return _read_limited(f, max_bytes)
    if hasattr(src, "read"):
        return _read_limited(src, max_bytes)
    raise ImageError(f"cannot read an image from a {type(src).__name__}")


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


def decode_image(
    src: bytes | str | os.PathLike | BinaryIO | Image.Image | np.ndarray,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_side: int | None = MAX_SIDE,
) -> Image.Image:
    """Decode any supported input into an upright RGB PIL image.

    Args:
        src: encoded bytes, a file path, a binary file object, a PIL image or an image array.
        max_bytes: refuse larger files.
        max_pixels: refuse images with more pixels (checked from the header, before decoding).
        min_side: refuse images whose smaller side is shorter.
        max_side: downscale (aspect kept, Lanczos) so the longer side is at most this; None keeps the size.

    Returns:
        An RGB image. `info[SYNTHETIC_KEY]` holds the generator tag when the file had one (see `synthetic_params`).

    Raises:
        ImageError: with a one-sentence reason.
    """
    if src is None:
        raise ImageError("no image given")
    if isinstance(src, np.ndarray):
        im, tag = _from_array(src), None
    elif isinstance(src, Image.Image):
        im, tag = src, _synthetic_tag(src)
        if im.width * im.height > max_pixels:
            raise ImageError(f"image is {im.width}x{im.height} px, more than {max_pixels / 1e6:.0f} MP")
    else:
        data = _to_bytes(src, max_bytes)
        if not data:
            raise ImageError("the file is empty (0 bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError("this file is not an image (or a format fgviz cannot read: use PNG, JPEG, WebP, "
                             "GIF, BMP or TIFF)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"image declares more than {max_pixels / 1e6:.0f} MP (decompression bomb?); "
                             "refusing to decode it") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"the image could not be read (corrupt or truncated file): {e}") from None
        if im.width * im.height > max_pixels:
            raise ImageError(f"image is {im.width}x{im.height} px, more than {max_pixels / 1e6:.0f} MP "
                             "(decompression bomb?); refusing to decode it")
        tag = _synthetic_tag(im)
        try:
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF / WebP / APNG: the first frame
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as e:
            raise ImageError(f"the image could not be decoded (truncated or corrupt file): {e}") from None
    if im.width < min_side or im.height < min_side:
        raise ImageError(f"image is {im.width}x{im.height} px; at least {min_side}x{min_side} px are needed")
    with contextlib.suppress(Exception):  # a broken EXIF block must not lose the image; orientation stays as stored
        im = ImageOps.exif_transpose(im) or im
    try:
        rgb = _to_rgb(im)
    except (OSError, ValueError) as e:
        raise ImageError(f"image mode {im.mode!r} could not be converted to RGB: {e}") from None
    if max_side is not None and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.LANCZOS)
    if rgb is src:
        rgb = rgb.copy()
    rgb.info = {SYNTHETIC_KEY: tag} if tag else {}
    return rgb


def synthetic_params(image: Image.Image) -> dict[str, Any] | None:
    """Generator arguments (domain, index, seed, size) of an image decoded from a tagged synthetic file, else None.

    The tag is only a claim; callers regenerate the sample and compare pixels before trusting it.
    """
    from fgviz.data.synthetic import DOMAINS

    tag = image.info.get(SYNTHETIC_KEY) if isinstance(image, Image.Image) else None
    if not tag or len(tag) > 1000:
        return None
    try:
        p = json.loads(tag)
        out = {"domain": str(p["domain"]), "index": int(p["index"]), "seed": int(p["seed"])}
        size = p["size"]
        out["size"] = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if out["domain"] not in DOMAINS or out["index"] < 0 or not all(16 <= s <= 1024 for s in out["size"]):
        return None
    return out


def synthetic_tag(domain: str, index: int, seed: int, size: int | tuple[int, int]) -> str:
    """The tag `decode_image` reads back: JSON of the generator arguments."""
    return json.dumps({"domain": domain, "index": int(index), "seed": int(seed),
                       "size": size if isinstance(size, int) else list(size)}, separators=(",", ":"))


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
