"""napari sample data: the samples bundled in :mod:`cytolens.data`, as layer-data tuples."""

from __future__ import annotations

from typing import Any

LayerData = list[tuple[Any, dict, str]]


def _layer(loader_name: str, name: str, **extra: Any) -> tuple[Any, dict, str]:
    from cytolens import data
    from cytolens.napari._layers import image_layer

    return image_layer(getattr(data, loader_name)(), name=name, **extra)


def nuclei_sample() -> LayerData:
    """Fluorescent nuclei (BBBC006, 2-D ``YX``, 520 x 696).

    Examples
    --------
    >>> [(d.shape, k["name"], kind) for d, k, kind in nuclei_sample()]
    [((520, 696), 'nuclei', 'image')]
    """
    return [_layer("nuclei", "nuclei")]


def bead_sample() -> LayerData:
    """A blurred bead stack and its PSF (both ``ZYX``, 64 x 64 x 64), for deconvolution.

    Examples
    --------
    >>> [(d.shape, k["name"]) for d, k, _ in bead_sample()]
    [((64, 64, 64), 'bead'), ((64, 64, 64), 'bead_psf')]
    """
    return [_layer("bead", "bead"), _layer("bead_psf", "bead_psf", visible=False)]


def tracking_sample() -> LayerData:
    """A simulated nucleus movie (``TYX``, 20 x 320 x 320, 0.125 um pixels), for tracking.

    Examples
    --------
    >>> [(d.shape, k["scale"], k["units"]) for d, k, _ in tracking_sample()]
    [((20, 320, 320), (1.0, 0.125, 0.125), ('pixel', 'um', 'um'))]
    """
    return [_layer("tracking", "tracking")]


def blood_sample() -> LayerData:
    """A blood smear (RGB, 480 x 640), for detection.

    Examples
    --------
    >>> [(d.shape, k["rgb"]) for d, k, _ in blood_sample()]
    [((480, 640, 3), True)]
    """
    return [_layer("blood_smear", "blood smear")]


def hpa_sample() -> LayerData:
    """A Human Protein Atlas field: four channel layers (``CYX``, 4 x 512 x 512).

    Examples
    --------
    >>> [(d.shape, k["name"]) for d, k, _ in hpa_sample()]
    [((4, 512, 512), ['microtubules', 'protein', 'nucleus', 'ER'])]
    """
    return [_layer("hpa_cells", "hpa")]
