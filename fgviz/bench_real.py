"""Benchmark rows of the "real birds" model set: random weights of the real geometry, loaded through fgviz's own
Hub path from an offline Hugging Face cache (nothing is downloaded).

    python -m fgviz.bench --only real      # these rows alone (the full run includes them)

- the three ViT columns (baseline, TransFG, RAMS-Trans) of one 336-px image, together, against one bare forward of
  the ViT-L/14 (goal <= 2.3x; computed separately, for context);
- TASN on the ConvNeXt-L against its bare forwards;
- resident memory of the whole set against the sum of its distinct models' bytes (goal <= 1.3x).

Measured in a fresh process (the resident memory is its own) that reads the checkpoints from a temporary cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMIT = "0" * 39 + "1"  # the fake snapshot's commit
TAG = "bench_random"  # a pretrained tag no real checkpoint has: these weights are random
VIT = ("vit_large_patch14_clip_336", {"num_classes": 10000})
CONVNEXT = ("convnext_large_mlp", {"num_classes": 10000, "pretrained_cfg_overlay": {"input_size": (3, 448, 448),
                                                                                    "crop_pct": 1.0}})
QUICK = {  # the same architectures at tiny widths, for CI
    "vit_large_patch14_clip_336": {"num_classes": 50, "img_size": 56, "embed_dim": 32, "depth": 4, "num_heads": 2},
    "convnext_large_mlp": {"num_classes": 50, "depths": (1, 1, 1, 1), "dims": (8, 16, 24, 32), "head_hidden_size": 32,
                           "pretrained_cfg_overlay": {"input_size": (3, 64, 64), "crop_pct": 1.0}},
}


def write_cache(cache: Path, quick: bool) -> dict[str, str]:
    """Random checkpoints of the real-birds geometry written by timm into an HF cache's snapshot layout; returns
    {architecture: spec}."""
    import timm
    import torch
    from timm.models._hub import save_for_hf

    specs = {}
    for arch, kwargs in (VIT, CONVNEXT):
        kwargs = QUICK[arch] if quick else kwargs
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, **kwargs).eval()
        name = f"{arch}.{TAG}"
        repo = cache / f"models--timm--{name}"
        snapshot = repo / "snapshots" / COMMIT
        names = [f"{i:05d}_Animalia_Chordata_Aves_Order_Family_Genus_species{i}" for i in range(model.num_classes)]
        save_for_hf(model, str(snapshot), model_config={"label_names": names}, safe_serialization=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        specs[arch] = f"timm:{name}"
        del model
    return specs


def release() -> None:
    """Collect garbage and hand freed heap back to the system (glibc), so resident memory shows what is held."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: resident memory may then read high
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(specs: dict[str, str], repeats: int) -> dict[str, Any]:
    """In this process: load the set, then time the explains against the bare forwards."""
    import numpy as np
    import torch

    import fgviz
    from fgviz.methods.backbones.vit import trunk
    from fgviz.weights.cache import storages

    vit_spec, cnn_spec = specs["vit_large_patch14_clip_336"], specs["convnext_large_mlp"]
    before = _rss_mb()
    methods = ("transfg", "rams_trans", "vit")  # the app's column order
    t0 = time.perf_counter()
    models = {m: fgviz.load(f"{vit_spec}#{m}", device="cpu") for m in methods}
    tasn = fgviz.load(f"{cnn_spec}#tasn", device="cpu")
    load_s = time.perf_counter() - t0
    H, W = models["vit"].config.img_size
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    ci = (np.random.default_rng(1).random((*tasn.config.img_size, 3)) * 255).astype(np.uint8)
    with torch.inference_mode():  # one explain each touches every weight (safetensors may map the file lazily)
        for m in methods:
            models[m].explain(image)
        tasn.explain(ci)
    trunk.clear_memo()  # the set's memory, not one explanation's: drop the memoised pass and the arrays
    release()
    loaded = _rss_mb()
    held: dict = {}
    for m in (*models.values(), tasn):
        held.update(storages(m))
    distinct_mb = sum(held.values()) / 2**20
    each_mb = {"vit": sum(storages(models["vit"]).values()) / 2**20, "tasn": sum(storages(tasn).values()) / 2**20}

    x, _ = models["vit"].preprocess(image)

    def timed(fn) -> list[float]:
        fn()  # warm-up
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    def together() -> None:
        trunk.clear_memo()
        for m in methods:
            models[m].explain(image)

    def separately() -> None:
        for m in methods:
            trunk.clear_memo()
            models[m].explain(image)

    with torch.inference_mode():
        bare_vit = timed(lambda: models["vit"].vit(x))
        tog = timed(together)
        sep = timed(separately)
        cx, _ = tasn.preprocess(ci)
        s = tasn.config.out_size
        small = torch.nn.functional.interpolate(cx, size=(s, s), mode="bilinear", align_corners=True)
        net = tasn.backbone
        bare_cnn = timed(lambda: tasn.fc(net(small)))  # one bare forward of the ConvNeXt at its own size
        tasn_forward = timed(lambda: tasn(cx))
        tasn_explain = timed(lambda: tasn.explain(ci))
    peak = max(loaded, _rss_mb())
    med = statistics.median
    return {
        "image": f"{H}x{W}", "repeats": repeats, "load_s": load_s,
        "bare_vit_s": med(bare_vit), "together_s": med(tog), "separately_s": med(sep),
        "together_ratio": med(tog) / med(bare_vit), "separately_ratio": med(sep) / med(bare_vit),
        "tasn_image": f"{tasn.config.img_size[0]} px, attention net and backbone at {s} px",
        "bare_convnext_s": med(bare_cnn), "tasn_forward_s": med(tasn_forward), "tasn_explain_s": med(tasn_explain),
        "tasn_explain_vs_forward": med(tasn_explain) / med(tasn_forward),
        "tasn_explain_vs_bare": med(tasn_explain) / med(bare_cnn),
        "rss_before_mb": before, "rss_loaded_mb": loaded, "rss_peak_mb": peak,
        "resident_mb": loaded - before, "distinct_mb": distinct_mb, "models_mb": each_mb, "rss_note": (
            "after loading the set and one explain of each column (every weight touched), the explanations and "
            "the memoised pass released"),
        "resident_ratio": (loaded - before) / distinct_mb,
        "unshared_mb": 3 * each_mb["vit"] + each_mb["tasn"],
    }


