"""Fraud scoring: an order and its features in, a ``FraudScore`` out.

Pure code, no I/O. The worker reads each order's features from the online store (the
views of the ``fraud_v1`` feature service, named ``view__feature``), and the trainer reads
the same names point-in-time from the offline store; ``order_features`` turns either into
the one vector the model sees, so training and serving cannot drift apart.

The score comes from the champion model when there is one, and from rules otherwise
(no model registered yet, or the model failed to load). Reasons name the features that
pushed the score up most.

>>> from datetime import datetime, UTC
>>> from shopstream.events import Order, OrderItem
>>> order = Order(order_id="o1", user_id="u1", amount=900, payment_fingerprint="card-1",
...               items=[OrderItem(item_id="i1", price=900)], ts=datetime(2026, 1, 5, 3, tzinfo=UTC))
>>> online = {"user_orders__order_amount_mean_30d": 60.0, "user_orders__order_amount_count_30d": 4,
...           "instrument_velocity__orders_count_10m": 0}
>>> scorer = FraudScorer(review=0.5, block=0.9)
>>> [(s.score, s.decision, s.model_version, [r.feature for r in s.reasons])
...  for s in scorer.score([order], [online], clock=lambda: 0.0)]
[(0.4555, 'allow', 'rules', ['amount_to_mean_30d'])]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from scorers.views import VIEWS
from shopstream.events import FraudScore, Order, Reason

FRAUD_VIEWS = ("user_activity", "user_orders", "user_risk", "instrument_velocity",
               "instrument_risk", "device_velocity", "ip_velocity", "terminal_risk")
"""The views of the ``fraud_v1`` feature service, in the order the model reads them."""

TRANSACTION = ("amount_log", "hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "is_weekend",
               "is_night", "items_count", "has_device", "has_ip", "amount_to_mean_1d",
               "amount_to_mean_7d", "amount_to_mean_30d", "amount_z_30d", "first_order")
SIGNALS: dict[str, tuple[str, ...]] = {
    "transaction": TRANSACTION,
    "history": tuple(f"{v}__{f}" for v in FRAUD_VIEWS[:3] for f in VIEWS[v].features),
    "network": tuple(f"{v}__{f}" for v in FRAUD_VIEWS[3:] for f in VIEWS[v].features),
}
"""Feature names of each signal the model encodes separately."""
FEATURES: tuple[str, ...] = sum(SIGNALS.values(), ())
ONLINE_FEATURES: tuple[str, ...] = SIGNALS["history"] + SIGNALS["network"]
"""What to read from the feature store for an order (``view__feature``)."""


def _num(value) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _log(value) -> float:
    return math.log1p(max(_num(value), 0.0))


ACCOUNT_AGE_CAP_DAYS = 7.0
"""The model sees account age only up to a week. Age counts from the first event the
stream saw, so beyond "new account" it measures how long shopstream has run (or where a
replay began), and a model trained on it would drift as the deployment ages."""


def order_features(order: Order, online: Mapping[str, object]) -> dict[str, float]:
    """The model's inputs for ``order``, given its features as of just before it.

    Missing features (an entity never seen) count as zero. Counts, sums and durations are
    log-scaled: they are heavy-tailed, and a ratio to the user's history says more.
    """
    amount, ts = float(order.amount), order.ts.astimezone(UTC)
    hour = ts.hour + ts.minute / 60
    values = {
        "amount_log": math.log1p(amount),
        "hour_sin": math.sin(2 * math.pi * hour / 24), "hour_cos": math.cos(2 * math.pi * hour / 24),
        "weekday_sin": math.sin(2 * math.pi * ts.weekday() / 7),
        "weekday_cos": math.cos(2 * math.pi * ts.weekday() / 7),
        "is_weekend": float(ts.weekday() >= 5), "is_night": float(hour < 6),
        "items_count": math.log1p(len(order.items)),
        "has_device": float(order.device_id is not None), "has_ip": float(order.ip is not None),
    }
    for window in ("1d", "7d", "30d"):
        mean = _num(online.get(f"user_orders__order_amount_mean_{window}"))
        values[f"amount_to_mean_{window}"] = math.log1p(amount / mean) if mean > 0 else 0.0
    std = _num(online.get("user_orders__order_amount_std_30d"))
    mean = _num(online.get("user_orders__order_amount_mean_30d"))
    values["amount_z_30d"] = max(min((amount - mean) / std, 50.0), -50.0) if std > 0 else 0.0
    values["first_order"] = float(_num(online.get("user_orders__order_amount_count_30d")) == 0)
    for name in ONLINE_FEATURES:  # risks are shares already; everything else is heavy-tailed
        share = name.split("__", 1)[1].startswith("fraud_risk")
        values[name] = _num(online.get(name)) if share else _log(online.get(name))
    age = _num(online.get("user_activity__account_age_days"))
    values["user_activity__account_age_days"] = math.log1p(min(age, ACCOUNT_AGE_CAP_DAYS))
    return values


def matrix(orders: Sequence[Order], online: Sequence[Mapping[str, object]]) -> np.ndarray:
    """The (N, F) input matrix of ``orders``, columns in ``FEATURES`` order."""
    rows = [order_features(o, f) for o, f in zip(orders, online, strict=True)]
    return np.array([[row[name] for name in FEATURES] for row in rows], dtype=np.float32).reshape(
        len(rows), len(FEATURES))


# --- rules: the fallback when there is no model ------------------------------------------


@dataclass(frozen=True)
class Rule:
    feature: str  # the raw feature the rule looks at, named in the reason
    weight: float  # the fraud probability this rule alone implies
    fires: Callable[[Order, Mapping[str, float]], bool]


def _amount_mean(online: Mapping[str, object]) -> float:
    return _num(online.get("user_orders__order_amount_mean_30d"))


RULES = (
    Rule("instrument_velocity__orders_count_10m", 0.5,  # card testing: a burst on one card
         lambda o, f: _num(f.get("instrument_velocity__orders_count_10m")) >= 3),
    Rule("ip_velocity__users_distinct_24h", 0.4,  # many accounts behind one address
         lambda o, f: _num(f.get("ip_velocity__users_distinct_24h")) >= 3
         or _num(f.get("device_velocity__users_distinct_24h")) >= 3),
    Rule("amount_to_mean_30d", 0.45,  # far above what this user usually spends
         lambda o, f: _num(f.get("user_orders__order_amount_count_30d")) >= 2
         and float(o.amount) >= 3 * _amount_mean(f)),
    Rule("user_activity__devices_distinct_24h", 0.4,  # a new device, and a high amount
         lambda o, f: _num(f.get("user_activity__devices_distinct_24h")) >= 2
         and float(o.amount) >= max(200.0, 2 * _amount_mean(f))),
    Rule("terminal_risk__fraud_risk_7d", 0.6,  # a terminal with recent confirmed fraud
         lambda o, f: _num(f.get("terminal_risk__fraud_risk_7d")) >= 0.2),
)
RULES_BASE = 0.01  # the probability when no rule fires


def rules_score(order: Order, online: Mapping[str, object]) -> tuple[float, list[Reason]]:
    """The rules' probability (each fired rule is independent evidence) and reasons."""
    fired = [rule for rule in RULES if rule.fires(order, online)]
    score = 1 - (1 - RULES_BASE) * math.prod(1 - rule.weight for rule in fired) if fired else RULES_BASE
    reasons = [Reason(feature=_readable(rule.feature), value=_reason_value(rule.feature, order, online),
                      contribution=rule.weight)
               for rule in sorted(fired, key=lambda r: -r.weight)]
    return round(score, 6), reasons


