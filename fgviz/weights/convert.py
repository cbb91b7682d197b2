"""Convert original checkpoints into fgviz models: official TransFG `.bin` files and Google ViT `.npz` inits.

Two conversions, each with an explicit key map and a shape assert per key (nanoGPT's ``from_pretrained`` style):

1. ``transfg-official``: a checkpoint written by TACJu/TransFG's ``train.py`` (``torch.save({'model': state_dict,
   'amp': ...})``, keys ``transformer.embeddings.*``, ``transformer.encoder.layer.{i}.*``, ``part_layer``,
   ``part_norm``, ``part_head``; see docs methods.md §1.8) becomes a `TransFG` saved by
   `fgviz.weights.format.save_model`.
   Read with ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary objects.
   The checkpoint stores no config: embed dim, depth, MLP width, patch size and the token grid are read from the
   tensor shapes, the stride is inferred from the grid (or checked against ``--stride``), the number of heads is
   not stored anywhere and comes from ``--num-heads`` (12 for ViT-B). Official q/k/v/out Linear layers become
   timm's fused ``attn.qkv`` (rows q, k, v) and ``attn.proj``; ``part_layer`` becomes the last timm block.

2. ``vit-npz``: a training initialisation from an original Google ViT ``.npz`` (ViT-B_16 / B_32 ImageNet-21k,
   Flax names such as ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``). The npz is
   read by timm's own Flax loader (``VisionTransformer.load_pretrained`` -> ``_load_weights``) into a plain timm ViT
   of the npz's geometry, then copied into the method:
   - TransFG (`fgviz.methods.transfg.weights`): blocks 0..L-2, patch conv (reused at the new stride), CLS,
     final norm (-> ``part_norm``); the part layer (block L-1) and the head stay random, as the official loader
     (it skips children named "part*").
   - RAMS-Trans: all blocks and the norm; the pretrained CLS goes into every scale token and the CLS
     position-embedding row into every prefix row (official: one copy per scale); the head stays random.
   What differs from the official loaders: the position-embedding grid is resampled with bilinear
   ``align_corners=True`` interpolation, which is exactly ``scipy.ndimage.zoom(order=1)`` of the originals
   (timm's own resampler uses ``align_corners=False``, which is not); the ImageNet-21k ``pre_logits`` and ``head``
   of the npz are not used (the official code does not use them for fine-tuning either).

CLI::

    python -m fgviz.convert transfg-official CKPT.bin --out DIR [--num-heads 12] [--img-size 448] [--stride 12]
        [--num-classes N] [--labels labels.txt] [--crop-pct 0.7467]
    python -m fgviz.convert vit-npz ViT-B_16.npz --out DIR [--method transfg|rams_trans] [--num-classes 200]
        [--img-size 448] [--stride 12] [--labels labels.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from fgviz.methods import METHODS
from fgviz.methods.base import ConversionError
from fgviz.methods.transfg import weights as transfg_weights  # official TransFG checkpoints are TransFG's own
from fgviz.weights.format import save_model

NPZ_METHODS = [m for m, meth in METHODS.items() if meth.starts_from_npz]  # the default method first (registry order)


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not labels:
        raise ConversionError(f"{path} holds no labels (one class name per line)")
    return labels


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fgviz.convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    o = sub.add_parser("transfg-official", help="official TACJu/TransFG checkpoint (.bin) -> fgviz TransFG")
    o.add_argument("checkpoint", type=Path)
    o.add_argument("--out", type=Path, required=True, help="output folder (config.json + model.safetensors)")
    o.add_argument("--num-heads", type=int, default=12, help="attention heads (not stored in the checkpoint)")
    o.add_argument("--img-size", type=int, default=448)
    o.add_argument("--stride", type=int, default=None, help="patch stride (default: inferred from the grid)")
    o.add_argument("--num-classes", type=int, default=None, help="checked against part_head")
    o.add_argument("--labels", default=None, help="text file, one class name per line")
    o.add_argument("--crop-pct", type=float, default=448 / 600, help="test resize: img_size / crop_pct (600 px)")

    n = sub.add_parser("vit-npz", help="Google ViT .npz -> TransFG / RAMS-Trans initialisation for training")
    n.add_argument("npz", type=Path)
    n.add_argument("--out", type=Path, required=True)
    n.add_argument("--method", choices=NPZ_METHODS, default=NPZ_METHODS[0])
    n.add_argument("--num-classes", type=int, default=200)
    n.add_argument("--img-size", type=int, default=448)
    n.add_argument("--stride", type=int, default=None, help="TransFG patch stride (default 3/4 of the patch)")
    n.add_argument("--labels", default=None, help="text file, one class name per line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels = _read_labels(args.labels)
    command = "python -m fgviz.convert " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.command == "transfg-official":
        state = transfg_weights.load_official_checkpoint(args.checkpoint)
        model = transfg_weights.convert_official(
            state,
            num_heads=args.num_heads,
            img_size=args.img_size,
            stride=args.stride,
            num_classes=args.num_classes,
            labels=labels,
            crop_pct=args.crop_pct,
        )
        provenance = {
            "description": "Converted from an official TransFG checkpoint (github.com/TACJu/TransFG).",
            "source": args.checkpoint.name,
            "source_sha256": _sha256(args.checkpoint),
            "command": command,
        }
    else:
        num_classes = len(labels) if labels is not None else args.num_classes
        model = METHODS[args.method].init_from_npz(args.npz, num_classes=num_classes, img_size=args.img_size,
                                                   stride=args.stride, labels=labels)
        provenance = {
            "description": f"{METHODS[args.method].title} initialised from the Google ViT checkpoint {args.npz.name}; "
            "the parts its official loader leaves random (the head, TransFG's part layer) are random. Train before "
            "use: predictions are meaningless.",
            "weights_kind": "random",
            "source": args.npz.name,
            "source_sha256": _sha256(args.npz),
            "command": command,
        }
    out = save_model(model, args.out, provenance=provenance)
    c = model.config
    print(f"wrote {out} ({type(model).__name__}, {c.num_classes} classes, {c.img_size} px)")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    """`main` with conversion errors as one line on stderr and exit status 2."""
    try:
        return main(argv)
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run())
