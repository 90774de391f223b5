"""napari reader: what cytolens adds to napari's own readers.

Claimed (see ``napari.yaml``): OME-TIFF and OME-Zarr with their metadata
(pixel sizes as ``scale`` and ``units``, channel names, pyramids as multiscale
layers, the OME-Zarr ``labels/`` group as Labels layers), Human Protein Atlas
channel sets (given their ``_green.png``) and Cell Tracking Challenge
sequence folders. Plain ``.tif``/``.png``/``.jpg`` files are left to napari's
built-in readers, so napari does not ask "Choose reader" for every file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_HPA_SUFFIX = "_green.png"
_HPA_COLOURS = ("red", "green", "blue", "yellow")
_OME_TIFF = (".ome.tif", ".ome.tiff", ".ome.btf")
_CTC_FRAME = re.compile(r"t\d{3,4}\.tiff?$")


def _hpa_files(path: Path) -> list[Path] | None:
    """The four channel files when ``path`` is ``<id>_green.png`` with its siblings."""
    if not path.name.lower().endswith(_HPA_SUFFIX):
        return None
    prefix = path.name[: -len(_HPA_SUFFIX)]
    files = [path.with_name(f"{prefix}_{colour}.png") for colour in _HPA_COLOURS]
    return files if all(f.is_file() for f in files) else None


def _is_zarr(path: Path) -> bool:
    return path.is_dir() and (
        (path / "zarr.json").is_file()
        or (path / ".zattrs").is_file()
        or (path / ".zgroup").is_file()
    )


def _is_ctc(path: Path) -> bool:
    """A CTC sequence folder (``t000.tif`` ...) or a dataset folder holding ``01``."""
    if not path.is_dir():
        return False
    if any(_CTC_FRAME.match(p.name) for p in path.iterdir()):
        return True
    first = path / "01"
    return first.is_dir() and any(_CTC_FRAME.match(p.name) for p in first.iterdir())


def _ome_zarr_levels(path: Path, n_levels: int) -> list[Any]:
    """Every level of the first multiscale image of an OME-Zarr store, as Dask arrays."""
    import dask.array as da
    import zarr

    from cytolens.io.ngff import _find_multiscales

    group, _, ms = _find_multiscales(zarr.open_group(path, mode="r"), path)
    return [da.from_zarr(group[d["path"]]) for d in ms["datasets"][:n_levels]]


def _ome_zarr_labels(path: Path, image_scale: tuple[float, ...]) -> list[tuple[Any, dict, str]]:
    """The ``labels/`` group of an OME-Zarr image as Labels layers (multiscale when pyramidal)."""
    import dask.array as da
    import zarr

    from cytolens.io.ngff import _find_multiscales

    root = zarr.open_group(path, mode="r")
    if "labels" not in root:
        return []
    labels_group = root["labels"]
    attrs = dict(labels_group.attrs)
    names = attrs.get("ome", attrs).get("labels", [])
    layers = []
    for name in names:
        group, _, ms = _find_multiscales(labels_group[name], path / "labels" / name)
        levels = [da.from_zarr(group[d["path"]]) for d in ms["datasets"]]
        ndim = levels[0].ndim
        kwargs = {
            "name": str(name),
            "scale": tuple(image_scale[-ndim:]),
            "multiscale": len(levels) > 1,
            "metadata": {"path": str(path / "labels" / name)},
        }
        layers.append((levels if len(levels) > 1 else levels[0], kwargs, "labels"))
    return layers


def _ome_tiff_levels(path: Path) -> list[Any] | None:
    """The pyramid levels of series 0 of an OME-TIFF (``None`` without a pyramid)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        n_levels = len(tif.series[0].levels)
    if n_levels < 2:
        return None
    import dask.array as da
    import zarr

    levels = []
    for level in range(n_levels):
        store = tifffile.imread(path, aszarr=True, series=0, level=level)
        levels.append(da.from_zarr(zarr.open_array(store, mode="r")))
    return levels


def read_layers(path: str | os.PathLike[str]) -> list[tuple[Any, dict, str]]:
    """Read what cytolens claims as napari layer-data tuples.

    Parameters
    ----------
    path : str or path-like
        An OME-TIFF file, an OME-Zarr folder, ``<id>_green.png`` of a Human
        Protein Atlas sample whose red, blue and yellow files sit beside it,
        or a Cell Tracking Challenge sequence (or dataset) folder.

    Returns
    -------
    list of (data, kwargs, layer_type)
        Images with ``scale`` (pixel sizes in um), ``units``, ``name`` and, for
        multichannel data, ``channel_axis``; a list of arrays
        (``multiscale``) for pyramids; OME-Zarr labels and CTC tracking markers
        as ``"labels"``.

    Examples
    --------
    >>> from cytolens.data import sample_path
    >>> [(d.shape, k["name"]) for d, k, _ in read_layers(sample_path("hpa_nucleoli_green.png"))]
    [((4, 512, 512), ['microtubules', 'protein', 'nucleus', 'ER'])]
    """
    from cytolens.io import imread, read_ctc, read_hpa
    from cytolens.napari._layers import image_layer

    p = Path(path)
    if _hpa_files(p) is not None:
        image = read_hpa(p)
        return [image_layer(image, name=image.metadata.get("sample_id"))]
    if _is_ctc(p) and not _is_zarr(p):
        seq = read_ctc(p)
        layers = [image_layer(seq.frames, name=f"{seq.name} {seq.sequence}")]
        if seq.tra_masks is not None:
            layers.append((seq.tra_masks.data, {"name": "tracking markers"}, "labels"))
        return layers
    image = imread(p, lazy=_is_zarr(p) or None)
    data, kwargs, kind = image_layer(image)
    levels = image.metadata.get("levels") or []
    pyramid = None
    if _is_zarr(p):
        if len(levels) > 1:
            pyramid = _ome_zarr_levels(p, len(levels))
    else:
        pyramid = _ome_tiff_levels(p)
    if pyramid is not None and tuple(pyramid[0].shape) == tuple(data.shape):
        data, kwargs["multiscale"] = pyramid, True
    layers = [(data, kwargs, kind)]
    if _is_zarr(p):
        layers += _ome_zarr_labels(p, kwargs["scale"])
    return layers


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple[Any, dict, str]]] | None:
    """Return a reader for ``path``, or ``None`` when cytolens adds nothing for it.

    The checks are cheap (names, a folder listing); this never raises.

    Parameters
    ----------
    path : str or list of str
        What napari asks about; a list is accepted when it holds one path.

    Returns
    -------
    callable or None
        :func:`read_layers`, or ``None``.

    Examples
    --------
    >>> get_reader("notes.txt") is None
    True
    >>> from cytolens.data import sample_path
    >>> get_reader(str(sample_path("bead.tif"))) is None  # a plain TIFF: napari's own reader
    True
    >>> get_reader(str(sample_path("hpa_nucleoli_green.png"))).__name__
    'read_layers'
    """
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        p = Path(path)
        name = p.name.lower()
        if _hpa_files(p) is not None or _is_zarr(p) or _is_ctc(p):
            return read_layers
        if name.endswith(_OME_TIFF) and p.is_file():
            return read_layers
    except Exception:  # a reader must never raise to napari
        logger.debug("cytolens cannot read %r", path, exc_info=True)
    return None
