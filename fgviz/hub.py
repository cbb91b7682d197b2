"""Checkpoints: save, load and publish fgviz models as `config.json` + `model.safetensors` (+ `README.md`).

One loader, `load(spec)`, for every source:
- a local folder (``weights/<name>`` or any path holding config.json + model.safetensors);
- a registry name from ``weights/registry.json`` (e.g. ``transfg-birds-demo``);
- a Hub repo ``org/name`` with an optional ``@revision`` (branch, tag or commit);
- ``timm:<model_name>``: an ImageNet timm checkpoint wrapped as a method ("backbone mode", see fgviz.backbone).

Safety rules: weights are read from safetensors only (no pickle is ever unpickled from a download, no remote code
runs), configs are validated (known method, known argument names, sizes within bounds) before anything is
allocated, and loading is strict: a missing or unexpected key, or a shape mismatch, is an error naming the key.

Hub downloads honour HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME/HF_HUB_CACHE and HF_TOKEN, read when `load` is called (not
at import), use bounded timeouts, and fail with a `WeightsError` that names the spec, the repo and what was tried.
Each file is first probed with one HEAD request (`HUB_TIMEOUT_S`, no retries); if the Hub cannot be used (timeout,
refused connection, 5xx, 401/404 repo) the cached copy is used, or a clear error is raised at once instead of
huggingface_hub's own retry-with-backoff (up to 6 tries with a 60 s timeout each). The GET itself uses
huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT (env var, default 10 s) and at most 6 attempts without progress.
The weights are fetched at the commit the config.json came from; a cached commit is used without any request.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from fgviz.models import MODEL_CLASSES, FineGrainedModel
from fgviz.models.base import MAX_CLASSES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few kB; refuse anything absurd before parsing
ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = Path(os.environ.get("FGVIZ_WEIGHTS_DIR", ROOT / "weights"))
REGISTRY_PATH = WEIGHTS_DIR / "registry.json"
HUB_TIMEOUT_S = 10.0  # metadata (HEAD) requests; the GET timeout is huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT
MAX_PARAMS = 1_000_000_000  # a config describing more parameters is refused before allocation (paper models: ~87M)

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
# A branch, tag (letters, digits, '_', '-', '.', '/' as in refs/pr/1) or commit; no '..', '//', leading '/' or '.'.
_REVISION_RE = re.compile(r"^(?!.*\.\.)(?!.*//)(?![/.])[\w./-]{1,128}(?<![/.])$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class WeightsError(RuntimeError):
    """A model could not be loaded; the message says which spec, from where, and why."""


# --------------------------------------------------------------------------------------------------------------------
# Saving


def save_model(
    model: FineGrainedModel,
    out_dir: str | Path,
    *,
    provenance: dict[str, Any] | None = None,
    half: bool = False,
    card: str | None = None,
) -> Path:
    """Write `config.json`, `model.safetensors` and a model card into `out_dir` (created).

    `provenance` (dataset, recipe, command, metrics...) goes into config.json and the card. `half` stores floating
    weights as float16 (the demo models; they are loaded back into the model's own dtype).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        state[k] = v.half() if half and v.is_floating_point() else v
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "fgviz_method": model.method})
    config = {
        "fgviz_format": FORMAT_VERSION,
        "method": model.method,
        "config": model.config.to_dict(),
        "provenance": provenance or {},
    }
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(card if card is not None else model_card(config))
    return out


def model_card(config: dict[str, Any]) -> str:
    """A Hub model card with front matter, generated from config.json."""
    method = config["method"]
    prov = config.get("provenance", {})
    cfg = config["config"]
    lines = [
        "---",
        "library_name: fgviz",
        "tags: [fine-grained, explainability, " + method.replace("_", "-") + "]",
        "---",
        f"# {prov.get('name', method)}",
        "",
        f"An fgviz **{method}** model ({cfg.get('num_classes')} classes, input {cfg.get('img_size')}).",
        "Load it with `fgviz.load(\"<this repo or folder>\")`; weights are safetensors, loaded strictly.",
        "",
    ]
    if prov.get("description"):
        lines += [prov["description"], ""]
    for key in ("dataset", "recipe", "command", "steps", "seed"):
        if key in prov:
            lines.append(f"- **{key}**: `{prov[key]}`" if key == "command" else f"- **{key}**: {prov[key]}")
    metrics = prov.get("metrics", {})
    if metrics:
        show = lambda v: "" if v is None else v  # noqa: E731
        lines += ["", "## Metrics", "", "| metric | value | chance | randomised weights |", "|---|---|---|---|"]
        for name, m in metrics.items():
            if isinstance(m, dict):
                lines.append(f"| {name} | {m.get('value')} | {show(m.get('chance'))} | {show(m.get('randomized'))} |")
            else:
                lines.append(f"| {name} | {m} | | |")
        if any(name.endswith("_oracle") for name in metrics):
            lines += ["", "`*_oracle`: the same algorithm (DPPM crop, TASN sampler) fed a perfect part map, the "
                      "deciding-part mask itself: what it makes of ideal part attention, independent of the model."]
        evaluation = prov.get("evaluation")
        if evaluation:
            lines += ["", f"Recompute these figures with `{evaluation['command']}` ({evaluation['n']} freshly "
                      "generated "
                      f"{evaluation['domain']} samples, generator seed {evaluation['seed']}, never used in training)."]
    return "\n".join(lines) + "\n"


