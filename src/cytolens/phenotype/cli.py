"""``cytolens classify train-cells`` and ``cytolens classify cells``: cell phenotype models.

The commands are mounted in :mod:`cytolens.classify.cli`; they parse arguments,
call :mod:`cytolens.phenotype` and write results atomically; errors are one
line (see :mod:`cytolens.cli`). ``cells`` on images runs the pipeline steps
``segment.nuclei`` (unless ``--labels``) and ``phenotype.classify`` on each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cytolens.core.errors import InputError
from cytolens.core.options import at_least

__all__ = ["cells_command", "train_cells_command"]

#: Nucleus segmenters for ``cells`` on raw images.
SEGMENTERS = ("model", "classical")


def _pretrained_encoder(source: str) -> Any:
    """Encoder weights: ``none``, a model name/folder (its pretrained or trained encoder)."""
    import torch

    if source == "none":
        return None
    from cytolens.models import _locate, load_state_dict, model_dir

    name, root = _locate(source, None)
    folder = model_dir(name, root=root)
    ssl = folder / "pretrained_encoder.pt"
    if ssl.is_file():
        return torch.load(ssl, map_location="cpu", weights_only=True)
    state = load_state_dict(name, root=root)
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if not enc:
        raise InputError(f"--pretrained {source}: the model has no crop encoder")
    return enc


def train_cells_command(
    crops: Annotated[
        Path, typer.Argument(help="Folder of class folders of crops, or a file,label CSV.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")] = Path(
        "phenotype-model"
    ),
    pretrained: Annotated[
        str,
        typer.Option(help="Start from this model's encoder (name or folder), or 'none'."),
    ] = "mitocheck-v1",
    steps: Annotated[int, typer.Option(help="Optimizer steps.", callback=at_least(1))] = 800,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of each class held out for validation.",
            callback=at_least(0.01, at_most=0.9),
        ),
    ] = 0.15,
    input_size: Annotated[
        int, typer.Option(help="Side (px) crops are resized to.", callback=at_least(16))
    ] = 32,
    normalization: Annotated[
        str, typer.Option(help="dtype_range (keeps brightness) or percentile (per crop).")
    ] = "dtype_range",
    seed: Annotated[int, typer.Option(help="Seed of the split and training.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads.", callback=at_least(1))] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train a cell phenotype classifier on labelled crops (transfer learning).

    Writes a model folder (``weights.pt``, ``card.yaml``, ``applicability.npz``)
    loadable with ``cytolens classify cells --model FOLDER``, and
    ``validation.csv`` (per-class F1 with support on the validation split).
    """
    from rich.console import Console

    from cytolens.core.devices import resolve_device
    from cytolens.core.files import prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.models import card_name_for
    from cytolens.phenotype.crops import read_crop_set
    from cytolens.phenotype.evaluation import classification_report
    from cytolens.phenotype.train import save_classifier, train_classifier

    cs = read_crop_set(crops)
    encoder = _pretrained_encoder(pretrained)
    protected = [crops, *([Path(pretrained)] if Path(pretrained).is_dir() else [])]
    prepare_output_dir(out, protected=protected, overwrite=overwrite)
    res = train_classifier(
        cs,
        val_fraction=val_fraction,
        encoder=encoder,
        steps=steps,
        input_size=input_size,
        normalization=normalization,
        seed=seed,
        threads=threads,
        name=card_name_for(out),
        progress=not as_json,
        device=str(resolve_device(device)),
    )
    clf = res.classifier
    val = cs.subset(res.val_index)
    report = classification_report(
        val.labels, clf.probabilities(clf.logits(val.crops)), cs.class_names
    )
    card_updates = {
        "training_data": [str(crops)],
        "training_command": f"cytolens classify train-cells {crops} --pretrained {pretrained} "
        f"--steps {steps} --seed {seed}",
        "metrics": {"validation": {k: round(float(v), 4) for k, v in res.validation.items()}},
    }
    folder = save_classifier(
        res,
        cs,
        folder=out,
        card_updates=card_updates,
        tables={"validation.csv": report["per_class"]},
    )
    summary = {
        "model": str(folder),
        "classes": cs.counts(),
        "pretrained": pretrained,
        "validation": res.validation,
    }
    if as_json:
        typer.echo(strict_json(summary))
    else:
        Console(stderr=True).print(
            f"model written to {folder}: validation weighted F1 "
            f"{res.validation['weighted_f1']:.3f}, accuracy {res.validation['accuracy']:.3f}"
        )


def _read_labels(path: Path) -> Any:
    from cytolens.io import imread

    return imread(path).data


def _label_file(folder: Path, stem: str) -> Path:
    for suffix in ("", "_labels", "_label", "_mask", "_masks"):
        for ext in (".tif", ".tiff", ".png"):
            p = folder / f"{stem}{suffix}{ext}"
            if p.is_file():
                return p
    raise InputError(f"no label image for {stem!r} in {folder} (expected {stem}.tif or similar)")


