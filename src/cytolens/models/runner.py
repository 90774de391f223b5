"""Run bioimage.io model packages made by any tool (CAREamics, cytolens, the Model Zoo...).

A package (a folder or a ``.zip`` holding ``rdf.yaml`` or ``bioimageio.yaml``)
is read and validated with ``bioimageio.spec`` (older 0.4 packages are
converted to the 0.5 format it implements), its weights loaded, and images
run through it as bioimage.io prescribes:

1. the image's axes (OME letters, e.g. ``"YX"``, ``"CYX"``, ``"TZYX"``) are
   mapped onto the input tensor's axes: ``C`` -> ``channel``, ``Z/Y/X`` ->
   the space axes ``z/y/x``; ``T`` runs frame by frame as the ``batch`` axis
   when the tensor has no time axis; missing length-1 axes are added;
2. the declared pre-processing (``scale_range``, ``zero_mean_unit_variance``,
   ``fixed_zero_mean_unit_variance``, ``scale_linear``, ``clip``,
   ``binarize``, ``sigmoid``, ``softmax``, ``ensure_dtype``) is fitted on the
   whole image (statistics per sample, as bioimage.io does: exact below
   :data:`MAX_STAT_PIXELS` pixels, else from a regular sample) and applied
   tile by tile;
3. the network runs tile by tile through
   :func:`cytolens.core.tiling.apply_tiled` (overlap, halo cropped; or linear blending),
   each tile padded (reflection) to a size the tensor accepts (its fixed
   size, or ``min + k * step``) and by the output's declared ``halo``;
   outputs without the input's space axes (e.g. class scores) are computed
   on the whole image at once;
4. the declared post-processing is applied to the stitched output.

Weight formats: ``pytorch_state_dict`` (architecture from the package's own
source file, executed in an isolated module, or imported from an installed
library), ``torchscript``, and ``onnx`` when ``onnxruntime`` is installed.
Loading a package runs code it ships (its architecture file or torchscript
graph): run only packages you trust, as with any model file.

``bioimageio.spec`` is needed (``pip install "bioimageio.spec>=0.5.12"``);
``bioimageio.core`` is not.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import logging
import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import (
    AxesError,
    FileFormatError,
    InputError,
    MissingFileError,
    ModelError,
)

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "WEIGHT_FORMATS",
    "BioimageioModel",
    "PackageCheck",
    "check_package",
    "load_package",
    "run_package",
]

logger = logging.getLogger(__name__)

#: Weight formats cytolens runs, in the order tried when none is asked for.
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
#: Default tile side (px, halo included) along each space axis.
DEFAULT_TILE = 512
#: Default overlap (px) between tiles when the package declares no larger halo.
DEFAULT_OVERLAP = 32
#: Pixels read at most to fit per-sample statistics (larger or Dask images are sampled).
MAX_STAT_PIXELS = 1 << 24
#: Names of a package's description file, in the order looked for.
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: Tolerances of :func:`check_package` when the package states none (bioimage.io's defaults).
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4

_SPACE_LETTERS = {"z": "Z", "y": "Y", "x": "X"}


# --- the package on disk ------------------------------------------------------------


class _Archive:
    """Read members of a package folder or zip by their relative path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.is_zip = path.is_file()
        if self.is_zip:
            try:
                with zipfile.ZipFile(path) as zf:
                    self.names = set(zf.namelist())
            except zipfile.BadZipFile:
                raise FileFormatError(
                    f"{path}: not a zip file; expected a bioimage.io package (.zip or folder)"
                ) from None
        else:
            self.names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
        found = [n for n in RDF_NAMES if n in self.names] or sorted(
            n for n in self.names if n.endswith(".bioimageio.yaml") and "/" not in n
        )
        if not found:
            raise FileFormatError(
                f"{path}: no {' or '.join(RDF_NAMES)} in the package; "
                "expected a bioimage.io model package"
            )
        self.rdf = found[0]

    def read(self, relpath: str, what: str) -> bytes:
        name = relpath.replace("\\", "/").lstrip("./") if relpath.startswith("./") else relpath
        if name not in self.names:
            raise MissingFileError(f"{self.path}: {what} {relpath!r} is not in the package")
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(name)
        return (self.path / name).read_bytes()


def _relpath(source: Any, archive: _Archive, what: str) -> str:
    """The path inside the package of a bioimageio.spec file source (no downloads)."""
    text = str(getattr(source, "source", source))
    if "://" in text:
        raise ModelError(
            f"{archive.path}: {what} is a remote file ({text}); cytolens does not download "
            "at run time: download the package with its files first"
        )
    return text


def _spec() -> Any:
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise ModelError(
            "running bioimage.io packages needs bioimageio.spec: "
            'pip install "bioimageio.spec>=0.5.12"'
        ) from None
    return spec


