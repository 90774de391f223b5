"""Cell phenotypes: crop sets, crops from label images, splits, training, the shipped model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.clitools import cytolens, one_error_line
from tests.conftest import shared
from tests.models import test_contract

from cytolens.core.errors import InputError, MissingFileError
from cytolens.io import imwrite
from cytolens.phenotype import (
    CropSet,
    PhenotypeClassifier,
    cell_crops,
    grouped_split,
    phenotype_counts,
    predict_cells,
    read_crop_set,
    save_classifier,
    stratified_split,
    train_classifier,
)

MITOCHECK = "classification/mitocheck"
#: The model contract's field tracker (a fixture), for the shipped card's check.
field_reads = test_contract.field_reads


def _blobs(n: int, bright: bool, seed: int, size: int = 24) -> np.ndarray:
    """Crops of a dim round blob or a bright square one, with noise."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 30, (n, size, size)).astype(np.uint8)
    yy, xx = np.indices((size, size)) - size / 2
    if bright:
        out[:, (abs(yy) < 5) & (abs(xx) < 5)] += 180
    else:
        out[:, yy**2 + xx**2 < 16] += 70
    return out


def _class_folders(root: Path, n: int = 12, size: int = 24) -> Path:
    for c, bright in (("round", False), ("square", True)):
        for i, crop in enumerate(_blobs(n, bright, seed=int(bright), size=size)):
            imwrite(root / c / f"{c}_{i:02d}.png", crop)
    return root


def _toy_set(n: int = 30) -> CropSet:
    x = np.concatenate([_blobs(n, False, 0), _blobs(n, True, 1)])[:, None]
    y = np.repeat([0, 1], n)
    return CropSet(x, y, ["round", "square"], [f"{i}.png" for i in range(2 * n)])


# ----------------------------------------------------------------------------- crop sets
def test_read_crop_set_folders_and_csv(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "crops", n=3)
    cs = read_crop_set(root)
    assert cs.crops.shape == (6, 1, 24, 24)
    assert cs.class_names == ["round", "square"]
    assert cs.counts() == {"round": 3, "square": 3}
    rows = [(str(Path(f).relative_to(root)), "abc"[i % 3]) for i, f in enumerate(cs.files)]
    pd.DataFrame(rows, columns=["file", "label"]).to_csv(root / "labels.csv", index=False)
    from_csv = read_crop_set(root / "labels.csv")
    assert from_csv.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(from_csv.crops, cs.crops)


def test_read_crop_set_bad_inputs(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "crops", n=2)
    imwrite(root / "lonely" / "only.png", np.zeros((24, 24), np.uint8))
    with pytest.raises(InputError, match="class 'lonely' has 1 image"):
        read_crop_set(root)
    (root / "lonely" / "only.png").unlink()
    imwrite(root / "round" / "big.png", np.zeros((30, 30), np.uint8))
    with pytest.raises(InputError, match="all crops must have one size") as err:
        read_crop_set(root)
    assert "(1, 30, 30)" in str(err.value) and "(1, 24, 24)" in str(err.value)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nnope.png,a\nround/round_00.png,b\n")
    with pytest.raises(MissingFileError, match=r"nope\.png"):
        read_crop_set(csv)
    with pytest.raises(MissingFileError, match="not found"):
        read_crop_set(tmp_path / "absent")


# ----------------------------------------------------------------------------- crops of labels
def test_cell_crops_pads_at_borders_and_checks_shapes() -> None:
    img = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50)
    lab = np.zeros((40, 50), np.int32)
    lab[0:4, 0:4] = 1  # in the corner: padded
    lab[18:24, 20:28] = 2
    crops, table = cell_crops(img, lab, size=16, pad_value=0)
    assert crops.shape == (2, 1, 16, 16) and crops.dtype == np.uint16
    assert table["touches_border"].tolist() == [True, False]
    # object 1's centroid (1.5, 1.5) rounds to (2, 2): the crop starts at -6, so 6 rows padded
    assert (crops[0, 0, :6] == 0).all() and crops[0, 0, 6, 6] == img[0, 0]
    cy, cx = 21, 24  # object 2's centre (20.5, 23.5) rounds to (20, 24) -> rows 12..27
    np.testing.assert_array_equal(crops[1, 0], img[12:28, 16:32])
    assert (cy, cx) != (0, 0)
    with pytest.raises(InputError, match=r"label image of shape \(40, 49\) does not match"):
        cell_crops(img, lab[:, :49])


