"""The mechanisms every method is built from, with no knowledge of any method, UI or file format.

attention (rollout, TransFG's part selection, RAMS-Trans's patch proposal, the blocked softmax), sampling (TASN's
trilinear attention and attention sampler), capture (attention from timm blocks), explanation (the numpy record of
one forward pass), geometry (tokens and boxes in pixels), preprocess (image -> model input), imageio (the one
upload decoder) and metrics (localisation and faithfulness measures with their chance values).

Lowest layer: imports torch, numpy, scipy, PIL and cv2 only; nothing above it.
"""

__version__ = "0.2.0"
