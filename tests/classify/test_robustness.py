"""Bad inputs to ``cytolens classify hpa|train``: nothing lost, nothing silently wrong.

Every test runs the command line in a subprocess, as a user would, and checks
the exit code, the one-line message naming the file, row or option, that the
inputs are byte-identical afterwards and that no temporary file remains.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage
from tests.clitools import cytolens, digest, no_temporaries, one_error_line, strict_loads
from tests.conftest import shared

HPA = "classification/hpa"
COLOURS = ("red", "green", "blue", "yellow")


def copy_samples(ids: list[str], folder: Path) -> Path:
    images = shared(HPA) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for sid in ids:
        for colour in COLOURS:
            shutil.copy(images / f"{sid}_{colour}.png", folder / f"{sid}_{colour}.png")
    return folder


def labelled_ids(n: int) -> list[str]:
    return list(pd.read_csv(shared(HPA) / "labels.csv")["Id"][:n])


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A real sample, an all-black sample and one with a corrupt green file."""
    folder = copy_samples(labelled_ids(1), tmp_path / "in")
    for colour in COLOURS:
        PILImage.fromarray(np.zeros((256, 256), np.uint8)).save(folder / f"black_{colour}.png")
        shutil.copy(folder / f"black_{colour}.png", folder / f"broken_{colour}.png")
    (folder / "broken_green.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def test_hpa_batch_goes_on_past_a_bad_sample_and_gives_a_black_one_no_label(
    mixed: Path, tmp_path: Path
) -> None:
    real = labelled_ids(1)[0]
    before = digest([mixed])
    out = tmp_path / "out"
    proc = cytolens("classify", "hpa", mixed, "--out", out, "--json", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "failed: broken:" in proc.stderr and "broken_green.png" in proc.stderr
    payload = strict_loads(proc.stdout)  # no NaN in the JSON
    assert [r["id"] for r in payload["images"]] == sorted([real, "black"])
    images = pd.read_csv(out / "images.csv", keep_default_na=False).set_index("id")
    assert images.loc["black", "labels"] == "" and not images.loc["black", "signal"]
    assert "no protein signal" in images.loc["black", "no_signal"]
    assert images.loc[real, "signal"] and images.loc[real, "labels"] != ""
    assert list(pd.read_csv(out / "failures.csv")["item"]) == ["broken"]
    report = (out / "report.html").read_text()
    assert "without signal" in report and "Failed inputs" in report
    assert not (out / "composite" / "broken.png").exists()  # nothing of the failed sample
    assert set(pd.read_csv(out / "cells.csv")["id"]) <= {real}
    assert digest([mixed]) == before
    no_temporaries(tmp_path)

    # a second run into the same folder would mix two runs: refused before any work
    proc = cytolens("classify", "hpa", mixed, "--out", out, "--device", "cpu")
    assert proc.returncode == 2
    assert "--overwrite" in one_error_line(proc)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--limit", "-1"], "Invalid value for '--limit': must be at least 1, got -1"),
        (["--limit", "0"], "Invalid value for '--limit'"),
        (["--min-confidence", "1.5"], "Invalid value for '--min-confidence'"),
        (["--model", "nuclei-v1"], "'nuclei-v1' is a segment model"),
        (["--nucleus-method", "magic"], "--nucleus-method 'magic'"),
    ],
)
def test_hpa_bad_options_stop_before_any_work(
    mixed: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    proc = cytolens("classify", "hpa", mixed, "--out", out, *extra)
    assert proc.returncode == 2
    assert message in one_error_line(proc)
    assert not out.exists()


def test_hpa_refuses_an_output_folder_that_holds_the_inputs(mixed: Path) -> None:
    before = digest([mixed.parent])
    proc = cytolens("classify", "hpa", mixed, "--out", mixed.parent, "--device", "cpu")
    assert proc.returncode == 2
    assert f"holds the input {mixed.resolve()}" in one_error_line(proc)
    assert digest([mixed.parent]) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", r"labels\.csv: empty file; expected a CSV with the header 'Id,Target'"),
        ("Id,Target\n", r"labels\.csv: no sample listed"),
        ("Name,Classes\na,1\n", r"labels\.csv: missing column\(s\) \['Id', 'Target'\]"),
        ("Id,Target\n{0},0\n{1},2 31\n", r"labels\.csv row 3: class number\(s\) \[31\] outside"),
        ("Id,Target\n{0},0\nnot-there,2\n", r"labels\.csv row 3: sample 'not-there' has no"),
        ("Id,Target\n{0},0\n{0},2\n", r"labels\.csv row 3: duplicate Id"),
    ],
)
def test_train_bad_labels_are_one_line_errors_naming_file_and_row(
    tmp_path: Path, content: str, message: str
) -> None:
    import re

    images = shared(HPA) / "images"
    labels = tmp_path / "labels.csv"
    labels.write_text(content.format(*labelled_ids(2)))
    out = tmp_path / "model"
    proc = cytolens("classify", "train", images, "--labels", labels, "--out", out)
    assert proc.returncode == 2
    assert re.search(message, one_error_line(proc)), proc.stderr
    assert not out.exists()