def push_to_hub(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                commit_message: str = "Upload fgviz model") -> str:
    """Create `repo_id` if needed and upload a saved model folder; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise WeightsError(f"{folder} has no {name}: save it with fgviz.hub.save_model first")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                             allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    return str(getattr(info, "commit_url", info))


# --------------------------------------------------------------------------------------------------------------------
# Loading


def read_config(path: str | Path) -> dict[str, Any]:
    """Parse and validate a config.json: a dict with a known method and a config dict."""
    path = Path(path)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise WeightsError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes: not an fgviz config")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise WeightsError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise WeightsError(f"{path} is not an fgviz config (needs 'method' and a 'config' object)")
    method = config.get("method")
    if not isinstance(method, str) or method not in MODEL_CLASSES:
        raise WeightsError(f"{path}: unknown method {method!r}; known: {sorted(MODEL_CLASSES)}")
    version = config.get("fgviz_format", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise WeightsError(f"{path}: fgviz_format {version!r} is not supported by this fgviz "
                           f"(reads format 1..{FORMAT_VERSION}; upgrade fgviz)")
    return config


def _model_config(config: dict[str, Any]) -> tuple[type[FineGrainedModel], Any]:
    """The model class and its validated config object, checked before anything big is allocated."""
    method = config["method"]
    cls = MODEL_CLASSES[method]
    raw = config["config"]
    # num_classes and labels are checked here first: the config dataclass fills default labels (one string per
    # class) before its own bounds check, so an absurd num_classes would allocate before being rejected.
    n = raw.get("num_classes")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES):
        raise WeightsError(f"invalid {method} config: num_classes={n!r} outside [1, {MAX_CLASSES}]")
    labels = raw.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) > MAX_CLASSES
                               or not all(isinstance(s, str) for s in labels)):
        raise WeightsError(f"invalid {method} config: labels must be a list of at most {MAX_CLASSES} strings")
    try:
        cfg = cls.config_class.from_dict(raw)
    except (TypeError, ValueError, OverflowError) as e:
        raise WeightsError(f"invalid {method} config: {e}") from None
    return cls, cfg


def _skeleton_state(cls: type[FineGrainedModel], cfg: Any) -> dict[str, torch.Tensor] | None:
    """The state dict (shapes and dtypes only, on the meta device) the config would build, or None if the model
    cannot be built on the meta device. Raises WeightsError when it exceeds MAX_PARAMS."""
    try:
        with torch.device("meta"):
            skeleton = cls(cfg)
    except (NotImplementedError, RuntimeError):  # a model whose __init__ needs real data: skip the pre-check
        return None
    state = skeleton.state_dict()
    n = sum(v.numel() for v in state.values())
    if n > MAX_PARAMS:
        raise WeightsError(f"{cls.method} config describes {n:,} parameters, more than fgviz loads "
                           f"({MAX_PARAMS:,}); refusing to allocate it")
    return state


def build_from_config(config: dict[str, Any]) -> FineGrainedModel:
    """Build the (randomly initialised) model a parsed config.json describes; sizes are checked first."""
    cls, cfg = _model_config(config)
    _skeleton_state(cls, cfg)
    return cls(cfg)


def _dtype_kind(dtype: str | torch.dtype) -> str:
    if isinstance(dtype, torch.dtype):
        return "float" if dtype.is_floating_point else "bool" if dtype == torch.bool else "int"
    return "float" if dtype.startswith(("F", "BF")) else "bool" if dtype == "BOOL" else "int"


def _check_header(weights_path: str | Path, own: dict[str, torch.Tensor], owner: str,
                  method: str | None = None) -> None:
    """Compare the safetensors header (keys, shapes, dtype kinds; no tensor data is read) with `own`."""
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            keys = list(f.keys())
            meta = f.metadata() or {}
            header = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in keys}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{weights_path} is not a readable safetensors file (corrupt or truncated?): {e}") from None
    saved_for = meta.get("fgviz_method")
    if method is not None and saved_for is not None and saved_for != method:
        raise WeightsError(f"{weights_path} holds {saved_for} weights but the config says method {method!r}")
    missing = sorted(set(own) - set(header))
    unexpected = sorted(set(header) - set(own))
    if missing or unexpected:
        raise WeightsError(
            f"{weights_path} does not match the {owner} config: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    bad_shape = [k for k in own if header[k][0] != tuple(own[k].shape)]  # in the model's own order
    if bad_shape:
        k = bad_shape[0]
        more = f" (and {len(bad_shape) - 1} more: {bad_shape[1:4]}{' ...' if len(bad_shape) > 4 else ''})" \
            if len(bad_shape) > 1 else ""
        raise WeightsError(f"{weights_path}: shape mismatch for {k}: checkpoint {header[k][0]}, "
                           f"model {tuple(own[k].shape)}{more}")
    for k in own:
        if _dtype_kind(header[k][1]) != _dtype_kind(own[k].dtype):
            raise WeightsError(f"{weights_path}: dtype mismatch for {k}: checkpoint {header[k][1]}, "
                               f"model {own[k].dtype}")


def load_state_strict(model: torch.nn.Module, weights_path: str | Path) -> None:
    """Load safetensors into `model`; any missing/unexpected key or shape mismatch is an error naming it.

    The header is checked before any tensor is read."""
    _check_header(weights_path, model.state_dict(), type(model).__name__, getattr(model, "method", None))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{weights_path} is not a readable safetensors file (corrupt or truncated?): {e}") from None
    model.load_state_dict(state, strict=True)


def load_checkpoint(config_path: str | Path, weights_path: str | Path) -> FineGrainedModel:
    """Validate config.json, check the weights' header against the model it describes (on the meta device, so a
    mismatch or an absurd size costs nothing), then build the model and load the weights strictly."""
    config = read_config(config_path)
    cls, cfg = _model_config(config)
    skeleton = _skeleton_state(cls, cfg)
    if skeleton is not None:
        _check_header(weights_path, skeleton, cls.__name__, cls.method)
    model = cls(cfg)
    load_state_strict(model, weights_path)
    model.provenance = config.get("provenance", {})
    return model.eval()


def load_folder(folder: str | Path) -> FineGrainedModel:
    """Load a local fgviz model folder (config.json + model.safetensors)."""
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise WeightsError(f"{folder} has no {CONFIG_NAME}")
    if not (folder / WEIGHTS_NAME).is_file():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = f" (found {pickles}: fgviz never loads pickles; convert them to safetensors)" if pickles else ""
        raise WeightsError(f"{folder} has no {WEIGHTS_NAME}{hint}")
    return load_checkpoint(folder / CONFIG_NAME, folder / WEIGHTS_NAME)


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


def check_repo_id(repo_id: str, revision: str | None = None, *, spec: str | None = None) -> None:
    """Reject malformed repo ids and revisions (a revision becomes a file name under the cache's refs/ folder, so
    ``..`` and the like must never reach huggingface_hub)."""
    shown = spec if spec is not None else repo_id + (f"@{revision}" if revision is not None else "")
    ok = bool(_REPO_RE.fullmatch(repo_id)) and ".." not in repo_id and "--" not in repo_id
    if ok:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            ok = False
    if not ok:
        raise WeightsError(f"{shown!r}: {repo_id!r} is not a valid Hub repo id (org/name: letters, digits, '-', '_', "
                           "'.'; no '--' or '..')")
    if revision is not None and not _REVISION_RE.fullmatch(revision):
        raise WeightsError(f"{shown!r}: {revision!r} is not a valid revision (a branch, tag or commit hash)")


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


def _hub_kwargs() -> dict[str, Any]:
    """Hub settings read now from the environment (huggingface_hub reads its constants once, at import)."""
    cache = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None
    )
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return {
        "endpoint": (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None,
        "cache_dir": cache,
        "local_files_only": offline,
        "token": os.environ.get("HF_TOKEN") or None,
        "etag_timeout": HUB_TIMEOUT_S,
    }


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError plus the HTTP client's own errors (httpx2 for huggingface_hub 2.x, httpx for 1.x): timeouts and
    dropped connections during a download surface as those, which are not OSErrors."""
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        errors.append(module.HTTPError)
    return tuple(errors)


