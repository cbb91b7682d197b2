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

Loaded models live in `MODELS`, a `fgviz.weights.cache.ModelCache` bounded by bytes ($FGVIZ_MODEL_CACHE_GB, default
4 GiB), keyed on everything that changes a model (files or commit, device, dtype, wrapping method), the registry's
models pinned. The weights folder ($FGVIZ_WEIGHTS_DIR, else ``weights/``) is read at each call.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fgviz.methods import METHODS, FineGrainedModel
from fgviz.methods.base import ConversionError
from fgviz.weights import sources, transformers_vit
from fgviz.weights.cache import Admit, ModelCache, max_bytes_from_env
from fgviz.weights.download import COMMIT_RE, MissingFileError, check_repo_id, hub_download, weights_file
from fgviz.weights.format import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    WeightsError,
    load_checkpoint,
    load_folder,
    parameter_count,
    read_config,
)

ROOT = Path(__file__).resolve().parents[2]  # the repository (or installed package) root
ENV_WEIGHTS_DIR = "FGVIZ_WEIGHTS_DIR"


def weights_dir() -> Path:
    """The weights folder: $FGVIZ_WEIGHTS_DIR (read at each call, so a server set up after import sees it) or
    <repo>/weights. It holds registry.json, and the registry's ``weights/<name>`` sources resolve inside it."""
    env = os.environ.get(ENV_WEIGHTS_DIR, "").strip()
    return Path(env).expanduser() if env else ROOT / "weights"


def registry_path() -> Path:
    return weights_dir() / "registry.json"


def __getattr__(name: str) -> Any:
    """`WEIGHTS_DIR` and `REGISTRY_PATH`, the constants of earlier code, computed at each access: as constants they
    froze $FGVIZ_WEIGHTS_DIR at import."""
    if name == "WEIGHTS_DIR":
        return weights_dir()
    if name == "REGISTRY_PATH":
        return registry_path()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Spec:
    """A parsed model spec: kind is "local", "hub" or "timm"; `registry` is the registry name it came from."""

    kind: str
    value: str  # folder path, repo id, or timm model name
    revision: str | None = None
    method: str | None = None  # for timm: which method to wrap the backbone in
    registry: str | None = None

    @property
    def policy_kind(self) -> str:
        """What a spec policy judges: "registry" for a registry name, else `kind`."""
        return "registry" if self.registry is not None else self.kind


_registry_memo: dict[tuple[str, int, int], tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]] = {}


def _read_registry() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(models by name, model sets by name) from <weights folder>/registry.json, read again only when it changes."""
    path = registry_path()
    try:
        st = path.stat()
    except OSError:
        return {}, {}
    sig = (str(path), st.st_mtime_ns, st.st_size)
    memo = _registry_memo.get(sig)
    if memo is None:
        data = json.loads(path.read_text())
        memo = ({e["name"]: e for e in data["models"]}, {e["name"]: e for e in data.get("model_sets", [])})
        _registry_memo.clear()
        _registry_memo[sig] = memo
    return memo


def registry() -> dict[str, dict[str, Any]]:
    """Registry entries by name, from <weights folder>/registry.json (empty when the file is absent).

    Read again only when the file changes (every spec lookup consults it)."""
    return dict(_read_registry()[0])


def model_sets() -> dict[str, dict[str, Any]]:
    """The operator's model sets by name (registry.json's "model_sets"): a label, one spec per method and, for a set
    meant for one domain's photos, its `domain` (`space_default`: the set a public Space shows for uploads of that
    domain). Their specs are the operator's, so they are trusted as registry names are."""
    return dict(_read_registry()[1])


def _local_candidate(spec: str) -> Path:
    """Where a local spec points: ``weights/<name>`` inside the weights folder, a relative path under the
    repository root, or an absolute path."""
    if spec == "weights" or spec.startswith("weights/"):
        return weights_dir() / spec[len("weights/"):]
    path = Path(spec)
    return path if path.is_absolute() else ROOT / path


