"""PNG and JPEG through Pillow (16-bit colour PNGs through imagecodecs).

Grey images are ``YX``; RGB, RGBA and grey+alpha are ``YXC``; palette images
keep their indices (``YX``, often label images). Bit depth is never changed:
Pillow would cut 16-bit colour PNGs to 8 bits, so those are decoded by
imagecodecs instead. JPEG EXIF orientation is not applied, so pixel
coordinates match the annotations made on the stored grid.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.core.validate import is_dask
from cytolens.io.formats import RawImage, check_dtype, read_errors, want_lazy

__all__ = ["read_png_jpeg", "write_png"]

logger = logging.getLogger(__name__)

#: Pillow mode -> (dtype, samples per pixel) as numpy sees it.
_MODES = {
    "1": ("bool", 1),
    "L": ("uint8", 1),
    "P": ("uint8", 1),
    "I;16": ("uint16", 1),
    "I;16L": ("uint16", 1),
    "I;16B": ("uint16", 1),
    "I": ("int32", 1),
    "F": ("float32", 1),
    "LA": ("uint8", 2),
    "RGB": ("uint8", 3),
    "RGBA": ("uint8", 4),
}
#: Modes converted to RGB on reading (JPEG colour spaces).
_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV")
#: PNG colour types with more than one sample: grey+alpha, RGB, RGBA.
_PNG_COLOUR_TYPES = {4: 2, 2: 3, 6: 4}


def _png_16bit_samples(path: Path) -> int | None:
    """Samples per pixel of a 16-bit colour PNG (which Pillow would cut to 8 bits), else None."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR" or head[24] != 16:
        return None
    return _PNG_COLOUR_TYPES.get(head[25])


def _decode(path: Path, fmt: str) -> np.ndarray:
    from PIL import Image as PILImage

    with read_errors(path):
        if fmt == "png" and _png_16bit_samples(path):
            import imagecodecs

            return imagecodecs.png_decode(path.read_bytes())
        with PILImage.open(path) as img:
            data = np.asarray(img.convert("RGB") if img.mode in _TO_RGB else img)
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


def read_png_jpeg(path: Path, fmt: str, *, lazy: bool | None, lazy_threshold_mb: float) -> RawImage:
    """Read a PNG or JPEG file; decoding is deferred to Dask when ``lazy``.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image as PILImage
    >>> path = Path(tempfile.mkdtemp()) / "a.png"
    >>> PILImage.fromarray(np.zeros((4, 6, 3), np.uint8)).save(path)
    >>> raw = read_png_jpeg(path, "png", lazy=False, lazy_threshold_mb=512)
    >>> raw.axes, raw.data.shape
    ('YXC', (4, 6, 3))
    """
    from PIL import Image as PILImage

    with read_errors(path), PILImage.open(path) as img:
        width, height, mode = img.width, img.height, img.mode
    samples16 = _png_16bit_samples(path) if fmt == "png" else None
    if samples16:
        dtype, samples = np.dtype("uint16"), samples16
    elif mode in _TO_RGB:
        dtype, samples = np.dtype("uint8"), 3
    elif mode in _MODES:
        dtype, samples = np.dtype(_MODES[mode][0]), _MODES[mode][1]
    else:
        raise InputError(f"{path} has Pillow mode {mode!r}, which cytolens cannot read")
    check_dtype(dtype, path)
    shape = (height, width) if samples == 1 else (height, width, samples)
    metadata: dict[str, Any] = {"format": fmt, "mode": mode}
    if mode == "P":
        logger.info("%s is a palette image; returning its palette indices", path)
    if want_lazy(height * width * samples * dtype.itemsize, lazy, lazy_threshold_mb):
        import dask
        import dask.array as da

        data = da.from_delayed(dask.delayed(_decode)(path, fmt), shape=shape, dtype=dtype)
    else:
        data = _decode(path, fmt)
    return RawImage(data, "YX" if samples == 1 else "YXC", {}, None, metadata)


def write_png(path: Path, image: Image) -> None:
    """Write a ``YX`` uint8/uint16 or ``YXC`` uint8 image (2-4 channels) as PNG.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.png"
    >>> write_png(path, Image(np.full((4, 6), 300, np.uint16), "YX"))
    >>> read_png_jpeg(path, "png", lazy=False, lazy_threshold_mb=512).data.max()
    np.uint16(300)
    """
    from PIL import Image as PILImage

    grey = image.axes == "YX" and image.dtype in (np.uint8, np.uint16)
    colour = image.axes == "YXC" and image.dtype == np.uint8 and image.sizes["C"] in (2, 3, 4)
    if not (grey or colour):
        raise InputError(
            "PNG holds YX uint8/uint16 or YXC uint8 with 2-4 channels; got axes "
            f"{image.axes!r}, dtype {image.dtype}, shape {image.shape}; write .tif instead"
        )
    data = image.data.compute() if is_dask(image.data) else image.data
    PILImage.fromarray(np.ascontiguousarray(data)).save(path, format="PNG")
