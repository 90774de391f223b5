"""The shipped-model registry: cards, checksums, clear errors."""

from __future__ import annotations

import pytest
import torch

from cytolens.core.errors import ModelError
from cytolens.models import ModelCard, list_models, load_card, load_state_dict, save_model


def _card(**kw):
    base = dict(
        name="toy-v1",
        version="1.0.0",
        task="test",
        architecture="Linear(3, 2)",
        input_axes="YX",
        training_data=["synthetic"],
        training_command="none",
    )
    return ModelCard(**{**base, **kw})


def test_save_then_load_round_trips_weights_and_card(tmp_path):
    net = torch.nn.Linear(3, 2)
    save_model(net.state_dict(), _card(metrics={"acc": 0.9}), root=tmp_path)
    assert list_models(root=tmp_path) == ["toy-v1"]
    card = load_card("toy-v1", root=tmp_path)
    assert len(card.sha256) == 64 and card.metrics == {"acc": 0.9}
    state = load_state_dict("toy-v1", root=tmp_path)
    torch.testing.assert_close(state["weight"], net.weight.detach())


def test_damaged_weights_fail_the_checksum(tmp_path):
    folder = save_model(torch.nn.Linear(3, 2).state_dict(), _card(), root=tmp_path)
    with open(folder / "weights.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ModelError, match="does not match the model card"):
        load_state_dict("toy-v1", root=tmp_path)


def test_unknown_model_names_the_shipped_ones(tmp_path):
    save_model(torch.nn.Linear(3, 2).state_dict(), _card(), root=tmp_path)
    with pytest.raises(ModelError, match="unknown model 'nope'; shipped models: toy-v1"):
        load_card("nope", root=tmp_path)


def test_card_rejects_unknown_fields_and_bad_names():
    with pytest.raises(ValueError):
        _card(colour="red")
    with pytest.raises(ValueError):
        _card(name="Bad Name")
