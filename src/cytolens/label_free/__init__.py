"""Label-free prediction ("in silico labeling"): fluorescence channels from transmitted light.

- :func:`predict` / :class:`LabelFreeModel`: a U-Net from a transmitted-light
  z-stack to one predicted fluorescence image per target, with a per-pixel
  standard deviation and an applicability score; tiled for any field size
  (shipped model ``isl-v1``: 13 phase-contrast planes to DAPI, MAP2 and NFH,
  trained by ``scripts/train/isl.py``).
- :func:`train_label_free` / :class:`TrainingPair`: train on your own pairs
  with a spatial validation split.

torch is imported only when a model runs.
"""

from cytolens.label_free.model import LabelFreeModel, predict
from cytolens.label_free.train import TrainingPair, default_block, pearson, train_label_free

__all__ = [
    "LabelFreeModel",
    "TrainingPair",
    "default_block",
    "pearson",
    "predict",
    "train_label_free",
]
