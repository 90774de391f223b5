"""The one torch training core: seeding, threads, AdamW with warm-up and cosine decay, progress,
checkpoints, and the card's ``training`` record.

Every training script and ``train`` command calls :func:`fit` with its network, a
source of batches and a loss; what differs between tasks (data, augmentation,
loss, validation) stays with the task, what is the same (optimizer, schedule,
seeding, threads, logging, checkpointing, timing) lives here once.

Examples
--------
>>> import torch
>>> net = torch.nn.Linear(3, 1)
>>> x, y = torch.randn(64, 3), torch.randn(64, 1)
>>> cfg = TrainConfig(steps=20, lr=0.05, threads=1)
>>> result = fit(net, lambda step: (x, y), lambda net, b: ((net(b[0]) - b[1]) ** 2).mean(), cfg)
>>> result.history[-1]["loss"] < result.history[0]["loss"], net.training
(True, False)
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cytolens.core.errors import InputError
from cytolens.core.files import atomic_path

__all__ = ["TrainConfig", "TrainResult", "fit", "lr_factor", "make_optimizer", "seed_everything"]

logger = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Optimization settings shared by every trainer (unknown keys are errors).

    Parameters
    ----------
    steps : int
        Optimizer steps (batches).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW weight decay.
    warmup_fraction : float
        Share of the steps with a linear warm-up from ``lr / warmup_steps``.
    final_lr_fraction : float
        The cosine decay ends at ``lr * final_lr_fraction``.
    grad_clip : float or None
        Clip the gradient norm to this value.
    seed : int
        Seeds torch, numpy's generator given to the batch source and Python's ``random``.
    threads : int
        torch CPU threads.
    log_every : int
        Log the loss every this many steps (``logging`` at INFO).
    checkpoint_every : int
        With a ``checkpoint`` path given to :func:`fit`, save every this many steps
        (0: never); a run started again with the same path resumes from it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(1000, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    final_lr_fraction: float = Field(0.01, ge=0, le=1)
    grad_clip: float | None = Field(None, gt=0)
    seed: int = 0
    threads: int = Field(2, ge=1)
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(0, ge=0)


@dataclass
class TrainResult:
    """What :func:`fit` did: the loss (and validation) history, time and the settings.

    Attributes
    ----------
    history : list of dict
        One ``{"step", "loss", "lr"}`` per step; validation steps add the
        figures the ``validate`` callable returned.
    seconds : float
        Wall time of the optimization.
    config : TrainConfig
    resumed_from : int
        Step a checkpoint resumed from (0: a fresh start).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    config: TrainConfig | None = None
    resumed_from: int = 0

    def record(self) -> dict[str, Any]:
        """The card's ``training`` entries for this run (settings, final loss, time, torch).

        Examples
        --------
        >>> TrainResult([{"step": 1, "loss": 0.5, "lr": 0.1}], 2.0, TrainConfig(steps=1)).record()[
        ...     "final_loss"]
        0.5
        """
        import torch

        out: dict[str, Any] = dict(self.config.model_dump()) if self.config else {}
        out["training_time_s"] = round(self.seconds, 1)
        if self.history:
            tail = [h["loss"] for h in self.history[-max(1, len(self.history) // 20) :]]
            out["final_loss"] = round(float(sum(tail) / len(tail)), 6)
        out["torch_version"] = str(torch.__version__)
        return out


def seed_everything(seed: int) -> Any:
    """Seed torch and Python's ``random``; return a numpy ``Generator`` seeded alike.

    Examples
    --------
    >>> a = seed_everything(3).integers(100); b = seed_everything(3).integers(100)
    >>> bool(a == b)
    True
    """
    import random

    import numpy as np
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def lr_factor(
    steps: int, warmup_fraction: float = 0.05, final_lr_fraction: float = 0.01
) -> Callable[[int], float]:
    """The learning-rate multiplier per step: linear warm-up, then cosine decay.

    Examples
    --------
    >>> f = lr_factor(100, 0.1, 0.0)
    >>> round(f(0), 2), f(9), round(f(99), 4)
    (0.1, 1.0, 0.0003)
    """
    warmup = max(1, int(steps * warmup_fraction + 1e-9))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )

    return factor


def make_optimizer(network: Any, config: TrainConfig) -> tuple[Any, Any]:
    """AdamW over the trainable parameters and its warm-up/cosine ``LambdaLR`` scheduler.

    Examples
    --------
    >>> import torch
    >>> opt, sched = make_optimizer(torch.nn.Linear(2, 1), TrainConfig(steps=10, lr=0.1))
    >>> type(opt).__name__, round(sched.get_last_lr()[0], 3)
    ('AdamW', 0.1)
    """
    import torch

    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise InputError("the network has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_factor(config.steps, config.warmup_fraction, config.final_lr_fraction)
    )
    return opt, sched


def _batches(source: Any, start: int) -> Iterator[Any]:
    if callable(source):
        step = start
        while True:
            yield source(step)
            step += 1
    iterator = iter(source)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            iterator = iter(source)  # an epoch ended: start another (a DataLoader, a list)
            try:
                yield next(iterator)
            except StopIteration:
                raise InputError("the training data gave no batch") from None


def _save_checkpoint(
    path: Path, network: Any, opt: Any, sched: Any, step: int, cfg: Any, rng: Any
) -> None:
    import torch

    state = {
        "numpy_rng": rng.bit_generator.state if rng is not None else None,
        "step": step,
        "network": network.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "config": cfg.model_dump(),
        "rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(
    path: Path, network: Any, opt: Any, sched: Any, cfg: TrainConfig, rng: Any
) -> int:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("config") != cfg.model_dump():
        raise InputError(
            f"checkpoint {path} was written with other training settings; "
            "remove it or pass the same settings to resume"
        )
    network.load_state_dict(state["network"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    if rng is not None and state.get("numpy_rng") is not None:
        rng.bit_generator.state = state["numpy_rng"]
    return int(state["step"])


def fit(
    network: Any,
    batches: Callable[[int], Any] | Iterable[Any],
    loss: Callable[[Any, Any], Any],
    config: TrainConfig,
    *,
    validate: Callable[[Any], dict[str, float]] | None = None,
    validate_every: int = 0,
    progress: bool | Callable[[int, int], Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    rng: Any = None,
    on_step: Callable[[dict[str, float]], Any] | None = None,
    seed: bool = True,
    device: Any = "cpu",
) -> TrainResult:
    """Train ``network`` for ``config.steps`` optimizer steps.

    Parameters
    ----------
    network : torch.nn.Module
        Trained in place (moved to ``device``; in eval mode on return).
    batches : callable or iterable
        ``batches(step)`` returning a batch, or an iterable of batches (a
        ``DataLoader``; it is restarted when exhausted). A batch is anything
        ``loss`` accepts; tensors in a tuple/list/dict are moved to ``device``.
    loss : callable
        ``loss(network, batch)`` returning a scalar tensor.
    config : TrainConfig
        Optimizer, schedule, seed, threads.
    validate : callable, optional
        ``validate(network) -> {name: value}``, called every ``validate_every``
        steps and at the end, in eval mode under ``torch.no_grad``; the figures
        join the history.
    validate_every : int
        Steps between validations (0: only at the end).
    progress : bool or callable, optional
        ``True`` for a progress bar, or ``progress(done, total)``.
    checkpoint : path-like, optional
        Checkpoint file (see ``config.checkpoint_every``); resumed from when present.
    rng : numpy.random.Generator, optional
        The generator ``batches`` draws from: its state is saved in checkpoints
        and restored on resume, so a resumed run draws the same batches.
    on_step : callable, optional
        Called with each step's history entry (``step``, ``loss``, ``lr``...).
    seed : bool
        Seed torch from ``config.seed`` first. Pass False when the caller
        called :func:`seed_everything` itself before building the network, so
        that initial weights and training draws follow one seeded stream.
    device : str or torch.device
        Where to train.

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        A loss that is not finite (names the step), data that gives no batch,
        a checkpoint written with other settings.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> x = torch.randn(32, 2); y = x.sum(1, keepdim=True)
    >>> res = fit(net, [(x, y)], lambda n, b: ((n(b[0]) - b[1]) ** 2).mean(),
    ...           TrainConfig(steps=30, lr=0.1, threads=1),
    ...           validate=lambda n: {"mse": float(((n(x) - y) ** 2).mean())})
    >>> res.history[-1]["mse"] < 0.5
    True
    """
    import torch

    from cytolens.core.progress import progress_reporter

    torch.set_num_threads(config.threads)
    if seed:
        seed_everything(config.seed)
    device = torch.device(str(device))
    network.to(device).train()
    opt, sched = make_optimizer(network, config)
    path = Path(checkpoint) if checkpoint is not None else None
    start = 0
    if path is not None and path.is_file():
        start = _load_checkpoint(path, network, opt, sched, config, rng)
        logger.info("resumed from %s at step %d", path, start)

    def to_device(batch: Any) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, (list, tuple)):
            return type(batch)(to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: to_device(v) for k, v in batch.items()}
        return batch

    def run_validation(entry: dict[str, float]) -> None:
        network.eval()
        with torch.no_grad():
            entry.update({k: float(v) for k, v in validate(network).items()})  # type: ignore[misc]
        network.train()

    result = TrainResult(config=config, resumed_from=start)
    started = time.perf_counter()
    source = _batches(batches, start)
    with progress_reporter(progress, config.steps, "training") as update:
        for step in range(start, config.steps):
            batch = to_device(next(source))
            value = loss(network, batch)
            if not torch.isfinite(value):
                raise InputError(
                    f"training loss became {float(value.detach())} at step {step + 1}; "
                    "lower the learning rate or check the data for NaN/inf"
                )
            opt.zero_grad(set_to_none=True)
            value.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            opt.step()
            entry = {"step": step + 1, "loss": float(value.detach()), "lr": sched.get_last_lr()[0]}
            sched.step()
            done = step + 1
            if validate is not None and (
                done == config.steps or (validate_every and done % validate_every == 0)
            ):
                run_validation(entry)
            result.history.append(entry)
            update(done)
            if on_step is not None:
                on_step(entry)
            if done % config.log_every == 0 or done == config.steps:
                logger.info(
                    "step %d/%d loss %.4f (%.0f s)",
                    done,
                    config.steps,
                    entry["loss"],
                    time.perf_counter() - started,
                )
            if path is not None and config.checkpoint_every and done % config.checkpoint_every == 0:
                _save_checkpoint(path, network, opt, sched, done, config, rng)
    result.seconds = time.perf_counter() - started
    network.eval()
    return result