def test_train_with_a_model_of_another_capability_is_a_model_error(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("Id,Target\n" + "".join(f"{i},0\n" for i in labelled_ids(4)))
    out = tmp_path / "model"
    proc = cytolens("classify", "train", shared(HPA) / "images", "--labels", labels, "--out", out,
                    "--model", "nuclei-v1")  # fmt: skip
    assert proc.returncode == 2
    assert "'nuclei-v1' is a segment model" in one_error_line(proc)
    assert not out.exists()


def test_train_writes_exactly_the_folder_given_and_it_loads_by_path(tmp_path: Path) -> None:
    ids = labelled_ids(4)
    folder = copy_samples(ids, tmp_path / "in")
    raw = pd.read_csv(shared(HPA) / "labels.csv")
    labels = tmp_path / "labels.csv"
    raw[raw["Id"].isin(ids)].to_csv(labels, index=False)
    before = digest([folder, labels])
    out = tmp_path / "o" / "dt_good"
    proc = cytolens("classify", "train", folder, "--labels", labels, "--out", out, "--steps", 1,
                    "--batch-size", 2, "--cell-fraction", 0, "--val-fraction", 0.5)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["dt_good"]
    assert {p.name for p in out.iterdir()} == {"card.yaml", "weights.pt", "validation.csv"}
    assert "name: dt-good" in (out / "card.yaml").read_text()
    proc = cytolens("classify", "hpa", folder, "--model", out, "--out", tmp_path / "res",
                    "--no-cells", "--limit", 1, "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "res" / "images.csv")) == 1
    # training again into the model folder (or from it into itself) is refused
    proc = cytolens("classify", "train", folder, "--labels", labels, "--out", out, "--model", out,
                    "--overwrite", "--val-fraction", 0.5)  # fmt: skip
    assert proc.returncode == 2
    assert "holds the input" in one_error_line(proc)
    assert digest([folder, labels]) == before
    no_temporaries(tmp_path)


def test_localization_api_gives_no_label_to_an_image_without_signal() -> None:
    from cytolens.classify import localization, no_signal_reason
    from cytolens.io import read_hpa

    black = localization(np.zeros((4, 256, 256), np.uint8), device="cpu")
    assert black.labels == [] and not black.has_signal
    assert "no protein signal" in black.no_signal
    summary = black.summary()
    assert summary["signal"] is False and summary["labels"] == ""
    assert np.isnan(summary["nucleolar_probability"]) and np.isnan(summary["p_02"])
    # a protein channel with signal but nothing in the landmark channels: no cells
    image = np.zeros((4, 256, 256), np.uint8)
    image[1, 100:140, 100:140] = 200
    assert no_signal_reason(image).startswith("no cells")
    # the 75 real samples all have signal; the bundled sample too
    sample = Path(__file__).resolve().parents[2] / "src/cytolens/data/samples/hpa_nucleoli"
    assert no_signal_reason(read_hpa(sample)) == ""