def test_cell_crops_dask_equals_numpy() -> None:
    import dask.array as da

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (2, 64, 64)).astype(np.uint8)
    lab = np.zeros((64, 64), np.int32)
    lab[5:15, 50:60] = 1
    lab[30:40, 30:44] = 7
    a, ta = cell_crops(img, lab, axes="CYX", size=20)
    b, tb = cell_crops(da.from_array(img, chunks=(1, 17, 17)), lab, axes="CYX", size=20)
    np.testing.assert_array_equal(a, b)
    pd.testing.assert_frame_equal(ta, tb)
    assert ta["label"].tolist() == [1, 7]


# ----------------------------------------------------------------------------- splits
def test_splits_are_fixed_and_grouped_split_has_no_shared_group() -> None:
    y = np.repeat(np.arange(4), 25)
    a = stratified_split(y, 0.2, seed=3)
    b = stratified_split(y, 0.2, seed=3)
    np.testing.assert_array_equal(a[1], b[1])
    assert np.bincount(y[a[1]]).tolist() == [5, 5, 5, 5]
    groups = np.array([f"w{i // 5}" for i in range(100)])
    tr, te = grouped_split(y, groups, 0.2)
    assert set(groups[tr]).isdisjoint(groups[te])
    assert 0.1 <= len(te) / len(y) <= 0.35


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, CropSet]:
    cs = _toy_set()
    res = train_classifier(
        cs, steps=60, input_size=24, batch_size=16, threads=1, lr=1e-2, name="toy-phenotype"
    )
    folder = save_classifier(res, cs, folder=tmp_path_factory.mktemp("m") / "toy")
    return res, folder, cs


def test_train_classifier_learns_and_calibrates(trained: tuple) -> None:
    res, _, _cs = trained
    assert res.validation["accuracy"] >= 0.9
    assert 0.05 < res.validation["temperature"] < 20
    assert set(res.train_index).isdisjoint(res.val_index)
    assert len(res.val_index) == 8  # round(15 % of 30) = 4 per class (fixed split)


def test_saved_model_loads_and_predicts_with_applicability(trained: tuple) -> None:
    from cytolens.models import load, load_card

    _, folder, cs = trained
    card = load_card(folder.name, root=folder.parent)
    assert card.applicability["file"] == "applicability.npz"
    assert card.parameters["class_names"] == ["round", "square"]
    m = load(folder, device="cpu")
    assert isinstance(m, PhenotypeClassifier)
    table = m.predict(cs.crops)
    assert {"phenotype", "confidence", "p_round", "ood_score", "in_domain"} <= set(table)
    np.testing.assert_allclose(table[["p_round", "p_square"]].sum(axis=1), 1.0, rtol=1e-6)
    assert (table["phenotype"] == np.array(cs.class_names)[cs.labels]).mean() >= 0.9
    assert table["in_domain"].mean() > 0.8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        far = m.predict((np.full((4, 24, 24), 255, np.uint8) - _blobs(4, True, 5))[:, None])
    assert not far["in_domain"].any()
    assert any("outside the training domain" in str(w.message) for w in caught)


def test_predict_cells_on_a_label_image(trained: tuple) -> None:
    _, folder, _ = trained
    m = PhenotypeClassifier.load(folder, device="cpu")
    img = np.random.default_rng(0).integers(0, 30, (60, 90)).astype(np.uint8)
    lab = np.zeros((60, 90), np.int32)
    img[10:20, 10:20] += 180
    lab[10:20, 10:20] = 3
    yy, xx = np.indices((60, 90))
    disc = (yy - 40) ** 2 + (xx - 60) ** 2 < 16
    img[disc] += 70
    lab[disc] = 5
    table = predict_cells(img, lab, model=m)
    assert table["label"].tolist() == [3, 5]
    assert table["phenotype"].tolist() == ["square", "round"]
    table["image"] = "a"
    counts = phenotype_counts(table)
    assert counts[["cells", "n_round", "n_square"]].values.tolist() == [[2, 1, 1]]


