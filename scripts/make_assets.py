"""Regenerate the app's example images in assets/ from the synthetic generator (deterministic).

    python scripts/make_assets.py            # writes assets/{birds,cars}_*.jpg

Each JPEG carries its generator arguments in the comment (`fgviz.core.imageio.SYNTHETIC_KEY`), so the app can rebuild
the deciding-part ground truth for the pointing game when one of them (or any tagged generator image) is uploaded.
The images are larger than the demo models' inputs (384 px vs 192-196 px), like a real photo that the model resizes;
they are data version 2 (with nuisance parts), the version the demo models are trained on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fgviz.core.imageio import save_tagged, synthetic_tag  # noqa: E402
from fgviz.data.synthetic import make_sample  # noqa: E402

SEED = 7  # a stream used by no training or test split
SIZE = 384
# index -> class = index % 16: four different classes per domain, some one part apart (a fine-grained pair)
EXAMPLES = {"birds": (0, 17, 38, 63), "cars": (4, 21, 42, 59)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets")
    ap.add_argument("--size", type=int, default=SIZE)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for domain, indices in EXAMPLES.items():
        for i, index in enumerate(indices, start=1):
            s = make_sample(domain, index, seed=SEED, size=args.size)
            path = args.out / f"{domain}_{i}.jpg"
            save_tagged(s.image, path, synthetic_tag(domain, index, SEED, args.size, s.version))
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {s.class_name}")


if __name__ == "__main__":
    main()
