"""``cytolens detect convert|train|predict``: boxes from LabelImg annotations to predictions.

Commands parse arguments, read files, call :mod:`cytolens.detect` and write
results atomically; errors are one line (see :mod:`cytolens.cli`).
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.core.errors import InputError
from cytolens.core.progress import progress_bar

__all__ = ["app"]

app = typer.Typer(
    help="Detect objects with boxes; convert and train on LabelImg / Pascal VOC annotations.",
    no_args_is_help=True,
)

#: Overlays shown in report.html (all are written to the output folder).
REPORT_OVERLAYS = 24


class Format(str, Enum):
    """Annotation formats ``convert`` writes."""

    csv = "csv"
    voc = "voc"
    coco = "coco"


@app.command("convert")
def convert_command(
    inputs: Annotated[
        list[Path], typer.Argument(help="VOC .xml files or folders, a .csv or a COCO .json.")
    ],
    to: Annotated[Format, typer.Option(help="Output format.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file (.csv, .json) or folder (voc).")
    ],
    images: Annotated[
        Path | None, typer.Option(help="Image folder: check that every annotated image exists.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Fail on boxes outside the image instead of clipping them.")
    ] = False,
) -> None:
    """Convert box annotations between Pascal VOC XML, CSV and COCO JSON (validated)."""
    from cytolens.detect.annotations import (
        read_annotations,
        validate_boxes,
        write_boxes_csv,
        write_coco,
        write_voc,
    )

    table = read_annotations(inputs, images=images)
    if table.empty:
        raise InputError(f"no boxes in {', '.join(map(str, inputs))}")
    table, problems = validate_boxes(table, strict=strict, source=str(inputs[0]))
    if to is Format.csv:
        write_boxes_csv(table, out)
    elif to is Format.coco:
        write_coco(table, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        for filename, rows in table.groupby("filename", sort=True):
            first = rows.iloc[0]
            write_voc(
                rows,
                out / f"{Path(str(filename)).stem}.xml",
                filename=str(filename),
                width=int(first["width"]),
                height=int(first["height"]),
            )
    typer.echo(
        f"{len(table)} boxes of {table['filename'].nunique()} image(s) -> {out}"
        + (f" ({len(problems)} box(es) repaired or dropped; see the log)" if problems else "")
    )


@app.command("train")
def train_command(
    images: Annotated[Path, typer.Option(help="Folder of the annotated images.")],
    annotations: Annotated[
        list[Path], typer.Option(help="VOC .xml folder/files, a .csv or a COCO .json.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output model folder.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model to fine-tune (default: detect-bccd-v1; 'none' from scratch)."),
    ] = "detect-bccd-v1",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 500,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 8,
    scale: Annotated[
        float | None, typer.Option(help="Resize factor before the network (default: model's).")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads.")] = 2,
) -> None:
    """Train or fine-tune a detector on your own LabelImg annotations; writes a model folder.

    The folder (weights.pt + card.yaml) is used with ``predict --model FOLDER``.
    """
    import re
    import time

    import pandas as pd

    from cytolens.detect.annotations import read_annotations
    from cytolens.detect.model import Detector, _load_cached
    from cytolens.detect.train import (
        NORMALIZATION,
        TrainConfig,
        card_parameters,
        load_examples,
        train_detector,
    )
    from cytolens.models import ModelCard, save_model

    table = read_annotations(annotations, images=images)
    if table.empty:
        raise InputError(f"no boxes in {', '.join(map(str, annotations))}")
    base = None if model in (None, "none") else Detector.load(model, device="cpu")
    found = sorted(table["class"].unique())
    # classes the base model knows keep its head (and order); any new class -> new head
    classes = base.classes if base and set(found) <= set(base.classes) else found
    channels = base.in_channels if base else 3
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        scale=scale or (base.scale if base else 0.5),
        width=int(base.card.network["kwargs"]["width"]) if base else 16,
        threads=threads,
    )
    examples = load_examples(table, images, classes=classes, channels=channels, scale=cfg.scale)
    start = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("training", total=cfg.steps)

        def show(step: int, total: int, losses: dict[str, float]) -> None:
            bar.update(task, completed=step, description=f"training (loss {losses['loss']:.3f})")

        net = train_detector(
            examples,
            classes,
            config=cfg,
            initial=base.net if base else None,
            initial_classes=base.classes if base else None,
            progress=show,
        )
    name = re.sub(r"[^a-z0-9-]+", "-", out.name.lower()).strip("-") or "detector"
    card = ModelCard(
        name=name,
        version="1.0.0",
        task="object detection",
        architecture="CenterNet (cytolens.detect.network)",
        input_axes="YXC",
        network={
            "entry_point": "cytolens.detect.network:CenterNet",
            "kwargs": {"in_channels": channels, "n_classes": len(classes), "width": cfg.width},
        },
        training_data=[f"{len(examples)} images in {images}; annotations {annotations}"],
        training_command=f"cytolens detect train (fine-tuned from {model})"
        if base
        else "cytolens detect train (from scratch)",
        normalization=NORMALIZATION,
        parameters=card_parameters(classes, cfg),
        metrics={"train_s": round(time.perf_counter() - start, 1)},
    )
    # score pivots: raw score of best F1 on these training images -> 0.7 at prediction
    from cytolens.detect.train import fit_score_pivots
    from cytolens.io import imread

    tuned = Detector.from_network(net, card)
    preds = []
    for filename in table["filename"].unique():
        pred = tuned.predict(imread(images / filename), min_score=0.01)
        preds.append(pred.assign(filename=filename))
    pivots = fit_score_pivots(pd.concat(preds, ignore_index=True), table, classes)
    card = card.model_copy(update={"parameters": {**card.parameters, "score_pivots": pivots}})
    folder = save_model(net.state_dict(), card, root=out.parent)
    _load_cached.cache_clear()  # a folder loaded earlier may have been overwritten
    typer.echo(f"trained on {len(examples)} image(s), classes {classes}; model in {folder}")


@app.command("predict")
def predict_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[
        str, typer.Option(help="Shipped model name or a folder written by 'detect train'.")
    ] = "detect-bccd-v1",
    min_score: Annotated[
        float, typer.Option("--min-score", help="Keep boxes at or above this confidence.")
    ] = 0.7,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    report: Annotated[bool, typer.Option(help="Write report.html with overlays.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Detect objects: boxes.csv (all images), per image a VOC .xml (open it in LabelImg
    to correct the boxes) and an overlay PNG, and report.html.
    """
    import numpy as np
    import pandas as pd

    from cytolens.detect.annotations import write_boxes_csv, write_voc
    from cytolens.detect.model import Detector
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.report import draw_boxes

    paths = find_images(images)
    det = Detector.load(model, device=device)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {p.resolve() for p in paths}
    tables, rows, overlays = [], [], []
    with progress_bar() as bar:
        task = bar.add_task("detecting", total=len(paths))
        for path, name in zip(paths, output_stems(paths), strict=True):
            bar.update(task, description=f"detecting {path.name}")
            image = imread(path)
            boxes = det.predict(image, min_score=min_score, name=str(path))
            data = np.asarray(image.data)
            height, width = data.shape[:2] if image.axes != "CYX" else data.shape[1:]
            targets = {"xml": out / f"{name}.xml", "overlay": out / f"{name}_boxes.png"}
            clash = [t for t in targets.values() if t.resolve() in inputs]
            if clash:
                raise InputError(f"{clash[0]}: output would overwrite an input; choose --out")
            depth = (
                1 if data.ndim == 2 else (data.shape[-1] if image.axes != "CYX" else data.shape[0])
            )
            write_voc(
                boxes, targets["xml"], filename=path.name, width=width, height=height, depth=depth
            )
            imwrite(targets["overlay"], draw_boxes(image, boxes), axes="YXC")
            overlays.append((path.name, targets["overlay"]))
            table = boxes.assign(filename=path.name, width=width, height=height)
            tables.append(table)
            counts = boxes["class"].value_counts().to_dict()
            rows.append(
                {
                    "image": path.name,
                    "boxes": len(boxes),
                    **{f"n {c}": counts.get(c, 0) for c in det.classes},
                }
            )
            bar.advance(task)
    combined = pd.concat(tables, ignore_index=True)
    write_boxes_csv(combined, out / "boxes.csv")
    summary: dict[str, Any] = {"images": rows, "csv": str(out / "boxes.csv")}
    if report:
        from cytolens.report import Report

        rep = Report("Object detection")
        rep.text(
            f"Model {det.name} (classes {', '.join(det.classes)}); boxes with confidence >= "
            f"{min_score}. Each image's boxes are also in <image>.xml (Pascal VOC, for LabelImg)."
        )
        rep.table(rows)
        for image_name, png in overlays[:REPORT_OVERLAYS]:
            rep.figure(png, caption=image_name)
        summary["report"] = str(rep.save(out / "report.html"))
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        typer.echo(f"{len(combined)} boxes in {len(rows)} image(s); results in {out}")