def parse_spec(spec: str, *, allowed_roots: tuple[Path, ...] | None = None) -> Spec:
    """Classify a spec string. Local paths must lie under `allowed_roots` when given (the app passes the weights
    folders, so a spec typed into the UI cannot read arbitrary files); registry names are the operator's and
    exempt. Runs on every `load`, cached or not, so a folder refused to one caller stays refused after another
    caller loaded it."""
    spec = spec.strip()
    if not spec:
        raise WeightsError("empty model spec")
    entry = registry().get(spec)
    name = spec if entry is not None else None
    if entry is not None:
        spec = entry["source"]
    if spec.startswith("timm:"):
        timm_name, _, method = spec[5:].partition("#")
        if not re.fullmatch(r"[\w.-]{1,120}", timm_name):
            raise WeightsError(f"invalid timm model name in {spec!r}")
        return Spec("timm", timm_name, method=method or None, registry=name)
    method = None
    if "#" in spec and not _local_candidate(spec).is_dir():  # org/name@rev#method, folder#method
        spec, _, method = spec.rpartition("#")
        if method not in METHODS:
            raise WeightsError(f"unknown method {method!r} after '#'; known: {sorted(METHODS)}")
    candidate = _local_candidate(spec)
    if candidate.is_dir() or spec.startswith(("./", "../", "/", "~", "weights/")) or "\\" in spec:
        resolved = candidate.resolve()
        # The registry is the operator's own file: its sources are trusted; the roots guard typed paths.
        inside = allowed_roots is None or any(resolved.is_relative_to(r.resolve()) for r in allowed_roots)
        if name is None and not inside:
            raise WeightsError(f"local path {spec!r} is outside the allowed weights folders")
        return Spec("local", str(resolved), method=method, registry=name)
    repo, at, revision = spec.partition("@")
    if repo.count("/") != 1:
        raise WeightsError(f"{spec!r} is neither a local folder, a registry name, org/name[@revision][#method] nor "
                           "timm:<name>[#method]")
    check_repo_id(repo, revision if at else None, spec=spec)
    return Spec("hub", repo, revision=revision or None, method=method, registry=name)


def _hub_config(repo_id: str, revision: str | None, what: str) -> tuple[Path, str | None, Any]:
    """config.json of a Hub repo, the commit it came from (None when the cache layout does not say; then the revision
    is used as given) and what it says, validated before any weight is downloaded: an fgviz config (dict) or a
    transformers ViT's fields (`transformers_vit.TransformersViT`)."""
    try:
        config_path = hub_download(repo_id, CONFIG_NAME, revision, what=what)
    except MissingFileError as e:
        raise WeightsError(f"{e}: not a model repo fgviz reads (fgviz's own {CONFIG_NAME} + {WEIGHTS_NAME}, or a "
                           "transformers ViT classifier; fgviz never loads pickles such as pytorch_model.bin)"
                           ) from None
    raw = transformers_vit.read_json(config_path, what)
    config = transformers_vit.check_config(raw, what) if transformers_vit.is_transformers_config(raw) else \
        read_config(config_path)
    commit = config_path.parent.name  # the snapshot folder of the HF cache is named by the commit
    return config_path, commit if COMMIT_RE.fullmatch(commit) else None, config


def _hub_weights(repo_id: str, config_path: Path, pinned: str | None, revision: str | None,
                 what: str) -> FineGrainedModel:
    weights_path = weights_file(repo_id, pinned, revision, what)
    return load_checkpoint(config_path, weights_path)


def load_hub(repo_id: str, revision: str | None = None, *, what: str | None = None,
             max_params: int | None = None) -> FineGrainedModel:
    """Download config.json + model.safetensors of an fgviz Hub repo (through the cache) and load them strictly.

    The weights are fetched at the commit the config came from, so a branch that moves in between cannot pair
    one commit's config with another's weights. A config describing more than `max_params` parameters is refused
    before the weights are downloaded. (`load` reads transformers repos too.)
    """
    what = what or repo_id + (f"@{revision}" if revision else "")
    config_path, commit, config = _hub_config(repo_id, revision, what)
    if not isinstance(config, dict):
        raise WeightsError(f"{what} is a transformers repo: load it with fgviz.load")
    check_params(parameter_count(config), max_params, what)
    return _hub_weights(repo_id, config_path, commit or revision, revision, what)


