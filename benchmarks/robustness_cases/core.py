"""Cases of the shared layers: readers (``cytolens info``), option parsing, models, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tifffile

from robustness_cases import Case

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "cytolens" / "data" / "samples"


def _write(name: str, content: bytes):
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return setup


def _truncated_big_tiff(tmp: Path) -> None:
    """An 18000x18000 uint16 TIFF (618 MiB: read lazily) cut in half; sparse, so it is fast."""
    path = tmp / "big.tif"
    tifffile.imwrite(path, shape=(18000, 18000), dtype="uint16", photometric="minisblack")
    os.truncate(path, path.stat().st_size // 2)


def _truncated_small_tiff(tmp: Path) -> None:
    path = tmp / "small.tif"
    tifffile.imwrite(path, np.arange(256 * 256, dtype=np.uint16).reshape(256, 256))
    os.truncate(path, path.stat().st_size // 3)


def _nan_image(tmp: Path) -> None:
    data = np.full((32, 32), np.nan, np.float32)
    tifffile.imwrite(tmp / "nan.tif", data)


def _strict_json(tmp: Path, proc) -> str | None:
    try:
        json.loads(proc.stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as exc:
        return f"--json output is not strict JSON: {exc}"
    return None


def _bad_card_model(tmp: Path) -> None:
    folder = tmp / "mymodel"
    folder.mkdir()
    (folder / "card.yaml").write_text("name: [unclosed\n  task: :\n")
    (folder / "weights.pt").write_bytes(b"\0" * 64)
    (tmp / "img.png").write_bytes((SAMPLES / "nuclei_bbbc006.png").read_bytes())


def _two_files(tmp: Path) -> None:
    (tmp / "victim").mkdir()
    (tmp / "victim" / "notes.txt").write_text("precious")


CASES: list[Case] = [
    Case("info: missing file", ["info", "{tmp}/missing.tif"], message=r"missing\.tif: no such"),
    Case(
        "info: empty file",
        ["info", "{tmp}/empty.tif"],
        setup=_write("empty.tif", b""),
        message=r"empty\.tif",
    ),
    Case(
        "info: text named .tif",
        ["info", "{tmp}/notes.tif"],
        setup=_write("notes.tif", b"not an image\n" * 10),
        message=r"notes\.tif",
    ),
    Case(
        "info: text named .png",
        ["info", "{tmp}/notes.png"],
        setup=_write("notes.png", b"not an image\n"),
        message=r"notes\.png",
    ),
    Case(
        "info: text named .jpg",
        ["info", "{tmp}/notes.jpg"],
        setup=_write("notes.jpg", b"\xff\xd8\xff garbage"),
        message=r"notes\.jpg",
    ),
    Case(
        "info: unknown suffix",
        ["info", "{tmp}/x.bmp"],
        setup=_write("x.bmp", b"BM"),
        message=r"x\.bmp",
    ),
    Case(
        "info: truncated TIFF",
        ["info", "{tmp}/small.tif"],
        setup=_truncated_small_tiff,
        message=r"small\.tif",
    ),
    Case(
        "info: truncated TIFF above the lazy threshold",
        ["info", "{tmp}/big.tif"],
        setup=_truncated_big_tiff,
        message=r"big\.tif.*truncated",
    ),
    Case(
        "info: empty .ome.zarr folder",
        ["info", "{tmp}/x.ome.zarr"],
        setup=lambda t: (t / "x.ome.zarr").mkdir(),
        message=r"x\.ome\.zarr",
    ),
    Case(
        "info: folder without images", ["info", "{tmp}/victim"], setup=_two_files, message=r"victim"
    ),
    Case(
        "info --json of a NaN image is strict JSON",
        ["info", "{tmp}/nan.tif", "--json"],
        expect="ok",
        setup=_nan_image,
        check=_strict_json,
    ),
    Case("cli: unknown option", ["info", "--bogus"], message=r"--bogus"),
    Case("cli: unknown command", ["frobnicate"], message=r"frobnicate"),
    Case("cli: missing argument", ["focus", "rate"], message=r"Missing argument"),
    Case(
        "cli: number expected",
        ["focus", "rate", "x.tif", "--patch-size", "big"],
        message=r"--patch-size",
    ),
    Case("models: unknown model", ["models", "show", "no-such-model"], message=r"no-such-model"),
    Case(
        "models: export onto an existing folder",
        ["models", "export", "focus-miq-v1", "--out", "{tmp}/victim"],
        setup=_two_files,
        message=r"victim",
    ),
    Case(
        "models: malformed card.yaml",
        ["focus", "rate", "{tmp}/img.png", "--model", "{tmp}/mymodel", "--out", "{tmp}/o"],
        setup=_bad_card_model,
        message=r"card",
        allow_outputs=["o"],
    ),
]
