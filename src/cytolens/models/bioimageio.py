"""Export a shipped model as a bioimage.io model package (format 0.5).

The package is one zip: ``rdf.yaml``, the weights as a ``pytorch_state_dict``
(with the network's source file) and as ``torchscript`` (traced), test input
and output tensors (``.npy``), a README generated from the model card and a
cover image. Everything is derived from the card (``network``,
``normalization``, ``parameters``), so a new model with a complete card is
exported without code changes here.

Before anything is written, the model's own test runs (as in CAREamics): the
traced torchscript network must reproduce the state-dict network on the test
input, and, for networks that take any multiple of a tile step, on a second,
larger input too. ``bioimageio.spec`` is *not* needed to export; the tests
validate the packages with it when it is installed.

What the package does not hold: cytolens's pre-processing beyond percentile
normalization (e.g. the channel mean, inversion and rescaling of ``nuclei-v1``)
and post-processing (watershed, peak finding); the README says so.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cytolens.core.errors import InputError, ModelError
from cytolens.core.files import atomic_path
from cytolens.models import (
    WEIGHTS_FILE,
    ModelCard,
    build_network,
    load_card,
    model_dir,
    network_class,
    sha256,
)

__all__ = ["ATOL", "FORMAT_VERSION", "RTOL", "export_bioimageio", "make_test_input"]

logger = logging.getLogger(__name__)

#: bioimage.io model format written (current in bioimageio.spec 0.5.12; read by later ones).
FORMAT_VERSION = "0.5.12"
#: Tolerance of the model's own test: torchscript vs state-dict output.
RTOL = 1e-4
ATOL = 1e-5
#: Test-input side (px) for networks that take any multiple of their step.
DEFAULT_TEST_SIDE = 128
#: Step assumed when the network has no ``divisor`` attribute.
DEFAULT_STEP = 16
#: ``eps`` of bioimage.io's ``scale_range`` (its default).
SCALE_RANGE_EPS = 1e-6

_AUTHORS = [{"name": "cytolens developers"}]

#: Method and data papers per network module (the card names the module).
_CITATIONS: dict[str, list[dict[str, str]]] = {
    "cytolens.focus.network": [
        {
            "text": "Yang et al. 2018, Assessing microscope image focus quality with deep "
            "learning, BMC Bioinformatics 19:77",
            "doi": "10.1186/s12859-018-2087-4",
        },
        {
            "text": "Ljosa et al. 2012, Annotated high-throughput microscopy image sets for "
            "validation (BBBC), Nature Methods 9:637",
            "doi": "10.1038/nmeth.2083",
        },
        {
            "text": "Caicedo et al. 2019, Nucleus segmentation across imaging experiments: the "
            "2018 Data Science Bowl, Nature Methods 16:1247",
            "doi": "10.1038/s41592-019-0612-7",
        },
    ],
    "cytolens.segment.network": [
        {
            "text": "Ronneberger et al. 2015, U-Net: Convolutional networks for biomedical "
            "image segmentation, MICCAI",
            "doi": "10.1007/978-3-319-24574-4_28",
        },
        {
            "text": "Caicedo et al. 2019, Nucleus segmentation across imaging experiments: the "
            "2018 Data Science Bowl, Nature Methods 16:1247",
            "doi": "10.1038/s41592-019-0612-7",
        },
    ],
    "cytolens.detect.network": [
        {
            "text": "Zhou et al. 2019, Objects as Points (CenterNet)",
            "url": "https://arxiv.org/abs/1904.07850",
        },
        {"text": "BCCD dataset", "url": "https://github.com/Shenggan/BCCD_Dataset"},
    ],
}
_FALLBACK_CITATION = {
    "text": "Paszke et al. 2019, PyTorch: an imperative style, high-performance deep "
    "learning library, NeurIPS",
    "doi": "10.48550/arXiv.1912.01703",
}


@dataclass
class _Layout:
    """How the network's input looks, derived from the card and the network."""

    n_channels: int
    fixed: bool  # fixed spatial size (e.g. a patch classifier)
    side: int  # test size (fixed size, or default test side)
    step: int  # spatial step for parameterized sizes


