"""Cell Tracking Challenge folders and track tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cytolens.core.errors import FileFormatError, InputError, MissingFileError
from cytolens.io import read_ctc, read_ctc_tracks, write_ctc_tracks

CTC = "tracking/ctc"


@pytest.mark.parametrize(
    ("dataset", "n_frames", "frame_shape", "dtype"),
    [
        ("Fluo-N2DH-SIM+", 65, (690, 628), np.uint16),
        ("Fluo-N2DH-GOWT1", 92, (1024, 1024), np.uint8),
    ],
)
def test_read_real_datasets(
    shared_data: Path, dataset: str, n_frames: int, frame_shape: tuple[int, int], dtype: type
) -> None:
    folder = shared_data / CTC / dataset
    seq = read_ctc(folder, lazy=True)
    assert (seq.name, seq.sequence, seq.path) == (dataset, "01", folder / "01")
    assert seq.n_frames == n_frames
    assert seq.frames.axes == "TYX" and seq.frames.shape == (n_frames, *frame_shape)
    assert seq.frames.dtype == dtype and seq.frames.is_lazy
    np.testing.assert_array_equal(
        seq.frames.data[3].compute(), tifffile.imread(folder / "01" / "t003.tif")
    )
    assert seq.tracks is not None and len(seq.tracks) > 0
    assert list(seq.tracks.columns) == ["label", "begin", "end", "parent"]
    assert all(seq.tracks[c].dtype == np.int64 for c in seq.tracks.columns)
    assert seq.tracks["end"].max() == n_frames - 1
    assert seq.tra_masks is not None and seq.tra_masks.shape == seq.frames.shape
    # every track label appears in its first marker frame
    first = seq.tracks.iloc[0]
    assert first["label"] in np.unique(seq.tra_masks.data[first["begin"]].compute())
    assert len(seq.seg_masks) > 0
    frame = next(iter(seq.seg_masks))
    assert seq.seg_masks[frame].shape == frame_shape


def test_sequence_folder_and_dataset_folder_agree(shared_data: Path) -> None:
    folder = shared_data / CTC / "Fluo-N2DH-SIM+"
    by_dataset = read_ctc(folder, sequence=1, lazy=False)  # numpy path, threaded decoding
    by_sequence = read_ctc(folder / "01", lazy=True)
    assert not by_dataset.frames.is_lazy
    assert by_sequence.path == by_dataset.path
    np.testing.assert_array_equal(by_sequence.frames.data[10].compute(), by_dataset.frames.data[10])
    pd.testing.assert_frame_equal(by_sequence.tracks, by_dataset.tracks)


def test_real_track_file_round_trip(shared_data: Path, tmp_path: Path) -> None:
    original = shared_data / CTC / "Fluo-N2DH-SIM+/01_GT/TRA/man_track.txt"
    tracks = read_ctc_tracks(original)
    assert (tracks["parent"] > 0).any()  # SIM+ has divisions
    out = write_ctc_tracks(tmp_path / "res_track.txt", tracks)
    assert out.read_text().split() == original.read_text().split()
    pd.testing.assert_frame_equal(read_ctc_tracks(out), tracks)


def test_tracks_round_trip_and_validation(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"label": [1, 2, 3], "begin": [0, 4, 4], "end": [3, 9, 6], "parent": [0, 1, 1], "x": 0.5}
    )
    path = write_ctc_tracks(tmp_path / "res_track.txt", table)
    assert path.read_text() == "1 0 3 0\n2 4 9 1\n3 4 6 1\n"
    pd.testing.assert_frame_equal(read_ctc_tracks(path), table.drop(columns="x"))
    write_ctc_tracks(tmp_path / "empty.txt", table.iloc[:0])
    assert read_ctc_tracks(tmp_path / "empty.txt").empty
    for bad in (
        table.assign(end=[3, 2, 6]),
        table.assign(label=[1, 1, 3]),
        table.drop(columns="end"),
    ):
        with pytest.raises(InputError, match=r"res_track\.txt"):
            write_ctc_tracks(path, bad)
    assert path.read_text() == "1 0 3 0\n2 4 9 1\n3 4 6 1\n"  # untouched by the failed writes


def test_malformed_track_file(tmp_path: Path) -> None:
    path = tmp_path / "man_track.txt"
    path.write_text("1 0 5 0\n2 3 x 1\n")
    with pytest.raises(FileFormatError, match=r"man_track\.txt, line 2"):
        read_ctc_tracks(path)
    with pytest.raises(MissingFileError, match=r"nothing\.txt"):
        read_ctc_tracks(tmp_path / "nothing.txt")


def _toy_dataset(root: Path) -> Path:
    for seq in ("01", "02"):
        (root / seq).mkdir(parents=True)
        for t in range(4):
            tifffile.imwrite(
                root / seq / f"t{t:03d}.tif", np.full((6, 5), t + 10 * int(seq), np.uint8)
            )
    return root


def test_toy_dataset_sequence_choice_and_errors(tmp_path: Path) -> None:
    root = _toy_dataset(tmp_path / "Fluo-Toy")
    assert read_ctc(root).sequence == "01"
    second = read_ctc(root, "02")
    assert second.frames.data[:, 0, 0].tolist() == [20, 21, 22, 23]
    assert second.tracks is None and second.tra_masks is None and len(second.seg_masks) == 0
    with pytest.raises(MissingFileError, match="03"):
        read_ctc(root, 3)
    with pytest.raises(InputError, match="not sequence '02'"):
        read_ctc(root / "01", "02")
    with pytest.raises(FileFormatError, match="neither a CTC dataset"):
        read_ctc(tmp_path)
    (root / "01" / "t002.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(FileFormatError, match=r"t002\.tif"):
        read_ctc(root, lazy=False)