# ----------------------------------------------------------------------------- hybrid head
@pytest.fixture(scope="module")
def hybrid(trained: tuple) -> object:
    from cytolens.phenotype import fit_hybrid_head

    res, _, cs = trained
    return fit_hybrid_head(res, cs, C=1.0)


def test_hybrid_head_is_exactly_the_logistic_regression(trained: tuple, hybrid: object) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from cytolens.explore import classical_features
    from cytolens.phenotype.augment import dihedral_views

    res, _, cs = trained
    clf = hybrid.classifier
    assert clf.tta_views == 8 and len(clf.feature_names) == 35
    assert hybrid.record["head"]["reads"] == "logits"
    # the regression, computed here apart: CNN logits of the 8-view mean embedding + features
    net = res.classifier.network
    with torch.inference_mode():
        x = torch.from_numpy(res.classifier.prepare(cs.crops))
        emb = torch.stack([net.embed(v) for v in dihedral_views(x)]).mean(0)
        logits_cnn = net.head(emb).numpy().astype(np.float64)
    f = classical_features(cs.crops).to_numpy(np.float64)
    z = np.hstack([logits_cnn, np.sign(f) * np.log1p(np.abs(f))])
    tr = np.concatenate([res.train_index, res.val_index])  # refit=True: training + validation
    scaler = StandardScaler().fit(z[tr])
    lr = LogisticRegression(C=1.0, max_iter=5000).fit(scaler.transform(z[tr]), cs.labels[tr])
    expected = lr.decision_function(scaler.transform(z))  # binary: logit of class 1 vs 0
    got = clf.logits(cs.crops)
    np.testing.assert_allclose(got[:, 1] - got[:, 0], expected, atol=2e-3)
    assert hybrid.validation["accuracy"] >= 0.9


def test_hybrid_model_is_dihedral_invariant_and_round_trips(
    trained: tuple, hybrid: object, tmp_path: Path
) -> None:
    _, _, cs = trained
    crops = cs.crops[::6]
    clf = hybrid.classifier
    p = clf.predict(crops, warn=False)
    turned = clf.predict(np.rot90(crops, 1, axes=(2, 3)).copy(), warn=False)
    flipped = clf.predict(crops[..., ::-1].copy(), warn=False)
    for other in (turned, flipped):
        np.testing.assert_allclose(other["p_round"], p["p_round"], atol=1e-4)
    folder = save_classifier(hybrid, cs, folder=tmp_path / "hybrid")
    loaded = PhenotypeClassifier.load(folder, device="cpu")
    assert loaded.feature_names == clf.feature_names and loaded.tta_views == 8
    np.testing.assert_allclose(loaded.logits(crops), clf.logits(crops), rtol=1e-5, atol=1e-5)
    assert loaded.predict(crops)["in_domain"].mean() > 0.8


def test_hybrid_head_rejects_bad_options(trained: tuple, hybrid: object) -> None:
    from cytolens.phenotype import fit_hybrid_head

    res, _, cs = trained
    with pytest.raises(InputError, match="tta_views"):
        fit_hybrid_head(res, cs, tta_views=4)
    with pytest.raises(InputError, match="reads"):
        fit_hybrid_head(res, cs, reads="pixels")
    with pytest.raises(InputError, match="cnn_head"):
        fit_hybrid_head(hybrid, cs)  # its head is hybrid already: the CNN's head is needed


