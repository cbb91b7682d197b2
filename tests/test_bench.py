"""The benchmark harness runs end to end in quick mode (tiny sizes), so it cannot rot; no timing is asserted."""

from __future__ import annotations

import torch

from fgviz.bench import bench_psm, main, official_psm, random_attention
from fgviz.core.attention import psm_select


def test_official_psm_reference_agrees_with_psm_select():
    attns = random_attention(4, 3, 20, seed=1)
    assert torch.equal(official_psm(attns), psm_select(attns))
    assert bench_psm(20, 3, 2, repeats=1)["same_indices"]


def test_quick_mode_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    res = main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert "python -m fgviz.bench --quick" in text
    for needle in ("psm_select", "TransFG `explain`", "RAMS-Trans `explain`", "TASN `explain`", "peak resident",
                   "rejected alternative", "Per lower layer", "Gradio's floor", "`/explain` over Gradio's floor"):
        assert needle in text
    assert res["psm"]["same_indices"]
    assert all(r["ratio"] > 0 for r in res["explain"].values())


def test_kept_attention_alternative_selects_the_same_tokens_and_restores_the_blocks():
    from fgviz.bench import forward_keeping_attention
    from fgviz.methods import create_model

    torch.manual_seed(3)
    model = create_model("transfg", num_classes=5, img_size=(48, 48), crop_pct=1.0, patch_size=16, stride=12,
                         embed_dim=32, depth=3, num_heads=4).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        expected = model._forward(x)["part_tokens"]
    assert torch.equal(forward_keeping_attention(model, x, block_rows=7), expected)
    assert all("forward" not in vars(blk.attn) for blk in model.vit.blocks)
