"""The fraud trainer's kinds: calibration on the validation days, the ensemble's weight
chosen there, and the baselines a new model must beat to be promoted."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from models.calibration import Calibrated
from models.ensemble import FraudEnsemble
from models.fraud import Checkpoint
from models.inputs import Selected
from scorers.fraud import FEATURES
from trainers.configs import FraudTrainConfig, LoopConfig
from trainers.fraud import (
    ENSEMBLE_WEIGHTS,
    Dataset,
    _ap,
    _auc,
    baseline_scores,
    baselines_on,
    fit_kind,
    lost_to,
    scores_of,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def dataset(n: int, seed: int, start: datetime) -> Dataset:
    """Fraud follows the first feature, and, for the trees, a threshold on the second."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    label = ((x[:, 0] + 0.7 * rng.normal(size=n) > 1.6) | (np.abs(x[:, 1]) > 2.4)).astype(int)
    frame = pd.DataFrame({
        "order_id": [f"o{seed}-{i}" for i in range(n)],
        "event_timestamp": pd.to_datetime([start + timedelta(hours=i / 50) for i in range(n)], utc=True),
        "label": label, "fraud_type": "", "payment_fingerprint": [f"card-{i % 97}" for i in range(n)]})
    return Dataset(frame, x)


CONFIG = FraudTrainConfig(kind="ensemble", refit=False, loop=LoopConfig(epochs=3, batch_size=128))


@pytest.fixture(scope="module")
def fitted():
    train, valid = dataset(2_000, 0, START), dataset(1_500, 1, START + timedelta(days=2))
    return train, valid, fit_kind(train, train, valid, CONFIG)


def test_an_ensemble_weighs_its_calibrated_members_by_validation_auc_and_ap(fitted):
    _, valid, result = fitted
    assert isinstance(result.held_out, FraudEnsemble) and all(isinstance(m, Calibrated) for m in result.held_out.members)
    assert [m.kind for m in result.held_out.members] == ["gbm", "linear", "net"]
    assert tuple(result.best["weights"].values()) in ENSEMBLE_WEIGHTS
    labels = valid.frame["label"].to_numpy()
    merit = [_auc(labels, s) + _ap(labels, s) for s in (scores_of(m, valid.x) for m in result.held_out.members)]
    # Each member alone is among the choices: the blend is at least as good as any member.
    assert _auc(labels, result.valid_scores) + _ap(labels, result.valid_scores) >= max(merit) - 1e-9


def test_calibration_makes_the_validation_scores_average_to_the_fraud_rate(fitted):
    _, valid, result = fitted
    for member in result.held_out.members:
        scores = scores_of(member, valid.x)
        assert scores.mean() == pytest.approx(valid.frame["label"].mean(), rel=0.02)


def test_without_a_refit_the_served_model_is_the_held_out_one(fitted):
    _, _, result = fitted
    assert result.model is result.held_out


def test_the_gate_names_every_baseline_at_least_as_good():
    assert lost_to(False, 0.7, {"logreg": {"ap": 0.69}, "gbm": {"ap": 0.7}}) == ["champion", "gbm"]
    assert lost_to(True, 0.7, {}) == []


def test_baselines_train_on_the_training_rows_and_score_the_validation_days(fitted):
    train, valid, _ = fitted
    found = baselines_on(train, valid)
    assert set(found) == {"logreg", "gbm"}
    assert all(0.5 < m["auc"] <= 1 and m["n"] == len(valid.x) for m in found.values())
    one_class = replace(train, frame=train.frame.assign(label=0))
    assert baselines_on(one_class, valid) == {}


def test_the_net_reads_the_inputs_the_trees_rank_highest_and_saves_which(tmp_path):
    train, valid = dataset(2_000, 0, START), dataset(1_500, 1, START + timedelta(days=2))
    result = fit_kind(train, train, valid, replace(CONFIG, net_features=4))
    net = result.held_out.members[-1].model  # the net comes last
    assert isinstance(net, Selected) and len(net.columns) == 4 and result.best["best_epoch"] >= 1
    assert {0, 1} <= set(net.columns)  # the two inputs that make fraud here
    pushes = result.model.members[-1].explain(torch.from_numpy(valid.x[:5]))[1]
    outside = [j for j in range(len(FEATURES)) if j not in net.columns]
    assert torch.count_nonzero(pushes[:, outside]) == 0
    saved = Checkpoint.load(Checkpoint(result.model, list(FEATURES)).save(tmp_path / "m.pt"))
    assert np.allclose(scores_of(saved.model, valid.x), scores_of(result.model, valid.x), atol=1e-6)


def test_a_single_kind_serves_its_own_scale_unless_told_to_calibrate(fitted):
    train, valid, _ = fitted
    raw = fit_kind(train, train, valid, replace(CONFIG, kind="gbm"))
    assert not isinstance(raw.model, Calibrated) and len(raw.best["calibration"]) == 2
    calibrated = fit_kind(train, train, valid, replace(CONFIG, kind="gbm", calibrate=True))
    assert isinstance(calibrated.model, Calibrated) and "calibration" not in calibrated.best
    assert calibrated.model.platt.to_data() == raw.best["calibration"]


def test_the_linear_kind_is_the_logistic_regression_baseline_as_a_servable_model(tmp_path):
    train, valid = dataset(2_000, 0, START), dataset(1_500, 1, START + timedelta(days=2))
    result = fit_kind(train, train, valid, replace(CONFIG, kind="linear"))
    baseline = baseline_scores(train.x, train.frame["label"].to_numpy(), valid.x)["logreg"]
    assert np.allclose(scores_of(result.model, valid.x), baseline, atol=1e-4)
    saved = Checkpoint.load(Checkpoint(result.model, list(FEATURES)).save(tmp_path / "m.pt"))
    assert np.allclose(scores_of(saved.model, valid.x), baseline, atol=1e-4)


def test_the_net_keeps_the_learning_rate_with_the_best_validation_ap():
    train, valid = dataset(2_000, 0, START), dataset(1_500, 1, START + timedelta(days=2))
    result = fit_kind(train, train, valid, replace(CONFIG, kind="net", lrs=(1e-9, 2e-3)))
    assert result.best["lr"] == 2e-3  # 1e-9 leaves the net as it was initialised
    stuck = fit_kind(train, train, valid, replace(CONFIG, kind="net", loop=replace(CONFIG.loop, lr=1e-9)))
    assert result.best["val_ap"] > stuck.best["val_ap"]
