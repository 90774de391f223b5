"""Shipped models: weights inside the package, each with a model card.

Layout: ``models/weights/<name>/card.yaml`` and ``weights.pt`` (a torch state
dict). The card records the task, architecture, training data and licence,
normalization, input axes, held-out metrics and the sha256 of the weights,
which is checked on every load. Nothing is ever downloaded.

One model contract: the card is the single source of truth. Its
``parameters`` hold exactly what the capability's predictor reads (a
pydantic schema per capability, :mod:`cytolens.models.schema`, with a
``schema_version``, no unknown keys) and ``normalization`` is a typed union
(percentile or dtype range); documentation-only metadata goes to
``training``. :func:`load` is the one loader (one cache) and returns the
capability's :class:`~cytolens.models.predictor.Predictor`; :func:`make_card`
is the one card factory.

Examples
--------
>>> import tempfile, torch
>>> root = Path(tempfile.mkdtemp())
>>> card = ModelCard(name="toy-v1", version="1.0.0", task="demo", architecture="Linear(2, 1)",
...                  input_axes="YX", training_data=["none"], training_command="-")
>>> _ = save_model(torch.nn.Linear(2, 1).state_dict(), card, root=root)
>>> sorted(load_state_dict("toy-v1", root=root))
['bias', 'weight']
"""

from __future__ import annotations

import os
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from cytolens.core.errors import ModelError
from cytolens.core.files import atomic_path, sha256

__all__ = [
    "PREDICTORS",
    "ModelCard",
    "build_network",
    "card_capability",
    "card_name_for",
    "check_card",
    "check_package",
    "clear_cache",
    "list_models",
    "load",
    "load_card",
    "load_model",
    "load_package",
    "load_state_dict",
    "make_card",
    "model_dir",
    "predictor_class",
    "run_package",
    "save_model",
    "sha256",
]

WEIGHTS_FILE = "weights.pt"
CARD_FILE = "card.yaml"


class ModelCard(BaseModel):
    """What a shipped model is, what it was trained on, and how well it does."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str
    task: str
    architecture: str
    input_axes: str
    #: How to rebuild the torch module: ``{"entry_point": "package.module:Class", "kwargs": {...}}``
    #: (used by bioimage.io export and generic loading); empty for older cards.
    network: dict[str, Any] = Field(default_factory=dict)
    training_data: list[str]
    training_command: str
    licence: str = "BSD-3-Clause (weights); see training_data for the data terms"
    #: How inputs are scaled: a :data:`~cytolens.models.schema.Normalization`
    #: (``kind`` percentile or dtype_range), checked by :func:`load_card`.
    normalization: dict[str, Any] = Field(default_factory=dict)
    #: What the predictor reads at inference, exactly: the capability's schema
    #: (:data:`~cytolens.models.schema.PARAMETER_SCHEMAS`), checked by :func:`load_card`.
    parameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    #: Documentation only, never read by the code: training configuration,
    #: split, seed, steps, timing, held-out lists, supports, threshold rules.
    training: dict[str, Any] = Field(default_factory=dict)
    #: The training-domain reference for out-of-domain scores
    #: (:mod:`cytolens.models.applicability`): ``file``, ``sha256``, ``features``,
    #: ``quantile``, ``n_calibration``, ``limit`` and measured separation; empty
    #: for a model without one.
    applicability: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    torch_version: str = ""
    description: str = ""


def _root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root) if root is not None else Path(str(files("cytolens.models") / "weights"))


def list_models(*, root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the models shipped in the package (or in ``root``)."""
    base = _root(root)
    return (
        sorted(p.name for p in base.iterdir() if (p / CARD_FILE).is_file()) if base.is_dir() else []
    )


