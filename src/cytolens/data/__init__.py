"""Small sample images bundled with cytolens (like :mod:`skimage.data`).

Each loader returns an :class:`~cytolens.core.image.Image` with its axes.
Provenance and licences: ``samples/ATTRIBUTION.md`` in this folder.

Examples
--------
>>> from cytolens import data
>>> data.nuclei().axes
'YX'
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pandas as pd

from cytolens.core.image import Image

__all__ = [
    "bead",
    "bead_psf",
    "blood_smear",
    "blood_smear_boxes",
    "hpa_cells",
    "nuclei",
    "sample_path",
    "tracking",
    "tracking_ground_truth",
]


def sample_path(name: str) -> Path:
    """Path of a bundled sample file, e.g. ``sample_path("bead.tif")``."""
    path = Path(str(files("cytolens.data").joinpath("samples", name)))
    if not path.exists():
        from cytolens.core.errors import MissingFileError

        raise MissingFileError(f"no bundled sample named {name!r} in {path.parent}")
    return path


def _read(name: str, axes: str | None = None) -> Image:
    from cytolens.io import imread

    return imread(sample_path(name), axes=axes)


def nuclei() -> Image:
    """A Hoechst-stained field of U2OS nuclei (BBBC006, CC0), 520x696 uint16, in focus.

    Examples
    --------
    >>> nuclei().shape
    (520, 696)
    """
    return _read("nuclei_bbbc006.png")


def bead() -> Image:
    """A widefield image of a fluorescent bead, 64x64x64 float32 ZYX (flowdec, Apache-2.0).

    Examples
    --------
    >>> bead().axes
    'ZYX'
    """
    return _read("bead.tif", axes="ZYX")


def bead_psf() -> Image:
    """The measured PSF that goes with :func:`bead`, 64x64x64 float32 ZYX.

    Examples
    --------
    >>> bead_psf().shape
    (64, 64, 64)
    """
    return _read("bead_psf.tif", axes="ZYX")


def tracking() -> Image:
    """20 frames of simulated HL60 nuclei (Fluo-N2DH-SIM+), 320x320 uint16, TYX, 0.125 um pixels.

    Examples
    --------
    >>> tracking().sizes
    {'T': 20, 'Y': 320, 'X': 320}
    """
    return _read("tracking_sim.tif", axes="TYX")


def tracking_ground_truth() -> tuple[Image, pd.DataFrame]:
    """Ground-truth TRA markers (TYX labels) and tracks (label, begin, end, parent).

    Examples
    --------
    >>> markers, tracks = tracking_ground_truth()
    >>> list(tracks.columns)
    ['label', 'begin', 'end', 'parent']
    """
    from cytolens.io import read_ctc_tracks

    return _read("tracking_sim_tra.tif", axes="TYX"), read_ctc_tracks(
        sample_path("tracking_sim_man_track.txt")
    )


def blood_smear() -> Image:
    """A stained blood smear (BCCD, MIT), 480x640 RGB: red cells, a white cell, platelets.

    From the validation split of the shipped detector (never seen in training).

    Examples
    --------
    >>> blood_smear().shape
    (480, 640, 3)
    """
    return _read("blood_smear.jpg")


def blood_smear_boxes() -> pd.DataFrame:
    """The LabelImg (Pascal VOC) boxes of :func:`blood_smear` as a box table.

    Examples
    --------
    >>> sorted(blood_smear_boxes()["class"].unique())
    ['Platelets', 'RBC', 'WBC']
    """
    from cytolens.detect.annotations import read_voc

    return read_voc(sample_path("blood_smear.xml"))


def hpa_cells() -> Image:
    """A Human Protein Atlas field (CC BY-SA 3.0), 4 x 512 x 512 uint8 (CYX), labelled Nucleoli.

    Channels red (microtubules), green (protein), blue (nucleus), yellow (ER);
    from the validation split of the shipped localization model.

    Examples
    --------
    >>> img = hpa_cells()
    >>> img.axes, img.shape, img.channel_names[1]
    ('CYX', (4, 512, 512), 'protein')
    """
    from cytolens.io import read_hpa

    return read_hpa(sample_path("hpa_nucleoli_blue.png").parent, "hpa_nucleoli")
