"""A loopback fake of the Hugging Face Hub's file-download protocol, for tests of the real `hf_hub_download`.

What `huggingface_hub.hf_hub_download` (v1.x / 2.x) does, and so what this server answers:

1. ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` (revision URL-quoted, so ``refs/pr/1`` arrives as
   ``refs%2Fpr%2F1``), without following redirects to another origin. It reads ``X-Repo-Commit`` (required: the
   40-hex commit the revision resolves to), ``X-Linked-Etag`` or else ``ETag`` (required: names the cache blob),
   ``X-Linked-Size`` or else ``Content-Length`` (the expected size, checked after the GET) and ``Location``.
   Errors are told apart by ``X-Error-Code``: ``RepoNotFound`` (404, or 401 for a private repo without the right
   token), ``RevisionNotFound`` and ``EntryNotFound`` (404; the latter with ``X-Repo-Commit``, which the client
   caches under ``.no_exist``).
2. ``GET`` on the URL from step 1: the same resolve URL for a small ("regular git") file, or, for an LFS file, the
   ``Location`` of the 302 the resolve URL answered, which on the real Hub is a CDN on another host. Here the
   "CDN" is a second listener on another port of 127.0.0.1 (another origin), so the client does not follow the
   redirect during the HEAD and drops the ``Authorization`` header on the GET, exactly as with the real Hub.
   A download that breaks off is resumed with ``Range: bytes=N-``, answered with 206 and ``Content-Range``.

It does not call ``/api/models/...`` for a single file; that route is served anyway (``sha`` and ``siblings``) for
code that asks for repo info. Renamed repos answer 307 with a relative ``Location`` (followed: same origin).

Faults, per file name (and optionally repo and HTTP method), for robustness tests:
- ``"hang"``: accept the request, send nothing for `hang_s` seconds (cut short by `stop()`), then drop the socket;
- ``"500"``: answer 500 Internal Server Error;
- ``"truncate"``: a GET announces the full ``Content-Length`` but sends only the bytes before `keep` (a fraction
  of the file, an absolute offset, so a resumed request gets nothing more), then closes the connection;
- ``"slow"``: wait `delay_s` seconds (cut short by `stop()`), then answer normally: a slow but good Hub.

`wait_for(filename, method)` blocks until such a request has arrived (before any fault delays it), so a test can
act while a download is in flight.

Use::

    with HubServer({"org/name": {"main": {"config.json": b"...", "model.safetensors": b"..."}}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ...
        assert hub.requests(method="GET", filename="model.safetensors")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".npz", ".onnx")
FAULT_MODES = ("hang", "500", "truncate", "slow")
MAX_HANG_S = 30.0


def git_blob_sha1(data: bytes) -> str:
    """The ETag the Hub sends for a regular git file: the git blob id."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Request:
    """One request as the server saw it (headers lower-cased)."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    headers: dict[str, str]
    status: int | None  # None when the connection was dropped without an answer ("hang")
    repo_id: str | None = None
    revision: str | None = None
    filename: str | None = None
    fault: str | None = None


@dataclass
class Fault:
    mode: str
    repo_id: str | None = None
    methods: tuple[str, ...] | None = None  # None: every method
    keep: float = 0.5  # "truncate": fraction of the file sent before the connection is closed
    delay_s: float = 0.0  # "slow": seconds before the answer

    def matches(self, repo_id: str | None, method: str) -> bool:
        return (self.repo_id is None or self.repo_id == repo_id) and (self.methods is None or method in self.methods)


@dataclass
class _Revision:
    commit: str
    files: dict[str, bytes]
    names: list[str] = field(default_factory=list)  # branch/tag names pointing here


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, hub: HubServer, role: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self.role = role


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 15  # idle keep-alive connections end by themselves; stop() also shuts them down

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        self._info: dict[str, Any] = {}
        self._status: int | None = None
        self._recorded = False
        self.server.hub._arrived(method, unquote(urlsplit(self.path).path))
        try:
            if self.server.role == "cdn":
                self._cdn(method)
            else:
                self._hub(method)
        finally:
            self._record()

    def _record(self) -> None:
        if not self._recorded:
            self._recorded = True
            self.server.hub._record(Request(server=self.server.role, method=self.command, path=self.path,
                                            headers={k.lower(): v for k, v in self.headers.items()},
                                            status=self._status, **self._info))

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"", *,
               length: int | None = None) -> None:
        """Send a complete answer (no body for HEAD); `length` overrides Content-Length (for HEAD of a file)."""
        self._status = status
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._reply(status, headers, json.dumps({"error": message}).encode())

    def _fault(self, repo_id: str | None, filename: str | None, method: str) -> Fault | None:
        fault = self.server.hub._fault_for(repo_id, filename, method)
        if fault is not None:
            self._info["fault"] = fault.mode
        if fault is not None and fault.mode == "slow":
            self.server.hub._stopping.wait(fault.delay_s)
            return None  # then answer as a good Hub would
        return fault

    def _hang(self) -> None:
        self._record()  # logged now, not when the hang ends
        self.server.hub._stopping.wait(self.server.hub.hang_s)
        self.close_connection = True  # drop the socket without an answer

    # -- routes -----------------------------------------------------------------------------------------------------

    def _hub(self, method: str) -> None:
        hub = self.server.hub
        path = urlsplit(self.path).path
        parts = path.split("/")[1:]
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "models":
            self._api(method, parts[2:])
            return
        if len(parts) < 5 or parts[2] != "resolve" or not all(parts[4:]):
            self._error(404, None, f"no route for {path}")
            return
        repo_id = unquote(parts[0]) + "/" + unquote(parts[1])
        revision = unquote(parts[3])
        filename = "/".join(unquote(p) for p in parts[4:])
        self._info.update(repo_id=repo_id, revision=revision, filename=filename)

        fault = self._fault(repo_id, filename, method)
        if fault is not None and fault.mode == "hang":
            self._hang()
            return
        if fault is not None and fault.mode == "500":
            self._error(500, None, "Internal Error - We're working hard to fix this as soon as possible!")
            return

        if repo_id in hub.renamed:
            new = hub.renamed[repo_id]
            location = f"/{new}/resolve/{quote(revision, safe='')}/{quote(filename)}"
            self._reply(307, {"Location": location})
            return
        if repo_id not in hub.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        token = hub.private.get(repo_id)
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._error(401, "RepoNotFound", "Invalid username or password.")
            return
        rev = hub._resolve(repo_id, revision)
        if rev is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        common = {"X-Repo-Commit": rev.commit, "Accept-Ranges": "bytes", "Vary": "Origin, Accept-Encoding"}
        if filename not in rev.files:
            self._error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": rev.commit})
            return
        data = rev.files[filename]
        if filename.endswith(hub.lfs_suffixes):
            sha256 = hashlib.sha256(data).hexdigest()
            location = f"{hub.cdn_url}/lfs/{repo_id}/{sha256}/{quote(filename)}"
            body = f"Found. Redirecting to {location}".encode()
            self._reply(302, {**common, "Location": location, "ETag": f'"{git_blob_sha1(sha256.encode())}"',
                              "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                              "Content-Type": "text/plain; charset=utf-8"}, body)
            return
        self._content(data, {**common, "ETag": f'"{git_blob_sha1(data)}"'}, fault)

    def _cdn(self, method: str) -> None:
        hub = self.server.hub
        m = re.fullmatch(r"/lfs/([^/]+/[^/]+)/([0-9a-f]{64})/(.+)", urlsplit(self.path).path)
        if m is None:
            self._error(404, None, "NoSuchKey")
            return
        repo_id, sha256, filename = m.group(1), m.group(2), unquote(m.group(3))
        self._info.update(repo_id=repo_id, filename=filename)
        fault = self._fault(repo_id, filename, method)
        if fault is not None and fault.mode == "hang":
            self._hang()
            return
        if fault is not None and fault.mode == "500":
            self._error(500, None, "InternalError")
            return
        data = hub._blobs.get(sha256)
        if data is None:
            self._error(404, None, "NoSuchKey")
            return
        self._content(data, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes",
                             "Content-Type": "application/octet-stream"}, fault)

    def _content(self, data: bytes, headers: dict[str, str], fault: Fault | None) -> None:
        """Serve `data` with Range support; a "truncate" fault cuts a GET at an absolute offset."""
        start, end, status = 0, len(data), 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m is None or int(m.group(1)) >= max(len(data), 1):
                self._reply(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        headers = {"Content-Type": "application/octet-stream", **headers}
        if self.command == "HEAD" or fault is None or fault.mode != "truncate":
            self._reply(status, headers, data[start:end] if self.command != "HEAD" else b"", length=end - start)
            return
        cut = min(max(int(len(data) * fault.keep), 0), len(data) - 1)
        self._status = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start))  # promise the whole range...
        self.end_headers()
        if cut > start:
            self.wfile.write(data[start:cut])  # ...send only part of it...
        self.wfile.flush()
        self.close_connection = True  # ...and hang up
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)

    def _api(self, method: str, parts: list[str]) -> None:
        hub = self.server.hub
        if len(parts) < 2:
            self._error(404, None, "no such route")
            return
        repo_id = unquote(parts[0]) + "/" + unquote(parts[1])
        revision = unquote("/".join(parts[3:])) if len(parts) >= 4 and parts[2] == "revision" else "main"
        self._info.update(repo_id=repo_id, revision=revision)
        if repo_id not in hub.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        token = hub.private.get(repo_id)
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._error(401, "RepoNotFound", "Invalid username or password.")
            return
        rev = hub._resolve(repo_id, revision)
        if rev is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        info = {"id": repo_id, "modelId": repo_id, "sha": rev.commit, "private": token is not None,
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(rev.files.items())]}
        self._reply(200, {"Content-Type": "application/json"}, json.dumps(info).encode())


class HubServer:
    """Serve `repos` = {repo_id: {branch_or_tag: {filename: bytes}}} over loopback HTTP, Hub style.

    Each branch/tag gets a deterministic 40-hex commit (reachable by that hash too). A key that is itself a 40-hex
    string is used as the commit hash. `private` maps repo ids to the token they require (``Authorization: Bearer
    <token>``); `renamed` maps old repo ids to new ones (307 redirect). `hang_s` bounds a "hang" fault.
    """

    def __init__(
        self,
        repos: dict[str, dict[str, dict[str, bytes]]],
        *,
        private: dict[str, str] | None = None,
        renamed: dict[str, str] | None = None,
        hang_s: float = 5.0,
        lfs_suffixes: tuple[str, ...] = LFS_SUFFIXES,
    ) -> None:
        self.repos: dict[str, dict[str, _Revision]] = {}
        self._blobs: dict[str, bytes] = {}
        self.private = dict(private or {})
        self.renamed = dict(renamed or {})
        self.hang_s = min(float(hang_s), MAX_HANG_S)
        self.lfs_suffixes = tuple(lfs_suffixes)
        self._faults: dict[str, list[Fault]] = {}
        self._log: list[Request] = []
        self._lock = threading.Lock()
        self._arrivals: list[tuple[str, str]] = []  # (method, unquoted path) as requests arrive
        self._arrival = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        for repo_id, revisions in repos.items():
            for name, files in revisions.items():
                self.add_revision(repo_id, name, files)

    # -- content ----------------------------------------------------------------------------------------------------

    def add_revision(self, repo_id: str, name: str, files: dict[str, bytes]) -> str:
        """Add (or move) branch/tag `name` of `repo_id` to a new commit holding `files`; returns the commit."""
        files = {k: bytes(v) for k, v in files.items()}
        if COMMIT_RE.fullmatch(name):
            commit = name
        else:
            h = hashlib.sha1(f"{repo_id}\0{name}\0".encode())
            for fname in sorted(files):
                h.update(fname.encode() + b"\0" + hashlib.sha256(files[fname]).digest())
            commit = h.hexdigest()
        with self._lock:
            revs = self.repos.setdefault(repo_id, {})
            revs[name] = _Revision(commit=commit, files=files, names=[name])
            for data in files.values():
                self._blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def commit(self, repo_id: str, revision: str = "main") -> str:
        rev = self._resolve(repo_id, revision)
        if rev is None:
            raise KeyError(f"{repo_id}@{revision}")
        return rev.commit

    def _resolve(self, repo_id: str, revision: str) -> _Revision | None:
        with self._lock:
            revs = self.repos.get(repo_id, {})
            if revision in revs:
                return revs[revision]
            for rev in revs.values():
                if rev.commit == revision:
                    return rev
        return None

    # -- faults and log ---------------------------------------------------------------------------------------------

    def fault(self, filename: str, mode: str, *, repo_id: str | None = None, methods: tuple[str, ...] | None = None,
              keep: float = 0.5, delay_s: float = 0.0) -> None:
        """Make requests for `filename` (in `repo_id`, or any repo) fail with `mode` (see FAULT_MODES)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault {mode!r}; known: {FAULT_MODES}")
        with self._lock:
            self._faults.setdefault(filename, []).append(
                Fault(mode, repo_id, tuple(m.upper() for m in methods) if methods else None, keep,
                      min(float(delay_s), MAX_HANG_S)))

    def _arrived(self, method: str, path: str) -> None:
        with self._arrival:
            self._arrivals.append((method, path))
            self._arrival.notify_all()

    def wait_for(self, filename: str, method: str | None = None, timeout: float = 10.0) -> bool:
        """Block until a request for a path ending in `/filename` (with `method`, if given) has arrived."""
        def seen() -> bool:
            return any(p.endswith("/" + filename) and method in (None, m) for m, p in self._arrivals)

        with self._arrival:
            return self._arrival.wait_for(seen, timeout)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault_for(self, repo_id: str | None, filename: str | None, method: str) -> Fault | None:
        with self._lock:
            for f in self._faults.get(filename or "", []):
                if f.matches(repo_id, method):
                    return f
        return None

    def _record(self, req: Request) -> None:
        with self._lock:
            self._log.append(req)

    def requests(self, *, method: str | None = None, filename: str | None = None, server: str | None = None,
                 repo_id: str | None = None) -> list[Request]:
        """The request log, filtered."""
        with self._lock:
            log = list(self._log)
        return [r for r in log
                if (method is None or r.method == method) and (filename is None or r.filename == filename)
                and (server is None or r.server == server) and (repo_id is None or r.repo_id == repo_id)]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
        with self._arrival:
            self._arrivals.clear()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    # -- lifecycle --------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if not self._servers:
            raise RuntimeError("HubServer is not started")
        host, port = self._servers[0].server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._servers[1].server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Listen on two loopback ports (hub and "CDN"); returns the hub URL, the value for HF_ENDPOINT."""
        if self._servers:
            return self.url
        self._stopping.clear()
        for role in ("hub", "cdn"):
            srv = _Server(self, role)
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"hubserver-{role}", daemon=True)
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        return self.url

    def stop(self) -> None:
        """Stop listening, end hangs and drop open keep-alive connections (later requests: connection refused)."""
        self._stopping.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
