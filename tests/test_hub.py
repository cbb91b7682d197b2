"""Checkpoints: save/load round trips, strict and safe loading, spec parsing, and Hub downloads through the real
`huggingface_hub.hf_hub_download` against a loopback fake of the Hub (tests/hubserver.py), faults included.

Every Hub test points HF_ENDPOINT at the loopback server and HF_HOME at an empty tmp folder; nothing leaves the
machine. Fault tests lower the timeouts (fgviz.weights.download.HUB_TIMEOUT_S for metadata, huggingface_hub's
HF_HUB_DOWNLOAD_TIMEOUT for the GET) and replace huggingface_hub's 1 s pause between download retries, so they take
seconds; the number of attempts is bounded by huggingface_hub (6 GETs without progress) and asserted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import time
import types
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.file_download
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import fgviz.weights.hub as hub
from fgviz.methods import MODEL_CLASSES
from fgviz.weights import download
from fgviz.weights import format as fmt
from fgviz.weights.format import WeightsError
from tests.conftest import TINY_CONFIGS, make_tiny

METHODS = sorted(TINY_CONFIGS)
REPO = "fgviz-test/tiny-transfg"


# --------------------------------------------------------------------------------------------------------------------
# Helpers


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def saved(tmp: Path, method: str = "transfg", seed: int = 0, **kw) -> dict[str, bytes]:
    return folder_bytes(fmt.save_model(make_tiny(method, seed=seed), tmp / f"{method}-{seed}", **kw))


def logits(model: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    size = model.config.img_size
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        out = model(x)
    return out


def assert_same(a, b, where: str = "") -> None:
    """Exact, recursive equality of explanation fields (arrays: same dtype, shape and values)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{where}: {type(b)}"
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert (type(a), len(a)) == (type(b), len(b)), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_explanation(e1, e2) -> None:
    for f in dataclasses.fields(e1):
        if f.name in ("model_name", "weights_kind"):
            continue
        assert_same(getattr(e1, f.name), getattr(e2, f.name), f.name)


class _NoSleep(types.ModuleType):
    """huggingface_hub.file_download's `time`, minus the 1 s pause between download retries."""

    def __init__(self) -> None:
        super().__init__("time")
        self.sleeps: list[float] = []

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)