def _describe(error: BaseException) -> str:
    """A one-line reason for a failed Hub request."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    name = type(error).__name__
    if status is not None:
        msg = str(error).strip().splitlines()
        return f"HTTP {status} ({msg[0] if msg else name})"
    if "Timeout" in name:
        return f"no answer within {HUB_TIMEOUT_S:g} s ({name})"
    return f"{name}: {error}" if str(error) else name


class _MissingFileError(WeightsError):
    """The repo and revision exist but the file does not."""


def _probe(repo_id: str, filename: str, revision: str | None, kw: dict[str, Any]) -> BaseException | None:
    """One HEAD on the file's resolve URL, with HUB_TIMEOUT_S and no retries.

    Returns None when the Hub answered with the file's metadata, or the error when it could not be used (timeout,
    refused connection, 5xx, 401...): the caller then falls back to the cache, as hf_hub_download would, but without
    its minute-long retry-with-backoff (a hung or failing endpoint would otherwise block `load` for minutes).
    Revision-not-found and entry-not-found are raised (huggingface_hub errors).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    from fgviz import __version__

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=kw["endpoint"])
    extra = {"retry_on_errors": False} if "retry_on_errors" in inspect.signature(get_hf_file_metadata).parameters \
        else {}  # huggingface_hub < 2 has no such argument (and does not retry a HEAD)
    try:
        get_hf_file_metadata(url, token=kw["token"], timeout=HUB_TIMEOUT_S, library_name="fgviz",
                             library_version=__version__, endpoint=kw["endpoint"], **extra)
    except (RevisionNotFoundError, EntryNotFoundError):
        raise
    except _network_errors() as e:
        return e
    return None


