"""torch Datasets for CUB-200-2011 and Stanford Cars (devkit and ImageFolder layouts), and the synthetic data.

Point them at the real data on disk, or at `python -m fgviz.data export` output (same layouts). Each item is
`(image, target)`: a PIL RGB image (grayscale and CMYK files are converted), passed through `transform` when one
is given, and a target dict:

- "label": int, 0-based;
- "bbox": (4,) float32 (x0, y0, x1, y1) in pixels, x1/y1 exclusive (CUB's x, y, w, h and the Cars devkit's
  1-based inclusive corners are converted);
- "parts": (P, 3) float32 rows (x, y, visible) in `dataset.part_names` order (CUB and synthetic only; CUB
  stores hidden parts as 0, 0, 0);
- "image_id" / "path": where the image came from.

Boxes and keypoints refer to the file's own pixels: a `transform` that resizes or crops does not update them
(use `target_transform`, or transform the image yourself with the target in hand).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from fgviz.data.synthetic import LATEST_VERSION, class_names, make_sample, num_classes, part_names

SPLITS = ("train", "test", "all")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB (CUB has a few grayscale JPEGs; some Cars files are CMYK)."""
    with Image.open(path) as im:
        return im.convert("RGB")


def _check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; expected one of {allowed}")


def _transformed(ds: Any, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Apply a dataset's `transform` and `target_transform` (torchvision's convention)."""
    if ds.transform is not None:
        image = ds.transform(image)
    if ds.target_transform is not None:
        target = ds.target_transform(target)
    return image, target


class _Base(Dataset):
    """Shared __getitem__: load, convert, transform."""

    classes: list[str]

    def __init__(self, transform: Callable | None, target_transform: Callable | None) -> None:
        self.transform = transform
        self.target_transform = target_transform
        self._items: list[tuple[Path, dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        path, target = self._items[i]
        image = load_rgb(path)
        target = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in target.items()}
        return _transformed(self, image, target)

    @property
    def targets(self) -> list[int]:
        """Labels of every item, in order (no image loading)."""
        return [t["label"] for _, t in self._items]


class CUB200(_Base):
    """CUB-200-2011: images, labels, boxes and the 15 part keypoints.

    Args:
        root: the `CUB_200_2011` directory (the one holding images.txt), or its parent.
        split: "train", "test" (from train_test_split.txt) or "all".
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        super().__init__(transform, target_transform)
        _check_split(split)
        root = Path(root)
        if not (root / "images.txt").exists() and (root / "CUB_200_2011" / "images.txt").exists():
            root = root / "CUB_200_2011"
        if not (root / "images.txt").exists():
            raise FileNotFoundError(f"no CUB-200-2011 images.txt under {root}")
        self.root = root
        folders = [line.split(" ", 1)[1] for line in _lines(root / "classes.txt")]
        self.class_folders = folders
        self.classes = [f.split(".", 1)[1].replace("_", " ") if "." in f else f for f in folders]
        images = dict(_pairs(root / "images.txt"))
        labels = {k: int(v) - 1 for k, v in _pairs(root / "image_class_labels.txt")}
        train = {k: v == "1" for k, v in _pairs(root / "train_test_split.txt")}
        boxes = {}
        for line in _lines(root / "bounding_boxes.txt"):
            k, x, y, w, h = line.split()
            x, y, w, h = float(x), float(y), float(w), float(h)
            boxes[int(k)] = np.array([x, y, x + w, y + h], np.float32)
        self.part_names: list[str] = []
        parts: dict[int, np.ndarray] = {}
        if (root / "parts" / "parts.txt").exists():
            self.part_names = [line.split(" ", 1)[1] for line in _lines(root / "parts" / "parts.txt")]
            P = len(self.part_names)
            for line in _lines(root / "parts" / "part_locs.txt"):
                k, pid, x, y, vis = line.split()
                arr = parts.setdefault(int(k), np.zeros((P, 3), np.float32))
                arr[int(pid) - 1] = (float(x), float(y), float(vis))
        for image_id in sorted(images, key=int):
            k = int(image_id)
            if split != "all" and train[image_id] != (split == "train"):
                continue
            target = {
                "label": labels[image_id],
                "bbox": boxes[k],
                "image_id": k,
                "path": str(root / "images" / images[image_id]),
            }
            if self.part_names:
                target["parts"] = parts.get(k, np.zeros((len(self.part_names), 3), np.float32))
            self._items.append((root / "images" / images[image_id], target))


