"""The benchmark harness runs end to end in quick mode (tiny sizes), so it cannot rot; no timing is asserted."""

from __future__ import annotations

import torch

from fgviz.attention import psm_select
from fgviz.bench import bench_psm, main, official_psm, random_attention


def test_official_psm_reference_agrees_with_psm_select():
    attns = random_attention(4, 3, 20, seed=1)
    assert torch.equal(official_psm(attns), psm_select(attns))
    assert bench_psm(20, 3, 2, repeats=1)["same_indices"]


def test_quick_mode_writes_the_table(tmp_path):
    out = tmp_path / "bench.md"
    res = main(["--quick", "--out", str(out)])
    text = out.read_text()
    assert "python -m fgviz.bench --quick" in text
    for needle in ("psm_select", "TransFG `explain`", "RAMS-Trans `explain`", "TASN `explain`", "peak resident"):
        assert needle in text
    assert res["psm"]["same_indices"]
    assert all(r["ratio"] > 0 for r in res["explain"].values())
