"""The loaded-model cache: bounded by bytes, least recently used out, registry models pinned, one build per key.

A public app cannot keep every model anyone typed: `ModelCache` holds models up to `max_bytes` (the bytes of their
parameters and buffers, each storage counted once however many models share it: the methods wrapping one checkpoint
are made of its tensors, `fgviz.weights.sources`) and evicts the least recently used unpinned one to make room.
Pinned entries (the registry's models) count towards the bound but are never evicted.

Keys are tuples chosen by the loader (`fgviz.weights.hub.load`): everything that changes the model. A spec whose
files are only known after a request (a Hub branch) is an *alias* of the entry it resolved to (the repo at a
commit), so two spellings of one commit share one model.

Concurrency: `load(key, resolve)` runs `resolve` once per key at a time (single flight): concurrent callers of one
key wait for the first one's result, or its error, instead of downloading and building again. No lock is held while
a model downloads or builds, so loads of other keys, and lookups of cached ones, never wait for it. A build first
reserves the bytes its resolver estimated (evicting to make room), so the cached models and those being built stay
within `max_bytes` together.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from fgviz.weights.format import WeightsError

ENV_CACHE_GB = "FGVIZ_MODEL_CACHE_GB"
# 4 GiB, models being built included: on a 16 GB Space this leaves room for the process and Gradio (~1.5 GB), the
# explanation caches (up to ~3 GB at paper size), one explain (~1 GB) and the state dicts of two loads in flight
# (each as large as its model: up to 1.5 GiB at the 400 M-parameter cap of fgviz.explorer.policy).
# docs/robustness.md ("Running a public Space") has the budget and the measurements.
DEFAULT_MAX_BYTES = 4 << 30

Key = Hashable
# resolve() -> (the key the model is stored under, a function that builds it, the bytes it will take or 0 if
# unknown). Resolving may read a config (and ask the Hub which commit a branch is at); building downloads the
# weights and allocates the model. The estimate is reserved before the build, so the cache makes room first.
Resolver = Callable[[], tuple[Key, Callable[[], torch.nn.Module], int]]
# admit(new) -> a context held while this caller resolves and builds (new=True) or waits for another caller's
# build of the same key (new=False); it may raise to refuse (the app's rate and concurrency limits).
Admit = Callable[[bool], AbstractContextManager[Any]]


def storages(model: torch.nn.Module) -> dict[tuple[str, int], int]:
    """The storages of a model's parameters and buffers, {(device, data pointer): bytes}: tied weights, and models
    made of one checkpoint's tensors, share entries."""
    out: dict[tuple[str, int], int] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.device.type == "meta":
            continue
        out[(str(t.device), t.untyped_storage().data_ptr())] = t.untyped_storage().nbytes()
    return out


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of a model's parameters and buffers, each storage counted once (tied weights share one)."""
    return sum(storages(model).values())


def max_bytes_from_env(default: int = DEFAULT_MAX_BYTES) -> int:
    """The bound in $FGVIZ_MODEL_CACHE_GB (GiB, may be fractional), else `default`."""
    raw = os.environ.get(ENV_CACHE_GB, "").strip()
    if not raw:
        return default
    try:
        gb = float(raw)
    except ValueError:
        raise ValueError(f"${ENV_CACHE_GB}={raw!r} is not a number of GiB") from None
    if not gb > 0:
        raise ValueError(f"${ENV_CACHE_GB}={raw!r} must be positive")
    return int(gb * (1 << 30))


@dataclass
class _Entry:
    model: torch.nn.Module
    storages: dict[tuple[str, int], int]  # `storages(model)`
    pinned: bool
    aliases: set[Key] = field(default_factory=set)


