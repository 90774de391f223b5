"""``cytolens classify hpa|train``: protein localization of HPA folders, and fine-tuning.

Commands parse arguments, read files, call :mod:`cytolens.classify` and write
results atomically (``hpa`` classifies each sample with the pipeline step
``classify.localization``, the same parameters a pipeline YAML accepts);
errors are one line (see :mod:`cytolens.cli`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.classify.model import DEFAULT_MODEL
from cytolens.core.errors import InputError
from cytolens.core.options import at_least, non_negative, positive
from cytolens.core.progress import progress_bar
from cytolens.core.summary import strict_json
from cytolens.core.tables import BOX_COLUMNS

__all__ = ["app"]

app = typer.Typer(
    help="Classify protein localization in Human Protein Atlas images (per image and per cell).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Overlays shown in report.html (all are written to the output folder).
REPORT_OVERLAYS = 12


def _cell_boxes(cells: Any, min_confidence: float) -> Any:
    """Box table (class, xmin_px, ymin_px, xmax_px, ymax_px, score) of the confident cells."""
    keep = cells[cells["confidence"] > min_confidence]
    return keep.assign(**{"class": keep["nucleolar"], "score": keep["confidence"]})[
        ["class", *BOX_COLUMNS, "score"]
    ].reset_index(drop=True)


def _stale(out: Path, names: list[str], keep: set[str]) -> None:
    """Remove an earlier run's tables (``--overwrite``) that this run does not write."""
    for name in names:
        if name not in keep:
            (out / name).unlink(missing_ok=True)


