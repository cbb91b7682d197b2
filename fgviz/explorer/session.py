"""The explorer's server side: models, the explanation cache, ground truth and the metrics that need a model.

`Explorer` runs each model at most once per (image, model spec, parameters): explanations live in an LRU cache
keyed by a short string that the UI keeps in its state (the UI never holds arrays). Everything the view controls
change is derived from a cached explanation by `fgviz.explorer.views`, without a model. Only these run a model:
`Explorer.explain` (a cache miss), `deletion_insertion` and `sanity_check`; `forward_count` counts their forward
passes, so tests and benchmarks can assert that a view did not run one.

Security: model specs typed by a user go through the spec policy (`fgviz.explorer.policy`: which kinds of spec, a
parameter cap, a per-client rate of new loads) and `fgviz.weights.hub.load(..., allowed_roots=...)`, so a local path
outside the weights folders is refused, on every call, cached or not; images go through
`fgviz.core.imageio.decode_image` (size limits, clear errors). A typed spec that cannot be used (refused, missing, a
failing Hub) gives way to the registry model with a message (`resolve_or_default`), and the failure is remembered for
FAILED_TTL_S so a hung Hub is not waited for again.

Concurrency: forward passes and image decodes take one work slot (`_slot`), one at a time, as a CPU Space can afford;
model loads do not take it, so a slow download never delays an explain of a model already loaded. At most
`max_loading` requests may be loading typed specs (or waiting for such a load) at once; more are refused for now, so
an app that gives its model events `max_loading + 1` workers always has one free for loaded models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from fgviz.core.explanation import Explanation
from fgviz.core.imageio import MAX_BYTES, ImageError, decode_image, synthetic_params
from fgviz.explorer import views
from fgviz.explorer.analysis import AttentionAnalysis
from fgviz.explorer.policy import LoadRefusedError, RateLimiter, SpecPolicy
from fgviz.methods import METHODS, FineGrainedModel
from fgviz.weights import hub
from fgviz.weights.format import WeightsError

DOMAINS = ("birds", "cars")
AUTO = "auto"  # the registry model of the chosen domain
ENV_MODELS = "FGVIZ_MODELS"
N_RANDOM_MAPS = 4  # random maps averaged for the deletion/insertion chance curves (one draw is noisy)
FAILED_TTL_S = 120.0  # a typed spec that failed to load is not retried for this long (a hung Hub costs one wait)
MAX_LOADING = 2  # requests loading typed specs (or waiting for such a load) at once; see the module docstring


class LRU:
    """A small thread-safe LRU dict."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._d:
                return None
            self._d.move_to_end(key)
            return self._d[key]

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)
        return value

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class ExpiredError(KeyError):
    """An explanation key that is no longer cached (the UI asks to run again)."""


@dataclass(frozen=True)
class CacheKey:
    """What made an explanation: the image (content hash), the method, the model spec and the parameters."""

    image_id: str
    method: str
    spec: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, image_id: str, method: str, spec: str, params: dict[str, Any] | None = None) -> CacheKey:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return cls(image_id, method, spec, tuple(sorted(clean.items())))

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def describe(self, markdown: bool = True) -> str:
        """One line for captions: which model, which image, which parameters (the spec in Markdown backticks, or
        plain for captions that are not Markdown, such as a gallery's)."""
        p = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.params)
        spec = f"`{self.spec}`" if markdown else self.spec
        return f"{views.title(self.method)} {spec} on image {self.image_id[:8]}" + (f" ({p})" if p else "")


def image_id(image: Image.Image) -> str:
    """Content hash of an RGB image (size + pixels), the image part of every cache key."""
    h = hashlib.sha1(f"{image.width}x{image.height}".encode())
    h.update(np.asarray(image.convert("RGB"), np.uint8).tobytes())
    return h.hexdigest()[:16]


