"""The shared training core (models.training) and the domain reference (models.applicability)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from cytolens.core.errors import InputError, ModelError
from cytolens.models.applicability import (
    DomainReference,
    OutOfDomainWarning,
    PooledFeatures,
    warn_out_of_domain,
)
from cytolens.models.training import TrainConfig, fit, lr_factor


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return x, y


def _mse(net, batch):
    return ((net(batch[0]) - batch[1]) ** 2).mean()


def test_fit_learns_and_is_reproducible():
    x, y = _problem()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the same start, then fit seeds the optimization itself
        net = torch.nn.Linear(4, 1)
        cfg = TrainConfig(steps=200, lr=0.05, threads=1, seed=7)
        result = fit(net, lambda step: (x, y), _mse, cfg)
        runs.append(net.weight.detach().clone())
        assert result.history[-1]["loss"] < 0.01 * result.history[0]["loss"]
        assert result.record()["steps"] == 200 and result.record()["seed"] == 7
    assert torch.allclose(runs[0], runs[1], atol=1e-3)


def test_schedule_warms_up_then_decays_to_the_floor():
    f = lr_factor(1000, 0.05, 0.02)
    assert f(0) == pytest.approx(1 / 50)
    assert f(49) == pytest.approx(1.0)
    assert f(999) == pytest.approx(0.02, abs=1e-4)
    values = [f(s) for s in range(50, 1000)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_fit_resumes_from_a_checkpoint_like_an_uninterrupted_run(tmp_path):
    x, y = _problem()
    cfg = TrainConfig(steps=40, lr=0.05, threads=1, checkpoint_every=20)
    torch.manual_seed(0)
    whole = torch.nn.Linear(4, 1)
    start = {k: v.clone() for k, v in whole.state_dict().items()}
    fit(whole, lambda s: (x, y), _mse, cfg)

    # an interrupted run: stops after the first checkpoint (at step 20)
    half = torch.nn.Linear(4, 1)
    half.load_state_dict(start)
    ckpt = tmp_path / "ckpt.pt"

    def stop_after_20(step):
        if step == 20:
            raise KeyboardInterrupt
        return (x, y)

    with pytest.raises(KeyboardInterrupt):
        fit(half, stop_after_20, _mse, cfg, checkpoint=ckpt)
    assert ckpt.is_file()
    resumed = torch.nn.Linear(4, 1)
    result = fit(resumed, lambda s: (x, y), _mse, cfg, checkpoint=ckpt)
    assert result.resumed_from == 20
    assert torch.allclose(resumed.weight, whole.weight, atol=1e-6)
    with pytest.raises(InputError, match="other training settings"):
        fit(
            torch.nn.Linear(4, 1),
            lambda s: (x, y),
            _mse,
            cfg.model_copy(update={"lr": 0.1}),
            checkpoint=ckpt,
        )


def test_fit_names_the_step_where_the_loss_stops_being_finite():
    x, y = _problem()
    y = y.clone()
    y[0] = float("nan")
    with pytest.raises(InputError, match="at step 1"):
        fit(torch.nn.Linear(4, 1), [(x, y)], _mse, TrainConfig(steps=3, threads=1))


def test_train_config_refuses_unknown_and_bad_settings():
    with pytest.raises(ValueError, match="stepz"):
        TrainConfig(stepz=3)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


# ------------------------------------------------------------------ applicability
def test_domain_reference_separates_shifted_inputs_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    cov = np.diag([4.0, 1.0, 0.25, 0.05, 0.01])
    train = rng.multivariate_normal(np.zeros(5), cov, size=300)
    held = rng.multivariate_normal(np.zeros(5), cov, size=100)
    ref = DomainReference.fit(train, held)
    inside = ref.score(rng.multivariate_normal(np.zeros(5), cov, size=200))
    # a shift along a low-variance direction is far in Mahalanobis terms, near in Euclidean
    shifted = ref.score(rng.multivariate_normal([0, 0, 0, 0, 1.0], cov, size=200))
    assert inside["in_domain"].mean() > 0.95
    assert shifted["in_domain"].mean() < 0.05
    assert np.all(shifted["domain_percentile"][~shifted["in_domain"]] == 100)
    path = ref.save(tmp_path / "applicability.npz")
    entry = ref.card_entry(path, "test features")
    again = DomainReference.load(path, expected_sha256=entry["sha256"])
    assert np.allclose(again.distance(held), ref.distance(held))
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ModelError, match="sha256"):
        DomainReference.load(path, expected_sha256=entry["sha256"])


def test_domain_reference_with_more_features_than_images():
    rng = np.random.default_rng(1)
    train, held = rng.normal(size=(20, 100)), rng.normal(size=(10, 100))
    ref = DomainReference.fit(train, held, max_components=8)
    assert ref.score(rng.normal(size=(5, 100)))["ood_score"].max() < 3
    assert ref.score(rng.normal(size=(5, 100)) + 3)["in_domain"].sum() == 0


def test_domain_reference_bad_input_is_named():
    ref = DomainReference.fit(
        np.random.default_rng(2).normal(size=(10, 3)), np.random.default_rng(3).normal(size=(5, 3))
    )
    with pytest.raises(InputError, match=r"features must be .*\(n >= 1, 3\)"):
        ref.score(np.zeros((2, 4)))
    with pytest.raises(InputError, match="NaN"):
        ref.score(np.full((1, 3), np.nan))


def test_pooled_features_and_the_warning():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 1))
    with PooledFeatures(net, ["1", "2"]) as feats:
        net(torch.ones(4, 1, 9, 9))
        net(torch.zeros(1, 1, 9, 9))
    f = feats.take()
    assert f.shape == (5, 2 * (3 + 2))
    assert np.allclose(f[:4], f[0])  # same input, same features
    with pytest.raises(ModelError, match="no module named 'x'"):
        PooledFeatures(net, ["x"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_out_of_domain("m", "a.tif", 0.9) is None
        assert "a.tif is outside" in warn_out_of_domain("m", "a.tif", 1.2)
    assert [w.category for w in caught] == [OutOfDomainWarning]
