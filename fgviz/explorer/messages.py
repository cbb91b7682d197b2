"""What the explorer tells its users when something cannot be done, and what its log keeps of it.

A user error (a bad upload, a model spec that cannot be used, an expired explanation) becomes one short message
(`user_error`: one line, the server's folders named as the user knows them, long values cut) and one log line with the
request's image hash, never a traceback; a fault of the server (`server_fault`) keeps its traceback, in the log only.
The app shows a message once as a toast and once as the banner's first line (`banner_error`); `LastErrors` hands the
message from the handler that failed to the one that writes the banner.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fgviz.core.imageio import MAX_BYTES, ImageError
from fgviz.explorer.layout import model_sets
from fgviz.explorer.session import CacheKey, ExpiredError
from fgviz.weights import hub
from fgviz.weights.format import WeightsError

LOG = logging.getLogger("fgviz.app")
USER_ERRORS = (ImageError, WeightsError, ExpiredError, KeyError, ValueError)  # the user's to fix: no traceback
ERROR_MARK = "⛔ "  # the first line of the banner when the last request failed


def upload_digest(value: Any) -> str | None:
    """The first 12 hex digits of the sha1 of an upload's bytes (what `sha1sum` prints for the file), or None
    when `value` is not an upload (a path to a file, or bytes)."""
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
    elif isinstance(value, str | os.PathLike) and len(str(value)) < 4096 and os.path.isfile(value):
        with open(value, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # what the decoder reads at most
    else:
        return None
    return hashlib.sha1(data).hexdigest()[:12]


def request_digest(args: Sequence[Any]) -> str:
    """The image of a request, for its log lines: the hash of its upload (`upload_digest`), else the id of the image
    its explanation keys name (`CacheKey.image_id`, also 12 hex digits here), else "-" (no image)."""
    for a in args:
        digest = upload_digest(a)
        if digest is not None:
            return digest
    for a in args:
        if isinstance(a, dict) and a and all(isinstance(k, CacheKey) for k in a.values()):
            return next(iter(a.values())).image_id[:12]
    return "-"


def _server_folders() -> list[tuple[str, str]]:
    """(absolute folder, how a message names it), longest first: a message does not show where the server keeps its
    files (the weights folder, the app's folder, its home with the Hub's cache)."""
    named = [(hub.weights_dir(), "weights"), (hub.ROOT, "<app>"), (Path.home(), "~")]
    out = {}
    for folder, name in named:
        for form in {str(folder), str(Path(folder).resolve())}:
            if len(form) > 1:
                out.setdefault(form, name)
    return sorted(out.items(), key=lambda kv: -len(kv[0]))


def short_message(text: str, limit: int | None = 400) -> str:
    """A message fit for a toast and a banner line: one line, the server's folders named as the user knows them
    ("weights/..."), any value over 120 characters (a pasted spec, a path) cut in its middle, at most `limit`
    characters (None: no limit; a fallback note keeps its end, which says what is shown instead)."""
    msg = " ".join(str(text).split())
    for folder, name in _server_folders():
        msg = msg.replace(folder, name)
    msg = re.sub(r"\S{121,}", lambda m: f"{m[0][:30]}…{m[0][-45:]}", msg)  # a path's end names its file
    return msg if limit is None or len(msg) <= limit else msg[: limit - 1].rstrip() + "…"


def user_error(where: str, args: Sequence[Any], error: BaseException) -> str:
    """The message of a user error (`short_message`), logged as one line with the request's image hash (no
    traceback: the log keeps tracebacks for faults of the server)."""
    msg = short_message(str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error))
    LOG.warning("user error in %s (image %s): %s", where, request_digest(args), msg)
    return msg


def server_fault(where: str, args: Sequence[Any], error: BaseException) -> str:
    """A fault of the server (anything but USER_ERRORS): logged once with its traceback and the request's image
    hash; the message tells the user it is not theirs to fix."""
    digest = request_digest(args)
    LOG.error("server fault in %s (image %s): %s", where, digest, error, exc_info=error)
    return f"Something went wrong on the server (logged with image {digest}); please try again later."


def set_fallback_note(model_set: str, reasons: Mapping[str, str]) -> str:
    """One short sentence for a model set whose models could not be loaded (the reasons go to the log)."""
    name = model_sets().get(model_set, model_set).split(":")[0].strip()
    name = name[:1].upper() + name[1:]
    text = " ".join(reasons.values())
    if "offline mode is on" in text:
        return f"{name} need the Hugging Face Hub, and this server is offline: showing the demo models instead."
    if "could not be used" in text or "failed:" in text:
        why = "the Hugging Face Hub cannot be reached from this server right now"
    else:
        why = short_message(next(iter(reasons.values())), 100)
    return f"{name} could not be loaded ({why}): showing the demo models instead."


def banner_error(message: str, status: str) -> str:
    """The banner `status` with `message` as its first line (replacing an earlier error line)."""
    rest = status or ""
    if rest.startswith(ERROR_MARK):
        rest = rest.split("\n\n", 1)[1] if "\n\n" in rest else ""
    return f"{ERROR_MARK}{message}" + (f"\n\n{rest}" if rest else "")


class LastErrors:
    """The last error message of each session (by its id): a handler that fails leaves it here for the handler
    that writes the banner (Gradio tells a `.failure` handler nothing about the error). Bounded: the most recent
    `size` sessions; thread-safe."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._d: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str | None, message: str) -> None:
        with self._lock:
            self._d[session or "-"] = message
            self._d.move_to_end(session or "-")
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def pop(self, session: str | None) -> str:
        with self._lock:
            return self._d.pop(session or "-", "the request failed")


__all__ = ["ERROR_MARK", "LOG", "USER_ERRORS", "LastErrors", "banner_error", "request_digest", "server_fault",
           "set_fallback_note", "short_message", "upload_digest", "user_error"]