def hub_download(repo_id: str, filename: str, revision: str | None, *, what: str,
                 shown_revision: str | None = None) -> Path:
    """hf_hub_download with bounded failure time and fgviz's error messages (what = the spec, for the message;
    shown_revision = the revision to name in messages when `revision` is the commit it resolved to)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from fgviz import __version__

    check_repo_id(repo_id, revision)
    kw = _hub_kwargs()
    shown = shown_revision or revision
    where = f"repo {repo_id!r}" + (f" at revision {shown!r}" if shown else "") + f" on {kw['endpoint'] or 'the Hub'}"
    if revision is not None and _COMMIT_RE.fullmatch(revision):
        # A commit is immutable: a cached copy is the file, no need to ask the Hub.
        cached = try_to_load_from_cache(repo_id, filename, cache_dir=kw["cache_dir"], revision=revision)
        if isinstance(cached, str):
            return Path(cached)
    probe_error = None
    try:
        if not kw["local_files_only"]:
            probe_error = _probe(repo_id, filename, revision, kw)
            if probe_error is not None:
                kw = {**kw, "local_files_only": True}  # the Hub is unusable right now: the cache or nothing
        return Path(hf_hub_download(repo_id, filename, revision=revision, library_name="fgviz",
                                    library_version=__version__, **kw))
    except RepositoryNotFoundError:
        raise WeightsError(f"{what}: {where} does not exist (or is private or gated: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{what}: {where}: no such revision") from None
    except LocalEntryNotFoundError as e:
        if isinstance(probe_error, RepositoryNotFoundError):
            raise WeightsError(f"{what}: {where} does not exist (or is private or gated: set HF_TOKEN)") from None
        if probe_error is not None:
            raise WeightsError(f"{what}: {filename} from {where} is not in the local cache and the Hub could not be "
                               f"used: {_describe(probe_error)}") from None
        raise WeightsError(f"{what}: {filename} from {where} is not in the local cache and offline mode is on "
                           f"(HF_HUB_OFFLINE=1): {e}") from None
    except EntryNotFoundError:
        raise _MissingFileError(f"{what}: {where} has no {filename}") from None
    except (*_network_errors(), ValueError) as e:  # timeouts, dropped connections, HTTP errors, size mismatch
        raise WeightsError(f"{what}: downloading {filename} from {where} failed: {_describe(e)}") from None


def load_hub(repo_id: str, revision: str | None = None, *, what: str | None = None) -> FineGrainedModel:
    """Download config.json + model.safetensors of a Hub repo (through the cache) and load them strictly.

    The weights are fetched at the commit the config came from, so a branch that moves in between cannot pair
    one commit's config with another's weights.
    """
    what = what or repo_id + (f"@{revision}" if revision else "")
    try:
        config_path = hub_download(repo_id, CONFIG_NAME, revision, what=what)
    except _MissingFileError as e:
        raise WeightsError(f"{e}: not an fgviz model repo (one holds {CONFIG_NAME} + {WEIGHTS_NAME}, written by "
                           "fgviz.hub.save_model; fgviz never loads pickles such as pytorch_model.bin)") from None
    read_config(config_path)  # fail on a bad config before downloading the weights
    commit = config_path.parent.name
    pinned = commit if _COMMIT_RE.fullmatch(commit) else revision
    try:
        weights_path = hub_download(repo_id, WEIGHTS_NAME, pinned, what=what, shown_revision=revision)
    except _MissingFileError:
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
        from fgviz.backbone import load_timm_backbone

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
