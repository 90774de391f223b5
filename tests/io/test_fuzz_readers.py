"""Fuzzing the image readers: whatever the bytes, a failure is a CytolensError naming the file.

Real files from the bundled samples are mutated (truncated, bytes overwritten,
a header field changed) and random bytes are given every supported suffix;
``imread`` must either return an image whose pixels can be computed or raise
a :class:`~cytolens.core.errors.CytolensError` that names the file, never a
library exception. The CTC track-file reader gets the same treatment.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cytolens.core.errors import CytolensError
from cytolens.io import imread

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "data" / "samples"
SOURCES = {
    ".png": (SAMPLES / "nuclei_bbbc006.png").read_bytes(),
    ".jpg": (SAMPLES / "blood_smear.jpg").read_bytes(),
    ".tif": (SAMPLES / "bead_psf.tif").read_bytes(),
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_fully(path: Path) -> None:
    try:
        image = imread(path)
        data = np.asarray(image.data)  # computes lazy data too
    except CytolensError as exc:
        assert path.name in str(exc), f"message does not name the file: {exc}"
        assert "\n" not in str(exc)
        return
    assert data.size > 0


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(SOURCES)))
    data = bytearray(SOURCES[suffix])
    kind = draw(st.sampled_from(["truncate", "overwrite", "header"]))
    if kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "overwrite":
        start = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=64))
        data[start : start + len(chunk)] = chunk
    else:  # the first 64 bytes hold magic numbers, offsets and sizes
        pos = draw(st.integers(0, min(63, len(data) - 1)))
        data[pos] = draw(st.integers(0, 255))
    return suffix, bytes(data)


@FUZZ
@given(mutated())
def test_mutated_real_files_fail_cleanly(case: tuple[str, bytes]) -> None:
    suffix, content = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"sample{suffix}"
        path.write_bytes(content)
        _read_fully(path)


@FUZZ
@given(
    st.sampled_from([".tif", ".tiff", ".ome.tif", ".png", ".jpg", ".jpeg"]),
    st.binary(max_size=2048),
)
def test_random_bytes_fail_cleanly(suffix: str, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"random{suffix}"
        path.write_bytes(content)
        _read_fully(path)


@FUZZ
@given(st.text(alphabet="0123456789 -\n.abe", max_size=200))
def test_ctc_track_file_fails_cleanly(text: str) -> None:
    from cytolens.io import read_ctc_tracks

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "man_track.txt"
        path.write_text(text)
        try:
            tracks = read_ctc_tracks(path)
        except CytolensError as exc:
            assert "man_track.txt" in str(exc)
            return
        assert (tracks["end"] >= tracks["begin"]).all()


@pytest.mark.parametrize("suffix", [".ome.zarr"])
def test_corrupt_zarr_fails_cleanly(tmp_path: Path, suffix: str) -> None:
    from cytolens.io import imwrite

    path = imwrite(tmp_path / f"x{suffix}", np.ones((8, 16, 16), np.uint16), axes="ZYX")
    for meta in path.rglob("zarr.json"):
        if meta.parent != path:
            meta.write_text("{ not json")
    _read_fully(path)
