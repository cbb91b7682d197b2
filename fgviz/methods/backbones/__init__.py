"""What several methods build on, kept out of any one method's folder: the ViT family (`fgviz.methods.backbones.vit`:
config and builder, the memoised trunk pass, weight adapters, token views, recipes) and the helpers every weight
adapter uses (`fgviz.methods.backbones.adapt`)."""
