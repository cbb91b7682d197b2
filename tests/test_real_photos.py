"""The registry's model sets ("real photos": ImageNet backbones; "real birds": iNaturalist 2021 species): each method
wraps the checkpoint its set names, downloaded through the real `hf_hub_download` from a loopback Hub that serves tiny
checkpoints in timm's layout under the real names; offline, the demo models are shown instead with one sentence.
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
        "resnet50": dict(layers=(1, 1, 1, 1), channels=(8, 16, 32, 64)),
        "vit_large_patch14_clip_336": dict(img_size=56, depth=3, embed_dim=32, num_heads=2, num_classes=12),
        "convnext_large_mlp": dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), head_hidden_size=32, num_classes=12,
                                   pretrained_cfg_overlay={"input_size": (3, 64, 64), "crop_pct": 1.0})}


def set_specs(name: str) -> dict[str, str]:
    return hub.model_sets()[name]["specs"]


def _repos(tmp: Path) -> dict[str, dict]:
    """One tiny random checkpoint per distinct timm name of the registry's model sets, written by timm's own
    `save_for_hf`, under the real name."""
    repos = {}
    names = {spec.removeprefix("timm:").partition("#")[0] for e in hub.model_sets().values()
             for spec in e["specs"].values()}
    for spec in names:
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
            assert key.spec == set_specs("imagenet")[m]
            assert key != demo.keys[m]
            e = ui.explorer.get(key)
            assert e.weights_kind == "backbone"
            assert len(e.labels) == 1000  # ImageNet's classes
            assert res.numbers[m]["made_by"].startswith(METHODS[m].title)
        status = ui.render(res.keys, res.notes, SHOWN, "transfg", Style())["status"]
        assert status.count("a published classifier wrapped in this method as it is") == len(SHOWN)
        assert status.count("trained on ImageNet") == len(SHOWN)  # each column names its repo, data and licence
        asked = loopback_hub.requests(server="hub")
        assert {r.repo_id for r in asked} == {f"timm/{set_specs('imagenet')[m][5:].partition('#')[0]}"
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
        assert note == ("Real photos need the Hugging Face Hub, and this server is offline: showing the demo models "
                        "instead.")
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


ALL = list(METHODS)


def test_real_birds_set_shows_inat_species_with_one_copy_of_the_vit(loopback_hub) -> None:
    ui = U.UI(Explorer(device="cpu"))
    try:
        res = ui.explain(BIRD, "birds", {}, ALL, model_set="inat_birds")
        assert res.notes == {}
        assert {m: k.spec for m, k in res.keys.items()} == set_specs("inat_birds")
        models = {m: ui.explorer.model(k.spec, m) for m, k in res.keys.items()}
        vits = [models[m].plain_backbone() for m in ALL if models[m].plain_backbone() is not None]
        assert len(vits) == 3 and len({v.blocks[0].attn.qkv.weight.data_ptr() for v in vits}) == 1
        assert res.numbers["transfg"]["backbone_top5"]  # the ViT's own top-5 beside the part-layer path's
        status = ui.render(res.keys, res.notes, ALL, "transfg", Style())["status"]
        assert status.count("timm/vit_large_patch14_clip_336.laion2b_ft_augreg_inat21") == 3
        assert status.count("trained on iNaturalist 2021") == 4
    finally:
        ui.close()


def test_auto_shows_the_demo_models_for_the_examples_and_real_birds_for_a_photo(loopback_hub) -> None:
    """On a Space the Models radio starts on "auto": fgviz's own examples (they carry their generator tag) keep the
    demo models, an uploaded bird photo gets the real-birds set."""
    ui = U.UI(Explorer(device="cpu"))
    try:
        example = ui.explain(BIRD, "birds", {}, SHOWN, model_set="auto")
        assert all(k.spec.endswith("-birds-demo") for k in example.keys.values())
        photo = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)  # no generator tag
        res = ui.explain(photo, "birds", {}, SHOWN, model_set="auto")
        assert {m: k.spec for m, k in res.keys.items()} == {m: set_specs("inat_birds")[m] for m in SHOWN}
        cars = ui.explain(photo, "cars", {}, SHOWN, model_set="auto")  # no set is meant for cars
        assert all(k.spec.endswith("-cars-demo") for k in cars.keys.values())
    finally:
        ui.close()


def test_real_birds_offline_say_they_need_the_hub_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.clear_cache()
    ui = U.UI(Explorer(device="cpu"))
    try:
        res = ui.explain(BIRD, "birds", {}, SHOWN, model_set="inat_birds")
        assert res.set_note == ("Real birds need the Hugging Face Hub, and this server is offline: showing the demo "
                                "models instead.")
        assert ui.render(res.keys, res.notes, SHOWN, "transfg", Style())["model_set"]["value"] == "demo"
    finally:
        ui.close()


def test_a_first_load_shows_its_download_as_a_bar_with_the_size(loopback_hub) -> None:
    ui = U.UI(Explorer(device="cpu"))
    bars = []
    try:
        ui.explain(BIRD, "birds", {}, ["vit"], model_set="inat_birds", progress=lambda f, text: bars.append((f, text)))
        weights = [(f, t) for f, t in bars if "model.safetensors" in t]
        assert weights[0][0] == 0.0 and weights[-1][0] == 1.0
        assert " GB" in weights[-1][1] and "of" in weights[-1][1]
        bars.clear()
        ui.explain(BIRD, "birds", {}, ["vit"], model_set="inat_birds", progress=lambda f, t: bars.append(t))
        assert bars == []  # loaded: nothing to download
    finally:
        ui.close()


def test_the_models_radio_starts_on_auto_on_a_space(monkeypatch) -> None:
    from fgviz.explorer import layout

    nodes = {n.name: n for n in _walk(layout.page({m: ["auto"] for m in METHODS}, {}, ("birds", "cars"),
                                                  model_set=layout.AUTO_SET))}
    radio = nodes["model_set"]
    assert radio.props["value"] == "auto"
    assert [v for _, v in radio.props["choices"]] == ["auto", "demo", *hub.model_sets()]
    local = {n.name: n for n in _walk(layout.page({m: ["auto"] for m in METHODS}, {}, ("birds", "cars")))}
    assert local["model_set"].props["value"] == "demo"
    assert "auto" not in [v for _, v in local["model_set"].props["choices"]]


def _walk(nodes):
    for n in nodes:
        yield n
        yield from _walk(n.children)