@pytest.fixture
def fast_faults(monkeypatch):
    """Short timeouts and no pause between huggingface_hub's download retries."""
    monkeypatch.setattr(download, "HUB_TIMEOUT_S", 1.0)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.5)
    no_sleep = _NoSleep()
    monkeypatch.setattr(huggingface_hub.file_download, "time", no_sleep)
    return no_sleep


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Two revisions of a tiny TransFG with different weights."""
    tmp = tmp_path_factory.mktemp("repo")
    return {"main": saved(tmp, seed=0), "v2": saved(tmp, seed=1)}


# --------------------------------------------------------------------------------------------------------------------
# Round trip


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_identical_logits_and_explanations(method, tmp_path, test_image):
    model = make_tiny(method)
    out = fmt.save_model(model, tmp_path / "m", provenance={"dataset": "none", "seed": 0})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = hub.load(str(out), device="cpu", cache=False)

    assert type(loaded) is type(model)
    assert loaded.config == model.config
    assert loaded.provenance == {"dataset": "none", "seed": 0}
    assert loaded.weights_kind == "local"
    assert loaded.name == str(out)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert torch.equal(logits(model), logits(loaded))

    e1, e2 = model.explain(test_image), loaded.explain(test_image)
    assert_same_explanation(e1, e2)
    # the method-specific outputs are really there (not two Nones compared)
    if method == "transfg":
        assert e1.rollout is not None
        assert e1.part_tokens is not None
        assert e1.part_boxes is not None
    elif method == "rams_trans":
        assert e1.rollout is not None
        assert e1.crop_boxes is not None
        assert len(e1.crops) > 0
    elif method == "vit":
        assert e1.rollout is not None
        assert e1.attn_q is not None
    else:
        assert set(e1.sampled) == {"structure", "detail"}
        assert e1.maps
        assert e1.trilinear is not None


def test_round_trip_half_precision(tmp_path):
    model = make_tiny("tasn")
    out = fmt.save_model(model, tmp_path / "m", half=True)
    stored = load_file(str(out / "model.safetensors"))
    assert {v.dtype for k, v in stored.items() if "num_batches_tracked" not in k} == {torch.float16}
    assert stored["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    loaded = hub.load(str(out), device="cpu", cache=False)
    assert loaded.dtype == torch.float32
    for k, v in model.state_dict().items():
        expected = v.half().float() if v.is_floating_point() else v
        assert torch.equal(loaded.state_dict()[k], expected), k
    assert torch.allclose(logits(model), logits(loaded), atol=1e-2, rtol=1e-2)


def test_model_card_and_config_format(tmp_path):
    out = fmt.save_model(make_tiny("rams_trans"), tmp_path / "m",
                         provenance={"name": "demo", "dataset": "toy", "metrics": {"top1": {"value": 0.5}}})
    config = json.loads((out / "config.json").read_text())
    assert config["fgviz_format"] == fmt.FORMAT_VERSION
    assert config["method"] == "rams_trans"
    assert config["architecture"]["img_size"] == [48, 64]
    assert len(config["pretrained_cfg"]["labels"]) == 5
    assert "labels" not in config["architecture"] and "crop_pct" not in config["architecture"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: fgviz\n")
    assert "# demo" in card
    assert "| top1 | 0.5 |" in card


# --------------------------------------------------------------------------------------------------------------------
# Strict, safe loading of local folders


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _edit_config(files: dict[str, bytes], **changes) -> dict[str, bytes]:
    config = json.loads(files["config.json"])
    for k, v in changes.items():
        if k in ("method", "fgviz_format"):
            config[k] = v
        elif k in ("labels", "mean", "std", "crop_pct"):
            config["pretrained_cfg"][k] = v
        else:
            config["architecture"][k] = v
    return {**files, "config.json": json.dumps(config).encode()}


def _edit_weights(files: dict[str, bytes], tmp: Path, fn) -> dict[str, bytes]:
    p = tmp / "edit.safetensors"
    p.write_bytes(files["model.safetensors"])
    state = fn(load_file(str(p)))
    save_file(state, str(p))
    return {**files, "model.safetensors": p.read_bytes()}


@pytest.mark.parametrize("damage", ["truncated", "header_only", "garbage", "empty", "flipped_header"])
def test_corrupt_or_truncated_weights_give_clear_error(damage, tmp_path):
    files = saved(tmp_path)
    data = files["model.safetensors"]
    bad = {
        "truncated": data[: len(data) // 2],
        "header_only": data[:200],
        "garbage": bytes(range(256)) * 8,
        "empty": b"",
        "flipped_header": data[:8] + b"X" + data[9:],
    }[damage]
    folder = _write(tmp_path / "bad", {**files, "model.safetensors": bad})
    with pytest.raises(WeightsError, match=r"model\.safetensors is not a readable safetensors file"):
        hub.load(str(folder), device="cpu", cache=False)


def test_wrong_shape_in_config_names_the_key(tmp_path):
    files = saved(tmp_path)
    folder = _write(tmp_path / "bad", _edit_config(files, embed_dim=48))  # weights are 32 wide
    first = next(k for k, v in make_tiny("transfg").state_dict().items() if v.ndim and v.shape[-1] == 32)
    with pytest.raises(WeightsError) as e:
        hub.load(str(folder), device="cpu", cache=False)
    shape = tuple(make_tiny("transfg").state_dict()[first].shape)
    assert f"shape mismatch for {first}: checkpoint {shape}, model {(*shape[:-1], 48)} (and " in str(e.value)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    files = saved(tmp_path)
    missing = _edit_weights(files, tmp_path, lambda s: {k: v for k, v in s.items() if k != "vit.head.weight"})
    with pytest.raises(WeightsError, match=r"missing keys \['vit\.head\.weight'\], unexpected keys \[\]"):
        hub.load(str(_write(tmp_path / "missing", missing)), device="cpu", cache=False)
    extra = _edit_weights(files, tmp_path, lambda s: {**s, "bogus.weight": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"missing keys \[\], unexpected keys \['bogus\.weight'\]"):
        hub.load(str(_write(tmp_path / "extra", extra)), device="cpu", cache=False)
    # a config one block deeper than the weights: the missing keys are those of the extra block
    deeper = _edit_config(files, depth=4)
    with pytest.raises(WeightsError, match=r"missing keys \['[^']*blocks\.3\."):
        hub.load(str(_write(tmp_path / "deeper", deeper)), device="cpu", cache=False)


def test_dtype_kind_mismatch_is_named(tmp_path):
    files = saved(tmp_path, "tasn")
    key = "backbone.bn1.num_batches_tracked"
    bad = _edit_weights(files, tmp_path, lambda s: {**s, key: s[key].float()})
    with pytest.raises(WeightsError, match=rf"dtype mismatch for {key}"):
        hub.load(str(_write(tmp_path / "bad", bad)), device="cpu", cache=False)


def test_weights_of_another_method_are_refused(tmp_path):
    files = saved(tmp_path, "transfg")
    other = saved(tmp_path, "rams_trans")
    with pytest.raises(WeightsError, match=r"holds rams_trans weights but the config says method 'transfg'"):
        hub.load(str(_write(tmp_path / "mixed", {**files, "model.safetensors": other["model.safetensors"]})),
                 device="cpu", cache=False)


@pytest.fixture
def allocations(monkeypatch):
    """Counts real (non-meta) constructions of every model class."""
    real = []
    for cls in MODEL_CLASSES.values():
        orig = cls.__init__

        def spy(self, config, pretrained_cfg=None, _orig=orig):
            if torch.empty(0).device.type != "meta":
                real.append(type(self).__name__)
            _orig(self, config, pretrained_cfg)

        monkeypatch.setattr(cls, "__init__", spy)
    return real


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bogus_arg": 1}, r"unknown TransFGConfig arguments: \['bogus_arg'\]"),
        ({"method": "vgg"}, r"unknown method 'vgg'"),
        ({"method": ["transfg"]}, r"unknown method \['transfg'\]"),
        ({"fgviz_format": 99}, r"fgviz_format 99 is not supported"),
        ({"num_classes": 10**12}, r"num_classes=1000000000000 outside"),
        ({"num_classes": "5"}, r"num_classes='5' outside"),
        ({"labels": "abc"}, r"labels must be a list"),
        ({"depth": 10**6}, r"depth=1000000 outside"),
        ({"img_size": [10**9, 10**9]}, r"img_size=.* outside"),
        ({"embed_dim": 4096, "num_heads": 64, "depth": 48}, r"describes [\d,]+ parameters, more than fgviz loads"),
        ({"embed_dim": 33}, r"embed_dim=33 not divisible by num_heads=4"),
    ],
)
def test_bad_config_is_rejected_before_allocation(changes, message, tmp_path, allocations):
    folder = _write(tmp_path / "bad", _edit_config(saved(tmp_path), **changes))
    allocations.clear()  # saved() built the reference model
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=message):
        hub.load(str(folder), device="cpu", cache=False)
    assert time.monotonic() - t0 < 15
    assert allocations == []


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"method": "transfg"}', "[" * 100_000 + "]" * 100_000])
def test_malformed_config_json(text, tmp_path):
    files = saved(tmp_path)
    with pytest.raises(WeightsError, match=r"not valid JSON|not an fgviz config|larger than"):
        hub.load(str(_write(tmp_path / "bad", {**files, "config.json": text.encode()})), device="cpu", cache=False)


def test_local_folder_with_only_a_pickle(tmp_path):
    files = saved(tmp_path)
    folder = _write(tmp_path / "pkl", {"config.json": files["config.json"], "pytorch_model.bin": b"\x80\x04N."})
    with pytest.raises(WeightsError, match=r"has no model\.safetensors \(found \['pytorch_model\.bin'\]: fgviz never"):
        hub.load(str(folder), device="cpu", cache=False)


# --------------------------------------------------------------------------------------------------------------------
# Spec parsing


def test_parse_spec_local_paths_must_stay_inside_allowed_roots(tmp_path):
    root = tmp_path / "weights"
    (root / "good").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    roots = (root,)
    assert hub.parse_spec(str(root / "good"), allowed_roots=roots) == hub.Spec("local", str((root / "good").resolve()))
    for spec in [str(root / "good" / ".." / ".." / "outside"), str(root / "link"), "/etc", "../../etc",
                 "weights/../../etc", "./fgviz", str(tmp_path / "outside")]:
        with pytest.raises(WeightsError, match="outside the allowed weights folders"):
            hub.parse_spec(spec, allowed_roots=roots)
    with pytest.raises(WeightsError, match="outside the allowed weights folders"):
        hub.load("weights/../../etc", allowed_roots=(hub.weights_dir(),), device="cpu", cache=False)


@pytest.mark.parametrize(
    "spec",
    ["org/na me", "org//name", "a/b/c", "org/name@", "org/name@../../etc", "org/name@a/../../b", "org/name@/abs",
     "or--g/name", "org/name.git", "org/-name", "org/name@with space", "org/name@a@b", "-org/name", "org/name\n@x",
     "justaname"],
)
def test_parse_spec_rejects_malformed_repo_ids(spec, hf_env, serve, tmp_path):
    server = serve({})
    with pytest.raises(WeightsError):
        hub.parse_spec(spec)
    with pytest.raises(WeightsError):
        hub.load(spec, device="cpu", cache=False)
    assert server.requests() == []  # rejected before any request
    assert not (tmp_path / "etc").exists()
    assert not (tmp_path / "b").exists()


def test_parse_spec_hub_forms(tmp_path, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert hub.parse_spec("org/name") == hub.Spec("hub", "org/name")
    assert hub.parse_spec(" org/name@v1.0 ") == hub.Spec("hub", "org/name", revision="v1.0")
    assert hub.parse_spec("org/name@refs/pr/1") == hub.Spec("hub", "org/name", revision="refs/pr/1")
    assert hub.parse_spec(f"org/name@{sha}") == hub.Spec("hub", "org/name", revision=sha)
    assert hub.parse_spec("timm:vit_tiny_patch16_224#transfg") == hub.Spec("timm", "vit_tiny_patch16_224",
                                                                          method="transfg")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"models": [{"name": "demo-birds", "source": "org/name@v2"}]}))
    monkeypatch.setenv("FGVIZ_WEIGHTS_DIR", str(tmp_path))
    assert hub.parse_spec("demo-birds") == hub.Spec("hub", "org/name", revision="v2", registry="demo-birds")
    assert hub.parse_spec("demo-birds").policy_kind == "registry"


# --------------------------------------------------------------------------------------------------------------------
# The Hub, through the real hf_hub_download


def test_load_from_hub_by_name_and_revision_then_from_cache(hf_env, serve, repo_files, monkeypatch):
    server = serve({REPO: repo_files})
    ref0, ref1 = logits(make_tiny("transfg", seed=0)), logits(make_tiny("transfg", seed=1))
    assert not torch.equal(ref0, ref1)
    sha_v2 = server.commit(REPO, "v2")

    m_main = hub.load(REPO, device="cpu")
    assert m_main.weights_kind == "hub"
    assert m_main.name == REPO
    assert torch.equal(logits(m_main), ref0)
    assert hub.load(REPO, device="cpu") is m_main  # in-process cache per spec

    hub.clear_cache()
    m_v2 = hub.load(f"{REPO}@v2", device="cpu")
    assert torch.equal(logits(m_v2), ref1)  # @revision is honoured
    hub.clear_cache()
    n = len(server.requests())
    assert torch.equal(logits(hub.load(f"{REPO}@{sha_v2}", device="cpu")), ref1)
    assert len(server.requests()) == n  # that commit is cached, and a commit never changes: no request

    # the protocol as the real client spoke it: HEAD on resolve/<revision>, the weights pinned to the config's
    # commit, the LFS file fetched from the "CDN" origin the 302 named, nothing else, no pickle
    gets = server.requests(method="GET")
    assert {r.server for r in gets if r.filename == "model.safetensors"} == {"cdn"}
    assert {r.revision for r in server.requests(filename="config.json")} == {"main", "v2"}
    assert {r.revision for r in server.requests(server="hub", filename="model.safetensors")} == {
        server.commit(REPO, "main"), sha_v2}
    assert all(r.status in (200, 302) for r in server.requests())
    assert all(r.path.startswith((f"/{REPO}/resolve/", "/lfs/")) for r in server.requests())
    assert all("fgviz/" in r.headers.get("user-agent", "") for r in server.requests(server="hub"))
    snapshots = hf_env / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == sorted({server.commit(REPO, "main"), sha_v2})
    assert (hf_env / f"models--{REPO.replace('/', '--')}" / "refs" / "v2").read_text() == sha_v2

    # server gone: everything loads from the cache, by name, by revision and by commit
    server.stop()
    n = len(server.requests())
    for spec, ref in [(REPO, ref0), (f"{REPO}@v2", ref1), (f"{REPO}@{sha_v2}", ref1)]:
        hub.clear_cache()
        assert torch.equal(logits(hub.load(spec, device="cpu")), ref), spec
    # and offline, without even trying the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec, ref in [(REPO, ref0), (f"{REPO}@v2", ref1)]:
        hub.clear_cache()
        assert torch.equal(logits(hub.load(spec, device="cpu")), ref), spec
    assert len(server.requests()) == n


def test_cached_commit_needs_no_request_and_branch_updates_are_seen(hf_env, serve, repo_files, tmp_path):
    server = serve({REPO: {"main": repo_files["main"]}})
    sha0 = server.commit(REPO, "main")
    hub.load(REPO, device="cpu")
    server.clear_log()
    hub.clear_cache()
    hub.load(f"{REPO}@{sha0}", device="cpu")
    assert server.requests() == []  # a cached commit is immutable: no request at all

    server.add_revision(REPO, "main", repo_files["v2"])  # the branch moves
    hub.clear_cache()
    assert torch.equal(logits(hub.load(REPO, device="cpu")), logits(make_tiny("transfg", seed=1)))


def test_renamed_repo_redirect_is_followed(hf_env, serve, repo_files):
    serve({REPO: repo_files}, renamed={"old-org/old-name": REPO})
    assert torch.equal(logits(hub.load("old-org/old-name@v2", device="cpu")), logits(make_tiny("transfg", seed=1)))


def test_unknown_repo_revision_and_file_give_clear_errors(hf_env, serve, repo_files, tmp_path):
    serve({REPO: repo_files, "fgviz-test/not-a-model": {"main": {"README.md": b"# hi\n"}}})
    with pytest.raises(WeightsError, match=r"fgviz-test/nope: repo 'fgviz-test/nope' on http://127\.0\.0\.1:\d+ "
                                           r"does not exist \(or is private or gated: set HF_TOKEN\)"):
        hub.load("fgviz-test/nope", device="cpu")
    with pytest.raises(WeightsError, match=rf"{REPO}@v9: repo '{REPO}' at revision 'v9' on .*: no such revision"):
        hub.load(f"{REPO}@v9", device="cpu")
    with pytest.raises(WeightsError, match=r"has no config\.json: not a model repo fgviz reads"):
        hub.load("fgviz-test/not-a-model", device="cpu")


def test_repo_with_only_a_pickle_is_refused_without_downloading_it(hf_env, serve, repo_files, tmp_path):
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = pickle.dumps(Boom())
    server = serve({
        "fgviz-test/pickled": {"main": {"config.json": repo_files["main"]["config.json"],
                                        "pytorch_model.bin": payload}},
        "fgviz-test/pickle-only": {"main": {"pytorch_model.bin": payload}},
    })
    with pytest.raises(WeightsError, match=r"fgviz-test/pickled: repo 'fgviz-test/pickled' has no model\.safetensors; "
                                           r"fgviz loads safetensors only and never unpickles"):
        hub.load("fgviz-test/pickled", device="cpu")
    with pytest.raises(WeightsError, match=r"no config\.json: not a model repo fgviz reads .* never loads pickles"):
        hub.load("fgviz-test/pickle-only", device="cpu")
    assert server.requests(filename="pytorch_model.bin") == []
    assert not marker.exists()


def test_private_repo_uses_hf_token_read_at_call_time(hf_env, serve, repo_files, monkeypatch):
    server = serve({REPO: repo_files}, private={REPO: "hf_secret_token"})
    with pytest.raises(WeightsError, match=r"does not exist \(or is private or gated: set HF_TOKEN\)"):
        hub.load(REPO, device="cpu")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    hub.clear_cache()
    assert torch.equal(logits(hub.load(REPO, device="cpu")), logits(make_tiny("transfg", seed=0)))
    ok = [r for r in server.requests(server="hub") if r.status in (200, 302)]
    assert ok
    assert all(r.headers.get("authorization") == "Bearer hf_secret_token" for r in ok)
    cdn = server.requests(server="cdn")
    assert cdn
    assert all("authorization" not in r.headers for r in cdn)


def test_offline_with_empty_cache_names_spec_and_repo(hf_env, serve, repo_files, monkeypatch):
    server = serve({REPO: repo_files})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as e:
        hub.load(f"{REPO}@v2", device="cpu")
    msg = str(e.value)
    assert msg.startswith(f"{REPO}@v2: config.json from repo '{REPO}' at revision 'v2'"), msg
    assert "not in the local cache" in msg
    assert "HF_HUB_OFFLINE=1" in msg
    assert server.requests() == []


def test_hf_hub_cache_overrides_hf_home(hf_env, serve, repo_files, monkeypatch, tmp_path):
    serve({REPO: repo_files})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    hub.load(REPO, device="cpu")
    assert (tmp_path / "elsewhere" / f"models--{REPO.replace('/', '--')}").is_dir()
    assert not hf_env.exists()


def test_corrupt_file_served_by_the_hub(hf_env, serve, repo_files):
    files = {**repo_files["main"], "model.safetensors": repo_files["main"]["model.safetensors"][:1000]}
    serve({REPO: {"main": files}})
    with pytest.raises(WeightsError, match=r"model\.safetensors is not a readable safetensors file"):
        hub.load(REPO, device="cpu")


# --------------------------------------------------------------------------------------------------------------------
# Faults: bounded, clear, and no corrupt cache


def test_hanging_hub_fails_within_the_timeout(hf_env, serve, repo_files, fast_faults):
    server = serve({REPO: repo_files})
    server.fault("config.json", "hang")
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=rf"{REPO}: config\.json from repo '{REPO}' .* is not in the local cache "
                                           r"and the Hub could not be used: no answer within 1 s"):
        hub.load(REPO, device="cpu")
    assert time.monotonic() - t0 < 12
    assert len(server.requests(filename="config.json")) == 1  # no retry storm


def test_hanging_download_fails_after_bounded_retries(hf_env, serve, repo_files, fast_faults):
    server = serve({REPO: repo_files})
    server.fault("model.safetensors", "hang", methods=("GET",))
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=r"downloading model\.safetensors from .* failed: .*Timeout"):
        hub.load(REPO, device="cpu")
    assert time.monotonic() - t0 < 20  # unfixed: 23-65 s of retries
    assert 1 <= len(server.requests(method="GET", filename="model.safetensors")) <= 6
    assert len(fast_faults.sleeps) <= 5


@pytest.mark.parametrize(("filename", "methods"), [("config.json", None), ("model.safetensors", None),
                                                   ("model.safetensors", ("GET",))])
def test_server_error_is_a_clear_error_quickly(filename, methods, hf_env, serve, repo_files, fast_faults):
    server = serve({REPO: repo_files})
    server.fault(filename, "500", methods=methods)
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=rf"{filename.replace('.', r'[.]')} .*HTTP 500"):
        hub.load(REPO, device="cpu")
    assert time.monotonic() - t0 < 10
    assert len(server.requests(filename=filename)) <= 3


def test_error_after_cache_falls_back_to_cached_copy(hf_env, serve, repo_files, fast_faults):
    server = serve({REPO: repo_files})
    hub.load(REPO, device="cpu")
    for mode in ("500", "hang"):
        server.clear_faults()
        server.fault("config.json", mode)
        hub.clear_cache()
        t0 = time.monotonic()
        assert torch.equal(logits(hub.load(REPO, device="cpu")), logits(make_tiny("transfg", seed=0)))
        assert time.monotonic() - t0 < 12


def test_truncated_download_leaves_no_corrupt_cache(hf_env, serve, repo_files, fast_faults, monkeypatch):
    server = serve({REPO: repo_files})
    server.fault("model.safetensors", "truncate", methods=("GET",))
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=r"downloading model\.safetensors from .* failed"):
        hub.load(REPO, device="cpu")
    assert time.monotonic() - t0 < 20  # unfixed: 23-65 s of retries
    gets = server.requests(method="GET", filename="model.safetensors")
    assert 2 <= len(gets) <= 6  # retried (resuming with a Range header once a 10 MB chunk got through), bounded
    assert all(r.headers.get("range", "bytes=0-").startswith("bytes=") for r in gets)

    # nothing partial is in the cache: every blob is a complete, served file, and offline loading refuses
    served = {hashlib.sha256(b).hexdigest() for files in repo_files.values() for b in files.values()}
    blobs = [p for p in hf_env.rglob("blobs/*") if p.is_file()]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() in served for p in blobs), blobs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_cache()
    with pytest.raises(WeightsError, match=r"model\.safetensors from .* is not in the local cache"):
        hub.load(REPO, device="cpu")

    # the Hub recovers: the same cache gives a good load
    monkeypatch.delenv("HF_HUB_OFFLINE")
    server.clear_faults()
    hub.clear_cache()
    assert torch.equal(logits(hub.load(REPO, device="cpu")), logits(make_tiny("transfg", seed=0)))


def test_refused_connection_with_empty_cache(hf_env, serve, repo_files, fast_faults):
    server = serve({REPO: repo_files})
    server.stop()
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match=r"is not in the local cache and the Hub could not be used: ConnectError"):
        hub.load(REPO, device="cpu")
    assert time.monotonic() - t0 < 12


def test_format_1_folders_load_and_upgrade_in_place(tmp_path, test_image):
    """A card written before format 2 (one flat "config" with labels, mean, std, crop_pct and training knobs) loads
    to the same model, and `python -m fgviz.weights.format` rewrites it in format 2 without touching the weights."""
    model = make_tiny("tasn")
    out = fmt.save_model(model, tmp_path / "m", provenance={"dataset": "synth-birds"})
    new = json.loads((out / "config.json").read_text())
    old = {"fgviz_format": 1, "method": new["method"], "provenance": new["provenance"],
           "config": {**new["architecture"], **new["pretrained_cfg"], "distill_temperature": 10.0}}  # a knob
    (out / "config.json").write_text(json.dumps(old))
    weights = (out / "model.safetensors").read_bytes()
    loaded = fmt.load_folder(out)
    assert loaded.config == model.config
    assert loaded.labels == model.labels
    assert_same_explanation(model.explain(test_image), loaded.explain(test_image))
    fmt.main([str(out)])
    upgraded = json.loads((out / "config.json").read_text())
    assert upgraded["fgviz_format"] == fmt.FORMAT_VERSION
    assert upgraded["architecture"] == new["architecture"]
    assert upgraded["pretrained_cfg"] == new["pretrained_cfg"]
    assert upgraded["provenance"]["format1_training_args"] == {"distill_temperature": 10.0}
    assert (out / "model.safetensors").read_bytes() == weights
    assert_same_explanation(model.explain(test_image), fmt.load_folder(out).explain(test_image))
