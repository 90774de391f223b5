"""``cytolens label-free ...``: predict fluorescence from transmitted light, or train a model.

``predict`` runs the pipeline step ``label_free.predict`` on each stack and
writes, per input stack, ``NAME_predicted.ome.tif`` (one channel
per target, channel names stored), ``NAME_sigma.ome.tif`` (the per-pixel
standard deviation), ``NAME_side_by_side.png`` (a transmitted-light plane
beside each predicted channel) and, for all inputs, ``summary.csv``
(applicability: ``ood_score``, ``domain_percentile``, ``in_domain``) and
``report.html``. A stack that fails is listed in ``failures.csv`` (exit 1);
with a single input its error is the command's (exit 2).

``train`` reads pairs (one transmitted-light stack and one fluorescence file
per field, the targets as channels or given as several ``--targets`` files
per field in order) and writes a model folder that ``predict --model DIR``
loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cytolens.core.errors import CytolensError, InputError
from cytolens.core.options import at_least, positive

__all__ = ["app"]

app = typer.Typer(
    help="Predict fluorescence channels from transmitted light (in silico labeling).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:
    """Predict fluorescence channels from transmitted light (in silico labeling)."""


def side_by_side(plane: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """A uint8 ``(Y, (1 + C) * X)`` strip: the plane, then each channel, each scaled 1-99.5 %.

    Examples
    --------
    >>> side_by_side(np.zeros((4, 4)), np.ones((2, 4, 4))).shape
    (4, 12)
    """
    panels = []
    for img in (plane, *channels):
        img = np.asarray(img, np.float32)
        lo, hi = np.percentile(img, (1, 99.5))
        panels.append(np.clip((img - lo) / (hi - lo + 1e-12), 0, 1))
    return (np.concatenate(panels, axis=1) * 255).astype(np.uint8)


@app.command("predict")
def predict_command(
    stacks: Annotated[list[str], typer.Argument(help="Stack files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = "isl-v1",
    axes: Annotated[
        str | None, typer.Option(help="Axes of the stacks, overriding the files', e.g. ZYX.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    tile_shape: Annotated[
        int, typer.Option("--tile-shape", help="Tile side in px.", callback=at_least(1))
    ] = 512,
    report: Annotated[bool, typer.Option(help="Write report.html.")] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow an --out folder with an earlier run.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Predict fluorescence channels (OME-TIFF), their uncertainty, a PNG and a report per stack."""
    import warnings

    import pandas as pd

    from cytolens.core.batch import (
        exit_if_failed,
        naming_file,
        report_failures,
        run_batch,
        write_failures,
    )
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import find_images, imread, imwrite, output_stems
    from cytolens.label_free.model import LabelFreeModel, as_stack
    from cytolens.models.applicability import OutOfDomainWarning
    from cytolens.pipeline import Item, make_step

    paths = find_images(stacks)
    prepare_output_dir(out, protected=paths, overwrite=overwrite)
    lf = LabelFreeModel.from_pretrained(model, device=device)
    if tile_shape <= 2 * lf.overlap:
        raise InputError(f"--tile-shape must be more than {2 * lf.overlap} for model {lf.name!r}")
    # the same step and parameters as a pipeline's label_free.predict
    step = make_step(
        "label_free.predict",
        {"model": model, "tile_shape": tile_shape, "device": device},
        where="options",
    )
    names = dict(zip(paths, output_stems(paths), strict=True))

    def one(path: Path) -> dict[str, Any]:
        try:
            image = imread(path, axes=axes)
            item = Item(path, names[path], image)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OutOfDomainWarning)  # reported below
                step.run(item)
            stack, _ = as_stack(image, None, lf.n_planes, lf.name)
        except CytolensError as exc:
            raise naming_file(path, exc) from None
        pred, sigma = item.images["predicted"], item.images["sigma"]
        stem = names[path]
        files = {
            "predicted": out / f"{stem}_predicted.ome.tif",
            "sigma": out / f"{stem}_sigma.ome.tif",
            "png": out / f"{stem}_side_by_side.png",
        }
        sizes = pred.pixel_size_um
        mid = np.asarray(stack[stack.shape[0] // 2])
        strip = side_by_side(mid, np.asarray(pred.data))
        written: list[Path] = []
        try:
            imwrite(files["predicted"], pred.data, axes="CYX", pixel_size_um=sizes or None,
                    channel_names=list(pred.channel_names))  # fmt: skip
            written.append(files["predicted"])
            imwrite(files["sigma"], sigma.data, axes="CYX", pixel_size_um=sizes or None,
                    channel_names=list(sigma.channel_names))  # fmt: skip
            written.append(files["sigma"])
            imwrite(files["png"], strip, axes="YX")
        except BaseException:
            for f in written:
                f.unlink(missing_ok=True)
            raise
        return {"image": path.name, **item.row, **{k: v.name for k, v in files.items()}}

    result = run_batch(paths, one, description="predicting", stop_on_error=len(paths) == 1)
    rows = result.results
    summary: dict[str, Any] = {"images": rows, "failed": [f.__dict__ for f in result.failures]}
    if rows:
        with atomic_path(out / "summary.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    outside = [r["image"] for r in rows if r.get("in_domain") is False]
    note = None
    if outside:
        note = (
            f"{len(outside)} stack(s) lie outside the training domain of {lf.name} "
            f"({', '.join(outside[:5])}): predicted fluorescence there may be wrong"
        )
        summary["warnings"] = [note]
        typer.echo(note, err=True)
    failures_csv = write_failures(out, result.failures)
    if failures_csv is not None:
        summary["failures_csv"] = str(failures_csv)
    if report:
        from cytolens.report import Report

        rep = Report("Label-free prediction")
        rep.text(
            f"Model {lf.name}: predicted {', '.join(lf.targets)} from {lf.n_planes} "
            "transmitted-light planes, in the card's normalized target units. "
            "Predicted fluorescence is a model's guess: check it where it matters."
        )
        if note:
            rep.text(note)
        rep.heading("Stacks")
        rep.table(rows)
        for r in rows[:24]:
            rep.figure(out / r["png"], caption=f"{r['image']}: plane | {' | '.join(lf.targets)}")
        report_failures(rep, result.failures)
        summary["report"] = str(rep.save(out / "report.html"))
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(f"predicted {len(rows)} stack(s); results in {out}")
    exit_if_failed(result, out)


@app.command("train")
def train_command(
    inputs: Annotated[list[Path], typer.Option("--inputs", help="Transmitted-light stacks.")],
    targets: Annotated[
        list[Path],
        typer.Option(
            "--targets",
            help="Fluorescence images: one multi-channel file per input, or the same number "
            "of single-channel files per input (in input order).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    target_names: Annotated[
        str | None, typer.Option("--target-names", help="Comma-separated names (default t0,...).")
    ] = None,
    axes: Annotated[str | None, typer.Option(help="Axes of the input stacks, e.g. ZYX.")] = None,
    steps: Annotated[int, typer.Option(callback=at_least(1))] = 600,
    lr: Annotated[float, typer.Option(callback=positive)] = 3e-3,
    crop: Annotated[int, typer.Option(callback=at_least(16))] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", callback=at_least(1))] = 8,
    val_fraction: Annotated[float, typer.Option("--val-fraction", callback=positive)] = 0.15,
    margin: Annotated[int, typer.Option(callback=at_least(0))] = 32,
    flips: Annotated[bool, typer.Option(help="Random flips and rotations.")] = False,
    threads: Annotated[int, typer.Option(callback=at_least(1))] = 2,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model folder.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Train a label-free model on your own pairs, with a spatial validation block per field."""
    from cytolens.core.files import prepare_output_dir
    from cytolens.core.summary import strict_json
    from cytolens.io import imread
    from cytolens.label_free.train import TrainingPair, default_block, train_label_free
    from cytolens.models import card_name_for
    from cytolens.models.training import TrainConfig

    if not inputs:
        raise InputError("give at least one --inputs stack")
    if len(targets) % len(inputs):
        raise InputError(
            f"{len(targets)} --targets files for {len(inputs)} --inputs; give one file per "
            "input or the same number of files per input"
        )
    prepare_output_dir(out, protected=[*inputs, *targets], overwrite=overwrite)
    per = len(targets) // len(inputs)
    pairs = []
    for i, path in enumerate(inputs):
        image = imread(path, axes=axes)
        if len(image.axes) == 2:
            raise InputError(f"{path}: a single plane; training needs a stack (Z, Y, X)")
        stack = image.transpose("ZYX").data if "Z" in image.axes else image.transpose("CYX").data
        files = targets[i * per : (i + 1) * per]
        parts = []
        for f in files:
            t = imread(f)
            data = t.transpose("CYX").data if "C" in t.axes else t.data
            parts.append(data if data.ndim == 3 else data[None])
        tstack = np.concatenate([np.asarray(p) for p in parts])
        pair_name = path.name
        block = default_block(stack.shape[-2:], val_fraction)
        pairs.append(TrainingPair(stack, tstack, [block], name=pair_name))
    n_targets = pairs[0].targets.shape[0]
    names = target_names.split(",") if target_names else [f"t{i}" for i in range(n_targets)]
    model = train_label_free(
        pairs,
        target_names=names,
        name=card_name_for(out),
        out=out,
        crop=crop,
        batch_size=batch_size,
        margin=margin,
        flips=flips,
        config=TrainConfig(steps=steps, lr=lr, threads=threads, seed=seed),
        device=device,
        progress=not as_json,
        training_data=[str(p) for p in inputs],
        training_command="cytolens label-free train",
    )
    summary = {"model": str(out), "metrics": model.card.metrics}
    if as_json:
        typer.echo(strict_json(summary))
    else:
        typer.echo(f"model written to {out}: {model.card.metrics}")
