"""One place that turns ``device="auto"|"cpu"|"cuda"|"mps"`` into a torch device."""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING

from cytolens.core.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "resolve_device"]

logger = logging.getLogger(__name__)

#: Accepted device names.
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to run on.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "mps"} or torch.device
        ``"auto"`` picks CUDA when available, then Apple MPS, else the CPU.
        ``"cuda:1"`` style names select a GPU by index.

    Raises
    ------
    InputError
        For an unknown name, or a device that is not available here.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    return _resolve(name)


@cache
def _resolve(name: str) -> torch.device:
    import torch

    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise InputError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            dev = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            dev = torch.device("mps")
        else:
            dev = torch.device("cpu")
        logger.info("device 'auto' resolved to %s", dev)
        return dev
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {name!r} requested but CUDA is not available in this torch build "
            f"({torch.__version__}); use device='cpu' or 'auto'"
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InputError(f"device {name!r} requested but Apple MPS is not available here")
    return torch.device(name)
