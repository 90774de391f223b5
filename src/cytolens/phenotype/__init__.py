"""Cell phenotypes: classification of cell crops with transfer learning.

- :func:`train_classifier`: a compact CNN on labelled crops (folder per class or
  ``file,label`` CSV; any classes, size, channels) with augmentation, class-balanced
  sampling, a fixed validation split and temperature-calibrated probabilities;
  :func:`fit_hybrid_head` replaces its head by a logistic regression on the CNN's
  8-view averaged output + classical shape/intensity/texture features (the shipped model);
  :func:`pretrain_encoder` pretrains its encoder self-supervised (SimCLR) on
  unlabeled crops, for transfer learning with few labels.
- :func:`predict_cells`: phenotype of crops, or of every object of a label image
  (crops cut at a fixed size, padded at borders); :func:`phenotype_counts`: counts
  per phenotype per image / well.
- :class:`PhenotypeClassifier`: the model contract's predictor (``mitocheck-v1``:
  16 MitoCheck nucleus phenotypes).
- :func:`read_crop_set`, :func:`cell_crops`: crops in, crops out.

torch is imported only when a model runs or trains.
"""

from cytolens.phenotype.crops import CropSet, cell_crops, read_crop_files, read_crop_set
from cytolens.phenotype.model import (
    DEFAULT_MODEL,
    PhenotypeClassifier,
    phenotype_counts,
    predict_cells,
)
from cytolens.phenotype.train import (
    fit_hybrid_head,
    grouped_split,
    pretrain_encoder,
    save_classifier,
    stratified_split,
    train_classifier,
)

__all__ = [
    "DEFAULT_MODEL",
    "CropSet",
    "PhenotypeClassifier",
    "cell_crops",
    "fit_hybrid_head",
    "grouped_split",
    "phenotype_counts",
    "predict_cells",
    "pretrain_encoder",
    "read_crop_files",
    "read_crop_set",
    "save_classifier",
    "stratified_split",
    "train_classifier",
]
