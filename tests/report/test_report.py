"""HTML report and figures."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd

from cytolens.report import Report, image_panel, save_figure, to_display


def test_report_embeds_tables_and_figures(tmp_path):
    rep = Report("QC <run>")
    rep.heading("Results")
    rep.text("a & b")
    rep.table(pd.DataFrame({"image": ["x.tif"], "score": [0.123456]}))
    png = save_figure(image_panel({"a": np.eye(16)}), tmp_path / "fig.png")
    rep.figure(png, "eye")
    path = rep.save(tmp_path / "out" / "report.html")
    page = path.read_text()
    assert "QC &lt;run&gt;" in page and "a &amp; b" in page
    assert "<td>0.1235</td>" in page
    encoded = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(encoded) == png.read_bytes()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_to_display_projects_3d_and_keeps_rgb():
    vol = np.zeros((5, 8, 8), np.float32)
    vol[3, 2, 2] = 10
    shown = to_display(vol)
    assert shown.shape == (8, 8) and shown[2, 2] == 1.0
    rgb = np.full((4, 4, 3), 255, np.uint8)
    np.testing.assert_array_equal(to_display(rgb), np.ones((4, 4, 3), np.float32))
