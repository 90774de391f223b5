"""Cells of HPA images, the streaming training dataset, stratified splits and a few steps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from cytolens.classify.cells import as_cyx_float, cell_crops, cell_table, segment_cells
from cytolens.classify.train import (
    HPADataset,
    TrainConfig,
    predict_probabilities,
    sample_weights,
    stratified_split,
    train_network,
)
from cytolens.core.errors import InputError
from cytolens.core.image import Image


def synthetic_cells(n=3, size=160, seed=0):
    """Cells on a row: disc nuclei (blue), larger bodies (red/yellow), green in the nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, : size * n // 2]
    img = np.zeros((4, size, size * n // 2), np.uint8)
    for k in range(n):
        cx = size // 4 + k * size // 2
        body = (yy - size // 2) ** 2 + (xx - cx) ** 2 < 30**2
        nucleus = (yy - size // 2) ** 2 + (xx - cx) ** 2 < 13**2
        img[0][body] = img[3][body] = 90
        img[2][nucleus] = 200
        img[1][nucleus] = 120
    return img + rng.integers(0, 5, img.shape, dtype=np.uint8)


def test_segment_cells_finds_each_cell_around_its_nucleus():
    img = synthetic_cells()
    nuclei, cells = segment_cells(img, nucleus_diameter=26, min_cell_area=100)
    assert nuclei.max() == 3 and cells.max() == 3
    for k in (1, 2, 3):
        assert (cells[nuclei == k] == k).all()  # each nucleus lies in its own cell
        assert 0.15 < (nuclei == k).sum() / (cells == k).sum() < 0.3  # 13^2 / 30^2 = 0.19
    table = cell_table(nuclei, cells)
    assert list(table["cell_id"]) == [1, 2, 3]
    assert (table["xmax_px"] - table["xmin_px"]).between(55, 65).all()


def test_segment_cells_on_an_empty_image_returns_no_cells():
    nuclei, cells = segment_cells(np.zeros((4, 64, 64), np.uint8))
    assert nuclei.max() == 0 and cells.max() == 0


def test_cell_crops_are_masked_and_centred():
    cells = np.zeros((60, 60), np.int32)
    cells[10:20, 10:30] = 1
    cells[40:50, 40:50] = 2
    crops, ids = cell_crops(np.ones((4, 60, 60), np.float32), cells, scale=1.0, size=32)
    assert ids == [1, 2] and crops.shape == (2, 4, 32, 32)
    assert crops[0, 0].sum() == 200 and crops[1, 0].sum() == 100  # only the cell's own pixels
    assert crops[1, 0, 11:21, 11:21].all()  # 10 px cell centred in 32 px


def test_as_cyx_float_scales_by_dtype_and_reorders_named_channels():
    data = np.stack([np.full((2, 2), v, np.uint16) for v in (0, 65535, 0, 0)])
    np.testing.assert_allclose(as_cyx_float(data)[:, 0, 0], [0, 1, 0, 0])
    names = ("protein", "microtubules", "ER", "nucleus")
    img = Image(np.arange(4, dtype=np.uint8).reshape(4, 1, 1), "CYX", channel_names=names)
    # back to red (microtubules), green (protein), blue (nucleus), yellow (ER)
    np.testing.assert_allclose(as_cyx_float(img)[:, 0, 0] * 255, [1, 0, 3, 2])
    with pytest.raises(InputError, match=r"\(4, Y, X\).*shape \(3, 5, 5\)"):
        as_cyx_float(np.zeros((3, 5, 5)))


def test_stratified_split_puts_frequent_classes_on_both_sides():
    rng = np.random.default_rng(1)
    y = (rng.random((60, 5)) < [0.5, 0.2, 0.1, 0.05, 0.02]).astype(np.uint8)
    part = stratified_split(y, [0.75, 0.25], seed=0)
    assert set(np.unique(part)) == {0, 1}
    assert 12 <= (part == 1).sum() <= 18
    for c in range(5):
        if y[:, c].sum() >= 4:
            assert y[part == 0, c].sum() > 0 and y[part == 1, c].sum() > 0
    np.testing.assert_array_equal(part, stratified_split(y, [0.75, 0.25], seed=0))
    with pytest.raises(InputError, match="fractions"):
        stratified_split(y, [1.0])


def test_sample_weights_favour_rare_classes():
    y = np.zeros((5, 3), np.uint8)
    y[:4, 0] = 1
    y[4, 1] = 1
    w = sample_weights(y)
    assert w[4] == pytest.approx(2 * w[0])  # 1/sqrt(1) vs 1/sqrt(4)


@pytest.fixture
def tiny_folder(tmp_path):
    img = synthetic_cells(n=2, size=96)
    for sid in ("a", "b"):
        for c, colour in enumerate(("red", "green", "blue", "yellow")):
            PILImage.fromarray(img[c]).save(tmp_path / f"{sid}_{colour}.png")
    return tmp_path


def test_dataset_items_are_repeatable_and_change_with_the_epoch(tiny_folder):
    y = np.zeros((2, 28), np.uint8)
    y[0, 2] = y[1, 25] = 1
    ds = HPADataset(tiny_folder, ["a", "b"], y, crop=32, cell_fraction=0.5, cache=True)
    x1, t1 = ds[0]
    x2, _ = ds[0]
    assert tuple(x1.shape) == (4, 32, 32) and t1[2] == 1
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    # draw d of image i is item i + d * n: same image and labels, a different example
    x3, t3 = ds[0 + 3 * len(ds)]
    assert not np.array_equal(x3.numpy(), x1.numpy())
    np.testing.assert_array_equal(t3.numpy(), t1.numpy())
    ds.set_epoch(1)
    assert not np.array_equal(ds[0][0].numpy(), x1.numpy())
    assert float(x1.min()) >= 0 and float(x1.max()) <= 1
    with pytest.raises(InputError, match=r"targets must be \(2, 28\)"):
        HPADataset(tiny_folder, ["a", "b"], np.zeros((2, 5)))


def test_a_few_training_steps_lower_the_loss_on_a_tiny_set(tiny_folder):
    import torch

    y = np.zeros((2, 28), np.uint8)
    y[0, 2] = y[1, 2] = 1
    ds = HPADataset(tiny_folder, ["a", "b"], y, crop=32, cell_fraction=0, cache=True)
    losses = []
    cfg = TrainConfig(steps=12, batch_size=4, crop=32, threads=1, lr=1e-2)
    net = train_network(ds, cfg, progress=lambda step, loss: losses.append(loss))
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])
    p = predict_probabilities(net, ds)
    assert p.shape == (2, 28) and (p[:, 2] > p[:, 5]).all()  # learnt which class is present
    assert not net.training and isinstance(net, torch.nn.Module)
