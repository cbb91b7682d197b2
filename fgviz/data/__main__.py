"""CLI: export synthetic data in the real datasets' layouts, draw a contact sheet per domain, or measure where
label-free saliency maps point (deciding vs nuisance parts) per data version.

python -m fgviz.data export --domain birds --n 400 --size 96 --seed 0 --out /tmp/cub --layout cub
python -m fgviz.data export --domain cars --n 400 --size 96 --width 128 --out /tmp/cars --layout cars --version 1
python -m fgviz.data gallery --out docs --size 192     # docs/gallery_birds.png, docs/gallery_cars.png
python -m fgviz.data saliency --n 200 --size 192       # the table in docs/data_v2.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fgviz.data.export import LAYOUTS, export
from fgviz.data.synthetic import DOMAINS, LATEST_VERSION, PALETTE, VERSIONS, class_names, make_sample, num_classes

_BOX, _VISIBLE, _HIDDEN = (255, 40, 40), (40, 230, 40), (255, 40, 40)


def contact_sheet(
    domain: str, size: int = 96, cols: int = 6, seed: int = 0, label_width: int = 112, version: int = LATEST_VERSION
) -> np.ndarray:
    """One row per class: the class name, one sample with its ground truth drawn, then `cols` - 1 plain samples.

    Ground truth column: deciding-part mask tinted white, nuisance-part mask (version 2) tinted black, box in red,
    visible keypoints green, hidden ones red.
    """
    C = num_classes(domain)
    rows = []
    for c in range(C):
        tiles = []
        for j in range(cols):
            s = make_sample(domain, c + C * j, seed, size, version)
            im = s.image.copy()
            if j == 0:
                m = s.part_mask
                im[m] = (0.45 * im[m] + 0.55 * 255).astype(np.uint8)
                m = s.nuisance_mask
                im[m] = (0.3 * im[m]).astype(np.uint8)
                x0, y0, x1, y1 = s.bbox
                cv2.rectangle(im, (x0, y0), (x1 - 1, y1 - 1), _BOX, 1)
                for x, y, vis in s.parts.values():
                    cv2.circle(im, (round(x), round(y)), 1, _VISIBLE if vis else _HIDDEN, -1)
            tiles.append(im)
            tiles.append(np.full((size, 2, 3), 255, np.uint8))
        label = np.full((size, label_width, 3), 255, np.uint8)
        cv2.putText(label, f"{c:2d}", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for k, word in enumerate(class_names(domain)[c].split()):  # one attribute per line
            cv2.putText(label, word, (24, 14 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, *tiles], 1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows, 0)


def to_palette(sheet: np.ndarray, adaptive: int = 180) -> Image.Image:
    """A paletted PNG image: small enough for git (noise defeats PNG's compression of RGB).

    The part colours (bright and shaded) are forced into the palette; an adaptive palette alone spends its
    entries on the common background colours and maps the small, rare parts to the wrong hue.
    """
    im = Image.fromarray(sheet)
    palette = im.quantize(adaptive, method=Image.Quantize.MEDIANCUT).getpalette()[: adaptive * 3]
    dim = [tuple(int(v * 0.72) for v in c) for c in PALETTE.values()]  # parts in shade
    for c in [*PALETTE.values(), *dim, _BOX, _VISIBLE, (255, 255, 255), (0, 0, 0)]:
        palette += list(c)
    holder = Image.new("P", (1, 1))
    holder.putpalette(palette)
    return im.quantize(palette=holder, dither=Image.Dither.NONE)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m fgviz.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write samples in the CUB, Stanford Cars devkit or ImageFolder layout")
    e.add_argument("--domain", choices=DOMAINS, default="birds")
    e.add_argument("--n", type=int, required=True, help="number of images")
    e.add_argument("--size", type=int, default=96, help="image height (and width, unless --width)")
    e.add_argument("--width", type=int, default=None, help="image width (default: --size)")
    e.add_argument("--vary-aspect", action="store_true", help="vary widths (3/4, 1, 4/3 of the height)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--layout", choices=LAYOUTS, default="cub")
    e.add_argument("--ext", choices=["jpg", "png"], default="jpg")
    e.add_argument("--version", type=int, choices=VERSIONS, default=LATEST_VERSION, help="synthetic data version")
    g = sub.add_parser("gallery", help="write a contact sheet PNG per domain (one row per class)")
    g.add_argument("--out", type=Path, default=Path("docs"))
    g.add_argument("--size", type=int, default=96)
    g.add_argument("--cols", type=int, default=6)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--domain", choices=DOMAINS, nargs="*", default=list(DOMAINS))
    g.add_argument("--version", type=int, choices=VERSIONS, default=LATEST_VERSION, help="synthetic data version")
    sal = sub.add_parser("saliency", help="where label-free saliency maps point, per data version (markdown table)")
    sal.add_argument("--n", type=int, default=200, help="samples per domain and version")
    sal.add_argument("--size", type=int, default=192)
    sal.add_argument("--seed", type=int, default=424242)
    args = p.parse_args(argv)

    if args.command == "saliency":
        from fgviz.data.saliency import markdown

        print(markdown(args.n, args.size, args.seed))
        return

    if args.command == "export":
        size = (args.size, args.width or args.size)
        out = export(
            args.domain,
            args.n,
            args.out,
            size=size,
            seed=args.seed,
            layout=args.layout,
            ext=args.ext,
            vary_aspect=args.vary_aspect,
            version=args.version,
        )
        print(f"wrote {args.n} {args.domain} images ({args.layout} layout) to {out}")
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for domain in args.domain:
            sheet = contact_sheet(domain, args.size, args.cols, args.seed, version=args.version)
            path = args.out / f"gallery_{domain}.png"
            to_palette(sheet).save(path, optimize=True)
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