def source_digest(src: Any) -> str | None:
    """The sha1 of an upload's bytes (a file path or bytes), None for anything else (arrays and PIL images are
    hashed by their pixels, `image_id`). Reads at most what the decoder reads."""
    if isinstance(src, bytes | bytearray):
        return hashlib.sha1(bytes(src)).hexdigest()
    if isinstance(src, str | os.PathLike) and len(str(src)) < 4096 and os.path.isfile(src):
        with open(src, "rb") as f:
            return hashlib.sha1(f.read(MAX_BYTES + 1)).hexdigest()
    return None


def resolve_device(device: str | None) -> str:
    """"auto"/None -> cuda, mps or cpu, whichever is available; anything else is checked and returned."""
    if device in (None, "", "auto"):
        return str(hub.default_device())
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps asked for, but MPS is not available")
    return str(dev)


def env_specs() -> list[str]:
    """Extra model specs from $FGVIZ_MODELS (comma-separated)."""
    return [s.strip() for s in os.environ.get(ENV_MODELS, "").split(",") if s.strip()]


@dataclass(frozen=True)
class GroundTruth:
    """Synthetic ground truth of an image, in the pixels of one model's input."""

    part_mask: np.ndarray  # (H, W) bool: deciding parts
    object_mask: np.ndarray  # (H, W) bool
    class_name: str
    params: dict[str, Any]