def as_method(source: sources.Source, method: str | None, what: str) -> FineGrainedModel:
    """The fgviz checkpoint of `source` as `method`: itself, or (`#method` naming another method) its plain ViT
    wrapped as that method in backbone mode, made of the same tensors."""
    model = source.module
    if method is None or method == model.method:
        return sources.hold(model, source)
    chosen = METHODS[method]
    net = model.plain_backbone()
    try:
        if net is None:
            raise ConversionError("backbone mode wraps a plain network, and this model has none")
        p = model.pretrained_cfg
        wrapped = chosen.from_timm(net, list(p.labels), {"mean": p.mean, "std": p.std, "crop_pct": p.crop_pct,
                                                         "crop_mode": p.crop_mode, "interpolation": p.interpolation})
    except (ConversionError, NotImplementedError) as e:
        raise WeightsError(f"{what}: a {METHODS[model.method].title} checkpoint cannot be shown as {chosen.title}: "
                           f"{e}") from None
    wrapped.provenance = {**model.provenance, "description": f"the {METHODS[model.method].title} checkpoint's "
                          f"network wrapped as {chosen.title}, not trained for it; {chosen.backbone_note()}."}
    wrapped.weights_kind = "backbone"
    return sources.hold(wrapped.eval(), source)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_params(n: int, max_params: int | None, what: str) -> None:
    """Refuse a model of more than `max_params` parameters (and buffers); None = no cap."""
    if max_params is not None and n > max_params:
        raise WeightsError(f"{what}: the model has {n:,} parameters, more than the {max_params:,} this app loads "
                           "for a typed model spec")


def count_params(model: torch.nn.Module) -> int:
    """Parameters and buffers of a built model: what `parameter_count` counts from a config."""
    return sum(t.numel() for t in itertools.chain(model.parameters(), model.buffers()))


MODELS = ModelCache(max_bytes_from_env())  # every model `load` returns, shared by all its callers


