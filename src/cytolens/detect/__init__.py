"""Object detection: boxes with a class and a confidence, trained from LabelImg annotations.

- :func:`detect` / :class:`Detector`: a CenterNet-style detector in plain torch
  (shipped: ``detect-bccd-v1``, blood cells), tiled for any image size;
- :mod:`~cytolens.detect.annotations`: Pascal VOC XML, CSV and COCO JSON, validated;
- :func:`~cytolens.detect.train.train_detector`: training and fine-tuning on your own
  annotations;
- :func:`detect_classical`: the colour + blob baseline the model is compared with.
"""

from cytolens.detect.annotations import (
    COLUMNS,
    read_annotations,
    read_boxes_csv,
    read_coco,
    read_voc,
    validate_boxes,
    write_boxes_csv,
    write_coco,
    write_voc,
)
from cytolens.detect.classical import detect_classical
from cytolens.detect.model import DEFAULT_MODEL, MIN_SCORE, Detector, detect

__all__ = [
    "COLUMNS",
    "DEFAULT_MODEL",
    "MIN_SCORE",
    "Detector",
    "detect",
    "detect_classical",
    "read_annotations",
    "read_boxes_csv",
    "read_coco",
    "read_voc",
    "validate_boxes",
    "write_boxes_csv",
    "write_coco",
    "write_voc",
]
