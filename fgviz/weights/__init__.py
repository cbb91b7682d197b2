"""Weights: the checkpoint format (`format`), Hub downloads (`download`), specs, registry and loading (`hub`),
timm ImageNet backbones (`timm_backbones`) and official-checkpoint conversion (`convert`).

Above the methods layer: it builds models through the method registry, and no method imports it.
"""