def _file_stamp(folder: Path) -> tuple[tuple[int, int] | None, ...]:
    """(mtime_ns, size) of a folder's config and weights: a model saved again into the folder gets a new key."""
    out = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            st = (folder / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _plan(parsed: Spec, spec: str, dev: torch.device, dtype: torch.dtype, method: str | None,
          max_params: int | None) -> tuple[tuple, Callable[[], tuple[tuple, Callable[[], FineGrainedModel], int]]]:
    """The cache key of a parsed spec, and its resolver (see `fgviz.weights.cache.Resolver`).

    Keys name everything that changes the model: the files (a local folder and their stamps; a Hub repo at a
    commit), the device, the dtype and the wrapping method. A Hub branch or tag, and a timm name, are keyed by the
    spec until the config says which commit they are at; the resolver then returns the commit's key, so the
    spellings of one commit share one model. The resolver sizes the model from its config (parameters and buffers
    at the dtype's width) and applies `max_params` before anything is downloaded or built.
    """
    where, dt = str(dev), str(dtype).removeprefix("torch.")
    width = torch.finfo(dtype).bits // 8  # bytes per parameter once loaded

    def sized(n: int) -> int:
        check_params(n, max_params, spec)
        return n * width

    def finish(model: FineGrainedModel, kind: str | None) -> FineGrainedModel:
        if kind is not None:
            model.weights_kind = kind
        model.name = spec
        return model.to(dev, dtype=dtype).eval()

    if parsed.kind == "local":
        folder = Path(parsed.value)
        stamp = _file_stamp(folder)
        key = ("local", parsed.value, stamp, parsed.method, where, dt)
        source_key = ("local", parsed.value, stamp, where, dt)

        def resolve_local():
            config = folder / CONFIG_NAME
            estimate = sized(parameter_count(read_config(config))) if config.is_file() else 0  # else: load_folder says

            def build() -> FineGrainedModel:
                def load() -> FineGrainedModel:
                    model = load_folder(folder)
                    model.weights_kind = model.provenance.get("weights_kind", "local")
                    return model.to(dev, dtype=dtype)

                model = as_method(sources.shared(source_key, load), parsed.method, spec)
                return finish(model, model.weights_kind)

            return key, build, 0 if sources.resident(source_key) else estimate

        return key, resolve_local
    if parsed.kind == "hub":
        rev = parsed.revision
        asked = parsed.method or method  # transformers repos take the column's method; fgviz ones are their own
        key = ("hub", parsed.value, rev, asked, where, dt) if rev and COMMIT_RE.fullmatch(rev) else \
            ("hub ref", parsed.value, rev, asked, where, dt)

        def resolve_hub():
            config_path, commit, config = _hub_config(parsed.value, rev, spec)
            pinned = commit or rev
            if isinstance(config, transformers_vit.TransformersViT):
                info = config
                estimate = sized(transformers_vit.parameter_count(info))
                source_key = transformers_vit.source_key(parsed.value, pinned, dev, dtype)
                chosen = asked or transformers_vit.default_method()
                build = lambda: finish(transformers_vit.load_repo(  # noqa: E731
                    parsed.value, info, pinned, rev, chosen, what=spec, device=dev, dtype=dtype), None)
            else:
                estimate = sized(parameter_count(config))
                source_key = ("hub", parsed.value, pinned, where, dt)
                chosen = parsed.method

                def load() -> FineGrainedModel:
                    model = _hub_weights(parsed.value, config_path, pinned, rev, spec)
                    model.weights_kind = "hub"
                    return model.to(dev, dtype=dtype)

                build = lambda: finish(as_method(sources.shared(source_key, load), chosen, spec), None)  # noqa: E731
            if sources.resident(source_key):
                estimate = 0  # another method of this checkpoint holds its weights: this one adds none
            target = ("hub", parsed.value, commit, chosen, where, dt) if commit else key
            return target, build, estimate

        return key, resolve_hub

    from fgviz.weights import timm_backbones

    wrap = method or parsed.method
    key = ("timm ref", parsed.value, wrap, where, dt)

    def resolve_timm():
        info = timm_backbones.read_timm_config(parsed.value)
        chosen, n = timm_backbones.plan_backbone(info, wrap)
        estimate = sized(n)  # the backbone; the method's own heads add little
        if sources.resident(timm_backbones.source_key(info, None, dev, dtype)):
            estimate = 0  # another method of this checkpoint holds its weights: this one adds none
        target = ("timm", parsed.value, info.commit, chosen, where, dt) if info.commit else key
        return target, lambda: finish(
            timm_backbones.load_timm_backbone(parsed.value, chosen, revision=info.commit, config=info, device=dev,
                                              dtype=dtype), "backbone"), estimate

    return key, resolve_timm


def load(
    spec: str,
    *,
    device: str | torch.device | None = None,
    half: bool | None = None,
    method: str | None = None,
    allowed_roots: tuple[Path, ...] | None = None,
    max_params: int | None = None,
    admit: Admit | None = None,
    cache: bool = True,
) -> FineGrainedModel:
    """Load a model from a spec (see module docstring), through the shared, byte-bounded `MODELS` cache.

    Device is cuda > mps > cpu unless given; half precision on GPU unless `half=False`. `method` picks the wrapper
    for ``timm:`` specs (default by architecture: ViTs -> transfg, ResNets -> tasn). The cache key is everything
    that changes the model (`_plan`); registry models are pinned. Concurrent loads of one spec share one download
    and one build.

    The checks run on every call, cached or not: local paths must lie under `allowed_roots` (None: anywhere), and
    a model of more than `max_params` parameters is refused (before its weights are downloaded when it is not
    cached). `admit(new)` is entered around a load that is not cached (see `fgviz.weights.cache.Admit`).

    Spellings that resolve to one commit or folder share one model object, whose `name` is the spec that loaded
    it first.
    """
    dev = torch.device(device) if device is not None else default_device()
    use_half = dev.type == "cuda" if half is None else half
    dtype = torch.float16 if use_half else torch.float32
    parsed = parse_spec(spec, allowed_roots=allowed_roots)
    key, resolve = _plan(parsed, spec.strip(), dev, dtype, method, max_params)
    if not cache:
        with admit(True) if admit is not None else contextlib.nullcontext():
            return resolve()[1]()
    model = MODELS.load(key, resolve, pin=parsed.registry is not None, admit=admit)
    if max_params is not None:  # counting walks every parameter: only when a cap applies
        check_params(count_params(model), max_params, spec)
    return model


def clear_cache() -> None:
    """Forget every loaded model and checkpoint (tests; an operator freeing memory)."""
    MODELS.clear()
    sources.clear()
