"""The benchmark harness runs end to end in quick mode (tiny sizes), so it cannot rot; no timing is asserted."""

from __future__ import annotations

import torch

from fgviz.bench import bench_psm, main, official_psm, random_attention
from fgviz.core.attention import psm_select


def psm_margin(attns: list[torch.Tensor]) -> float:
    """Smallest relative gap between the largest and the second CLS-row value of the float64 per-head products."""
    prod = attns[0].double()
    for a in attns[1:]:
        prod = a.double() @ prod
    top = prod[:, :, 0, 1:].sort(dim=-1).values[..., -2:]
    return float(((top[..., 1] - top[..., 0]) / top[..., 1]).min())


def test_official_psm_reference_agrees_with_psm_select():
    # Exact index equality between two float32 computations holds on every kernel only where no two tokens nearly
    # tie; these inputs (and the quick benchmark's, N = 50, 11 layers, 4 heads) are 50x or more above float32 noise.
    for attns in (random_attention(4, 3, 20, seed=1), random_attention(3, 2, 20), random_attention(11, 4, 50)):
        assert psm_margin(attns) > 1e-4
    attns = random_attention(4, 3, 20, seed=1)
    assert torch.equal(official_psm(attns), psm_select(attns))
    assert bench_psm(20, 3, 2, repeats=1)["same_indices"]


def test_quick_mode_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    res = main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert "python -m fgviz.bench --quick" in text
    for needle in ("psm_select", "TransFG `explain`", "RAMS-Trans `explain`", "TASN `explain`", "peak resident",
                   "rejected alternative", "Per lower layer", "Gradio's floor", "`/explain` over Gradio's floor",
                   "real birds set", "TASN on the ConvNeXt-L", "distinct models' bytes"):
        assert needle in text
    assert res["psm"]["same_indices"]
    real = res["real"]  # the real-birds set at tiny widths: loaded through the offline cache, weights shared
    assert real["distinct_mb"] < real["unshared_mb"] / 2
    assert all(r["ratio"] > 0 for r in res["explain"].values())


def test_kept_attention_alternative_selects_the_same_tokens_and_restores_the_blocks():
    from fgviz.bench import forward_keeping_attention
    from fgviz.methods import create_model

    torch.manual_seed(3)
    model = create_model("transfg", num_classes=5, img_size=(48, 48), crop_pct=1.0, patch_size=16, stride=12,
                         embed_dim=32, depth=3, num_heads=4).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        out = model._forward(x)
    expected = out["part_tokens"]
    top = out["psm_rows"].sort(dim=-1).values[..., -2:]  # (B, H, 2)
    # no near-tie (1e-4 relative, 100x the two float32 paths' difference): both pick alike on every kernel
    assert ((top[..., 1] - top[..., 0]) / top[..., 1]).min() > 1e-4
    assert torch.equal(forward_keeping_attention(model, x, block_rows=7), expected)
    assert all("forward" not in vars(blk.attn) for blk in model.vit.blocks)