def cells_command(
    images: Annotated[list[Path], typer.Argument(help="Images (files, folders, globs).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("cells-out"),
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = (
        "mitocheck-v1"
    ),
    crops: Annotated[
        bool, typer.Option("--crops", help="The inputs are crops (one cell each), not images.")
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option(help="Folder of label images (<stem>.tif); default: segment nuclei."),
    ] = None,
    segmenter: Annotated[str, typer.Option(help="Nuclei: model or classical.")] = "model",
    diameter: Annotated[
        float | None, typer.Option(help="Nucleus diameter (px) for segmentation.")
    ] = None,
    crop_size: Annotated[
        int | None, typer.Option(help="Crop side (px); default: the model's.", callback=at_least(4))
    ] = None,
    channel: Annotated[int | None, typer.Option(help="Channel of multichannel images.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier run's results.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Classify the phenotype of every cell: of crops, or of the nuclei of raw images.

    Writes ``cells.csv`` (one row per cell: image, label and centroid,
    phenotype, confidence, calibrated probabilities, ood_score,
    domain_percentile, in_domain), ``images.csv`` (cells per phenotype per
    image), ``report.html`` and ``failures.csv`` for images that failed
    (exit 1).
    """
    import warnings

    import numpy as np
    import pandas as pd

    from cytolens.core.batch import exit_if_failed, report_failures, run_batch, write_failures
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, output_stems
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.phenotype.crops import find_crop_files, read_crop_files
    from cytolens.phenotype.model import PhenotypeClassifier, phenotype_counts, predict_cells
    from cytolens.pipeline import Item, make_step
    from cytolens.report import Report

    if segmenter not in SEGMENTERS:
        raise InputError(f"--segmenter {segmenter!r}: expected one of {', '.join(SEGMENTERS)}")
    paths = find_crop_files(images) if crops else find_images(images)
    m = PhenotypeClassifier.load(model, device=device)
    protected = [*images, *([labels] if labels else [])]
    prepare_output_dir(out, protected=protected, overwrite=overwrite)
    names = dict(zip(paths, output_stems(paths), strict=True))
    report = Report("cytolens classify cells")
    if crops:
        array = read_crop_files(paths)
        if m.in_channels == 1 and array.shape[1] > 1:
            array = array[:, [channel or 0]]
        table = predict_cells(array, model=m, name=f"{len(paths)} crops")
        table.insert(0, "image", [names[p] for p in paths])
        result = None
    else:
        # the same steps and parameters as a pipeline's segment.nuclei -> phenotype.classify
        classify = make_step(
            "phenotype.classify",
            {"model": model, "crop_size": crop_size, "channel": channel, "device": device},
            where="options",
        )
        segment = None
        if labels is None:  # nuclei of the plane the crops come from (the first channel)
            seg_channel = (channel or 0) if m.in_channels == 1 else 0
            segment = make_step(
                "segment.nuclei",
                {"method": segmenter, "diameter": diameter, "channel": seg_channel,
                 "device": device},
                where="options",
            )  # fmt: skip

        def one(path: Path) -> pd.DataFrame:
            item = Item(path, names[path], imread(path))
            if segment is None:
                item.labels = np.asarray(_read_labels(_label_file(labels, path.stem)))
            else:
                with warnings.catch_warnings():  # the nuclei only centre the crops here
                    warnings.simplefilter("ignore", OutOfDomainWarning)
                    warnings.filterwarnings("ignore", message="warning: .* looks like a whole-cell")
                    segment.run(item)
            classify.run(item)
            return item.tables["cells"]

        result = run_batch(paths, one, description="classifying cells", progress=not as_json)
        tables = [t for t in result.results if len(t)]
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    with atomic_path(out / "cells.csv") as tmp:
        table.to_csv(tmp, index=False)
    counts = phenotype_counts(table) if len(table) else pd.DataFrame()
    with atomic_path(out / "images.csv") as tmp:
        counts.to_csv(tmp, index=False)
    report.text(f"model {m.name}: {len(table)} cells from {len(paths)} input(s)")
    if len(table):
        summary_rows = table.groupby("phenotype").size().rename("cells").reset_index()
        report.heading("Cells per phenotype")
        report.table(summary_rows)
        if "in_domain" in table:
            report.text(
                f"{100 * table['in_domain'].mean():.1f} % of cells inside the model's "
                "training domain (ood_score <= 1)"
            )
        if not crops:
            report.heading("Per image")
            report.table(counts)
    if result is not None:
        report_failures(report, result.failures)
        write_failures(out, result.failures)
    report.save(out / "report.html")
    summary: dict[str, Any] = {
        "cells": len(table),
        "inputs": len(paths),
        "phenotypes": table["phenotype"].value_counts().to_dict() if len(table) else {},
        "failed": len(result.failures) if result is not None else 0,
        "out": str(out),
    }
    if as_json:
        typer.echo(strict_json(summary))
    if result is not None:
        exit_if_failed(result, out)
