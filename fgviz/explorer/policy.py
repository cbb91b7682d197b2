"""Which model specs the explorer loads for its users, and how often: the spec policy and the rate of new loads.

On a public Space anyone can type a model spec. The policy says which kinds of spec a typed one may be
(`fgviz.weights.hub.Spec.policy_kind`):

| policy | loads | for |
|---|---|---|
| ``registry`` | only the registry's models (registry.json in the weights folder) | a demo that must never download |
| ``hub`` | plus Hub repos ``org/name[@rev]`` and ``timm:`` specs | a public Space (the default there) |
| ``any`` | plus local folders under the allowed roots | a local ``python app.py`` (the default elsewhere) |

Under ``hub`` and ``any`` a typed spec may describe at most `max_params` parameters (checked from its config before
the weights are downloaded), and each client may start at most `loads_per_minute` new (not yet cached) loads a
minute. The registry's models and the operator's own specs (``--model``, $FGVIZ_MODELS) are trusted: no policy,
cap or rate applies to them. Every check runs on every call, whether the model is cached or not.

Chosen by ``python app.py --spec-policy ...`` or $FGVIZ_SPEC_POLICY; $FGVIZ_MAX_PARAMS and
$FGVIZ_LOADS_PER_MINUTE (0 = no limit) change the cap and the rate. Without $FGVIZ_SPEC_POLICY the policy is
``hub`` on a Hugging Face Space ($SPACE_ID is set there) and ``any`` elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass

from fgviz.weights.format import WeightsError
from fgviz.weights.hub import Spec

POLICIES: dict[str, tuple[str, ...]] = {  # policy -> the spec kinds a typed spec may be
    "registry": ("registry",),
    "hub": ("registry", "hub", "timm"),
    "any": ("registry", "hub", "timm", "local"),
}
ENV_POLICY = "FGVIZ_SPEC_POLICY"
ENV_MAX_PARAMS = "FGVIZ_MAX_PARAMS"
ENV_LOADS = "FGVIZ_LOADS_PER_MINUTE"
DEFAULT_MAX_PARAMS = 400_000_000  # ViT-L/16 (304 M) fits; 1.6 GB in float32
DEFAULT_LOADS_PER_MINUTE = 10  # a student typing specs by hand stays far below it
KIND_NAMES = {"registry": "registry models", "local": "local folders", "hub": "Hub repos", "timm": "timm: backbones"}


class LoadRefusedError(WeightsError):
    """A load refused for now (the client's rate, too many loads at once): worth trying again later, so it is not
    remembered as a failure of the spec."""


@dataclass(frozen=True)
class SpecPolicy:
    """Which typed specs load (see the module docstring); `max_params` and `loads_per_minute` None = no limit."""

    name: str = "any"
    max_params: int | None = DEFAULT_MAX_PARAMS
    loads_per_minute: int | None = DEFAULT_LOADS_PER_MINUTE

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"unknown spec policy {self.name!r}; expected one of {sorted(POLICIES)}")
        for field, v in (("max_params", self.max_params), ("loads_per_minute", self.loads_per_minute)):
            if v is not None and v <= 0:
                raise ValueError(f"{field}={v} must be positive (None: no limit)")

    @classmethod
    def trusted(cls) -> SpecPolicy:
        """Everything, without a cap or a rate: a command line run by the machine's own user."""
        return cls("any", max_params=None, loads_per_minute=None)

    @classmethod
    def from_env(cls, name: str | None = None, environ: Mapping[str, str] = os.environ) -> SpecPolicy:
        """`name`, else $FGVIZ_SPEC_POLICY, else "hub" on a Hugging Face Space and "any" elsewhere; the cap and
        the rate from $FGVIZ_MAX_PARAMS and $FGVIZ_LOADS_PER_MINUTE (0: no limit)."""
        name = name or environ.get(ENV_POLICY, "").strip() or ("hub" if environ.get("SPACE_ID") else "any")

        def number(var: str, default: int) -> int | None:
            raw = environ.get(var, "").strip().replace("_", "")
            try:
                n = int(float(raw)) if raw else default
            except ValueError:
                raise ValueError(f"${var}={raw!r} is not a number") from None
            return None if n == 0 else n

        return cls(name, number(ENV_MAX_PARAMS, DEFAULT_MAX_PARAMS), number(ENV_LOADS, DEFAULT_LOADS_PER_MINUTE))

    @property
    def kinds(self) -> tuple[str, ...]:
        return POLICIES[self.name]

    def check(self, parsed: Spec, spec: str) -> None:
        """Refuse a typed spec of a kind this policy does not load (WeightsError naming what it does load)."""
        kind = parsed.policy_kind
        if kind not in self.kinds:
            allowed = ", ".join(KIND_NAMES[k] for k in self.kinds)
            raise WeightsError(f"{spec!r}: this app loads only {allowed} (spec policy {self.name!r}), not "
                               f"{KIND_NAMES[kind]}")

    def describe(self) -> str:
        """One line for the model boxes: what may be typed."""
        forms = {"registry": "a registry name", "local": "a folder under weights/", "hub": "org/repo[@revision]",
                 "timm": "timm:<name>"}
        text = "auto = the demo model; or " + ", ".join(forms[k] for k in self.kinds)
        if self.name != "registry" and self.max_params is not None:
            text += f" (at most {self.max_params / 1e6:g} M parameters)"
        return text


class RateLimiter:
    """At most `per_minute` events per client in any 60 s window (None: unlimited); thread-safe.

    Remembers the most recent `max_clients` clients, so a flood of addresses cannot grow it without bound.
    """

    def __init__(self, per_minute: int | None, *, window_s: float = 60.0, max_clients: int = 4096) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_clients = max_clients
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> None:
        """Count one event for `client`, or raise LoadRefusedError when it already had `per_minute` in the window."""
        if self.per_minute is None:
            return
        now = time.monotonic()
        with self._lock:
            events = self._events.setdefault(client, deque())
            self._events.move_to_end(client)
            while events and now - events[0] >= self.window_s:
                events.popleft()
            if len(events) >= self.per_minute:
                wait = self.window_s - (now - events[0])
                raise LoadRefusedError(f"this client started {len(events)} new model loads in the last minute, the "
                                  f"most this app allows; try again in {wait:.0f} s")
            events.append(now)
            while len(self._events) > self.max_clients:
                self._events.popitem(last=False)


__all__ = ["DEFAULT_LOADS_PER_MINUTE", "DEFAULT_MAX_PARAMS", "ENV_LOADS", "ENV_MAX_PARAMS", "ENV_POLICY", "POLICIES",
           "LoadRefusedError", "RateLimiter", "SpecPolicy"]
