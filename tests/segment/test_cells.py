"""Whole cells: ``cytolens.segment.cells``, its CLI, its step, and the nuclear-stain check."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from tests.clitools import cytolens, one_error_line
from tests.conftest import shared

from cytolens.core.errors import InputError
from cytolens.segment import cells
from cytolens.segment import whole_cells as cells_module

HPA_ID = "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0"


def culture(centres, *, shape=(120, 240), cell_r=34, nuc_r=12, seed=0):
    """Touching round cells (cytoplasm dimmer over the nucleus), nuclei, and the true cells."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])
    truth = np.where(dist.min(0) < cell_r, dist.argmin(0) + 1, 0).astype(np.int32)
    nuclei = np.where(dist.min(0) < nuc_r, dist.argmin(0) + 1, 0).astype(np.int32)
    cyto = np.where(truth > 0, 100.0, 0.0)
    cyto[nuclei > 0] = 40
    if len(centres) > 1:  # dim cell contacts
        cyto[(truth > 0) & (np.sort(dist, 0)[1] - dist.min(0) < 2)] = 55
    img = np.stack([cyto, np.where(nuclei > 0, 200.0, 0.0)]) + 10
    return (img + rng.normal(0, 3, img.shape)).astype(np.float32), truth, nuclei


def test_seeded_cells_recover_touching_cells_around_their_nuclei():
    img, truth, _ = culture([(60, 50), (60, 112), (60, 180)])
    labels, nuclei = cells(
        img, axes="CYX", channel=0, nuclear_channel=1, nucleus_diameter=24, return_nuclei=True
    )
    assert labels.dtype == np.uint32 and labels.max() == 3 == nuclei.max()
    for k in (1, 2, 3):
        assert (labels[nuclei == k] == k).all()  # cell k holds nucleus k
    from cytolens.evaluate import average_precision

    assert average_precision(truth, labels, 0.8) == 1.0  # every cell at IoU >= 0.8


def test_gradient_flood_puts_the_border_at_the_edge_between_a_bright_and_a_dim_cell():
    img, truth, nuclei = culture([(60, 80), (60, 140)], cell_r=40)
    img[0][truth == 1] *= 3  # a bright cell beside a dim one
    from cytolens.evaluate import average_precision

    edges = cells(img[0], nuclei, flood="gradient", smooth=1.0)
    assert average_precision(truth, edges, 0.9) == 1.0
    assert (edges[truth == 2] == 2).mean() > (cells(img[0], nuclei)[truth == 2] == 2).mean()


def test_nuclei_given_as_labels_seed_the_cells_with_their_numbers():
    img, _, nuclei = culture([(60, 50), (60, 112)])
    relabelled = np.where(nuclei > 0, nuclei + 6, 0)  # ids 7 and 8
    labels = cells(img[0], relabelled)
    assert set(np.unique(labels)) == {0, 7, 8}
    assert (labels[relabelled == 7] == 7).all()


def test_without_nuclei_the_dark_nuclei_seed_one_cell_each():
    # separate cells: the fallback must not split a cell at its dark nucleus
    img, truth, _ = culture([(60, 50), (60, 180)])
    labels = cells(img[0])
    assert labels.max() == 2
    from cytolens.evaluate import average_precision

    assert average_precision(truth, labels, 0.8) == 1.0


def test_tiled_equals_whole_plane_and_dask_equals_numpy():
    import dask.array as da

    centres = [(60 + 110 * i, 50 + 70 * j + 20 * (i % 2)) for i in range(4) for j in range(6)]
    img, _, _ = culture(centres, shape=(460, 460), cell_r=36)
    opts = {"axes": "CYX", "channel": 0, "nuclear_channel": 1, "cell_diameter": 72}
    opts["nucleus_diameter"] = 24
    whole = cells(img, tile_shape=None, **opts)
    tiled = cells(img, tile_shape=230, **opts)
    np.testing.assert_array_equal(tiled, whole)
    lazy = cells(da.from_array(img, chunks=(2, 100, 100)), tile_shape=230, **opts)
    np.testing.assert_array_equal(lazy, whole)
    assert whole.max() == len(centres)