def _readable(name: str) -> str:
    """``user_orders__order_amount_mean_30d`` -> ``user_orders.order_amount_mean_30d``."""
    return name.replace("__", ".")


def _reason_value(name: str, order: Order, online: Mapping[str, object]) -> float | None:
    if name in online:
        value = online[name]
        return None if value is None else float(value)
    if name == "amount_to_mean_30d":
        mean = _amount_mean(online)
        return round(float(order.amount) / mean, 3) if mean > 0 else None
    return None


# --- the scorer ---------------------------------------------------------------------------


class Predictor(Protocol):
    """A loaded model: probabilities, and per-feature pushes, for an (N, F) matrix."""

    version: str
    features: Sequence[str]

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and pushes (a forward and a backward pass)."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities only (a forward pass)."""
        ...


def decide(score: float, review: float, block: float) -> str:
    """allow, review or block.

    >>> [decide(s, 0.5, 0.9) for s in (0.1, 0.5, 0.95)]
    ['allow', 'review', 'block']
    """
    return "block" if score >= block else "review" if score >= review else "allow"


class FraudScorer:
    """Scores batches of orders with ``predictor``, or with the rules when it is None."""

    def __init__(self, predictor: Predictor | None = None, *, review: float, block: float,
                 top_reasons: int = 3, reasons_for: str = "flagged"):
        self.predictor = predictor
        self.review, self.block = review, block
        self.top_reasons = top_reasons
        self.reasons_for = reasons_for  # "flagged" (review or block) or "all"

    @property
    def version(self) -> str:
        return self.predictor.version if self.predictor is not None else "rules"

    def score(self, orders: Sequence[Order], online: Sequence[Mapping[str, object]], *,
              consumed_at: Sequence[float] | None = None,
              clock: Callable[[], float] = time.time) -> list[FraudScore]:
        """One score per order; ``consumed_at`` (epoch seconds) gives each its latency."""
        if not orders:
            return []
        if self.predictor is None:
            results = [rules_score(o, f) for o, f in zip(orders, online, strict=True)]
        else:
            results = self._model_scores(orders, online)
        now = clock()
        consumed_at = consumed_at or [now] * len(orders)
        return [
            FraudScore(order_id=order.order_id, user_id=order.user_id, score=score,
                       decision=decide(score, self.review, self.block), reasons=reasons,
                       model_version=self.version, latency_ms=max(now - start, 0.0) * 1000,
                       ts=datetime.fromtimestamp(now, UTC))
            for order, (score, reasons), start in zip(orders, results, consumed_at, strict=True)
        ]

    def _model_scores(self, orders, online) -> list[tuple[float, list[Reason]]]:
        """Probabilities from a forward pass; reasons (a backward pass too) only for the
        orders that are flagged, unless ``reasons_for`` is "all": an allowed order has no
        one to read its reasons, and the backward pass is two thirds of the model's time."""
        x = matrix(orders, online)
        if self.reasons_for == "all" and self.top_reasons:
            probs, pushes = self.predictor(x)
        else:
            probs = self.predictor.predict(x)
            pushes = np.zeros_like(x)
            flagged = [i for i, p in enumerate(probs)
                       if decide(round(float(p), 6), self.review, self.block) != "allow"] \
                if self.top_reasons else []
            if flagged:
                pushes[flagged] = self.predictor(x[flagged])[1]
        names = list(self.predictor.features)
        results = []
        for i, prob in enumerate(probs):
            top = np.argsort(-pushes[i])[: self.top_reasons]
            # A reason shows the feature as the store has it (75 orders, not log1p(75)).
            reasons = [Reason(feature="amount" if names[j] == "amount_log" else _readable(names[j]),
                              value=float(orders[i].amount) if names[j] == "amount_log"
                              else round(_num(online[i].get(names[j], x[i, j])), 4),
                              contribution=round(float(pushes[i, j]), 4))
                       for j in top if pushes[i, j] > 0]
            results.append((round(float(prob), 6), reasons))
        return results


class ModelPredictor:
    """A ``models.fraud.Checkpoint`` as a ``Predictor``."""

    def __init__(self, checkpoint, version: str):
        import torch  # here, so that rules-only scoring does not pay for importing torch

        if tuple(checkpoint.features) != FEATURES:
            raise ValueError("the checkpoint was trained on other features than this scorer builds "
                             f"({len(checkpoint.features)} vs {len(FEATURES)}); retrain it")
        self._torch = torch
        self.model = checkpoint.model
        self.features = checkpoint.features
        self.version = version

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, pushes = self.model.explain(self._torch.from_numpy(x))
        return probs.numpy(), pushes.numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return self.model.predict(self._torch.from_numpy(x)).numpy()
