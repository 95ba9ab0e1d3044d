"""Calibrated models and the ensemble of net, trees and logistic regression: saved and loaded exactly, served
with reasons that add up to the logit, and the focal loss."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from models.calibration import Calibrated, Platt
from models.configs import FraudConfig, GBMConfig
from models.ensemble import FraudEnsemble
from models.fraud import Checkpoint, FraudNet
from models.gbm import FraudGBM
from models.linear import FraudLinear
from scorers.fraud import FEATURES, SIGNALS, FraudScorer, ModelPredictor
from shopstream.events import Order, OrderItem

CONFIG = FraudConfig(signals=tuple((name, len(names)) for name, names in SIGNALS.items()))


def rows(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    return x, (x[:, 0] + 0.5 * rng.normal(size=n) > 1.3).astype(np.float32)


def ensemble() -> FraudEnsemble:
    x, y = rows()
    torch.manual_seed(0)
    trees = FraudGBM.fit(x, y, GBMConfig(rounds=20, min_data_in_leaf=5))
    return FraudEnsemble([Calibrated(FraudNet(CONFIG).eval(), Platt(0.5, -1.0)),
                          Calibrated(trees, Platt(0.8, -0.2)),
                          Calibrated(FraudLinear.fit(x, y), Platt(0.9, 0.1))], [0.25, 0.5, 0.25])


@pytest.mark.parametrize("make", [lambda: Calibrated(FraudNet(CONFIG).eval(), Platt(0.3, -2.0)), ensemble,
                                  lambda: FraudLinear.fit(*rows())],
                         ids=["calibrated net", "ensemble", "logistic regression"])
def test_a_saved_model_of_any_kind_loads_back_scoring_the_same(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    x = torch.from_numpy(rows(50, seed=1)[0])
    loaded = Checkpoint.load(Checkpoint(model, list(FEATURES), {"a": 1}).save(tmp_path / "m.pt"))
    assert type(loaded.model) is type(model) and loaded.meta == {"a": 1}
    assert torch.allclose(loaded.model.predict(x), model.predict(x), atol=1e-6)
    assert torch.allclose(loaded.model.explain(x)[1], model.explain(x)[1], atol=1e-5)


def test_calibration_rescales_the_logit_and_keeps_the_ranking():
    torch.manual_seed(0)
    net = FraudNet(CONFIG).eval()
    x = torch.from_numpy(rows(200)[0])
    calibrated = Calibrated(net, Platt(0.5, -3.0))
    assert torch.allclose(calibrated.logits(x), 0.5 * net.logits(x) - 3.0, atol=1e-5)
    assert torch.equal(torch.argsort(calibrated.predict(x)), torch.argsort(net.predict(x)))
    assert torch.allclose(calibrated.explain(x)[1], 0.5 * net.explain(x)[1])


def test_an_ensembles_pushes_are_its_members_pushes_weighted():
    model = ensemble()
    x = torch.from_numpy(rows(20, seed=2)[0])
    logits, pushes = model.explain_logits(x)
    parts = [(w, m.explain_logits(x)) for w, m in zip(model.weights, model.members, strict=True)]
    assert torch.allclose(logits, sum(w * m_logits for w, (m_logits, _) in parts), atol=1e-5)
    assert torch.allclose(pushes, sum(w * m_pushes for w, (_, m_pushes) in parts), atol=1e-5)
    assert torch.allclose(model.predict(x), torch.sigmoid(logits), atol=1e-6)


def test_the_worker_serves_an_ensemble_with_reasons(tmp_path):
    path = Checkpoint(ensemble(), list(FEATURES)).save(tmp_path / "m.pt")
    scorer = FraudScorer(ModelPredictor(Checkpoint.load(path), "7"), review=0.0, block=0.99, reasons_for="all")
    order = Order(order_id="o1", user_id="u1", amount=900.0, payment_fingerprint="c1",
                  items=[OrderItem(item_id="i1", price=900.0)], ts=datetime(2026, 1, 5, 3, tzinfo=UTC))
    [score] = scorer.score([order], [{"user_orders__order_amount_mean_30d": 20.0}])
    assert score.model_version == "7" and 0 <= score.score <= 1
    assert score.reasons and all(r.contribution > 0 for r in score.reasons)


def test_platt_never_turns_the_ranking_around_and_is_the_identity_on_one_class():
    logits = np.linspace(-3, 3, 200)
    assert Platt.fit(logits, (logits < 0).astype(float)) == Platt()  # would need a < 0
    assert Platt.fit(logits, np.zeros(200)) == Platt()


def test_focal_loss_weighs_confident_right_answers_down():
    torch.manual_seed(0)
    plain = FraudNet(CONFIG)
    focal = FraudNet(FraudConfig(**{**CONFIG.__dict__, "focal_gamma": 2.0}))
    focal.load_state_dict(plain.state_dict())
    plain.eval(), focal.eval()
    x, y = torch.from_numpy(rows(300)[0]), torch.from_numpy(rows(300)[1])
    (_, bce), (_, fl) = plain(x, y), focal(x, y)
    assert 0 < fl.item() < bce.item()
    # gamma 0 is the weighted cross-entropy itself
    same = FraudNet(FraudConfig(**{**CONFIG.__dict__, "focal_gamma": 0.0}))
    same.load_state_dict(plain.state_dict())
    assert same.eval()(x, y)[1].item() == pytest.approx(bce.item())
