"""The "real photos" model set: each method wraps the ImageNet backbone its `imagenet_spec` names, downloaded through
the real `hf_hub_download` from a loopback Hub that serves tiny checkpoints in timm's layout; offline, the demo models
are shown instead with a message.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fgviz.explorer import ui as U
from fgviz.explorer.layout import default_methods
from fgviz.explorer.session import Explorer
from fgviz.methods import METHODS
from fgviz.viz.panels import Style
from fgviz.weights import download, hub
from tests.hubserver import HubServer
from tests.test_backbone import make_repo

ROOT = Path(__file__).resolve().parents[1]
BIRD = str(ROOT / "assets" / "birds_1.jpg")
SHOWN = default_methods()
TINY = {"vit_base_patch16_224": dict(img_size=64, depth=2, embed_dim=48, num_heads=3),
        "resnet50": dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64))}


def _repos(tmp: Path) -> dict[str, dict]:
    """One tiny random checkpoint per distinct `imagenet_spec`, written by timm's own `save_for_hf`."""
    repos = {}
    for spec in {m.imagenet_spec.removeprefix("timm:").partition("#")[0] for m in METHODS.values()}:
        arch = spec.partition(".")[0]
        make_repo(tmp, spec, arch, **TINY[arch])
        folder = tmp / "timm" / spec
        repos[f"timm/{spec}"] = {"main": {p.name: p.read_bytes() for p in folder.iterdir()}}
    return repos


@pytest.fixture
def loopback_hub(tmp_path, monkeypatch):
    server = HubServer(_repos(tmp_path / "src"))
    monkeypatch.setenv("HF_ENDPOINT", server.start())
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(download, "HUB_TIMEOUT_S", 5.0)
    hub.clear_cache()
    yield server
    server.stop()
    hub.clear_cache()


def test_real_photos_load_each_methods_imagenet_backbone_lazily(loopback_hub) -> None:
    ui = U.UI(Explorer(device="cpu"))
    try:
        demo = ui.explain(BIRD, "birds", {}, SHOWN)  # the demo set first: nothing is asked of the Hub
        assert loopback_hub.requests() == []
        res = ui.explain(BIRD, "birds", {}, SHOWN, model_set="imagenet")
        assert res.notes == {}
        for m in SHOWN:
            key = res.keys[m]
            assert key.spec == METHODS[m].imagenet_spec
            assert key != demo.keys[m]
            e = ui.explorer.get(key)
            assert e.weights_kind == "backbone"
            assert len(e.labels) == 1000  # ImageNet's classes
            assert res.numbers[m]["made_by"].startswith(METHODS[m].title)
        status = ui.render(res.keys, res.notes, SHOWN, "transfg", Style())["status"]
        assert status.count("a published classifier wrapped in this method as it is") == len(SHOWN)
        assert status.count("trained on ImageNet") == len(SHOWN)  # each column names its repo, data and licence
        asked = loopback_hub.requests(server="hub")
        assert {r.repo_id for r in asked} == {f"timm/{METHODS[m].imagenet_spec[5:].partition('#')[0]}"
                                              for m in SHOWN}  # one backbone per distinct spec, shared
        assert {r.filename for r in loopback_hub.requests()} == {"config.json", "model.safetensors"}  # no pickle
    finally:
        ui.close()


def test_real_photos_offline_fall_back_to_the_demo_models_with_a_message(tmp_path, monkeypatch, caplog) -> None:
    """Offline, the set falls back as a whole: the demo models, one short sentence (not the Hub's wording), one log
    line, and the Models radio back on the demo models. Any set other than "demo" takes this path."""
    import logging

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_cache()
    ui = U.UI(Explorer(device="cpu"))
    try:
        with caplog.at_level(logging.WARNING, logger="fgviz.app"):
            res = ui.explain(BIRD, "birds", {}, SHOWN, model_set="imagenet")
        note = res.set_note
        assert set(res.notes) == {U.SET_NOTE}  # one note for the set, none per method
        assert note == ("Real photos could not be loaded (this server runs offline and has not downloaded them): "
                        "showing the demo models instead.")
        for word in ("HF_HUB_OFFLINE", "config.json", "timm/", "repo", "\n"):
            assert word not in note, word
        assert len([r for r in caplog.records if r.name == "fgviz.app"]) == 1
        for m in SHOWN:
            assert res.keys[m].spec == f"{m}-birds-demo"
            assert res.numbers[m]["fallback"] == note
        assert np.isfinite(res.numbers["tasn"]["probs"]).all()
        shown = ui.render(res.keys, res.notes, SHOWN, "transfg", Style())
        assert shown["model_set"]["value"] == "demo"  # the radio shows the set that is shown
        assert shown["status"].count(note) == 1
        assert not any(k.startswith("spec.") for k in shown)  # the model boxes were not the reason
    finally:
        ui.close()
