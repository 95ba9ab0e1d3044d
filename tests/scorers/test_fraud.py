"""The pure fraud scorer: features, rules, decisions, reasons and the model path."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from models.configs import FraudConfig
from models.fraud import Checkpoint, FraudNet
from scorers.fraud import (
    FEATURES,
    SIGNALS,
    FraudScorer,
    ModelPredictor,
    decide,
    matrix,
    order_features,
    rules_score,
)
from shopstream.events import Order, OrderItem

TS = datetime(2026, 1, 3, 2, 30, tzinfo=UTC)  # a Saturday night


def order(amount: float = 50.0, **fields) -> Order:
    return Order(order_id="o1", user_id="u1", amount=amount, payment_fingerprint="card-1",
                 items=[OrderItem(item_id="i1", price=amount)], ts=TS, **fields)


@pytest.mark.parametrize(("amount", "online", "fired"), [
    (50, {}, []),
    (50, {"instrument_velocity__orders_count_10m": 3}, ["instrument_velocity.orders_count_10m"]),
    (50, {"instrument_velocity__orders_count_10m": 2}, []),
    (50, {"ip_velocity__users_distinct_24h": 3}, ["ip_velocity.users_distinct_24h"]),
    (50, {"device_velocity__users_distinct_24h": 4}, ["ip_velocity.users_distinct_24h"]),
    (300, {"user_orders__order_amount_mean_30d": 100, "user_orders__order_amount_count_30d": 2},
     ["amount_to_mean_30d"]),
    (299, {"user_orders__order_amount_mean_30d": 100, "user_orders__order_amount_count_30d": 2}, []),
    (300, {"user_orders__order_amount_mean_30d": 100, "user_orders__order_amount_count_30d": 1}, []),
    (250, {"user_activity__devices_distinct_24h": 2}, ["user_activity.devices_distinct_24h"]),
    (150, {"user_activity__devices_distinct_24h": 2}, []),
    (50, {"terminal_risk__fraud_risk_7d": 0.25}, ["terminal_risk.fraud_risk_7d"]),
    (50, {"terminal_risk__fraud_risk_7d": None}, []),
    (900, {"terminal_risk__fraud_risk_7d": 0.5, "instrument_velocity__orders_count_10m": 5},
     ["terminal_risk.fraud_risk_7d", "instrument_velocity.orders_count_10m"]),
])
def test_rules(amount, online, fired):
    score, reasons = rules_score(order(amount), online)
    assert [r.feature for r in reasons] == fired  # strongest first
    expected = 1 - 0.99 * math.prod(1 - r.contribution for r in reasons) if fired else 0.01
    assert score == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("score", "decision"), [
    (0.0, "allow"), (0.49, "allow"), (0.5, "review"), (0.89, "review"), (0.9, "block"), (1.0, "block"),
])
def test_decisions(score, decision):
    assert decide(score, review=0.5, block=0.9) == decision


def test_order_features_from_the_order_and_its_history():
    features = order_features(order(300, device_id="d1"), {
        "user_orders__order_amount_mean_30d": 100.0, "user_orders__order_amount_std_30d": 50.0,
        "user_orders__order_amount_count_30d": 3, "terminal_risk__fraud_risk_7d": 0.25,
        "terminal_risk__tx_count_30d": 9, "user_activity__clicks_count_24h": None})
    assert features["amount_to_mean_30d"] == pytest.approx(math.log1p(3.0))
    assert features["amount_z_30d"] == pytest.approx(4.0)
    assert features["amount_to_mean_7d"] == 0.0  # no 7-day history: no ratio
    assert features["first_order"] == 0.0
    assert features["is_weekend"] == 1.0 and features["is_night"] == 1.0
    assert features["has_device"] == 1.0 and features["has_ip"] == 0.0
    assert features["terminal_risk__fraud_risk_7d"] == 0.25  # a share: not log-scaled
    assert features["terminal_risk__tx_count_30d"] == pytest.approx(math.log1p(9))  # a count: scaled
    assert features["user_orders__order_amount_count_30d"] == pytest.approx(math.log1p(3))
    assert features["user_activity__clicks_count_24h"] == 0.0  # missing counts as zero
    assert set(features) == set(FEATURES)


@pytest.mark.parametrize(("days", "seen"), [(0.5, 0.5), (6.0, 6.0), (7.0, 7.0), (45.0, 7.0), (400.0, 7.0)])
def test_account_age_is_seen_up_to_a_week(days, seen):
    features = order_features(order(30), {"user_activity__account_age_days": days})
    assert features["user_activity__account_age_days"] == pytest.approx(math.log1p(seen))


def test_matrix_columns_follow_features():
    x = matrix([order(10), order(20)], [{}, {"user_activity__clicks_count_24h": 4}])
    assert x.shape == (2, len(FEATURES)) and x.dtype == np.float32
    column = FEATURES.index("user_activity__clicks_count_24h")
    assert x[:, column].tolist() == pytest.approx([0.0, math.log1p(4)])


class FixedPredictor:
    """Pushes feature 0 up for every order and returns fixed probabilities."""

    version = "7"
    features = FEATURES

    def __init__(self):
        self.explained = 0  # rows given a backward pass

    def predict(self, x):
        return np.array([0.2, 0.95])[: len(x)]

    def __call__(self, x):
        self.explained += len(x)
        pushes = np.zeros_like(x)
        pushes[:, FEATURES.index("amount_log")] = 2.0
        pushes[:, FEATURES.index("is_night")] = -1.0  # pulled the score down: not a reason
        return self.predict(x), pushes


def test_model_scores_carry_version_decision_latency_and_upward_reasons():
    scorer = FraudScorer(FixedPredictor(), review=0.5, block=0.9, reasons_for="all")
    scores = scorer.score([order(10), order(2000)], [{}, {}], consumed_at=[99.0, 99.5], clock=lambda: 100.0)
    assert [(s.model_version, s.decision) for s in scores] == [("7", "allow"), ("7", "block")]
    assert [s.latency_ms for s in scores] == [1000.0, 500.0]
    assert [[r.feature for r in s.reasons] for s in scores] == [["amount"], ["amount"]]
    assert scores[1].reasons[0].value == 2000.0  # as the shop knows it, not the model's log


def test_by_default_only_flagged_orders_pay_for_reasons():
    predictor = FixedPredictor()
    scores = FraudScorer(predictor, review=0.5, block=0.9).score(
        [order(10), order(2000)], [{}, {}], clock=lambda: 100.0)
    assert [[r.feature for r in s.reasons] for s in scores] == [[], ["amount"]]
    assert predictor.explained == 1  # the allowed order had a forward pass only
    assert FraudScorer(predictor, review=0.5, block=0.9, top_reasons=0).score(
        [order(2000)], [{}], clock=lambda: 0.0)[0].reasons == []
    assert predictor.explained == 1


def test_reasons_show_store_values_not_model_inputs():
    class PushesTerminalCount(FixedPredictor):
        def __call__(self, x):
            probs, pushes = super().__call__(x)
            pushes[:] = 0.0
            pushes[:, FEATURES.index("terminal_risk__tx_count_30d")] = 1.0
            return probs, pushes

    (score,) = FraudScorer(PushesTerminalCount(), review=0.5, block=0.9, reasons_for="all").score(
        [order()], [{"terminal_risk__tx_count_30d": 75}], clock=lambda: 0.0)
    assert [(r.feature, r.value) for r in score.reasons] == [("terminal_risk.tx_count_30d", 75.0)]


def test_rules_scorer_is_the_fallback():
    scores = FraudScorer(review=0.5, block=0.9).score([order()], [{}], clock=lambda: 0.0)
    assert scores[0].model_version == "rules" and scores[0].decision == "allow"


def small_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    config = FraudConfig(signals=tuple((name, len(names)) for name, names in SIGNALS.items()))
    return Checkpoint(FraudNet(config), list(FEATURES), {"train_end": "2026-01-01"})


def test_a_checkpoint_scores_the_same_after_a_round_trip(tmp_path):
    checkpoint = small_checkpoint()
    loaded = Checkpoint.load(checkpoint.save(tmp_path / "fraud.pt"))
    x = matrix([order(10), order(2000, device_id="d")], [{}, {"user_orders__order_amount_mean_30d": 30}])
    before = ModelPredictor(checkpoint, "1")(x)
    after = ModelPredictor(loaded, "1")(x)
    assert np.allclose(before[0], after[0]) and np.allclose(before[1], after[1])
    assert loaded.meta == {"train_end": "2026-01-01"}


def test_a_checkpoint_for_other_features_is_refused():
    checkpoint = small_checkpoint()
    checkpoint.features = checkpoint.features[:-1]
    with pytest.raises(ValueError, match="retrain"):
        ModelPredictor(checkpoint, "1")


def test_boosted_trees_round_trip_and_give_their_reasons(tmp_path):
    from models.configs import GBMConfig
    from models.gbm import FraudGBM

    rng = np.random.default_rng(0)
    big = np.array([1.0 if i % 7 == 0 else 0.0 for i in range(3_000)])
    orders = [order(20 + 3_000 * flag + i % 13) for i, flag in enumerate(big)]
    x = matrix(orders, [{} for _ in orders])
    labels = (big * (rng.random(3_000) < 0.9)).astype(np.float32)  # large amounts are fraud, mostly
    checkpoint = Checkpoint(FraudGBM.fit(x, labels, GBMConfig(rounds=40)), list(FEATURES), {"kind": "gbm"})
    loaded = Checkpoint.load(checkpoint.save(tmp_path / "gbm.pt"))
    before, after = ModelPredictor(checkpoint, "4")(x[:50]), ModelPredictor(loaded, "4")(x[:50])
    assert np.allclose(before[0], after[0], atol=1e-6) and np.allclose(before[1], after[1], atol=1e-6)
    (score,) = FraudScorer(ModelPredictor(loaded, "4"), review=0.5, block=0.9).score([order(3_020)], [{}],
                                                                                      clock=lambda: 0.0)
    assert score.decision != "allow" and score.model_version == "4"
    assert score.reasons[0].feature == "amount" and score.reasons[0].value == 3_020  # its SHAP value pushed most
