"""The ViT that the baseline, TransFG and RAMS-Trans share: `model` (config, builder, rollout and q/k fields),
`weights` (position embeddings, plain-ViT checks, npz), `views` (token maps on pixels) and `recipes`."""