class _Flight:
    """One load in progress: the callers of its key wait on `done` for `model` or `error`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.model: torch.nn.Module | None = None
        self.error: BaseException | None = None

    def result(self) -> torch.nn.Module:
        self.done.wait()
        if self.error is not None:
            # A copy per waiter: one exception object raised in several threads would share a traceback.
            raise copy.copy(self.error) from None
        assert self.model is not None
        return self.model


class ModelCache:
    """Loaded models by key, within `max_bytes`; thread-safe. See the module docstring."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes={max_bytes} must be positive")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()  # least recently used first
        self._aliases: dict[Key, Key] = {}  # alias -> the key of its entry
        self._flights: dict[Key, _Flight] = {}
        self._lock = threading.Lock()  # guards the three dicts; never held during a resolve or a build
        self._refs: dict[tuple[str, int], list[int]] = {}  # storage -> [bytes, entries holding it]
        self.nbytes = 0  # bytes of the distinct storages of the entries (pinned included)
        self.reserved = 0  # bytes reserved by builds in flight
        self.builds = 0  # models built by `load` (a test counts them)

    # ---- lookups ---------------------------------------------------------------------------------------------
    def get(self, key: Key, *, pin: bool = False) -> torch.nn.Module | None:
        """The model of `key` (or of the entry it is an alias of), marked most recently used; None if absent."""
        with self._lock:
            entry = self._entry(key)
            if entry is None:
                return None
            if pin:
                entry.pinned = True
            return entry.model

    def _entry(self, key: Key) -> _Entry | None:
        """(Lock held.) The entry of `key`, moved to the most recently used end."""
        k = self._aliases.get(key, key)
        entry = self._entries.get(k)
        if entry is not None:
            self._entries.move_to_end(k)
        return entry

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return self._aliases.get(key, key) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def cached_keys(self) -> list[Key]:
        """Entry keys, least recently used first (aliases not included)."""
        with self._lock:
            return list(self._entries)

    def pinned_keys(self) -> list[Key]:
        with self._lock:
            return [k for k, e in self._entries.items() if e.pinned]

    def models(self) -> list[torch.nn.Module]:
        with self._lock:
            return [e.model for e in self._entries.values()]

    # ---- loading ---------------------------------------------------------------------------------------------
    def load(self, key: Key, resolve: Resolver, *, pin: bool = False, admit: Admit | None = None) -> torch.nn.Module:
        """The model of `key`: cached, or built once by `resolve()` however many callers ask at the same time.

        `pin` keeps the entry out of eviction. `admit` (see `Admit`) is entered only when the model is not cached.
        Raises what `resolve` or the build raised (each waiting caller gets its own copy), WeightsError when the
        model does not fit in `max_bytes` next to the pinned ones (before the build when `resolve` estimated its
        size), or what `admit` raised.
        """
        model = self.get(key, pin=pin)
        if model is not None:
            return model
        flight, leader = self._join(key)
        if not leader:
            with admit(False) if admit is not None else contextlib.nullcontext():
                return self._after_wait(key, flight, pin)
        try:
            with admit(True) if admit is not None else contextlib.nullcontext():
                target, build, estimate = resolve()
                if target == key:
                    model = self._build(key, build, estimate, pin)
                else:
                    model = self._load_target(target, build, estimate, pin)
                    with self._lock:
                        entry = self._entries.get(target)
                        if entry is not None:  # not evicted in between: remember the alias
                            self._aliases[key] = target
                            entry.aliases.add(key)
            flight.model = model
            return model
        except BaseException as e:
            flight.error = e
            raise
        finally:
            self._land(key, flight)

    def _after_wait(self, key: Key, flight: _Flight, pin: bool) -> torch.nn.Module:
        model = flight.result()
        if pin:
            self.get(key, pin=True)
        return model

    def _load_target(self, target: Key, build: Callable[[], torch.nn.Module], estimate: int,
                     pin: bool) -> torch.nn.Module:
        """The entry an alias resolved to: cached, or built once (another alias of it may be loading it now)."""
        model = self.get(target, pin=pin)
        if model is not None:
            return model
        flight, leader = self._join(target)
        if not leader:
            return self._after_wait(target, flight, pin)
        try:
            flight.model = self._build(target, build, estimate, pin)
            return flight.model
        except BaseException as e:
            flight.error = e
            raise
        finally:
            self._land(target, flight)

    def _build(self, key: Key, build: Callable[[], torch.nn.Module], estimate: int, pin: bool) -> torch.nn.Module:
        """Reserve `estimate` bytes (making room first), build, then store the model in place of the reservation."""
        with self._lock:
            self._make_room(estimate, pin)
            self.reserved += estimate
        try:
            model = build()
        except BaseException:
            with self._lock:
                self.reserved -= estimate
            raise
        held = storages(model)
        with self._lock:
            self.reserved -= estimate
            self.builds += 1
            old = self._entries.get(key)
            if old is not None:  # built twice (a race of two aliases): keep the first
                self._entries.move_to_end(key)
                old.pinned = old.pinned or pin
                return old.model
            new_bytes = sum(n for s, n in held.items() if s not in self._refs)  # shared storages are held already
            self._make_room(new_bytes, pin, keep=held)
            self._entries[key] = _Entry(model, held, pin)
            for s, n in held.items():
                ref = self._refs.setdefault(s, [n, 0])
                ref[1] += 1
                if ref[1] == 1:
                    self.nbytes += n
            return model

    def _join(self, key: Key) -> tuple[_Flight, bool]:
        """The flight of `key` and whether this caller leads it (a new one) or waits for it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def _land(self, key: Key, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.done.set()

    def _pinned_bytes(self) -> int:
        """(Lock held.) Bytes of the distinct storages of the pinned entries."""
        held: dict[tuple[str, int], int] = {}
        for e in self._entries.values():
            if e.pinned:
                held.update(e.storages)
        return sum(held.values())

    def _make_room(self, nbytes: int, pin: bool, keep: dict[tuple[str, int], int] | None = None) -> None:
        """(Lock held.) Evict least recently used unpinned entries until `nbytes` more fit next to the cached models
        and the builds in flight; with `keep` (the storages of the model going in), until those storages fit, the
        ones cached entries already hold counting once. An unpinned model larger than the room the pinned ones
        leave is refused; a pinned one (the operator's registry) always goes in, so pinned models alone may exceed
        the bound."""
        if not pin:
            room = self.max_bytes - self._pinned_bytes()
            if nbytes > room:
                raise WeightsError(f"the model takes {nbytes / 2**20:.0f} MiB, more than the model cache can hold "
                                   f"next to the pinned models ({max(room, 0) / 2**20:.0f} MiB of "
                                   f"{self.max_bytes / 2**20:.0f} MiB; ${ENV_CACHE_GB} raises the bound)")
        if keep is None:
            self._evict_until(lambda: self.nbytes + nbytes <= self.max_bytes - self.reserved)
        else:  # a storage a dropped entry shared with the new model stays in memory: it counts again
            self._evict_until(lambda: self.nbytes + sum(n for s, n in keep.items() if s not in self._refs)
                              <= self.max_bytes - self.reserved)

    def _evict_until(self, fits: Callable[[], bool]) -> None:
        """(Lock held.) Drop least recently used unpinned entries until `fits()`."""
        for k in [k for k, e in self._entries.items() if not e.pinned]:
            if fits():
                break
            self._drop(k)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key)
        for s in entry.storages:
            ref = self._refs[s]
            ref[1] -= 1
            if ref[1] == 0:
                self.nbytes -= ref[0]
                del self._refs[s]
        for a in entry.aliases:
            if self._aliases.get(a) == key:
                del self._aliases[a]

    # ---- housekeeping ----------------------------------------------------------------------------------------
    def resize(self, max_bytes: int) -> None:
        """Change the bound, evicting unpinned entries (least recently used first) to fit it."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes={max_bytes} must be positive")
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._evict_until(lambda: self.nbytes <= self.max_bytes)

    def clear(self) -> None:
        """Forget every model, pinned ones included (loads in flight still finish and are then cached)."""
        with self._lock:
            self._entries.clear()
            self._aliases.clear()
            self._refs.clear()
            self.nbytes = 0
