"""Reading and writing microscopy images with their axes, pixel sizes and channel names.

Formats: TIFF, ImageJ TIFF and OME-TIFF (tifffile), PNG and JPEG (Pillow),
OME-Zarr / OME-NGFF (zarr 3 + ome-zarr), Cell Tracking Challenge folders and
Human Protein Atlas channel sets. Every image comes back as an
:class:`~cytolens.core.image.Image`; large files as Dask arrays. Dask, Zarr,
ome-zarr, Pillow and pandas are imported only when a function needs them.

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> path = imwrite(Path(tempfile.mkdtemp()) / "a.tif", np.zeros((3, 16, 16), np.uint8), axes="ZYX")
>>> imread(path)  # doctest: +ELLIPSIS
Image(shape=(3, 16, 16), axes='ZYX', dtype=uint8, numpy, pixel_size_um={}, path=...)
"""

from cytolens.core.image import Image
from cytolens.io.ctc import CTCSequence, read_ctc, read_ctc_tracks, write_ctc_tracks
from cytolens.io.describe import describe
from cytolens.io.formats import READ_SUFFIXES, WRITE_SUFFIXES
from cytolens.io.hpa import HPA_CHANNELS, hpa_composite, hpa_sample_ids, read_hpa
from cytolens.io.paths import find_images, natural_key, output_stems
from cytolens.io.read import imread, imread_stack
from cytolens.io.write import imwrite

__all__ = [
    "HPA_CHANNELS",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "CTCSequence",
    "Image",
    "describe",
    "find_images",
    "hpa_composite",
    "hpa_sample_ids",
    "imread",
    "imread_stack",
    "imwrite",
    "natural_key",
    "output_stems",
    "read_ctc",
    "read_ctc_tracks",
    "read_hpa",
    "write_ctc_tracks",
]
