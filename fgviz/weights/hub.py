"""Where models come from: model specs, the registry, Hugging Face Hub downloads, and `load`.

One loader, `load(spec)`, for every source:
- a local folder (``weights/<name>`` or any path holding config.json + model.safetensors);
- a registry name from ``weights/registry.json`` (e.g. ``transfg-birds-demo``);
- a Hub repo ``org/name`` with an optional ``@revision`` (branch, tag or commit);
- ``timm:<model_name>``: an ImageNet timm checkpoint wrapped as a method (backbone mode,
  `fgviz.weights.timm_backbones`).

Every source is read through `fgviz.weights.format` (safetensors only, validated configs, strict keys).

Hub files come through `fgviz.weights.download` (bounded timeouts, cache fallback, clear errors); the weights are
fetched at the commit the config.json came from.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fgviz.methods import FineGrainedModel
from fgviz.weights.download import COMMIT_RE, MissingFileError, check_repo_id, hub_download
from fgviz.weights.format import CONFIG_NAME, WEIGHTS_NAME, WeightsError, load_checkpoint, load_folder, read_config

ROOT = Path(__file__).resolve().parents[2]  # the repository (or installed package) root
WEIGHTS_DIR = Path(os.environ.get("FGVIZ_WEIGHTS_DIR", ROOT / "weights"))
REGISTRY_PATH = WEIGHTS_DIR / "registry.json"


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: kind is "local", "hub" or "timm"."""

    kind: str
    value: str  # folder path, repo id, or timm model name
    revision: str | None = None
    method: str | None = None  # for timm: which method to wrap the backbone in


def registry() -> dict[str, dict[str, Any]]:
    """Registry entries by name, from weights/registry.json (empty when the file is absent)."""
    if not REGISTRY_PATH.is_file():
        return {}
    entries = json.loads(REGISTRY_PATH.read_text())["models"]
    return {e["name"]: e for e in entries}


def parse_spec(spec: str, *, allowed_roots: tuple[Path, ...] | None = None) -> Spec:
    """Classify a spec string. Local paths must lie under `allowed_roots` when given (the app passes the weights
    folders, so a spec typed into the UI cannot read arbitrary files)."""
    spec = spec.strip()
    if not spec:
        raise WeightsError("empty model spec")
    entry = registry().get(spec)
    if entry is not None:
        spec = entry["source"]
    if spec.startswith("timm:"):
        name, _, method = spec[5:].partition("#")
        if not re.fullmatch(r"[\w.-]{1,120}", name):
            raise WeightsError(f"invalid timm model name in {spec!r}")
        return Spec("timm", name, method=method or None)
    path = Path(spec)
    candidate = path if path.is_absolute() else (ROOT / path)
    if candidate.is_dir() or spec.startswith(("./", "../", "/", "~", "weights/")) or "\\" in spec:
        resolved = candidate.resolve()
        if allowed_roots is not None and not any(resolved.is_relative_to(r.resolve()) for r in allowed_roots):
            raise WeightsError(f"local path {spec!r} is outside the allowed weights folders")
        return Spec("local", str(resolved))
    repo, at, revision = spec.partition("@")
    if repo.count("/") != 1:
        raise WeightsError(f"{spec!r} is neither a local folder, a registry name, org/name[@revision] nor timm:<name>")
    check_repo_id(repo, revision if at else None, spec=spec)
    return Spec("hub", repo, revision=revision or None)


def load_hub(repo_id: str, revision: str | None = None, *, what: str | None = None) -> FineGrainedModel:
    """Download config.json + model.safetensors of a Hub repo (through the cache) and load them strictly.

    The weights are fetched at the commit the config came from, so a branch that moves in between cannot pair
    one commit's config with another's weights.
    """
    what = what or repo_id + (f"@{revision}" if revision else "")
    try:
        config_path = hub_download(repo_id, CONFIG_NAME, revision, what=what)
    except MissingFileError as e:
        raise WeightsError(f"{e}: not an fgviz model repo (one holds {CONFIG_NAME} + {WEIGHTS_NAME}, written by "
                           "fgviz.weights.save_model; fgviz never loads pickles such as pytorch_model.bin)"
                           ) from None
    read_config(config_path)  # fail on a bad config before downloading the weights
    commit = config_path.parent.name
    pinned = commit if COMMIT_RE.fullmatch(commit) else revision
    try:
        weights_path = hub_download(repo_id, WEIGHTS_NAME, pinned, what=what, shown_revision=revision)
    except MissingFileError:
        raise WeightsError(
            f"{what}: repo {repo_id!r} has no {WEIGHTS_NAME}; fgviz loads safetensors only and never unpickles "
            "a download (a pytorch_model.bin must be converted to safetensors by its author)"
        ) from None
    return load_checkpoint(config_path, weights_path)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_cache: dict[tuple[str, str, str | None], FineGrainedModel] = {}
_cache_lock = threading.Lock()


def load(
    spec: str,
    *,
    device: str | torch.device | None = None,
    half: bool | None = None,
    method: str | None = None,
    allowed_roots: tuple[Path, ...] | None = None,
    cache: bool = True,
) -> FineGrainedModel:
    """Load a model from a spec (see module docstring); cached per (spec, device, method).

    Device is cuda > mps > cpu unless given; half precision on GPU unless `half=False`. `method` picks the wrapper
    for ``timm:`` specs (default by architecture: ViTs -> transfg, ResNets -> tasn).
    """
    dev = torch.device(device) if device is not None else default_device()
    key = (spec, str(dev), method)
    with _cache_lock:
        if cache and key in _cache:
            return _cache[key]
    parsed = parse_spec(spec, allowed_roots=allowed_roots)
    if parsed.kind == "local":
        model = load_folder(parsed.value)
        model.weights_kind = model.provenance.get("weights_kind", "local")
    elif parsed.kind == "hub":
        model = load_hub(parsed.value, parsed.revision, what=spec)
        model.weights_kind = "hub"
    else:
        from fgviz.weights.timm_backbones import load_timm_backbone

        model = load_timm_backbone(parsed.value, method=method or parsed.method)
        model.weights_kind = "backbone"
    model.name = spec
    use_half = dev.type == "cuda" if half is None else half
    model = model.to(dev, dtype=torch.float16 if use_half else torch.float32).eval()
    if cache:
        with _cache_lock:
            _cache[key] = model
    return model


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
