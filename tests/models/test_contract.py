"""The one model contract: typed cards, every card field read, one loader, one cache.

- (a) every key of every shipped card's ``parameters`` and ``normalization``
  is read by its predictor: the schema classes are instrumented (their
  ``__getattribute__`` records field reads) while the predictor is built from
  the card and runs one small prediction; a key present in a card but never
  read fails (and a key that is in no schema fails validation: ``extra="forbid"``);
- (b) predictions equal the golden outputs made before the contract existed
  (``make_golden.py``);
- (c) malformed cards give a ModelError naming the file and the field;
- (d) ``models.load`` caches one object per folder, weights mtime and device.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from cytolens import models
from cytolens.core.errors import ModelError
from cytolens.models import schema

SHIPPED = ["focus-miq-v1", "nuclei-v1", "nuclei-v2", "detect-bccd-v1", "hpa-v1"]
#: Fields that are documentation or the union's tag, not settings: never "read".
NOT_SETTINGS = {"description", "kind"}


# ------------------------------------------------------------------ (a) every field is read
def _run_small(predictor):
    """One small prediction through the predictor's public path."""
    from cytolens import data

    cap = predictor.capability
    if cap == "focus":
        from cytolens.focus.rate import rate_focus

        rate_focus(np.asarray(data.nuclei().data)[:168, :168], model=predictor)
    elif cap == "segment":
        predictor.segment(np.asarray(data.nuclei().data)[:96, :96], diameter=16, tile_shape=128)
    elif cap == "detect":
        predictor.predict(np.asarray(data.blood_smear().data)[:128, :128])
    elif cap == "classify":
        from cytolens.classify.model import classify_cells, localization

        img = np.asarray(data.hpa_cells().data)[:, :256, :256]
        localization(img, model=predictor)
        classify_cells(img, model=predictor, nucleus_diameter=40)
    else:  # pragma: no cover
        raise AssertionError(cap)


@pytest.fixture
def field_reads(monkeypatch):
    """Record which fields of the schema instances are read (class name -> field names)."""
    reads: dict[str, set[str]] = defaultdict(set)
    validating = []  # reads by the schemas' own validators are not reads by the predictor
    classes = [*schema.PARAMETER_SCHEMAS.values()]
    classes += [schema.PercentileNormalization, schema.DtypeRangeNormalization]
    for cls in classes:
        fields = set(cls.model_fields)
        original = cls.__getattribute__

        def tracked(self, item, _original=original, _fields=fields):
            if item in _fields and not validating:
                reads[type(self).__name__].add(item)
            return _original(self, item)

        monkeypatch.setattr(cls, "__getattribute__", tracked)
    for parse in ("parse_parameters", "parse_normalization"):
        original_parse = getattr(schema, parse)

        def paused(*args, _parse=original_parse, **kwargs):
            validating.append(True)
            try:
                return _parse(*args, **kwargs)
            finally:
                validating.pop()

        monkeypatch.setattr(schema, parse, paused)
    return reads


@pytest.mark.parametrize("name", SHIPPED)
def test_every_card_field_is_read(name, field_reads):
    card = models.load_card(name)
    cap = models.card_capability(card)
    cls = models.predictor_class(cap)
    net = models.build_network(name)
    predictor = cls.from_card(net, card, device="cpu")  # fresh: not from the cache
    _run_small(predictor)
    params_cls = type(predictor.params).__name__
    norm_cls = type(predictor.normalization).__name__
    unread_params = set(card.parameters) - NOT_SETTINGS - field_reads[params_cls]
    unread_norm = set(card.normalization) - NOT_SETTINGS - field_reads[norm_cls]
    assert not unread_params, f"{name}: parameters never read: {sorted(unread_params)}"
    assert not unread_norm, f"{name}: normalization never read: {sorted(unread_norm)}"


