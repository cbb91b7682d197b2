"""Hugging Face Hub I/O with bounded failure times: one file download (`hub_download`) and publishing.

Hub downloads honour HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME/HF_HUB_CACHE and HF_TOKEN, read at each call (not at
import), use bounded timeouts, and fail with a `WeightsError` that names the spec, the repo and what was tried. Each
file is first probed with one HEAD request (`HUB_TIMEOUT_S`, no retries); if the Hub cannot be used (timeout, refused
connection, 5xx, 401/404 repo) the cached copy is used, or a clear error is raised at once instead of
huggingface_hub's own retry-with-backoff (up to 6 tries with a 60 s timeout each). The GET itself uses
huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT (env var, default 10 s) and at most 6 attempts without progress. A file at
a commit hash that is in the cache is used without any request.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fgviz.core import __version__
from fgviz.weights.format import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, WeightsError

HUB_TIMEOUT_S = 10.0  # metadata (HEAD) requests; the GET timeout is huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
# A branch, tag (letters, digits, '_', '-', '.', '/' as in refs/pr/1) or commit; no '..', '//', leading '/' or '.'.
_REVISION_RE = re.compile(r"^(?!.*\.\.)(?!.*//)(?![/.])[\w./-]{1,128}(?<![/.])$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")

# (filename, bytes done, bytes in all) -> None: told of each download's progress (the app's progress bar)
Progress = Callable[[str, int, int], None]
_PROGRESS: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("fgviz_download_progress", default=None)


@contextlib.contextmanager
def progress(callback: Progress) -> Iterator[None]:
    """Within this block (this thread), every file `hub_download` fetches reports its progress to `callback`, with its
    size: the app shows a first load's download as a bar while other users are served."""
    token = _PROGRESS.set(callback)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _tqdm_class(callback: Progress, filename: str) -> type:
    """A tqdm that reports to `callback` (huggingface_hub draws its download bars with the class it is given)."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.size, self.done = int(kwargs.get("total") or 0), int(kwargs.get("initial") or 0)
            kwargs["disable"] = True  # no terminal bar: the callback shows it
            super().__init__(*args, **kwargs)
            callback(filename, self.done, self.size)

        def update(self, n: float | None = 1) -> bool | None:
            self.done += int(n or 0)  # a disabled tqdm counts nothing itself
            callback(filename, self.done, self.size)
            return None

    return Reporting


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


class MissingFileError(WeightsError):
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

    check_repo_id(repo_id, revision)
    kw = _hub_kwargs()
    shown = shown_revision or revision
    where = f"repo {repo_id!r}" + (f" at revision {shown!r}" if shown else "") + f" on {kw['endpoint'] or 'the Hub'}"
    if revision is not None and COMMIT_RE.fullmatch(revision):
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
        report = _PROGRESS.get()
        extra = {"tqdm_class": _tqdm_class(report, filename)} if report is not None else {}
        return Path(hf_hub_download(repo_id, filename, revision=revision, library_name="fgviz",
                                    library_version=__version__, **kw, **extra))
    except RepositoryNotFoundError:
        raise WeightsError(f"{what}: {where} does not exist (or is private or gated: set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise WeightsError(f"{what}: {where}: no such revision") from None
    except LocalEntryNotFoundError:
        if isinstance(probe_error, RepositoryNotFoundError):
            raise WeightsError(f"{what}: {where} does not exist (or is private or gated: set HF_TOKEN)") from None
        if probe_error is not None:
            raise WeightsError(f"{what}: {filename} from {where} is not in the local cache and the Hub could not be "
                               f"used: {_describe(probe_error)}") from None
        raise WeightsError(f"{what}: {filename} from {where} is not in the local cache and offline mode is on "
                           "(HF_HUB_OFFLINE=1; unset it to download)") from None
    except EntryNotFoundError:
        raise MissingFileError(f"{what}: {where} has no {filename}") from None
    except (*_network_errors(), ValueError) as e:  # timeouts, dropped connections, HTTP errors, size mismatch
        raise WeightsError(f"{what}: downloading {filename} from {where} failed: {_describe(e)}") from None


def weights_file(repo_id: str, pinned: str | None, revision: str | None, what: str) -> Path:
    """A repo's model.safetensors at `pinned` (the config's commit); a repo without one is refused (never a pickle)."""
    try:
        return hub_download(repo_id, WEIGHTS_NAME, pinned, what=what, shown_revision=revision)
    except MissingFileError:
        raise WeightsError(
            f"{what}: repo {repo_id!r} has no {WEIGHTS_NAME}; fgviz loads safetensors only and never unpickles "
            "a download (a pytorch_model.bin must be converted to safetensors by its author)"
        ) from None


def optional_file(repo_id: str, filename: str, revision: str | None, *, what: str,
                  shown_revision: str | None = None) -> Path | None:
    """`hub_download` of a file a repo may lack (a preprocessor config, a model card): None when it has none, or when
    it cannot be had right now (the load goes on without it)."""
    try:
        return hub_download(repo_id, filename, revision, what=what, shown_revision=shown_revision)
    except WeightsError:
        return None


CARD_FIELDS = ("license", "datasets", "base_model")


def card_metadata(text: str) -> dict[str, Any]:
    """`license`, `datasets` and `base_model` from a model card's YAML front matter (the subset model cards use:
    ``key: value`` and ``key:`` followed by ``- item`` lines); absent fields are left out."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    out: dict[str, Any] = {}
    current = None
    for line in lines[1:]:
        if line.strip() == "---":
            break
        item = re.match(r"^\s*-\s*(.+?)\s*$", line)
        if item and current in CARD_FIELDS:
            out.setdefault(current, []).append(item.group(1).strip("'\""))
            continue
        pair = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$", line)
        if pair:
            current = pair.group(1)
            if current in CARD_FIELDS and pair.group(2):
                value = pair.group(2).strip("'\"")
                out[current] = [v.strip(" '\"") for v in value.strip("[]").split(",")] if value.startswith("[") \
                    else value
    return out


def push_to_hub(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                commit_message: str = "Upload fgviz model") -> str:
    """Create `repo_id` if needed and upload a saved model folder; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise WeightsError(f"{folder} has no {name}: save it with fgviz.weights.hub.save_model first")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message,
                             allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    return str(getattr(info, "commit_url", info))


