"""Learned denoising: the API, training (supervised and Noise2Void), applicability, CLI, step."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from tests.clitools import cytolens, one_error_line
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.io import imwrite
from cytolens.models.applicability import OutOfDomainWarning
from cytolens.restore import denoise, train_denoiser
from cytolens.restore.train_denoiser import (
    _n2v_mask,
    affine_fit,
    pair_files,
    psnr,
    split_by_group,
)


def _blobs(seed: int, shape: tuple[int, int] = (64, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = np.full(shape, 20.0)
    for _ in range(6):
        cy, cx, r = rng.uniform(8, shape[0] - 8), rng.uniform(8, shape[1] - 8), rng.uniform(3, 8)
        clean += 150 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return clean


def _noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    return np.clip(rng.poisson(clean / 4) * 4, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("w2s-like")
    out: dict[str, list[Path]] = {"noisy": [], "clean": []}
    for i in range(7):
        clean = _blobs(i)
        out["noisy"].append(imwrite(root / "noisy" / f"{i:03d}_0.tif", _noisy(clean, i)))
        out["clean"].append(imwrite(root / "clean" / f"{i:03d}_0.tif", clean.astype(np.uint8)))
    return out


@pytest.fixture(scope="module")
def tiny(pairs: dict[str, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny supervised model trained for a few steps (a model folder)."""
    folder = tmp_path_factory.mktemp("models") / "tiny"
    train_denoiser(
        pairs["noisy"][:4],
        pairs["clean"][:4],
        val_noisy=pairs["noisy"][4:],
        val_clean=pairs["clean"][4:],
        out=folder,
        steps=100,
        patch=32,
        batch=8,
        lr=5e-3,
        channels=(8, 16, 16),
        threads=1,
    )
    return folder


# ---------------------------------------------------------------------------- helpers


def test_affine_psnr_ignores_scale_and_offset() -> None:
    t = np.linspace(0, 255, 400).reshape(20, 20)
    noisy = t + np.random.default_rng(0).normal(0, 5, t.shape)
    assert psnr(0.5 * noisy + 7, t) == pytest.approx(psnr(noisy, t), abs=1e-9)
    assert psnr(0.5 * noisy + 7, t, affine=False) < psnr(noisy, t) - 3
    np.testing.assert_allclose(affine_fit(2 * t + 1, t), t, atol=1e-9)


def test_pair_files_refuses_unpaired_names() -> None:
    with pytest.raises(InputError, match=r"n/b.png has no clean file"):
        pair_files(["n/a.png", "n/b.png"], ["c/a.png"])
    with pytest.raises(InputError, match=r"clean file c/z.png has no noisy file"):
        pair_files(["n/a.png"], ["c/a.png", "c/z.png"])


def test_split_keeps_groups_on_one_side() -> None:
    files = [f"{f:03d}_{c}.png" for f in range(10) for c in range(3)]
    train, val = split_by_group(files, val_fraction=0.2, group_pattern=r"^\d+")
    assert {v[:3] for v in val}.isdisjoint({t[:3] for t in train})
    assert len(val) == 6 and len(train) == 24
    assert split_by_group(files, val_fraction=0.2, group_pattern=r"^\d+") == (train, val)


def test_n2v_mask_never_keeps_the_masked_pixel() -> None:
    x = np.arange(32 * 32, dtype=np.float32).reshape(32, 32)  # every value distinct
    inp, mask = _n2v_mask(np.random.default_rng(0), x, 0.05)
    ys, xs = np.nonzero(mask)
    assert 0 < len(ys) <= round(0.05 * 32 * 32)
    assert np.all(inp[ys, xs] != x[ys, xs])  # a neighbour's value, never its own
    assert np.array_equal(inp[mask == 0], x[mask == 0])


# ---------------------------------------------------------------------------- training


def test_training_writes_a_loadable_model(tiny: Path) -> None:
    from cytolens.models import load

    r = load(tiny, device="cpu")
    assert type(r).__name__ == "Restorer"
    assert r.params.training_mode == "supervised" and r.params.input_dtype == "uint8"
    assert r.card.training["val_files"] == ["004_0.tif", "005_0.tif", "006_0.tif"]
    assert (tiny / "applicability.npz").is_file() and r.has_domain


