"""Can I trust this model on my images? ``cytolens models check``.

:func:`check_model` scores each image's applicability (how far it lies from
the model's training data, :mod:`cytolens.models.applicability`), runs the
model on it, and writes a report: applicability per image, the images most
unlike the training data (thumbnails), the expected accuracy (the card's
held-out metrics, and the classes whose held-out performance is at chance),
the card's training data, and example predictions.

:func:`at_chance` names what a model cannot be trusted with at all: the
classes (and, for ``hpa-v1``, the per-cell nucleolar calls) whose held-out
F1 is no better than always answering "present" would be. The list lives in
the card's ``applicability`` entry (``at_chance``), written by
``scripts/train/applicability.py`` with :func:`chance_classes`, so every
output that uses the model can say so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cytolens.core.errors import InputError

__all__ = ["CheckResult", "at_chance", "chance_classes", "chance_f1", "check_model", "read_input"]

logger = logging.getLogger(__name__)

#: Thumbnails of the images most unlike the training data, and example predictions, in the report.
REPORT_THUMBNAILS = 6
REPORT_EXAMPLES = 4
#: HPA channel file suffixes (an HPA sample is read from any one of its four files).
_HPA_COLOURS = ("_red", "_green", "_blue", "_yellow")


def chance_f1(support: int, n_images: int) -> float:
    """F1 of always answering "present" for a class with ``support`` of ``n_images`` positive.

    A classifier whose held-out F1 does not beat it is at chance.

    Examples
    --------
    >>> round(chance_f1(7, 16), 3), chance_f1(0, 16)
    (0.609, 0.0)
    """
    if n_images <= 0 or support <= 0:
        return 0.0
    p = support / n_images
    return 2 * p / (1 + p)


def chance_classes(metrics: dict[str, Any], n_images: int) -> dict[str, Any]:
    """Classes whose held-out F1 is at chance, from a card's ``metrics["validation"]``.

    Parameters
    ----------
    metrics : dict
        The card's held-out metrics: ``per_class`` (``{index: {name, support, f1}}``)
        and, for HPA models, ``nucleolar_f1`` / ``nucleolar_support``.
    n_images : int
        Number of held-out images the metrics were measured on.

    Returns
    -------
    dict
        ``classes`` (names, F1 <= chance F1 with at least one held-out
        positive), ``untested`` (no held-out positive), ``nucleolar``
        (whether the nucleolar group, hence the per-cell calls, is at
        chance), ``detail`` (F1 and chance F1 per class) and ``rule``.

    Examples
    --------
    >>> m = {"per_class": {"0": {"name": "A", "support": 8, "f1": 0.8},
    ...                    "1": {"name": "B", "support": 2, "f1": 0.0},
    ...                    "2": {"name": "C", "support": 0, "f1": 0.0}},
    ...      "nucleolar_f1": 0.47, "nucleolar_support": 7}
    >>> r = chance_classes(m, 16)
    >>> r["classes"], r["untested"], r["nucleolar"]
    (['B'], ['C'], True)
    """
    out: dict[str, Any] = {"classes": [], "untested": [], "nucleolar": False, "detail": {}}
    for entry in (metrics.get("per_class") or {}).values():
        name, support, f1 = entry.get("name"), int(entry.get("support", 0)), entry.get("f1")
        if not name or f1 is None:
            continue
        if support == 0:
            out["untested"].append(name)
            continue
        chance = chance_f1(support, n_images)
        out["detail"][name] = {"f1": float(f1), "chance_f1": round(chance, 4), "support": support}
        if float(f1) <= chance:
            out["classes"].append(name)
    if "nucleolar_f1" in metrics:
        chance = chance_f1(int(metrics.get("nucleolar_support", 0)), n_images)
        f1 = float(metrics["nucleolar_f1"])
        out["nucleolar"] = f1 <= chance
        out["detail"]["nucleolar group"] = {"f1": f1, "chance_f1": round(chance, 4)}
    out["rule"] = (
        f"held-out F1 <= F1 of always answering 'present' (2p / (1 + p), p = support / "
        f"{n_images} held-out images)"
    )
    return out


def at_chance(card: Any) -> dict[str, Any]:
    """The card's record of what is at chance (``{}`` when it has none).

    Examples
    --------
    >>> from cytolens.models import load_card
    >>> sorted(at_chance(load_card("nuclei-v1")))
    []
    """
    return dict((card.applicability or {}).get("at_chance") or {})


def at_chance_note(card: Any) -> str | None:
    """One line saying which calls of a model are at chance on held-out data (None: none).

    Examples
    --------
    >>> from cytolens.models import load_card
    >>> at_chance_note(load_card("nuclei-v1")) is None
    True
    """
    info = at_chance(card)
    parts = []
    if info.get("nucleolar"):
        parts.append("its per-cell Nucleoli / Not Nucleoli calls")
    if info.get("classes"):
        parts.append("the classes " + ", ".join(info["classes"]))
    if not parts:
        return None
    return (
        f"note: {card.name} is at chance on held-out images for {' and '.join(parts)} "
        f"({info.get('rule', 'held-out F1 no better than chance')}); do not rely on these calls"
    )


def read_input(predictor: Any, path: str | os.PathLike[str]) -> Any:
    """Read an image file as the predictor takes it (an HPA channel file: the whole sample)."""
    from cytolens.io import imread

    path = Path(path)
    if predictor.capability == "classify" and path.stem.endswith(_HPA_COLOURS):
        from cytolens.io import read_hpa

        return read_hpa(path)
    image = imread(path)
    if predictor.capability == "focus":
        from cytolens.core.plane import single_plane

        return single_plane(image, name=str(path))[0]
    return image


def _display(predictor: Any, image: Any) -> np.ndarray:
    """An RGB or grey picture of an input."""
    from cytolens.report import to_display

    data = np.asarray(getattr(image, "data", image))
    if predictor.capability == "classify":
        from cytolens.io import hpa_composite

        return np.asarray(hpa_composite(image))
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        return to_display(data[..., :3])
    return to_display(np.squeeze(data))


def _predict(predictor: Any, image: Any) -> tuple[str, np.ndarray]:
    """A one-line summary of the model's prediction and a picture of it."""
    cap = predictor.capability
    if cap == "focus":
        from cytolens.focus import overlay_rgb, rate_focus

        res = rate_focus(image, model=predictor)
        return f"{res.verdict}, mean level {res.summary()['mean_level']:.2f}", overlay_rgb(
            image, res
        )
    if cap == "segment":
        from cytolens.report import overlay_outlines

        labels = predictor.segment(image)
        return f"{int(labels.max())} nuclei", overlay_outlines(_display(predictor, image), labels)
    if cap == "detect":
        from cytolens.report import draw_boxes

        boxes = predictor.predict(image)
        return f"{len(boxes)} boxes", draw_boxes(image, boxes)
    if cap == "classify":
        from cytolens.classify import localization

        res = localization(image, model=predictor)
        return ", ".join(res.labels) or "no class above its threshold", _display(predictor, image)
    raise InputError(f"models check does not know how to run a {cap} model")


