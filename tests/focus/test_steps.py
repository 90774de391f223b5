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
