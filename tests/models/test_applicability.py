"""Applicability of the shipped models: references, scores on real data, CLI columns, checks."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.clitools import cytolens
from tests.conftest import shared

from cytolens.core.errors import ModelError
from cytolens.models import load, load_card
from cytolens.models.applicability import (
    APPLICABILITY_FILE,
    DomainReference,
    OutOfDomainWarning,
    out_of_domain_note,
    sample_windows,
    score_input,
)
from cytolens.models.check import at_chance, at_chance_note, chance_classes

SHIPPED = ["focus-miq-v1", "nuclei-v1", "nuclei-v2", "detect-bccd-v1", "hpa-v1"]


def _read(path: Path) -> np.ndarray:
    from PIL import Image as PILImage

    return np.asarray(PILImage.open(path))


def _grey(a: np.ndarray) -> np.ndarray:
    return a[..., :3].astype(np.float32).mean(-1) if a.ndim == 3 else a.astype(np.float32)


# --------------------------------------------------------------------------- units
def test_reference_weighs_features_of_different_scales_alike() -> None:
    rng = np.random.default_rng(0)
    # feature 0 varies in thousands, feature 1 in thousandths: a shift of 5 spreads in
    # feature 1 must be as far as 5 spreads in feature 0
    train = rng.normal(size=(300, 2)) * [1000.0, 0.001]
    ref = DomainReference.fit(train, rng.normal(size=(100, 2)) * [1000.0, 0.001])
    d0, d1 = ref.distance(np.array([[5000.0, 0.0], [0.0, 0.005]]))
    assert d0 == pytest.approx(d1, rel=0.1)
    assert ref.score(np.array([[5000.0, 0.0]]))["in_domain"][0] is np.False_


def test_sample_windows_bounded_and_inside() -> None:
    for shape in [(40, 50), (512, 512), (3000, 200), (10000, 10000)]:
        windows = sample_windows(shape, 128, 4)
        assert 1 <= len(windows) <= 4
        for wy, wx in windows:
            assert 0 <= wy.start < wy.stop <= shape[0] and 0 <= wx.start < wx.stop <= shape[1]


def test_out_of_domain_note_names_the_images() -> None:
    rows = [
        {"image": "a.tif", "in_domain": True, "ood_score": 0.5},
        {"image": "b.tif", "in_domain": False, "ood_score": 4.0},
    ]
    note = out_of_domain_note(rows, "nuclei-v1")
    assert note is not None and "b.tif" in note and "a.tif" not in note and "1 of 2" in note
    assert out_of_domain_note(rows[:1], "nuclei-v1") is None


def test_chance_rule() -> None:
    metrics = {
        "per_class": {
            "0": {"name": "Good", "support": 8, "f1": 0.9},
            "1": {"name": "Chance", "support": 8, "f1": 0.6},  # chance F1 (8 of 16) is 0.667
        },
        "nucleolar_f1": 0.9,
        "nucleolar_support": 4,
    }
    found = chance_classes(metrics, 16)
    assert found["classes"] == ["Chance"] and found["nucleolar"] is False


def test_hpa_card_says_what_is_at_chance() -> None:
    card = load_card("hpa-v1")
    info = at_chance(card)
    assert info["nucleolar"] is True  # held-out nucleolar F1 0.47 < 0.61 (7 of 16 positive)
    assert "Nucleoli" in info["classes"]
    assert "per-cell" in at_chance_note(card)
    assert at_chance_note(load_card("focus-miq-v1")) is None


# --------------------------------------------------------------------------- shipped references
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_has_a_checked_reference(name: str) -> None:
    predictor = load(name, device="cpu")
    assert predictor.has_domain
    entry = predictor.card.applicability
    assert entry["file"] == APPLICABILITY_FILE and entry["n_calibration"] >= 8
    ref = predictor.domain()
    assert ref.limit == pytest.approx(entry["limit"], rel=1e-5)


def _dsb(modality: str, part: str, n: int) -> list[Path]:
    split = json.loads(
        (
            Path(__file__).resolve().parents[2] / "src/cytolens/segment/dsb2018_split.json"
        ).read_text()
    )
    root = shared("segmentation/dsb2018/images")
    return [root / f"{i}.png" for i in sorted(split[part][modality])[:n]]


def test_nuclei_in_domain_and_whole_cells_out() -> None:
    seg = load("nuclei-v1", device="cpu")
    for path in _dsb("fluorescence", "validation", 3):  # never used for the reference
        assert score_input(seg, _read(path), path.name)["in_domain"], path.name
    hpa = shared("classification/hpa/images")
    reds = sorted(hpa.glob("*_red.png"))[:6]  # microtubules: whole cells, not nuclei
    with pytest.warns(OutOfDomainWarning, match="outside the training domain of nuclei-v1"):
        scores = [score_input(seg, _read(path), path.name) for path in reds]
    # measured: 4 of these 6 lie outside (ood_score 0.89-1.71); the benchmark reports the rates
    assert sum(not s["in_domain"] for s in scores) >= 3


def test_focus_in_domain_and_histology_out() -> None:
    fm = load("focus-miq-v1", device="cpu")
    field = shared("focus/bbbc006_subset/BBBC006_z_aligned__a05__s1__w1_10.png")  # held out
    assert fm.applicability(_grey(_read(field)))["in_domain"]
    for path in _dsb("histology", "validation", 2):  # H&E: the focus model saw fluorescence only
        assert not fm.applicability(_grey(_read(path)))["in_domain"], path.name


def test_detector_in_domain_and_mitocheck_out() -> None:
    det = load("detect-bccd-v1", device="cpu")
    split = json.loads(
        (Path(__file__).resolve().parents[2] / "src/cytolens/detect/bccd_split.json").read_text()
    )
    stem = sorted(split["validation"])[1]  # a test image (odd position), not calibration
    image = _read(shared(f"detection/bccd/JPEGImages/{stem}.jpg"))
    assert det.applicability(image)["in_domain"]
    crops = sorted(shared("classification/mitocheck/images").rglob("*.png"))[:2]
    for path in crops:
        assert not det.applicability(np.repeat(_read(path)[..., None], 3, -1))["in_domain"]


def test_hpa_in_domain_and_grey_copies_out() -> None:
    from cytolens.io import read_hpa

    m = load("hpa-v1", device="cpu")
    split = json.loads(
        (Path(__file__).resolve().parents[2] / "src/cytolens/classify/hpa_split.json").read_text()
    )
    sample = sorted(split["validation"])[1]
    assert m.applicability(read_hpa(shared("classification/hpa/images"), sample))["in_domain"]
    grey = _read(_dsb("fluorescence", "validation", 1)[0])[..., 0]
    assert not m.applicability(np.stack([grey] * 4))["in_domain"]


# --------------------------------------------------------------------------- folders
def _copy(name: str, dest: Path) -> Path:
    from cytolens.models import model_dir

    return Path(shutil.copytree(model_dir(name), dest / name))


def test_model_folder_without_reference_still_works(tmp_path: Path) -> None:
    folder = _copy("focus-miq-v1", tmp_path)
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card.pop("applicability")
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    (folder / APPLICABILITY_FILE).unlink()
    fm = load(folder, device="cpu")
    assert not fm.has_domain
    image = np.random.default_rng(0).random((100, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        assert score_input(fm, image, "x") == {}
    with pytest.raises(ModelError, match="no applicability reference"):
        fm.applicability(image)


def test_tampered_reference_fails_its_sha256(tmp_path: Path) -> None:
    folder = _copy("focus-miq-v1", tmp_path)
    ref = DomainReference.load(folder / APPLICABILITY_FILE)
    DomainReference(ref.mean + 1.0, ref.whiten, ref.calibration, ref.quantile).save(
        folder / APPLICABILITY_FILE
    )
    fm = load(folder, device="cpu")
    with pytest.raises(ModelError, match="fails its sha256"):
        fm.applicability(np.random.default_rng(0).random((100, 100)))


# --------------------------------------------------------------------------- command line
def test_segment_cli_writes_columns_and_warns(tmp_path: Path) -> None:
    hpa = shared("classification/hpa/images")
    red = sorted(hpa.glob("*_red.png"))[1]  # whole cells; ood_score 1.71 for nuclei-v1
    fluo = _dsb("fluorescence", "validation", 1)[0]
    proc = cytolens("segment", "nuclei", fluo, red, "--out", tmp_path / "o", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    rows = {r["image"]: r for r in summary["images"]}
    assert rows[fluo.name]["in_domain"] is True and rows[red.name]["in_domain"] is False
    assert red.name in summary["warnings"][0] and "outside the training domain" in proc.stderr
    assert "ood_score" in (tmp_path / "o" / "report.html").read_text()


def test_models_check_end_to_end(tmp_path: Path) -> None:
    fluo = _dsb("fluorescence", "validation", 1)[0]
    red = sorted(shared("classification/hpa/images").glob("*_red.png"))[1]  # out (1.71)
    proc = cytolens(
        "models", "check", "nuclei-v1", fluo, red, "--out", tmp_path / "c", "--json",
        "--examples", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["out_of_domain"] == 1
    html = (tmp_path / "c" / "report.html").read_text()
    for part in ("most unlike the training data", "Expected accuracy", "Training data",
                 "Example predictions", red.name):  # fmt: skip
        assert part in html
    import pandas as pd

    table = pd.read_csv(tmp_path / "c" / "applicability.csv")
    assert set(table["image"]) == {fluo.name, red.name}
    assert {"ood_score", "domain_percentile", "in_domain"} <= set(table.columns)


def test_models_check_without_reference(tmp_path: Path) -> None:
    from cytolens.io import imwrite

    folder = _copy("focus-miq-v1", tmp_path)
    card = yaml.safe_load((folder / "card.yaml").read_text())
    card.pop("applicability")
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    image = tmp_path / "a.tif"
    imwrite(image, np.random.default_rng(0).random((100, 100)).astype(np.float32), axes="YX")
    proc = cytolens("models", "check", folder, image, "--out", tmp_path / "c", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "ood_score" not in json.loads(proc.stdout)["images"][0]
    assert "ships no applicability reference" in (tmp_path / "c" / "report.html").read_text()


def test_classify_cli_says_nucleolar_calls_are_at_chance(tmp_path: Path) -> None:
    hpa = shared("classification/hpa/images")
    proc = cytolens(
        "classify", "hpa", hpa, "--out", tmp_path / "h", "--limit", "1", "--json",
        "--nucleus-method", "classical",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert any("at chance" in w and "per-cell" in w for w in summary["warnings"])
    assert "ood_score" in summary["images"][0]
    import pandas as pd

    cells = pd.read_csv(tmp_path / "h" / "cells.csv")
    assert cells["nucleolar_at_chance"].all()
    assert "at chance" in (tmp_path / "h" / "report.html").read_text()


def test_track_auto_on_whole_cells_does_not_use_the_nucleus_model(tmp_path: Path) -> None:
    from cytolens.io import imwrite

    reds = sorted(shared("classification/hpa/images").glob("*_red.png"))[:3]
    movie = np.stack([_read(p)[:256, :256] for p in reds])  # whole cells (microtubules)
    imwrite(tmp_path / "cells.tif", movie, axes="TYX")
    proc = cytolens(
        "track", tmp_path / "cells.tif", "--segmenter", "auto", "--out", tmp_path / "t", "--json"
    )
    from cytolens.track.cli import NUCLEI_MODEL

    assert f"outside the training domain of {NUCLEI_MODEL}" in proc.stderr
    if proc.returncode == 0:
        summary = json.loads(proc.stdout)
        assert summary["segmenter"] == "threshold"
        assert summary[f"{NUCLEI_MODEL}_applicability"]["in_domain"] is False