def _layout(card: ModelCard, net: Any) -> _Layout:
    axes = card.input_axes.upper()
    if axes not in ("YX", "YXC", "CYX"):
        raise ModelError(
            f"model {card.name!r}: input_axes {card.input_axes!r} cannot be exported; "
            "expected 'YX', 'YXC' or 'CYX'"
        )
    import torch

    first = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
    kwargs = card.network.get("kwargs") or {}
    # the card's input channels first: a network may rearrange its input before the
    # first convolution (isl-v1 2.0.0: space to depth, 13 planes -> 52 channels)
    default = first.in_channels if first is not None else (1 if axes == "YX" else 3)
    n_channels = int(kwargs.get("in_channels", default))
    patch = card.parameters.get("patch_size")
    if patch is not None:
        return _Layout(n_channels, True, int(patch), int(patch))
    step = int(getattr(net, "divisor", DEFAULT_STEP))
    side = -(-DEFAULT_TEST_SIDE // step) * step
    return _Layout(n_channels, False, side, step)


def _busiest_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The ``side`` x ``side`` window (on a half-window grid) with the most contrast.

    Deterministic; images smaller than ``side`` are tiled (repeated) first.
    """
    h, w = image.shape[:2]
    if h < side or w < side:
        reps = (-(-side // h), -(-side // w)) + (1,) * (image.ndim - 2)
        image = np.tile(image, reps)
        h, w = image.shape[:2]
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    stride = max(side // 2, 1)
    starts = [
        (y, x) for y in range(0, h - side + 1, stride) for x in range(0, w - side + 1, stride)
    ]
    y0, x0 = max(
        starts, key=lambda yx: float(gray[yx[0] : yx[0] + side, yx[1] : yx[1] + side].std())
    )
    return image[y0 : y0 + side, x0 : x0 + side]


def make_test_input(card: ModelCard, *, side: int, n_channels: int) -> np.ndarray:
    """A deterministic raw test input ``(1, C, side, side)`` float32 from a bundled sample.

    One channel: :func:`cytolens.data.nuclei`; three channels:
    :func:`cytolens.data.blood_smear` (RGB); four channels:
    :func:`cytolens.data.hpa_cells` (HPA); other channel counts repeat the
    nuclei image in every channel. The sample is first zoomed by the card's
    ``parameters.scale`` when it has one (the scale the network works at);
    the window with the most contrast is taken.

    Examples
    --------
    >>> card = load_card("nuclei-v1")
    >>> make_test_input(card, side=64, n_channels=1).shape
    (1, 1, 64, 64)
    """
    from cytolens import data

    if n_channels == 3:
        image = np.asarray(data.blood_smear().data, dtype=np.float32)[..., :3]
    elif n_channels == 4:
        image = np.moveaxis(np.asarray(data.hpa_cells().data, dtype=np.float32), 0, -1)
    else:
        image = np.asarray(data.nuclei().data, dtype=np.float32)
    scale = card.parameters.get("scale")
    if isinstance(scale, (int, float)) and scale > 0 and scale != 1:
        from scipy.ndimage import zoom

        image = zoom(image, (scale, scale) + (1,) * (image.ndim - 2), order=1)
    crop = _busiest_crop(image, side)
    chw = np.moveaxis(crop, -1, 0) if crop.ndim == 3 else np.repeat(crop[None], n_channels, 0)
    return np.ascontiguousarray(chw[None], dtype=np.float32)


def _check_test_input(test_input: Any, card: ModelCard, layout: _Layout) -> np.ndarray:
    x = np.asarray(test_input, dtype=np.float32)
    axes = card.input_axes.upper()
    if x.ndim != len(axes):
        raise InputError(
            f"test_input has shape {x.shape}; model {card.name!r} expects axes {axes!r}"
        )
    if axes == "YX":
        x = x[None]
    elif axes == "YXC":
        x = np.moveaxis(x, -1, 0)
    if x.shape[0] != layout.n_channels:
        raise InputError(
            f"test_input has {x.shape[0]} channels; model {card.name!r} expects {layout.n_channels}"
        )
    h, w = x.shape[1:]
    if layout.fixed and (h, w) != (layout.side, layout.side):
        raise InputError(
            f"test_input is {h}x{w} px; model {card.name!r} takes {layout.side}x{layout.side} px"
        )
    if not layout.fixed and (h % layout.step or w % layout.step or min(h, w) < layout.step):
        raise InputError(
            f"test_input is {h}x{w} px; model {card.name!r} needs sides that are "
            f"multiples of {layout.step}"
        )
    if not np.isfinite(x).all():
        raise InputError("test_input holds NaN or infinite values")
    return np.ascontiguousarray(x[None])


def _percentile_axes(card: ModelCard, n_channels: int) -> list[str]:
    per_channel = bool(card.normalization.get("per_channel", False))
    return ["y", "x"] if per_channel or n_channels == 1 else ["channel", "y", "x"]


#: Raw value range of ``normalization.kind: dtype_range`` models in the package (8-bit input).
DTYPE_RANGE_MAX = 255.0


def _normalize(x: np.ndarray, card: ModelCard, n_channels: int) -> np.ndarray:
    """What the package's pre-processing computes (``scale_range`` or ``scale_linear``)."""
    kind = card.normalization.get("kind", "percentile")
    if kind == "dtype_range":
        return (x / DTYPE_RANGE_MAX).astype(np.float32)
    if kind != "percentile":
        raise ModelError(
            f"model {card.name!r}: normalization kind {kind!r} cannot be "
            "exported; expected 'percentile' or 'dtype_range'"
        )
    from cytolens.core.normalize import normalize_percentile

    norm = card.normalization
    reduce = (2, 3) if _percentile_axes(card, n_channels) == ["y", "x"] else (1, 2, 3)
    pmin, pmax = float(norm.get("pmin", 1.0)), float(norm.get("pmax", 99.8))
    return normalize_percentile(x, pmin, pmax, axis=reduce, eps=SCALE_RANGE_EPS)


def _preprocessing(card: ModelCard, n_channels: int) -> list[dict[str, Any]]:
    """bioimage.io pre-processing equal to :func:`_normalize`."""
    if card.normalization.get("kind", "percentile") == "dtype_range":
        return [{"id": "scale_linear", "kwargs": {"gain": 1 / DTYPE_RANGE_MAX, "offset": 0.0}}]
    return [
        {
            "id": "scale_range",
            "kwargs": {
                "axes": _percentile_axes(card, n_channels),
                "min_percentile": float(card.normalization.get("pmin", 1.0)),
                "max_percentile": float(card.normalization.get("pmax", 99.8)),
                "eps": SCALE_RANGE_EPS,
            },
        }
    ]


def _as_tuple(y: Any) -> tuple[Any, ...]:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _run(net: Any, x: np.ndarray) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        return [t.detach().cpu().numpy() for t in _as_tuple(net(torch.from_numpy(x)))]


def _model_test(net: Any, traced: Any, x: np.ndarray, name: str) -> float:
    """The model's own test: torchscript == state dict within RTOL/ATOL; worst abs diff."""
    worst = 0.0
    for ref, got in zip(_run(net, x), _run(traced, x), strict=True):
        if ref.shape != got.shape or not np.allclose(got, ref, rtol=RTOL, atol=ATOL):
            diff = np.abs(got - ref).max() if ref.shape == got.shape else float("nan")
            raise ModelError(
                f"model {name!r}: torchscript output differs from the state-dict output on a "
                f"{x.shape} input (max abs diff {diff:.3g}, rtol {RTOL}, atol {ATOL}); "
                "package not written"
            )
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def _tolerances(name: str, out_ids: list[str], outputs: list[np.ndarray]) -> list[dict[str, Any]]:
    """Reproducibility tolerances per output for bioimage.io test runners.

    bioimage.io requires ``absolute_tolerance <= 0.01 * max(test output)``
    (bioimageio.spec 0.5.14 checks the signed maximum); outputs whose maximum
    is not positive (e.g. all-negative logits) cannot state one and fall back
    to the test runner's default.
    """
    rows = []
    for oid, y in zip(out_ids, outputs, strict=True):
        top = float(y.max())
        if top > 0:
            atol = float(f"{min(1e-3, 0.01 * top):.2e}")
            rows.append(
                {"output_ids": [oid], "relative_tolerance": 1e-3, "absolute_tolerance": atol}
            )
        else:
            logger.warning(
                "%s: %s test output max %.3g <= 0; no reproducibility tolerance", name, oid, top
            )
    return rows


def _licence(card: ModelCard) -> str:
    match = re.match(r"[A-Za-z0-9.+-]+", card.licence.strip())
    return match.group(0) if match else "BSD-3-Clause"


def _citations(card: ModelCard) -> list[dict[str, str]]:
    module = str(card.network.get("entry_point", "")).partition(":")[0]
    cites = list(_CITATIONS.get(module, []))
    for line in card.training_data:
        url = re.search(r"https?://[^\s,;)]+", line)
        if url:
            cites.append({"text": line[:200], "url": url.group(0)})
    return cites or [_FALLBACK_CITATION]


def _input_axes(layout: _Layout) -> list[dict[str, Any]]:
    def size() -> Any:  # a new dict per axis, so the YAML holds no anchors
        return layout.side if layout.fixed else {"min": layout.step, "step": layout.step}

    return [
        {"type": "batch"},
        {"type": "channel", "channel_names": [f"c{i}" for i in range(layout.n_channels)]},
        {"type": "space", "id": "y", "size": size()},
        {"type": "space", "id": "x", "size": size()},
    ]


def _output_axes(y: np.ndarray, x: np.ndarray, layout: _Layout, name: str) -> list[dict[str, Any]]:
    axes: list[dict[str, Any]] = [
        {"type": "batch"},
        {"type": "channel", "channel_names": [f"c{i}" for i in range(y.shape[1])]},
    ]
    if y.ndim == 2:
        return axes
    if y.ndim != 4:
        raise ModelError(
            f"model {name!r}: output of shape {y.shape} cannot be described; expected "
            "(batch, channel) or (batch, channel, y, x)"
        )
    for axis, n_in, n_out in zip("yx", x.shape[2:], y.shape[2:], strict=True):
        entry: dict[str, Any] = {"type": "space", "id": axis}
        if layout.fixed:
            entry["size"] = int(n_out)
        else:
            entry["size"] = {"tensor_id": "input", "axis_id": axis}
            if n_out != n_in:
                entry["scale"] = float(n_in / n_out)
        axes.append(entry)
    return axes


def _cover_png(x: np.ndarray, y: np.ndarray, title: str) -> bytes:
    """A 2:1 PNG: the normalized test input | the first output (map or bar chart)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), dpi=80)
    left, right = fig.subplots(1, 2)
    img = x[0]
    shown = np.moveaxis(img[:3], 0, -1) if img.shape[0] == 3 else img[0]
    lo, hi = np.percentile(shown, (1, 99.8))
    left.imshow(np.clip((shown - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray")
    left.set_title("test input")
    if y.ndim == 4:
        right.imshow(y[0, 0], cmap="magma")
        right.set_title(f"output channel 0 of {y.shape[1]}")
    else:
        p = np.exp(y[0] - y[0].max())
        right.bar(np.arange(y.shape[1]), p / p.sum(), color="tab:blue")
        right.set_title("softmax of the output")
        right.set_box_aspect(1)
    for ax in (left, right) if y.ndim == 4 else (left,):
        ax.set_axis_off()
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _readme(card: ModelCard, weights_sha: str, worst: float, n_outputs: int) -> str:
    def block(value: Any) -> str:
        return "```yaml\n" + yaml.safe_dump(value, sort_keys=False).rstrip() + "\n```"

    lines = [
        f"# {card.name} (version {card.version})",
        "",
        card.description or card.task,
        "",
        f"- **Task:** {card.task}",
        f"- **Architecture:** {card.architecture}",
        f"- **Network:** `{card.network.get('entry_point')}` with {card.network.get('kwargs')}",
        f"- **Input axes in cytolens:** {card.input_axes} (the package uses batch, channel, y, x)",
        f"- **Licence:** {card.licence}",
        f"- **Weights sha256:** `{weights_sha}` (torch {card.torch_version or 'unknown'})",
        f"- **Outputs:** {n_outputs} tensor(s) of raw network outputs (logits), no post-processing",
        "",
        "## Training data",
        "",
        *[f"- {line}" for line in card.training_data],
        "",
        f"Training command: `{card.training_command}`",
        "",
        "## Normalization",
        "",
        (
            "The package's pre-processing is bioimage.io `scale_linear` by 1/255 (8-bit "
            "channels to [0, 1]). "
            if card.normalization.get("kind") == "dtype_range"
            else "The package's pre-processing is bioimage.io `scale_range` with the card's "
            "percentiles (per sample). "
        )
        + "Any other step listed here is applied by cytolens "
        "before the network and is *not* part of this package"
        + (
            f"; inputs are expected zoomed by {card.parameters['scale']} (cytolens does this)"
            if "scale" in card.parameters
            else ""
        )
        + ":",
        "",
        block(card.normalization),
        "",
        "## Metrics (held-out data)",
        "",
        block(card.metrics),
        "",
        "## Validation",
        "",
        f"Before writing, the exporter checked that the traced torchscript network reproduces "
        f"the state-dict network (rtol {RTOL}, atol {ATOL}; max abs diff {worst:.2g}).",
        "",
        f"Exported by cytolens (`cytolens models export {card.name}`).",
        "",
    ]
    return "\n".join(lines)


#: ``from cytolens.x.y import a, b`` lines of a network module (inlined on export).
_CYTOLENS_IMPORT = re.compile(r"^from (cytolens(?:\.\w+)+) import ([\w, ]+)$", re.MULTILINE)


def network_source(cls: type) -> str:
    """The source of a network's module, standalone: what it imports from cytolens is inlined.

    A bioimage.io package carries this file as the architecture of its
    state-dict weights, so it must run where cytolens is not installed.

    Raises
    ------
    ModelError
        If an import of cytolens remains (one this function cannot inline).

    Examples
    --------
    >>> from cytolens.detect.network import CenterNet
    >>> src = network_source(CenterNet)
    >>> "import conv_bn_relu" in src, "def conv_bn_relu(" in src
    (False, True)
    """
    import importlib

    def inline(match: re.Match[str]) -> str:
        module = importlib.import_module(match.group(1))
        names = [n.strip() for n in match.group(2).split(",") if n.strip()]
        parts = [inspect.getsource(getattr(module, n)).rstrip() for n in names]
        return f"# from {match.group(1)} (inlined: the package needs no cytolens)\n" + (
            "\n\n\n".join(parts)
        )

    source = _CYTOLENS_IMPORT.sub(inline, inspect.getsource(inspect.getmodule(cls)))
    left = re.search(r"^\s*(from|import) cytolens\b.*$", source, re.MULTILINE)
    if left:
        raise ModelError(
            f"the source of {cls.__name__} still imports cytolens ({left.group(0).strip()!r}); "
            "a bioimage.io package must run without it"
        )
    return source


def _refuse_outside_inputs(card: ModelCard) -> None:
    """Refuse a model whose network reads inputs computed outside it (a hybrid head).

    A bioimage.io package holds the network only; e.g. ``mitocheck-v1``'s head
    also reads classical per-cell features (Otsu object mask, regionprops,
    Haralick, LBP: ``parameters.features``) that only cytolens computes, so a
    package consumer could not reproduce its predictions.
    """
    features = list(card.parameters.get("features") or [])
    n = len(features) or int((card.network.get("kwargs") or {}).get("n_features") or 0)
    if n:
        named = f" ({', '.join(features[:3])}, ...)" if features else ""
        raise ModelError(
            f"model {card.name!r} cannot be exported to bioimage.io: its head reads {n} "
            f"classical features per crop{named} computed by cytolens outside the network, "
            "and a bioimage.io package holds the network only; use it through cytolens"
        )


def export_bioimageio(
    name: str,
    path: str | os.PathLike[str],
    *,
    test_input: Any = None,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a shipped model as a bioimage.io 0.5 model package (zip), atomically.

    Parameters
    ----------
    name : str
        A shipped model (:func:`cytolens.models.list_models`) whose card has a
        ``network`` entry.
    path : path-like
        The ``.zip`` file to write (replaced if it exists; never a folder).
    test_input : array_like, optional
        Raw test image with the card's ``input_axes`` (e.g. ``YX``); default:
        a centre crop of a bundled sample (see :func:`make_test_input`) of the
        card's ``patch_size`` or 128 px.
    root : path-like, optional
        Folder of model folders (default: the weights shipped in the package).

    Returns
    -------
    pathlib.Path
        The written zip.

    Raises
    ------
    ModelError
        Unknown model, card without ``network``, a network that reads inputs
        computed outside it (a hybrid head's classical features), or a failed
        model test (torchscript differs from the state dict); nothing is
        written then.
    InputError
        ``path`` is a folder or not a ``.zip``; ``test_input`` of the wrong shape.

    Examples
    --------
    >>> import tempfile, zipfile
    >>> out = export_bioimageio("focus-miq-v1", Path(tempfile.mkdtemp()) / "focus.zip")
    >>> "rdf.yaml" in zipfile.ZipFile(out).namelist()
    True
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a .zip file path to write")
    if path.suffix.lower() != ".zip":
        raise InputError(f"{path}: expected a file name ending in .zip")
    card = load_card(name, root=root)
    _refuse_outside_inputs(card)
    net = build_network(name, root=root)
    layout = _layout(card, net)
    raw = (
        make_test_input(card, side=layout.side, n_channels=layout.n_channels)
        if test_input is None
        else _check_test_input(test_input, card, layout)
    )
    x = _normalize(raw, card, layout.n_channels)
    logger.info("%s: tracing the network on a %s input", name, x.shape)
    with torch.inference_mode(), warnings.catch_warnings():
        # torchscript is deprecated in recent torch, but it is bioimage.io's torch format
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(net, torch.from_numpy(x), check_trace=False, strict=False)
    worst = _model_test(net, traced, x, name)
    if not layout.fixed:  # the traced graph must not have baked in the test size
        bigger = np.pad(x, ((0, 0), (0, 0), (0, 2 * layout.step), (0, layout.step)), "reflect")
        worst = max(worst, _model_test(net, traced, bigger, name))
    logger.info("%s: model test passed (max abs diff %.2g)", name, worst)
    outputs = _run(net, x)

    weights = model_dir(name, root=root) / WEIGHTS_FILE
    weights_sha = sha256(weights)
    cls = network_class(card)
    source_name = cls.__module__.replace(".", "_") + ".py"
    out_ids = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    torch_version = str(torch.__version__).split("+")[0]
    rdf: dict[str, Any] = {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": card.name,
        "version": card.version,
        "description": (card.description or card.task)[:1000],
        "authors": _AUTHORS,
        "cite": _citations(card),
        "license": _licence(card),
        "tags": ["cytolens", "pytorch", "2d", card.task.split(":")[0].strip()],
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "inputs": [
            {
                "id": "input",
                "description": f"raw image, normalized inside the package ({card.input_axes})",
                "axes": _input_axes(layout),
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "float32"},
                "preprocessing": _preprocessing(card, layout.n_channels),
            }
        ],
        "outputs": [
            {
                "id": oid,
                "description": "raw network output (logits)",
                "axes": _output_axes(y, x, layout, name),
                "test_tensor": {"source": f"test_{oid}.npy"},
                "data": {"type": "float32"},
            }
            for oid, y in zip(out_ids, outputs, strict=True)
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": WEIGHTS_FILE,
                "sha256": weights_sha,
                "architecture": {
                    "source": source_name,
                    "callable": cls.__name__,
                    "kwargs": dict(card.network.get("kwargs") or {}),
                },
                "pytorch_version": torch_version,
            },
            "torchscript": {
                "source": "weights_torchscript.pt",
                "parent": "pytorch_state_dict",
                "pytorch_version": torch_version,
            },
        },
        "config": {
            "bioimageio": {"reproducibility_tolerance": _tolerances(name, out_ids, outputs)},
            "cytolens": {"card": card.model_dump(mode="json")},
        },
    }

    def npy(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    script = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, script)
    files = {
        "rdf.yaml": yaml.safe_dump(rdf, sort_keys=False).encode(),
        "README.md": _readme(card, weights_sha, worst, len(outputs)).encode(),
        "cover.png": _cover_png(x, outputs[0], f"{card.name} {card.version}"),
        source_name: network_source(cls).encode(),
        "weights_torchscript.pt": script.getvalue(),
        "test_input.npy": npy(raw),
        **{f"test_{oid}.npy": npy(y) for oid, y in zip(out_ids, outputs, strict=True)},
    }
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, payload in files.items():
            zf.writestr(arcname, payload)
        zf.write(weights, WEIGHTS_FILE)
    logger.info("%s: wrote %s (%d bytes)", name, path, path.stat().st_size)
    return path
