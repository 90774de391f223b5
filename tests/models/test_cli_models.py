"""``cytolens models list|show|export`` through typer's CliRunner."""

from __future__ import annotations

import json
import zipfile

from typer.testing import CliRunner

from cytolens.cli import app as main_app
from cytolens.core.errors import InputError, ModelError
from cytolens.models import list_models, load_card
from cytolens.models.cli import app, key_metric

runner = CliRunner()


def test_list_json_has_one_row_per_shipped_model():
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list_models()
    nuclei = next(r for r in rows if r["name"] == "nuclei-v1")
    assert nuclei["sha256"] == load_card("nuclei-v1").sha256
    assert 1.0 < nuclei["size_mb"] < 3.0  # 482466 float32 parameters ~ 1.9 MB
    # the image type with most validation images (65 fluorescence) is the headline
    assert nuclei["key_metric"] == "fluorescence.ap50=0.867"


def test_list_table_and_registration_in_main_cli():
    result = runner.invoke(main_app, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "focus-miq-v1" in result.stdout and "cdd36acc0310" in result.stdout


def test_show_prints_the_card():
    result = runner.invoke(app, ["show", "focus-miq-v1", "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["network"]["entry_point"] == "cytolens.focus.network:FocusNet"
    result = runner.invoke(app, ["show", "nuclei-v1"])
    assert result.exit_code == 0 and "training_data" in result.stdout


def test_unknown_model_names_the_known_ones():
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code != 0 and isinstance(result.exception, ModelError)
    assert "nuclei-v1" in str(result.exception)


def test_export_writes_a_package(tmp_path):
    out = tmp_path / "focus.zip"
    result = runner.invoke(app, ["export", "focus-miq-v1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["bytes"] == out.stat().st_size
    assert "rdf.yaml" in zipfile.ZipFile(out).namelist()
    assert "model test passed" in result.stderr


def test_export_refuses_a_folder(tmp_path):
    result = runner.invoke(app, ["export", "focus-miq-v1", "--out", str(tmp_path)])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)
    assert "is a folder" in str(result.exception) and tmp_path.is_dir()


def test_key_metric_prefers_known_names():
    assert key_metric({"loss": 1.0, "sim_within_one": 0.91666}) == "sim_within_one=0.9167"
    assert key_metric({"loss": 1.0}) == ""
