"""Cases of nucleus segmentation (``cytolens segment nuclei``), tracking (``cytolens track``)
and the Cell Tracking Challenge reader.

Inputs are cut from the bundled samples (BBBC006 nuclei, the Fluo-N2DH-SIM+
excerpt and its markers), so every case runs without ../shared/data and in
seconds; the classical segmenter is used unless the case is about the model.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from robustness_cases import Case

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "data" / "samples"
NUCLEI = SAMPLES / "nuclei_bbbc006.png"
MOVIE = SAMPLES / "tracking_sim.tif"
MARKERS = SAMPLES / "tracking_sim_tra.tif"
CLASSICAL = ["--method", "classical"]


# --- inputs -------------------------------------------------------------------------------


def _nuclei_plane() -> np.ndarray:
    from cytolens.io import imread

    return np.asarray(imread(NUCLEI).data)


def _movie(frames: int = 4, size: int = 128) -> np.ndarray:
    return tifffile.imread(MOVIE)[:frames, :size, :size]


def _markers(frames: int = 4, size: int = 128) -> np.ndarray:
    return tifffile.imread(MARKERS)[:frames, :size, :size]


def _write_tyx(path: Path, data: np.ndarray, axes: str = "TYX") -> None:
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": axes})


def _segment_folder(tmp: Path) -> None:
    """Two good crops, a corrupt TIFF and a 3-pixel strip in ``in/``."""
    folder = tmp / "in"
    folder.mkdir()
    plane = _nuclei_plane()
    tifffile.imwrite(folder / "a.tif", plane[:256, :256])
    tifffile.imwrite(folder / "b.tif", plane[256:, 300:])
    (folder / "corrupt.tif").write_bytes(b"II*\x00 this is not a TIFF")
    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "strip.tif", rng.normal(100, 10, (3, 5000)).astype(np.float32))


def _one_crop(tmp: Path) -> None:
    tifffile.imwrite(tmp / "crop.tif", _nuclei_plane()[:200, :300])


def _earlier_run(tmp: Path) -> None:
    """An earlier run's table in ``out/`` (a second run must not silently mix with it)."""
    _one_crop(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "nuclei.csv").write_text("image,label\nold.tif,1\n")


def _strip(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp / "strip.tif", rng.normal(100, 10, (3, 100000)).astype(np.float32))


def _huge_floats(tmp: Path) -> None:
    crop = _nuclei_plane()[:200, :200].astype(np.float64)
    tifffile.imwrite(tmp / "huge.tif", (crop / crop.max() * 1e37).astype(np.float32))


def _blank_and_good(tmp: Path) -> None:
    folder = tmp / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "blank.tif", np.zeros((64, 64), np.uint16))
    tifffile.imwrite(folder / "good.tif", _nuclei_plane()[:200, :200])


def _z_stack_image(tmp: Path) -> None:
    plane = _nuclei_plane()[:128, :128]
    _write_tyx(tmp / "stack.tif", np.stack([plane, plane, plane]), axes="ZYX")


def _movies(tmp: Path) -> None:
    folder = tmp / "in"
    folder.mkdir()
    _write_tyx(folder / "raw.tif", _movie())
    _write_tyx(folder / "labels.tif", _markers())
    _write_tyx(folder / "stack.tif", _movie(), axes="ZYX")


def _movie_with(name: str, data: Callable[[], np.ndarray], axes: str = "TYX"):
    def setup(tmp: Path) -> None:
        _write_tyx(tmp / name, data(), axes=axes)

    return setup


def _ctc(frames: list[int], *, markers: list[int] | None = None):
    """A CTC sequence folder ``Toy/01`` with frames (and TRA markers) of the bundled excerpt."""

    def setup(tmp: Path) -> None:
        seq = tmp / "Toy" / "01"
        seq.mkdir(parents=True)
        movie, gt = _movie(frames=max(frames) + 1), _markers(frames=max(frames) + 1)
        for t in frames:
            tifffile.imwrite(seq / f"t{t:03d}.tif", movie[t])
        if markers is not None:
            tra = tmp / "Toy" / "01_GT" / "TRA"
            tra.mkdir(parents=True)
            for t in markers:
                tifffile.imwrite(tra / f"man_track{t:03d}.tif", gt[t])

    return setup


def _earlier_track_run(tmp: Path) -> None:
    _movies(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "tracks.csv").write_text("track_id,t\n1,0\n")


def _unwritable_overlay(tmp: Path) -> None:
    _movies(tmp)
    (tmp / "out" / "overlay.gif").mkdir(parents=True)


# --- checks of "ok" cases -------------------------------------------------------------------