def test_the_field_tracker_catches_an_unread_field(field_reads):
    # the instrument itself: a field that is set but not touched is not recorded
    card = {"n_levels": 11, "patch_size": 84, "in_focus_levels": 3, "blank_certainty": 0}
    p = schema.parse_parameters(card, "focus")
    assert not field_reads["FocusParameters"]  # validation is not reading
    assert p.n_levels == 11
    assert field_reads["FocusParameters"] == {"n_levels"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_keep_training_metadata_apart(name):
    card = models.load_card(name)
    schema_cls = schema.PARAMETER_SCHEMAS[models.card_capability(card)]
    assert set(card.parameters) <= set(schema_cls.model_fields)
    assert card.parameters.get("schema_version") == 1
    assert card.training, "training metadata belongs in card.training"
    assert not set(card.training) & set(schema_cls.model_fields)
    assert card.sha256 == models.sha256(models.model_dir(name) / models.WEIGHTS_FILE)


@pytest.mark.parametrize("name", SHIPPED)
def test_predictor_contract(name):
    from cytolens.models.predictor import Predictor

    p = models.load(name, device="cpu")
    assert isinstance(p, Predictor)
    assert p.card.name == name and p.name == name
    assert isinstance(p.params, schema.PARAMETER_SCHEMAS[p.capability])
    assert p.net is p.network and not p.network.training
    assert str(p.device) == "cpu"


# ------------------------------------------------------------------ (b) golden predictions
def test_predictions_equal_the_golden_outputs():
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from make_golden import GOLDEN, compute
    finally:
        sys.path.pop(0)
    out = compute()
    assert sorted(out) == sorted(p.stem for p in GOLDEN.glob("*.npy"))
    for stem, value in out.items():
        golden = np.load(GOLDEN / f"{stem}.npy")
        assert value.shape == golden.shape, stem
        if golden.dtype.kind == "f":
            np.testing.assert_allclose(value, golden, rtol=0, atol=1e-6, err_msg=stem)
        else:
            np.testing.assert_array_equal(value, golden, err_msg=stem)


def test_normalizations_equal_the_former_hard_coded_ones():
    from cytolens.core.normalize import normalize_percentile, sample_percentiles
    from cytolens.detect.model import prepare_image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    former = np.empty((3, 40, 50), np.float32)
    for c in range(3):
        lo, hi = sample_percentiles(rgb[..., c], 1.0, 99.8)
        former[c] = (rgb[..., c].astype(np.float32) - lo) / max(hi - lo, 1e-6)
    det = models.load("detect-bccd-v1", device="cpu")
    np.testing.assert_array_equal(det.normalize(rgb, channel_axis=-1), former)
    np.testing.assert_array_equal(prepare_image(rgb, channels=3), former)
    grey = rng.gamma(2, 100, (30, 30))
    seg = models.load("nuclei-v1", device="cpu")
    np.testing.assert_array_equal(seg.normalize(grey), normalize_percentile(grey, 1.0, 99.8))


# ------------------------------------------------------------------ (c) malformed cards
def _copy(tmp_path, name, edit):
    folder = tmp_path / name
    shutil.copytree(models.model_dir(name), folder)
    card = yaml.safe_load((folder / "card.yaml").read_text())
    edit(card)
    (folder / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return folder


@pytest.mark.parametrize(
    ("name", "edit", "field", "message"),
    [
        ("focus-miq-v1", lambda c: c["parameters"].pop("n_levels"), "parameters.n_levels",
         "Field required"),
        ("nuclei-v1", lambda c: c["parameters"].update(tile_overlap="wide"),
         "parameters.tile_overlap", "integer"),
        ("detect-bccd-v1", lambda c: c["parameters"].update(nms=0.5), "parameters.nms",
         "Extra inputs are not permitted"),
        ("hpa-v1", lambda c: c["parameters"].update(schema_version=2),
         "parameters.schema_version", "1"),
        ("nuclei-v1", lambda c: c["normalization"].update(scope="whole image"),
         "normalization.scope", "Extra inputs are not permitted"),
        ("focus-miq-v1", lambda c: c["normalization"].update(kind="zscore"),
         "normalization", "zscore"),
        ("hpa-v1", lambda c: c["parameters"].update(thresholds=[0.5]), "parameters",
         "1 thresholds for 28 classes"),
    ],
)  # fmt: skip
def test_malformed_card_names_file_and_field(tmp_path, name, edit, field, message):
    folder = _copy(tmp_path, name, edit)
    with pytest.raises(ModelError) as err:
        models.load(folder, device="cpu")
    text = str(err.value)
    assert str(folder / "card.yaml") in text
    assert f"{field}:" in text and message in text


def test_make_card_validates_and_separates_training():
    network = {"entry_point": "cytolens.detect.network:CenterNet", "kwargs": {"in_channels": 3}}
    common = {
        "name": "d",
        "task": "t",
        "architecture": "a",
        "input_axes": "YXC",
        "network": network,
        "normalization": {"kind": "percentile", "per_channel": True},
        "training_data": [],
        "training_command": "-",
    }
    card = models.make_card(
        **common,
        parameters={"classes": ["a"], "scale": 0.5, "overlap": 8, "min_score": 0.7},
        training={"seed": 0},
    )
    assert card.parameters == {
        "schema_version": 1,
        "classes": ["a"],
        "scale": 0.5,
        "overlap": 8,
        "min_score": 0.7,
    }
    assert card.training == {"seed": 0}
    assert card.normalization["pmin"] == 1.0 and card.normalization["per_channel"] is True
    with pytest.raises(ModelError, match=r"parameters\.seed: Extra inputs"):
        models.make_card(
            **common,
            parameters={"classes": ["a"], "scale": 0.5, "overlap": 8, "min_score": 0.7, "seed": 0},
        )


def test_predictor_refuses_a_card_of_another_capability():
    from cytolens.focus import FocusModel

    net, card = models.load_model("nuclei-v1")
    with pytest.raises(ModelError, match="segment model, not a focus model"):
        FocusModel.from_card(net, card, device="cpu")
    with pytest.raises(ModelError, match="not a focus model"):
        FocusModel.load("nuclei-v1", device="cpu")


# ------------------------------------------------------------------ (d) one cache
def test_one_cache_shared_by_every_entry_point():
    from cytolens.classify.model import LocalizationModel
    from cytolens.detect.model import Detector
    from cytolens.focus import FocusModel
    from cytolens.segment.model import DEFAULT_MODEL, NucleusSegmenter, _cached

    assert models.load("focus-miq-v1", device="cpu") is FocusModel.load(device="cpu")
    seg = models.load(DEFAULT_MODEL, device="cpu")
    assert seg is NucleusSegmenter.from_pretrained(device="cpu") is _cached(DEFAULT_MODEL, "cpu")
    assert models.load("detect-bccd-v1", device="cpu") is Detector.load(device="cpu")
    assert models.load("hpa-v1", device="cpu") is LocalizationModel.load(device="cpu")


def test_cache_reloads_when_the_weights_change(tmp_path):
    folder = tmp_path / "my-focus"
    shutil.copytree(models.model_dir("focus-miq-v1"), folder)
    first = models.load(folder, device="cpu")
    assert models.load(folder, device="cpu") is first
    assert models.load(str(folder), device="cpu") is first  # a str or a path: one key
    weights = folder / models.WEIGHTS_FILE
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten in place
    second = models.load(folder, device="cpu")
    assert second is not first
    assert models.load(folder, device="cpu") is second
