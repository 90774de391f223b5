"""``cytolens classify hpa|train``: protein localization of HPA folders, and fine-tuning.

Commands parse arguments, read files, call :mod:`cytolens.classify` and write
results atomically; errors are one line (see :mod:`cytolens.cli`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.classify.model import DEFAULT_MODEL
from cytolens.core.errors import InputError
from cytolens.core.progress import progress_bar

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
    """Box table (class, xmin, ymin, xmax, ymax, score) of the confident cells."""
    keep = cells[cells["confidence"] > min_confidence]
    return keep.assign(**{"class": keep["nucleolar"], "score": keep["confidence"]})[
        ["class", "xmin", "ymin", "xmax", "ymax", "score"]
    ].reset_index(drop=True)


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
        float, typer.Option(help="Keep cell boxes above this nucleolar-call confidence.")
    ] = 0.7,
    panels: Annotated[bool, typer.Option(help="Write the 2x2 channel panel per image.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Localize the protein in every HPA sample of a folder; per cell too.

    Writes ``images.csv`` (one row per image: predicted classes, 28
    probabilities), ``cells.csv`` (one row per cell: box, classes, the
    nucleolar call and its confidence), ``boxes.csv`` and ``voc/<id>.xml``
    (confident cell boxes, Pascal VOC), ``composite/<id>.png``,
    ``overlays/<id>.png`` (boxes on the composite) and ``report.html``.
    """
    import pandas as pd
    from rich.console import Console

    from cytolens.classify.display import channel_panel, composite_png
    from cytolens.classify.model import LocalizationModel, classify_cells, localization
    from cytolens.core.files import atomic_path
    from cytolens.detect.annotations import write_boxes_csv, write_voc
    from cytolens.io import hpa_composite, hpa_sample_ids, imwrite, read_hpa
    from cytolens.report import Report, draw_boxes

    ids = hpa_sample_ids(folder)[:limit]
    if not ids:
        raise InputError(f"{folder}: no HPA sample (<id>_blue.png|tif|jpg) found")
    if out.resolve() == folder.resolve():
        raise InputError(f"--out {out} is the input folder; choose another folder")
    m = LocalizationModel.load(model, device=device)
    out.mkdir(parents=True, exist_ok=True)
    image_rows: list[dict[str, Any]] = []
    cell_tables, box_tables = [], []
    with progress_bar() as bar:
        task = bar.add_task("classifying", total=len(ids))
        for sid in ids:
            img = read_hpa(folder, sid)
            res = localization(img, model=m)
            row: dict[str, Any] = {"id": sid, **res.summary()}
            composite_png(img, out / "composite" / f"{sid}.png")
            if panels:
                channel_panel(img, out / "panels" / f"{sid}.png", title=sid)
            if cells:
                table, _, _ = classify_cells(img, model=m, nucleus_method=nucleus_method)
                boxes = _cell_boxes(table, min_confidence)
                h, w = img.shape[1:]
                write_voc(boxes, out / "voc" / f"{sid}.xml", filename=f"{sid}.png", width=w,
                          height=h, depth=3)  # fmt: skip
                (out / "overlays").mkdir(exist_ok=True)
                overlay = draw_boxes(hpa_composite(img), boxes)
                imwrite(out / "overlays" / f"{sid}.png", overlay, axes="YXC")
                row["cells"] = len(table)
                row["cells_nucleoli"] = int((table["nucleolar"] == "Nucleoli").sum())
                cell_tables.append(table.assign(id=sid))
                box_tables.append(boxes.assign(filename=f"{sid}.png", width=w, height=h))
            image_rows.append(row)
            bar.update(task, advance=1, description=f"classifying {sid[:24]}")
    images = pd.DataFrame(image_rows)
    with atomic_path(out / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    if cells:
        per_cell = pd.concat(cell_tables, ignore_index=True)
        per_cell = per_cell[["id", *[c for c in per_cell.columns if c != "id"]]]
        with atomic_path(out / "cells.csv") as tmp:
            per_cell.to_csv(tmp, index=False)
        write_boxes_csv(pd.concat(box_tables, ignore_index=True), out / "boxes.csv")

    report = Report("HPA protein localization")
    report.text(
        f"{len(ids)} sample(s) from {folder} classified with model {m.name} "
        f"(28 classes, per-class thresholds from the model card). "
        + (
            f"{sum(r['cells'] for r in image_rows)} cells segmented; boxes show cells whose "
            f"nucleolar call has confidence above {min_confidence}."
            if cells
            else ""
        )
        + f" The model was trained on a tiny set (see `cytolens models show {m.name}`)."
    )
    report.heading("Images")
    cols = [
        "id",
        "labels",
        "nucleolar_probability",
        *(["cells", "cells_nucleoli"] if cells else []),
    ]
    report.table(images[cols].to_dict("records"))
    if cells:
        report.heading("Cells (first overlays)")
        shown = {f"{r['id'][:18]}: {r['cells_nucleoli']}/{r['cells']} nucleoli": None
                 for r in image_rows[:REPORT_OVERLAYS]}  # fmt: skip
        figs = _overlay_figures(out, [r["id"] for r in image_rows[:REPORT_OVERLAYS]], list(shown))
        for fig in figs:
            report.figure(
                fig, "Cell boxes on the composite: Nucleoli / Not Nucleoli and confidence."
            )
    report.save(out / "report.html")
    if as_json:
        typer.echo(json.dumps({"out": str(out), "images": image_rows}, default=str))
    else:
        Console().print(
            f"classified {len(ids)} sample(s); tables {out / 'images.csv'}"
            + (f", {out / 'cells.csv'}" if cells else "")
            + f"; report {out / 'report.html'}"
        )


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
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model folder.")],
    model: Annotated[
        str, typer.Option(help="Model to fine-tune (name or folder; 'none' from scratch).")
    ] = DEFAULT_MODEL,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 600,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 32,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default 1e-3 fine-tune, 3e-3 new).")
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Images held out (stratified) to tune thresholds and score.")
    ] = 0.15,
    cell_fraction: Annotated[
        float, typer.Option(help="Share of masked cell-crop examples.")
    ] = 0.25,
    cache: Annotated[
        bool | None, typer.Option(help="Keep images in memory (default: when <= 2000 images).")
    ] = None,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the split, sampling and weights.")] = 0,
) -> None:
    """Fine-tune (or train) the localization CNN on your own HPA-format folder and labels CSV.

    Images are read from disk per example (a torch Dataset), so folders of
    any size work (the 31,000-image competition set included). Thresholds are
    tuned on the held-out images. Writes a model folder (weights.pt +
    card.yaml) for ``cytolens classify hpa --model FOLDER``, and
    ``validation.csv`` (per-class F1 and support) in it.
    """
    import time

    from rich.console import Console

    from cytolens.classify.hpa import CLASS_NAMES, read_labels, targets_to_matrix
    from cytolens.classify.model import LocalizationModel
    from cytolens.classify.network import HPANet
    from cytolens.classify.train import (
        HPADataset,
        TrainConfig,
        card_parameters,
        fit_thresholds,
        predict_probabilities,
        stratified_split,
        train_network,
    )
    from cytolens.core.files import atomic_path
    from cytolens.evaluate import classification_scores, per_class_f1
    from cytolens.io import hpa_sample_ids
    from cytolens.models import ModelCard, save_model

    table = read_labels(labels)
    present = set(hpa_sample_ids(folder))
    missing = [i for i in table["id"] if i not in present]
    table = table[table["id"].isin(present)].reset_index(drop=True)
    if len(table) < 4:
        raise InputError(
            f"{labels}: only {len(table)} labelled sample(s) have files in {folder} "
            f"(e.g. missing {missing[:3]}); at least 4 are needed"
        )
    if missing:
        typer.echo(f"warning: {len(missing)} labelled id(s) have no files in {folder}", err=True)
    if not 0 < val_fraction < 1:
        raise InputError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    name = re.sub(r"[^a-z0-9-]+", "-", out.name.lower()).strip("-") or "hpa-custom"
    target = out.parent / name
    if (target / "weights.pt").exists() and target.resolve() == Path(str(model)).resolve():
        raise InputError(f"--out {out} would overwrite the model being fine-tuned")
    y = targets_to_matrix(table["classes"])
    part = stratified_split(y, [1 - val_fraction, val_fraction], seed=seed)
    ids = list(table["id"])
    tr, va = np.flatnonzero(part == 0), np.flatnonzero(part == 1)
    base = None if model == "none" else LocalizationModel.load(model, device="cpu")
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
    card = ModelCard(
        name=name,
        version="1.0.0",
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
        parameters=card_parameters(
            cfg,
            thresholds,
            default,
            "max F1 per class on the held-out images (tuned and scored on them)",
        ),
        metrics={
            "held_out": {**metrics, "images": len(va), "note": "thresholds tuned on these images"},
            "train_s": round(time.perf_counter() - start, 1),
        },
    )
    folder_out = save_model(net.state_dict(), card, root=out.parent)
    with atomic_path(folder_out / "validation.csv") as tmp:
        per_class.to_csv(tmp, index=False)
    Console().print(
        f"trained on {len(tr)} images ({time.perf_counter() - start:.0f} s); held-out "
        f"({len(va)} images) macro F1 {metrics['macro_f1']:.3f}, micro F1 "
        f"{metrics['micro_f1']:.3f}; model folder {folder_out}"
    )
