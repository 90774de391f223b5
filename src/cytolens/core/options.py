"""Validation of numeric command-line options, at the boundary, before any work.

Each validator is a typer/click callback: a bad value is refused with click's
one-line "Invalid value for '--fps': ..." naming the option, instead of a
ZeroDivisionError, a 3 TiB allocation or silent garbage deep inside.

Examples
--------
>>> positive(0.5)
0.5
>>> positive(0.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
...
click.exceptions.BadParameter: must be a positive number, got 0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

__all__ = ["at_least", "finite", "non_negative", "parse_floats", "positive"]

N = TypeVar("N", int, float)


def _bad(message: str) -> Exception:
    import typer

    return typer.BadParameter(message)


def _is_finite(value: float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def positive(value: N | None) -> N | None:
    """Callback: a finite number > 0 (``None`` passes: the option was not given)."""
    if value is not None and not (_is_finite(value) and value > 0):
        raise _bad(f"must be a positive number, got {value}")
    return value


def non_negative(value: N | None) -> N | None:
    """Callback: a finite number >= 0."""
    if value is not None and not (_is_finite(value) and value >= 0):
        raise _bad(f"must be a number >= 0, got {value}")
    return value


def finite(value: N | None) -> N | None:
    """Callback: any finite number (no ``nan``/``inf``)."""
    if value is not None and not _is_finite(value):
        raise _bad(f"must be a finite number, got {value}")
    return value


def at_least(bound: float, *, at_most: float | None = None) -> Callable[[N | None], N | None]:
    """Callback factory: a finite number in ``[bound, at_most]``.

    Examples
    --------
    >>> at_least(1)(3)
    3
    >>> at_least(0.1, at_most=1.0)(1.5)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    click.exceptions.BadParameter: must be between 0.1 and 1.0, got 1.5
    """

    def check(value: N | None) -> N | None:
        if value is None:
            return value
        ok = _is_finite(value) and value >= bound and (at_most is None or value <= at_most)
        if not ok:
            want = f"at least {bound}" if at_most is None else f"between {bound} and {at_most}"
            raise _bad(f"must be {want}, got {value}")
        return value

    return check


def parse_floats(
    text: str | None, option: str, *, count: tuple[int, ...] | None = None, positive: bool = True
) -> tuple[float, ...] | None:
    """Parse ``"0.3,0.1,0.1"`` (or ``0.3x0.1x0.1``) given to ``option``.

    Parameters
    ----------
    text : str or None
        What the user typed; ``None`` passes through.
    option : str
        The option's name, for messages.
    count : tuple of int, optional
        Allowed numbers of values.
    positive : bool
        Every value must be finite and > 0.

    Returns
    -------
    tuple of float or None

    Raises
    ------
    InputError
        Naming the option, the text and what was expected.

    Examples
    --------
    >>> parse_floats("0.3,0.1,0.1", "--voxel-size")
    (0.3, 0.1, 0.1)
    >>> parse_floats("0,0.1,0.1", "--voxel-size")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: --voxel-size '0,0.1,0.1': every value must be a positive number
    """
    from cytolens.core.errors import InputError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"{option} {text!r} must be numbers separated by commas, e.g. 0.3,0.1,0.1"
        ) from None
    if not values:
        raise InputError(f"{option} {text!r} holds no number")
    if count is not None and len(values) not in count:
        want = " or ".join(str(c) for c in count)
        raise InputError(f"{option} {text!r}: expected {want} value(s), got {len(values)}")
    if positive and not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{option} {text!r}: every value must be a positive number")
    return values
