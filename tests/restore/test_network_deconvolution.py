"""Network deconvolution: the 3-D network, simulation, the shipped model, PSF check, training."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from tests.conftest import shared

from cytolens.core.errors import InputError, ModelError
from cytolens.io import imwrite
from cytolens.models import load, load_card
from cytolens.models.applicability import OutOfDomainWarning
from cytolens.restore import deconvolve, deconvolve_network, gaussian_psf, load_psf
from cytolens.restore.network import RestoreUNet
from cytolens.restore.network_deconvolution import (
    DEFAULT_DECONVOLVER,
    psnr_affine,
    simulate_objects,
    simulate_volume,
    train_deconvolver,
)

LLSM = "deconvolution/llsm_psf/psf.tif"


@pytest.fixture(scope="module")
def llsm() -> tuple[object, np.ndarray]:
    path = shared(LLSM)
    return path, load_psf(path, crop=(31, 25, 25))


@pytest.fixture(scope="module")
def model():
    return load(DEFAULT_DECONVOLVER, device="cpu")


def test_restore_unet_3d_and_bad_dims() -> None:
    net = RestoreUNet(channels=(4, 8), dims=3).eval()
    x = torch.rand(1, 1, 8, 12, 16)
    assert net(x).shape == x.shape
    assert isinstance(net.down[0][0], torch.nn.Conv3d)
    with pytest.raises(ValueError, match="dims"):
        RestoreUNet(dims=4)


def test_simulate_objects_reproducible_and_varied() -> None:
    a = simulate_objects((16, 32, 32), rng=3)
    b = simulate_objects((16, 32, 32), rng=3)
    c = simulate_objects((16, 32, 32), rng=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and (a > 0).sum() > 50
    with pytest.raises(InputError, match="shape"):
        simulate_objects((16, 32))


def test_shipped_model_card_names_its_psf(llsm, model) -> None:
    import hashlib

    path, _ = llsm
    card = load_card(DEFAULT_DECONVOLVER)
    assert card.parameters["psf_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.params.ndim == 3 and model.params.task == "deconvolve"
    assert card.applicability and card.training["wb_iterations"] >= 1


def test_network_deconvolution_close_to_wb_with_applicability(llsm, model) -> None:
    path, psf = llsm
    truth, obs = simulate_volume(psf, (32, 64, 64), rng=2024)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # same PSF, in domain: no warning
        out, info = deconvolve_network(obs, path, model=model, device="cpu", return_info=True)
    assert out.shape == obs.shape and out.dtype == np.float32
    assert set(info) >= {"ood_score", "domain_percentile", "in_domain", "warnings", "model"}
    assert info["in_domain"] and info["warnings"] == []
    wb = deconvolve(obs, psf, iterations=model.card.training["wb_iterations"], device="cpu")
    # better than the blurred input, and within 1.5 dB of Wiener-Butterworth
    assert psnr_affine(out, truth) > psnr_affine(obs, truth) + 0.5
    assert psnr_affine(out, truth) > psnr_affine(wb, truth) - 1.5
    # the deconvolve() dispatch gives the same result
    same = deconvolve(obs, psf, method="network", model=model)
    assert np.allclose(same, out, atol=1e-5)


def test_tiled_and_dask_match_whole(llsm, model) -> None:
    da = pytest.importorskip("dask.array")
    _, psf = llsm
    _, obs = simulate_volume(psf, (32, 80, 80), rng=7)
    whole = deconvolve_network(obs, model=model, device="cpu", tile_shape=-1)
    span = whole.max() - whole.min()
    tiled = deconvolve_network(obs, model=model, device="cpu", tile_shape=(32, 48, 48))
    assert np.abs(tiled - whole).max() / span < 0.03  # linear blending: seams stay small
    lazy = deconvolve_network(
        da.from_array(obs, chunks=(32, 40, 40)), model=model, device="cpu", tile_shape=(32, 64, 64)
    )
    assert hasattr(lazy, "compute")
    diff = np.abs(np.asarray(lazy) - whole) / span
    # Dask blocks are cropped, not blended: small seams inside, the outer faces differ more
    assert diff[:, 16:-16, 16:-16].max() < 0.03 and np.percentile(diff, 99) < 0.01


def test_other_psf_warns(llsm, model) -> None:
    _, psf = llsm
    _, obs = simulate_volume(psf, (32, 48, 48), rng=5)
    with pytest.warns(OutOfDomainWarning, match="trained for another PSF"):
        _, info = deconvolve_network(
            obs, gaussian_psf((9, 9, 9), 1.0), model=model, device="cpu", return_info=True
        )
    assert any("another PSF" in m for m in info["warnings"])


def test_bad_inputs(model) -> None:
    with pytest.raises(InputError, match="3"):
        deconvolve_network(np.ones((32, 32), np.float32), model=model)
    with pytest.raises(InputError, match="flat"):
        deconvolve_network(np.zeros((16, 32, 32), np.float32), model=model)
    with pytest.raises(ModelError, match="not a network deconvolution model"):
        deconvolve_network(np.ones((16, 32, 32), np.float32), model="denoise-w2s-v1", device="cpu")
    with pytest.raises(InputError, match="tile_shape"):
        deconvolve_network(
            np.random.default_rng(0).random((16, 32, 32)), model=model, tile_shape=20
        )


def test_train_deconvolver_small(tmp_path) -> None:
    bead = np.zeros((15, 15, 15), np.float32)
    bead += 100.0
    bead += (
        5000
        * gaussian_psf((15, 15, 15), (1.5, 1.0, 1.0))
        / gaussian_psf((15, 15, 15), (1.5, 1.0, 1.0)).max()
    )
    psf_file = tmp_path / "bead.tif"
    imwrite(psf_file, bead.astype(np.uint16), axes="ZYX")
    folder = train_deconvolver(
        psf_file,
        tmp_path / "My Model",
        steps=3,
        shape=(16, 32, 32),
        patch=(16, 32, 32),
        n_train=3,
        n_heldout=3,
        channels=(4, 8),
        iterations=2,
        crop=(9, 9, 9),
        threads=1,
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "applicability.npz",
        "card.yaml",
        "weights.pt",
    ]
    r = load(folder, device="cpu")
    assert r.name == "my-model" and r.params.psf_fwhm_px[0] > r.params.psf_fwhm_px[1]
    _, obs = simulate_volume(load_psf(psf_file, crop=(9, 9, 9)), (16, 32, 32), rng=9)
    out, info = deconvolve_network(obs, psf_file, model=r, return_info=True)
    assert out.shape == obs.shape and "ood_score" in info
    with pytest.raises(InputError, match="PSF file"):
        train_deconvolver(tmp_path / "nope.tif", tmp_path / "x")


def test_cli_train_deconvolver_refuses_bad_input(tmp_path) -> None:
    from tests.clitools import cytolens, one_error_line

    proc = cytolens(
        "restore", "train-deconvolver", "--psf", tmp_path / "none.tif", "--out", tmp_path / "m"
    )
    assert proc.returncode != 0
    assert "--psf" in one_error_line(proc) and "none.tif" in one_error_line(proc)


def test_cli_deconvolve_method_network(llsm, tmp_path) -> None:
    import json

    from tests.clitools import cytolens, one_error_line

    from cytolens.io import imread

    path, psf = llsm
    _, obs = simulate_volume(psf, (32, 64, 64), rng=7)
    volume = tmp_path / "vol.tif"
    imwrite(volume, obs.astype(np.float32), axes="ZYX")
    out = tmp_path / "vol_dec.ome.tif"
    proc = cytolens(
        "restore",
        "deconvolve",
        volume,
        "--psf",
        path,
        "--method",
        "network",
        "--out",
        out,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["method"] == "network" and summary["model"] == DEFAULT_DECONVOLVER
    result = np.asarray(imread(out).data)
    same = deconvolve(obs, load_psf(path), method="network", device="cpu")
    assert result.shape == obs.shape and np.allclose(result, same, atol=1e-4)
    # options of the iterative methods are refused, not silently ignored
    bad = cytolens(
        "restore", "deconvolve", volume, "--psf", path, "--method", "network",
        "--iterations", "5", "--out", tmp_path / "x.ome.tif",
    )  # fmt: skip
    assert bad.returncode != 0 and "--iterations" in one_error_line(bad)
    assert not (tmp_path / "x.ome.tif").exists()