def test_training_refuses_shape_mismatch(pairs: dict[str, list[Path]], tmp_path: Path) -> None:
    bad = imwrite(tmp_path / "clean" / "000_0.tif", np.zeros((40, 64), np.uint8))
    with pytest.raises(InputError, match=r"has shape \(40, 64\) but its noisy partner"):
        train_denoiser(
            pairs["noisy"][:1], [bad], val_noisy=pairs["noisy"][4:],
            val_clean=pairs["clean"][4:], steps=1,
        )  # fmt: skip


def test_training_refuses_mixed_bit_depths(pairs: dict[str, list[Path]], tmp_path: Path) -> None:
    other = imwrite(tmp_path / "x.tif", (_blobs(9) * 100).astype(np.uint16))
    with pytest.raises(InputError, match=r"uint16 but the first training image is uint8"):
        train_denoiser([*pairs["noisy"][:2], other], val_noisy=pairs["noisy"][4:], steps=1)


def test_self_supervised_training_lowers_the_error(
    pairs: dict[str, list[Path]], tmp_path: Path
) -> None:
    model, card = train_denoiser(
        pairs["noisy"][:4],
        val_noisy=pairs["noisy"][4:],
        steps=60,
        patch=32,
        batch=8,
        lr=5e-3,
        channels=(8, 16),
        threads=1,
    )
    assert card.parameters["training_mode"] == "self_supervised"
    history = [h for h in card.training.items() if h[0] == "final_val_loss"]
    assert history and np.isfinite(history[0][1])
    clean, noisy = _blobs(5), _noisy(_blobs(5), 5)
    out = model.restore_plane(noisy.astype(np.float32), limits=(0.0, 255.0))
    assert psnr(out, clean) > psnr(noisy, clean)  # the blind-spot net removes some noise


# ---------------------------------------------------------------------------- inference


def test_denoise_removes_noise_and_reports_applicability(tiny: Path) -> None:
    clean = _blobs(5)
    noisy = _noisy(clean, 5)
    out, info = denoise(noisy, model=tiny, device="cpu", return_info=True)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert {"ood_score", "domain_percentile", "in_domain", "warnings"} <= set(info)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)  # synthetic blobs, not W2S
        shipped = denoise(noisy, device="cpu")
    assert psnr(shipped, clean) > psnr(noisy, clean) + 3


def test_tiled_equals_untiled() -> None:
    clean = _blobs(3, (200, 170))
    noisy = _noisy(clean, 3)
    whole = denoise(noisy, device="cpu", tile_shape=-1)
    tiled = denoise(noisy, device="cpu", tile_shape=96)
    # linear blending over 32 px overlaps (the receptive field is ~23 px, but max pooling
    # sees another grid in a tile): close to untiled, and as good
    span = float(whole.max() - whole.min())
    assert np.abs(tiled - whole).mean() < 0.01 * span
    assert abs(psnr(tiled, clean) - psnr(whole, clean)) < 0.3


def test_dask_input_stays_lazy_and_matches(tiny: Path) -> None:
    import dask.array as da

    noisy = _noisy(_blobs(3, (128, 96)), 3)
    lazy = denoise(da.from_array(noisy, chunks=(64, 96)), model=tiny, device="cpu")
    assert isinstance(lazy, da.Array)
    eager = denoise(noisy, model=tiny, device="cpu")
    assert np.abs(lazy.compute() - eager).max() < 0.05 * (eager.max() - eager.min())


def test_stack_needs_axes_and_runs_plane_by_plane(tiny: Path) -> None:
    stack = np.stack([_noisy(_blobs(i), i) for i in range(3)])
    with pytest.raises(InputError, match=r"is 2-D \(YX\) but the image is 3-D"):
        denoise(stack, model=tiny, device="cpu")
    out = denoise(stack, model=tiny, axes="ZYX", device="cpu")
    assert out.shape == stack.shape
    one = denoise(stack[1], model=tiny, device="cpu")
    # one intensity normalization for the whole stack, so planes differ a little
    assert np.corrcoef(out[1].ravel(), one.ravel())[0, 1] > 0.99


