"""``cytolens detect convert|train|predict``: boxes from LabelImg annotations to predictions.

Commands parse arguments, check models, inputs and outputs before any work,
call :mod:`cytolens.detect` and write results atomically (``predict``
computes each image's boxes with the pipeline step ``detect.boxes``, the
same parameters a pipeline YAML accepts); errors are one line
(see :mod:`cytolens.cli`). Outputs never replace an input: not the images,
not the annotation files next to them (LabelImg's default place), not an
annotation file that cytolens did not write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.core.errors import InputError
from cytolens.core.options import at_least
from cytolens.core.progress import progress_bar

__all__ = ["app"]

app = typer.Typer(
    help="Detect objects with boxes; convert and train on LabelImg / Pascal VOC annotations.",
    no_args_is_help=True,
)

#: Overlays shown in report.html (all are written to the output folder).
REPORT_OVERLAYS = 24
#: Files that may hold annotations next to images.
ANNOTATION_SUFFIXES = (".xml", ".csv", ".json")

OVERWRITE_HELP = "Allow an --out folder that holds an earlier run's results (replaced)."


class Format(str, Enum):
    """Annotation formats ``convert`` writes."""

    csv = "csv"
    voc = "voc"
    coco = "coco"


@contextmanager
def _remove_if_failed(path: Path) -> Iterator[None]:
    """On failure, remove ``path`` and the parents made for it if they are still empty."""
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for p in made:  # deepest first; a folder that holds anything stays
            try:
                p.rmdir()
            except OSError:
                break
        raise


def _files(
    paths: Iterable[Path], suffixes: tuple[str, ...] | None = ANNOTATION_SUFFIXES
) -> list[Path]:
    """The files among ``paths``, with the files (of ``suffixes``) of the folders among them."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += [
                f
                for f in p.iterdir()
                if (suffixes is None or f.suffix.lower() in suffixes) and f.is_file()
            ]
        else:
            found.append(p)
    return found


def _written_by_cytolens(path: Path) -> bool:
    """Whether a VOC file was written by :func:`~cytolens.detect.write_voc` (an earlier result)."""
    import xml.etree.ElementTree as ET

    try:
        return ET.parse(path).getroot().findtext("source/database") == "cytolens"
    except (ET.ParseError, OSError, ValueError):
        return False


