"""Training recipes of the ViT methods (fields of `fgviz.training.train.Recipe`), shared shapes first.

`paper`: the official recipes (docs/methods.md 1.5, 2.5); `demo`: small models for a 2-core CPU on fgviz's synthetic
data; `tiny`: for tests.
"""

from __future__ import annotations

from typing import Any

# TransFG / RAMS-Trans official: SGD momentum 0.9, lr 3e-2, 500 warm-up steps then cosine over 10k, batch 16 per
# process, grad clip 1 (Recipe's defaults), 448 px with the test resize 448/600.
PAPER_VIT = dict(img_size=(448, 448), crop_pct=448 / 600)
# Demo (synthetic data v2, fine-tuned from the ViT that `python -m fgviz.train --pretrain vit` trains on every
# synthetic class: the stand-in for the ImageNet initialisation): the papers' 16-px patches at 192 px.
DEMO_VIT = dict(img_size=(192, 192), crop_pct=1.0, patch_size=16, embed_dim=128, depth=6, num_heads=4, drop_rate=0.0)
DEMO_OPT = dict(optimizer="adamw", lr=5e-4, weight_decay=0.05, batch_size=32, eval_samples=512, warmup_steps=60,
                steps=600, eval_every=200)
TINY_VIT = dict(img_size=(32, 32), crop_pct=1.0, patch_size=8, embed_dim=32, depth=2, num_heads=2, drop_rate=0.1)
TINY_OPT = dict(optimizer="adamw", lr=1e-3, warmup_steps=2, steps=6, batch_size=4, eval_every=3, eval_samples=8)

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"model": dict(PAPER_VIT, patch_size=16), "init": "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k"},
    "demo": {"model": dict(DEMO_VIT), **DEMO_OPT},
    "tiny": {"model": dict(TINY_VIT), **TINY_OPT},
}
