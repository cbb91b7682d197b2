"""What a public Space needs from the loader: the byte-bounded model cache (`fgviz.weights.cache`, used by
`fgviz.weights.hub.load`) and the explorer's spec policy (`fgviz.explorer.policy`).

- the cache key holds everything that changes the model: the dtype, a folder's files, the commit of a Hub spec;
- the checks (allowed roots, spec policy, parameter cap) run on every call, so a folder refused to one caller stays
  refused after another caller loaded it;
- the cache stays under its byte bound while 20 distinct models from the loopback Hub are loaded in turn, and the
  registry's models stay cached (pinned);
- concurrent loads of one spec share one download and one build; a slow Hub load does not delay an explain of a
  model already loaded;
- the per-client rate of new loads, and the limit on loads at once.

Hub behaviour goes through the real `hf_hub_download` against tests/hubserver.py on loopback. `pytest -s` prints the
`[cache] ...` figures quoted in docs/robustness.md ("Running a public Space").
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fgviz.explorer.policy import LoadRefusedError, RateLimiter, SpecPolicy
from fgviz.explorer.session import Explorer
from fgviz.weights import cache as cache_mod
from fgviz.weights import format as fmt
from fgviz.weights import hub
from fgviz.weights.cache import ModelCache, model_bytes
from fgviz.weights.format import WeightsError
from tests.conftest import TINY_CONFIGS, make_tiny

ROOT = Path(__file__).resolve().parents[1]
REPO = "fgviz-test/tiny"


def figure(name: str, **values) -> None:
    """A line of figures (`-s` shows them; docs/robustness.md quotes them)."""
    print(f"\n[cache] {name}: " + json.dumps(values))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def tiny_files(tmp: Path, method: str = "transfg", seed: int = 0) -> dict[str, bytes]:
    return files_of(fmt.save_model(make_tiny(method, seed=seed), tmp / f"{method}-{seed}"))


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


def linear(nbytes: int) -> nn.Module:
    """A module of exactly `nbytes` bytes of float32 parameters."""
    return nn.Linear(nbytes // 4, 1, bias=False)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two OpenMP threads spin against each other (docs/robustness.md)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def models(monkeypatch) -> ModelCache:
    """A fresh `hub.MODELS` for one test (the default bound; tests resize it)."""
    fresh = ModelCache()
    monkeypatch.setattr(hub, "MODELS", fresh)
    return fresh


# --------------------------------------------------------------------------------------------------------------------
# ModelCache on its own


def test_bytes_lru_and_pins() -> None:
    c = ModelCache(max_bytes=1000)
    c.load("pinned", lambda: ("pinned", lambda: linear(400), 400), pin=True)
    for i in range(5):
        c.load(i, lambda i=i: (i, lambda: linear(200), 0))  # no estimate: room is made after the build
        assert c.nbytes <= 1000
    assert c.cached_keys() == ["pinned", 2, 3, 4]
    assert c.get(2) is not None  # used: now the most recent
    c.load(5, lambda: (5, lambda: linear(200), 200))
    assert c.cached_keys() == ["pinned", 4, 2, 5]  # 3 was the least recently used
    with pytest.raises(WeightsError, match=r"more than the model cache can hold next to the pinned models"):
        c.load("big", lambda: ("big", lambda: pytest.fail("refused from the estimate, before the build"), 700))
    with pytest.raises(WeightsError, match=r"more than the model cache can hold next to the pinned models"):
        c.load("big", lambda: ("big", lambda: linear(700), 0))  # no estimate: refused once built
    assert (c.cached_keys(), c.reserved) == (["pinned", 4, 2, 5], 0)
    c.resize(700)
    assert c.cached_keys() == ["pinned", 5]
    assert c.nbytes == 600
    tied = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    tied[1].weight = tied[0].weight
    assert model_bytes(tied) == 400  # a shared weight counts once


def test_a_build_reserves_its_bytes_first() -> None:
    """Room is made before the download and the build, so the models being built count towards the bound too."""
    c = ModelCache(max_bytes=1000)
    for i in range(4):
        c.load(i, lambda i=i: (i, lambda: linear(200), 200))
    started, release = threading.Event(), threading.Event()

    def slow_build():
        started.set()
        assert release.wait(10)
        return linear(400)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(c.load, "new", lambda: ("new", slow_build, 400))
        assert started.wait(10)
        assert (c.cached_keys(), c.nbytes, c.reserved) == ([1, 2, 3], 600, 400)  # 0 evicted before the build
        c.load(9, lambda: (9, lambda: linear(200), 200))  # another load meanwhile also respects the reservation
        assert c.nbytes + c.reserved <= 1000
        release.set()
        future.result(timeout=10)
    assert c.reserved == 0
    assert c.nbytes <= 1000
    assert c.cached_keys()[-1] == "new"


def test_single_flight_waiters_share_the_result_or_the_error() -> None:
    c = ModelCache()
    started, release, calls = threading.Event(), threading.Event(), []

    def resolve():
        calls.append(1)
        started.set()
        assert release.wait(10)
        return "k", lambda: linear(40), 40

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(c.load, "k", resolve) for _ in range(8)]
        assert started.wait(10)
        t0 = time.monotonic()
        other = c.load("other", lambda: ("other", lambda: linear(40), 40))  # another key does not wait for "k"
        assert c.get("other") is other
        assert time.monotonic() - t0 < 0.5
        release.set()
        got = [f.result(timeout=10) for f in futures]
    assert len(calls) == 1
    assert all(m is got[0] for m in got)
    assert c.builds == 2

    def failing():
        time.sleep(0.2)
        raise WeightsError("no such model")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(c.load, "bad", failing) for _ in range(4)]
        errors = [f.exception(timeout=10) for f in futures]
    assert all(isinstance(e, WeightsError) and str(e) == "no such model" for e in errors)
    assert len({id(e) for e in errors}) == 4  # each waiter raises its own copy
    assert "bad" not in c  # an error is not cached: the next call tries again


def test_aliases_share_one_entry_and_leave_with_it() -> None:
    c = ModelCache(max_bytes=100)
    m = c.load(("ref", "main"), lambda: (("commit", "abc"), lambda: linear(40), 40))
    assert c.load(("commit", "abc"), lambda: pytest.fail("cached")) is m
    assert c.load(("ref", "v1"), lambda: (("commit", "abc"), lambda: pytest.fail("built twice"), 40)) is m
    assert (len(c), c.builds, c.nbytes) == (1, 1, 40)
    c.load("x", lambda: ("x", lambda: linear(80), 80))  # evicts the commit, and with it its aliases
    assert ("ref", "main") not in c
    assert ("ref", "v1") not in c


def test_max_bytes_from_env(monkeypatch) -> None:
    monkeypatch.setenv(cache_mod.ENV_CACHE_GB, "0.5")
    assert cache_mod.max_bytes_from_env() == 1 << 29
    monkeypatch.setenv(cache_mod.ENV_CACHE_GB, "lots")
    with pytest.raises(ValueError, match="not a number of GiB"):
        cache_mod.max_bytes_from_env()
    monkeypatch.delenv(cache_mod.ENV_CACHE_GB)
    assert cache_mod.max_bytes_from_env() == cache_mod.DEFAULT_MAX_BYTES == 4 << 30


# --------------------------------------------------------------------------------------------------------------------
# hub.load: the key, and the checks on every call


def test_dtype_keys_the_cache(models, tmp_path) -> None:
    folder = fmt.save_model(make_tiny("transfg"), tmp_path / "m")
    half = hub.load(str(folder), device="cpu", half=True)
    full = hub.load(str(folder), device="cpu", half=False)
    assert (half.dtype, full.dtype) == (torch.float16, torch.float32)
    assert half is not full
    assert hub.load(str(folder), device="cpu", half=True) is half
    assert hub.load(str(folder), device="cpu") is full  # on a CPU the default is float32
    assert (len(models), models.builds) == (2, 2)


def test_a_folder_saved_again_is_loaded_again(models, tmp_path) -> None:
    folder = fmt.save_model(make_tiny("transfg", seed=0), tmp_path / "m")
    first = hub.load(str(folder), device="cpu")
    st = (folder / fmt.WEIGHTS_NAME).stat()
    fmt.save_model(make_tiny("transfg", seed=1), folder)
    os.utime(folder / fmt.WEIGHTS_NAME, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # even on a coarse clock
    second = hub.load(str(folder), device="cpu")
    assert second is not first
    assert not torch.equal(first.state_dict()["vit.head.weight"], second.state_dict()["vit.head.weight"])


def test_a_refused_folder_stays_refused_after_another_caller_loaded_it(models, tmp_path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    outside = fmt.save_model(make_tiny("transfg"), tmp_path / "elsewhere" / "m")
    assert hub.load(str(outside), device="cpu").method == "transfg"  # a command line may load any folder
    for _ in range(2):
        with pytest.raises(WeightsError, match="outside the allowed weights folders"):
            hub.load(str(outside), device="cpu", allowed_roots=(weights,))
    assert models.builds == 1

    cli = Explorer(device="cpu", policy=SpecPolicy.trusted())  # what `python -m fgviz explain` builds
    cli.allowed_roots = None
    cli.model(str(outside), "transfg")
    app = Explorer(device="cpu", allowed_roots=[weights])  # what the app builds
    spec, note = app.resolve_or_default(str(outside), "transfg", "birds")
    assert spec == "transfg-birds-demo"
    assert f"local path '{outside}' is outside the allowed weights folders" in note


def test_the_parameter_cap_runs_before_the_download_and_on_every_call(models, hf_env, serve, tmp_path) -> None:
    files = tiny_files(tmp_path)
    server = serve({REPO: {"main": files}})
    n = fmt.parameter_count(fmt.read_config(tmp_path / "transfg-0" / fmt.CONFIG_NAME))
    with pytest.raises(WeightsError, match=rf"{REPO}: the model has {n:,} parameters, more than the {n - 1:,}"):
        hub.load(REPO, device="cpu", max_params=n - 1)
    assert server.requests(filename=fmt.WEIGHTS_NAME) == []  # refused from the config alone
    model = hub.load(REPO, device="cpu", max_params=n)
    with pytest.raises(WeightsError, match="more than the"):
        hub.load(REPO, device="cpu", max_params=n - 1)  # cached, and still refused to a capped caller
    assert hub.load(REPO, device="cpu") is model


def test_spellings_of_one_commit_share_one_model(models, hf_env, serve, tmp_path, test_image) -> None:
    server = serve({REPO: {"main": tiny_files(tmp_path)}})
    sha = server.commit(REPO, "main")
    by_branch = hub.load(REPO, device="cpu")
    assert hub.load(f"{REPO}@{sha}", device="cpu") is by_branch
    assert hub.load(f"{REPO}@main", device="cpu") is by_branch
    assert (len(models), models.builds) == (1, 1)
    assert len(server.requests(method="GET", filename=fmt.WEIGHTS_NAME)) == 1
    ex = Explorer(device="cpu")
    iid = ex.add_image(test_image)
    assert ex.get(ex.explain(iid, f"{REPO}@{sha}", "transfg")).model_name == f"{REPO}@{sha}"  # the spec asked for
    assert ex.get(ex.explain(iid, REPO, "transfg")).model_name == REPO


# --------------------------------------------------------------------------------------------------------------------
# Bounded while many models come and go


def test_bound_holds_over_20_hub_models_and_the_registry_stays_cached(models, hf_env, serve, tmp_path) -> None:
    registry = {name: hub.load(name, device="cpu") for name in hub.registry()}
    assert len(registry) == 8  # 4 methods x birds, cars
    pinned = models.nbytes
    assert sorted(models.pinned_keys()) == sorted(models.cached_keys())
    methods = sorted(TINY_CONFIGS)
    repos = {f"fgviz-test/tiny-{i:02d}": {"main": tiny_files(tmp_path, methods[i % len(methods)], seed=i)}
             for i in range(20)}
    sizes = [model_bytes(make_tiny(methods[i % len(methods)], seed=i)) for i in range(20)]
    bound = pinned + 3 * max(sizes)  # room for about three of them next to the registry
    models.resize(bound)
    server = serve(repos)
    t0, cached_after, seen = time.monotonic(), [], 0
    for i, repo in enumerate(repos):
        model = hub.load(repo, device="cpu")
        measured = sum(model_bytes(m) for m in models.models())
        assert measured == models.nbytes <= bound, (i, measured, bound)
        seen = max(seen, measured)
        assert hub.load(repo, device="cpu") is model  # the newest is cached
        cached_after.append(len(models) - len(registry))
    wall = time.monotonic() - t0
    for name, model in registry.items():
        assert hub.load(name, device="cpu") is model  # pinned: never evicted, never reloaded
    assert models.builds == len(registry) + 20
    first = hub.load(next(iter(repos)), device="cpu")  # the oldest was evicted: loading it again builds it again
    assert models.builds == len(registry) + 21
    assert first.method == methods[0]
    assert len(server.requests(method="GET", filename=fmt.WEIGHTS_NAME)) == 20  # the HF disk cache had it
    figure("bound", bound_kib=round(bound / 1024, 1), pinned_registry_kib=round(pinned / 1024, 1),
           max_cached_kib=round(seen / 1024, 1), typed_models_cached=f"{min(cached_after)}-{max(cached_after)}",
           models_loaded=20, wall_s=round(wall, 2))


# --------------------------------------------------------------------------------------------------------------------
# Concurrency


def test_8_threads_loading_one_slow_spec_cause_one_download_and_one_build(models, hf_env, serve, tmp_path,
                                                                          monkeypatch) -> None:
    files = tiny_files(tmp_path)
    server = serve({REPO: {"main": files}, "fgviz-test/reference": {"main": files}})
    hub.load("fgviz-test/reference", device="cpu")  # what one load asks the Hub
    one = {f: len(server.requests(filename=f, repo_id="fgviz-test/reference")) for f in files if f != "README.md"}
    server.fault(fmt.WEIGHTS_NAME, "slow", methods=("GET",), delay_s=1.0)
    built = []
    real = hub.load_checkpoint
    monkeypatch.setattr(hub, "load_checkpoint", lambda *a: built.append(a) or real(*a))
    barrier = threading.Barrier(8)

    def go(_):
        barrier.wait()
        return hub.load(REPO, device="cpu")

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(go, range(8)))
    wall = time.monotonic() - t0
    assert all(m is got[0] for m in got)
    assert len(built) == 1
    gets = server.requests(method="GET", filename=fmt.WEIGHTS_NAME, repo_id=REPO)
    assert len(gets) == 1
    assert {f: len(server.requests(filename=f, repo_id=REPO)) for f in one} == one  # as one load, not eight
    figure("single flight", threads=8, weights_downloads=len(gets), builds=len(built), requests=one,
           wall_s=round(wall, 2))


def test_a_slow_hub_load_does_not_delay_an_explain_of_a_loaded_model(models, hf_env, serve, tmp_path) -> None:
    weights = tmp_path / "weights"
    local = fmt.save_model(make_tiny("transfg"), weights / "tiny")
    server = serve({REPO: {"main": tiny_files(tmp_path, seed=3)}})
    server.fault(fmt.WEIGHTS_NAME, "slow", methods=("GET",), delay_s=2.0)
    ex = Explorer(device="cpu", allowed_roots=[weights])
    images = [ex.add_image(photo(i)) for i in range(16)]
    ex.explain(images[0], str(local), "transfg")  # loaded, and warm

    def timed(iid: str) -> float:
        t0 = time.perf_counter()
        ex.explain(iid, str(local), "transfg")  # a new image: a forward pass each time
        return time.perf_counter() - t0

    base = [timed(i) for i in images[1:8]]
    loaded: list = []
    loader = threading.Thread(target=lambda: loaded.append(ex.model(REPO, "transfg", client="student")))
    t_load = time.monotonic()
    loader.start()
    assert server.wait_for(fmt.WEIGHTS_NAME, "GET")  # the download is in flight, held 2 s by the Hub
    during = [timed(i) for i in images[8:16]]
    in_flight = loader.is_alive()
    loader.join(30)
    load_s = time.monotonic() - t_load
    assert in_flight, "the explains must have run while the load was in flight"
    assert loaded and loaded[0].weights_kind == "hub"
    assert load_s >= 2.0
    delay = max(during) - statistics.median(base)
    figure("explain during a 2 s Hub load", explain_median_ms=round(1000 * statistics.median(base), 1),
           explain_max_during_load_ms=round(1000 * max(during), 1), delay_ms=round(1000 * delay, 1),
           load_s=round(load_s, 2))
    assert delay <= 0.2, (base, during)


def test_loads_at_once_are_limited_and_loaded_models_still_answer(models, hf_env, serve, tmp_path,
                                                                  test_image) -> None:
    server = serve({REPO: {"main": tiny_files(tmp_path)}, "fgviz-test/other": {"main": tiny_files(tmp_path, seed=1)}})
    server.fault(fmt.WEIGHTS_NAME, "slow", methods=("GET",), repo_id=REPO, delay_s=1.5)
    ex = Explorer(device="cpu", max_loading=1)
    loader = threading.Thread(target=lambda: ex.model(REPO, "transfg", client="a"))
    loader.start()
    assert server.wait_for(fmt.WEIGHTS_NAME, "GET")
    with pytest.raises(LoadRefusedError, match="1 other models are being loaded right now"):
        ex.model("fgviz-test/other", "transfg", client="b")
    iid = ex.add_image(test_image)
    assert ex.get(ex.explain(iid, "transfg-birds-demo", "transfg")).model_name == "transfg-birds-demo"
    spec, note = ex.resolve_or_default("fgviz-test/other", "transfg", "birds", client="b")
    assert spec == "transfg-birds-demo"
    assert "being loaded right now" in note
    loader.join(30)
    assert ex.resolve_or_default("fgviz-test/other", "transfg", "birds", client="b") == ("fgviz-test/other", None)


# --------------------------------------------------------------------------------------------------------------------
# The spec policy


def test_policy_kinds_on_every_call_cached_or_not(models, hf_env, serve, tmp_path) -> None:
    serve({REPO: {"main": tiny_files(tmp_path)}})
    weights = tmp_path / "weights"
    local = str(fmt.save_model(make_tiny("transfg"), weights / "mine"))
    loaded = {}
    for name, allowed in [("any", {REPO, local}), ("hub", {REPO}), ("registry", set())]:  # "any" loads them first
        ex = Explorer(device="cpu", allowed_roots=[weights], policy=SpecPolicy(name))
        assert ex.model("transfg-birds-demo", "transfg").method == "transfg"  # the registry, always
        for spec in (REPO, local, "timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k"):
            if spec in allowed:
                loaded.setdefault(spec, ex.model(spec, "transfg"))
                assert ex.model(spec, "transfg") is loaded[spec]
            elif spec.startswith("timm:") and name != "registry":
                with pytest.raises(WeightsError) as e:  # allowed; the loopback Hub has no such repo
                    ex.model(spec, "transfg")
                assert "spec policy" not in str(e.value)
            else:
                with pytest.raises(WeightsError, match=rf"this app loads only .*\(spec policy '{name}'\), not"):
                    ex.model(spec, "transfg")
    assert models.builds == 1 + 2  # the registry model and the two typed ones, each built once


def test_policy_from_env_and_operator_specs(monkeypatch, tmp_path) -> None:
    env = {"SPACE_ID": "someone/fgviz"}
    assert SpecPolicy.from_env(environ=env) == SpecPolicy("hub")
    assert SpecPolicy.from_env(environ={}) == SpecPolicy("any")
    assert SpecPolicy.from_env("registry", environ=env).name == "registry"
    got = SpecPolicy.from_env(environ={"FGVIZ_SPEC_POLICY": "any", "FGVIZ_MAX_PARAMS": "1e8",
                                       "FGVIZ_LOADS_PER_MINUTE": "0"})
    assert (got.name, got.max_params, got.loads_per_minute) == ("any", 100_000_000, None)
    with pytest.raises(ValueError, match="unknown spec policy 'open'"):
        SpecPolicy.from_env(environ={"FGVIZ_SPEC_POLICY": "open"})
    assert "org/repo" not in SpecPolicy("registry").describe()
    assert "at most 400 M parameters" in SpecPolicy("hub").describe()
    # the operator's own --model specs are trusted under any policy
    mine = str(fmt.save_model(make_tiny("transfg"), tmp_path / "mine"))
    ex = Explorer(device="cpu", extra_specs=[mine], policy=SpecPolicy("registry", max_params=10))
    assert ex.model(mine, "transfg").method == "transfg"


def test_rate_of_new_loads_per_client(models, hf_env, serve, tmp_path, monkeypatch) -> None:
    repos = {f"fgviz-test/r{i}": {"main": tiny_files(tmp_path, seed=i)} for i in range(4)}
    server = serve(repos)
    ex = Explorer(device="cpu", policy=SpecPolicy("hub", loads_per_minute=2))
    ex.model("fgviz-test/r0", "transfg", client="a")
    ex.model("fgviz-test/r1", "transfg", client="a")
    ex.model("fgviz-test/r0", "transfg", client="a")  # cached: not a new load
    n = len(server.requests())
    with pytest.raises(LoadRefusedError, match=r"this client started 2 new model loads in the last minute"):
        ex.model("fgviz-test/r2", "transfg", client="a")
    assert len(server.requests()) == n  # refused before asking the Hub
    ex.model("fgviz-test/r2", "transfg", client="b")  # another client has its own rate
    ex.model("fgviz-test/r3", "transfg")  # the library's own caller (no client) has none
    spec, note = ex.resolve_or_default("fgviz-test/r1", "transfg", "birds", client="a")
    assert spec == "fgviz-test/r1"  # cached
    models.clear()
    spec, note = ex.resolve_or_default("fgviz-test/r1", "transfg", "birds", client="a")
    assert spec == "transfg-birds-demo"
    assert "try again in" in note
    monkeypatch.setattr(ex._rate, "window_s", 0.0)  # the minute is over; a refusal is not remembered as a failure
    assert ex.resolve_or_default("fgviz-test/r1", "transfg", "birds", client="a") == ("fgviz-test/r1", None)


def test_rate_limiter_forgets_old_clients() -> None:
    r = RateLimiter(1, max_clients=3)
    for c in "abcd":
        r.take(c)
    assert list(r._events) == ["b", "c", "d"]
    with pytest.raises(LoadRefusedError):
        r.take("d")
    r.take("a")  # forgotten, so counted afresh


# --------------------------------------------------------------------------------------------------------------------
# FGVIZ_WEIGHTS_DIR


def test_weights_dir_moves_the_registry_and_its_sources(models, tmp_path, monkeypatch) -> None:
    copy = shutil.copytree(ROOT / "weights", tmp_path / "elsewhere" / "weights")
    monkeypatch.setenv("FGVIZ_WEIGHTS_DIR", str(copy))
    assert hub.registry_path() == copy / "registry.json"
    parsed = hub.parse_spec("transfg-birds-demo", allowed_roots=(copy,))
    assert parsed == hub.Spec("local", str((copy / "transfg-birds-demo").resolve()), registry="transfg-birds-demo")
    ex = Explorer(device="cpu")
    assert ex.allowed_roots == (copy,)
    assert ex.model("transfg-birds-demo", "transfg").method == "transfg"
    assert ex.resolve_or_default("weights/transfg-cars-demo", "transfg", "cars") == ("weights/transfg-cars-demo",
                                                                                     None)
    assert all(Path(k[1]).is_relative_to(copy.resolve()) for k in models.cached_keys())
