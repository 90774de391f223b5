"""The shared output policy, the batch loop, strict JSON and the command line's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cytolens import cli
from cytolens.core.batch import (
    EXIT_ALL_FAILED,
    EXIT_SOME_FAILED,
    exit_if_failed,
    run_batch,
    write_failures,
)
from cytolens.core.errors import FileFormatError, OutputError
from cytolens.core.files import (
    atomic_path,
    check_output_file,
    prepare_output_dir,
    remove_stale_temps,
)
from cytolens.core.summary import strict_json


@pytest.fixture
def victim(tmp_path):
    folder = tmp_path / "victim"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("precious")
    return folder


def test_check_output_file_refuses_folder_and_protected(tmp_path, victim):
    with pytest.raises(OutputError, match=r"--plot .*victim: is an existing folder"):
        check_output_file(victim, option="--plot")
    source = tmp_path / "x.tif"
    source.write_bytes(b"pixels")
    with pytest.raises(OutputError, match=r"would overwrite the input .*x\.tif"):
        check_output_file(tmp_path / "." / "x.tif", protected=[source])
    assert (victim / "notes.txt").read_text() == "precious"
    assert source.read_bytes() == b"pixels"


def test_check_output_file_unwritable_place_fails_before_work(tmp_path):
    # /proc is read-only even for root; chmod would not stop root
    with pytest.raises(OutputError, match=r"--out /proc/cytolens-x/a\.csv: cannot write"):
        check_output_file("/proc/cytolens-x/a.csv")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        check_output_file(blocker / "a.csv")


def test_prepare_output_dir_policy(tmp_path, victim):
    with pytest.raises(OutputError, match="already holds 2 file"):
        prepare_output_dir(victim)
    assert prepare_output_dir(victim, overwrite=True) == victim
    image = victim / "img.tif"
    image.write_bytes(b"pixels")
    for out in (victim, tmp_path):  # the input's folder, or a folder above it
        with pytest.raises(OutputError, match=r"holds the input .*img\.tif"):
            prepare_output_dir(out, protected=[image], overwrite=True)
    with pytest.raises(OutputError, match="is an existing file"):
        prepare_output_dir(image)
    fresh = prepare_output_dir(tmp_path / "new" / "deep")
    assert fresh.is_dir() and not any(fresh.iterdir())  # the probe file is gone


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".focus.0123abcd.tmp.csv").write_text("half")
    (out / ".cells.89abcdef.tmp.ome.zarr").mkdir()
    (out / ".hidden-but-mine").write_text("kept")
    prepare_output_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".hidden-but-mine"]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_path_names_the_final_path_on_os_errors(tmp_path):
    target = tmp_path / "t.csv"
    with pytest.raises(OutputError, match=r"cannot write .*t\.csv") as info:
        with atomic_path(target) as tmp:
            raise PermissionError(13, "Permission denied", str(tmp))
    assert ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_run_batch_bad_item_fails_alone(tmp_path, capsys):
    def process(x):
        if x == "bad.tif":
            raise FileFormatError("cannot read bad.tif (truncated or corrupt?)")
        return x.upper()

    res = run_batch(["a.tif", "bad.tif", "b.tif"], process, progress=False)
    assert res.results == ["A.TIF", "B.TIF"]
    assert [(f.item, f.error) for f in res.failures] == [("bad.tif", "FileFormatError")]
    path = write_failures(tmp_path, res.failures)
    assert path.read_text().splitlines()[1].startswith("bad.tif,FileFormatError,cannot read")
    with pytest.raises(SystemExit) as info:
        exit_if_failed(res, tmp_path)
    assert info.value.code == EXIT_SOME_FAILED
    assert "1 of 3 input(s) failed" in capsys.readouterr().err
    assert write_failures(tmp_path, []) is None and not path.exists()  # stale one removed
    with pytest.raises(SystemExit) as info:  # nothing could be processed: an error
        exit_if_failed(run_batch(["bad.tif"], process, progress=False))
    assert info.value.code == EXIT_ALL_FAILED
    exit_if_failed(run_batch([1], lambda x: x, progress=False))  # nothing failed: returns
    with pytest.raises(FileFormatError):
        run_batch(["bad.tif"], process, progress=False, stop_on_error=True)


def test_strict_json_has_no_nan():
    text = strict_json({"a": [np.float32("nan"), np.inf, 1.5], "b": np.arange(2)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "a": [None, None, 1.5],
        "b": [0, 1],
    }


@pytest.mark.parametrize(
    ("raised", "code", "text"),
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (cli.Terminated(15), 143, "terminated"),
        (OutputError("--out x: is an existing folder"), 2, "error: --out x: is an existing"),
    ],
)
def test_main_exit_codes(monkeypatch, capsys, raised, code, text):
    def boom(*args, **kwargs):
        raise raised

    monkeypatch.setattr(cli, "app", boom)
    monkeypatch.setattr("signal.signal", lambda *a: None)  # keep pytest's own handlers
    with pytest.raises(SystemExit) as info:
        cli.main(["info", "x"])
    assert info.value.code == code
    assert text in capsys.readouterr().err


def test_cli_usage_errors_are_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cytolens", "focus", "rate", "x.tif", "--patch-size", "big"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--patch-size" in lines[0] and lines[0].startswith("error:")
    assert list(tmp_path.iterdir()) == []