@dataclass
class CheckResult:
    """What :func:`check_model` found: one row per image, the report and the table."""

    rows: list[dict[str, Any]]
    failures: list[Any]
    report: Path | None = None
    table: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        """Images checked or failed."""
        return len(self.rows) + len(self.failures)

    @property
    def n_out_of_domain(self) -> int:
        """Images whose ``in_domain`` is False."""
        return sum(r.get("in_domain") is False for r in self.rows)


def _metric_rows(metrics: Any, prefix: str = "") -> list[dict[str, Any]]:
    """Flat ``metric, value`` rows of nested card metrics (numbers only)."""
    rows: list[dict[str, Any]] = []
    for key, value in (metrics or {}).items():
        if key == "per_class" or key.endswith(("_s", "threads")) or key == "steps":
            continue  # per-class tables are shown apart; timings are no accuracy
        if isinstance(value, dict):
            rows += _metric_rows(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"metric": f"{prefix}{key}", "value": value})
    return rows


def check_model(
    model: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    device: Any = "auto",
    overwrite: bool = False,
    examples: int = REPORT_EXAMPLES,
    progress: bool = True,
) -> CheckResult:
    """Write a "can I trust this model on my images" report.

    Parameters
    ----------
    model : str or path-like
        A shipped model's name or a model folder.
    images : sequence of path-like
        Image files, folders or globs (:func:`cytolens.io.find_images`).
    out : path-like
        Output folder: ``report.html``, ``applicability.csv`` and
        ``failures.csv`` (when an image fails).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the model runs.
    overwrite : bool
        Allow an ``out`` folder holding an earlier run.
    examples : int
        Images the model is run on for example predictions (the most
        unlike the training data first).
    progress : bool
        Show a progress bar.

    Returns
    -------
    CheckResult

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from cytolens.io import imwrite
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = imwrite(d / "a.tif", np.random.default_rng(0).random((96, 96)).astype("float32"),
    ...             axes="YX")
    >>> res = check_model("focus-miq-v1", [d / "a.tif"], d / "out", device="cpu", progress=False)
    >>> sorted(p.name for p in (d / "out").iterdir())
    ['applicability.csv', 'report.html']
    """
    import pandas as pd

    from cytolens.core.batch import run_batch, write_failures
    from cytolens.core.files import atomic_path, prepare_output_dir
    from cytolens.io import find_images
    from cytolens.models import load
    from cytolens.models.applicability import out_of_domain_note, score_input

    predictor = load(model, device=device)
    paths = find_images([str(p) for p in images])
    out = prepare_output_dir(out, protected=paths, overwrite=overwrite)
    inputs: dict[str, Any] = {}

    def score(path: Path) -> dict[str, Any]:
        image = read_input(predictor, path)
        row: dict[str, Any] = {"image": path.name}
        row.update(score_input(predictor, image, path.name, warn=False))
        inputs[path.name] = image
        return row

    result = run_batch(paths, score, description="scoring", progress=progress)
    rows = result.results
    ranked = sorted(rows, key=lambda r: -float(r.get("ood_score", 0.0)))
    shown = ranked[: max(0, int(examples))]
    for row in shown:
        try:
            row["prediction"], row["_picture"] = _predict(predictor, inputs[row["image"]])
        except Exception as exc:  # an example that fails must not sink the report
            row["prediction"] = f"failed: {exc}"
    table = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    with atomic_path(out / "applicability.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_failures(out, result.failures)
    warnings = [
        n for n in (out_of_domain_note(rows, predictor.name), at_chance_note(predictor.card)) if n
    ]
    check = CheckResult(rows, result.failures, table=out / "applicability.csv", warnings=warnings)
    check.report = _report(predictor, check, ranked, inputs, out)
    for row in rows:
        row.pop("_picture", None)
    return check


def _report(
    predictor: Any,
    check: CheckResult,
    ranked: list[dict[str, Any]],
    inputs: dict[str, Any],
    out: Path,
) -> Path:
    from cytolens.core.batch import report_failures
    from cytolens.models.cli import key_metric
    from cytolens.report import Report, image_panel

    card = predictor.card
    rep = Report(f"Can I trust {card.name} on these images?")
    rep.text(f"{card.name} {card.version}: {card.task}")
    rows = check.rows
    if predictor.has_domain:
        entry = card.applicability
        rep.text(
            f"{len(rows)} image(s) scored; {check.n_out_of_domain} outside the training domain. "
            "ood_score is the distance of the image's pooled network features to the training "
            "images, divided by the in-domain limit (the 99th percentile of held-out in-domain "
            f"images, {entry.get('n_calibration', '?')} of them): above 1 = out of domain. "
            "domain_percentile: the share of held-out in-domain images closer to the training data."
        )
    else:
        rep.text(
            f"{card.name} ships no applicability reference (no 'applicability' entry in its card): "
            "how far these images lie from its training data cannot be measured."
        )
    for note in check.warnings:
        rep.text(note)
    rep.heading("Applicability per image (most unlike the training data first)")
    if rows:
        cols = ["image", "ood_score", "domain_percentile", "in_domain", "prediction"]
        rep.table([{c: r.get(c, "") for c in cols if any(c in x for x in rows)} for r in ranked])
    if predictor.has_domain and ranked:
        rep.heading("The images most unlike the training data")
        top = ranked[:REPORT_THUMBNAILS]
        pictures = {
            f"{r['image'][:24]}  ood {r['ood_score']:.2f}": _display(predictor, inputs[r["image"]])
            for r in top
        }
        rep.figure(
            image_panel(pictures, ncols=min(3, len(pictures))), "Inputs, highest ood_score first."
        )
    examples = [r for r in ranked if "_picture" in r]
    if examples:
        rep.heading("Example predictions")
        pictures = {f"{r['image'][:24]}: {r['prediction'][:30]}": r["_picture"] for r in examples}
        rep.figure(
            image_panel(pictures, ncols=min(2, len(pictures))),
            "The model's output on these images.",
        )
    rep.heading("Expected accuracy (held-out metrics from the model card)")
    headline = key_metric(card.metrics)
    rep.text(
        (f"Headline: {headline}. " if headline else "")
        + "These numbers hold for images like the held-out images of the training domain; "
        "for out-of-domain images expect worse."
    )
    metric_rows = _metric_rows(card.metrics)
    if metric_rows:
        rep.table(metric_rows)
    info = at_chance(card)
    if info.get("detail"):
        rep.heading("Calls at chance on held-out images")
        rep.table([{"class": k, **v} for k, v in info["detail"].items()])
        rep.text(f"Rule: {info.get('rule', '')}.")
    rep.heading("Training data")
    for item in card.training_data:
        rep.text(item)
    rep.text(f"Reproduce: {card.training_command}")
    report_failures(rep, check.failures)
    return rep.save(out / "report.html")
