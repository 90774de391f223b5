"""napari writer: image and labels layers as OME-TIFF or OME-Zarr with their pixel sizes.

The layer's ``scale`` becomes the pixel size (um) of each spatial axis whose
unit is a length (or of every axis when the layer has no units, as layers
read by cytolens without metadata), and its axes come from
``metadata["axes"]`` when cytolens read it, else from the number of
dimensions (``YX``, ``ZYX``, ``TZYX``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}


def _axes_and_sizes(data: Any, meta: dict) -> tuple[str, dict[str, float]]:
    ndim = np.ndim(data)
    axes = (meta.get("metadata") or {}).get("axes") or ""
    axes = axes.replace("C", "") if len(axes) == ndim + 1 else axes
    if len(axes) != ndim:
        axes = _DEFAULT_AXES.get(ndim, "TCZYX"[-ndim:])
    scale = list(meta.get("scale") or [1.0] * ndim)
    units = [str(u) for u in (meta.get("units") or [])]
    sizes = {}
    for k, ax in enumerate(axes):
        is_length = not units or units[k] in ("um", "micrometer", "µm")
        if ax in "ZYX" and is_length and scale[k] != 1.0:
            sizes[ax] = float(scale[k])
    return axes, sizes


def _write(path: str, data: Any, meta: dict) -> list[str]:
    from cytolens.io import imwrite

    if meta.get("multiscale"):
        data = data[0]
    if meta.get("rgb"):
        axes = "YXC"
        sizes = _axes_and_sizes(np.asarray(data)[..., 0], meta)[1]
    else:
        axes, sizes = _axes_and_sizes(data, meta)
    out = imwrite(path, np.asarray(data), axes=axes, pixel_size_um=sizes or None)
    return [str(out)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Image layer (npe2 single-layer writer); return the written path.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cytolens.io import imread
    >>> out = Path(tempfile.mkdtemp()) / "a.ome.tif"
    >>> written = write_image(str(out), np.zeros((3, 8, 8), np.uint8), {"scale": (2.0, 0.5, 0.5)})
    >>> imread(written[0]).pixel_size_um
    {'Z': 2.0, 'Y': 0.5, 'X': 0.5}
    """
    return _write(path, data, meta)


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer (npe2 single-layer writer); return the written path.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from cytolens.io import imread
    >>> out = Path(tempfile.mkdtemp()) / "labels.ome.zarr"
    >>> written = write_labels(str(out), np.eye(64, dtype=np.uint16), {"scale": (0.25, 0.25)})
    >>> img = imread(written[0]); img.pixel_size_um, int(img.data.max())
    ({'Y': 0.25, 'X': 0.25}, 1)
    """
    return _write(path, data, meta)
