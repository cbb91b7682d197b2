"""Write synthetic samples in the real datasets' on-disk layouts, so the real loaders can be tested offline.

Layouts (what `fgviz.data.datasets` reads, and what the real downloads look like):

- "cub": CUB-200-2011. `images/<NNN>.<Class>/<Class>_<id>.<ext>`, `images.txt`, `classes.txt`,
  `image_class_labels.txt`, `train_test_split.txt`, `bounding_boxes.txt` (x y width height),
  `parts/parts.txt`, `parts/part_locs.txt` (x y visible; hidden parts are written as 0 0 0, as CUB does).
  Ids are 1-based. Keypoints are written with one decimal (the generator rounds them to 0.1 px).
- "cars": the Stanford Cars devkit. `cars_train/NNNNN.<ext>`, `cars_test/NNNNN.<ext>`,
  `devkit/cars_meta.mat` (class_names), `devkit/cars_train_annos.mat`, `devkit/cars_test_annos.mat` (no class,
  as released) and `cars_test_annos_withlabels.mat` (the later test labels), each an `annotations` struct array
  with bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname. Boxes are MATLAB-style: 1-based, inclusive.
- "folder": an ImageFolder tree `train/<class name>/<file>`, `test/<class name>/<file>` plus the Kaggle
  Stanford Cars extras `names.csv` (class names in label order) and `anno_train.csv`/`anno_test.csv`
  (fname,x1,y1,x2,y2,class: the devkit's box convention, 1-based class).

Samples are split into train/test by index: sample i is a training image when (i // num_classes) is even,
so both splits are class-balanced.
"""

from __future__ import annotations

import csv
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from PIL import Image

from fgviz.data.synthetic import LATEST_VERSION, Sample, class_names, make_sample, num_classes, part_names

LAYOUTS = ("cub", "cars", "folder")


