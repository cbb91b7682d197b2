"""Benchmarks: how much explaining costs over the bare model, at the papers' sizes, as machine-independent ratios.

    python -m fgviz.bench                 # full mode: paper sizes, writes docs/benchmarks.md
    python -m fgviz.bench --quick --out /tmp/bench.md   # CI mode: tiny sizes, 1 repeat, no time assertions
    python -m fgviz.bench --only real     # the real-birds set's rows alone (fgviz.bench_real), printed

Every figure is a median over repeats after a warm-up, with its spread (min-max); GPU timings synchronise the
device. Ratios compare two things measured in the same process on the same inputs, so they hold across machines
far better than seconds do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgviz.core.attention import psm_select
from fgviz.methods import create_model

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    median: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{fmt_s(self.median)} ({fmt_s(self.lo)}-{fmt_s(self.hi)}, n={self.n})"


def fmt_s(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def timeit(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: torch.device | None = None) -> Timing:
    """Median wall time of `fn` after `warmup` calls; CUDA work is synchronised before each clock read."""
    sync = (lambda: torch.cuda.synchronize(device)) if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return Timing(statistics.median(times), min(times), max(times), len(times))


def random_attention(L: int, H: int, N: int, seed: int = 0) -> list[torch.Tensor]:
    """L post-softmax-like attention tensors (1, H, N, N), rows summing to 1, built in place to bound memory."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(L):
        a = torch.rand(1, H, N, N, generator=g)
        a.div_(a.sum(-1, keepdim=True))
        out.append(a)
    return out


def official_psm(attentions: list[torch.Tensor]) -> torch.Tensor:
    """TransFG's Part_Attention as coded: full per-head products A_L ... A_1, then argmax of the CLS row."""
    prod = attentions[0]
    for a in attentions[1:]:
        prod = torch.matmul(a, prod)  # (B, H, N, N): the N x N x N products the row vector avoids
    return prod[:, :, 0, 1:].argmax(-1) + 1