def _strict_json(proc: subprocess.CompletedProcess) -> tuple[object, str | None]:
    def refuse(constant: str) -> None:
        raise ValueError(constant)

    lines = proc.stdout.strip().splitlines()
    if not lines:
        return None, "no --json output on stdout"
    try:
        return json.loads(lines[-1], parse_constant=refuse), None
    except ValueError as exc:
        return None, f"--json output is not strict JSON: {exc}"


def _check_batch(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    out = tmp / "out"
    for name in ("nuclei.csv", "failures.csv", "report.html", "a_labels.tif", "b_labels.tif"):
        if not (out / name).is_file():
            return f"{name} missing: the good images must finish and the failures be listed"
    failures = (out / "failures.csv").read_text()
    if "corrupt.tif" not in failures or "strip.tif" not in failures:
        return f"failures.csv does not list both bad files: {failures!r}"
    images = {line.split(",")[0] for line in (out / "nuclei.csv").read_text().splitlines()[1:]}
    if images != {"a.tif", "b.tif"}:
        return f"nuclei.csv covers {sorted(images)}, expected the two good images"
    if "Failed inputs" not in (out / "report.html").read_text():
        return "the report has no 'Failed inputs' section"
    if list(out.glob("strip_*")) or list(out.glob("corrupt_*")):
        return "files of a failed input were left"
    return None


def _check_transposed(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    from cytolens.io import imread

    labels = imread(tmp / "out" / "crop_labels.tif").shape
    overlay = imread(tmp / "out" / "crop_overlay.png").shape
    if labels != (300, 200) or overlay[:2] != labels:
        return f"labels {labels} and overlay {overlay} do not follow --axes XY (300 x 200)"
    return None


def _check_finite_csv(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    text = (tmp / "out" / "huge_nuclei.csv").read_text().lower()
    if "inf" in text or "nan" in text.replace("perimeter_um", ""):
        return "the table holds inf/NaN from a float32 overflow"
    if len(text.splitlines()) < 3:
        return "no nuclei measured"
    return None


def _check_json(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    return _strict_json(proc)[1]


def _check_tracks_json(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    summary, problem = _strict_json(proc)
    if problem:
        return problem
    if not isinstance(summary, dict) or not summary.get("tracks"):
        return f"no tracks reported: {summary}"
    return None


def _check_ctc_numbers(tmp: Path, proc: subprocess.CompletedProcess) -> str | None:
    res = tmp / "out" / "01_RES"
    masks = sorted(p.name for p in res.glob("mask*.tif"))
    if masks != ["mask003.tif", "mask004.tif", "mask005.tif"]:
        return f"result masks {masks} do not keep the input's frame numbers t003..t005"
    begins = [int(line.split()[1]) for line in (res / "res_track.txt").read_text().splitlines()]
    if min(begins) != 3:
        return f"res_track.txt begins at frame {min(begins)}, the input at t003"
    return None


def _seg(*args: str) -> list[str]:
    return ["segment", "nuclei", *args]


CASES: list[Case] = [
    # ---- segment nuclei ----
    Case(
        "segment: one bad file in a folder fails alone",
        _seg("{tmp}/in", "--out", "{tmp}/out", *CLASSICAL),
        expect="ok",
        exit_code=1,
        setup=_segment_folder,
        check=_check_batch,
    ),
    Case(
        "segment: second run into the same folder",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", *CLASSICAL),
        setup=_earlier_run,
        message=r"--out .*out: already holds .*--overwrite",
    ),
    Case(
        "segment: --out is the input folder",
        _seg("{tmp}/crop.tif", "--out", "{tmp}", "--overwrite"),
        setup=_one_crop,
        message=r"holds the input .*crop\.tif",
    ),
    Case(
        "segment: --out is a file",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/crop.tif"),
        setup=_one_crop,
        message=r"--out .*crop\.tif: is an existing file",
    ),
    Case(
        "segment: --diameter 0.01 (3.37 TiB zoom)",
        _seg("{samples}/nuclei_bbbc006.png", "--out", "{tmp}/out", "--diameter", "0.01"),
        message=r"nuclei_bbbc006\.png: a nucleus diameter of 0\.01 px .*3 to 520 px"
        r".*832000 x 1113600 px",
    ),
    Case(
        "segment: --diameter-um too small for the pixel size",
        _seg(
            "{tmp}/crop.tif",
            "--out",
            "{tmp}/out",
            *CLASSICAL,
            "--diameter-um",
            "0.01",
            "--pixel-size-um",
            "0.5",
        ),
        setup=_one_crop,
        message=r"crop\.tif: a nucleus diameter of 0\.02 px \(0\.01 um at 0\.5 um/px\)",
    ),
    Case(
        "segment: --diameter 0",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--diameter", "0"),
        setup=_one_crop,
        message=r"Invalid value for '--diameter': must be a positive number",
    ),
    Case(
        "segment: --diameter nan",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--diameter", "nan"),
        setup=_one_crop,
        message=r"Invalid value for '--diameter'",
    ),
    Case(
        "segment: --pixel-size-um -0.5",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--pixel-size-um", "-0.5"),
        setup=_one_crop,
        message=r"Invalid value for '--pixel-size-um'",
    ),
    Case(
        "segment: --diameter and --diameter-um together",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--diameter", "10", "--diameter-um", "5"),
        setup=_one_crop,
        message=r"--diameter .*--diameter-um .*not both",
    ),
    Case(
        "segment: --tile-shape 0",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--tile-shape", "0"),
        setup=_one_crop,
        message=r"Invalid value for '--tile-shape'",
    ),
    Case(
        "segment: --tile-shape smaller than the model's overlap",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--tile-shape", "50"),
        setup=_one_crop,
        message=r"--tile-shape 50 is too small for model 'nuclei-v1'.*at least 97",
    ),
    Case(
        "segment: unknown model",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--model", "no-such-model"),
        setup=_one_crop,
        message=r"no-such-model",
    ),
    Case(
        "segment: --axes ZYX on a 2-D PNG",
        _seg("{samples}/nuclei_bbbc006.png", "--out", "{tmp}/out", "--axes", "ZYX", *CLASSICAL),
        message=r"nuclei_bbbc006\.png: axes 'ZYX' has 3 letter\(s\) but the array has 2",
    ),
    Case(
        "segment: --axes with an unknown letter",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--axes", "QYX"),
        setup=_one_crop,
        message=r"--axes: axes 'QYX' has unknown letter",
    ),
    Case(
        "segment: --axes XY gives outputs in one orientation",
        _seg("{tmp}/crop.tif", "--out", "{tmp}/out", "--axes", "XY", *CLASSICAL),
        expect="ok",
        setup=_one_crop,
        check=_check_transposed,
    ),
    Case(
        "segment: 3 x 100000 noise strip",
        _seg("{tmp}/strip.tif", "--out", "{tmp}/out", *CLASSICAL),
        setup=_strip,
        message=r"strip\.tif has shape \(3, 100000\): too small to segment nuclei",
    ),
    Case(
        "segment: 3 x 100000 noise strip, model",
        _seg("{tmp}/strip.tif", "--out", "{tmp}/out"),
        setup=_strip,
        message=r"strip\.tif has shape \(3, 100000\): too small to segment nuclei",
    ),
    Case(
        "segment: z-stack without a plane chosen",
        _seg("{tmp}/stack.tif", "--out", "{tmp}/out", *CLASSICAL),
        setup=_z_stack_image,
        message=r"stack\.tif has 3 planes along axis Z",
    ),
    Case(
        "segment: float32 values near 1e37",
        _seg("{tmp}/huge.tif", "--out", "{tmp}/out", *CLASSICAL),
        expect="ok",
        setup=_huge_floats,
        check=_check_finite_csv,
    ),
    Case(
        "segment: --json with an image without nuclei is strict JSON",
        _seg("{tmp}/in", "--out", "{tmp}/out", *CLASSICAL, "--json"),
        expect="ok",
        setup=_blank_and_good,
        check=_check_json,
    ),
    Case(
        "segment: missing input",
        _seg("{tmp}/missing.tif", "--out", "{tmp}/out"),
        message=r"missing\.tif",
    ),
    Case(
        "segment: empty folder",
        _seg("{tmp}/empty", "--out", "{tmp}/out"),
        setup=lambda tmp: (tmp / "empty").mkdir(),
        message=r"empty: folder has no image files",
    ),
    # ---- track ----
    Case(
        "track: raw movie given with --labels",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--labels"],
        setup=_movies,
        message=r"raw\.tif does not look like a label movie",
    ),
    Case(
        "track: binary mask given with --labels",
        ["track", "{tmp}/mask.tif", "--out", "{tmp}/out", "--labels"],
        setup=_movie_with("mask.tif", lambda: (_markers() > 0).astype(np.uint8)),
        message=r"mask\.tif looks like a binary mask",
    ),
    Case(
        "track: float movie given with --labels",
        ["track", "{tmp}/float.tif", "--out", "{tmp}/out", "--labels"],
        setup=_movie_with("float.tif", lambda: _markers().astype(np.float32)),
        message=r"float\.tif must hold integer labels",
    ),
    Case(
        "track: label movie of zeros",
        ["track", "{tmp}/zeros.tif", "--out", "{tmp}/out", "--labels"],
        setup=_movie_with("zeros.tif", lambda: np.zeros((3, 64, 64), np.uint16)),
        message=r"zeros\.tif holds no objects",
    ),
    Case(
        "track: file tagged ZYX",
        ["track", "{tmp}/in/stack.tif", "--out", "{tmp}/out"],
        setup=_movies,
        message=r"stack\.tif has axes 'ZYX' \(a z-stack\) and no time axis.*--axes TYX",
    ),
    Case(
        "track: two-channel movie",
        ["track", "{tmp}/two.tif", "--out", "{tmp}/out"],
        setup=_movie_with("two.tif", lambda: np.stack([_movie()] * 2, axis=1), axes="TCYX"),
        message=r"two\.tif has axes 'TCYX' with 2 channels",
    ),
    Case(
        "track: CTC folder with a missing frame",
        ["track", "{tmp}/Toy/01", "--out", "{tmp}/out"],
        setup=_ctc([0, 1, 2, 3, 5]),
        message=r"t004\.tif missing between t000\.tif and t005\.tif",
    ),
    Case(
        "track: CTC folder with a missing marker file",
        ["track", "{tmp}/Toy", "--out", "{tmp}/out"],
        setup=_ctc([0, 1, 2], markers=[0, 2]),
        message=r"man_track001\.tif missing",
    ),
    Case(
        "track: CTC folder starting at t003 keeps its numbers",
        ["track", "{tmp}/Toy", "--out", "{tmp}/out"],
        expect="ok",
        setup=_ctc([3, 4, 5]),
        check=_check_ctc_numbers,
    ),
    Case(
        "track: --fps 0",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--fps", "0"],
        setup=_movies,
        message=r"Invalid value for '--fps': must be a positive number",
    ),
    Case(
        "track: --fps -5",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--fps", "-5"],
        setup=_movies,
        message=r"Invalid value for '--fps'",
    ),
    Case(
        "track: --max-distance 0",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--max-distance", "0"],
        setup=_movies,
        message=r"Invalid value for '--max-distance'",
    ),
    Case(
        "track: --gap-closing -1",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--gap-closing", "-1"],
        setup=_movies,
        message=r"Invalid value for '--gap-closing'",
    ),
    Case(
        "track: unknown --segmenter",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--segmenter", "cellpose"],
        setup=_movies,
        message=r"Invalid value for '--segmenter'",
    ),
    Case(
        "track: --out is the input's folder",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/in", "--overwrite"],
        setup=_movies,
        message=r"holds the input .*raw\.tif",
    ),
    Case(
        "track: --out is the CTC dataset folder",
        ["track", "{tmp}/Toy/01", "--out", "{tmp}/Toy", "--overwrite"],
        setup=_ctc([0, 1, 2]),
        message=r"holds the input",
    ),
    Case(
        "track: second run into the same folder",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out"],
        setup=_earlier_track_run,
        message=r"--out .*out: already holds .*--overwrite",
    ),
    Case(
        "track: an output that cannot be written leaves no partial results",
        ["track", "{tmp}/in/raw.tif", "--out", "{tmp}/out", "--overwrite"],
        setup=_unwritable_overlay,
        message=r"overlay\.gif",
    ),
    Case(
        "track: threshold segmenter finds nothing",
        ["track", "{tmp}/flat.tif", "--out", "{tmp}/out"],
        setup=_movie_with("flat.tif", lambda: np.full((3, 64, 64), 100, np.uint16)),
        message=r"segmenter 'threshold' .*found no objects in any of the 3 frames of .*flat\.tif",
    ),
    Case(
        "track: --segmenter auto finds nothing",
        ["track", "{tmp}/flat.tif", "--out", "{tmp}/out", "--segmenter", "auto"],
        setup=_movie_with("flat.tif", lambda: np.full((3, 64, 64), 100, np.uint16)),
        message=r"segmenter 'auto' .*found no objects.*--segmenter threshold",
    ),
    Case(
        "track: --json is strict JSON with tracks",
        ["track", "{tmp}/in/labels.tif", "--out", "{tmp}/out", "--labels", "--json"],
        expect="ok",
        setup=_movies,
        check=_check_tracks_json,
    ),
    Case(
        "track: missing movie",
        ["track", "{tmp}/missing.tif", "--out", "{tmp}/out"],
        message=r"missing\.tif: no such file",
    ),
]
