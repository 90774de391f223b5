"""Pipelines as YAML files, validated with errors that name the line and the key.

.. code-block:: yaml

    inputs:                      # files, folders, glob patterns, OME-Zarr
      - plate1/*.tif
    steps:                       # run in this order on every input
      - focus.rate: {}
      - segment.nuclei: {diameter: 30}
      - segment.measure: {}

Step names are those of :data:`STEPS`; each step's parameters are its
pydantic ``Params`` (unknown keys are errors). A step that needs what no
earlier step gives (``segment.measure`` without a segmentation) is refused
before any work.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cytolens.core.errors import InputError, MissingFileError
from cytolens.pipeline.step import Step

__all__ = ["STEPS", "Pipeline", "load_pipeline", "make_step", "make_steps"]

#: Every step the runner knows: name -> "module:Class" (imported when used).
STEPS: dict[str, str] = {
    "focus.rate": "cytolens.focus.steps:RateFocus",
    "focus.best_plane": "cytolens.focus.steps:BestPlane",
    "detect.boxes": "cytolens.detect.steps:DetectBoxes",
    "classify.localization": "cytolens.classify.steps:Localize",
    "track": "cytolens.track.steps:Track",
    "restore.deconvolve": "cytolens.restore.steps:Deconvolve",
    "restore.denoise": "cytolens.restore.steps:Denoise",
    "segment.nuclei": "cytolens.segment.steps:SegmentNuclei",
    "segment.measure": "cytolens.segment.steps:Measure",
    "segment.cells": "cytolens.segment.steps:SegmentCells",
    "phenotype.classify": "cytolens.phenotype.steps:ClassifyPhenotypes",
    "label_free.predict": "cytolens.label_free.steps:PredictFluorescence",
    "register.align": "cytolens.register.steps:Align",
}


def step_class(name: str) -> type[Step]:
    """The :class:`Step` subclass registered as ``name``."""
    if name not in STEPS:
        raise InputError(f"unknown step {name!r}; known steps: {', '.join(STEPS)}")
    module, _, attr = STEPS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_step(name: str, params: dict[str, Any] | None = None, where: str = "") -> Step:
    """Build a step from its name and parameters; errors name ``where`` and the key.

    Examples
    --------
    >>> make_step("segment.measure").name
    'segment.measure'
    >>> make_step("segment.nuclei", {"diam": 3}, where="p.yaml line 4")
    Traceback (most recent call last):
    ...
    cytolens.core.errors.InputError: p.yaml line 4, step segment.nuclei: diam: Extra inputs ...
    """
    prefix = f"{where}, " if where else ""
    try:
        cls = step_class(name)
    except InputError as exc:
        raise InputError(f"{prefix}{exc}") from None
    if params is not None and not isinstance(params, dict):
        raise InputError(f"{prefix}step {name}: parameters must be a mapping, got {params!r}")
    try:
        return cls(params or {})
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InputError(f"{prefix}step {name}: {errors}") from None


def check_chain(steps: list[Step], wheres: list[str] | None = None) -> None:
    """Refuse a step that needs what no earlier step gives (the input gives ``image``)."""
    have = {"image"}
    for k, step in enumerate(steps):
        missing = [n for n in step.needs if n not in have]
        if missing:
            where = f"{wheres[k]}, " if wheres else ""
            raise InputError(
                f"{where}step {step.name} needs {', '.join(missing)}, which no earlier step "
                f"gives (add e.g. segment.nuclei before it)"
            )
        have.update(step.gives)


def make_steps(specs: list[tuple[str, dict[str, Any] | None]]) -> list[Step]:
    """Steps from ``[(name, params), ...]``, chain-checked.

    Examples
    --------
    >>> [s.name for s in make_steps([("segment.nuclei", {}), ("segment.measure", None)])]
    ['segment.nuclei', 'segment.measure']
    """
    steps = [make_step(n, p) for n, p in specs]
    check_chain(steps)
    return steps


@dataclass
class Pipeline:
    """A validated pipeline: inputs (as written, relative to the YAML's folder) and steps."""

    inputs: list[str]
    steps: list[Step]
    out: Path | None = None
    source: Path | None = None


def _line(node: yaml.Node, path: Path) -> str:
    return f"{path} line {node.start_mark.line + 1}"


#: Step parameters that may name a file or folder (a PSF, a model folder).
PATH_PARAMETERS = ("psf", "model")


def _relative_to(params: Any, base: Path) -> Any:
    """``params`` with a relative file or folder that exists beside the YAML made absolute.

    A value that names nothing there (a shipped model's name) is left as written.
    """
    if not isinstance(params, dict):
        return params
    fixed = dict(params)
    for key in PATH_PARAMETERS:
        value = fixed.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).exists():
            fixed[key] = str(base / value)
    return fixed


def load_pipeline(path: str | os.PathLike[str], *, need_inputs: bool = True) -> Pipeline:
    """Read and validate a pipeline YAML file.

    Relative inputs and ``out`` are taken relative to the file's folder, and so
    are a step's ``psf`` or ``model`` when they name a file or folder there.
    ``need_inputs=False`` (for ``cytolens watch``) makes ``inputs`` optional.

    Raises
    ------
    MissingFileError, InputError
        Naming the file, the line and the key at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such pipeline file")
    try:
        root = yaml.compose(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InputError(
            f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    if not isinstance(root, yaml.MappingNode):
        raise InputError(f"{path}: expected a mapping with 'inputs' and 'steps'")
    keys = {k.value: (k, v) for k, v in root.value}
    unknown = sorted(set(keys) - {"inputs", "steps", "out"})
    if unknown:
        k, _ = keys[unknown[0]]
        raise InputError(
            f"{_line(k, path)}: unknown key {unknown[0]!r}; expected inputs, steps, out"
        )
    for needed in ("inputs", "steps") if need_inputs else ("steps",):
        if needed not in keys:
            raise InputError(f"{path}: missing {needed!r}")
    base = path.parent
    inputs: list[str] = []
    if "inputs" in keys:
        _, inputs_node = keys["inputs"]
        inputs = yaml.safe_load(yaml.serialize(inputs_node))
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) for i in inputs)
        ):
            where = _line(inputs_node, path)
            raise InputError(f"{where}: 'inputs' must be a list of paths or globs")
        inputs = [i if Path(i).is_absolute() else str(base / i) for i in inputs]
    _, steps_node = keys["steps"]
    if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
        raise InputError(f"{_line(steps_node, path)}: 'steps' must be a non-empty list")
    steps, wheres = [], []
    for node in steps_node.value:
        where = _line(node, path)
        value = yaml.safe_load(yaml.serialize(node))
        if isinstance(value, str):
            name, params = value, None
        elif isinstance(value, dict) and len(value) == 1:
            name, params = next(iter(value.items()))
        else:
            raise InputError(f"{where}: a step is 'name' or 'name: {{parameters}}', got {value!r}")
        steps.append(make_step(str(name), _relative_to(params, base), where=where))
        wheres.append(where)
    check_chain(steps, wheres)
    out = None
    if "out" in keys:
        value = keys["out"][1].value
        out = Path(value) if Path(value).is_absolute() else base / value
    return Pipeline(inputs=inputs, steps=steps, out=out, source=path)