def bench_real_set(quick: bool, repeats: int) -> dict[str, Any]:
    """Write the random checkpoints, then measure in a fresh process reading them offline."""
    with tempfile.TemporaryDirectory(prefix="fgviz-bench-real-") as tmp:
        cache = Path(tmp) / "hub"
        specs = write_cache(cache, quick)
        env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        code = ("import json,sys;from fgviz.bench_real import measure;"
                f"print(json.dumps(measure(json.loads(sys.argv[1]), {int(repeats)})))")
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(specs)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"the real-set benchmark failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def render(r: dict[str, Any]) -> list[str]:
    """Rows for docs/benchmarks.md."""
    def s(v: float) -> str:
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"

    return [
        f"| real birds set: ViT, TransFG and RAMS-Trans columns of one {r['image']} image together (ViT-L/14 "
        f"weights shared, common pass once) / one bare ViT-L forward | {r['together_ratio']:.2f}x "
        f"({s(r['together_s'])} vs {s(r['bare_vit_s'])}) | <= 2.3x |",
        f"| the same three columns computed separately (context) | {r['separately_ratio']:.2f}x "
        f"({s(r['separately_s'])}) | (context) |",
        f"| TASN on the ConvNeXt-L ({r['tasn_image']}): `explain` / its bare forward (attention net, sampler, both "
        f"sampled images) | {r['tasn_explain_vs_forward']:.2f}x ({s(r['tasn_explain_s'])} vs "
        f"{s(r['tasn_forward_s'])}); {r['tasn_explain_vs_bare']:.1f}x one bare ConvNeXt forward "
        f"({s(r['bare_convnext_s'])}) | (context) |",
        f"| resident memory of the real birds set (loaded, each column explained once, explanations released) / "
        f"the sum of its distinct models' bytes | "
        f"{r['resident_ratio']:.2f}x ({r['resident_mb']:.0f} MB for {r['distinct_mb']:.0f} MB of weights; "
        f"{r['unshared_mb']:.0f} MB if each method held its own copy) | <= 1.3x |",
    ]