def test_augment_options_change_crops_within_bounds() -> None:
    import torch

    from cytolens.phenotype.augment import augment

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(6, 1, 16, 16)
    x[:, :, 5:11, 5:11] = 0.8
    plain = augment(x, g, scale=0, gain=0, offset=0)
    assert torch.allclose(plain.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # dihedral only
    strong = augment(x, g, rotate=20, gamma=0.4, blur=1.5, noise=0.0, gain=0, offset=0)
    assert strong.shape == x.shape and bool((strong != plain).any())
    assert float(strong.min()) >= -1e-6 and float(strong.max()) <= 1.0  # gamma, no gain


# ----------------------------------------------------------------------------- shipped model
def test_shipped_model_on_held_out_mitocheck_crops() -> None:
    from cytolens.phenotype.crops import read_crop_files

    root = shared(MITOCHECK)
    split = json.loads(
        (
            Path(__file__).resolve().parents[2] / "src/cytolens/phenotype/mitocheck_split.json"
        ).read_text()
    )
    files = split["stratified_test"][::4]  # 131 held-out crops, every class
    truth = [Path(f).parent.name for f in files]
    m = PhenotypeClassifier.load("mitocheck-v1", device="cpu")
    table = m.predict(read_crop_files([root / f for f in files]))
    accuracy = float((table["phenotype"] == truth).mean())
    assert accuracy > 0.8, accuracy  # the card reports the full test split
    assert table["in_domain"].mean() > 0.9
    assert m.tta_views == 8 and len(m.feature_names) == 35  # the hybrid head


# ----------------------------------------------------------------------------- CLI
def test_cli_train_cells_then_classify_crops(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "crops", n=10)
    model = tmp_path / "model"
    proc = cytolens(
        "classify",
        "train-cells",
        root,
        "--out",
        model,
        "--pretrained",
        "none",
        "--steps",
        "30",
        "--input-size",
        "24",
        "--threads",
        "1",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["classes"] == {"round": 10, "square": 10}
    assert (model / "card.yaml").is_file() and (model / "validation.csv").is_file()
    out = tmp_path / "out"
    proc = cytolens("classify", "cells", root, "--crops", "--model", model, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 20 and {"phenotype", "ood_score"} <= set(cells.columns)
    assert (out / "report.html").is_file()


def test_cli_bad_inputs_give_one_line(tmp_path: Path) -> None:
    root = _class_folders(tmp_path / "crops", n=2)
    imwrite(root / "lonely" / "only.png", np.zeros((24, 24), np.uint8))
    proc = cytolens("classify", "train-cells", root, "--out", tmp_path / "m")
    assert proc.returncode == 2
    assert "class 'lonely' has 1 image" in one_error_line(proc)
    csv = tmp_path / "l.csv"
    csv.write_text("file,label\nmissing.png,a\n")
    proc = cytolens("classify", "train-cells", csv, "--out", tmp_path / "m")
    assert proc.returncode == 2 and "missing.png" in one_error_line(proc)


def test_shipped_card_fields_are_all_read(field_reads) -> None:
    from cytolens import models

    card = models.load_card("mitocheck-v1")
    assert models.card_capability(card) == "phenotype"
    assert card.sha256 == models.sha256(models.model_dir("mitocheck-v1") / models.WEIGHTS_FILE)
    assert card.training and not set(card.training) & set(card.parameters)
    predictor = PhenotypeClassifier.from_card(models.build_network("mitocheck-v1"), card, "cpu")
    predictor.predict(np.zeros((2, 64, 64), np.uint8), warn=False)
    unread = set(card.parameters) - test_contract.NOT_SETTINGS - field_reads["PhenotypeParameters"]
    assert not unread, unread
    assert card.applicability["file"] == "applicability.npz"


def test_cli_cells_on_a_raw_image_segments_then_counts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 20, (200, 240)).astype(np.uint8)
    yy, xx = np.indices(img.shape)
    for cy in range(25, 200, 50):
        for cx in range(25, 240, 50):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] += 150  # 4 x 5 nuclei
    imwrite(tmp_path / "in" / "field.tif", img)
    imwrite(tmp_path / "in" / "broken.tif", np.zeros((2, 3, 40, 40), np.uint8), axes="ZCYX")
    out = tmp_path / "out"
    proc = cytolens(
        "classify", "cells", tmp_path / "in", "--segmenter", "classical", "--out", out, "--json"
    )
    assert proc.returncode == 1, proc.stderr  # one of two images failed
    summary = json.loads(proc.stdout)
    cells = pd.read_csv(out / "cells.csv")
    assert summary["cells"] == len(cells) == 20
    assert set(cells["image"]) == {"field"}
    per_image = pd.read_csv(out / "images.csv")
    assert per_image.loc[0, "cells"] == len(cells)
    failures = pd.read_csv(out / "failures.csv")
    assert "broken" in failures.loc[0, "item"] and "axis Z" in failures.loc[0, "message"]
