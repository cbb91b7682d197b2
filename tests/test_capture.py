"""record_attention: fused and captured forwards agree, records are complete, and nothing is left behind."""

from __future__ import annotations

import pytest
import timm
import torch

from fgviz.core.capture import record_attention


@pytest.fixture
def vit():
    torch.manual_seed(0)
    m = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=3, num_classes=4
    ).eval()
    with torch.no_grad():
        for b in m.blocks:
            b.attn.qkv.weight.mul_(6)  # peaked attention, so eager-vs-fused differences would show
    return m


def _eager_attentions(vit, x):
    """Reference: recompute each block's attention by hand from its input, in float64."""
    out = []
    h = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
    for blk in vit.blocks:
        a = blk.attn
        y = blk.norm1(h).double()
        B, N, C = y.shape
        qkv = torch.nn.functional.linear(y, a.qkv.weight.double(), a.qkv.bias.double())
        q, k, _ = qkv.reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        out.append(torch.softmax(q @ k.transpose(-2, -1) * a.head_dim**-0.5, dim=-1))
        h = blk(h)
    return out


@pytest.mark.parametrize("mode", ["qk", "attn"])
def test_captured_forward_matches_fused(vit, mode):
    x = torch.randn(2, 3, 32, 32)
    assert all(b.attn.fused_attn for b in vit.blocks)
    plain = vit(x)
    with record_attention(vit.blocks, mode=mode) as rec:
        captured = vit(x)
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-5)
    assert rec.num_passes == 1
    attns = rec.attentions()
    assert len(attns) == len(vit.blocks)
    for got, ref in zip(attns, _eager_attentions(vit, x), strict=True):
        assert got.shape == (2, 3, 17, 17)
        torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-4)


def test_hooks_removed_and_flags_restored_even_on_error(vit):
    x = torch.randn(1, 3, 32, 32)
    for mode in ("qk", "attn"):
        with pytest.raises(ZeroDivisionError), record_attention(vit.blocks, mode=mode):
            vit(x)
            1 / 0  # noqa: B018
        for blk in vit.blocks:
            assert blk.attn.fused_attn is True
            for mod in (blk.attn.q_norm, blk.attn.k_norm, blk.attn.attn_drop):
                assert not mod._forward_hooks


def test_missing_records_fail_loudly(vit):
    with pytest.raises(RuntimeError, match="recorded"), record_attention(vit.blocks):
        pass  # no forward: every block has zero records
    with pytest.raises(RuntimeError, match="recorded"), record_attention(vit.blocks):
        vit.blocks[0](torch.randn(1, 17, vit.embed_dim))  # only one block ran


def test_reduce_runs_inside_the_hook(vit):
    x = torch.randn(2, 3, 32, 32)
    with record_attention(vit.blocks, mode="attn", reduce=lambda a: a.mean(1)[:, 0]) as rec:
        vit(x)
    rows = rec.attentions()
    assert rows[0].shape == (2, 17)
    torch.testing.assert_close(rows[0].sum(-1), torch.ones(2))


def test_not_a_vit_block_is_rejected():
    with pytest.raises(TypeError, match="attention"), record_attention([torch.nn.Linear(2, 2)]):
        pass
