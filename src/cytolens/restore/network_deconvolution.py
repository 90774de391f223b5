"""Network deconvolution: one forward pass of a 3-D U-Net trained to reproduce Wiener-Butterworth.

Following Guo et al. (2020), a compact residual 3-D U-Net
(:class:`~cytolens.restore.network.RestoreUNet` with ``dims=3``) is trained on
simulated objects (spheres, filaments, points; :func:`simulate_objects`)
blurred with one measured PSF plus Poisson noise, with the output of
:func:`~cytolens.restore.deconvolve` (``method="wiener-butterworth"`` at its
best iteration count) on the same noisy volume as the target. Such a model is
tied to its PSF: its card records the PSF's sha256 and FWHM, and a different
PSF passed at inference gives an :class:`~cytolens.models.applicability.OutOfDomainWarning`.

:func:`deconvolve_network` runs the model tile by tile
(:func:`cytolens.core.tiling.apply_tiled`, numpy or Dask) and returns the
applicability of the input (``ood_score``, ``domain_percentile``,
``in_domain``) like :func:`~cytolens.restore.denoise`.
:func:`train_deconvolver` trains one for a user's PSF (``cytolens restore
train-deconvolver``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError, ModelError
from cytolens.core.validate import check_array, is_dask

__all__ = [
    "DEFAULT_DECONVOLVER",
    "deconvolve_network",
    "psnr_affine",
    "simulate_objects",
    "simulate_volume",
    "train_deconvolver",
]

logger = logging.getLogger(__name__)

#: The shipped network deconvolution model (lattice light-sheet PSF of the shared data).
DEFAULT_DECONVOLVER = "decon-llsm-v1"
#: Relative FWHM difference (any axis) above which a PSF counts as another PSF.
PSF_TOLERANCE = 0.15


# --------------------------------------------------------------------------- simulation
#: Filament segments are ~0.4 x this long per axis (ZYX voxels), capped by the volume.
_FILAMENT_REACH = np.array([32.0, 64.0, 64.0])


def _line(shape: Sequence[int], p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, ...]:
    n = int(np.ceil(np.abs(p1 - p0).max())) * 2 + 2
    pts = np.rint(p0[None] + np.linspace(0, 1, n)[:, None] * (p1 - p0)[None]).astype(int)
    ok = np.all((pts >= 0) & (pts < np.asarray(shape)), axis=1)
    return tuple(pts[ok].T)


def simulate_objects(
    shape: Sequence[int],
    *,
    rng: int | np.random.Generator | None = None,
    n_spheres: int = 6,
    n_filaments: int = 4,
    n_points: int = 12,
    peak_photons: float = 200.0,
) -> np.ndarray:
    """A 3-D ground-truth volume of spheres, filaments and points, in photons.

    Parameters
    ----------
    shape : (int, int, int)
        ``(Z, Y, X)``.
    rng : int or numpy.random.Generator, optional
        Seed or generator.
    n_spheres, n_filaments, n_points : int
        How many of each (filled spheres of radius 1.5-4 px; random
        polylines of 2-4 segments of about 13 x 26 x 26 voxels (Z, Y, X) in
        any volume of at least 32 x 64 x 64; single bright voxels). Scale
        the counts with the volume for the same density.
    peak_photons : float
        Brightness scale: each object gets 0.3-1 times this value.

    Returns
    -------
    numpy.ndarray of float32

    Examples
    --------
    >>> vol = simulate_objects((16, 32, 32), rng=0)
    >>> vol.shape, vol.dtype.name, bool(vol.max() > 0)
    ((16, 32, 32), 'float32', True)
    """
    from cytolens.simulate import as_rng

    gen = as_rng(rng)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 4:
        raise InputError(f"shape must be (Z, Y, X) with sides >= 4, got {shape}")
    vol = np.zeros(shape, np.float32)
    size = np.asarray(shape, float)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for _ in range(n_spheres):
        c = gen.random(3) * size
        r = gen.uniform(1.5, 4.0)
        inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        vol[inside] = np.maximum(vol[inside], peak_photons * gen.uniform(0.3, 1.0))
    reach = np.minimum(size, _FILAMENT_REACH)  # segment scale, whatever the volume size
    for _ in range(n_filaments):
        p = gen.random(3) * size
        value = peak_photons * gen.uniform(0.3, 1.0)
        for _seg in range(int(gen.integers(2, 5))):
            q = np.clip(p + gen.normal(0, 0.4, 3) * reach, 0, size - 1)
            idx = _line(shape, p, q)
            vol[idx] = np.maximum(vol[idx], value)
            p = q
    pts = (gen.random((n_points, 3)) * size).astype(int)
    vol[tuple(pts.T)] = np.maximum(
        vol[tuple(pts.T)], peak_photons * gen.uniform(0.3, 1.0, n_points)
    )
    return vol


def simulate_volume(
    psf: Any,
    shape: Sequence[int],
    *,
    rng: int | np.random.Generator | None = None,
    peak_photons: float = 200.0,
    **objects: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(truth, observed)``: :func:`simulate_objects` blurred with ``psf`` plus Poisson noise.

    ``objects``: ``n_spheres``, ``n_filaments``, ``n_points`` of :func:`simulate_objects`.

    Examples
    --------
    >>> from cytolens.restore import gaussian_psf
    >>> truth, obs = simulate_volume(gaussian_psf((5, 5, 5), 1.0), (16, 24, 24), rng=1)
    >>> obs.shape, obs.dtype.name, bool((obs > 0).sum() > (truth > 0).sum())  # spread out
    ((16, 24, 24), 'float32', True)
    """
    from scipy.signal import fftconvolve

    from cytolens.simulate import as_rng, poisson_noise

    gen = as_rng(rng)
    k = np.asarray(psf, np.float32)
    k = k / k.sum()
    truth = simulate_objects(shape, rng=gen, peak_photons=peak_photons, **objects)
    pad = [(s // 2, s // 2) for s in k.shape]
    blurred = fftconvolve(np.pad(truth, pad, mode="reflect"), k, mode="valid")
    observed = poisson_noise(np.clip(blurred, 0, None), rng=gen).astype(np.float32)
    return truth, observed


def psnr_affine(estimate: Any, truth: Any) -> float:
    """PSNR (dB) of ``estimate`` to ``truth`` after a least-squares affine intensity fit.

    Deconvolution does not preserve the intensity scale (Wiener-Butterworth
    concentrates flux), so the estimate's scale and offset are fitted to the
    truth first, as the CARE evaluation does; the peak is the truth's range.

    Examples
    --------
    >>> t = np.arange(10.0)
    >>> round(psnr_affine(2 * t + 3, t), 1) > 100
    True
    """
    e = np.asarray(estimate, np.float64).ravel()
    t = np.asarray(truth, np.float64).ravel()
    a = np.stack([e, np.ones_like(e)], axis=1)
    coef, *_ = np.linalg.lstsq(a, t, rcond=None)
    mse = float(np.mean((a @ coef - t) ** 2))
    span = float(t.max() - t.min()) or 1.0
    return float(10 * np.log10(span**2 / max(mse, 1e-20)))


# --------------------------------------------------------------------------- inference
def _file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_psf(restorer: Any, psf: Any) -> str | None:
    """Warn (and return the message) when ``psf`` is not the PSF the model was trained for.

    ``psf`` is a file (compared by sha256, then by FWHM) or an array (compared
    by FWHM per axis, tolerance 15 %). None: nothing to check.
    """
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.restore.psf import fwhm, load_psf

    if psf is None:
        return None
    want_sha = restorer.params.psf_sha256
    want = list(restorer.params.psf_fwhm_px)
    if isinstance(psf, (str, os.PathLike)):
        if want_sha and Path(psf).is_file() and _file_sha256(psf) == want_sha:
            return None
        psf = load_psf(psf)
    arr = np.asarray(psf, np.float32)
    if arr.ndim != 3:
        raise InputError(f"psf must be 3-D (Z, Y, X) for model {restorer.name!r}, got {arr.shape}")
    got = list(fwhm(arr / max(float(arr.sum()), 1e-30)))
    if want and all(abs(g - w) <= PSF_TOLERANCE * w for g, w in zip(got, want, strict=True)):
        return None
    message = (
        f"model {restorer.name} was trained for another PSF (sha256 {want_sha[:12]}..., FWHM "
        f"{', '.join(f'{w:.2f}' for w in want)} px) than the one given (FWHM "
        f"{', '.join(f'{g:.2f}' for g in got)} px): its result is not a deconvolution with "
        "this PSF; train a model for it (cytolens restore train-deconvolver) or use "
        'method="wiener-butterworth"'
    )
    warnings.warn(message, OutOfDomainWarning, stacklevel=3)
    return message


def _forward3d(restorer: Any, x: np.ndarray) -> np.ndarray:
    """Network on one normalized ``(Z, Y, X)`` block (padded to the divisor, cropped back)."""
    import torch

    div = restorer.network.divisor
    pad = [(0, -s % div) for s in x.shape]
    mode = "reflect" if all(s > p[1] for s, p in zip(x.shape, pad, strict=True)) else "edge"
    t = torch.from_numpy(np.ascontiguousarray(np.pad(x, pad, mode=mode)))
    with torch.inference_mode():
        y = restorer.network(t[None, None].to(restorer.device))[0, 0]
    return y[tuple(slice(0, s) for s in x.shape)].float().cpu().numpy()


def _windows3d(shape: Sequence[int], side: int) -> list[tuple[slice, ...]]:
    from cytolens.models.applicability import sample_windows

    # windows of side/2 x side x side voxels (the training volumes' depth), centred in Z
    z, depth = int(shape[0]), max(1, side // 2)
    zs = slice(max(0, (z - depth) // 2), max(0, (z - depth) // 2) + min(z, depth))
    return [(zs, *w) for w in sample_windows(shape[1:], side, 4)]


def _features(restorer: Any, volume: Any, limits: tuple[float, float]) -> np.ndarray:
    """Per-window pooled features ``(n_windows, d)`` of a ``(Z, Y, X)`` volume."""
    from cytolens.models.applicability import PooledFeatures

    lo, hi = limits
    rows = []
    side = int(restorer.params.feature_window)
    with PooledFeatures(restorer.network, list(restorer.params.feature_modules)) as hooks:
        for window in _windows3d(volume.shape, side):
            crop = np.asarray(volume[window], dtype=np.float32)
            _forward3d(restorer, restorer.normalization.scale(crop, lo, hi))
            rows.append(hooks.take()[0])
    return np.stack(rows)


def _deconvolver(model: Any, device: str) -> Any:
    from cytolens.restore.denoise import Restorer

    if isinstance(model, Restorer):
        restorer = model
    else:
        from cytolens.models import load

        restorer = load(model, device=device, capability="restore")
    if restorer.params.task != "deconvolve" or restorer.params.ndim != 3:
        raise ModelError(
            f"model {restorer.name!r} is not a network deconvolution model "
            f"(task {restorer.params.task!r}, {restorer.params.ndim}-D); "
            f"use e.g. {DEFAULT_DECONVOLVER!r}"
        )
    return restorer


def deconvolve_network(
    image: Any,
    psf: Any = None,
    *,
    model: Any = DEFAULT_DECONVOLVER,
    device: str = "auto",
    tile_shape: Any = (64, 256, 256),
    return_info: bool = False,
    progress: bool | Callable[[int, int], Any] = False,
) -> Any:
    """Deconvolve a 3-D volume in one forward pass of a network trained for one PSF.

    Also reachable as ``deconvolve(image, psf, method="network", model=...)``.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(Z, Y, X)`` volume, background subtracted, on the same voxel grid
        as the model's PSF.
    psf : array_like or path-like, optional
        The PSF of the data. Not used by the network; checked against the
        PSF the model was trained for (a different one: a warning).
    model : str, path-like or Restorer
        Default :data:`DEFAULT_DECONVOLVER` (lattice light-sheet PSF).
    device : {"auto", "cpu", "cuda", "mps"}
    tile_shape : int or sequence of int
        Block read per tile, halo (the card's ``tile_overlap``) included.
    return_info : bool
        Also return ``ood_score``, ``domain_percentile``, ``in_domain``,
        ``warnings`` and ``model``.
    progress : bool or callable
        Progress over tiles.

    Returns
    -------
    result : numpy.ndarray or dask.array.Array
        float32, same shape, on the input's intensity scale.
    info : dict
        Only with ``return_info``.

    Warns
    -----
    OutOfDomainWarning
        A PSF other than the model's, or an input outside the training domain.

    Examples
    --------
    >>> from cytolens.restore import gaussian_psf
    >>> truth, obs = simulate_volume(gaussian_psf((7, 7, 7), 1.2), (32, 48, 48), rng=0)
    >>> out = deconvolve_network(obs, device="cpu")
    >>> out.shape, out.dtype.name
    ((32, 48, 48), 'float32')
    """
    from cytolens.core.tiling import apply_tiled
    from cytolens.models.applicability import applicability_columns, warn_out_of_domain

    restorer = _deconvolver(model, device)
    data = check_array(image, name="image", ndim=3, finite=not is_dask(image))
    if min(data.shape) < 4:
        raise InputError(f"image of shape {tuple(data.shape)} is too small (at least 4 voxels)")
    messages = [m for m in [check_psf(restorer, psf)] if m]
    lo, hi = restorer.normalization.limits(data)
    if not hi > lo:
        raise InputError(f"image is flat (percentiles {lo:g} .. {hi:g}): nothing to deconvolve")
    span = float(hi - lo)
    norm = restorer.normalization
    overlap = int(restorer.params.tile_overlap)
    sides = [tile_shape] * 3 if np.isscalar(tile_shape) else list(tile_shape)
    least = 2 * overlap + 8
    if len(sides) != 3 or any(
        s is not None and int(s) != -1 and int(s) < min(least, n)
        for s, n in zip(sides, data.shape, strict=False)
    ):
        raise InputError(
            f"tile_shape {tile_shape} is too small for model {restorer.name!r}: at least "
            f"{least} voxels per side, or the whole axis (twice its overlap of {overlap} + 8)"
        )

    def run(tile: np.ndarray) -> np.ndarray:
        y = _forward3d(restorer, norm.scale(tile, lo, hi))
        return y * np.float32(span) + np.float32(lo)

    result = apply_tiled(
        run,
        data,
        tile_shape=tuple(sides),
        overlap=overlap,
        blend="linear",
        dtype=np.float32,
        progress=progress,
    )
    info: dict[str, Any] = {"model": restorer.name}
    if restorer.has_domain:
        scores = restorer.domain().score(_features(restorer, data, (lo, hi)))
        ood = float(np.mean(scores["ood_score"]))
        info.update(
            applicability_columns(
                {
                    "ood_score": np.array([ood]),
                    "domain_percentile": np.array([float(np.mean(scores["domain_percentile"]))]),
                    "in_domain": np.array([ood <= 1.0]),
                }
            )
        )
        name = str(getattr(image, "path", None) or "image")
        msg = warn_out_of_domain(restorer.name, name, info["ood_score"], stacklevel=2)
        if msg:
            messages.append(msg)
    info["warnings"] = messages
    return (result, info) if return_info else result


# --------------------------------------------------------------------------- training
def best_wb_iterations(
    psf: np.ndarray, volumes: Sequence[tuple[np.ndarray, np.ndarray]], max_iterations: int = 12
) -> tuple[int, dict[int, float]]:
    """The Wiener-Butterworth iteration count with the best mean affine PSNR to the truth."""
    from cytolens.restore.deconvolution import deconvolve

    scores = {}
    for it in range(1, max_iterations + 1):
        scores[it] = float(
            np.mean(
                [
                    psnr_affine(deconvolve(o, psf, iterations=it, device="cpu"), t)
                    for t, o in volumes
                ]
            )
        )
    return max(scores, key=lambda k: scores[k]), scores


def train_deconvolver(
    psf: Any,
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    steps: int = 300,
    shape: Sequence[int] = (32, 64, 64),
    patch: Sequence[int] = (32, 48, 48),
    n_train: int = 48,
    n_heldout: int = 16,
    batch: int = 2,
    channels: Sequence[int] = (8, 16, 32),
    peak_photons: float = 200.0,
    iterations: int | None = None,
    crop: Sequence[int] | None = (31, 25, 25),
    lr: float = 3e-3,
    seed: int = 0,
    threads: int = 2,
    progress: Any = False,
    training_command: str = "cytolens restore train-deconvolver",
) -> Path:
    """Train a network deconvolution model for one PSF and write it to ``out``.

    Parameters
    ----------
    psf : path-like
        Measured PSF file (read with :func:`~cytolens.restore.load_psf`,
        cropped to ``crop``); its sha256 and FWHM go into the card.
    out : path-like
        Model folder (``weights.pt``, ``card.yaml``, ``applicability.npz``).
    steps, batch, lr, seed, threads
        Optimization (:func:`cytolens.models.training.fit`).
    shape, patch
        Simulated volume shape and training crop (``(Z, Y, X)``).
    n_train, n_heldout
        Simulated training volumes; held-out ones (other seeds) calibrate
        the applicability reference.
    iterations : int, optional
        Wiener-Butterworth iterations of the target (default: the best of
        1-12 by PSNR on 4 simulated volumes).

    Returns
    -------
    pathlib.Path
        The model folder.
    """
    import torch

    from cytolens.models import make_card, save_model
    from cytolens.models.applicability import DomainReference
    from cytolens.models.schema import PercentileNormalization
    from cytolens.models.training import TrainConfig, fit, seed_everything
    from cytolens.restore.deconvolution import deconvolve
    from cytolens.restore.denoise import Restorer
    from cytolens.restore.network import RestoreUNet
    from cytolens.restore.psf import fwhm, load_psf

    if not isinstance(psf, (str, os.PathLike)) or not Path(psf).is_file():
        raise InputError(f"psf must be an existing PSF file, got {psf!r}")
    psf_path = Path(psf)
    kernel = load_psf(psf_path, crop=tuple(crop) if crop is not None else None)
    if kernel.ndim != 3:
        raise InputError(f"{psf_path}: network deconvolution needs a 3-D PSF, got {kernel.shape}")
    out = Path(out)
    name = name or (re.sub(r"[^a-z0-9-]+", "-", out.name.lower()).strip("-") or "deconvolver")
    norm = PercentileNormalization()
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)

    def simulate(n: int, gen: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        return [
            simulate_volume(kernel, shape, rng=gen, peak_photons=peak_photons) for _ in range(n)
        ]

    if iterations is None:
        iterations, wb_scores = best_wb_iterations(
            kernel, simulate(4, np.random.default_rng(seed + 1))
        )
    else:
        wb_scores = {}
    logger.info("target: Wiener-Butterworth, %d iteration(s)", iterations)

    def pairs(vols: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        res = []
        for _truth, obs in vols:
            lo, hi = norm.limits(obs)
            target = deconvolve(obs, kernel, iterations=iterations, device="cpu")
            res.append((norm.scale(obs, lo, hi), norm.scale(target, lo, hi)))
        return res

    train = pairs(simulate(n_train, rng))
    heldout = pairs(simulate(n_heldout, np.random.default_rng(seed + 2)))
    patch = tuple(min(int(p), int(s)) for p, s in zip(patch, shape, strict=True))

    def batches(_step: int) -> tuple[Any, Any]:
        xs, ys = [], []
        for i in rng.integers(0, len(train), batch):
            x, y = train[i]
            o = [int(rng.integers(0, s - p + 1)) for s, p in zip(x.shape, patch, strict=True)]
            sl = tuple(slice(a, a + p) for a, p in zip(o, patch, strict=True))
            xs.append(x[sl])
            ys.append(y[sl])
        return torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys))[:, None]

    def loss(net: Any, b: Any) -> Any:
        return torch.nn.functional.mse_loss(net(b[0]), b[1])

    def validate(net: Any) -> dict[str, float]:
        xs = torch.from_numpy(np.stack([x for x, _ in heldout[:4]]))[:, None]
        ys = torch.from_numpy(np.stack([y for _, y in heldout[:4]]))[:, None]
        return {"val_loss": float(torch.nn.functional.mse_loss(net(xs), ys))}

    config = TrainConfig(steps=steps, lr=lr, seed=seed, threads=threads, grad_clip=1.0)
    seed_everything(seed)
    kwargs = {"in_channels": 1, "out_channels": 1, "channels": list(channels), "dims": 3}
    net = RestoreUNet(**{**kwargs, "channels": tuple(channels)})
    result = fit(
        net, batches, loss, config, validate=validate, progress=progress, rng=rng, seed=False
    )
    net.eval()

    last = len(channels) - 1
    params = {
        "task": "deconvolve",
        "training_mode": "network_deconvolution",
        "tile_overlap": 16,
        "input_dtype": "float32",
        "ndim": 3,
        "feature_modules": ["down.0", f"down.{last}"],
        "feature_window": 64,
        "psf_sha256": _file_sha256(psf_path),
        "psf_fwhm_px": [round(float(v), 3) for v in fwhm(kernel)],
    }
    n_params = sum(p.numel() for p in net.parameters())
    training = {
        **result.record(),
        "final_val_loss": round(result.history[-1].get("val_loss", float("nan")), 6),
        "target": f"deconvolve(method='wiener-butterworth', iterations={iterations}) of the "
        "noisy simulated volume",
        "wb_iterations": int(iterations),
        "wb_psnr_by_iterations": {int(k): round(v, 3) for k, v in wb_scores.items()},
        "psf_file": psf_path.name,
        "psf_crop": list(crop) if crop is not None else None,
        "objects": "cytolens.restore.network_deconvolution.simulate_objects: spheres, "
        "filaments, points",
        "volume_shape": list(shape),
        "patch": list(patch),
        "batch": batch,
        "peak_photons": peak_photons,
        "noise": "Poisson",
        "n_train_volumes": n_train,
        "n_heldout_volumes": n_heldout,
        "seeds": f"train {seed}, WB iteration choice {seed + 1}, held-out {seed + 2}, "
        f"applicability: wide training-like volumes {seed + 3}, wide held-out {seed + 4}",
    }
    card = make_card(
        name=name,
        task="network deconvolution: one forward pass reproducing Wiener-Butterworth, 3-D",
        architecture=f"RestoreUNet(channels={tuple(channels)}, residual, dims=3), "
        f"{n_params} parameters",
        input_axes="ZYX",
        network={"entry_point": "cytolens.restore.network:RestoreUNet", "kwargs": kwargs},
        parameters=params,
        normalization=norm,
        training_data=[
            f"simulated objects blurred with the PSF {psf_path.name} (sha256 "
            f"{params['psf_sha256']}) plus Poisson noise"
        ],
        training_command=training_command,
        training=training,
    )
    # applicability: per-window features of training volumes, calibrated on held-out ones
    from cytolens.models.applicability import APPLICABILITY_FILE

    restorer = Restorer.from_card(net, card, device="cpu")

    def feats(vols: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return np.concatenate([_features(restorer, x, (0.0, 1.0)) for x, _ in vols])

    # the domain also holds volumes 2 x 2 wider (same objects, same density): inputs larger
    # than the training volumes are windowed away from the volume's faces
    wide = (int(shape[0]), 2 * int(shape[1]), 2 * int(shape[2]))

    def wide_feats(n: int, gen_seed: int) -> np.ndarray:
        gen = np.random.default_rng(gen_seed)
        rows = []
        for _ in range(n):
            _t, obs = simulate_volume(
                kernel,
                wide,
                rng=gen,
                peak_photons=peak_photons,
                n_spheres=24,
                n_filaments=16,
                n_points=48,
            )
            rows.append(_features(restorer, norm.scale(obs, *norm.limits(obs)), (0.0, 1.0)))
        return np.concatenate(rows)

    n_wide = max(1, n_heldout // 2)
    train_feats = np.concatenate([feats(train), wide_feats(n_wide, seed + 3)])
    cal_feats = np.concatenate([feats(heldout), wide_feats(n_wide, seed + 4)])
    ref = DomainReference.fit(train_feats, cal_feats, max_components=min(32, len(train_feats) - 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_ref = out.parent / f".{out.name}.{APPLICABILITY_FILE}"
    ref.save(tmp_ref)
    entry = ref.card_entry(
        tmp_ref,
        f"mean and std of the activations of down.0 and down.{last}, per window of "
        "32 x 64 x 64 voxels "
        "(at most 4 per volume; a volume's score is the mean of its windows')",
        n_train_volumes=len(train),
        n_train_windows=len(train_feats),
    )
    card = card.model_copy(update={"applicability": entry | {"file": APPLICABILITY_FILE}})
    folder = save_model(net.state_dict(), card, folder=out)
    os.replace(tmp_ref, folder / APPLICABILITY_FILE)
    return folder