def bench_psm(N: int, L: int, H: int, repeats: int) -> dict[str, Any]:
    attns = random_attention(L, H, N)
    fast = timeit(lambda: psm_select(attns), repeats)
    slow = timeit(lambda: official_psm(attns), max(1, repeats // 3), warmup=0)
    same = bool(torch.equal(psm_select(attns), official_psm(attns)))
    return {"fast": fast, "official": slow, "speedup": slow.median / fast.median, "same_indices": same,
            "shape": f"{L} x (1, {H}, {N}, {N})"}


def paper_models(quick: bool) -> dict[str, dict[str, Any]]:
    if quick:
        return {
            "transfg": dict(num_classes=10, img_size=(64, 64), crop_pct=1.0, patch_size=16, stride=12, embed_dim=64,
                            depth=4, num_heads=4),
            "rams_trans": dict(num_classes=10, img_size=(64, 64), crop_pct=1.0, patch_size=16, embed_dim=64, depth=4,
                               num_heads=4),
            "tasn": dict(num_classes=10, img_size=(64, 64), crop_pct=1.0, att_size=32, out_size=32,
                         att_layers=(1, 1, 1, 1), att_channels=(8, 8, 16, 16), backbone_block="basic",
                         backbone_layers=(1, 1, 1, 1), backbone_channels=(8, 8, 16, 16)),
        }
    return {
        "transfg": dict(num_classes=200),  # ViT-B/16, 448 px, stride 12: 1370 tokens
        "rams_trans": dict(num_classes=200, img_size=(448, 448), patch_size=32),  # official code: B/32 at 448
        "tasn": dict(num_classes=200),  # 512 -> attention net at 224 -> sampled 224, ResNet-18 + ResNet-50
    }


def bench_explain(method: str, cfg: dict[str, Any], repeats: int, device: torch.device) -> dict[str, Any]:
    """explain(image) against the bare forward the explanation rests on, same input."""
    torch.manual_seed(0)
    model = create_model(method, **cfg).to(device).eval()
    H, W = model.config.img_size
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    x, _ = model.preprocess(image)
    x = x.to(device)
    vit = getattr(model, "vit", None)

    @torch.inference_mode()
    def bare() -> None:
        if method == "transfg":
            vit.forward_features(x)  # plain fused ViT on the same 1370 tokens (all blocks)
        elif method == "rams_trans":
            for _ in range(model.config.num_scales):
                vit.forward_features(x)  # one bare forward per scale
        else:
            model(x)  # attention net + sampler + backbone

    from fgviz.methods.backbones.vit import trunk

    def first_explain() -> None:  # each repeat explains the image afresh: no pass memoised by the one before
        trunk.clear_memo()
        model.explain(image, **({"keep_attention": False} if vit is not None else {}))

    explain = timeit(first_explain, repeats, device=device)
    plain = timeit(bare, repeats, device=device)
    out = {"explain": explain, "bare": plain, "ratio": explain.median / plain.median}
    if method == "transfg":
        # where the time goes: PSM-only forward, + fused attention of every layer, + rollout, + the per-layer floor
        out.update(lower_layers=len(vit.blocks) - 1, heads=vit.blocks[0].attn.num_heads, tokens=model.num_tokens)
        from fgviz.core.attention import rollout_from_fused

        with torch.inference_mode():
            psm_only = timeit(lambda: model._forward(x), repeats, device=device)
            with_fused = timeit(lambda: model._forward(x, with_fused=True), repeats, device=device)
            fused = model._forward(x, with_fused=True)["fused"]
            roll = timeit(lambda: rollout_from_fused(fused), repeats, device=device)
            kept = timeit(lambda: forward_keeping_attention(model, x), repeats, device=device)
            if not torch.equal(forward_keeping_attention(model, x), model._forward(x)["part_tokens"]):
                raise RuntimeError("the kept-attention PSM disagrees with the explain PSM")
        out["breakdown"] = {"forward_with_psm": psm_only, "forward_psm_and_fused": with_fused, "rollout": roll,
                            "eager_keep": kept, **bench_layer(model, repeats, device)}
    return out


def bench_layer(model: Any, repeats: int, device: torch.device) -> dict[str, Timing]:
    """One lower layer at the model's size: its fused attention vs what the PSM adds to it (the explain floor).

    The PSM row vector needs every lower layer's full softmax(q kᵀ) (a row vector times the whole matrix), so
    per layer the explanation recomputes q kᵀ and its softmax in row blocks and multiplies by the running row.
    """
    from fgviz.core.attention import psm_select_qk

    vit = model.vit
    H, N = vit.blocks[0].attn.num_heads, model.num_tokens
    d = vit.embed_dim // H
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, H, N, d, generator=g).to(device) for _ in range(3))
    with torch.inference_mode():
        sdpa = timeit(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), repeats, device=device)
        top = timeit(lambda: psm_select_qk([q], [k]), repeats, device=device)  # the top layer's CLS row only
        two = timeit(lambda: psm_select_qk([q, q], [k, k]), repeats, device=device)  # + one full lower layer
        tokens = torch.randn(1, N, vit.embed_dim, generator=g).to(device)  # (1, N, D)
        block = timeit(lambda: vit.blocks[0](tokens), repeats, device=device)
    per_layer = Timing(two.median - top.median, two.lo - top.hi, two.hi - top.lo, two.n)
    return {"layer_sdpa": sdpa, "layer_psm": per_layer, "layer_block": block}


