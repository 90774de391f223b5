"""Shipped models: weights inside the package, each with a model card.

Layout: ``models/weights/<name>/card.yaml`` and ``weights.pt`` (a torch state
dict). The card records the task, architecture, training data and licence,
normalization, input axes, held-out metrics and the sha256 of the weights,
which is checked on every load. Nothing is ever downloaded.

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

import hashlib
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from cytolens.core.errors import ModelError
from cytolens.core.files import atomic_path

__all__ = [
    "ModelCard",
    "build_network",
    "card_capability",
    "card_name_for",
    "list_models",
    "load_card",
    "load_model",
    "load_state_dict",
    "model_dir",
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
    normalization: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    torch_version: str = ""
    description: str = ""


def _root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root) if root is not None else Path(str(files("cytolens.models") / "weights"))


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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

    Raises
    ------
    ModelError
        For an unknown model, a card that is not valid YAML or misses fields,
        or a model of another capability (e.g. a segmentation model given to
        focus rating).

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
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a valid model card ({first})") from None
    found = card_capability(card)
    if capability is not None and found != capability:
        mine = [m for m in list_models() if card_capability(load_card(m)) == capability]
        raise ModelError(
            f"model {name!r} is a {found or 'non-cytolens'} model ({card.task.split(':')[0]}), "
            f"not a {capability} model; {capability} models: {', '.join(mine) or 'none'}"
        )
    return card


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
