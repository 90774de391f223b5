"""Per-nucleus measurements on :func:`skimage.measure.regionprops_table`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.validate import check_array

__all__ = ["measure"]

_SHAPE = ("label", "area", "perimeter", "centroid", "equivalent_diameter_area")
_UNITLESS = ("eccentricity", "solidity")
_INTENSITY = ("intensity_mean", "intensity_std", "intensity_min", "intensity_max")


def _pixel_size_yx(pixel_size_um: Any) -> tuple[float, float] | None:
    if pixel_size_um is None:
        return None
    if isinstance(pixel_size_um, dict):
        if not {"Y", "X"} <= set(pixel_size_um):
            raise InputError(f"pixel_size_um needs keys 'Y' and 'X', got {pixel_size_um!r}")
        values = (pixel_size_um["Y"], pixel_size_um["X"])
    elif np.ndim(pixel_size_um) == 0:
        values = (pixel_size_um, pixel_size_um)
    else:
        values = tuple(pixel_size_um)
    try:
        py, px = (float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(
            f"pixel_size_um must be a number or a (y, x) pair, got {pixel_size_um!r}"
        ) from None
    if not all(math.isfinite(v) and v > 0 for v in (py, px)):
        raise InputError(f"pixel_size_um must be positive, got {pixel_size_um!r}")
    return py, px


def _intensity(intensity_image: Any, shape: tuple[int, ...]) -> np.ndarray:
    from cytolens.core.image import Image

    if isinstance(intensity_image, Image):
        img = intensity_image
        if "C" in img.axes and img.axes.replace("C", "") == "YX":
            intensity_image = np.asarray(img.transpose("YXC").data)
        else:
            intensity_image = np.asarray(img.data)
    values = np.asarray(check_array(intensity_image, name="intensity_image", ndim=(2, 3)))
    if values.shape[:2] != shape:
        raise InputError(
            f"intensity_image has shape {values.shape}; expected {shape} like the labels "
            f"(optionally with channels last)"
        )
    # float64 whatever the input: float32 sums and squares of large values overflow to inf
    return values.astype(np.float64, copy=False)


def measure(labels: Any, intensity_image: Any = None, pixel_size_um: Any = None) -> Any:
    """Measure every labelled nucleus: one row per object, units in the column names.

    Parameters
    ----------
    labels : array_like of int, shape (Y, X)
        Label image (0 = background).
    intensity_image : array_like, shape (Y, X) or (Y, X, C), optional
        Intensities to summarize per object (raw values, not rescaled); with
        channels, every intensity column gets a suffix ``_c0``, ``_c1``, ...
    pixel_size_um : float, (float, float) or dict, optional
        Pixel size in micrometres (isotropic, ``(y, x)`` or ``{"Y": .., "X": ..}``);
        adds the columns in um / um2.

    Returns
    -------
    pandas.DataFrame
        Computed in float64 (never ``inf`` from a float32 overflow);
        ``label``; ``area_px``, ``perimeter_px``, ``centroid_y_px``,
        ``centroid_x_px``, ``equivalent_diameter_px`` (diameter of the disc of
        the same area); ``eccentricity`` (0 for a disc) and ``solidity``
        (area / convex area). With ``pixel_size_um``: ``area_um2``,
        ``perimeter_um`` (NaN when y and x sizes differ), ``centroid_y_um``,
        ``centroid_x_um``, ``equivalent_diameter_um``. With an intensity
        image: ``intensity_mean``, ``intensity_std``, ``intensity_min``,
        ``intensity_max`` and ``intensity_integrated`` (sum over the object).

    Raises
    ------
    InputError
        For labels that are not a 2-D non-negative integer image, an
        intensity image of another shape, and intensities so large that a
        measurement is not finite even in float64 (beyond about 1e154).

    Examples
    --------
    >>> lab = np.zeros((20, 20), np.uint16)
    >>> lab[5:9, 5:10] = 3
    >>> df = measure(lab, pixel_size_um=0.5)
    >>> df[["label", "area_px", "area_um2"]].to_dict("records")
    [{'label': 3, 'area_px': 20.0, 'area_um2': 5.0}]
    """
    import pandas as pd
    from skimage.measure import regionprops_table

    lab = np.asarray(check_array(labels, name="labels", ndim=2))
    if lab.dtype.kind not in "biu":
        raise InputError(f"labels must be an integer label image, got dtype {lab.dtype}")
    if lab.dtype.kind == "i" and lab.min() < 0:
        raise InputError(f"labels has negative values (min {lab.min()}); expected 0 = background")
    lab = lab.astype(np.int64 if lab.dtype.kind == "i" else np.uint64, copy=False)
    values = None if intensity_image is None else _intensity(intensity_image, lab.shape)
    props = _SHAPE + _UNITLESS + (_INTENSITY if values is not None else ())
    table = regionprops_table(lab, intensity_image=values, properties=props)
    df = pd.DataFrame(
        {
            "label": table["label"].astype(np.int64),
            "area_px": table["area"].astype(np.float64),
            "perimeter_px": table["perimeter"],
            "centroid_y_px": table["centroid-0"],
            "centroid_x_px": table["centroid-1"],
            "equivalent_diameter_px": table["equivalent_diameter_area"],
            "eccentricity": table["eccentricity"],
            "solidity": table["solidity"],
        }
    )
    size = _pixel_size_yx(pixel_size_um)
    if size is not None:
        py, px = size
        df["area_um2"] = df["area_px"] * py * px
        df["perimeter_um"] = df["perimeter_px"] * py if math.isclose(py, px) else np.nan
        df["centroid_y_um"] = df["centroid_y_px"] * py
        df["centroid_x_um"] = df["centroid_x_px"] * px
        df["equivalent_diameter_um"] = np.sqrt(4 * df["area_um2"] / np.pi)
    if values is not None:
        n_c = 1 if values.ndim == 2 else values.shape[2]
        for c in range(n_c):
            suffix = "" if values.ndim == 2 else f"_c{c}"
            key = "" if values.ndim == 2 else f"-{c}"
            for prop in _INTENSITY:
                df[prop + suffix] = table[prop + key]
            df["intensity_integrated" + suffix] = table["intensity_mean" + key] * df["area_px"]
    _check_finite(df)
    return df


def _check_finite(df: Any) -> None:
    """Refuse a table with inf or NaN (NaN is allowed only in ``perimeter_um``, documented)."""
    numeric = df.drop(columns=["perimeter_um"], errors="ignore").select_dtypes("number")
    bad = [c for c in numeric.columns if not np.isfinite(numeric[c].to_numpy()).all()]
    if bad:
        raise InputError(
            f"measurements {', '.join(bad)} are not finite: the intensities are too large "
            "even for float64; rescale the image (e.g. divide it by a constant)"
        )
