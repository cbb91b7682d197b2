"""The command line of `python app.py`: its options and the `Explorer` they describe (the app itself only binds it
to Gradio and launches)."""

from __future__ import annotations

import argparse
import logging
import os

from fgviz.explorer.policy import POLICIES, SpecPolicy
from fgviz.explorer.session import Explorer, env_specs, resolve_device
from fgviz.weights import hub


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="fgviz explorer (Gradio app)")
    ap.add_argument("--host", default=None, help="bind address (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    ap.add_argument("--port", type=int, default=None, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link (needs the internet)")
    ap.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    ap.add_argument("--model", action="append", default=[], metavar="SPEC", help="offer another model (registry "
                    "name, weights folder, org/repo[@rev], timm:<name>); repeatable; also $FGVIZ_MODELS")
    ap.add_argument("--spec-policy", choices=sorted(POLICIES), default=None, help="which typed model specs load: "
                    "registry, hub (+ Hub repos, timm:; for a public Space) or any (+ local folders); default "
                    "$FGVIZ_SPEC_POLICY, else hub on a Space and any elsewhere")
    ap.add_argument("--model-cache-gb", type=float, default=None, help="bound of the loaded-model cache in GiB "
                    "(default $FGVIZ_MODEL_CACHE_GB, else 4)")
    return ap.parse_args(argv)


def explorer(args: argparse.Namespace) -> Explorer:
    """The app's explorer for parsed options (and the log's format, the loaded-model cache's bound)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.model_cache_gb is not None:
        hub.MODELS.resize(int(args.model_cache_gb * (1 << 30)))
    return Explorer(device=resolve_device(args.device or os.environ.get("FGVIZ_DEVICE", "auto")),
                    extra_specs=[*env_specs(), *args.model], policy=SpecPolicy.from_env(args.spec_policy))


__all__ = ["explorer", "parse_args"]
