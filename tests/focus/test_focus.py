"""Tests of focus rating: the shipped model on real data, blank patches, best plane, outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.focus import FocusModel, best_plane, certainty, rate_focus, save_overlay
from cytolens.focus.classical import MEASURES, focus_measures
from cytolens.simulate import add_camera_noise, defocus_levels, simulate_defocus

BBBC = "focus/bbbc006_subset"


@pytest.fixture(scope="module")
def model():
    return FocusModel.load(device="cpu")


def _read(path):
    from cytolens.io import imread

    return np.asarray(imread(path).data)


def test_model_card_records_normalization_and_heldout(model):
    card = model.card
    assert card.normalization["kind"] == "percentile"
    assert model.patch_size == 84 and model.n_levels == 11
    assert 0 < model.blank_certainty < 0.6
    assert "a09" in card.training["heldout"]["bbbc006"]
    assert card.metrics["sim_within_one"] > 0.8


def test_heldout_in_focus_field_is_rated_in_focus(shared_data, model):
    # a09 was held out of training (see the model card)
    img = _read(shared_data / BBBC / "BBBC006_z_aligned__a09__s1__w1_10.png")
    res = rate_focus(img, model=model)
    assert res.verdict == "in focus"
    assert res.p_in_focus > 0.6
    assert res.mean_level < 2.5
    assert len(res.patches) == (520 // 84) * (696 // 84)


def test_strongly_blurred_fields_are_rated_out_of_focus(shared_data, model):
    files = sorted((shared_data / BBBC).glob("00_mcf-z-stacks-*.tif"))[:3]
    assert files
    for path in files:
        res = rate_focus(_read(path), model=model)
        assert res.verdict == "out of focus", path.name
        assert res.mean_level > 6, path.name


def test_blank_patches_are_uncertain(model):
    rng = np.random.default_rng(0)
    constant = np.full((168, 252), 100.0)
    noise = add_camera_noise(
        np.zeros((168, 252)), rng=rng, background_photons=20.0, read_noise_e=2.0, offset_adu=100.0
    )
    for img in (constant, noise):
        res = rate_focus(img, model=model)
        assert res.patches["certainty"].max() < 0.3
        assert res.blank_fraction >= 0.8
    assert rate_focus(constant, model=model).verdict == "no content"


def test_patch_table_columns_and_probabilities(model):
    rng = np.random.default_rng(1)
    img = rng.poisson(50, size=(200, 300)).astype(np.uint16)
    res = rate_focus(img, model=model, patch_size=84)
    t = res.patches
    probs = t[[f"p{k}" for k in range(11)]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(t["certainty"], certainty(probs), atol=1e-6)
    assert list(t[["row", "col", "y0_px", "x0_px"]].iloc[-1]) == [1, 2, 84, 168]
    assert set(res.summary()) >= {"verdict", "mean_level", "p_in_focus", "blank_fraction"}


def test_dask_input_and_batching_give_the_same_patches(shared_data, model):
    import dask.array as da

    img = _read(shared_data / BBBC / "BBBC006_z_aligned__a05__s1__w1_10.png")[:300, :400]
    ref = rate_focus(img, model=model, batch_size=256)
    lazy = rate_focus(da.from_array(img, chunks=(128, 128)), model=model, batch_size=3)
    np.testing.assert_allclose(lazy.patches["p0"], ref.patches["p0"], atol=1e-5)
    # each row of the table is the patch at (y0, x0), rated on its own
    lo, hi = np.percentile(img.astype(np.float32), (model.normalizer.pmin, model.normalizer.pmax))
    last = ref.patches.iloc[-1]
    alone = model.predict(
        img[None, int(last.y0_px) : int(last.y0_px) + 84, int(last.x0_px) : int(last.x0_px) + 84],
        lo=lo,
        hi=hi,
    )
    np.testing.assert_allclose(
        alone[0], last[[f"p{k}" for k in range(11)]].astype(float), atol=1e-5
    )


def test_best_plane_picks_sharpest_simulated_plane(model):
    from cytolens import data

    sharp = data.nuclei().data.astype(np.float32)  # a held-out field (see the model card)
    z = defocus_levels()[[8, 4, 1, 0, 2, 5]]
    stack = np.stack(
        [
            simulate_defocus(
                sharp,
                dz,
                rng=i,
                peak_photons=800,
                background_photons=10,
                read_noise_e=2,
                offset_adu=100,
            )
            for i, dz in enumerate(z)
        ]
    )
    best, scores = best_plane(stack, model=model)
    assert best == 3
    assert list(scores["z_px"]) == list(range(6))
    best_c, _ = best_plane(np.moveaxis(stack, 0, -1), axes="YXZ", method="brenner_gradient")
    assert best_c == 3


def test_best_plane_accepts_image_and_rejects_channels(model):
    stack = np.random.default_rng(0).random((3, 96, 96)).astype(np.float32)
    best, _ = best_plane(Image(stack, "ZYX"), method="brenner_gradient")
    assert 0 <= best < 3
    # the model sees no object in noise: no plane has content, so there is no best plane
    with pytest.raises(InputError, match=r"noise\.tif: no plane has content"):
        best_plane(Image(stack, "ZYX"), model=model, name="noise.tif")
    with pytest.raises(InputError, match="exactly Z, Y and X"):
        best_plane(Image(stack, "CYX"), model=model)
    with pytest.raises(InputError, match="unknown method"):
        best_plane(stack, method="sharpness")


def test_level_colours_run_green_to_red_and_fade_with_uncertainty() -> None:
    from cytolens.focus.overlay import level_rgba

    rgba = level_rgba(np.arange(11), 11, certainty=np.linspace(1, 0, 11))
    assert rgba.shape == (11, 4)
    assert rgba[0, 1] > rgba[0, 0] and rgba[-1, 0] > rgba[-1, 1]  # green ... red
    assert np.all(np.diff(rgba[:, 3]) < 0) and rgba[-1, 3] == pytest.approx(0.15)
    with pytest.raises(InputError, match=r"levels must lie in 0\.\.10"):
        level_rgba([11], 11)


def test_overlay_png_is_written(tmp_path, model):
    from PIL import Image as PILImage

    from cytolens import data

    img = data.nuclei().data
    res = rate_focus(img, model=model)
    path = save_overlay(tmp_path / "overlay.png", img, res)
    with PILImage.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_overlay_of_a_large_lazy_image_is_shrunk_with_the_frames_in_place(shared_data, model):
    import dask.array as da

    from cytolens.core.plane import single_plane
    from cytolens.focus.overlay import level_rgba, overlay_rgb

    img = _read(shared_data / BBBC / "BBBC006_z_aligned__a05__s1__w1_10.png")
    lazy, _ = single_plane(da.from_array(img, chunks=(128, 128)), lazy=True)
    assert hasattr(lazy, "dask")  # not read by single_plane
    res = rate_focus(lazy, model=model)
    full = overlay_rgb(img, res)
    small = overlay_rgb(lazy, res, max_side=200)
    f = 4  # ceil(696 / 200)
    assert small.shape == (-(-img.shape[0] // f), -(-img.shape[1] // f), 3)
    # a confident patch's frame keeps its level colour at the shrunk position
    t = res.patches
    k = int(t["certainty"].idxmax())
    rgba = level_rgba([t.loc[k, "level"]], 11, [t.loc[k, "certainty"]])[0]
    y, x = -(-int(t.loc[k, "y0_px"]) // f), -(-int(t.loc[k, "x0_px"]) // f)
    corner = full[int(t.loc[k, "y0_px"]), int(t.loc[k, "x0_px"])].astype(int)
    assert np.abs(small[y, x].astype(int) - corner).max() <= 3
    assert np.abs(small[y, x] / 255 - rgba[:3]).max() < 1 - rgba[3] + 0.01
    with pytest.raises(InputError, match="max_side must be >= 1"):
        overlay_rgb(img, res, max_side=0)


def test_bad_input_raises_input_error(model):
    with pytest.raises(InputError, match=r"2-D, got 3-D with shape \(2, 100, 100\)"):
        rate_focus(np.zeros((2, 100, 100)), model=model)
    with pytest.raises(InputError, match=r"shape \(50, 200\) is smaller than one 84x84 patch"):
        rate_focus(np.zeros((50, 200)), model=model)
    bad = np.ones((100, 100))
    bad[3, 4] = np.nan
    with pytest.raises(InputError, match=r"non-finite.*\(3, 4\)"):
        rate_focus(bad, model=model)
    with pytest.raises(InputError, match="patch_size"):
        rate_focus(np.zeros((100, 100)), model=model, patch_size=8)
    with pytest.raises(InputError, match="axes 'ZYX'"):
        rate_focus(Image(np.zeros((2, 100, 100)), "ZYX"), model=model)


def test_classical_measures_fall_with_blur():
    from cytolens import data

    sharp = data.nuclei().data.astype(np.float32)
    soft = simulate_defocus(sharp, defocus_levels()[5])
    a, b = focus_measures(sharp), focus_measures(soft)
    for name in MEASURES:
        assert a[name] > b[name], name


def test_cli_rate_writes_csv_overlays_and_report(tmp_path, model):
    import tifffile
    from typer.testing import CliRunner

    from cytolens import data
    from cytolens.focus.cli import app

    sharp = data.nuclei().data[:252, :336]
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "sharp.tif", sharp)
    blurred = simulate_defocus(sharp.astype(np.float32), defocus_levels()[9])
    tifffile.imwrite(folder / "blurred.tif", blurred.astype(np.uint16))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["rate", str(folder), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "focus.csv")
    assert len(table) == 2
    assert set(table.columns) >= {"file", "verdict", "mean_level", "p_in_focus", "overlay"}
    rated = dict(
        zip(table["file"].map(lambda f: f.split("/")[-1]), table["mean_level"], strict=True)
    )
    assert rated["sharp.tif"] < rated["blurred.tif"]
    assert (out / "report.html").read_text().count("<img") >= 2
    assert len(list((out / "overlays").glob("*.png"))) == 2


def test_cli_errors_and_best_plane(tmp_path, model):
    import tifffile
    from typer.testing import CliRunner

    from cytolens.core.errors import MissingFileError
    from cytolens.focus.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["rate", str(tmp_path / "nothing*.tif"), "--out", str(tmp_path)])
    assert isinstance(result.exception, MissingFileError)
    stack = np.random.default_rng(0).random((5, 96, 96)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    result = runner.invoke(app, ["rate", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2  # no input could be rated; listed in failures.csv
    assert "best-plane" in pd.read_csv(tmp_path / "o" / "failures.csv")["message"].iloc[0]
    result = runner.invoke(
        app,
        [
            "best-plane",
            str(tmp_path / "stack.tif"),
            "--axes",
            "ZYX",
            "--method",
            "brenner_gradient",
            "--json",
            "--out",
            str(tmp_path / "planes.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"best_plane"' in result.output
    assert len(pd.read_csv(tmp_path / "planes.csv")) == 5


def test_cli_best_plane_of_a_real_stack_saved_one_file_per_plane(shared_data, tmp_path):
    # DFNN light-sheet mitochondria z-stack: 34 planes, 0.05 um apart, one TIFF each
    import json

    from typer.testing import CliRunner

    from cytolens.focus.cli import app

    dfnn = shared_data / "focus/dfnn_lightsheet_defocus"
    labels = pd.read_csv(dfnn / "labels.csv")
    labels = labels[(labels["kind"] == "stack") & (labels["structure"] == "mitochondria")]
    defocus = {
        (dfnn / f).name: d for f, d in zip(labels["file"], labels["defocus_um"], strict=True)
    }
    plot = tmp_path / "curve.png"
    result = CliRunner().invoke(
        app,
        [
            "best-plane",
            str(dfnn / "mitochondria/stack"),
            "--device",
            "cpu",
            "--json",
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert len(payload["planes"]) == len(defocus) == 34
    # natural order along z, and the pick is within two planes (0.1 um) of focus
    names = [p.split("/")[-1] for p in payload["files"]]
    assert [defocus[n] for n in names] == sorted(defocus.values())
    assert abs(defocus[payload["best_file"].split("/")[-1]]) <= 0.1
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_cli_best_plane_refuses_a_single_plane(tmp_path):
    from typer.testing import CliRunner

    from cytolens.focus.cli import app
    from cytolens.io import imwrite

    imwrite(tmp_path / "one.tif", np.zeros((96, 96), np.uint16))
    result = CliRunner().invoke(app, ["best-plane", str(tmp_path / "one.tif")])
    assert isinstance(result.exception, InputError)
    assert "one.tif has axes 'YX'" in str(result.exception)


def test_cli_rate_picks_the_channel_of_a_multichannel_image(tmp_path):
    from typer.testing import CliRunner

    from cytolens import data
    from cytolens.focus.cli import app
    from cytolens.io import imwrite

    sharp = data.nuclei().data[:252, :336].astype(np.float32)
    blurred = simulate_defocus(sharp, defocus_levels()[9])
    imwrite(tmp_path / "two.tif", np.stack([sharp, blurred]).astype(np.uint16), axes="CYX")
    runner = CliRunner()
    result = runner.invoke(app, ["rate", str(tmp_path / "two.tif"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2  # its only input failed
    assert "--channel" in pd.read_csv(tmp_path / "x" / "failures.csv")["message"].iloc[0]
    levels = []
    for channel in (0, 1):
        out = tmp_path / f"c{channel}"
        args = ["rate", str(tmp_path / "two.tif"), "--out", str(out), "--channel", str(channel)]
        result = runner.invoke(app, [*args, "--device", "cpu", "--no-overlays"])
        assert result.exit_code == 0, result.output
        levels.append(pd.read_csv(out / "focus.csv")["mean_level"].iloc[0])
    assert levels[0] + 3 < levels[1]


def test_cli_tables_name_their_units(tmp_path):
    """``cytolens focus rate`` / ``best-plane`` in a subprocess: pixel columns end in ``_px``."""
    import json

    from tests.clitools import cytolens

    from cytolens import data
    from cytolens.io import imwrite

    sharp = data.nuclei().data[:96, :180]
    image = imwrite(tmp_path / "sharp.tif", sharp)
    stack = imwrite(tmp_path / "stack.tif", np.stack([sharp // 2, sharp, sharp // 3]), axes="ZYX")
    out = tmp_path / "out"
    proc = cytolens("focus", "rate", image, "--out", out, "--no-overlays", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "focus.csv")
    assert table[["height_px", "width_px"]].to_numpy().tolist() == [[96, 180]]
    assert {"height", "width"}.isdisjoint(table.columns)
    planes = tmp_path / "planes.csv"
    proc = cytolens("focus", "best-plane", stack, "--method", "brenner_gradient", "--out", planes,
                    "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(planes)["z_px"].tolist() == [0, 1, 2]
    assert json.loads(proc.stdout)["planes"][1]["z_px"] == 1