def _first_errors(summary: Any, limit: int = 3) -> str:
    errors = [e for d in summary.details for e in d.errors]
    parts = []
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err.loc) if err.loc else "(root)"
        parts.append(f"field {loc!r}: {err.msg}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more if parts else "no details given"


def _describe(path: Path) -> tuple[Any, _Archive]:
    """Validate a package with bioimageio.spec; its typed description and its files."""
    if not path.exists():
        raise MissingFileError(f"{path}: no such package (expected a .zip or a folder)")
    archive = _Archive(path)
    spec = _spec()
    source = path if archive.is_zip else path / archive.rdf
    try:
        descr = spec.load_model_description(
            source, perform_io_checks=False, format_version="latest"
        )
    except (ValueError, TypeError) as exc:  # pydantic's validation error (a ValueError)
        lines = [ln.strip(" -") for ln in str(exc).splitlines()[1:] if ln.strip(" -")]
        raise ModelError(
            f"{path}: fails bioimage.io validation ({archive.rdf}): "
            + ("; ".join(lines[:3]) or str(exc))
        ) from None
    except Exception as exc:  # YAML syntax and other reader errors
        raise FileFormatError(f"{path}: {archive.rdf} cannot be read: {exc}") from None
    if type(descr).__name__ == "InvalidDescr" or not hasattr(descr, "weights"):
        summary = descr.validation_summary
        raise ModelError(
            f"{path}: fails bioimage.io validation ({archive.rdf}): {_first_errors(summary)}"
        )
    return descr, archive


# --- axes ----------------------------------------------------------------------------


def _letter(axis: Any) -> str:
    """OME letter of a bioimage.io axis (``B`` for batch, ``I`` for index)."""
    kind = str(axis.type)
    if kind == "batch":
        return "B"
    if kind == "channel":
        return "C"
    if kind == "time":
        return "T"
    if kind == "index":
        return "I"
    return _SPACE_LETTERS.get(str(axis.id), str(axis.id).upper())


def _axes_text(axes: list[Any]) -> str:
    return ",".join(str(a.id) for a in axes)


@dataclass
class _SpaceSize:
    """Sizes a space axis accepts: ``fixed``, or ``min + k * step``."""

    fixed: int | None = None
    min: int = 1
    step: int = 1

    def valid(self, n: int) -> int:
        """The smallest accepted size >= ``n`` (``fixed`` may be smaller: caller tiles)."""
        if self.fixed is not None:
            return self.fixed
        if n <= self.min or self.step == 0:
            return self.min
        return self.min + math.ceil((n - self.min) / self.step) * self.step

    def largest_at_most(self, n: int) -> int:
        if self.fixed is not None:
            return self.fixed
        if n <= self.min or self.step == 0:
            return self.min
        return self.min + ((n - self.min) // self.step) * self.step


def _size_of(axis: Any) -> _SpaceSize:
    size = getattr(axis, "size", None)
    if isinstance(size, int):
        return _SpaceSize(fixed=int(size))
    if hasattr(size, "min") and hasattr(size, "step"):
        return _SpaceSize(min=int(size.min), step=int(size.step))
    return _SpaceSize()  # a reference to another tensor: any size


# --- pre- and post-processing --------------------------------------------------------


def _stat_view(x: Any, axes: str) -> np.ndarray:
    """``x`` (or a regular sample of it along its space axes) as float64 numpy, for statistics."""
    from cytolens.core.validate import is_dask

    size = int(np.prod(x.shape, dtype=np.int64))
    if size <= MAX_STAT_PIXELS and not is_dask(x):
        return np.asarray(x, dtype=np.float64)
    space = [i for i, a in enumerate(axes) if a in "ZYX"]
    step = 1
    while size // step ** len(space) > MAX_STAT_PIXELS:
        step += 1
    index = tuple(slice(None, None, step) if i in space else slice(None) for i in range(x.ndim))
    return np.asarray(x[index], dtype=np.float64)


def _reduce_axes(kwargs: Any, axes: str, tensor_axes: list[Any]) -> tuple[int, ...]:
    """Axes (indices into ``axes``) that a step's statistics reduce over."""
    chosen = getattr(kwargs, "axes", None)
    if chosen is None:  # all axes jointly
        return tuple(range(len(axes)))
    by_id = {str(a.id): _letter(a) for a in tensor_axes}
    letters = {by_id.get(str(a), str(a).upper()) for a in chosen}
    return tuple(i for i, a in enumerate(axes) if a in letters)


def _along(values: Any, axis_id: Any, axes: str, tensor_axes: list[Any]) -> np.ndarray:
    """Per-axis values (a list along ``axis_id``) shaped to broadcast against ``axes``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or axis_id is None:
        return arr
    letter = {str(a.id): _letter(a) for a in tensor_axes}.get(str(axis_id), str(axis_id).upper())
    shape = [1] * len(axes)
    shape[axes.index(letter)] = arr.size
    return arr.reshape(shape)


@dataclass
class _Step:
    """One fitted processing step: ``apply(x)`` on any tile (stats broadcast)."""

    name: str
    func: Any
    tileable: bool = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.func(x)


def _fit_step(
    proc: Any,
    x: Any,
    axes: str,
    tensor_axes: list[Any],
    reference: dict[str, tuple[Any, str, list[Any]]],
) -> _Step:
    """Fit one bioimage.io processing step on the whole sample ``x`` (axes ``axes``)."""
    pid = str(proc.id)
    kw = getattr(proc, "kwargs", None)

    def stats_source(kwargs: Any) -> tuple[Any, str, list[Any]]:
        ref = getattr(kwargs, "reference_tensor", None)
        if ref is None:
            return x, axes, tensor_axes
        if str(ref) not in reference:
            raise ModelError(f"processing {pid!r}: unknown reference_tensor {str(ref)!r}")
        return reference[str(ref)]

    def keep(red: tuple[int, ...], src_axes: str) -> bool:
        """Whether statistics over ``red`` broadcast across tiles (every space axis reduced)."""
        return all(i in red for i, a in enumerate(src_axes) if a in "ZYX")

    if pid == "ensure_dtype":
        dtype = np.dtype(str(kw.dtype))
        return _Step(pid, lambda t: t.astype(dtype, copy=False))
    if pid == "sigmoid":
        return _Step(pid, lambda t: (1.0 / (1.0 + np.exp(-t))).astype(np.float32))
    if pid == "softmax":
        index = axes.index(
            {str(a.id): _letter(a) for a in tensor_axes}.get(str(kw.axis), str(kw.axis).upper())
        )

        def softmax(t: np.ndarray) -> np.ndarray:
            e = np.exp(t - t.max(axis=index, keepdims=True))
            return (e / e.sum(axis=index, keepdims=True)).astype(np.float32)

        return _Step(pid, softmax)
    if pid == "binarize":
        thr = _along(kw.threshold, getattr(kw, "axis", None), axes, tensor_axes)
        return _Step(pid, lambda t: t > thr)
    if pid == "clip":
        lo = getattr(kw, "min", None)
        hi = getattr(kw, "max", None)
        for name in ("min_percentile", "max_percentile"):
            if getattr(kw, name, None) is not None:
                src, src_axes, src_tensor = stats_source(kw)
                red = _reduce_axes(kw, src_axes, src_tensor)
                value = np.percentile(
                    _stat_view(src, src_axes), getattr(kw, name), axis=red, keepdims=True
                )
                lo, hi = (value, hi) if name == "min_percentile" else (lo, value)
        return _Step(pid, lambda t: np.clip(t, lo, hi))
    if pid == "scale_linear":
        axis = getattr(kw, "axis", None)
        gain = _along(kw.gain, axis, axes, tensor_axes)
        offset = _along(kw.offset, axis, axes, tensor_axes)
        return _Step(pid, lambda t: (t * gain + offset).astype(np.float32))
    if pid == "fixed_zero_mean_unit_variance":
        axis = getattr(kw, "axis", None)
        mean = _along(kw.mean, axis, axes, tensor_axes)
        std = _along(kw.std, axis, axes, tensor_axes)
        eps = float(getattr(kw, "eps", 1e-6))
        return _Step(pid, lambda t: ((t - mean) / (std + eps)).astype(np.float32))
    if pid == "zero_mean_unit_variance":
        red = _reduce_axes(kw, axes, tensor_axes)
        data = _stat_view(x, axes)
        mean, std = data.mean(axis=red, keepdims=True), data.std(axis=red, keepdims=True)
        eps = float(kw.eps)
        return _Step(pid, lambda t: ((t - mean) / (std + eps)).astype(np.float32), keep(red, axes))
    if pid == "scale_range":
        src, src_axes, src_tensor = stats_source(kw)
        red = _reduce_axes(kw, src_axes, src_tensor)
        data = _stat_view(src, src_axes)
        lo = np.percentile(data, kw.min_percentile, axis=red, keepdims=True)
        hi = np.percentile(data, kw.max_percentile, axis=red, keepdims=True)
        eps = float(kw.eps)
        return _Step(
            pid, lambda t: ((t - lo) / (hi - lo + eps)).astype(np.float32), keep(red, src_axes)
        )
    if pid == "scale_mean_variance":
        src, src_axes, src_tensor = stats_source(kw)
        red = _reduce_axes(kw, axes, tensor_axes)
        data, ref = _stat_view(x, axes), _stat_view(src, src_axes)
        ref_red = _reduce_axes(kw, src_axes, src_tensor)
        mean, std = data.mean(axis=red, keepdims=True), data.std(axis=red, keepdims=True)
        rmean = ref.mean(axis=ref_red, keepdims=True)
        rstd = ref.std(axis=ref_red, keepdims=True)
        eps = float(kw.eps)
        return _Step(
            pid,
            lambda t: ((t - mean) / (std + eps) * (rstd + eps) + rmean).astype(np.float32),
            False,
        )
    raise ModelError(
        f"processing step {pid!r} is not supported by cytolens; supported: binarize, clip, "
        "ensure_dtype, fixed_zero_mean_unit_variance, scale_linear, scale_mean_variance, "
        "scale_range, sigmoid, softmax, zero_mean_unit_variance"
    )


# --- weights -------------------------------------------------------------------------


def _check_sha(data: bytes, expected: Any, what: str, path: Path) -> None:
    if expected is None:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != str(expected):
        raise ModelError(
            f"{path}: {what} sha256 {actual[:12]}... does not match the package's "
            f"{str(expected)[:12]}...; the file is damaged or was replaced"
        )


def _architecture(arch: Any, archive: _Archive) -> Any:
    """The network class or factory named by a pytorch_state_dict ``architecture``."""
    name = str(arch.callable)
    library = getattr(arch, "import_from", None)
    if library is not None:
        try:
            module = importlib.import_module(str(library))
        except ImportError as exc:
            raise ModelError(
                f"{archive.path}: the state-dict architecture is imported from "
                f"{str(library)!r}, which is not installed here ({exc}); install it or use "
                "the package's torchscript/onnx weights"
            ) from None
    else:
        relpath = _relpath(arch.source, archive, "architecture source")
        relpath = relpath.split("::")[0]
        code = archive.read(relpath, "architecture source")
        _check_sha(code, getattr(arch, "sha256", None), "architecture source", archive.path)
        # a fresh module per package, not registered in sys.modules: packages never share code
        spec = importlib.util.spec_from_loader(f"bioimageio_arch_{id(archive)}", loader=None)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        try:
            exec(compile(code, relpath, "exec"), module.__dict__)
        except Exception as exc:
            raise ModelError(
                f"{archive.path}: architecture source {relpath!r} fails to run: {exc}"
            ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ModelError(
            f"{archive.path}: architecture callable {name!r} is not defined by "
            f"{library or relpath!r}"
        ) from None


class _TorchRunner:
    def __init__(self, net: Any, device: Any) -> None:
        self.net = net
        self.device = device

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            y = self.net(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        ys = y if isinstance(y, (tuple, list)) else (y,)
        return [t.detach().float().cpu().numpy() for t in ys]


class _OnnxRunner:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.name = session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(y) for y in self.session.run(None, {self.name: x})]


def _load_weights(descr: Any, archive: _Archive, fmt: str, device: Any) -> Any:
    entry = getattr(descr.weights, fmt, None)
    if entry is None:
        raise ModelError(f"{archive.path}: the package has no {fmt!r} weights")
    relpath = _relpath(entry.source, archive, f"{fmt} weights")
    data = archive.read(relpath, f"{fmt} weights")
    _check_sha(data, getattr(entry, "sha256", None), f"{fmt} weights", archive.path)
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ModelError(
                f"{archive.path}: onnx weights need onnxruntime: pip install onnxruntime"
            ) from None
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        return _OnnxRunner(onnxruntime.InferenceSession(data, providers=providers))
    import torch

    if fmt == "torchscript":
        try:
            with warnings.catch_warnings():  # deprecated in torch, still bioimage.io's format
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(io.BytesIO(data), map_location=device)
        except RuntimeError as exc:
            raise ModelError(
                f"{archive.path}: torchscript weights cannot be loaded: {exc}"
            ) from None
        return _TorchRunner(net.eval(), device)
    if fmt == "pytorch_state_dict":
        build = _architecture(entry.architecture, archive)
        kwargs = dict(entry.architecture.kwargs or {})
        try:
            net = build(**kwargs)
        except Exception as exc:
            raise ModelError(
                f"{archive.path}: architecture {entry.architecture.callable}(**{kwargs}) "
                f"fails: {exc}"
            ) from None
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state, strict=bool(getattr(entry, "strict", True)))
        except RuntimeError as exc:
            raise ModelError(
                f"{archive.path}: state-dict weights do not fit the architecture: {exc}"
            ) from None
        return _TorchRunner(net.to(device).eval(), device)
    raise ModelError(f"weight format {fmt!r} is not supported; cytolens runs {WEIGHT_FORMATS}")


# --- the model -----------------------------------------------------------------------


@dataclass
class PackageCheck:
    """What :func:`check_package` found: the package's test re-run by cytolens.

    Attributes
    ----------
    max_abs_diff : float
        Largest absolute difference between cytolens' outputs and the
        package's test outputs, over all outputs.
    per_output : dict of str to float
        The same, per output id.
    passed : bool
        Every output within the package's reproducibility tolerance
        (``rtol``/``atol`` it states, else :data:`DEFAULT_RTOL` / :data:`DEFAULT_ATOL`).
    weight_format : str
        The weights used.
    """

    max_abs_diff: float
    per_output: dict[str, float]
    passed: bool
    weight_format: str
    tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)


class BioimageioModel:
    """A loaded bioimage.io model package, ready to run on images.

    Use :func:`load_package` to make one; see the module docstring for what
    running does.

    Attributes
    ----------
    path : pathlib.Path
        The package (folder or zip).
    name : str
        The package's ``name``.
    weight_format : str
        The weights in use.
    input_axes : str
        OME letters of the input tensor (``B`` batch, ``C`` channel, ``ZYX`` space).
    output_axes : dict of str to str
        Per output id, the axes of the arrays :meth:`predict` returns
        (the tensor's, batch dropped).
    """

    def __init__(self, path: Path, descr: Any, archive: _Archive, runner: Any, fmt: str) -> None:
        self.path = path
        self.descr = descr
        self.archive = archive
        self.name = str(descr.name)
        self.weight_format = fmt
        self._runner = runner
        if len(descr.inputs) != 1:
            raise ModelError(
                f"{path}: the package has {len(descr.inputs)} input tensors; cytolens runs "
                "packages with one input"
            )
        self.input = descr.inputs[0]
        self.input_id = str(self.input.id)
        self.input_axes = "".join(_letter(a) for a in self.input.axes)
        self.outputs = list(descr.outputs)
        self.output_axes = {
            str(o.id): "".join(_letter(a) for a in o.axes if str(a.type) != "batch")
            for o in self.outputs
        }

    def __repr__(self) -> str:
        return f"BioimageioModel({self.name!r}, weights={self.weight_format!r})"

    # -- axes --

    def _to_tensor_axes(self, image: Any, axes: str | None) -> tuple[Any, str, bool]:
        """``image`` as ``(frames, *tensor axes without batch)``; whether frames came from T."""
        from cytolens.core.axes import check_axes

        tensor = [a for a in self.input.axes if str(a.type) != "batch"]
        want = "".join(_letter(a) for a in tensor)
        has_batch = "B" in self.input_axes
        shape = tuple(image.shape)
        if axes is None:
            if len(shape) != len(want):
                raise AxesError(
                    f"image has {len(shape)} axes {shape}; the package {self.name!r} takes "
                    f"{want!r} (axes {_axes_text(self.input.axes)}): give axes= "
                    "(e.g. 'YX', 'CYX', 'TYX')"
                )
            axes = want
        axes = check_axes(axes, shape)
        if "T" in axes and "T" not in want and not has_batch:
            raise AxesError(
                f"image axes {axes!r} have T but the package {self.name!r} has neither a time "
                f"nor a batch axis ({_axes_text(self.input.axes)})"
            )
        frames_from_t = "T" in axes and "T" not in want
        # drop length-1 axes the tensor lacks; refuse longer ones
        x = image
        for letter in [a for a in axes if a not in want and not (a == "T" and frames_from_t)]:
            i = axes.index(letter)
            if shape[i] != 1:
                raise AxesError(
                    f"image axis {letter!r} (length {shape[i]}) has no match in the input "
                    f"axes of package {self.name!r} ({_axes_text(self.input.axes)})"
                )
        keep = [i for i, a in enumerate(axes) if a in want or (a == "T" and frames_from_t)]
        drop = tuple(i for i in range(len(axes)) if i not in keep)
        if drop:
            x = x.reshape(tuple(shape[i] for i in keep))
            axes = "".join(axes[i] for i in keep)
        # add missing length-1 axes (e.g. a channel)
        for letter, axis in zip(want, tensor, strict=True):
            if letter in axes:
                continue
            size = getattr(axis, "size", None)
            n_channels = len(getattr(axis, "channel_names", []) or [])
            ok = (
                (letter == "C" and n_channels == 1)
                or size == 1
                or (hasattr(size, "min") and int(size.min) == 1)
            )
            if not ok:
                expected = f"{n_channels} channels" if letter == "C" else f"axis {str(axis.id)!r}"
                raise AxesError(
                    f"image axes {axes!r} lack {letter!r}: package {self.name!r} expects "
                    f"{expected} (input axes {_axes_text(self.input.axes)})"
                )
            x = x[None]
            axes = letter + axes
        order = (["T"] if frames_from_t else []) + list(want)
        x = x.transpose([axes.index(a) for a in order])
        if not frames_from_t:
            x = x[None]
        for letter, axis in zip(want, tensor, strict=True):
            n = x.shape[1 + want.index(letter)]
            if letter == "C":
                n_channels = len(axis.channel_names)
                if n != n_channels:
                    raise AxesError(
                        f"image has {n} channel(s); package {self.name!r} expects {n_channels} "
                        f"({', '.join(map(str, axis.channel_names))})"
                    )
            elif str(axis.type) in ("index",) and isinstance(axis.size, int) and n != axis.size:
                raise AxesError(
                    f"image axis {letter!r} has length {n}; package {self.name!r} expects "
                    f"{axis.size}"
                )
        return x, want, frames_from_t

    # -- running --

    def _space_ids(self) -> list[str]:
        return [str(a.id) for a in self.input.axes if str(a.type) == "space"]

    def _output_tileable(self, out: Any) -> bool:
        """Whether an output has exactly the input's space axes, pixel for pixel."""
        by_id = {str(a.id): a for a in self.input.axes if str(a.type) == "space"}
        space = [a for a in out.axes if str(a.type) == "space"]
        if sorted(str(a.id) for a in space) != sorted(by_id):
            return False
        for oa in space:
            ia = by_id[str(oa.id)]
            if float(getattr(oa, "scale", 1.0) or 1.0) != float(getattr(ia, "scale", 1.0) or 1.0):
                return False
            size = getattr(oa, "size", None)
            if getattr(size, "tensor_id", None) is not None:
                if str(size.tensor_id) != self.input_id or str(size.axis_id) != str(ia.id):
                    return False
                if int(getattr(size, "offset", 0) or 0) != 0:
                    return False
            elif not (isinstance(size, int) and size == getattr(ia, "size", None)):
                return False
        return True

    def _plan(
        self, shape: tuple[int, ...], tile: int, overlap: int | None
    ) -> tuple[list[_SpaceSize], list[int], list[int], list[int], bool]:
        """Per input space axis: accepted sizes, halo, tile and overlap; whether to tile."""
        ids = self._space_ids()
        tileable = all(self._output_tileable(o) for o in self.outputs)
        rules, halos, tiles, overlaps = [], [], [], []
        for aid, n in zip(ids, shape, strict=True):
            axis = next(a for a in self.input.axes if str(a.id) == aid)
            rule = _size_of(axis)
            halo = max(
                [
                    int(getattr(a, "halo", 0) or 0)
                    for o in self.outputs
                    for a in o.axes
                    if str(a.id) == aid
                ]
                or [0]
            )
            core = rule.largest_at_most(max(int(tile), rule.min, 2 * halo + 1)) - 2 * halo
            o = max(halo, DEFAULT_OVERLAP if overlap is None else int(overlap))
            if n > core and 2 * o >= core:
                o = (core - 1) // 2
            if n > core and (core < 1 or o < halo):
                raise InputError(
                    f"package {self.name!r}: a tile of {core + 2 * halo} px along {aid!r} "
                    f"cannot hold the output halo of {halo} px on both sides; use a larger tile"
                )
            rules.append(rule)
            halos.append(halo)
            tiles.append(min(core, n))
            overlaps.append(o if n > core else 0)
        tiled = tileable and any(t < n for t, n in zip(tiles, shape, strict=True))
        if not tileable:
            for aid, n, rule in zip(ids, shape, rules, strict=True):
                if rule.valid(n) != n:
                    raise InputError(
                        f"package {self.name!r}: its outputs do not map pixel for pixel onto "
                        f"the input, so images must have an accepted size along {aid!r} "
                        f"({_rule_text(rule)}); got {n} px"
                    )
        return rules, halos, tiles, overlaps, tiled

    def _forward(
        self, x: np.ndarray, rules: list[_SpaceSize], halos: list[int]
    ) -> list[np.ndarray]:
        """The network on one pre-processed sample (tensor axes, no batch).

        Space axes are padded (reflection) by the halo and up to an accepted
        size, and the outputs cropped back to ``x``'s size.
        """
        tensor = [a for a in self.input.axes if str(a.type) != "batch"]
        ids = self._space_ids()
        pads = [(0, 0)] * x.ndim
        for k, axis in enumerate(tensor):
            if str(axis.type) != "space":
                continue
            j = ids.index(str(axis.id))
            n, halo, rule = x.shape[k], halos[j], rules[j]
            target = rule.valid(n + 2 * halo)
            if target < n + 2 * halo:
                raise InputError(
                    f"package {self.name!r} takes {rule.fixed} px along {str(axis.id)!r}; "
                    f"got {n} px (with halo {halo})"
                )
            pads[k] = (halo, target - n - halo)
        padded = x
        if any(p != (0, 0) for p in pads):
            tiny = any(p != (0, 0) and n < 2 for n, p in zip(x.shape, pads, strict=True))
            padded = np.pad(x, pads, mode="edge" if tiny else "reflect")
        has_batch = "B" in self.input_axes
        ys = self._runner(np.ascontiguousarray(padded[None] if has_batch else padded, np.float32))
        if len(ys) != len(self.outputs):
            raise ModelError(
                f"package {self.name!r}: the network returned {len(ys)} tensor(s); the package "
                f"describes {len(self.outputs)}"
            )
        out = []
        for y, descr in zip(ys, self.outputs, strict=True):
            axes = [a for a in descr.axes if str(a.type) != "batch"]
            if len(axes) != len(descr.axes):
                y = y[0]
            if y.ndim != len(axes):
                raise ModelError(
                    f"package {self.name!r}: output {str(descr.id)!r} has shape {y.shape}; "
                    f"expected axes {_axes_text(descr.axes)}"
                )
            if self._output_tileable(descr):
                index = []
                for a in axes:
                    if str(a.type) == "space":
                        lo, _ = pads[[str(b.id) for b in tensor].index(str(a.id))]
                        n = x.shape[[str(b.id) for b in tensor].index(str(a.id))]
                        index.append(slice(lo, lo + n))
                    else:
                        index.append(slice(None))
                y = y[tuple(index)]
            out.append(y)
        return out

    def _sample(
        self, raw: Any, want: str, tile: int, overlap: int | None, progress: Any, blend: str
    ) -> dict[str, np.ndarray]:
        """Pre-process, run (tiled) and post-process one sample; its outputs by id."""

        tensor = [a for a in self.input.axes if str(a.type) != "batch"]
        reference = {self.input_id: (raw, want, tensor)}
        steps = [_fit_step(p, raw, want, tensor, reference) for p in self.input.preprocessing or []]
        space = [k for k, a in enumerate(tensor) if str(a.type) == "space"]
        sizes = [int(raw.shape[k]) for k in space]
        rules, halos, tiles, overlaps, tiled = self._plan(tuple(sizes), tile, overlap)
        tiled = tiled and all(s.tileable for s in steps)

        def prepare(block: Any) -> np.ndarray:
            block = np.asarray(block, dtype=np.float32)
            for step in steps:
                block = step(block)
            return np.asarray(block, dtype=np.float32)

        if not tiled:
            ys = self._forward(prepare(raw), rules, halos)
        else:
            ys = self._tiled(
                raw, prepare, space, sizes, rules, halos, tiles, overlaps, progress, blend
            )
        result = {}
        for y, descr in zip(ys, self.outputs, strict=True):
            out_tensor = [a for a in descr.axes if str(a.type) != "batch"]
            out_axes = "".join(_letter(a) for a in out_tensor)
            for proc in descr.postprocessing or []:
                y = _fit_step(proc, y, out_axes, out_tensor, reference)(y)
            result[str(descr.id)] = np.asarray(y)
        return result

    def _tiled(
        self,
        raw: Any,
        prepare: Any,
        space: list[int],
        sizes: list[int],
        rules: list[_SpaceSize],
        halos: list[int],
        tiles: list[int],
        overlaps: list[int],
        progress: Any,
        blend: str,
    ) -> list[np.ndarray]:
        """Outputs stitched by the tiling engine from tiles of the space axes.

        The engine cuts a map of pixel indices over the space axes; each tile
        of it names the region of ``raw`` to read (all other axes whole), as
        outputs have other channels than the input.
        """
        from cytolens.core.tiling import apply_tiled

        index = np.arange(int(np.prod(sizes)), dtype=np.int64).reshape(sizes)
        space_ids = [str(a.id) for a in self.input.axes if str(a.type) == "space"]
        layout: list[tuple[tuple[int, ...], list[int]]] = []

        def run(tile_index: np.ndarray) -> np.ndarray:
            start = np.unravel_index(int(tile_index.flat[0]), sizes)
            region = [slice(None)] * raw.ndim
            for k, s, n in zip(space, start, tile_index.shape, strict=True):
                region[k] = slice(int(s), int(s) + n)
            parts = []
            layout.clear()
            for y, descr in zip(
                self._forward(prepare(raw[tuple(region)]), rules, halos), self.outputs, strict=True
            ):
                ids = [str(a.id) for a in descr.axes if str(a.type) != "batch"]
                order = [k for k, i in enumerate(ids) if i not in space_ids] + [
                    ids.index(i) for i in space_ids
                ]
                y = np.transpose(y, order)
                lead = y.shape[: y.ndim - len(space_ids)]
                layout.append((lead, order))
                parts.append(y.reshape(-1, *tile_index.shape))
            return np.concatenate(parts).astype(np.float32, copy=False)

        stacked = apply_tiled(
            run,
            index,
            tile_shape=tiles,
            overlap=overlaps,
            blend=blend,
            dtype=np.float32,
            progress=progress,
        )
        ys, k = [], 0
        for lead, order in layout:
            n = int(np.prod(lead, dtype=np.int64))
            y = stacked[k : k + n].reshape(*lead, *sizes)
            ys.append(np.transpose(y, np.argsort(order)))
            k += n
        return ys

    def predict(
        self,
        image: Any,
        *,
        axes: str | None = None,
        tile: int = DEFAULT_TILE,
        overlap: int | None = None,
        blend: str = "crop",
        progress: Any = False,
    ) -> dict[str, np.ndarray]:
        """Run the package on an image; see :func:`run_package`."""
        from cytolens.core.validate import check_array

        image = check_array(image, name="image")
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
            raise InputError(f"tile must be a positive integer (px), got {tile!r}")
        if overlap is not None and (isinstance(overlap, bool) or int(overlap) < 0):
            raise InputError(f"overlap must be an integer >= 0 (px), got {overlap!r}")
        x, want, frames = self._to_tensor_axes(image, axes)
        results = [
            self._sample(x[i], want, int(tile), overlap, progress, blend) for i in range(x.shape[0])
        ]
        if frames:
            return {k: np.stack([r[k] for r in results]) for k in results[0]}
        return results[0]

    def axes_of(self, output_id: str, *, image_axes: str | None = None) -> str:
        """Axes of the array :meth:`predict` returns for ``output_id`` (``T`` first for movies).

        E.g. ``"TCYX"`` for a ``batch, channel, y, x`` output and ``image_axes="TYX"``.
        """
        axes = self.output_axes[output_id]
        t_as_batch = image_axes is not None and "T" in image_axes.upper() and "T" not in axes
        return ("T" if t_as_batch else "") + axes

    def test_tensors(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The package's test input and outputs, batch axis dropped."""
        descr = self.input

        def load(tensor: Any, what: str) -> np.ndarray:
            test = getattr(tensor, "test_tensor", None)
            if test is None:
                raise ModelError(f"{self.path}: {what} has no test tensor")
            relpath = _relpath(test.source, self.archive, f"test tensor of {what}")
            data = self.archive.read(relpath, f"test tensor of {what}")
            _check_sha(data, getattr(test, "sha256", None), f"test tensor {relpath}", self.path)
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            if arr.ndim == len(tensor.axes) and any(str(a.type) == "batch" for a in tensor.axes):
                b = [str(a.type) for a in tensor.axes].index("batch")
                if arr.shape[b] != 1:
                    raise ModelError(
                        f"{self.path}: test tensor of {what} has a batch of {arr.shape[b]}"
                    )
                arr = np.take(arr, 0, axis=b)
            return arr

        outputs = {str(o.id): load(o, f"output {str(o.id)!r}") for o in self.outputs}
        return load(descr, f"input {self.input_id!r}"), outputs

    def tolerances(self) -> dict[str, tuple[float, float]]:
        """``{output id: (rtol, atol)}`` stated by the package, else bioimage.io's defaults."""
        found: dict[str, tuple[float, float]] = {}
        config = getattr(self.descr, "config", None)
        bio = getattr(config, "bioimageio", None) if config is not None else None
        rows = getattr(bio, "reproducibility_tolerance", None) or []
        for row in rows:
            ids = [str(i) for i in (getattr(row, "output_ids", None) or [])] or list(
                self.output_axes
            )
            for oid in ids:
                found[oid] = (float(row.relative_tolerance), float(row.absolute_tolerance))
        extra = getattr(bio, "model_extra", None) or {}
        test_kwargs = (extra.get("test_kwargs") or {}).get(self.weight_format) or {}
        if not found and test_kwargs:
            rt = float(test_kwargs.get("relative_tolerance", DEFAULT_RTOL))
            at = float(test_kwargs.get("absolute_tolerance", DEFAULT_ATOL))
            found = {oid: (rt, at) for oid in self.output_axes}
        return {oid: found.get(oid, (DEFAULT_RTOL, DEFAULT_ATOL)) for oid in self.output_axes}


def _rule_text(rule: _SpaceSize) -> str:
    if rule.fixed is not None:
        return f"{rule.fixed} px"
    return f"{rule.min} + k * {rule.step} px"


def load_package(
    package: str | os.PathLike[str],
    *,
    device: Any = "auto",
    weight_format: str | None = None,
) -> BioimageioModel:
    """Read, validate and load a bioimage.io model package.

    Parameters
    ----------
    package : path-like
        A package ``.zip`` or folder holding ``rdf.yaml`` / ``bioimageio.yaml``.
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs (onnx: CPU, or CUDA when onnxruntime has it).
    weight_format : {"pytorch_state_dict", "torchscript", "onnx"}, optional
        The weights to use; default: the first of :data:`WEIGHT_FORMATS` the
        package has and that loads here (e.g. a state dict whose architecture
        library is not installed is skipped for its torchscript weights).

    Returns
    -------
    BioimageioModel

    Raises
    ------
    MissingFileError, FileFormatError
        No such package, not a zip or folder with a description file, or a
        file it names is missing.
    ModelError
        The package fails bioimage.io validation (the message names the
        field), has no weights cytolens runs (naming the formats it has),
        weights that fail their sha256 or do not fit, or ``onnx`` weights
        without onnxruntime installed.

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.models.bioimageio import export_bioimageio
    >>> folder = Path(tempfile.mkdtemp())
    >>> zip_path = export_bioimageio("focus-miq-v1", folder / "f.zip")  # doctest: +SKIP
    >>> model = load_package(zip_path, device="cpu")  # doctest: +SKIP
    >>> model.input_axes, model.weight_format  # doctest: +SKIP
    ('BCYX', 'pytorch_state_dict')
    """
    from cytolens.core.devices import resolve_device

    path = Path(package)
    descr, archive = _describe(path)
    dev = resolve_device(device)
    available = [f for f in WEIGHT_FORMATS if getattr(descr.weights, f, None) is not None]
    present = sorted(
        k for k, v in dict(descr.weights).items() if v is not None and not k.startswith("_")
    )
    if weight_format is not None:
        if weight_format not in WEIGHT_FORMATS:
            raise ModelError(
                f"weight format {weight_format!r} is not supported; cytolens runs "
                f"{', '.join(WEIGHT_FORMATS)}"
            )
        candidates = [weight_format]
    elif not available:
        raise ModelError(
            f"{path}: the package has only {', '.join(present) or 'no'} weights; cytolens runs "
            f"{', '.join(WEIGHT_FORMATS)}"
        )
    else:
        candidates = available
    reasons = []
    for fmt in candidates:
        try:
            runner = _load_weights(descr, archive, fmt, dev)
        except ModelError as exc:
            if weight_format is not None or (fmt == candidates[-1] and not reasons):
                raise
            reasons.append(str(exc))
            logger.info("%s: skipping %s weights: %s", path, fmt, exc)
            continue
        return BioimageioModel(path, descr, archive, runner, fmt)
    raise ModelError("; ".join(reasons))


def run_package(
    package: str | os.PathLike[str] | BioimageioModel,
    image: Any,
    *,
    axes: str | None = None,
    device: Any = "auto",
    weight_format: str | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int | None = None,
    blend: str = "crop",
    progress: Any = False,
) -> dict[str, np.ndarray]:
    """Run a bioimage.io model package on an image, tiled, with its pre/post-processing.

    Parameters
    ----------
    package : path-like or BioimageioModel
        A package ``.zip`` / folder, or one loaded by :func:`load_package`.
    image : array_like or dask.array.Array
        The image (raw intensities: the package normalizes them itself).
    axes : str, optional
        OME letters of ``image`` (e.g. ``"YX"``, ``"CYX"``, ``"YXC"``,
        ``"TYX"``); default: the input tensor's own axes without batch.
        ``T`` runs frame by frame through the batch axis.
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs.
    weight_format : str, optional
        See :func:`load_package`.
    tile : int
        Tile side (px, halo included) along each space axis; the largest
        size the package accepts that is at most ``tile`` is used.
    overlap : int, optional
        Overlap between tiles (px); default: the outputs' declared halo or
        :data:`DEFAULT_OVERLAP`, whichever is larger.
    blend : {"crop", "linear"}
        How tiles are stitched (see :func:`~cytolens.core.tiling.apply_tiled`):
        ``"crop"`` (default) keeps each pixel from the one tile that owns it,
        halo discarded, as bioimage.io's own tiling does: exact for networks
        whose receptive radius is at most ``overlap``; ``"linear"`` averages
        overlapping tiles to fade seams of networks with larger receptive fields.
    progress : bool or callable
        Progress of the tiles (see :func:`~cytolens.core.tiling.apply_tiled`).

    Returns
    -------
    dict of str to numpy.ndarray
        Per output id, the post-processed output with the tensor's axes
        (batch dropped; ``T`` first when ``image`` has frames), see
        :attr:`BioimageioModel.output_axes`.

    Raises
    ------
    AxesError
        Image axes that do not match the input tensor (the message names the
        axis and what the package expects).
    ModelError, InputError
        See :func:`load_package`; an unsupported processing step.

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.models.bioimageio import export_bioimageio
    >>> folder = Path(tempfile.mkdtemp())
    >>> zip_path = export_bioimageio("focus-miq-v1", folder / "f.zip")  # doctest: +SKIP
    >>> image = np.random.default_rng(0).random((84, 84), dtype=np.float32)
    >>> out = run_package(zip_path, image, axes="YX", device="cpu")  # doctest: +SKIP
    >>> {k: v.shape for k, v in out.items()}  # doctest: +SKIP
    {'output': (11,)}
    """
    model = (
        package
        if isinstance(package, BioimageioModel)
        else load_package(package, device=device, weight_format=weight_format)
    )
    return model.predict(
        image, axes=axes, tile=tile, overlap=overlap, blend=blend, progress=progress
    )


def check_package(
    package: str | os.PathLike[str] | BioimageioModel,
    *,
    device: Any = "auto",
    weight_format: str | None = None,
    tile: int = DEFAULT_TILE,
) -> PackageCheck:
    """Re-run a package's own test: its test input through :func:`run_package` vs its test outputs.

    Parameters
    ----------
    package : path-like or BioimageioModel
        The package.
    device, weight_format, tile
        See :func:`run_package`.

    Returns
    -------
    PackageCheck
        ``max_abs_diff`` over all outputs, per output, and whether every
        output is within the package's stated tolerance.

    Examples
    --------
    >>> import tempfile
    >>> from cytolens.models.bioimageio import export_bioimageio
    >>> folder = Path(tempfile.mkdtemp())
    >>> zip_path = export_bioimageio("focus-miq-v1", folder / "f.zip")  # doctest: +SKIP
    >>> result = check_package(zip_path, device="cpu")  # doctest: +SKIP
    >>> result.passed, result.max_abs_diff < 1e-4  # doctest: +SKIP
    (True, True)
    """
    model = (
        package
        if isinstance(package, BioimageioModel)
        else load_package(package, device=device, weight_format=weight_format)
    )
    x, expected = model.test_tensors()
    want = "".join(_letter(a) for a in model.input.axes if str(a.type) != "batch")
    got = model.predict(x, axes=want, tile=tile)
    tolerances = model.tolerances()
    per_output, passed = {}, True
    for oid, ref in expected.items():
        y = np.asarray(got[oid], dtype=np.float64)
        if y.shape != ref.shape:
            raise ModelError(
                f"{model.path}: output {oid!r} has shape {y.shape}; its test tensor {ref.shape}"
            )
        diff = float(np.abs(y - ref).max()) if ref.size else 0.0
        per_output[oid] = diff
        rtol, atol = tolerances[oid]
        passed = passed and bool(np.allclose(y, ref, rtol=rtol, atol=atol))
    return PackageCheck(
        max_abs_diff=max(per_output.values(), default=0.0),
        per_output=per_output,
        passed=passed,
        weight_format=model.weight_format,
        tolerances=tolerances,
    )
