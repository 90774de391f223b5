"""Atomic writes and device resolution."""

from __future__ import annotations

import pytest

from cytolens.core.devices import resolve_device
from cytolens.core.errors import InputError, OutputError
from cytolens.core.files import atomic_path


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.ome.tif"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".ome.tif") and tmp != target
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert [p.name for p in target.parent.iterdir()] == ["out.ome.tif"]


def test_atomic_path_failure_leaves_existing_file_and_no_temp(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_atomic_path_replaces_folders(tmp_path):
    target = tmp_path / "img.ome.zarr"
    target.mkdir()
    (target / "old").write_text("x")
    with atomic_path(target, replace_folder=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]


def test_atomic_path_never_replaces_a_folder_unasked(tmp_path):
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "notes.txt").write_text("precious")
    for make in (lambda t: t.write_text("x"), lambda t: t.mkdir()):
        with pytest.raises(OutputError, match="existing folder"), atomic_path(victim) as tmp:
            make(tmp)
    assert (victim / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temporary left


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_resolve_device_cuda_unavailable_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
