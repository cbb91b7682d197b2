"""Command line: `python -m fgviz explain IMAGE... [--model SPEC ...] --out DIR`.

Writes, for every image, `DIR/<image stem>.zip` with every figure of the explorer as PNG and `numbers.json` (the
same export as the app's Export tab), or a folder `DIR/<image stem>/` with `--no-zip`. Without `--model`, the
registry's TransFG, RAMS-Trans and TASN models of the domain are used (the domain is read from a generator image's
tag, else `--domain`). Exit status 2 for an unreadable image or model, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fgviz.methods import METHODS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fgviz", description="fgviz: fine-grained attention explorer")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="explain images and export every figure as PNG + numbers.json")
    ex.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    ex.add_argument("--model", action="append", default=[], metavar="SPEC",
                    help="registry name, weights folder, org/repo[@revision] or timm:<name>; repeatable "
                         "(default: the registry models of the domain)")
    ex.add_argument("--method", action="append", choices=sorted(METHODS), default=[],
                    help="with the registry defaults: only these methods (repeatable); with a timm: spec: the method "
                         "to wrap it in")
    ex.add_argument("--domain", choices=("birds", "cars"), default=None,
                    help="domain of the registry models (default: from the image's generator tag, else birds)")
    ex.add_argument("--out", type=Path, required=True, help="output folder")
    ex.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    ex.add_argument("--cmap", default="viridis")
    ex.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    ex.add_argument("--norm", choices=("shared", "panel"), default="shared")
    ex.add_argument("--fusion", choices=("mean", "max", "min"), default="mean", help="rollout head fusion")
    ex.add_argument("--discard", type=float, default=0.0, help="rollout discard ratio")
    ex.add_argument("--no-zip", action="store_true", help="write a folder per image instead of a ZIP")
    return ap


def _targets(explorer, args: argparse.Namespace, domain: str) -> list[tuple[str, str]]:
    """(spec, method) pairs to run."""
    from fgviz.weights import hub

    if not args.model:
        methods = args.method or [m.name for m in METHODS.values() if m.overview_default]
        return [(explorer.default_spec(m, domain), m) for m in methods]
    out = []
    for spec in args.model:
        method = explorer.spec_method(spec)
        if method is None and args.method:
            method = args.method[0]
        if method is None:  # a Hub or timm spec: load it to learn its method
            method = hub.load(spec, device=explorer.device, allowed_roots=None).method
        out.append((spec, method))
    return out


def explain_command(args: argparse.Namespace) -> int:
    from fgviz.core.imageio import ImageError, synthetic_params
    from fgviz.explorer import views
    from fgviz.explorer.export import figure_set, write_folder, write_zip
    from fgviz.explorer.policy import SpecPolicy
    from fgviz.explorer.session import Explorer
    from fgviz.viz.panels import Style
    from fgviz.weights.format import WeightsError

    # A command line is run by the machine's own user: any spec, any local folder, no cap or rate.
    explorer = Explorer(device=args.device, extra_specs=args.model, policy=SpecPolicy.trusted())
    explorer.allowed_roots = None
    style = Style(cmap=args.cmap, alpha=args.alpha, norm=args.norm)
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.images:
        try:
            iid = explorer.add_image(path)
            tag = synthetic_params(explorer.image(iid))
            domain = args.domain or (tag["domain"] if tag else "birds")
            expls, sources = {}, {}
            for spec, method in _targets(explorer, args, domain):
                if method in expls:
                    print(f"{path}: {method} given twice; keeping the first ({expls[method].model_name})",
                          file=sys.stderr)
                    continue
                key = explorer.explain(iid, spec, method)
                expls[method], sources[method] = explorer.get(key), key.describe()
            fs = figure_set(expls, style, fusion=args.fusion, discard=args.discard, sources=sources)
            meta = {"image": str(path), "domain": domain, "style": {"cmap": style.cmap, "alpha": style.alpha,
                                                                     "norm": style.norm}}
            if args.no_zip:
                dest = write_folder(args.out / path.stem, fs, meta)
            else:
                dest = write_zip(args.out / f"{path.stem}.zip", fs, meta)
            preds = ", ".join(f"{views.title(m)}: {e.prediction}" for m, e in expls.items())
            print(f"{path} -> {dest} ({len(fs.images)} images, {len(fs.charts)} charts; {preds})")
        except (ImageError, WeightsError, KeyError, ValueError) as e:
            print(f"{path}: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
            status = 2
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "explain":
        return explain_command(args)
    return 1  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