def forward_keeping_attention(model: Any, x: torch.Tensor, block_rows: int = 64) -> torch.Tensor:
    """The rejected alternative, for the record: eager row-block attention in the lower blocks that keeps every
    layer's probabilities, so the PSM reads them instead of recomputing q kᵀ. Returns the PSM indices."""
    import types

    vit = model.vit
    kept: list[torch.Tensor] = []

    def attention(self: Any, h: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
        B, N, _ = h.shape
        qkv = self.qkv(h).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, N, d) each
        q, kt = self.q_norm(q) * self.scale, self.k_norm(k).transpose(-2, -1)
        probs = torch.empty(B, self.num_heads, N, N, dtype=q.dtype, device=q.device)  # kept for the PSM
        out = torch.empty_like(v)  # (B, H, N, d)
        for s in range(0, N, block_rows):
            probs[:, :, s : s + block_rows] = (q[:, :, s : s + block_rows] @ kt).softmax(dim=-1)
            out[:, :, s : s + block_rows] = probs[:, :, s : s + block_rows] @ v
        kept.append(probs)
        return self.proj(self.norm(out.transpose(1, 2).reshape(B, N, self.attn_dim)))

    lower = vit.blocks[:-1]
    with torch.inference_mode():
        h = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        try:
            for blk in lower:
                blk.attn.forward = types.MethodType(attention, blk.attn)
                h = blk(h)
        finally:
            for blk in lower:
                vars(blk.attn).pop("forward", None)  # back to the class's (fused) forward
        r = kept[-1][:, :, :1]  # (B, H, 1, N)
        for probs in reversed(kept[:-1]):
            r = r @ probs
    return r[:, :, 0, 1:].argmax(dim=-1) + 1


