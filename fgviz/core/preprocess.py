"""Image -> model input, the one place that resizes, crops and normalises.

Each model carries its own `Preprocess` (size, crop fraction, mean/std) in its config, so a prediction is
reproducible from the checkpoint alone. The display image returned beside the tensor is exactly the pixels the
model saw (same resize, same crop), so every overlay lines up with the input by construction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


CROP_MODES = ("squash", "center")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass(frozen=True)
class Preprocess:
    """Resize, centre-crop `img_size`, normalise; `crop_mode` says how the resize treats the aspect ratio.

    - "squash" (fgviz's models): the whole image to round(`img_size / crop_pct`), aspect not kept, as TransFG's
      Resize((600, 600)) -> CenterCrop(448) (crop_pct = 448/600) and the transformers ViT processors (crop_pct 1).
      TASN's test resizes the shorter side to 512 and centre-crops; fgviz resizes both sides (the demo data is
      square), a documented deviation.
    - "center" (timm's eval transform, for timm checkpoints): the shorter side to floor(`img_size / crop_pct`),
      aspect kept, then the centre crop (torchvision's rounding), with the checkpoint's `interpolation`.
    """

    img_size: tuple[int, int] = (448, 448)  # (H, W)
    crop_pct: float = 1.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_mode: str = "squash"
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(
            img_size=tuple(d["img_size"]),
            crop_pct=float(d.get("crop_pct", 1.0)),
            mean=tuple(d.get("mean", IMAGENET_MEAN)),
            std=tuple(d.get("std", IMAGENET_STD)),
            crop_mode=d.get("crop_mode", "squash"),
            interpolation=d.get("interpolation", "bilinear"),
        )

    def __post_init__(self) -> None:
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) an image of `height` x `width` is resized to before the centre crop."""
        H, W = self.img_size
        if self.crop_mode == "squash":
            return round(H / self.crop_pct), round(W / self.crop_pct)
        sh, sw = math.floor(H / self.crop_pct), math.floor(W / self.crop_pct)  # timm's scale_size
        if sh != sw:  # torchvision Resize((h, w)): both sides
            return sh, sw
        if height <= width:  # torchvision Resize(int): the shorter side, the longer one truncated
            return sh, int(sh * width / height)
        return int(sh * height / width), sh

    def crop_origin(self, rh: int, rw: int) -> tuple[int, int]:
        """(top, left) of the centre crop in the resized image."""
        H, W = self.img_size
        if self.crop_mode == "squash":
            return (rh - H) // 2, (rw - W) // 2
        return round((rh - H) / 2.0), round((rw - W) / 2.0)  # torchvision's CenterCrop (round half to even)

    def display(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The (H, W, 3) uint8 pixels the model sees."""
        pil = to_pil(image)
        H, W = self.img_size
        rh, rw = self.resized_size(pil.height, pil.width)
        if (pil.height, pil.width) != (rh, rw):
            pil = pil.resize((rw, rh), INTERPOLATIONS[self.interpolation])
        top, left = self.crop_origin(rh, rw)
        return np.asarray(pil.crop((left, top, left + W, top + H)), dtype=np.uint8).copy()

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A ground-truth mask in the source image's pixels -> the same mask in the model's input pixels.

        The one path from ground truth to what a model saw: the mask goes through `display` exactly as the image
        does (the same resize by `crop_pct`, the same filter, the same centre crop), as a 0/255 image, and a pixel
        is in where the resampled value is at least half (128). The explorer's ground truth, `fgviz.evaluate` and
        the metrics scripts all take masks through here.

        Args:
            mask: (H, W) bool (or 0/1) in the pixels of the image given to `explain`.

        Returns:
            (img_size) bool.
        """
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ValueError(f"mask must be (H, W), got {m.shape}")
        rgb = np.repeat((m.astype(bool).astype(np.uint8) * 255)[:, :, None], 3, axis=2)  # (H, W, 3) 0/255
        return self.display(rgb)[:, :, 0] >= 128

    def normalize(self, display: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 3, H, W) float32 normalised."""
        x = torch.from_numpy(np.ascontiguousarray(display)).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std).unsqueeze(0)

    def denormalize(self, x: torch.Tensor) -> np.ndarray:
        """(3, H, W) normalised -> (H, W, 3) uint8, for showing crops and resampled images."""
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        img = (x.float() * std + mean).clamp(0, 1).mul(255).round().byte()  # (3, H, W)
        return img.permute(1, 2, 0).cpu().numpy()

    @classmethod
    def of(cls, display: np.ndarray, normalization: tuple[tuple[float, ...], tuple[float, ...]]) -> Preprocess:
        """The preprocessing that maps `display` (the pixels a model saw) back to that model's input exactly."""
        mean, std = normalization
        return cls(img_size=tuple(display.shape[:2]), crop_pct=1.0, mean=tuple(mean), std=tuple(std))

    def __call__(self, image: Image.Image | np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        display = self.display(image)
        return self.normalize(display), display


def to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    """PIL or numpy (H, W), (H, W, 3|4) uint8 -> RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"numpy images must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return Image.fromarray(arr[..., :3])