def is_train(index: int, domain: str) -> bool:
    """The train/test split used by every layout."""
    return (index // num_classes(domain)) % 2 == 0


def image_size(index: int, size: int | tuple[int, int], vary_aspect: bool) -> tuple[int, int]:
    """(H, W) of sample `index`; with `vary_aspect` the width cycles through 3/4, 1 and 4/3 of the height."""
    H, W = (size, size) if isinstance(size, int) else size
    if vary_aspect:
        W = round(H * (0.75, 1.0, 4 / 3)[(index // 7) % 3])
    return H, W


def _save(img: np.ndarray, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(img)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        # full-resolution chroma (4:4:4): 4:2:0 smears the small saturated parts into their surroundings
        im.save(path, quality=quality, subsampling=0)
    else:
        im.save(path)


def _folder_name(name: str) -> str:
    return name.replace(" ", "_")


def export(
    domain: str,
    n: int,
    out: str | Path,
    *,
    size: int | tuple[int, int] = 96,
    seed: int = 0,
    layout: str = "cub",
    ext: str = "jpg",
    quality: int = 95,
    vary_aspect: bool = False,
    version: int = LATEST_VERSION,
) -> Path:
    """Generate samples 0..n-1 of `domain` and write them under `out` in `layout`; returns `out`.

    Args:
        size: side, or (height, width).
        ext: image format ("jpg" like the real datasets; "png" for lossless round trips).
        vary_aspect: give images different widths (the real datasets are not square).
        version: synthetic data version (`fgviz.data.synthetic.VERSIONS`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = (make_sample(domain, i, seed, image_size(i, size, vary_aspect), version) for i in range(n))
    writer = {"cub": _write_cub, "cars": _write_cars, "folder": _write_folder}[layout]
    writer(domain, samples, out, ext.lstrip("."), quality)
    return out


def _write_cub(domain: str, samples, out: Path, ext: str, quality: int) -> None:
    names = class_names(domain)
    folders = [f"{k + 1:03d}.{_folder_name(c)}" for k, c in enumerate(names)]
    pnames = part_names(domain)
    (out / "parts").mkdir(exist_ok=True)
    (out / "classes.txt").write_text("".join(f"{k + 1} {f}\n" for k, f in enumerate(folders)))
    (out / "parts" / "parts.txt").write_text("".join(f"{k + 1} {p}\n" for k, p in enumerate(pnames)))
    tables = (
        "images.txt",
        "image_class_labels.txt",
        "train_test_split.txt",
        "bounding_boxes.txt",
        "parts/part_locs.txt",
    )
    with ExitStack() as stack:
        files = {name: stack.enter_context(open(out / name, "w")) for name in tables}
        for image_id, s in enumerate(samples, start=1):
            rel = f"{folders[s.label]}/{_folder_name(s.class_name)}_{image_id:04d}_{s.index}.{ext}"
            _save(s.image, out / "images" / rel, quality)
            x0, y0, x1, y1 = s.bbox
            files["images.txt"].write(f"{image_id} {rel}\n")
            files["image_class_labels.txt"].write(f"{image_id} {s.label + 1}\n")
            files["train_test_split.txt"].write(f"{image_id} {int(is_train(s.index, domain))}\n")
            files["bounding_boxes.txt"].write(f"{image_id} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}\n")
            for pid, p in enumerate(pnames, start=1):
                x, y, vis = s.parts[p]
                if not vis:
                    x = y = 0.0
                files["parts/part_locs.txt"].write(f"{image_id} {pid} {x:.1f} {y:.1f} {int(vis)}\n")


def _cars_annotations(rows: list[dict], with_class: bool) -> np.ndarray:
    """A (1, N) MATLAB struct array like the devkit's `annotations`."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else []) + ["fname"]
    arr = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, r in enumerate(rows):
        for f in fields:
            arr[0, j][f] = r[f] if f == "fname" else np.array([[r[f]]], dtype=np.uint16)
    return arr


def _mat_box(s: Sample) -> dict:
    """Exclusive 0-based (x0, y0, x1, y1) -> inclusive 1-based MATLAB box."""
    x0, y0, x1, y1 = s.bbox
    return {"bbox_x1": x0 + 1, "bbox_y1": y0 + 1, "bbox_x2": x1, "bbox_y2": y1}


def _write_cars(domain: str, samples, out: Path, ext: str, quality: int) -> None:
    from scipy.io import savemat

    rows: dict[str, list[dict]] = {"train": [], "test": []}
    for s in samples:
        split = "train" if is_train(s.index, domain) else "test"
        fname = f"{len(rows[split]) + 1:05d}.{ext}"
        _save(s.image, out / f"cars_{split}" / fname, quality)
        rows[split].append({**_mat_box(s), "class": s.label + 1, "fname": fname})
    (out / "devkit").mkdir(exist_ok=True)
    names = np.empty((1, num_classes(domain)), dtype=object)
    names[0, :] = list(class_names(domain))
    savemat(out / "devkit" / "cars_meta.mat", {"class_names": names})
    savemat(out / "devkit" / "cars_train_annos.mat", {"annotations": _cars_annotations(rows["train"], True)})
    savemat(out / "devkit" / "cars_test_annos.mat", {"annotations": _cars_annotations(rows["test"], False)})
    savemat(out / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(rows["test"], True)})


def _write_folder(domain: str, samples, out: Path, ext: str, quality: int) -> None:
    names = class_names(domain)
    (out / "names.csv").write_text("".join(f"{c}\n" for c in names))
    rows: dict[str, list[list]] = {"train": [], "test": []}
    for s in samples:
        split = "train" if is_train(s.index, domain) else "test"
        fname = f"{len(rows[split]) + 1:05d}.{ext}"
        _save(s.image, out / split / names[s.label].replace("/", "-") / fname, quality)
        b = _mat_box(s)
        rows[split].append([fname, b["bbox_x1"], b["bbox_y1"], b["bbox_x2"], b["bbox_y2"], s.label + 1])
    for split, r in rows.items():
        with open(out / f"anno_{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows(r)