class StanfordCars(_Base):
    """Stanford Cars in the devkit layout (the original download, or torchvision's `stanford_cars/`).

    Args:
        root: the directory holding `devkit/`, `cars_train/` and `cars_test/` (or its `stanford_cars/` parent).
        split: "train" or "test". Test labels come from `cars_test_annos_withlabels.mat` (in root or devkit/).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        super().__init__(transform, target_transform)
        from scipy.io import loadmat

        _check_split(split, ("train", "test"))
        root = Path(root)
        if not (root / "devkit").exists() and (root / "stanford_cars" / "devkit").exists():
            root = root / "stanford_cars"
        self.root = root
        meta = loadmat(root / "devkit" / "cars_meta.mat", squeeze_me=True)
        self.classes = [str(c) for c in np.atleast_1d(meta["class_names"])]
        if split == "train":
            ann_path = root / "devkit" / "cars_train_annos.mat"
        else:
            candidates = [root / "cars_test_annos_withlabels.mat", root / "devkit" / "cars_test_annos_withlabels.mat"]
            ann_path = next((p for p in candidates if p.exists()), None)
            if ann_path is None:
                raise FileNotFoundError(f"test labels need cars_test_annos_withlabels.mat in {root} or its devkit/")
        ann = np.atleast_1d(loadmat(ann_path, squeeze_me=True)["annotations"])
        for a in ann:
            fname = str(a["fname"])
            # devkit boxes are MATLAB-style 1-based inclusive corners
            bbox = np.array(
                [int(a["bbox_x1"]) - 1, int(a["bbox_y1"]) - 1, int(a["bbox_x2"]), int(a["bbox_y2"])], np.float32
            )
            path = root / f"cars_{split}" / fname
            self._items.append(
                (path, {"label": int(a["class"]) - 1, "bbox": bbox, "image_id": fname, "path": str(path)})
            )


class StanfordCarsFolder(_Base):
    """Stanford Cars (or any dataset) as an ImageFolder tree: `root/<split>/<class name>/<image>`.

    Labels follow `names.csv` (one class per line, Kaggle's Stanford Cars layout) when present, else the sorted
    folder names (torchvision's ImageFolder). Boxes come from `anno_<split>.csv` (fname,x1,y1,x2,y2,class with
    the devkit's 1-based inclusive corners) when present; without it, items have no "bbox".
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        super().__init__(transform, target_transform)
        root = Path(root)
        self.root = root
        base = root / split
        if not base.is_dir():
            raise FileNotFoundError(f"no {split}/ folder under {root}")
        folders = sorted(p.name for p in base.iterdir() if p.is_dir())
        names_csv = root / "names.csv"
        if names_csv.exists():
            self.classes = _lines(names_csv)
        else:
            self.classes = folders
        # a class name with "/" (Stanford Cars' "Ram C/V Cargo Van Minivan 2012") is stored as a "-" folder
        index = {c.replace("/", "-"): k for k, c in enumerate(self.classes)}
        missing = [f for f in folders if f not in index]
        if missing:
            raise ValueError(f"class folders not in names.csv: {missing[:5]}")
        boxes: dict[str, np.ndarray] = {}
        anno = root / f"anno_{split}.csv"
        if anno.exists():
            with open(anno, newline="") as f:
                for row in csv.reader(f):
                    if row and row[0] != "fname":
                        x1, y1, x2, y2 = (int(float(v)) for v in row[1:5])
                        boxes[row[0]] = np.array([x1 - 1, y1 - 1, x2, y2], np.float32)
        for folder in folders:
            for path in sorted((base / folder).iterdir()):
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                target: dict[str, Any] = {"label": index[folder], "image_id": path.name, "path": str(path)}
                if path.name in boxes:
                    target["bbox"] = boxes[path.name]
                self._items.append((path, target))


class SyntheticDataset(Dataset):
    """Synthetic birds or cars generated on the fly: item i is `make_sample(domain, i, seed, size, version)`.

    Targets carry the ground truth the metrics need: "label", "bbox", "parts" (P, 3), "part_mask" (H, W) bool and
    "nuisance_mask" (H, W) bool (salient parts that do not decide the class; empty in data version 1).
    Use different seeds for train and test sets.
    """

    def __init__(
        self,
        domain: str,
        length: int,
        seed: int = 0,
        size: int | tuple[int, int] = 96,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        version: int = LATEST_VERSION,
    ) -> None:
        self.domain, self.length, self.seed, self.size = domain, int(length), int(seed), size
        self.version = int(version)
        self.transform, self.target_transform = transform, target_transform
        self.classes = list(class_names(domain))
        self.part_names = list(part_names(domain))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        s = make_sample(self.domain, i, self.seed, self.size, self.version)
        image: Any = Image.fromarray(s.image)
        target = {
            "label": s.label,
            "bbox": np.asarray(s.bbox, np.float32),
            "parts": np.array([s.parts[p] for p in self.part_names], np.float32),
            "part_mask": s.part_mask,
            "nuisance_mask": s.nuisance_mask,
        }
        return _transformed(self, image, target)

    @property
    def targets(self) -> list[int]:
        return [i % num_classes(self.domain) for i in range(self.length)]


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _pairs(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split(" ", 1)) for line in _lines(path)]  # type: ignore[misc]
