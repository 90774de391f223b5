"""Protein localization in Human Protein Atlas images (28 classes, multi-label), per cell too.

- :func:`localization`: class probabilities of a ``(4, Y, X)`` HPA image
  (red microtubules, green protein, blue nucleus, yellow ER) with the
  per-class thresholds of the model (``hpa-v1``: a compact 4-channel CNN
  trained by ``scripts/train/hpa.py``), tiled over any image size.
- :func:`classify_cells`: nuclei + seeded-watershed cell bodies, then one
  prediction per masked cell crop, with the nucleolar call
  ("Nucleoli" / "Not Nucleoli" and a confidence).
- :func:`no_signal_reason`: why an image has no signal to classify (a black
  protein channel, no cells); such images get no label.
- :func:`segment_cells`, :func:`cell_table`, :func:`cell_crops`: the cell steps.
- :data:`CLASS_NAMES`, :data:`NUCLEOLAR_CLASSES`, :func:`read_labels`: HPA classes and labels.
- :func:`composite_png`, :func:`channel_panel`: pictures of an HPA sample.

torch is imported only when a model runs.
"""

from cytolens.classify.cells import cell_crops, cell_table, segment_cells
from cytolens.classify.display import channel_panel, composite_png
from cytolens.classify.hpa import (
    CLASS_NAMES,
    N_CLASSES,
    NUCLEOLAR_CLASSES,
    NUCLEOLAR_LABELS,
    read_labels,
)
from cytolens.classify.model import (
    DEFAULT_MODEL,
    LocalizationModel,
    LocalizationResult,
    classify_cells,
    localization,
    no_signal_reason,
    nucleolar_probability,
)
from cytolens.phenotype import predict_cells, train_classifier  # cell phenotypes (issue 21)

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_MODEL",
    "NUCLEOLAR_CLASSES",
    "NUCLEOLAR_LABELS",
    "N_CLASSES",
    "LocalizationModel",
    "LocalizationResult",
    "cell_crops",
    "cell_table",
    "channel_panel",
    "classify_cells",
    "composite_png",
    "localization",
    "no_signal_reason",
    "nucleolar_probability",
    "predict_cells",
    "read_labels",
    "segment_cells",
    "train_classifier",
]
