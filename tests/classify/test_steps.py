"""The ``classify.localization`` pipeline step: per-image row and per-cell table."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from cytolens import data
from cytolens.classify.steps import CELL_TABLE, Localize
from cytolens.core.errors import InputError
from cytolens.core.image import Image
from cytolens.pipeline import Item, make_step, make_steps, run_pipeline


def _quarter() -> Image:
    hpa = data.hpa_cells()
    return Image(hpa.data[:, :256, :256], "CYX", channel_names=hpa.channel_names)


def test_step_gives_the_apis_localization_and_cells():
    from cytolens.classify.model import classify_cells, localization

    image = _quarter()
    item = Item(data.sample_path("hpa_nucleoli_green.png"), "q", image)
    Localize({"device": "cpu"}).run(item)
    res = localization(image, device="cpu")
    cells, _, _ = classify_cells(image, device="cpu")
    for key, value in res.summary().items():
        assert item.row[key] == value or (value != value and item.row[key] != item.row[key])
    assert {"ood_score", "in_domain"} <= set(item.row)
    table = item.tables[CELL_TABLE]
    assert (table["image"] == "q").all() and item.row["cells"] == len(table) == len(cells)
    # the card says whether the per-cell nucleolar calls are at chance (a flag column then)
    flag = ["nucleolar_at_chance"] if "nucleolar_at_chance" in table else []
    pd.testing.assert_frame_equal(table.drop(columns=["image", *flag]), cells)
    assert item.row["cells_nucleoli"] == int((cells["nucleolar"] == "Nucleoli").sum())
    only = Item(data.sample_path("hpa_nucleoli_green.png"), "q", image)
    Localize({"device": "cpu", "cells": False}).run(only)
    assert CELL_TABLE not in only.tables and "cells" not in only.row


def test_step_refuses_an_image_that_is_not_hpa():
    item = Item(data.sample_path("nuclei_bbbc006.png"), "n", data.nuclei())
    with pytest.raises(InputError, match=r"nuclei_bbbc006\.png has axes 'YX'.*4 channels"):
        Localize({"device": "cpu"}).run(item)
    with pytest.raises(InputError, match="nucleus_method: Input should be 'classical' or"):
        make_step("classify.localization", {"nucleus_method": "watershed"})


def test_pipeline_on_hpa_channel_files_and_a_4_channel_tiff(tmp_path):
    from cytolens.io import imwrite

    src = tmp_path / "in"
    src.mkdir()
    for colour in ("red", "green", "blue", "yellow"):
        path = data.sample_path(f"hpa_nucleoli_{colour}.png")
        shutil.copy(path, src / path.name)
    imwrite(tmp_path / "quarter.tif", np.asarray(_quarter().data), axes="CYX")
    out = tmp_path / "out"
    steps = make_steps([("classify.localization", {"device": "cpu"})])
    inputs = [src / "*_green.png", tmp_path / "quarter.tif"]
    result = run_pipeline(inputs, steps, out, progress=False, report=False)
    assert [r["status"] for r in result.records] == ["done", "done"], result.records
    cells = pd.read_csv(out / "hpa_cells.csv")
    assert {"image", "cell_id", "xmin_px", "nucleolar", "confidence", "p_27"} <= set(cells)
    items = pd.read_csv(out / "items.csv").set_index("name")
    assert set(items.index) == {"hpa_nucleoli_green", "quarter"}
    for name in items.index:
        assert items.loc[name, "cells"] == (cells["image"] == name).sum() > 1
    assert items["signal"].all() and {"p_00", "labels", "ood_score"} <= set(items)
