"""The ``focus.rate`` pipeline step: its per-patch table and row, and its callers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytolens import data
from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.focus import rate_focus
from cytolens.focus.steps import PATCH_TABLE, RateFocus
from cytolens.pipeline import Item, make_steps, run_pipeline
from cytolens.simulate import defocus_levels, simulate_defocus


def _item(image, axes="YX", name="a"):
    return Item(data.sample_path("nuclei_bbbc006.png"), name, Image(image, axes))


def test_step_leaves_the_whole_rating_on_the_item():
    sharp = data.nuclei().data[:252, :336]
    item = _item(sharp)
    seen = []
    res = RateFocus({"patch_size": 84, "device": "cpu"}).rate(
        item, progress=lambda d, t: seen.append((d, t))
    )
    direct = rate_focus(sharp, patch_size=84, device="cpu")
    table = item.tables[PATCH_TABLE]
    # one row per patch of a 3 x 4 grid, pixel columns named with their unit
    assert len(table) == 12 and (table["image"] == "a").all()
    assert list(table.columns[:7]) == ["image", "row", "col", "y0_px", "x0_px", "height_px",
                                       "width_px"]  # fmt: skip
    assert (table[["height_px", "width_px"]] == 84).all().all()
    assert table["x0_px"].max() == 3 * 84
    # the same numbers as the API, in the table, the returned result and the row
    pd.testing.assert_frame_equal(table.drop(columns=["image", "height_px", "width_px"]),
                                  direct.patches)  # fmt: skip
    assert res.summary() == direct.summary()
    assert item.row["focus_verdict"] == direct.verdict
    assert item.row["focus_mean_level"] == round(direct.mean_level, 4)
    assert {"ood_score", "in_domain"} <= set(item.row)
    assert seen and seen[-1] == (12, 12)


def test_step_refuses_a_z_stack_pointing_to_best_plane():
    with pytest.raises(InputError, match="best-plane"):
        RateFocus({"device": "cpu"}).run(_item(np.zeros((3, 96, 96), np.float32), "ZYX"))


def test_pipeline_writes_the_patch_table_and_the_verdicts(tmp_path):
    from cytolens.io import imwrite

    sharp = data.nuclei().data[:252, :336]
    blurred = simulate_defocus(sharp.astype(np.float32), defocus_levels()[9])
    files = [
        imwrite(tmp_path / "sharp.tif", sharp),
        imwrite(tmp_path / "blurred.tif", blurred.astype(np.uint16)),
    ]
    out = tmp_path / "out"
    steps = make_steps([("focus.rate", {"device": "cpu"})])
    result = run_pipeline(files, steps, out, progress=False, report=False)
    assert [r["status"] for r in result.records] == ["done", "done"]
    patches = pd.read_csv(out / "focus_patches.csv")
    assert len(patches) == 2 * 12 and set(patches["image"]) == {"sharp", "blurred"}
    assert {"y0_px", "x0_px", "height_px", "width_px", "level", "certainty"} <= set(patches)
    items = pd.read_csv(out / "items.csv").set_index("name")
    assert items.loc["sharp", "focus_mean_level"] + 3 < items.loc["blurred", "focus_mean_level"]


def _defocus_stack(levels=(6, 3, 0, 3, 6)):
    sharp = data.nuclei().data[:252, :336].astype(np.float32)
    return np.stack([simulate_defocus(sharp, dz) for dz in defocus_levels()[list(levels)]])


def test_best_plane_step_makes_the_chosen_plane_the_image():
    from cytolens.focus import best_plane
    from cytolens.focus.steps import PLANE_TABLE, BestPlane

    stack = _defocus_stack()
    noise = np.random.default_rng(0).random(stack.shape).astype(np.float32)
    # two channels: the rated one (0) and another that moves with it
    image = Image(np.stack([stack, noise]), "CZYX", {"Z": 0.5, "Y": 0.2, "X": 0.2})
    item = _item(image.data, "CZYX", name="s")
    item.image = image
    BestPlane({"channel": 0, "device": "cpu"}).run(item)
    best, scores = best_plane(stack, device="cpu")
    assert best == 2 and item.row["best_z_px"] == best and item.row["best_z_um"] == 1.0
    assert item.row["planes"] == 5 and item.row["planes_with_content"] == 5
    # the chosen plane, all channels, Z gone from the axes and the pixel sizes
    assert item.image.axes == "CYX" and item.image.pixel_size_um == {"Y": 0.2, "X": 0.2}
    np.testing.assert_array_equal(item.image.data[0], stack[best])
    np.testing.assert_array_equal(item.image.data[1], noise[best])
    table = item.tables[PLANE_TABLE]
    assert (table["image"] == "s").all()
    pd.testing.assert_frame_equal(table.drop(columns="image"), scores)
    assert "best_plane" not in item.images  # only with save_plane


@pytest.mark.parametrize(
    ("params", "image", "axes", "match"),
    [
        ({}, np.zeros((2, 3, 96, 96)), "CZYX", "2 channels .* give channel"),
        ({"channel": 2}, np.zeros((2, 3, 96, 96)), "CZYX", "channel 2"),
        ({}, np.zeros((2, 3, 96, 96)), "TZYX", "2 time points"),
        ({}, np.zeros((96, 96)), "YX", "has axes 'YX'.*no Z axis"),
    ],
)
def test_best_plane_step_refuses_what_is_not_one_stack(params, image, axes, match):
    from cytolens.focus.steps import BestPlane

    with pytest.raises(InputError, match=match):
        BestPlane({"method": "brenner_gradient", **params}).run(_item(image, axes))


def test_best_plane_step_parameters_are_checked():
    from cytolens.pipeline import make_step

    with pytest.raises(InputError, match=r"method: .*unknown method 'sharpest'"):
        make_step("focus.best_plane", {"method": "sharpest"})
    with pytest.raises(InputError, match="planes: Extra inputs"):
        make_step("focus.best_plane", {"planes": 3})


def test_pipeline_best_plane_then_segment(tmp_path):
    from cytolens.io import imwrite

    stack = _defocus_stack((9, 0, 5)).astype(np.uint16)
    src = imwrite(tmp_path / "stack.ome.tif", stack, axes="ZYX")
    out = tmp_path / "out"
    steps = make_steps(
        [
            ("focus.best_plane", {"method": "brenner_gradient", "save_plane": True}),
            ("segment.nuclei", {"method": "classical"}),
            ("segment.measure", {}),
        ]
    )
    result = run_pipeline([src], steps, out, progress=False, report=False)
    assert [r["status"] for r in result.records] == ["done"], result.records
    planes = pd.read_csv(out / "focus_planes.csv")
    assert planes["z_px"].tolist() == [0, 1, 2] and (planes["image"] == "stack").all()
    items = pd.read_csv(out / "items.csv")
    assert items["best_z_px"].tolist() == [1] and items["nuclei"].iloc[0] >= 1
    assert len(pd.read_csv(out / "nuclei.csv")) == items["nuclei"].iloc[0]
    from cytolens.io import imread

    plane = imread(out / "best_plane" / "stack.ome.zarr")
    assert plane.axes == "YX"
    np.testing.assert_array_equal(np.asarray(plane.data), stack[1])
    labels = imread(out / "labels" / "stack.ome.zarr")
    assert labels.shape == stack.shape[1:]