def test_tiled_fallback_equals_whole_plane():
    centres = [(60 + 110 * i, 60 + 110 * j) for i in range(3) for j in range(3)]
    img, _, _ = culture(centres, shape=(340, 340), cell_r=34)
    whole = cells(img[0], tile_shape=None, cell_diameter=68)
    tiled = cells(img[0], tile_shape=210, cell_diameter=68)
    np.testing.assert_array_equal(tiled, whole)
    assert whole.max() == 9


def test_a_nuclear_stain_given_as_the_cell_channel_is_flagged():
    img, _, _ = culture([(60, 50), (60, 180)])
    both_nuclear = np.stack([img[1], img[1]])
    with pytest.warns(UserWarning, match="barely larger than their nuclei"):
        cells(both_nuclear, axes="CYX", channel=0, nuclear_channel=1, nucleus_diameter=24)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"axes": "CYX", "channel": 5}, r"channel=5 is out of range: the image has 2 channel"),
        ({"axes": "CYX", "channel": 1, "nuclear_channel": 1}, "both the nuclear and a cell"),
        ({"axes": "CYX", "threshold_factor": 0}, "threshold_factor must be"),
        ({"axes": "CYX", "nucleus_method": "magic"}, "nucleus_method must be one of"),
        ({"axes": "CYX", "flood": "distance"}, "flood must be 'signal' or 'gradient'"),
        ({"axes": "CYX", "channel": 0, "tile_shape": 60, "cell_diameter": 60}, "at least 180"),
        ({"axes": "ZYX"}, "2 planes along axis Z"),
    ],
)
def test_bad_input_gives_a_clear_error(kwargs, message):
    img, _, _ = culture([(60, 50), (60, 180)], shape=(200, 240))
    with pytest.raises(InputError, match=message):
        cells(img, **kwargs)


def test_nuclei_of_another_shape_are_refused():
    img, _, _ = culture([(60, 50)])
    with pytest.raises(InputError, match=r"nuclei labels have shape \(10, 10\)"):
        cells(img[0], np.zeros((10, 10), np.int32))


def test_the_only_channel_being_nuclear_is_refused():
    img, _, _ = culture([(60, 50)])
    with pytest.raises(InputError, match="only the nuclear channel"):
        cells(img[1:], axes="CYX", nuclear_channel=0)


def test_cell_quality_and_table_count_nuclei_per_cell():
    c = np.zeros((10, 20), np.int32)
    c[:, :10], c[:, 10:] = 1, 2
    n = np.zeros_like(c)
    n[2:4, 2:4], n[6:8, 6:8], n[4:6, 14:16] = 1, 3, 2
    q = cells_module.cell_quality(c, n)
    assert q["one_nucleus_fraction"] == 0.5 and q["cells"] == 2 and q["nuclei"] == 3
    table = cells_module.cell_table(c, n, pixel_size_um=0.5)
    assert list(table["nucleus_area_px"]) == [4.0, 4.0]  # nucleus k inside cell k only
    assert "area_um2" in table and "nucleus_area_um2" in table


def test_real_hpa_cells_hold_their_nuclei_and_match_the_hpa_step():
    from cytolens.classify.cells import segment_cells
    from cytolens.evaluate import average_precision
    from cytolens.io import read_hpa

    img = read_hpa(shared("classification/hpa/images"), HPA_ID)
    labels, nuclei = cells(img, channel=[0, 3], nuclear_channel=2, return_nuclei=True)
    assert labels.max() == nuclei.max() > 5
    inside = nuclei > 0
    assert (labels[inside] == nuclei[inside]).mean() > 0.99
    q = cells_module.cell_quality(labels, nuclei)
    assert q["median_area_ratio"] > 2  # cells well beyond their nuclei
    # the HPA step runs the same core (dtype-range scaling instead of percentiles)
    hpa_cells = segment_cells(img)[1]
    assert average_precision(hpa_cells, labels, 0.5) > 0.7


