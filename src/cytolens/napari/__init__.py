"""Optional napari plugin: a thin layer over the cytolens API (npe2 manifest ``napari.yaml``).

- :func:`~cytolens.napari._reader.get_reader`: opens what :func:`cytolens.io.imread`
  reads (TIFF/OME-TIFF, PNG/JPEG, OME-Zarr) and Human Protein Atlas channel
  sets, with pixel sizes as layer ``scale`` and channel names as layer names;
  returns ``None`` for anything else, never raises to napari.
- :mod:`~cytolens.napari._sample_data`: the bundled samples of :mod:`cytolens.data`.
- :mod:`~cytolens.napari._widgets`: focus rating, nucleus segmentation,
  deconvolution and tracking as plain functions (``autogenerate`` widgets),
  also callable on numpy arrays.

Nothing here imports napari, Qt or torch at import time; the widgets import
the capability they call when they run.
"""

from __future__ import annotations

from pathlib import Path

#: The npe2 manifest shipped beside this module.
MANIFEST = Path(__file__).with_name("napari.yaml")

__all__ = ["MANIFEST"]
