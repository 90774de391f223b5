"""``cytolens demo``: run every capability on the bundled samples and write a report.

Each capability adds one section function to :data:`SECTIONS`; the demo grows
as capabilities land. Outputs go to ``<out>/report.html`` plus PNG and image
files beside it.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cytolens import data
from cytolens.report import Report, image_panel, overlay_outlines, save_figure

__all__ = ["SECTIONS", "run_demo"]


def _samples(report: Report, out: Path) -> None:
    """The bundled samples, read through cytolens.io, and an OME-Zarr round trip."""
    from cytolens import io

    samples = {
        "nuclei (BBBC006)": data.nuclei(),
        "bead (flowdec)": data.bead(),
        "bead PSF": data.bead_psf(),
        "tracking (SIM+)": data.tracking(),
    }
    rows = []
    for name, img in samples.items():
        d = io.describe(img)
        rows.append(
            {
                "sample": name,
                "shape": str(img.shape),
                "axes": img.axes,
                "dtype": str(img.dtype),
                "pixel size (um)": str(img.pixel_size_um or "not stated"),
                "min": d["min"],
                "max": d["max"],
            }
        )
    report.heading("Bundled samples")
    report.text(
        "Read with cytolens.io.imread; provenance and licences in "
        "cytolens/data/samples/ATTRIBUTION.md. 3D data shown as maximum projections."
    )
    report.table(rows)
    fig = image_panel({k: v.data if v.axes != "TYX" else v.data[0] for k, v in samples.items()})
    report.figure(save_figure(fig, out / "samples.png"), "The bundled samples.")

    zarr_path = io.imwrite(out / "tracking.ome.zarr", samples["tracking (SIM+)"])
    back = io.imread(zarr_path)
    same = bool(np.array_equal(np.asarray(back.data), samples["tracking (SIM+)"].data))
    report.text(
        f"Round trip: the tracking sample written as OME-Zarr ({zarr_path.name}, axes "
        f"{back.axes}, pixel size {back.pixel_size_um}) reads back "
        f"{'identical' if same else 'DIFFERENT'}."
    )


def _tiling(report: Report, out: Path) -> None:
    """The shared tiling engine: a tiled filter equals the whole-image filter."""
    from scipy import ndimage

    from cytolens.core.tiling import apply_tiled

    img = data.nuclei().data.astype(np.float32)
    whole = ndimage.gaussian_filter(img, 2.0)
    tiled = apply_tiled(lambda t: ndimage.gaussian_filter(t, 2.0), img, tile_shape=128, overlap=9)
    report.heading("Tiling engine")
    report.text(
        "Gaussian filter (sigma 2) of the nuclei field in 128x128 tiles with a 9-pixel halo: "
        f"largest difference from the whole-image filter {float(np.abs(whole - tiled).max()):.3g} "
        f"(intensities up to {float(img.max()):.0f})."
    )


def _run_steps(path: Path, specs: list[tuple[str, dict[str, Any]]], out: Path) -> dict[str, Any]:
    """Run pipeline steps on one sample file with :func:`cytolens.pipeline.run_pipeline`.

    Returns the input's journal record (``row``, ``outputs``, ``tables``,
    ``seconds``); a failure raises, so the demo stops with the cause.
    """
    from cytolens.core.errors import CytolensError
    from cytolens.pipeline import make_steps, run_pipeline

    result = run_pipeline([path], make_steps(specs), out, progress=False, report=False)
    record = result.records[0]
    if record["status"] != "done":
        raise CytolensError(f"demo: {path.name}: {record['error']}")
    return record


def _deconvolution(report: Report, out: Path) -> None:
    """Wiener-Butterworth deconvolution of the bundled bead (the ``restore.deconvolve`` step)."""
    from cytolens import io
    from cytolens.restore import fwhm

    bead = data.bead()
    psf = str(data.sample_path("bead_psf.tif"))
    folder = out / "deconvolution"
    record = _run_steps(
        data.sample_path("bead.tif"),
        [("restore.deconvolve", {"psf": psf, "method": "wiener-butterworth", "iterations": 2})],
        folder,
    )
    result = np.asarray(io.imread(folder / record["outputs"][0]).data)
    before, after = fwhm(bead.data), fwhm(result)
    report.heading("Deconvolution")
    report.text(
        f"Wiener-Butterworth, 2 iterations, on the {bead.shape} bead stack with its measured "
        f"PSF in {record['seconds']:.2f} s (the restore.deconvolve pipeline step; output in "
        f"{folder.name}/{record['outputs'][0]}). FWHM of the bead in pixels (Z, Y, X): before "
        f"{tuple(round(float(v), 2) for v in before)}, after "
        f"{tuple(round(float(v), 2) for v in after)}."
    )
    fig = image_panel({"bead, max projection": bead.data, "deconvolved": result})
    report.figure(save_figure(fig, out / "deconvolution.png"), "Before / after deconvolution.")


def _focus(report: Report, out: Path) -> None:
    """Rate the focus of the bundled nuclei field and of simulated defocused copies (the step)."""
    import warnings

    from cytolens.core.image import Image
    from cytolens.focus.overlay import save_overlay
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.pipeline import Item, make_step
    from cytolens.simulate import defocus_levels, simulate_defocus

    report.heading("Focus quality")
    report.text(
        "focus-miq-v1 rates every 84x84 patch of the BBBC006 field (level 0) and of copies "
        "defocused by cytolens.simulate (the focus.rate pipeline step); blank patches (no "
        "nuclei) come out uncertain."
    )
    path, sharp = data.sample_path("nuclei_bbbc006.png"), data.nuclei()
    levels = defocus_levels()
    step: Any = make_step("focus.rate")
    rows = []
    for level in (0, 3, 6, 9):
        image = (
            sharp.data
            if level == 0
            else simulate_defocus(
                sharp.data, float(levels[level]), rng=level, peak_photons=2000.0, read_noise_e=2.0
            )
        )
        item = Item(path, f"level{level}", Image(image, "YX", dict(sharp.pixel_size_um)))
        with warnings.catch_warnings():  # the table shows each copy's ood score
            warnings.simplefilter("ignore", OutOfDomainWarning)
            result = step.rate(item)
        rows.append(
            {
                "simulated level": level,
                "verdict": item.row["focus_verdict"],
                "mean level": item.row["focus_mean_level"],
                "P(in focus)": item.row["focus_p_in_focus"],
                "blank fraction": item.row["focus_blank_fraction"],
                "ood score": item.row.get("ood_score"),
            }
        )
        if level in (0, 6):
            png = save_overlay(out / f"focus_level{level}.png", image, result)
            report.figure(
                png, f"Focus overlay, simulated level {level}: hue = level, strength = certainty."
            )
    report.table(rows)


def _segmentation(report: Report, out: Path) -> None:
    """Segment and measure the bundled nuclei: model and classical baseline (pipeline steps)."""
    import pandas as pd

    from cytolens import io
    from cytolens.pipeline import Item
    from cytolens.segment.model import DEFAULT_MODEL
    from cytolens.segment.steps import SegmentNuclei

    path, image = data.sample_path("nuclei_bbbc006.png"), data.nuclei()
    folder = out / "segmentation"
    record = _run_steps(path, [("segment.nuclei", {}), ("segment.measure", {})], folder)
    labels = np.asarray(io.imread(folder / record["outputs"][0]).data)
    table = pd.read_csv(folder / record["tables"]["nuclei"])
    baseline = Item(path, path.stem, image)
    SegmentNuclei({"method": "classical"}).run(baseline)
    area = "area_um2" if "area_um2" in table else "area_px"
    unit = "um2" if area == "area_um2" else "px"
    report.heading("Nucleus segmentation")
    report.text(
        f"{DEFAULT_MODEL} found {record['row']['nuclei']} nuclei in the BBBC006 field in "
        f"{record['seconds']:.1f} s with measurement (the segment.nuclei -> segment.measure "
        f"pipeline; outputs in {folder.name}/; the classical Otsu + watershed baseline: "
        f"{baseline.row['nuclei']}). Median area {float(table[area].median()):.0f} {unit}, "
        f"median solidity {float(table['solidity'].median()):.2f}. First rows of the "
        "measurements:"
    )
    report.table(table.drop(columns="image").head(5).round(2))
    fig = image_panel(
        {
            DEFAULT_MODEL: overlay_outlines(image.data, labels),
            "baseline": overlay_outlines(image.data, baseline.labels),
        }
    )
    report.figure(save_figure(fig, out / "segmentation.png"), "Nucleus outlines.")


def _tracking(report: Report, out: Path) -> None:
    """Segment and track the bundled SIM+ movie (the ``track`` step); score it against its truth."""
    import matplotlib.pyplot as plt

    from cytolens.evaluate import ctc_measures
    from cytolens.pipeline import Item
    from cytolens.track.plot import overlay_animation, plot_lineage
    from cytolens.track.steps import Track

    movie = data.tracking()
    markers, gt_tracks = data.tracking_ground_truth()
    item = Item(data.sample_path("tracking_sim.tif"), "tracking_sim", movie)
    result = Track({"segmenter": "threshold"}).track(item).result
    scores = ctc_measures(markers.data, gt_tracks, result.labels, result.ctc_tracks)
    report.heading("Tracking")
    report.text(
        f"{movie.sizes['T']} frames of Fluo-N2DH-SIM+ segmented by the threshold baseline and "
        f"linked by cytolens.track (the track pipeline step): {result.n_tracks} tracks, "
        f"{len(result.divisions)} division(s). Cell Tracking Challenge measures against the "
        "bundled ground truth:"
    )
    report.table(
        [
            {
                "DET": scores.det,
                "TRA": scores.tra,
                "link F1": scores.link_f1,
                "division F1": scores.division_f1,
            }
        ]
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    plot_lineage(result.tracks, ax=ax, title="Lineage of the bundled SIM+ movie")
    report.figure(save_figure(fig, out / "lineage.png"), "Tracks over time; joins are divisions.")
    overlay_animation(movie.data, result.labels, result.tracks, out / "tracking.gif")
    report.text("Overlay animation: tracking.gif beside this report.")


def _detection(report: Report, out: Path) -> None:
    """Detect blood cells in the bundled smear (the ``detect.boxes`` step); score the boxes."""
    from cytolens.detect import validate_boxes, write_voc
    from cytolens.detect.steps import BOX_TABLE, DetectBoxes
    from cytolens.evaluate.detection import detection_scores
    from cytolens.pipeline import Item
    from cytolens.report import draw_boxes

    path, image = data.sample_path("blood_smear.jpg"), data.blood_smear()
    truth = validate_boxes(data.blood_smear_boxes())[0]

    def boxes_of(min_score: float | None) -> tuple[Any, dict[str, Any]]:
        item = Item(path, path.stem, image)
        DetectBoxes({"min_score": min_score}).run(item)
        return item.tables[BOX_TABLE].drop(columns="image"), item.row

    t0 = time.perf_counter()
    boxes, row = boxes_of(None)
    seconds = time.perf_counter() - t0
    low, _ = boxes_of(0.01)
    scored = detection_scores(low.assign(filename=truth["filename"].iloc[0]), truth)
    write_voc(boxes, out / "blood_smear.xml", filename="blood_smear.jpg", width=640, height=480)
    counts = boxes["class"].value_counts().to_dict()
    report.heading("Object detection")
    report.text(
        f"detect-bccd-v1 (the detect.boxes pipeline step) found {len(boxes)} boxes with "
        f"confidence >= 0.7 in {seconds:.2f} s (ood_score {row.get('ood_score', np.nan):.2f}; "
        f"{', '.join(f'{n} {c}' for c, n in counts.items())}); the annotation has "
        f"{len(truth)}. AP@0.5 on this image: "
        + ", ".join(f"{c} {v['ap50']:.2f}" for c, v in scored["per_class"].items())
        + ". The boxes are in blood_smear.xml (Pascal VOC: open it in LabelImg to correct them)."
    )
    fig = image_panel(
        {
            "annotation (LabelImg)": draw_boxes(image, truth, label=False),
            "detect-bccd-v1": draw_boxes(image, boxes),
        }
    )
    report.figure(save_figure(fig, out / "detection.png"), "Blood cells: annotation and boxes.")


def _classification(report: Report, out: Path) -> None:
    """Protein localization of the bundled HPA field, per image and per cell (the step)."""
    import pandas as pd

    from cytolens.classify.model import DEFAULT_MODEL, LocalizationModel
    from cytolens.classify.steps import CELL_TABLE, Localize
    from cytolens.io import hpa_composite
    from cytolens.pipeline import Item
    from cytolens.report import draw_boxes

    image = data.hpa_cells()
    item = Item(data.sample_path("hpa_nucleoli_green.png"), "hpa_nucleoli", image)
    t0 = time.perf_counter()
    Localize({"cells": True}).run(item)
    seconds = time.perf_counter() - t0
    row, table = item.row, item.tables[CELL_TABLE].drop(columns="image")
    confident = table[table["confidence"] > 0.7]
    boxes = confident.assign(**{"class": confident["nucleolar"], "score": confident["confidence"]})
    model = LocalizationModel.load(DEFAULT_MODEL, device="cpu")
    called = {int(i) for i in str(row["predicted"]).split()}
    top = pd.DataFrame(
        {
            "name": list(model.class_names),
            "probability": [row[f"p_{i:02d}"] for i in range(len(model.class_names))],
            "threshold": model.thresholds,
            "predicted": [i in called for i in range(len(model.class_names))],
        }
    )
    top = top.sort_values("probability", ascending=False, kind="stable").head(4)
    report.heading("Protein localization (HPA)")
    report.text(
        f"hpa-v1 on a Human Protein Atlas field annotated 'Nucleoli' ({seconds:.1f} s for the "
        f"image and its {len(table)} cells; the classify.localization pipeline step). Called "
        f"present: {row['labels'].replace('; ', ', ') or 'none'}. "
        f"{int((table['nucleolar'] == 'Nucleoli').sum())} of {len(table)} cells are called "
        "Nucleoli; boxes show the cells whose call has confidence above 0.7. The model was "
        "trained on 59 images only (see its model card)."
    )
    report.table(top[["name", "probability", "threshold", "predicted"]].round(3).to_dict("records"))
    composite = hpa_composite(image)
    fig = image_panel({"composite": composite, "cells": draw_boxes(composite, boxes)})
    report.figure(save_figure(fig, out / "hpa.png"), "HPA field and per-cell nucleolar calls.")


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


#: (title, function, module it needs) in report order.
SECTIONS: list[tuple[str, Callable[[Report, Path], None], str]] = [
    ("samples and I/O", _samples, "cytolens.io"),
    ("tiling engine", _tiling, "cytolens.core.tiling"),
    ("focus quality", _focus, "cytolens.focus"),
    ("deconvolution", _deconvolution, "cytolens.restore"),
    ("nucleus segmentation", _segmentation, "cytolens.segment"),
    ("tracking", _tracking, "cytolens.track"),
    ("object detection", _detection, "cytolens.detect"),
    ("protein localization", _classification, "cytolens.classify"),
]


def run_demo(out: str | Path = "demo-out", *, console: Any = None) -> Path:
    """Run every available demo section; write ``<out>/report.html`` and return its path.

    Examples
    --------
    >>> import tempfile
    >>> run_demo(tempfile.mkdtemp()).name  # doctest: +SKIP
    'report.html'
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report("cytolens demo")
    report.text("Every capability of cytolens run on the samples bundled with the package.")
    for title, section, module in SECTIONS:
        if not _available(module):
            continue
        t0 = time.perf_counter()
        if console is not None:
            with console.status(f"demo: {title}"):
                section(report, out)
            console.print(f"  {title}: done in {time.perf_counter() - t0:.1f} s")
        else:
            section(report, out)
    return report.save(out / "report.html")