def test_whole_cell_stain_check_on_real_hpa_channels():
    from cytolens.io import read_hpa

    data = np.asarray(read_hpa(shared("classification/hpa/images"), HPA_ID).data)
    nucleus = cells_module.whole_cell_stain_score(data[2])
    microtubules = cells_module.whole_cell_stain_score(data[0])
    assert nucleus < cells_module.WHOLE_CELL_HOLE < microtubules
    assert cells_module.whole_cell_note(nucleus) is None
    assert "segment cells" in cells_module.whole_cell_note(microtubules, "x.tif")


def test_pipeline_step_segment_cells():
    from cytolens.core.image import Image
    from cytolens.pipeline import Item
    from cytolens.pipeline.config import make_step

    img, _, _ = culture([(60, 50), (60, 112), (60, 180)])
    item = Item(Path("c.tif"), "c", Image(img, "CYX", {"Y": 0.5, "X": 0.5}))
    make_step("segment.cells", {"nuclear_channel": 1, "nucleus_diameter": 24}).run(item)
    assert item.row["cells"] == 3 and item.labels.max() == 3
    table = item.tables["cells"]
    assert {"area_um2", "nucleus_area_um2", "nucleus_to_cell_area"} <= set(table.columns)
    assert set(item.images) == {"cells", "nuclei"}


@pytest.fixture(scope="module")
def hpa_tif(tmp_path_factory) -> Path:
    """One HPA sample as a CYX TIFF (red, green, blue, yellow)."""
    from cytolens.io import imwrite, read_hpa

    img = read_hpa(shared("classification/hpa/images"), HPA_ID)
    path = tmp_path_factory.mktemp("hpa") / "hpa.tif"
    imwrite(path, np.asarray(img.data), axes="CYX")
    return path


def test_cli_writes_labels_tables_overlay_and_report(hpa_tif: Path, tmp_path: Path):
    import pandas as pd
    import tifffile

    out = tmp_path / "out"
    proc = cytolens(
        "segment", "cells", hpa_tif, "--out", out, "--axes", "CYX", "--nuclear-channel", 2,
        "--cell-channel", 0, "--cell-channel", 3, "--pixel-size-um", 0.2, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    row = summary["images"][0]
    assert row["cells"] > 5 and row["seeded_by"] == "nuclei"
    for name in ("hpa_cells.tif", "hpa_nuclei.tif", "hpa_cells.csv", "hpa_overlay.png",
                 "cells.csv", "report.html"):  # fmt: skip
        assert (out / name).exists(), name
    labels = tifffile.imread(out / "hpa_cells.tif")
    table = pd.read_csv(out / "cells.csv")
    assert len(table) == row["cells"] == len(np.unique(labels)) - 1
    assert {"area_um2", "nucleus_area_um2", "equivalent_diameter_um"} <= set(table.columns)
    np.testing.assert_allclose(table["area_um2"], table["area_px"] * 0.04)


def test_cli_refuses_a_channel_out_of_range_in_one_line(hpa_tif: Path, tmp_path: Path):
    proc = cytolens(
        "segment", "cells", hpa_tif, "--out", tmp_path / "o", "--axes", "CYX",
        "--nuclear-channel", 7,
    )  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "hpa.tif" in line and "nuclear_channel=7" in line and "4 channel" in line


def test_segment_nuclei_on_a_cytoplasm_stain_says_so(hpa_tif: Path, tmp_path: Path):
    proc = cytolens(
        "segment", "nuclei", hpa_tif, "--out", tmp_path / "o", "--axes", "CYX",
        "--channel", 0, "--method", "classical", "--json", "--no-report",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["images"][0]["whole_cell_score"] > 0.04
    assert any("whole-cell" in w and "segment cells" in w for w in summary["warnings"])
    assert "looks like a whole-cell" in proc.stderr


def test_doubtful_notes_are_plain_sentences():
    notes = cells_module.doubtful_notes(
        {"cells": 3, "nuclei": 3, "median_area_ratio": 3.0, "foreground_fraction": 0.99,
         "unseeded_foreground_fraction": 0.5},
        seeded=True, name="a.tif",
    )  # fmt: skip
    assert len(notes) == 2 and all(n.startswith("a.tif: ") for n in notes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cells_module.doubtful_notes({"cells": 3}, seeded=False) == []