def _foreign_annotations(folder: Path) -> list[Path]:
    """VOC files in an output folder that cytolens did not write: never overwritten."""
    if not folder.is_dir():
        return []
    return [p for p in folder.glob("*.xml") if not _written_by_cytolens(p)]


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
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
) -> None:
    """Convert box annotations between Pascal VOC XML, CSV and COCO JSON (validated)."""
    from cytolens.core.files import check_output_file, prepare_output_dir
    from cytolens.detect.annotations import (
        read_annotations,
        validate_boxes,
        write_boxes_csv,
        write_coco,
        write_voc,
    )

    protected = [*inputs, *_files(inputs)]
    if images is not None:
        protected += [images, *_files([images], suffixes=None)]
    with _remove_if_failed(out if to is Format.voc else out.parent):
        if to is Format.voc:
            protected += _foreign_annotations(out)
            prepare_output_dir(out, protected=protected, overwrite=overwrite)
        else:
            check_output_file(out, protected=protected)
        table = read_annotations(inputs, images=images)
        if table.empty:
            raise InputError(f"no boxes in {', '.join(map(str, inputs))}")
        table, problems = validate_boxes(table, strict=strict, source=str(inputs[0]))
        if to is Format.csv:
            write_boxes_csv(table, out)
        elif to is Format.coco:
            write_coco(table, out)
        else:
            stems = table["filename"].map(lambda f: Path(str(f)).stem)
            pairs = table.assign(stem=stems).drop_duplicates(["stem", "filename"])
            clash = pairs[pairs["stem"].duplicated(keep=False)]
            if len(clash):
                raise InputError(
                    f"images {sorted(clash['filename'])} would share one VOC file "
                    f"{clash['stem'].iloc[0]}.xml; convert them apart (e.g. --to csv)"
                )
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
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output model folder (written as named; load it by this path)."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(help="Model to fine-tune (default: detect-bccd-v1; 'none' from scratch)."),
    ] = "detect-bccd-v1",
    steps: Annotated[int, typer.Option(help="Optimizer steps.", callback=at_least(1))] = 500,
    batch_size: Annotated[int, typer.Option(help="Images per step.", callback=at_least(1))] = 8,
    scale: Annotated[
        float | None,
        typer.Option(
            help="Resize factor before the network (default: model's).",
            callback=at_least(0.05, at_most=4.0),
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads.", callback=at_least(1))] = 2,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
) -> None:
    """Train or fine-tune a detector on your own LabelImg annotations; writes a model folder.

    The folder (weights.pt + card.yaml) is written exactly where ``--out``
    says and used with ``predict --model FOLDER``.
    """
    import time

    import pandas as pd

    from cytolens.core.files import prepare_output_dir
    from cytolens.detect.annotations import read_annotations
    from cytolens.detect.model import Detector
    from cytolens.detect.train import (
        NORMALIZATION,
        TrainConfig,
        card_parameters,
        card_training,
        fit_score_pivots,
        load_examples,
        train_detector,
    )
    from cytolens.io import imread
    from cytolens.models import card_name_for, make_card, save_model

    # the base model and the annotations first: a wrong model or file fails before any output
    base = None if model in (None, "none") else Detector.load(model, device="cpu")
    table = read_annotations(annotations, images=images)
    if table.empty:
        raise InputError(f"no boxes in {', '.join(map(str, annotations))}")
    protected: list[Path] = [images, *annotations, *_files(annotations)]
    if model is not None and Path(model).is_dir():
        protected.append(Path(model))
    with _remove_if_failed(out):
        prepare_output_dir(out, protected=protected, overwrite=overwrite)
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
                bar.update(
                    task, completed=step, description=f"training (loss {losses['loss']:.3f})"
                )

            net = train_detector(
                examples,
                classes,
                config=cfg,
                initial=base.net if base else None,
                initial_classes=base.classes if base else None,
                progress=show,
            )
        card = make_card(
            name=card_name_for(out, default="detector"),
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
            training=card_training(cfg),
            metrics={"train_s": round(time.perf_counter() - start, 1)},
        )
        # score pivots: raw score of best F1 on these training images -> 0.7 at prediction
        tuned = Detector.from_network(net, card)
        preds = []
        for filename in table["filename"].unique():
            path = images / Path(str(filename)).name
            pred = tuned.predict(imread(path), min_score=0.01, name=str(path))
            preds.append(pred.assign(filename=filename))
        pivots = fit_score_pivots(pd.concat(preds, ignore_index=True), table, classes)
        card = card.model_copy(update={"parameters": {**card.parameters, "score_pivots": pivots}})
        folder = save_model(net.state_dict(), card, folder=out)
    typer.echo(f"trained on {len(examples)} image(s), classes {classes}; model in {folder}")


def _image_size(image: Any) -> tuple[int, int, int]:
    """Height, width and number of channels of an :class:`~cytolens.core.image.Image`."""
    import numpy as np

    shape = np.shape(image.data)
    if image.axes == "CYX":
        return shape[1], shape[2], shape[0]
    return shape[0], shape[1], 1 if len(shape) == 2 else shape[-1]


@app.command("predict")
def predict_command(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[
        str, typer.Option(help="Shipped model name or a folder written by 'detect train'.")
    ] = "detect-bccd-v1",
    min_score: Annotated[
        float,
        typer.Option(
            "--min-score",
            help="Keep boxes at or above this confidence (0 to 1).",
            callback=at_least(0.0, at_most=1.0),
        ),
    ] = 0.7,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    report: Annotated[bool, typer.Option(help="Write report.html with overlays.")] = True,
    geojson: Annotated[
        bool,
        typer.Option("--geojson", help="Also write NAME.geojson per image: the boxes for QuPath."),
    ] = False,
    roi: Annotated[
        bool,
        typer.Option(
            "--roi", help="Also write NAME_rois.zip per image: the boxes as an ImageJ/Fiji ROI set."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Detect objects: boxes.csv (all images), per image a VOC .xml (open it in LabelImg
    to correct the boxes) and an overlay PNG, and report.html.

    With --geojson, each image's boxes also go to NAME.geojson (QuPath
    detections: one rectangle per box, pixel coordinates, class and score);
    with --roi, to NAME_rois.zip (Fiji's ROI Manager: one rectangle per box,
    named CLASS-k in the order of boxes.csv; an empty set for an image
    without boxes).
    An image that cannot be read or processed fails alone: it is listed in
    failures.csv and the report, the others are done, and the exit code is 1.
    """
    import warnings

    import pandas as pd

    from cytolens.core.batch import exit_if_failed, report_failures, run_batch, write_failures
    from cytolens.core.files import prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.detect.annotations import COLUMNS, write_boxes_csv, write_voc
    from cytolens.detect.model import Detector
    from cytolens.detect.steps import BOX_TABLE
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.io.interop import write_geojson, write_imagej_rois
    from cytolens.models.applicability import OutOfDomainWarning, out_of_domain_note
    from cytolens.pipeline import Item, make_step
    from cytolens.report import draw_boxes

    paths = find_images(images)
    det = Detector.load(model, device=device)
    # the same step and parameters as a pipeline's detect.boxes
    step = make_step(
        "detect.boxes",
        {"model": model, "min_score": min_score, "device": device},
        where="options",
    )
    # never write over the images, the annotations beside them (LabelImg saves its .xml
    # there) or annotation files in --out that cytolens did not write
    protected = [
        *paths,
        *_files(Path(i) for i in images if Path(i).is_dir()),
        *(p.with_suffix(s) for p in paths for s in ANNOTATION_SUFFIXES),
        *_foreign_annotations(out),
    ]
    if Path(model).is_dir():
        protected.append(Path(model))
    with _remove_if_failed(out):
        prepare_output_dir(out, protected=[p for p in protected if p.exists()], overwrite=overwrite)
    (out / "failures.csv").unlink(missing_ok=True)  # an earlier run's list would mislead

    def process(item: tuple[Path, str]) -> tuple[pd.DataFrame, dict[str, Any], Path]:
        path, name = item
        overlay, xml = out / f"{name}_boxes.png", out / f"{name}.xml"
        shapes = out / f"{name}.geojson" if geojson else None
        rois = out / f"{name}_rois.zip" if roi else None
        try:
            image = imread(path)
            each = Item(path, name, image)
            with warnings.catch_warnings():  # reported once for the whole run below
                warnings.simplefilter("ignore", OutOfDomainWarning)
                step.run(each)
            boxes = each.tables[BOX_TABLE].drop(columns="image")
            height, width, depth = _image_size(image)
            imwrite(overlay, draw_boxes(image, boxes), axes="YXC")
            write_voc(boxes, xml, filename=path.name, width=width, height=height, depth=depth)
            if shapes is not None:
                write_geojson(shapes, boxes=boxes)
            if rois is not None:  # an empty set for an image without boxes
                write_imagej_rois(rois, boxes=boxes, empty_ok=True)
        except BaseException:  # no half set of files (nor an earlier run's) for a failed image
            for written in (overlay, xml, shapes, rois):
                if written is not None:
                    written.unlink(missing_ok=True)
            raise
        counted = ("boxes", *(f"n {c}" for c in det.classes))
        row = {
            "image": path.name,
            **{k: each.row[k] for k in counted},
            **({"geojson": shapes.name} if shapes is not None else {}),
            **({"rois": rois.name} if rois is not None else {}),
            **{k: v for k, v in each.row.items() if k not in counted},  # applicability
        }
        return boxes.assign(filename=path.name, width=width, height=height), row, overlay

    items = list(zip(paths, output_stems(paths), strict=True))
    result = run_batch(items, process, name=lambda it: str(it[0]), description="detecting")
    tables = [r[0] for r in result.results]
    rows = [r[1] for r in result.results]
    combined = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=[*COLUMNS, "score"])
    )
    write_boxes_csv(combined, out / "boxes.csv")
    failures_csv = write_failures(out, result.failures)
    summary: dict[str, Any] = {
        "images": rows,
        "csv": str(out / "boxes.csv"),
        "failed": [f.__dict__ for f in result.failures],
    }
    if failures_csv is not None:
        summary["failures_csv"] = str(failures_csv)
    note = out_of_domain_note(rows, det.name)
    if note:
        summary["warnings"] = [note]
        typer.echo(note, err=True)
    if report:
        from cytolens.report import Report

        rep = Report("Object detection")
        rep.text(
            f"Model {det.name} (classes {', '.join(det.classes)}); boxes with confidence >= "
            f"{min_score}. Each image's boxes are also in <image>.xml (Pascal VOC, for LabelImg)."
        )
        if note:
            rep.text(note)
        if rows:
            rep.table(rows)
        for _, row, png in result.results[:REPORT_OVERLAYS]:
            rep.figure(png, caption=row["image"])
        report_failures(rep, result.failures)
        summary["report"] = str(rep.save(out / "report.html"))
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(f"{len(combined)} boxes in {len(rows)} image(s); results in {out}")
    exit_if_failed(result, out)
