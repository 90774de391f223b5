"""``Transform``: an affine map in physical units, with the quality of the fit that made it.

Convention (the one ITK and elastix use): a transform maps a point of the
*fixed* (reference) frame to the point of the *moving* image that belongs
there. Resampling the moving image onto the fixed grid therefore reads
``moving(T(x))`` at every fixed-grid point ``x``. Coordinates are in
micrometres (or pixels when no pixel size was given), in the array's axis
order (``Z, Y, X`` or ``Y, X``), with the origin at the centre of the first
voxel: voxel ``i`` along an axis of pixel size ``s`` sits at ``i * s``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import FileFormatError, InputError

__all__ = ["TRANSFORM_KINDS", "Transform"]

#: Transform kinds :func:`~cytolens.register.register` fits, from the most to the least constrained.
TRANSFORM_KINDS = ("translation", "rigid", "affine")

_FORMAT = "cytolens.register.Transform"
_VERSION = 1


@dataclass(frozen=True)
class Transform:
    """An affine transform from fixed-frame to moving-image coordinates.

    Parameters
    ----------
    matrix : array_like
        Homogeneous matrix, ``(ndim + 1, ndim + 1)`` (3x3 in 2D, 4x4 in 3D),
        last row ``0 ... 0 1``, acting on column vectors ``(z, y, x, 1)``.
    kind : {"translation", "rigid", "affine"}
        What was fitted (informative; composition gives ``"affine"`` unless
        both factors are of the same kind).
    units : {"um", "px"}
        Units of the translation part: micrometres when a pixel size was
        given, pixels otherwise.
    quality : dict
        How the fit went: ``ncc_before`` and ``ncc_after`` (normalized
        cross-correlation of the images in their overlap, without and with
        the transform), ``iterations`` and ``converged``. Empty for a
        transform built by hand.

    Examples
    --------
    >>> t = Transform.from_translation((2.0, -1.0))
    >>> t.apply_points([[0.0, 0.0]]).tolist()
    [[2.0, -1.0]]
    >>> (t @ t.inverse()).matrix.round(6).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> Transform.from_json(t.to_json()).matrix[:2, 2].tolist()
    [2.0, -1.0]
    """

    matrix: np.ndarray
    kind: str = "affine"
    units: str = "px"
    quality: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = np.array(self.matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] not in (3, 4):
            raise InputError(
                f"a transform matrix must be 3x3 (2D) or 4x4 (3D) homogeneous, got shape {m.shape}"
            )
        if not np.all(np.isfinite(m)):
            raise InputError("the transform matrix has non-finite entries")
        n = m.shape[0] - 1
        if not np.allclose(m[n], np.r_[np.zeros(n), 1.0], atol=1e-9):
            raise InputError(f"the last row of a transform matrix must be 0 ... 0 1, got {m[n]}")
        if abs(np.linalg.det(m[:n, :n])) < 1e-12:
            raise InputError("the transform matrix is singular (its linear part has det 0)")
        if self.kind not in TRANSFORM_KINDS:
            raise InputError(f"kind must be one of {TRANSFORM_KINDS}, got {self.kind!r}")
        if self.units not in ("um", "px"):
            raise InputError(f"units must be 'um' or 'px', got {self.units!r}")
        m.setflags(write=False)
        object.__setattr__(self, "matrix", m)
        object.__setattr__(self, "quality", dict(self.quality))

    # constructors ---------------------------------------------------------------------------
    @classmethod
    def identity(cls, ndim: int, *, units: str = "px") -> Transform:
        """The identity in 2D or 3D."""
        if ndim not in (2, 3):
            raise InputError(f"transforms are 2D or 3D, got ndim={ndim!r}")
        return cls(np.eye(ndim + 1), kind="translation", units=units)

    @classmethod
    def from_translation(cls, shift: Any, *, units: str = "px") -> Transform:
        """A pure translation ``x -> x + shift`` (one entry per axis, ``Z, Y, X`` order)."""
        shift = np.asarray(shift, dtype=np.float64).ravel()
        m = np.eye(shift.size + 1)
        m[:-1, -1] = shift
        return cls(m, kind="translation", units=units)

    @classmethod
    def from_linear(
        cls,
        linear: Any,
        translation: Any = None,
        *,
        center: Any = None,
        kind: str = "affine",
        units: str = "px",
    ) -> Transform:
        """``x -> linear @ (x - center) + center + translation``.

        Examples
        --------
        >>> import numpy as np
        >>> rot = [[0.0, -1.0], [1.0, 0.0]]  # 90 degrees
        >>> t = Transform.from_linear(rot, center=(1.0, 1.0), kind="rigid")
        >>> t.apply_points([[1.0, 1.0], [1.0, 2.0]]).round(6).tolist()
        [[1.0, 1.0], [0.0, 1.0]]
        """
        a = np.asarray(linear, dtype=np.float64)
        n = a.shape[0]
        c = np.zeros(n) if center is None else np.asarray(center, dtype=np.float64)
        t = np.zeros(n) if translation is None else np.asarray(translation, dtype=np.float64)
        m = np.eye(n + 1)
        m[:n, :n] = a
        m[:n, n] = c - a @ c + t
        return cls(m, kind=kind, units=units)

    # properties -----------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """2 or 3."""
        return self.matrix.shape[0] - 1

    @property
    def linear(self) -> np.ndarray:
        """The linear part (rotation, scale, shear)."""
        return self.matrix[: self.ndim, : self.ndim]

    @property
    def translation(self) -> np.ndarray:
        """The translation part."""
        return self.matrix[: self.ndim, self.ndim]

    @property
    def converged(self) -> bool | None:
        """Whether the fit that made it converged (``None`` for a transform made by hand)."""
        value = self.quality.get("converged")
        return None if value is None else bool(value)

    # algebra --------------------------------------------------------------------------------
    def __matmul__(self, other: Transform) -> Transform:
        """``(a @ b)(x) == a(b(x))``: apply ``b`` first."""
        if not isinstance(other, Transform):
            return NotImplemented
        if other.ndim != self.ndim:
            raise InputError(f"cannot compose a {self.ndim}D and a {other.ndim}D transform")
        if other.units != self.units:
            raise InputError(f"cannot compose transforms in {self.units} and {other.units}")
        kind = self.kind if self.kind == other.kind else "affine"
        if {self.kind, other.kind} == {"translation", "rigid"}:
            kind = "rigid"
        return Transform(self.matrix @ other.matrix, kind=kind, units=self.units)

    def inverse(self) -> Transform:
        """The inverse map (moving to fixed)."""
        return Transform(np.linalg.inv(self.matrix), kind=self.kind, units=self.units)

    def apply_points(self, points: Any) -> np.ndarray:
        """Map points ``(N, ndim)`` (or one ``(ndim,)``) from the fixed to the moving frame."""
        p = np.asarray(points, dtype=np.float64)
        single = p.ndim == 1
        p = np.atleast_2d(p)
        if p.shape[-1] != self.ndim:
            raise InputError(
                f"points have {p.shape[-1]} coordinates each, the transform is {self.ndim}D"
            )
        out = p @ self.linear.T + self.translation
        return out[0] if single else out

    def in_pixels(self, pixel_size_um: Any) -> np.ndarray:
        """The matrix acting on voxel indices: ``S^-1 M S`` with ``S = diag(pixel_size_um)``."""
        s = np.ones(self.ndim + 1)
        s[: self.ndim] = _sizes(pixel_size_um, self.ndim)
        if self.units == "px":
            return np.array(self.matrix)
        return np.diag(1 / s) @ self.matrix @ np.diag(s)

    # serialization --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly content (see :meth:`to_json`)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "ndim": self.ndim,
            "kind": self.kind,
            "units": self.units,
            "convention": "maps fixed-frame (reference) coordinates to moving-image coordinates, "
            "axis order " + ("z, y, x" if self.ndim == 3 else "y, x") + ", origin at voxel 0",
            "matrix": self.matrix.tolist(),
            "quality": {k: _plain(v) for k, v in self.quality.items()},
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The transform as JSON text; also written (atomically) to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            from cytolens.core.files import atomic_path

            with atomic_path(Path(path)) as tmp:
                Path(tmp).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Transform:
        """Read a transform from JSON text or from a ``.json`` file written by :meth:`to_json`."""
        where = "the JSON text"
        text = str(source)
        if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
            path = Path(source)
            if not path.is_file():
                from cytolens.core.errors import MissingFileError

                raise MissingFileError(f"{path}: no such transform file")
            where = str(path)
            text = path.read_text(errors="replace")
        try:
            content = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FileFormatError(f"{where} is not a transform: not valid JSON ({exc})") from None
        if not isinstance(content, dict) or content.get("format") != _FORMAT:
            raise FileFormatError(
                f"{where} is not a transform: expected a JSON object with "
                f'"format": "{_FORMAT}" (written by Transform.to_json or cytolens register)'
            )
        if content.get("version") != _VERSION:
            raise FileFormatError(
                f"{where}: transform version {content.get('version')!r}, expected {_VERSION}"
            )
        try:
            return cls(
                np.asarray(content["matrix"], dtype=np.float64),
                kind=content.get("kind", "affine"),
                units=content.get("units", "px"),
                quality=content.get("quality") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FileFormatError(f"{where} is not a valid transform: {exc}") from None

    def __repr__(self) -> str:
        q = ""
        if self.quality:
            q = (
                f", ncc {self.quality.get('ncc_before', float('nan')):.3f} -> "
                f"{self.quality.get('ncc_after', float('nan')):.3f}, "
                f"converged={self.quality.get('converged')}"
            )
        t = ", ".join(f"{v:.3f}" for v in self.translation)
        return f"Transform({self.ndim}D {self.kind}, translation ({t}) {self.units}{q})"


def _sizes(pixel_size_um: Any, ndim: int) -> np.ndarray:
    """Pixel sizes as an array of ``ndim`` positive floats (1 when ``None``)."""
    if pixel_size_um is None:
        return np.ones(ndim)
    s = np.atleast_1d(np.asarray(pixel_size_um, dtype=np.float64))
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.shape != (ndim,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(
            f"pixel_size_um must be one positive number or one per axis ({ndim}), "
            f"got {pixel_size_um!r}"
        )
    return s


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
