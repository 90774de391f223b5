"""Cases of focus quality (``cytolens focus rate|best-plane``) and HPA localization (``classify``).

Inputs are made in ``{tmp}`` from the package's bundled samples (the BBBC006
nuclei field, the HPA nucleoli sample), so no case needs ../shared/data,
and every input is hashed by the harness (a changed input is data loss).
``--overwrite`` replacing an earlier run is tested in
``tests/focus/test_robustness.py`` (here any change to a file made by a
case's setup counts as data loss).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from robustness_cases import Case

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "data" / "samples"
HPA_COLOURS = ("red", "green", "blue", "yellow")

Setup = Callable[[Path], None]
Check = Callable[[Path, subprocess.CompletedProcess], "str | None"]


# ----------------------------------------------------------------------------- inputs


def _nuclei() -> np.ndarray:
    """The bundled BBBC006 nuclei field (520 x 696 uint16), an in-focus image with content."""
    from cytolens.io import imread

    return np.asarray(imread(SAMPLES / "nuclei_bbbc006.png").data)


def _setups(*steps: Setup) -> Setup:
    def setup(tmp: Path) -> None:
        for step in steps:
            step(tmp)

    return setup


def _victim(tmp: Path) -> None:
    (tmp / "victim" / "sub").mkdir(parents=True)
    (tmp / "victim" / "notes.txt").write_text("precious\n")


def _stack(tmp: Path) -> None:
    """``stack.tif``: a 3-plane ZYX stack around the nuclei field (blurred by block averaging)."""
    sharp = _nuclei().astype(np.float32)
    soft = (sharp + np.roll(sharp, 3, 0) + np.roll(sharp, 3, 1) + np.roll(sharp, 6, 0)) / 4
    tifffile.imwrite(tmp / "stack.tif", np.stack([soft, sharp, soft]).astype(np.uint16))


def _zero_stack(tmp: Path) -> None:
    tifffile.imwrite(tmp / "zero.tif", np.zeros((4, 128, 128), np.uint16))


def _padded_stack(tmp: Path) -> None:
    """``padded.tif``: the nuclei field between an all-zero and a constant plane."""
    sharp = _nuclei()
    planes = [np.zeros_like(sharp), sharp, np.full_like(sharp, 500)]
    tifffile.imwrite(tmp / "padded.tif", np.stack(planes))


def _plane(name: str = "in/nuclei.tif") -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tmp / name, _nuclei()[:336, :420])

    return setup


def _blank(name: str = "in/blank.tif") -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tmp / name, np.zeros((256, 256), np.uint16))

    return setup


def _corrupt(name: str = "in/bad.tif") -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(b"II*\x00 this is not a TIFF")

    return setup


def _earlier_run(folder: str, table: str) -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        (tmp / folder / table).write_text("file\nan earlier run\n")
        (tmp / folder / "failures.csv").write_text("item,error,message\nold,E,an earlier run\n")

    return setup


def _hpa(ids: tuple[str, ...] = ("s1",), folder: str = "in") -> Setup:
    """HPA samples in ``{tmp}/<folder>``: copies of the bundled nucleoli sample."""

    def setup(tmp: Path) -> None:
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        for sid in ids:
            for colour in HPA_COLOURS:
                shutil.copy(
                    SAMPLES / f"hpa_nucleoli_{colour}.png", tmp / folder / f"{sid}_{colour}.png"
                )

    return setup


def _hpa_black(tmp: Path) -> None:
    """An all-black HPA sample ``black`` (four zero PNGs) in ``{tmp}/in``."""
    from cytolens.io import imwrite

    (tmp / "in").mkdir(exist_ok=True)
    for colour in HPA_COLOURS:
        imwrite(tmp / "in" / f"black_{colour}.png", np.zeros((256, 256), np.uint8))


def _hpa_broken(tmp: Path) -> None:
    """A sample ``broken`` whose green file is truncated."""
    _hpa(("broken",))(tmp)
    (tmp / "in" / "broken_green.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def _labels(text: str, name: str = "labels.csv") -> Setup:
    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return setup


FOUR = ("s1", "s2", "s3", "s4")
FOUR_LABELS = "Id,Target\ns1,2\ns2,2 0\ns3,0\ns4,2\n"


# ----------------------------------------------------------------------------- checks


def _strict(proc: subprocess.CompletedProcess) -> tuple[object, str | None]:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    try:
        return json.loads(proc.stdout, parse_constant=refuse), None
    except ValueError as exc:
        return None, f"--json output is not strict JSON: {exc}"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _check_rate_batch(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    out = tmp / "out"
    if not (out / "focus.csv").is_file():
        return "no focus.csv: the good images were lost with the bad one"
    names = sorted(Path(r["file"]).name for r in _rows(out / "focus.csv"))
    if names != ["blank.tif", "nuclei.tif"]:
        return f"focus.csv rows {names}, expected blank.tif and nuclei.tif"
    if not (out / "failures.csv").is_file():
        return "no failures.csv"
    failed = [Path(r["item"]).name for r in _rows(out / "failures.csv")]
    if failed != ["bad.tif"]:
        return f"failures.csv lists {failed}, expected bad.tif"
    if "Failed inputs" not in (out / "report.html").read_text():
        return "the report does not list the failed input"
    return None


def _check_rate_json(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    payload, problem = _strict(proc)
    if problem:
        return problem
    row = payload["images"][0]
    if row["verdict"] != "no content" or row["level"] is not None:
        return f"a blank image got verdict {row['verdict']!r}, level {row['level']!r}"
    return None


def _check_padded(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    payload, problem = _strict(proc)
    if problem:
        return problem
    if payload["best_plane"] != 1:
        return f"best plane {payload['best_plane']}: a blank plane was picked"
    return None


def _failure_says(out: Path, text: str) -> str | None:
    failures = out / "failures.csv"
    if not failures.is_file():
        return "no failures.csv"
    messages = [r["message"] for r in _rows(failures)]
    return (
        None if any(text in m for m in messages) else f"failures.csv says {messages}, not {text!r}"
    )


def _check_channel(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    failures = tmp / "out" / "failures.csv"
    if not failures.is_file():
        return "no failures.csv"
    message = _rows(failures)[0]["message"]
    if "channel=5 is out of range" not in message or "1 channel(s)" not in message:
        return f"failure message does not name the channel and the count: {message}"
    return None


def _check_hpa_batch(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    out = tmp / "out"
    if not (out / "images.csv").is_file():
        return "no images.csv: the good sample was lost with the bad one"
    ids = [r["id"] for r in _rows(out / "images.csv")]
    if ids != ["s1"]:
        return f"images.csv rows {ids}, expected s1"
    failed = (
        [r["item"] for r in _rows(out / "failures.csv")] if (out / "failures.csv").is_file() else []
    )
    if failed != ["broken"]:
        return f"failures.csv lists {failed}, expected broken"
    if (out / "composite" / "broken.png").exists():
        return "a picture of the failed sample was left"
    return None


def _check_hpa_black(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    _, problem = _strict(proc)
    if problem:
        return problem
    rows = {r["id"]: r for r in _rows(tmp / "out" / "images.csv")}
    black = rows.get("black")
    if black is None:
        return "no row for the black sample"
    if black["labels"] or black.get("signal") != "False":
        return f"an all-black sample got labels {black['labels']!r} (signal {black.get('signal')})"
    if not rows["s1"]["labels"]:
        return "the real sample got no label"
    if "without signal" not in (tmp / "out" / "report.html").read_text():
        return "the report does not say which sample had no signal"
    return None


def _check_train(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    folder = tmp / "o" / "dt_good"
    made = sorted(p.name for p in (tmp / "o").iterdir())
    if made != ["dt_good"]:
        return f"--out o/dt_good made {made}"
    if not (folder / "weights.pt").is_file():
        return "no weights.pt in the folder given"
    from cytolens.models import load_model

    try:
        _, card = load_model(str(folder), capability="classify")
    except Exception as exc:  # the check reports, never raises
        return f"the model folder does not load by its path: {exc}"
    if card.name != "dt-good":
        return f"card name {card.name!r}, expected 'dt-good'"
    return None


# ----------------------------------------------------------------------------- cases

_DEV = ["--device", "cpu"]

CASES: list[Case] = [
    # --- focus best-plane: outputs -----------------------------------------------------
    Case(
        "focus best-plane: --out is an existing folder",
        ["focus", "best-plane", "{tmp}/stack.tif", "--axes", "ZYX", "--out", "{tmp}/victim", *_DEV],
        setup=_setups(_stack, _victim),
        message=r"--out .*victim: is an existing folder",
    ),
    Case(
        "focus best-plane: --plot is an existing folder",
        [
            "focus",
            "best-plane",
            "{tmp}/stack.tif",
            "--axes",
            "ZYX",
            "--plot",
            "{tmp}/victim",
            *_DEV,
        ],
        setup=_setups(_stack, _victim),
        message=r"--plot .*victim: is an existing folder",
    ),
    Case(
        "focus best-plane: --out is the input stack",
        ["focus", "best-plane", "{tmp}/stack.tif", "--axes", "ZYX", "--out", "{tmp}/stack.tif"],
        setup=_stack,
        message=r"would overwrite the input .*stack\.tif",
    ),
    Case(
        "focus best-plane: --out and --plot are one file",
        [
            "focus",
            "best-plane",
            "{tmp}/stack.tif",
            "--axes",
            "ZYX",
            "--out",
            "{tmp}/a.png",
            "--plot",
            "{tmp}/a.png",
        ],
        setup=_stack,
        message=r"--out and --plot name the same file",
    ),
    # --- focus best-plane: content, model, method --------------------------------------
    Case(
        "focus best-plane: all-zero stack",
        ["focus", "best-plane", "{tmp}/zero.tif", "--axes", "ZYX", *_DEV],
        setup=_zero_stack,
        message=r"zero\.tif: no plane has content",
    ),
    Case(
        "focus best-plane: all-zero stack, classical measure",
        ["focus", "best-plane", "{tmp}/zero.tif", "--axes", "ZYX", "--method", "brenner_gradient"],
        setup=_zero_stack,
        message=r"zero\.tif: no plane has content",
    ),
    Case(
        "focus best-plane: blank planes around content are never picked (--json strict)",
        ["focus", "best-plane", "{tmp}/padded.tif", "--axes", "ZYX", "--json", *_DEV],
        expect="ok",
        setup=_padded_stack,
        check=_check_padded,
    ),
    Case(
        "focus best-plane: --model of another capability",
        [
            "focus",
            "best-plane",
            "{tmp}/stack.tif",
            "--axes",
            "ZYX",
            "--model",
            "nuclei-v1",
            "--out",
            "{tmp}/planes.csv",
        ],
        setup=_stack,
        message=r"'nuclei-v1' is a segment model.*not a focus model",
    ),
    Case(
        "focus best-plane: unknown --method",
        ["focus", "best-plane", "{tmp}/stack.tif", "--axes", "ZYX", "--method", "sharpest"],
        setup=_stack,
        message=r"unknown method 'sharpest'",
    ),
    Case(
        "focus best-plane: --patch-size 0",
        ["focus", "best-plane", "{tmp}/stack.tif", "--axes", "ZYX", "--patch-size", "0"],
        setup=_stack,
        message=r"'--patch-size': must be at least 16",
    ),
    Case(
        "focus best-plane: missing stack",
        ["focus", "best-plane", "{tmp}/nothing.tif"],
        message=r"nothing\.tif: no such file",
    ),
    # --- focus rate: batches and output folders ----------------------------------------
    Case(
        "focus rate: one corrupt file in a folder",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", *_DEV],
        expect="ok",
        exit_code=1,
        setup=_setups(_plane(), _blank(), _corrupt()),
        check=_check_rate_batch,
    ),
    Case(
        "focus rate: into an earlier run's folder",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", *_DEV],
        setup=_setups(_plane(), _earlier_run("out", "focus.csv")),
        message=r"--out .*out: already holds .*--overwrite",
    ),
    Case(
        "focus rate: --out is the input folder",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/in"],
        setup=_plane(),
        message=r"holds the input",
    ),
    Case(
        "focus rate: --out is a file",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/in/nuclei.tif"],
        setup=_plane(),
        message=r"nuclei\.tif: is an existing file",
    ),
    Case(
        "focus rate: blank image, --json strict",
        ["focus", "rate", "{tmp}/in/blank.tif", "--out", "{tmp}/out", "--json", *_DEV],
        expect="ok",
        setup=_blank(),
        check=_check_rate_json,
    ),
    Case(
        "focus rate: --model of another capability",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", "--model", "nuclei-v1"],
        setup=_plane(),
        message=r"'nuclei-v1' is a segment model",
    ),
    Case(
        "focus rate: --patch-size 8",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", "--patch-size", "8"],
        setup=_plane(),
        message=r"'--patch-size': must be at least 16, got 8",
    ),
    Case(
        "focus rate: --batch-size 0",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", "--batch-size", "0"],
        setup=_plane(),
        message=r"'--batch-size': must be at least 1, got 0",
    ),
    Case(
        "focus rate: --channel -1",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", "--channel", "-1"],
        setup=_plane(),
        message=r"'--channel': must be a number >= 0, got -1",
    ),
    Case(
        "focus rate: --channel out of range",
        ["focus", "rate", "{tmp}/in", "--out", "{tmp}/out", "--channel", "5", *_DEV],
        expect="ok",
        exit_code=2,  # its only input failed
        setup=_plane(),
        check=_check_channel,
    ),
    Case(
        "focus rate: image smaller than one patch",
        ["focus", "rate", "{tmp}/tiny.tif", "--out", "{tmp}/out", *_DEV],
        expect="ok",
        exit_code=2,  # its only input failed
        setup=lambda tmp: tifffile.imwrite(tmp / "tiny.tif", np.ones((40, 40), np.uint16)),
        check=lambda tmp, proc: _failure_says(tmp / "out", "smaller than one 84x84 patch"),
    ),
    Case(
        "focus rate: empty folder",
        ["focus", "rate", "{tmp}/empty", "--out", "{tmp}/out"],
        setup=lambda tmp: (tmp / "empty").mkdir(),
        message=r"empty",
    ),
    # --- classify hpa ------------------------------------------------------------------
    Case(
        "classify hpa: one broken sample in a folder",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", *_DEV],
        expect="ok",
        exit_code=1,
        setup=_setups(_hpa(), _hpa_broken),
        check=_check_hpa_batch,
    ),
    Case(
        "classify hpa: all-black sample gets no label (--json strict)",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--json", *_DEV],
        expect="ok",
        setup=_setups(_hpa(), _hpa_black),
        check=_check_hpa_black,
    ),
    Case(
        "classify hpa: --limit -1",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--limit", "-1"],
        setup=_hpa(("s1", "s2")),
        message=r"'--limit': must be at least 1, got -1",
    ),
    Case(
        "classify hpa: --limit 0",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--limit", "0"],
        setup=_hpa(),
        message=r"'--limit': must be at least 1, got 0",
    ),
    Case(
        "classify hpa: --min-confidence 2",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--min-confidence", "2"],
        setup=_hpa(),
        message=r"'--min-confidence': must be between 0.0 and 1.0",
    ),
    Case(
        "classify hpa: into an earlier run's folder",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", *_DEV],
        setup=_setups(_hpa(), _earlier_run("out", "images.csv")),
        message=r"--out .*out: already holds .*--overwrite",
    ),
    Case(
        "classify hpa: --out is the parent of the input folder",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}", *_DEV],
        setup=_hpa(),
        message=r"holds the input",
    ),
    Case(
        "classify hpa: --model of another capability",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--model", "nuclei-v1"],
        setup=_hpa(),
        message=r"'nuclei-v1' is a segment model.*not a classify model",
    ),
    Case(
        "classify hpa: folder without samples",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out"],
        setup=lambda tmp: (tmp / "in").mkdir(),
        message=r"in: no HPA sample",
    ),
    Case(
        "classify hpa: unknown --nucleus-method",
        ["classify", "hpa", "{tmp}/in", "--out", "{tmp}/out", "--nucleus-method", "magic"],
        setup=_hpa(),
        message=r"--nucleus-method 'magic'",
    ),
    # --- classify train ----------------------------------------------------------------
    Case(
        "classify train: empty labels CSV",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/m"],
        setup=_setups(_hpa(FOUR), _labels("")),
        message=r"labels\.csv: empty file",
    ),
    Case(
        "classify train: labels CSV with only a header",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/m"],
        setup=_setups(_hpa(FOUR), _labels("Id,Target\n")),
        message=r"labels\.csv: no sample listed",
    ),
    Case(
        "classify train: labels CSV without Id,Target",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/m"],
        setup=_setups(_hpa(FOUR), _labels("name,classes\ns1,2\n")),
        message=r"labels\.csv: missing column\(s\) \['Id', 'Target'\]",
    ),
    Case(
        "classify train: unknown class number",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/m"],
        setup=_setups(_hpa(FOUR), _labels("Id,Target\ns1,2\ns2,28\ns3,0\ns4,2\n")),
        message=r"labels\.csv row 3: class number\(s\) \[28\] outside 0-27",
    ),
    Case(
        "classify train: labelled sample without images",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/labels.csv", "--out", "{tmp}/m"],
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS + "s5,0\n")),
        message=r"labels\.csv row 6: sample 's5' has no red/green/blue/yellow channel file",
    ),
    Case(
        "classify train: missing labels CSV",
        ["classify", "train", "{tmp}/in", "--labels", "{tmp}/nothing.csv", "--out", "{tmp}/m"],
        setup=_hpa(FOUR),
        message=r"nothing\.csv: labels CSV not found",
    ),
    Case(
        "classify train: --model of another capability",
        [
            "classify",
            "train",
            "{tmp}/in",
            "--labels",
            "{tmp}/labels.csv",
            "--out",
            "{tmp}/m",
            "--model",
            "nuclei-v1",
        ],
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS)),
        message=r"'nuclei-v1' is a segment model.*not a classify model",
    ),
    Case(
        "classify train: --val-fraction 1.5",
        [
            "classify",
            "train",
            "{tmp}/in",
            "--labels",
            "{tmp}/labels.csv",
            "--out",
            "{tmp}/m",
            "--val-fraction",
            "1.5",
        ],
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS)),
        message=r"--val-fraction must be between 0 and 1",
    ),
    Case(
        "classify train: --steps 0",
        [
            "classify",
            "train",
            "{tmp}/in",
            "--labels",
            "{tmp}/labels.csv",
            "--out",
            "{tmp}/m",
            "--steps",
            "0",
        ],
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS)),
        message=r"'--steps': must be at least 1, got 0",
    ),
    Case(
        "classify train: --out is the input folder",
        [
            "classify",
            "train",
            "{tmp}/in",
            "--labels",
            "{tmp}/labels.csv",
            "--out",
            "{tmp}/in",
            "--val-fraction",
            "0.5",
        ],
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS)),
        message=r"holds the input",
    ),
    Case(
        "classify train: --out o/dt_good is written as named and loads by path",
        [
            "classify",
            "train",
            "{tmp}/in",
            "--labels",
            "{tmp}/labels.csv",
            "--out",
            "{tmp}/o/dt_good",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--cell-fraction",
            "0",
            "--val-fraction",
            "0.5",
        ],
        expect="ok",
        setup=_setups(_hpa(FOUR), _labels(FOUR_LABELS)),
        check=_check_train,
    ),
]
