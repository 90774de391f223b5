"""``watch``: files are processed as they arrive, once settled; a vanished folder is an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from cytolens.core.errors import MissingFileError, OutputError
from cytolens.pipeline import make_steps
from cytolens.pipeline.watch import watch

STEPS = [("segment.nuclei", {"method": "classical"}), ("segment.measure", {})]


@pytest.fixture
def sources(shared_data) -> list[Path]:
    return sorted((shared_data / "segmentation/dsb2018/images").glob("*.png"))[:3]


def _drip(files: list[Path], folder: Path, every_s: float) -> threading.Thread:
    """Copy files into ``folder`` one by one, the way an acquisition writes them."""

    def run() -> None:
        for f in files:
            partial = folder / f.name
            data = f.read_bytes()
            with open(partial, "wb") as fh:  # written in two halves: not ready in between
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.3)
                fh.write(data[len(data) // 2 :])
            time.sleep(every_s)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_watch_processes_each_file_once_when_settled(sources, tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    thread = _drip(sources, folder, 0.2)
    seen = []
    result, status = watch(
        folder,
        make_steps(STEPS),
        tmp_path / "out",
        settle_s=0.5,
        poll_s=0.05,
        max_items=3,
        status=lambda s: seen.append(s.in_flight),
    )
    thread.join()
    assert [r["status"] for r in result.records] == ["done"] * 3
    assert len(status.latencies_s) == 3 and min(status.latencies_s) >= 0.5
    nuclei = pd.read_csv(tmp_path / "out" / "nuclei.csv")
    assert sorted(set(nuclei["image"])) == sorted(p.stem for p in sources)
    assert status.max_in_flight <= 3 and seen  # the callback ran on every poll


def test_watch_refuses_output_in_place_and_missing_folder(tmp_path):
    with pytest.raises(MissingFileError, match="no such folder to watch"):
        watch(tmp_path / "nope", make_steps(STEPS), tmp_path / "o")
    with pytest.raises(OutputError, match="holds the input"):
        watch(tmp_path, make_steps(STEPS), tmp_path, overwrite=True)


def test_watched_folder_that_disappears(sources, tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    shutil.copy(sources[0], folder)

    def remove_later() -> None:
        time.sleep(1.5)
        shutil.rmtree(folder)

    threading.Thread(target=remove_later).start()
    with pytest.raises(MissingFileError, match=r"watched folder disappeared; the 1 result"):
        watch(folder, make_steps(STEPS), tmp_path / "out", settle_s=0.2, poll_s=0.05)
    assert (tmp_path / "out" / "items.csv").is_file()


def test_watch_cli_json(sources, tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    for f in sources[:2]:
        shutil.copy(f, folder)
    (tmp_path / "p.yaml").write_text("steps: [segment.nuclei: {method: classical}]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cytolens", "watch", "acq", "-p", "p.yaml", "--out", "o",
         "--settle", "0.2", "--stop-after-idle", "1", "--json"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["items"] == 2 and summary["failed"] == 0
    assert summary["latency_p95_s"] >= summary["latency_median_s"] > 0
