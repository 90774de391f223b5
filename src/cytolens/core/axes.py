"""One axes vocabulary and one validator.

Axes are strings of OME letters in canonical order ``TCZYX`` (time, channel,
z, y, x); an image's axes may be any subset in any order, e.g. ``"ZYX"`` or
``"YXC"``. Every array that leaves :mod:`cytolens.io` carries such a string.
"""

from __future__ import annotations

from collections.abc import Sequence

from cytolens.core.errors import AxesError

__all__ = ["AXES", "SPATIAL", "check_axes", "guess_axes", "move_axes"]

#: Canonical axis order (OME-NGFF): time, channel, then space.
AXES = "TCZYX"
#: The spatial axes.
SPATIAL = "ZYX"


def check_axes(axes: str, shape: Sequence[int] | None = None) -> str:
    """Validate an axes string and return it upper-cased.

    Parameters
    ----------
    axes : str
        Letters from ``TCZYX``, each at most once, e.g. ``"zyx"``.
    shape : sequence of int, optional
        When given, ``axes`` must have one letter per dimension.

    Returns
    -------
    str
        The upper-cased axes string.

    Raises
    ------
    AxesError
        For an unknown or repeated letter, or a length that does not match
        ``shape``.

    Examples
    --------
    >>> check_axes("zyx", shape=(3, 64, 64))
    'ZYX'
    """
    if not isinstance(axes, str):
        raise AxesError(f"axes must be a string of letters from {AXES!r}, got {axes!r}")
    norm = axes.upper()
    unknown = sorted(set(norm) - set(AXES))
    if unknown:
        raise AxesError(
            f"axes {axes!r} has unknown letter(s) {''.join(unknown)!r}; "
            f"expected letters from {AXES!r}"
        )
    repeated = sorted({a for a in norm if norm.count(a) > 1})
    if repeated:
        raise AxesError(f"axes {axes!r} repeats {''.join(repeated)!r}; each axis may appear once")
    if shape is not None and len(norm) != len(shape):
        raise AxesError(
            f"axes {axes!r} has {len(norm)} letter(s) but the array has {len(shape)} "
            f"dimension(s) (shape {tuple(shape)}); give one letter per dimension"
        )
    return norm


def guess_axes(shape: Sequence[int]) -> str:
    """Guess axes for an array that came without any.

    Only unambiguous cases are guessed: 2D is ``"YX"``; 3D with a last
    dimension of 3 or 4 is ``"YXC"`` (RGB/RGBA); any other 3D is ``"ZYX"``.
    Higher dimensions must be given explicitly.

    Examples
    --------
    >>> guess_axes((512, 512, 3))
    'YXC'
    >>> guess_axes((30, 64, 64))
    'ZYX'
    """
    ndim = len(shape)
    if ndim == 2:
        return "YX"
    if ndim == 3:
        return "YXC" if shape[-1] in (3, 4) else "ZYX"
    raise AxesError(
        f"cannot guess the axes of a {ndim}-D array with shape {tuple(shape)}; "
        "pass axes explicitly, e.g. axes='TZYX'"
    )


def move_axes(axes: str, target: str) -> tuple[int, ...]:
    """Return the permutation taking ``axes`` to ``target`` (same letters).

    Examples
    --------
    >>> move_axes("YXC", "CYX")
    (2, 0, 1)
    """
    axes, target = check_axes(axes), check_axes(target)
    if sorted(axes) != sorted(target):
        raise AxesError(f"cannot reorder axes {axes!r} to {target!r}: the letters differ")
    return tuple(axes.index(a) for a in target)
