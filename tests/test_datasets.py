"""Exports in the real layouts read back exactly by the real-dataset loaders (labels, boxes, parts, pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat

from fgviz.data.__main__ import contact_sheet, main
from fgviz.data.datasets import CUB200, StanfordCars, StanfordCarsFolder, SyntheticDataset
from fgviz.data.export import export, image_size, is_train
from fgviz.data.synthetic import class_names, make_sample, num_classes, part_names

N = 40
SEED = 4


def _expected(domain: str, split: str, size=96, vary_aspect=True):
    """The samples an export of N images holds in `split`, in file order."""
    idx = [i for i in range(N) if split == "all" or is_train(i, domain) == (split == "train")]
    return [make_sample(domain, i, SEED, image_size(i, size, vary_aspect)) for i in idx]


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cub") / "CUB_200_2011"
    export("birds", N, root, size=96, seed=SEED, layout="cub", ext="png", vary_aspect=True)
    return root


@pytest.fixture(scope="module")
def cars_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cars")
    export("cars", N, root, size=96, seed=SEED, layout="cars", ext="png", vary_aspect=True)
    return root


@pytest.fixture(scope="module")
def folder_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    export("cars", N, root, size=96, seed=SEED, layout="folder", ext="png", vary_aspect=True)
    return root


def test_cub_files(cub_root):
    for name in (
        "images.txt",
        "classes.txt",
        "image_class_labels.txt",
        "train_test_split.txt",
        "bounding_boxes.txt",
        "parts/parts.txt",
        "parts/part_locs.txt",
    ):
        assert (cub_root / name).is_file(), name
    assert (cub_root / "classes.txt").read_text().splitlines()[0] == "1 001." + class_names("birds")[0].replace(
        " ", "_"
    )
    assert (cub_root / "parts/parts.txt").read_text().splitlines()[:2] == ["1 back", "2 beak"]
    assert len((cub_root / "parts/part_locs.txt").read_text().splitlines()) == N * 15


@pytest.mark.parametrize("split", ["train", "test", "all"])
def test_cub_reads_back_exactly(cub_root, split):
    ds = CUB200(cub_root.parent, split=split)  # the parent of CUB_200_2011 works too
    expected = _expected("birds", split)
    assert len(ds) == len(expected) > 0
    assert ds.classes == list(class_names("birds"))
    assert ds.part_names == list(part_names("birds"))
    sizes = set()
    for (img, t), s in zip(ds, expected, strict=True):
        assert t["label"] == s.label
        assert t["bbox"].tolist() == list(s.bbox)
        for j, name in enumerate(ds.part_names):
            x, y, vis = s.parts[name]
            want = (x, y, 1.0) if vis else (0.0, 0.0, 0.0)  # CUB writes hidden parts as 0 0 0
            assert tuple(t["parts"][j].tolist()) == pytest.approx(want, abs=1e-4), name
        assert np.array_equal(np.asarray(img), s.image)  # PNG: lossless
        sizes.add(img.size)
    assert any(w != h for w, h in sizes)  # non-square images were exercised


def test_cub_grayscale_and_transform(cub_root, tmp_path):
    ds = CUB200(cub_root, split="all")
    path = Path(ds[3][1]["path"])
    original = Image.open(path).convert("RGB")
    Image.open(path).convert("L").save(path)  # CUB has a few grayscale JPEGs
    try:
        img, t = ds[3]
        assert img.mode == "RGB"
        assert img.size == original.size
        a = np.asarray(img)
        assert (a[..., 0] == a[..., 1]).all()
        assert (a[..., 1] == a[..., 2]).all()
        ds_t = CUB200(
            cub_root, split="all", transform=lambda im: np.asarray(im).shape, target_transform=lambda t: t["label"]
        )
        assert ds_t[3] == ((original.size[1], original.size[0], 3), t["label"])
    finally:
        original.save(path)


def test_cars_devkit_files(cars_root):
    meta = loadmat(cars_root / "devkit" / "cars_meta.mat", squeeze_me=True)
    assert [str(c) for c in meta["class_names"]] == list(class_names("cars"))
    raw = loadmat(cars_root / "devkit" / "cars_train_annos.mat")["annotations"]  # MATLAB struct, unsqueezed
    assert raw.shape == (1, sum(is_train(i, "cars") for i in range(N)))
    assert set(raw.dtype.names) == {"bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"}
    test_annos = loadmat(cars_root / "devkit" / "cars_test_annos.mat")["annotations"]
    assert "class" not in test_annos.dtype.names  # as released: test labels ship separately
    assert (cars_root / "cars_test_annos_withlabels.mat").is_file()


@pytest.mark.parametrize("split", ["train", "test"])
def test_cars_devkit_reads_back_exactly(cars_root, split):
    ds = StanfordCars(cars_root, split=split)
    expected = _expected("cars", split)
    assert len(ds) == len(expected) > 0
    assert ds.classes == list(class_names("cars"))
    for (img, t), s in zip(ds, expected, strict=True):
        assert t["label"] == s.label
        assert t["bbox"].tolist() == list(s.bbox)
        assert np.array_equal(np.asarray(img), s.image)
    assert ds.targets == [s.label for s in expected]


@pytest.mark.parametrize("split", ["train", "test"])
def test_cars_folder_reads_back_exactly(folder_root, split):
    ds = StanfordCarsFolder(folder_root, split=split)
    expected = sorted(_expected("cars", split), key=lambda s: (class_names("cars")[s.label], s.index))
    assert len(ds) == len(expected) > 0
    for (img, t), s in zip(ds, expected, strict=True):
        assert ds.classes[t["label"]] == s.class_name
        assert t["label"] == s.label
        assert t["bbox"].tolist() == list(s.bbox)
        assert np.array_equal(np.asarray(img), s.image)


def test_cars_folder_without_extras(folder_root, tmp_path):
    """A bare ImageFolder tree (no names.csv, no boxes): sorted folder names, no bbox."""
    import shutil

    shutil.copytree(folder_root / "train", tmp_path / "train")
    ds = StanfordCarsFolder(tmp_path, split="train")
    assert ds.classes == sorted(ds.classes)
    assert "bbox" not in ds[0][1]
    img = Image.open(ds[0][1]["path"])
    img.convert("L").save(ds[0][1]["path"])
    assert ds[0][0].mode == "RGB"


def test_jpeg_export_and_cli(tmp_path):
    main(
        [
            "export",
            "--domain",
            "birds",
            "--n",
            "6",
            "--size",
            "64",
            "--width",
            "80",
            "--seed",
            "2",
            "--out",
            str(tmp_path / "cub"),
            "--layout",
            "cub",
        ]
    )
    ds = CUB200(tmp_path / "cub", split="all")
    img, t = ds[0]
    s = make_sample("birds", 0, 2, (64, 80))
    assert img.size == (80, 64)
    assert t["bbox"].tolist() == list(s.bbox)
    assert np.abs(np.asarray(img, float) - s.image).mean() < 6  # JPEG, close but lossy
    main(
        [
            "export",
            "--domain",
            "birds",
            "--n",
            "4",
            "--size",
            "48",
            "--out",
            str(tmp_path / "cars"),
            "--layout",
            "cars",
        ]
    )
    assert len(StanfordCars(tmp_path / "cars", split="train")) == 4  # indices 0..3 are all training images


def test_gallery(tmp_path):
    sheet = contact_sheet("cars", size=32, cols=2)
    assert sheet.shape[0] == num_classes("cars") * (32 + 2)
    assert sheet.dtype == np.uint8
    main(["gallery", "--out", str(tmp_path), "--size", "32", "--cols", "2", "--domain", "birds"])
    assert (tmp_path / "gallery_birds.png").is_file()


def test_synthetic_dataset_collates():
    ds = SyntheticDataset("birds", 8, seed=1, size=48, transform=lambda im: torch.from_numpy(np.asarray(im).copy()))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    images, targets = next(iter(loader))
    assert images.shape == (4, 48, 48, 3)
    assert targets["label"].tolist() == [0, 1, 2, 3]
    assert targets["parts"].shape == (4, 15, 3)
    assert targets["part_mask"].shape == (4, 48, 48)
    s = make_sample("birds", 2, 1, 48)
    assert np.array_equal(images[2].numpy(), s.image)
    assert targets["bbox"][2].tolist() == list(s.bbox)


def test_cars_folder_class_name_with_slash(tmp_path):
    """Stanford Cars' "Ram C/V Cargo Van Minivan 2012" is stored as a "Ram C-V ..." folder."""
    (tmp_path / "names.csv").write_text("AM General Hummer SUV 2000\nRam C/V Cargo Van Minivan 2012\n")
    folder = tmp_path / "test" / "Ram C-V Cargo Van Minivan 2012"
    folder.mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(folder / "00001.jpg")
    ds = StanfordCarsFolder(tmp_path, split="test")
    assert ds.targets == [1]
    assert ds.classes[1] == "Ram C/V Cargo Van Minivan 2012"
