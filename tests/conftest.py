"""Shared fixtures: tiny seeded models of each method (built in milliseconds), a test image, and the loopback Hub
(`hf_env`: an empty HF cache; `serve`: a tests/hubserver.py Hub that HF_ENDPOINT points at)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgviz.methods import create_model
from fgviz.weights import hub
from tests.hubserver import HubServer

TINY_CONFIGS = {
    "transfg": dict(
        num_classes=5, img_size=(40, 52), crop_pct=1.0, patch_size=8, stride=6, embed_dim=32, depth=3, num_heads=4
    ),
    "rams_trans": dict(
        num_classes=5, img_size=(48, 64), crop_pct=1.0, patch_size=8, embed_dim=32, depth=3, num_heads=4
    ),
    "vit": dict(num_classes=5, img_size=(40, 52), crop_pct=1.0, patch_size=8, embed_dim=32, depth=3, num_heads=4),
    "tasn": dict(
        num_classes=5,
        img_size=(64, 72),
        crop_pct=1.0,
        att_size=32,
        out_size=32,
        att_layers=(1, 1, 1, 1),
        att_channels=(8, 8, 16, 16),
        backbone_block="basic",
        backbone_layers=(1, 1, 1, 1),
        backbone_channels=(8, 8, 16, 16),
    ),
}


def sharpen_attention(model: torch.nn.Module, factor: float = 8.0) -> None:
    """Scale every qkv projection so random-weight attention is peaked (not near-uniform) and maps have structure."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.qkv.weight"):
                p.mul_(factor)


def make_tiny(method: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(method, **{**TINY_CONFIGS[method], **overrides})
    sharpen_attention(model)
    return model.eval()


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_model(request):
    return make_tiny(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def blob_image(rng: np.random.Generator) -> np.ndarray:
    """A smooth non-square RGB image (90x130) with a bright blob, so attention has something to find."""
    H, W = 90, 130
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx / W, yy / H, 0.5 * np.ones_like(xx, dtype=float)], -1)
    img += 0.8 * np.exp(-(((yy - 30) / 8.0) ** 2 + ((xx - 90) / 10.0) ** 2))[..., None]
    img += 0.05 * rng.standard_normal(img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def test_image(rng):
    return blob_image(rng)


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """An empty HF_HOME, no token, online; the loader's in-process cache cleared before and after."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    hub.clear_cache()
    yield tmp_path / "hf_home" / "hub"
    hub.clear_cache()


@pytest.fixture
def serve(monkeypatch):
    """serve(repos, **kw) -> a started HubServer with HF_ENDPOINT pointing at it; stopped at teardown."""
    servers = []

    def start(repos, **kw) -> HubServer:
        server = HubServer(repos, **kw)
        servers.append(server)
        monkeypatch.setenv("HF_ENDPOINT", server.start())
        return server

    yield start
    for s in servers:
        s.stop()


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", default=False,
                     help="robustness tests at full size (load, leak, fuzz; minutes); same as FGVIZ_FULL=1")


def pytest_configure(config):
    if config.getoption("--full", default=False):
        import os

        os.environ["FGVIZ_FULL"] = "1"  # read by the test modules at import (hypothesis settings, loop counts)


@pytest.fixture(autouse=True)
def _hub_offline_flag_follows_env(monkeypatch):
    """huggingface_hub freezes HF_HUB_OFFLINE at import, fgviz reads it at each load (as `local_files_only`).

    CI exports HF_HUB_OFFLINE=1, yet the loopback Hub tests must reach 127.0.0.1: keep the frozen flag off and let
    each test's environment (monkeypatch.setenv) decide through fgviz.
    """
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
