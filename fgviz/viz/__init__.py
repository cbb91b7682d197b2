"""Visualisation: numpy/cv2 overlays (`overlay`), plotly figures (`figures`) and `Figure`, panels that show themselves
in Jupyter (`display`).

This package reads `Explanation`s and numpy arrays only: it never imports torch or gradio. Images are RGB uint8
in and RGB uint8 out.
"""

from __future__ import annotations

from fgviz.viz.display import Figure
from fgviz.viz.figures import attention_grid, curves, heatmap, image_figure, layer_stats, topk_bar
from fgviz.viz.overlay import (
    BOX_COLORS,
    COLORMAPS,
    DEFAULT_CMAP,
    OKABE_ITO,
    SAFE_COLORMAPS,
    blend,
    colormap,
    colormap_lut,
    draw_boxes,
    draw_grid,
    draw_mask_outline,
    normalize,
    normalize_shared,
    plotly_colorscale,
    shared_range,
    tile_maps,
    upscale,
    upscale_factor,
)

__all__ = [
    "BOX_COLORS",
    "COLORMAPS",
    "DEFAULT_CMAP",
    "OKABE_ITO",
    "SAFE_COLORMAPS",
    "Figure",
    "attention_grid",
    "blend",
    "colormap",
    "colormap_lut",
    "curves",
    "draw_boxes",
    "draw_grid",
    "draw_mask_outline",
    "heatmap",
    "image_figure",
    "layer_stats",
    "normalize",
    "normalize_shared",
    "plotly_colorscale",
    "shared_range",
    "tile_maps",
    "topk_bar",
    "upscale",
    "upscale_factor",
]