def model_dir(name: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Folder of a shipped model; :class:`ModelError` naming the known ones if absent."""
    folder = _root(root) / name
    if not (folder / CARD_FILE).is_file():
        known = ", ".join(list_models(root=root)) or "none"
        raise ModelError(f"unknown model {name!r}; shipped models: {known}")
    return folder


def card_capability(card: ModelCard) -> str | None:
    """The cytolens capability a model serves (``"focus"``, ``"segment"``...), from its network.

    Examples
    --------
    >>> card_capability(load_card("nuclei-v1"))
    'segment'
    """
    entry = str((card.network or {}).get("entry_point", ""))
    parts = entry.split(":")[0].split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "cytolens" else None


def load_card(
    name: str, *, root: str | os.PathLike[str] | None = None, capability: str | None = None
) -> ModelCard:
    """Read a model's card; with ``capability``, refuse a model made for another one.

    The card's ``parameters`` and ``normalization`` are checked against the
    contract of its capability (:func:`check_card`).

    Raises
    ------
    ModelError
        For an unknown model, a card that is not valid YAML or misses fields,
        parameters or normalization breaking the contract (naming the file
        and the field, e.g. ``.../card.yaml: parameters.n_levels: Field
        required``), or a model of another capability (e.g. a segmentation
        model given to focus rating).

    Examples
    --------
    >>> load_card("nuclei-v1", capability="focus")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.ModelError: model 'nuclei-v1' is a segment model (nucleus instance ...
    """
    from pydantic import ValidationError

    path = model_dir(name, root=root) / CARD_FILE
    try:
        card = ModelCard.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise ModelError(f"{path}: {_first_error(exc)}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a valid model card ({first})") from None
    found = card_capability(card)
    check_card(card, source=path)
    if capability is not None and found != capability:
        mine = [m for m in list_models() if card_capability(load_card(m)) == capability]
        raise ModelError(
            f"model {name!r} is a {found or 'non-cytolens'} model ({card.task.split(':')[0]}), "
            f"not a {capability} model; {capability} models: {', '.join(mine) or 'none'}"
        )
    return card


def _first_error(exc: Any, prefix: str = "") -> str:
    """``field.path: message`` of a pydantic error (the first one, and how many more)."""
    from cytolens.models.schema import DtypeRangeNormalization, PercentileNormalization

    tags = {
        PercentileNormalization.model_fields["kind"].default,
        DtypeRangeNormalization.model_fields["kind"].default,
    }
    errors = exc.errors()
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    if prefix == "normalization" and loc and loc[0] in tags:
        loc = loc[1:]  # the union's tag, not a field
    field = ".".join([p for p in (prefix, *loc) if p]) or prefix or "card"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{field}: {err['msg']}{more}"


def check_card(card: ModelCard, *, source: Any = None) -> tuple[Any, Any]:
    """Validate a card's ``parameters`` and ``normalization`` against the contract.

    The capability comes from the card's network entry point; a card of no
    cytolens capability (no ``network``) is not checked.

    Parameters
    ----------
    card : ModelCard
        The card.
    source : path-like, optional
        Where the card comes from, named in messages (default: its name).

    Returns
    -------
    params, normalization
        The typed :mod:`cytolens.models.schema` instances (``None, None`` for
        a card without a capability).

    Raises
    ------
    ModelError
        Naming the card and the field, e.g.
        ``card.yaml: parameters.n_levels: Field required``.

    Examples
    --------
    >>> params, norm = check_card(load_card("focus-miq-v1"))
    >>> params.n_levels, norm.kind
    (11, 'percentile')
    """
    from pydantic import ValidationError

    from cytolens.models.schema import (
        PARAMETER_SCHEMAS,
        parse_normalization,
        parse_parameters,
    )

    capability = card_capability(card)
    if capability not in PARAMETER_SCHEMAS:
        return None, None
    where = source if source is not None else f"model card of {card.name!r}"
    try:
        params = parse_parameters(card.parameters, capability)
    except ValidationError as exc:
        raise ModelError(f"{where}: {_first_error(exc, 'parameters')}") from None
    try:
        norm = parse_normalization(card.normalization)
    except ValidationError as exc:
        raise ModelError(f"{where}: {_first_error(exc, 'normalization')}") from None
    return params, norm


def load_state_dict(name: str, *, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Load a model's weights on the CPU after checking their sha256 against the card."""
    import torch

    folder = model_dir(name, root=root)
    card = load_card(name, root=root)
    weights = folder / WEIGHTS_FILE
    actual = sha256(weights)
    if actual != card.sha256:
        raise ModelError(
            f"{weights}: sha256 {actual[:12]}... does not match the model card "
            f"({card.sha256[:12]}...); the file is damaged or was replaced"
        )
    return torch.load(weights, map_location="cpu", weights_only=True)


def _locate(
    name_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None
) -> tuple[str, str | os.PathLike[str] | None]:
    """``(name, root)`` of a model given by name or by its folder (holding ``card.yaml``)."""
    folder = Path(name_or_path)
    if root is None and (folder / CARD_FILE).is_file():
        return folder.resolve().name, folder.resolve().parent
    return str(name_or_path), root


def network_class(card: ModelCard) -> Any:
    """The torch module class named by ``card.network["entry_point"]`` (``"pkg.mod:Class"``)."""
    import importlib

    entry = card.network.get("entry_point") if card.network else None
    if not entry:
        raise ModelError(
            f"model card of {card.name!r} has no 'network' entry "
            '(expected {"entry_point": "package.module:Class", "kwargs": {...}})'
        )
    module_name, _, attr = str(entry).partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(
            f"model card of {card.name!r}: network entry point {entry!r} cannot be imported "
            f"({exc}); expected 'package.module:Class'"
        ) from None
    return cls


def build_network(
    name_or_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    capability: str | None = None,
) -> Any:
    """Rebuild a model's torch module from its card and load its checked weights.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model's name (``"nuclei-v1"``) or a model folder holding
        ``card.yaml`` and ``weights.pt``.
    root : path-like, optional
        Folder of model folders (default: the weights shipped in the package).

    Returns
    -------
    torch.nn.Module
        The network in eval mode on the CPU.

    Raises
    ------
    ModelError
        If the model is unknown, its card has no ``network`` entry, the
        weights fail the sha256 check or do not fit the network.

    Examples
    --------
    >>> net = build_network("focus-miq-v1")
    >>> type(net).__name__, net.training
    ('FocusNet', False)
    """
    name, root = _locate(name_or_path, root)
    card = load_card(name, root=root, capability=capability)
    cls = network_class(card)
    try:
        net = cls(**dict(card.network.get("kwargs") or {}))
    except TypeError as exc:
        raise ModelError(f"model card of {card.name!r}: bad network kwargs ({exc})") from None
    try:
        net.load_state_dict(load_state_dict(name, root=root))
    except RuntimeError as exc:
        raise ModelError(f"weights of {name!r} do not fit its network: {exc}") from None
    return net.eval()


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    capability: str | None = None,
) -> tuple[Any, ModelCard]:
    """The network (see :func:`build_network`) and the card of a shipped model or model folder.

    Examples
    --------
    >>> net, card = load_model("focus-miq-v1")
    >>> card.name, type(net).__name__
    ('focus-miq-v1', 'FocusNet')
    """
    name, root = _locate(name_or_path, root)
    net = build_network(name, root=root, capability=capability)
    return net, load_card(name, root=root)


#: Capability -> its predictor class (``"module:Class"``, imported when first needed).
PREDICTORS: dict[str, str] = {
    "focus": "cytolens.focus.model:FocusModel",
    "segment": "cytolens.segment.model:NucleusSegmenter",
    "detect": "cytolens.detect.model:Detector",
    "classify": "cytolens.classify.model:LocalizationModel",
    "restore": "cytolens.restore.denoise:Restorer",
    "phenotype": "cytolens.phenotype.model:PhenotypeClassifier",
    "label_free": "cytolens.label_free.model:LabelFreeModel",
}


def predictor_class(capability: str | None) -> Any:
    """The predictor class of a capability (see :data:`PREDICTORS`).

    Examples
    --------
    >>> predictor_class("segment").__name__
    'NucleusSegmenter'
    """
    import importlib

    if capability not in PREDICTORS:
        raise ModelError(
            f"no predictor for capability {capability!r}; known: {', '.join(PREDICTORS)}"
        )
    module, _, attr = PREDICTORS[capability].partition(":")
    return getattr(importlib.import_module(module), attr)


def _folder(name_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> Path:
    name, base = _locate(name_or_path, root)
    return model_dir(name, root=base).resolve()


def _stamp(folder: Path) -> tuple[int, int]:
    """Modification times (ns) of a model folder's weights and card."""
    weights = folder / WEIGHTS_FILE
    return (weights.stat().st_mtime_ns if weights.is_file() else 0), (
        (folder / CARD_FILE).stat().st_mtime_ns
    )


_CACHE: dict[tuple[str, tuple[int, int], str], Any] = {}
_CACHE_LOCK = threading.RLock()
#: Most predictors kept in the cache (the oldest is dropped first).
CACHE_SIZE = 8


def clear_cache() -> None:
    """Forget every predictor loaded by :func:`load`.

    Examples
    --------
    >>> clear_cache()
    """
    with _CACHE_LOCK:
        _CACHE.clear()


def load(
    name_or_path: str | os.PathLike[str],
    *,
    device: Any = "auto",
    root: str | os.PathLike[str] | None = None,
    capability: str | None = None,
) -> Any:
    """Load a model's predictor: the one entry point, with one cache.

    The card is read and checked against the contract
    (:mod:`cytolens.models.schema`), the network rebuilt from it
    (:func:`build_network`, weights checked against the sha256), and wrapped
    in its capability's predictor (:data:`PREDICTORS`). Predictors are cached
    by model folder, the modification times of its weights and card, and the
    device: a model retrained in place is loaded afresh.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model's name, or a model folder (``card.yaml`` + ``weights.pt``).
    device : {"auto", "cpu", "cuda", "mps"} or torch.device
        Where the network runs.
    root : path-like, optional
        Folder of model folders (default: the package's weights).
    capability : str, optional
        Refuse a model of another capability (``"focus"``, ``"segment"``...).

    Returns
    -------
    Predictor
        ``FocusModel``, ``NucleusSegmenter``, ``Detector`` or ``LocalizationModel``.

    Raises
    ------
    ModelError
        Unknown model, a card that breaks the contract (naming the file and
        the field), weights that fail their checksum, a model of another
        capability.

    Examples
    --------
    >>> seg = load("nuclei-v1", device="cpu")
    >>> type(seg).__name__, seg.params.diameter_px
    ('NucleusSegmenter', 16.0)
    >>> load("nuclei-v1", device="cpu") is seg
    True
    """
    from cytolens.core.devices import resolve_device

    folder = _folder(name_or_path, root)
    dev = str(resolve_device(device))
    key = (str(folder), _stamp(folder), dev)
    with _CACHE_LOCK:
        if key in _CACHE:
            cached = _CACHE[key]
            if capability is not None and card_capability(cached.card) != capability:
                load_card(folder.name, root=folder.parent, capability=capability)  # raises
            return cached
        card = load_card(folder.name, root=folder.parent, capability=capability)
        cls = predictor_class(card_capability(card))
        net = build_network(folder.name, root=folder.parent)
        predictor = cls.from_card(net, card, device=dev)
        predictor.folder = folder
        for old in [k for k in _CACHE if k[0] == key[0] and k[2] == dev]:
            del _CACHE[old]  # an older version of the same folder
        while len(_CACHE) >= CACHE_SIZE:
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = predictor
        return predictor


def make_card(
    *,
    name: str,
    task: str,
    architecture: str,
    input_axes: str,
    network: dict[str, Any],
    parameters: Any,
    normalization: Any,
    training_data: list[str],
    training_command: str,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    version: str = "1.0.0",
    **fields: Any,
) -> ModelCard:
    """Make a model card: the one factory, checking it against the contract.

    ``parameters`` (what the predictor reads) are validated against the
    capability's schema (the capability comes from ``network``'s entry
    point) and written with their ``schema_version``; ``training`` holds
    documentation only (configuration, split, seed, timing...).

    Parameters
    ----------
    name, task, architecture, input_axes : str
        As in :class:`ModelCard`.
    network : dict
        ``{"entry_point": "cytolens.<capability>.network:Class", "kwargs": {...}}``.
    parameters : dict or cytolens.models.schema.Parameters
        Inference parameters.
    normalization : dict or PercentileNormalization or DtypeRangeNormalization
        Input normalization.
    training_data : list of str
        Data and their licences.
    training_command : str
        How the model was made.
    training : dict, optional
        Documentation-only training metadata.
    metrics : dict, optional
        Held-out metrics.
    version : str
        Model version.
    **fields
        Other :class:`ModelCard` fields (``licence``, ``description``...).

    Returns
    -------
    ModelCard

    Raises
    ------
    ModelError
        Parameters or normalization breaking the contract.

    Examples
    --------
    >>> card = make_card(
    ...     name="my-focus", task="focus", architecture="FocusNet", input_axes="YX",
    ...     network={"entry_point": "cytolens.focus.network:FocusNet",
    ...              "kwargs": {"n_levels": 11, "width": 12}},
    ...     parameters={"n_levels": 11, "patch_size": 84, "in_focus_levels": 3,
    ...                 "blank_certainty": 0.01},
    ...     normalization={"kind": "percentile", "pmin": 1.0, "pmax": 99.8},
    ...     training_data=["none"], training_command="-", training={"seed": 0})
    >>> card.parameters["schema_version"], card.training
    (1, {'seed': 0})
    """
    from pydantic import BaseModel

    def dump(value: Any) -> dict[str, Any]:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", exclude_none=True)
        return dict(value or {})

    card = ModelCard(
        name=name,
        version=version,
        task=task,
        architecture=architecture,
        input_axes=input_axes,
        network=network,
        training_data=list(training_data),
        training_command=training_command,
        normalization=dump(normalization),
        parameters=dump(parameters),
        metrics=dict(metrics or {}),
        training=dict(training or {}),
        **fields,
    )
    params, norm = check_card(card)
    if params is None:
        raise ModelError(
            f"model card of {name!r}: network entry point {network.get('entry_point')!r} "
            f"names no cytolens capability ({', '.join(PREDICTORS)})"
        )
    return card.model_copy(
        update={
            "parameters": params.model_dump(mode="json", exclude_none=True),
            "normalization": norm.model_dump(
                mode="json", exclude=None if norm.description else {"description"}
            ),
        }
    )


def card_name_for(folder: str | os.PathLike[str], default: str = "model") -> str:
    """A model-card name for a model folder: its name in lowercase, ``[^a-z0-9-]`` as ``-``.

    The folder keeps the name the user gave (load the model by its path);
    only the card's ``name`` (pattern ``[a-z0-9][a-z0-9-]*``) is derived.

    Examples
    --------
    >>> card_name_for("o/dt_good"), card_name_for("My Model.v2/"), card_name_for("__")
    ('dt-good', 'my-model-v2', 'model')
    """
    import re

    base = Path(os.path.abspath(folder)).name.lower()
    return re.sub(r"[^a-z0-9-]+", "-", base).strip("-") or default


def _write_model(state_dict: dict[str, Any], card: ModelCard, folder: Path) -> None:
    import torch

    weights = folder / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        torch.save(state_dict, tmp)
    card = card.model_copy(
        update={"sha256": sha256(weights), "torch_version": str(torch.__version__)}
    )
    with atomic_path(folder / CARD_FILE) as tmp:
        tmp.write_text(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False))


def save_model(
    state_dict: dict[str, Any],
    card: ModelCard,
    *,
    root: str | os.PathLike[str] | None = None,
    folder: str | os.PathLike[str] | None = None,
    tables: dict[str, Any] | None = None,
) -> Path:
    """Write ``weights.pt`` and ``card.yaml`` (with sha256 and torch version) atomically.

    Parameters
    ----------
    state_dict : dict
        The network's weights.
    card : ModelCard
        Its card (``sha256`` and ``torch_version`` are filled in).
    root : path-like, optional
        Write ``<root>/<card.name>/`` (default root: the package's weights).
    folder : path-like, optional
        Write exactly this folder instead, whatever its name (a user's
        ``--out``, checked by :func:`~cytolens.core.files.prepare_output_dir`):
        built under a temporary name and renamed, so an interrupted run
        leaves an earlier model there untouched.
    tables : dict, optional
        ``{file name: pandas.DataFrame}`` written as CSV beside the weights.

    Returns
    -------
    pathlib.Path
        The model folder (load it with ``load_model(path)``).

    Examples
    --------
    >>> import tempfile, torch
    >>> card = ModelCard(name="my-model", version="1.0.0", task="demo", architecture="Linear",
    ...                  input_axes="YX", training_data=["none"], training_command="-")
    >>> out = Path(tempfile.mkdtemp()) / "My_Model"
    >>> sorted(p.name for p in save_model(torch.nn.Linear(2, 1).state_dict(), card,
    ...                                   folder=out).iterdir())
    ['card.yaml', 'weights.pt']
    """
    if folder is None:
        target = _root(root) / card.name
        target.mkdir(parents=True, exist_ok=True)
        _write_model(state_dict, card, target)
        for name, table in (tables or {}).items():
            with atomic_path(target / name) as tmp:
                table.to_csv(tmp, index=False)
        return target
    target = Path(folder)
    with atomic_path(target, replace_folder=True) as tmp:
        tmp.mkdir()
        _write_model(state_dict, card, tmp)
        for name, table in (tables or {}).items():
            table.to_csv(tmp / name, index=False)
    return target


# bioimage.io packages made by any tool (light: imports bioimageio.spec and torch when used)
from cytolens.models.runner import check_package, load_package, run_package  # noqa: E402