def test_other_bit_depth_warns(tiny: Path) -> None:
    image = (_noisy(_blobs(2), 2).astype(np.uint16) * 200).astype(np.uint16)
    with pytest.warns(OutOfDomainWarning, match=r"uint16 but .* trained on uint8"):
        _, info = denoise(image, model=tiny, device="cpu", return_info=True)
    assert any("uint16" in m for m in info["warnings"])


def test_bad_inputs_are_clear_errors(tiny: Path) -> None:
    with pytest.raises(InputError, match="flat"):
        denoise(np.full((32, 32), 7, np.uint8), model=tiny, device="cpu")
    with pytest.raises(InputError, match="too small for model"):
        denoise(_noisy(_blobs(1), 1), model=tiny, device="cpu", tile_shape=40)
    with pytest.raises(InputError, match="last two axes must be 'YX'"):
        denoise(np.zeros((16, 16, 3)), model=tiny, axes="YXC", device="cpu")


def test_out_of_domain_input_scores_higher(tiny: Path) -> None:
    from cytolens.models import load

    r = load(tiny, device="cpu")
    inside = r.applicability(_noisy(_blobs(5), 5).astype(np.float32))["ood_score"]
    stripes = np.tile(np.repeat([0, 255], 2), 16)[None].repeat(64, 0).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outside = r.applicability(stripes)["ood_score"]
    assert outside > 1 and outside > 3 * inside


# ---------------------------------------------------------------------------- real data


def test_shipped_model_on_held_out_w2s_field() -> None:
    from skimage.io import imread

    w2s = shared("denoising/w2s")
    noisy = imread(w2s / "noisy" / "116_1.png")  # field 116: a test field of the card
    clean = imread(w2s / "clean" / "116_1.png")
    out, info = denoise(noisy, device="cpu", return_info=True)
    assert psnr(out, clean) > psnr(noisy, clean) + 5
    assert info["in_domain"]


def test_shipped_card_documents_the_split() -> None:
    from cytolens.models import load

    r = load("denoise-w2s-v1", device="cpu")
    t = r.card.training
    assert "116" in t["test_fields"] and not set(t["test_fields"]) & set(t["train_fields"])
    assert not set(t["val_fields"]) & set(t["train_fields"])
    assert r.has_domain and r.domain().limit == pytest.approx(r.card.applicability["limit"])


# ---------------------------------------------------------------------------- CLI and step


def test_cli_denoise_writes_outputs_and_report(tiny: Path, tmp_path: Path) -> None:
    ins = [imwrite(tmp_path / "in" / f"im{i}.tif", _noisy(_blobs(i), i)) for i in range(2)]
    out = tmp_path / "out"
    proc = cytolens("restore", "denoise", *ins, "--out", out, "--model", tiny, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [r["image"] for r in summary["images"]] == ["im0.tif", "im1.tif"]
    names = {p.name for p in out.iterdir()}
    assert {"im0_denoised.tif", "im0_before_after.png", "denoise.csv", "report.html"} <= names
    assert "ood_score" in (out / "denoise.csv").read_text()


def test_cli_train_refuses_unpaired_clean_folder(
    pairs: dict[str, list[Path]], tmp_path: Path
) -> None:
    clean = tmp_path / "clean"
    imwrite(clean / "other.tif", np.zeros((64, 64), np.uint8))
    proc = cytolens(
        "restore", "train-denoiser", "--noisy", pairs["noisy"][0].parent, "--clean", clean,
        "--out", tmp_path / "m", "--steps", "1",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "has no clean file of the same name" in one_error_line(proc)
    assert not (tmp_path / "m").exists()


def test_pipeline_step(tiny: Path) -> None:
    from cytolens.core.image import Image
    from cytolens.pipeline import Item
    from cytolens.pipeline.config import make_step

    step = make_step("restore.denoise", {"model": str(tiny), "device": "cpu"})
    item = Item(Path("x.tif"), "x", Image(_noisy(_blobs(4), 4), "YX", {}))
    step.run(item)
    assert item.images["denoised"].data.dtype == np.float32
    assert set(item.row) == {"ood_score", "domain_percentile", "in_domain", "warning"}