def peak_rss_explain(quick: bool) -> float:
    """Peak resident memory (GB) of a fresh process doing one paper-size TransFG explain on CPU."""
    cfg = paper_models(quick)["transfg"]
    code = (
        "import json,resource,sys,numpy as np,torch;from fgviz.methods import create_model;"
        f"m=create_model('transfg',**json.loads('{json.dumps(cfg)}')).eval();"
        "H,W=m.config.img_size;img=(np.random.default_rng(0).random((H,W,3))*255).astype(np.uint8);"
        "m.explain(img);"
        # VmHWM is this process's own peak; ru_maxrss also counts the parent's size at fork (Linux keeps it
        # across exec), which made the full run report the harness's memory, not the explain's.
        "hwm=[l for l in open('/proc/self/status') if l.startswith('VmHWM:')] if sys.platform=='linux' else [];"
        "r=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "print(int(hwm[0].split()[1]) if hwm else (r // 1024 if sys.platform == 'darwin' else r))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024**2  # printed in kB


def machine() -> dict[str, str]:
    import timm

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads()),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "commit": commit.strip() or "unknown"}


def run(quick: bool, repeats: int, device: torch.device, only: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"machine": machine(), "quick": quick, "device": str(device)}
    from fgviz.bench_real import bench_real_set

    res["real"] = bench_real_set(quick, max(1, min(repeats, 3)))
    if only == "real":
        return res
    N = 50 if quick else 1370
    res["psm"] = bench_psm(N, 11, 12 if not quick else 4, repeats)
    res["explain"] = {m: bench_explain(m, cfg, repeats, device) for m, cfg in paper_models(quick).items()}
    res["peak_rss_gb"] = peak_rss_explain(quick)
    res["app"] = {**bench_slider(quick), **bench_app(quick)}
    return res


def bench_slider(quick: bool, repeats: int = 30) -> dict[str, Any]:
    """Layer-slider re-render from the cached explanation (what the app's slider calls), paper-size TransFG."""
    import tempfile

    from fgviz.explorer import analysis as views
    from fgviz.explorer.session import Explorer
    from fgviz.viz.panels import Style
    from fgviz.weights.format import save_model

    torch.manual_seed(0)
    cfg = paper_models(quick)["transfg"]
    folder = Path(tempfile.mkdtemp(prefix="fgviz-bench-")) / "transfg-paper-random"
    save_model(create_model("transfg", **cfg), folder)
    explorer = Explorer(device="cpu", allowed_roots=[folder.parent])
    H, W = cfg.get("img_size", (448, 448))
    image = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    key = explorer.explain(explorer.add_image(image), str(folder), "transfg")
    forwards = explorer.forward_count
    analysis = explorer.analysis(key)
    style = Style()
    L = analysis.L
    views.layer_view(analysis, L, style)  # warm-up
    times = []
    for i in range(8 if quick else repeats):
        t = time.perf_counter()
        views.layer_view(analysis, i % L + 1, style)
        times.append(time.perf_counter() - t)
    if explorer.forward_count != forwards:
        raise RuntimeError("a slider move ran a model")
    return {"slider_ms": statistics.median(times) * 1000, "slider_p95_ms": float(np.percentile(times, 95) * 1000),
            "slider_model": f"TransFG {H} px, {analysis.expl.grid[0]}x{analysis.expl.grid[1]} grid"}


def bench_app(quick: bool) -> dict[str, Any]:
    """Startup and /explain end to end, in a subprocess (fgviz never imports gradio)."""
    script = ROOT / "benchmarks" / "app_bench.py"
    proc = subprocess.run([sys.executable, str(script), "--requests", "3" if quick else "20"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        return {"skipped": f"benchmarks/app_bench.py failed: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _kept_gb(res: dict[str, Any]) -> float:
    t = res["explain"]["transfg"]
    return t["lower_layers"] * t["heads"] * t["tokens"] ** 2 * 4 / 1024**3  # float32 probabilities kept


def _psm_floor(res: dict[str, Any]) -> float:
    t = res["explain"]["transfg"]
    b = t["breakdown"]
    return 1 + (t["lower_layers"] * b["layer_psm"].median - b["layer_block"].median) / t["bare"].median


def render_markdown(res: dict[str, Any], command: str) -> str:
    m = res["machine"]
    p = res["psm"]
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on commit {m['commit']} "
        f"({'quick mode: tiny sizes, not representative' if res['quick'] else 'full mode, paper sizes'}).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores (torch threads {m['torch_threads']}), GPU: {m['gpu']}; "
        f"Python {m['python']}, torch {m['torch']}, timm {m['timm']}; device {res['device']}.",
        "Times are medians over repeats after a warm-up, with (min-max, n).",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| `psm_select` vs official full per-head products, {p['shape']}, same indices: {p['same_indices']} "
        f"| {p['speedup']:.0f}x faster ({p['fast']} vs {p['official']}) | >= 100x |",
    ]
    names = {"transfg": "TransFG `explain` / bare ViT forward (same tokens)",
             "rams_trans": "RAMS-Trans `explain` (2 scales) / two bare forwards",
             "tasn": "TASN `explain` / bare forward (attention net + sampler + backbone)"}
    for method, r in res["explain"].items():
        lines.append(f"| {names[method]} | {r['ratio']:.2f} ({r['explain']} vs {r['bare']}) | <= 1.15 |")
    b = res["explain"].get("transfg", {}).get("breakdown")
    lines.append(f"| peak resident memory, one paper-size TransFG explain on CPU (fresh process) "
                 f"| {res['peak_rss_gb']:.2f} GB | <= 3 GB |")
    app = res.get("app", {})
    if "slider_ms" in app:
        lines.append(f"| layer-slider re-render from the cache ({app['slider_model']}) "
                     f"| median {app['slider_ms']:.1f} ms "
                     f"(p95 {app['slider_p95_ms']:.1f} ms) | median <= 50 ms |")
    if "explain_e2e" in app:
        e = app["explain_e2e"]
        lines.append(f"| app `/explain` through gradio_client, demo models, 3 methods | median {fmt_s(e['median'])}, "
                     f"p95 {fmt_s(e['p95'])}; {e['ratio']:.2f}x the sum of the three explains "
                     f"({fmt_s(e['sum_explains'])}) | <= 1.5x |")
        if "gradio_floor" in e:
            f = e["gradio_floor"]
            lines.append(f"| the same request to a Gradio server whose handler runs no model (same inputs, three "
                         f"384-px PNGs out): Gradio's floor | median {fmt_s(f['median'])}, p95 {fmt_s(f['p95'])}; "
                         f"/explain minus the floor = {(e['median'] - f['median']) / e['sum_explains']:.2f}x the "
                         "three explains | (context) |")
            ratio = e.get("floor_ratio", e["median"] / f["median"])
            lines.append(f"| app `/explain` over Gradio's floor, same run | {ratio:.2f}x "
                         f"({fmt_s(e['median'])} vs {fmt_s(f['median'])}) | <= 1.5x |")
    if "startup_s" in app:
        lines.append(f"| `python app.py` start to first answer, offline, demo models | {app['startup_s']:.1f} s "
                     "| <= 15 s |")
    if "skipped" in app:
        lines.append(f"| app figures | not measured: {app['skipped']} | |")
    if "real" in res:
        from fgviz.bench_real import render as render_real

        lines += render_real(res["real"])
    lines.append("| GPU: paper-size explains in half precision | no GPU on this machine | reported when available |")
    e = app.get("explain_e2e", {})
    if "gradio_floor" in e:
        floor, work = e["gradio_floor"]["median"], e["sum_explains"]
        paper = res["explain"].get("transfg", {}).get("explain")
        lines += [
            "",
            ("Why the `/explain` target is missed" if e["ratio"] > 1.5 else "Context for `/explain`")
            + f": a request whose handler runs no model already takes {fmt_s(floor)} "
            "through gradio_client (upload, queue join, server-sent events that gradio_client polls every 50 ms, "
            f"PNG encoding and three downloads), {floor / work:.1f}x the three demo explains ({fmt_s(work)}); what "
            f"fgviz adds on top of that floor is {(e['median'] - floor) / work:.2f}x the explains. The ratio is "
            "a property of tiny models behind a fixed per-request cost"
            + (f": at paper size one TransFG explain alone takes {paper}, and the same floor would add "
               f"{floor / paper.median:.2f}x to it." if paper is not None and not res["quick"] else "."),
        ]
    if b:
        bare = res["explain"]["transfg"]["bare"].median
        lines += [
            "",
            "Where TransFG's explain time goes (same input, medians; ratios to the bare fused forward):",
            "",
            "| step | time | / bare forward |",
            "|---|---|---|",
            f"| forward with q/k capture and the PSM row vector (what training runs) | {b['forward_with_psm']} "
            f"| {b['forward_with_psm'].median / bare:.2f} |",
            f"| + head-mean attention of every layer (one softmax per layer, row blocks) "
            f"| {b['forward_psm_and_fused']} | {b['forward_psm_and_fused'].median / bare:.2f} |",
            f"| rollout of all layers from the fused matrices (row vectors) | {b['rollout']} "
            f"| {b['rollout'].median / bare:.2f} |",
            f"| rejected alternative: eager row-block attention keeping every layer's probabilities for the PSM "
            f"(no recompute; +{_kept_gb(res):.2f} GB) | {b['eager_keep']} | {b['eager_keep'].median / bare:.2f} |",
            "",
            "Per lower layer (same size, random q/k/v): the fused attention (SDPA) takes "
            f"{b['layer_sdpa']}, a whole block {b['layer_block']}, and what the PSM adds to that layer (q kᵀ and its "
            f"softmax in row blocks, times the running CLS row) {fmt_s(b['layer_psm'].median)}. "
            f"The PSM needs that for each of the {res['explain']['transfg']['lower_layers']} lower layers, and the "
            "part layer runs on 1 + heads tokens instead of all of them, so the floor of a row-vector PSM on top "
            f"of the fused forward is about 1 + ({res['explain']['transfg']['lower_layers']} x "
            f"{fmt_s(b['layer_psm'].median)} - {fmt_s(b['layer_block'].median)}) / {fmt_s(bare)} = "
            f"{_psm_floor(res):.2f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m fgviz.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (CI); no timing assertions")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="markdown output (default docs/benchmarks.md in full mode)")
    ap.add_argument("--json", default=None, help="also write the raw results as JSON")
    ap.add_argument("--only", choices=["real"], default=None, help="only these rows (printed; written with --out)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    res = run(args.quick, repeats, torch.device(args.device), args.only)
    if args.only:
        from fgviz.bench_real import render as render_real

        text = "\n".join(render_real(res["real"])) + "\n"
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return res
    command = "python -m fgviz.bench" + (" --quick" if args.quick else "") + (
        f" --repeats {args.repeats}" if args.repeats else "")
    out = Path(args.out) if args.out else (None if args.quick else ROOT / "docs" / "benchmarks.md")
    text = render_markdown(res, command)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, default=lambda o: o.__dict__, indent=2))
    print(text)
    return res


if __name__ == "__main__":
    main()