class Explorer:
    """Models, images and explanations for one app (shared by all its users; thread-safe).

    Args:
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        extra_specs: model specs offered besides the registry (the app's --model and $FGVIZ_MODELS).
        allowed_roots: folders that local model specs may come from (default: the weights folder and the folders
            of local `extra_specs`).
        policy: which typed specs load, their parameter cap and the per-client rate of new loads (default:
            `SpecPolicy()`, "any" with the default cap and rate). Registry names and `extra_specs` are trusted.
        max_loading: requests that may load typed specs (or wait for such a load) at once; more are refused.
        max_explanations: LRU size of the explanation cache (each holds a few MB at the demo size, ~100 MB with
            the attention of a paper-size ViT).
        max_images: LRU size of the decoded-image cache.
    """

    def __init__(
        self,
        *,
        device: str | None = "cpu",
        extra_specs: Sequence[str] = (),
        allowed_roots: Sequence[Path] | None = None,
        max_explanations: int = 24,
        max_images: int = 16,
        policy: SpecPolicy | None = None,
        max_loading: int = MAX_LOADING,
    ) -> None:
        self.device = resolve_device(device)
        self.extra_specs: list[str] = []
        self.policy = policy if policy is not None else SpecPolicy()
        self.max_loading = max_loading
        self._rate = RateLimiter(self.policy.loads_per_minute)
        self._loading = 0  # requests now loading typed specs or waiting for such a load
        self._loading_lock = threading.Lock()
        self._slot = threading.Lock()  # one forward pass or image decode at a time
        self._fixed_roots = allowed_roots is not None
        roots = allowed_roots if allowed_roots is not None else [hub.weights_dir()]
        self.allowed_roots = tuple(Path(r) for r in roots)
        self.add_specs(extra_specs)
        self._images = LRU(max_images)
        self._uploads = LRU(4 * max_images)  # sha1 of an upload's bytes -> its image id (decoded once)
        self.decode_count = 0  # uploads decoded (tests check that a request on an explained image decodes none)
        self._expls = LRU(max_explanations)
        self._analyses = LRU(4)  # derived attention: up to ~200 MB each for a paper-size ViT
        self._derived = LRU(64)  # ground truth, randomised copies' explanations, metric results
        self._failed = LRU(64)  # (spec, method) -> (time.monotonic(), reason) of typed specs that did not load
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.forward_count = 0  # model forward passes run by this explorer (explain, metrics, sanity)

    def add_specs(self, specs: Sequence[str]) -> None:
        """Offer more model specs; the folders of local ones become allowed roots (unless roots were given)."""
        for spec in specs:
            spec = (spec or "").strip()
            if not spec or spec in self.extra_specs:
                continue
            self.extra_specs.append(spec)
            p = Path(spec).expanduser()
            if not self._fixed_roots and p.is_dir():
                self.allowed_roots = (*self.allowed_roots, p.resolve())

    # ---------------------------------------------------------------------------------------------------------
    # Models

    def registry(self) -> dict[str, dict[str, Any]]:
        return hub.registry()

    def choices(self, method: str) -> list[str]:
        """Specs offered for `method`: "auto", the registry entries of that method, then the extra specs whose
        method is `method` or unknown until loaded (Hub and timm specs)."""
        reg = [n for n, e in self.registry().items() if e.get("method") == method]
        extra = [s for s in self.extra_specs if self.spec_method(s) in (method, None)]
        return [AUTO, *reg, *[s for s in extra if s not in reg]]

    def default_spec(self, method: str, domain: str) -> str:
        """The registry model of `method` for `domain` (the first one listed)."""
        for name, e in self.registry().items():
            if e.get("method") == method and e.get("domain") == domain:
                return name
        for name, e in self.registry().items():
            if e.get("method") == method:
                return name
        raise KeyError(f"the registry (weights/registry.json) has no {method} model; type a model spec instead")

    def resolve(self, spec: str | None, method: str, domain: str) -> str:
        """A concrete spec: "auto"/empty -> the registry model of `method` for `domain`."""
        spec = (spec or "").strip()
        if "|" in spec or len(spec) > 300:
            raise WeightsError(f"invalid model spec {spec[:80]!r}")
        return self.default_spec(method, domain) if spec in ("", AUTO) else spec

    def resolve_or_default(self, spec: str | None, method: str, domain: str,
                           client: str | None = None) -> tuple[str, str | None]:
        """A spec whose model loads: `spec` itself, or the registry model of the domain when a typed spec cannot
        be used (malformed, outside the weights folders, not on the Hub, a hung or failing Hub, a corrupt or
        pickle-only repo, a model of another method). Returns (spec, None) or (default, a message saying why).

        A failure is remembered for FAILED_TTL_S, so a Hub that hangs costs one bounded wait, not one per request;
        a refusal for now (`LoadRefusedError`: the client's rate, too many loads at once) is not. `client` identifies
        the caller for the rate of new loads. When the default itself fails, or a method has no registry model, the
        error is raised (there is nothing to fall back to).
        """
        typed = (spec or "").strip()
        if typed not in ("", AUTO) and not any(e.get("method") == method for e in self.registry().values()):
            self.model(self.resolve(typed, method, domain), method, client=client)  # no default: this or the error
            return typed, None
        default = self.default_spec(method, domain)
        if typed in ("", AUTO, default):
            return default, None
        reason = self.spec_failure(typed, method, domain, client)
        if reason is None:
            return typed, None
        shown = typed if len(typed) <= 60 else typed[:40] + "…"
        return default, f"{views.title(method)}: could not use the model {shown!r} ({reason}); showing the " \
                        f"default model {default!r} instead."

    def spec_failure(self, spec: str | None, method: str, domain: str, client: str | None = None) -> str | None:
        """Why the model of `spec` cannot be used for `method` (None: it loads). A failure is remembered for
        FAILED_TTL_S (see `resolve_or_default`); a refusal for now (`LoadRefusedError`) is not."""
        typed = (spec or "").strip()
        if typed in ("", AUTO):
            return None
        failed = self._failed.get((typed, method))
        if failed is not None and time.monotonic() - failed[0] < FAILED_TTL_S:
            return failed[1]
        try:
            self.model(self.resolve(typed, method, domain), method, client=client)
            return None
        except LoadRefusedError as e:
            return str(e)
        except (WeightsError, KeyError, ValueError, OSError) as e:
            reason = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            self._failed.put((typed, method), (time.monotonic(), reason))
            return reason

    def spec_method(self, spec: str) -> str | None:
        """The method of a spec without loading weights: registry entries, a `#method` suffix and local folders say
        it; None for other Hub and timm specs (known once loaded)."""
        entry = self.registry().get(spec)
        if entry is not None:
            return entry.get("method")
        try:
            parsed = hub.parse_spec(spec)
        except WeightsError:
            return None
        if parsed.method:
            return parsed.method
        if parsed.kind == "local":
            try:
                return hub.read_config(Path(parsed.value) / hub.CONFIG_NAME)["method"]
            except (WeightsError, OSError):
                return None
        return None

    def trusted(self, spec: str) -> bool:
        """A registry name, a spec of the registry's model sets or one of the operator's `extra_specs`: exempt from
        the spec policy."""
        spec = spec.strip()
        in_sets = any(spec in e.get("specs", {}).values() for e in hub.model_sets().values())
        return spec in self.extra_specs or spec in self.registry() or in_sets

    def model(self, spec: str, method: str, client: str | None = None) -> FineGrainedModel:
        """Load (cached by fgviz.weights.hub) the model of `spec`; it must be a `method` model.

        A typed spec (not `trusted`) goes through the policy on every call: its kind, the allowed roots, the
        parameter cap, and, when it is not cached, the load limits (`_admit`; `client` for the rate).
        """
        typed = not self.trusted(spec)
        if typed:
            self.policy.check(hub.parse_spec(spec, allowed_roots=self.allowed_roots), spec.strip())
        model = hub.load(spec, device=self.device, method=method,
                         allowed_roots=self.allowed_roots, max_params=self.policy.max_params if typed else None,
                         admit=self._admit(client) if typed else None)
        if model.method != method:
            raise WeightsError(f"{spec!r} is a {views.title(model.method)} model, not {views.title(method)}; "
                               f"choose it in the {views.title(model.method)} column")
        return model

    def _admit(self, client: str | None) -> Callable[[bool], Any]:
        """The load limits of a typed spec that is not cached (`fgviz.weights.cache.Admit`): at most `max_loading`
        such requests at once, and a new load counts towards `client`'s rate (None: the library's own caller, no
        rate)."""

        @contextlib.contextmanager
        def admit(new: bool) -> Any:
            with self._loading_lock:
                if self._loading >= self.max_loading:
                    raise LoadRefusedError(f"{self._loading} other models are being loaded right now; try again in a "
                                      "moment")
                if new and client is not None:
                    self._rate.take(client)
                self._loading += 1
            try:
                yield
            finally:
                with self._loading_lock:
                    self._loading -= 1

        return admit

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())

    # ---------------------------------------------------------------------------------------------------------
    # Images and explanations

    def add_image(self, src: Any) -> str:
        """Decode an upload (any `decode_image` input) once; returns its content id. Raises ImageError.

        An upload given again (a file path or bytes with the same content: the Faithfulness, sanity and export
        requests of the explained image) is recognised by the digest of its bytes and not decoded again."""
        digest = source_digest(src)
        if digest is not None:
            iid = self._uploads.get(digest)
            if iid is not None and self._images.get(iid) is not None:
                return iid
        with self._slot:  # a large decode costs as much as a forward pass
            image = decode_image(src)
            self.decode_count += 1
        iid = image_id(image)
        if self._images.get(iid) is None:
            self._images.put(iid, image)
        if digest is not None:
            self._uploads.put(digest, iid)
        return iid

    def image(self, iid: str) -> Image.Image:
        image = self._images.get(iid)
        if image is None:
            raise ExpiredError(f"image {iid} is no longer cached; upload it again")
        return image

    def compute(self, image: Image.Image, spec: str, method: str, params: dict[str, Any]) -> Explanation:
        """Run `spec`'s model on `image` (no caching). The app wraps this in `spaces.GPU`."""
        model = self.model(spec, method)
        with self._lock(f"{spec}|{method}"):  # one forward per model at a time: capture hooks are per module
            expl = model.explain(image, **params)
        # Spellings of one model share one object, named by the first; the explanation names the spec asked for.
        return expl if expl.model_name == spec else dataclasses.replace(expl, model_name=spec)

    def explain(self, iid: str, spec: str, method: str, params: dict[str, Any] | None = None, *,
                compute: Callable[..., Explanation] | None = None) -> CacheKey:
        """The key of the explanation of image `iid` by `spec` with `params`; runs the model only on a cache miss.

        One forward per (image, model, params): concurrent requests for the same key wait for the first one.
        `compute(image, spec, method, params)` replaces `self.compute` (e.g. the same call under `spaces.GPU`).
        """
        key = CacheKey.of(iid, method, spec, params)
        if self._expls.get(key) is not None:
            return key
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {sorted(METHODS)}")
        self.model(spec, method)  # load (and check the method) before taking the per-key lock
        with self._lock(f"key|{hash(key) % 64}"):  # 64 striped locks: one per key would grow forever
            if self._expls.get(key) is None:
                with self._slot:
                    expl = (compute or self.compute)(self.image(iid), spec, method, key.param_dict)
                    self.forward_count += 1
                self._expls.put(key, expl)
        return key

    def get(self, key: CacheKey) -> Explanation:
        expl = self._expls.get(key)
        if expl is None:
            raise ExpiredError("this explanation is no longer cached; press Explain again")
        return expl

    def analysis(self, key: CacheKey) -> AttentionAnalysis:
        """Derived attention of a ViT explanation (cached; never runs a model)."""
        an = self._analyses.get(key)
        if an is None:
            an = self._analyses.put(key, AttentionAnalysis(self.get(key)))
        return an

    # ---------------------------------------------------------------------------------------------------------
    # Ground truth (synthetic images)

    def ground_truth(self, key: CacheKey) -> tuple[GroundTruth | None, str]:
        """Deciding-part mask of the explained image in the model's input pixels, when the image is a tagged
        generator image whose pixels match a regeneration. Returns (truth or None, a sentence saying why)."""
        cached = self._derived.get(("gt", key))
        if cached is not None:
            return cached
        image = self.image(key.image_id)
        params = synthetic_params(image)
        if params is None:
            out: tuple[GroundTruth | None, str] = (None, "no ground truth: the image does not come from the fgviz "
                                                         "generator (only its examples and exports carry the tag)")
            return self._derived.put(("gt", key), out)
        from fgviz.data.synthetic import DOMAINS as SYNTHETIC_DOMAINS
        from fgviz.data.synthetic import VERSIONS as SYNTHETIC_VERSIONS
        from fgviz.data.synthetic import make_sample

        if params["domain"] not in SYNTHETIC_DOMAINS or params["version"] not in SYNTHETIC_VERSIONS:
            out = (None, f"no ground truth: the image's generator tag names an unknown domain or data version "
                         f"({params['domain']!r}, version {params['version']})")
            return self._derived.put(("gt", key), out)
        s = make_sample(params["domain"], params["index"], params["seed"], params["size"], params["version"])
        got = np.asarray(image, np.float32)
        if got.shape != s.image.shape or float(np.abs(got - s.image).mean()) > 8.0:
            out = (None, "no ground truth: the image carries a generator tag but its pixels differ from the "
                         "generated sample (edited or resized?)")
            return self._derived.put(("gt", key), out)
        pre = self.model(key.spec, key.method).preprocess
        truth = GroundTruth(pre.mask(s.part_mask), pre.mask(s.object_mask), s.class_name, params)
        return self._derived.put(("gt", key), (truth, f"ground truth: generator sample {params['domain']} "
                                                      f"#{params['index']} (seed {params['seed']}), class "
                                                      f"{s.class_name}"))

    # ---------------------------------------------------------------------------------------------------------
    # Metrics that need the model

    def predict_fn(self, spec: str, method: str, model: torch.nn.Module | None = None) -> Callable:
        """(B, H, W, 3) uint8 model-input images -> (B, C) probabilities, counted in `forward_count`."""
        model = model if model is not None else self.model(spec, method)

        def predict(images: np.ndarray) -> np.ndarray:
            self.forward_count += 1
            return model.predict(images)

        return predict

    def compute_deletion_insertion(self, spec: str, method: str, image: np.ndarray, saliency: np.ndarray,
                                   target: int, steps: int) -> Any:
        """RISE deletion/insertion curves of `saliency` on the model input `image` (no caching)."""
        from fgviz.core.metrics import deletion_insertion

        predict = self.predict_fn(spec, method)
        with self._lock(f"{spec}|{method}"):
            return deletion_insertion(predict, image, saliency, int(target), steps=int(steps), n_random=N_RANDOM_MAPS)

    def deletion_insertion(self, key: CacheKey, map_name: str, steps: int = 16, *,
                           compute: Callable[..., Any] | None = None) -> Any:
        """RISE deletion/insertion of one map of a cached explanation (runs the model on the perturbed images).

        `compute(spec, method, image, saliency, target, steps)` replaces `self.compute_deletion_insertion`.
        """
        ck = ("di", key, map_name, int(steps))
        res = self._derived.get(ck)
        if res is None:
            e = self.get(key)
            with self._slot:
                res = (compute or self.compute_deletion_insertion)(key.spec, e.method, e.image,
                                                                   views.named_map(e, map_name),
                                                                   int(np.argmax(e.probs)), int(steps))
            self._derived.put(ck, res)
        return res

    def pointing(self, key: CacheKey, map_name: str) -> dict[str, Any] | None:
        """Pointing game against the synthetic deciding parts: the energy share (with its chance) and whether the
        map's maximum lies on a part. None when there is no ground truth."""
        from fgviz.core.metrics import energy_pointing_game, pointing_hit

        truth, _ = self.ground_truth(key)
        if truth is None or not truth.part_mask.any():
            return None
        e = self.get(key)
        m = views.named_map(e, map_name)
        energy = energy_pointing_game(m, truth.part_mask)
        hit, (x, y) = pointing_hit(m, truth.part_mask)
        return {"energy": energy.value, "energy_chance": energy.chance, "hit": hit,
                "hit_chance": float(truth.part_mask.mean()), "max_at": [x, y], "class": truth.class_name}

    def compute_sanity(self, spec: str, method: str, image: Image.Image, params: dict[str, Any],
                       seed: int) -> Explanation:
        """Explain `image` with `spec`'s architecture re-initialised by its own init (no caching), the copy
        `fgviz.evaluate` uses for the model cards' re-initialised figures."""
        model = self.model(spec, method)
        with self._lock(f"{spec}|{method}"):
            copy = model.reinitialized(seed=seed)
        copy.name = f"{spec} (re-initialised, seed {seed})"
        return copy.explain(image, **params)

    def sanity_check(self, key: CacheKey, map_name: str, seed: int = 0, *,
                     compute: Callable[..., Explanation] | None = None) -> tuple[Explanation, float]:
        """Adebayo et al.'s model-randomisation test: explain the same image with a re-initialised copy of the model
        and compare the maps (Spearman rank correlation; a faithful map should change a lot).

        `compute(spec, method, image, params, seed)` replaces `self.compute_sanity`.
        """
        from fgviz.core.metrics import rank_correlation

        e = self.get(key)
        ck = ("sanity", key, int(seed))
        rnd = self._derived.get(ck)
        if rnd is None:
            with self._slot:
                rnd = (compute or self.compute_sanity)(key.spec, e.method, self.image(key.image_id), key.param_dict,
                                                       int(seed))
                self.forward_count += 1
            self._derived.put(ck, rnd)
        return rnd, rank_correlation(views.named_map(e, map_name), views.named_map(rnd, map_name))


__all__ = ["AUTO", "DOMAINS", "ENV_MODELS", "LRU", "MAX_LOADING", "CacheKey", "ExpiredError", "Explorer",
           "GroundTruth", "ImageError", "LoadRefusedError", "SpecPolicy", "env_specs", "image_id", "resolve_device",
           "source_digest"]