@app.command("hpa")
def hpa_command(
    folder: Annotated[Path, typer.Argument(help="Folder of HPA <id>_red|green|blue|yellow files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("hpa-out"),
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = DEFAULT_MODEL,
    cells: Annotated[bool, typer.Option(help="Segment and classify every cell.")] = True,
    nucleus_method: Annotated[
        str, typer.Option(help="Nuclei for the cells: classical or model.")
    ] = "classical",
    min_confidence: Annotated[
        float,
        typer.Option(
            help="Keep cell boxes above this nucleolar-call confidence (0-1).",
            callback=at_least(0.0, at_most=1.0),
        ),
    ] = 0.7,
    panels: Annotated[bool, typer.Option(help="Write the 2x2 channel panel per image.")] = False,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N samples (N >= 1).", callback=at_least(1))
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier run's results in --out.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Localize the protein in every HPA sample of a folder; per cell too.

    Writes ``images.csv`` (one row per image: predicted classes, 28
    probabilities, ``signal``: False for an image without signal, which gets
    no label), ``cells.csv`` (one row per cell: box, classes, the nucleolar
    call and its confidence), ``boxes.csv`` and ``voc/<id>.xml`` (confident
    cell boxes, Pascal VOC), ``composite/<id>.png``, ``overlays/<id>.png``
    (boxes on the composite) and ``report.html``. A sample that cannot be
    read or classified is listed in ``failures.csv`` and the report; the
    others are classified, and the command exits with code 1.
    """
    import warnings

    import pandas as pd
    from rich.console import Console

    from cytolens.classify.cells import NUCLEUS_METHODS
    from cytolens.classify.display import channel_panel, composite_png
    from cytolens.classify.model import LocalizationModel
    from cytolens.classify.steps import CELL_TABLE
    from cytolens.core.batch import exit_if_failed, report_failures, run_batch, write_failures
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.detect.annotations import write_boxes_csv, write_voc
    from cytolens.io import hpa_composite, hpa_sample_ids, imwrite, read_hpa
    from cytolens.models.applicability import OutOfDomainWarning, out_of_domain_note
    from cytolens.models.check import at_chance_note
    from cytolens.pipeline import Item, make_step
    from cytolens.report import Report, draw_boxes

    if nucleus_method not in NUCLEUS_METHODS:
        raise InputError(
            f"--nucleus-method {nucleus_method!r}: expected one of {', '.join(NUCLEUS_METHODS)}"
        )
    ids = hpa_sample_ids(folder)[:limit]
    if not ids:
        raise InputError(f"{folder}: no HPA sample (<id>_blue.png|tif|jpg) found")
    m = LocalizationModel.load(model, device=device)
    # the same step and parameters as a pipeline's classify.localization
    step = make_step(
        "classify.localization",
        {"model": model, "cells": cells, "nucleus_method": nucleus_method, "device": device},
        where="options",
    )
    model_dir = Path(model)
    protected = [folder, *([model_dir] if model_dir.is_dir() else [])]
    prepare_output_dir(out, protected=protected, overwrite=overwrite)

    def classify_one(sid: str) -> tuple[dict[str, Any], Any, Any]:
        # everything is computed before anything is written: a failing sample leaves no file
        img = read_hpa(folder, sid)
        item = Item(folder / sid, sid, img)
        with warnings.catch_warnings():  # reported once for the whole run below
            warnings.simplefilter("ignore", OutOfDomainWarning)
            step.run(item)
        row: dict[str, Any] = {"id": sid, **item.row}
        table = boxes = overlay = None
        if cells:
            table = item.tables[CELL_TABLE].drop(columns="image")
            boxes = _cell_boxes(table, min_confidence)
            overlay = draw_boxes(hpa_composite(img), boxes)
        composite_png(img, out / "composite" / f"{sid}.png")
        if panels:
            channel_panel(img, out / "panels" / f"{sid}.png", title=sid)
        if cells:
            h, w = img.shape[1:]
            write_voc(boxes, out / "voc" / f"{sid}.xml", filename=f"{sid}.png", width=w,
                      height=h, depth=3)  # fmt: skip
            imwrite(out / "overlays" / f"{sid}.png", overlay, axes="YXC")
            table = table.assign(id=sid)
            boxes = boxes.assign(filename=f"{sid}.png", width=w, height=h)
        return row, table, boxes

    result = run_batch(ids, classify_one, description="classifying", progress=not as_json)
    image_rows = [r[0] for r in result.results]
    cell_tables = [r[1] for r in result.results if r[1] is not None]
    box_tables = [r[2] for r in result.results if r[2] is not None]
    images = pd.DataFrame(image_rows) if image_rows else pd.DataFrame(columns=["id"])
    with atomic_path(out / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    written = {"images.csv"}
    if cells and cell_tables:
        per_cell = pd.concat(cell_tables, ignore_index=True)
        per_cell = per_cell[["id", *[c for c in per_cell.columns if c != "id"]]]
        with atomic_path(out / "cells.csv") as tmp:
            per_cell.to_csv(tmp, index=False)
        write_boxes_csv(pd.concat(box_tables, ignore_index=True), out / "boxes.csv")
        written |= {"cells.csv", "boxes.csv"}
    write_failures(out, result.failures)  # also removes an earlier run's (--overwrite)
    _stale(out, ["cells.csv", "boxes.csv"], written)

    no_signal = [r for r in image_rows if not r["signal"]]
    notes = [out_of_domain_note(image_rows, m.name, key="id"), at_chance_note(m.card)]
    notes = [n for n in notes if n]
    for note in notes:
        Console(stderr=True).print(note, highlight=False)
    report = Report("HPA protein localization")
    report.text(
        f"{len(image_rows)} sample(s) from {folder} classified with model {m.name} "
        f"(28 classes, per-class thresholds from the model card). "
        + (
            f"{sum(r['cells'] for r in image_rows)} cells segmented; boxes show cells whose "
            f"nucleolar call has confidence above {min_confidence}."
            if cells
            else ""
        )
        + f" The model was trained on a tiny set (see `cytolens models show {m.name}`)."
    )
    for note in notes:
        report.text(note)
    if no_signal:
        report.text(
            f"{len(no_signal)} sample(s) without signal got no label: "
            + "; ".join(f"{r['id']} ({r['no_signal']})" for r in no_signal)
            + "."
        )
    if image_rows:
        report.heading("Images")
        cols = [
            "id",
            "labels",
            "signal",
            "nucleolar_probability",
            *(["cells", "cells_nucleoli"] if cells else []),
            *[c for c in ("labels_at_chance", "ood_score", "in_domain") if c in images],
        ]
        report.table(images[cols].to_dict("records"))
    if cells and image_rows:
        report.heading("Cells (first overlays)")
        shown = {f"{r['id'][:18]}: {r['cells_nucleoli']}/{r['cells']} nucleoli": None
                 for r in image_rows[:REPORT_OVERLAYS]}  # fmt: skip
        figs = _overlay_figures(out, [r["id"] for r in image_rows[:REPORT_OVERLAYS]], list(shown))
        for fig in figs:
            report.figure(
                fig, "Cell boxes on the composite: Nucleoli / Not Nucleoli and confidence."
            )
    report_failures(report, result.failures)
    report.save(out / "report.html")
    if as_json:
        failures = [f.__dict__ for f in result.failures]
        summary = {"out": str(out), "images": image_rows, "failures": failures}
        typer.echo(strict_json({**summary, "warnings": notes} if notes else summary))
    else:
        Console().print(
            f"classified {len(image_rows)} sample(s)"
            + (f" ({len(no_signal)} without signal, no label)" if no_signal else "")
            + f"; tables {out / 'images.csv'}"
            + (f", {out / 'cells.csv'}" if cells and cell_tables else "")
            + f"; report {out / 'report.html'}",
            highlight=False,
        )
    exit_if_failed(result, out)


def _overlay_figures(out: Path, ids: list[str], titles: list[str]) -> list[Any]:
    from PIL import Image as PILImage

    from cytolens.report import image_panel

    figs = []
    for start in range(0, len(ids), 4):
        chunk = {}
        for sid, title in zip(ids[start : start + 4], titles[start : start + 4], strict=True):
            with PILImage.open(out / "overlays" / f"{sid}.png") as im:
                chunk[title] = np.asarray(im.convert("RGB"))
        figs.append(image_panel(chunk, ncols=4))
    return figs


@app.command("train")
def train_command(
    folder: Annotated[Path, typer.Argument(help="Folder of HPA <id>_red|green|blue|yellow files.")],
    labels: Annotated[Path, typer.Option(help="CSV with columns Id,Target (Kaggle train.csv).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output model folder (written as named; load it by this path)."
        ),
    ],
    model: Annotated[
        str, typer.Option(help="Model to fine-tune (name or folder; 'none' from scratch).")
    ] = DEFAULT_MODEL,
    steps: Annotated[int, typer.Option(help="Optimizer steps.", callback=at_least(1))] = 600,
    batch_size: Annotated[int, typer.Option(help="Examples per step.", callback=at_least(1))] = 32,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate (default 1e-3 fine-tune, 3e-3 new).", callback=positive),
    ] = None,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Images held out (stratified) to tune thresholds and score; between 0 and 1."
        ),
    ] = 0.15,
    cell_fraction: Annotated[
        float,
        typer.Option(
            help="Share of masked cell-crop examples (0-1).", callback=at_least(0.0, at_most=1.0)
        ),
    ] = 0.25,
    cache: Annotated[
        bool | None, typer.Option(help="Keep images in memory (default: when <= 2000 images).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="DataLoader worker processes.", callback=non_negative)
    ] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads.", callback=at_least(1))] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and weights.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier model in --out.")] = False,
) -> None:
    """Fine-tune (or train) the localization CNN on your own HPA-format folder and labels CSV.

    Images are read from disk per example (a torch Dataset), so folders of
    any size work (the 31,000-image competition set included). Thresholds are
    tuned on the held-out images. Writes the model folder ``--out`` exactly
    as named (weights.pt, card.yaml and ``validation.csv``: per-class F1 and
    support), for ``cytolens classify hpa --model FOLDER``; the card's name is
    the folder's name in lowercase with other characters than ``a-z0-9-``
    replaced by ``-``. Every labelled sample must have its four channel files.
    """
    if not 0 < val_fraction < 1:
        raise InputError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")

    import time

    from rich.console import Console

    from cytolens.classify.hpa import CLASS_NAMES, read_labels, targets_to_matrix
    from cytolens.classify.model import LocalizationModel
    from cytolens.classify.network import HPANet
    from cytolens.classify.train import (
        HPADataset,
        TrainConfig,
        card_parameters,
        card_training,
        fit_thresholds,
        predict_probabilities,
        stratified_split,
        train_network,
    )
    from cytolens.core.files import prepare_output_dir
    from cytolens.evaluate import classification_scores, per_class_f1
    from cytolens.io.hpa import hpa_missing_channels
    from cytolens.models import card_name_for, make_card, save_model

    base = None if model == "none" else LocalizationModel.load(model, device="cpu")
    table = read_labels(labels)
    if table.empty:
        raise InputError(f"{labels}: no sample listed (only the header); expected 'Id,Target' rows")
    missing = hpa_missing_channels(folder, list(table["id"]))
    if missing:
        row = int(table.index[table["id"] == next(iter(missing))][0])
        sid, colours = table["id"][row], missing[table["id"][row]]
        raise InputError(
            f"{labels} row {row + 2}: sample {sid!r} has no {'/'.join(colours)} channel file in "
            f"{folder} (e.g. {folder / f'{sid}_{colours[0]}.png'}); {len(missing)} of "
            f"{len(table)} labelled sample(s) lack files: keep only the rows of the samples "
            "you have"
        )
    if len(table) < 4:
        raise InputError(f"{labels}: only {len(table)} labelled sample(s); at least 4 are needed")
    y = targets_to_matrix(table["classes"])
    part = stratified_split(y, [1 - val_fraction, val_fraction], seed=seed)
    ids = list(table["id"])
    tr, va = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    if not len(tr) or not len(va):
        raise InputError(
            f"--val-fraction {val_fraction} leaves {len(tr)} training and {len(va)} held-out "
            f"image(s) of {len(ids)}; both need at least one"
        )
    model_dir = Path(model)
    protected = [folder, labels, *([model_dir] if model_dir.is_dir() else [])]
    prepare_output_dir(out, protected=protected, overwrite=overwrite)
    name = card_name_for(out, default="hpa-custom")
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr or (1e-3 if base else 3e-3),
        scale=base.scale if base else 0.5,
        cell_fraction=cell_fraction,
        seed=seed,
        threads=threads,
        workers=workers,
    )
    store: dict[str, Any] | bool = (
        {} if (cache if cache is not None else len(ids) <= 2000) else False
    )

    def dataset(rows: np.ndarray) -> HPADataset:
        return HPADataset(folder, [ids[i] for i in rows], y[rows], crop=cfg.crop, scale=cfg.scale,
                          cell_fraction=cfg.cell_fraction, cache=store, seed=seed)  # fmt: skip

    start = time.perf_counter()
    with progress_bar() as bar:
        if store is not False:  # read every image once now: a bad file stops before training
            everything = dataset(np.arange(len(ids)))
            task = bar.add_task("reading images", total=len(ids))
            for i in range(len(ids)):
                everything.load(i)
                bar.advance(task)
            bar.remove_task(task)
        task = bar.add_task("training", total=cfg.steps)

        def show(step: int, loss: float) -> None:
            bar.update(task, completed=step, description=f"training (loss {loss:.3f})")

        net = train_network(
            dataset(tr), cfg, network=base.network if base else HPANet(), progress=show
        )
    p_va = predict_probabilities(net, dataset(va))
    thresholds, default = fit_thresholds(p_va, y[va])
    pred = p_va >= thresholds[None, :]
    metrics = classification_scores(y[va], pred)
    per_class = per_class_f1(y[va], pred, class_names=CLASS_NAMES)
    per_class["train_support"] = y[tr].sum(0)
    per_class["threshold"] = thresholds
    rule = "max F1 per class on the held-out images (tuned and scored on them)"
    card = make_card(
        name=name,
        task="multi-label protein localization (28 HPA classes)",
        architecture="HPANet (cytolens.classify.network)",
        input_axes="CYX",
        network={
            "entry_point": "cytolens.classify.network:HPANet",
            "kwargs": {"in_channels": 4, "n_classes": 28},
        },
        training_data=[f"{len(tr)} images of {folder} labelled by {labels}"],
        training_command=f"cytolens classify train (from {model})",
        normalization={"kind": "dtype_range", "description": "channel / dtype max"},
        parameters=card_parameters(cfg, thresholds, default, rule),
        training=card_training(cfg, default, rule),
        metrics={
            "held_out": {**metrics, "images": len(va), "note": "thresholds tuned on these images"},
            "train_s": round(time.perf_counter() - start, 1),
        },
    )
    folder_out = save_model(
        net.state_dict(), card, folder=out, tables={"validation.csv": per_class}
    )
    Console().print(
        f"trained on {len(tr)} images ({time.perf_counter() - start:.0f} s); held-out "
        f"({len(va)} images) macro F1 {metrics['macro_f1']:.3f}, micro F1 "
        f"{metrics['micro_f1']:.3f}; model folder {folder_out} (model name {name})",
        highlight=False,
    )


# cell phenotypes (cytolens.phenotype): `cytolens classify train-cells|cells`
from cytolens.phenotype.cli import cells_command, train_cells_command  # noqa: E402

app.command("train-cells")(train_cells_command)
app.command("cells")(cells_command)
