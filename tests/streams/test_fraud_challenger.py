"""A fraud challenger in the scoring agent (``streams.fraud.challenged``): a shadow
changes no live score, an A/B split gives its users the challenger's, and a failing
challenger leaves every order to the champion."""

from __future__ import annotations

from datetime import UTC, datetime

from scorers.challenge import Challenge
from scorers.fraud import FraudScorer
from shopstream.events import FraudScore, Order, OrderItem
from streams.fraud import challenged

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ORDERS = [Order(order_id=f"o{i}", user_id=f"user-{i % 40}", amount=10.0 + i, payment_fingerprint=f"card-{i}",
                items=[OrderItem(item_id="tent", price=10.0 + i)], ts=NOW) for i in range(200)]
FEATURES = [{} for _ in ORDERS]


class Constant:
    """A challenger that scores every order ``value``, or fails when told to."""

    def __init__(self, value: float, fails: bool = False):
        self.value, self.fails, self.version = value, fails, "7"

    def score(self, orders, online, *, consumed_at=None):
        if self.fails:
            raise RuntimeError("a challenger that cannot score")
        return [FraudScore(order_id=o.order_id, user_id=o.user_id, score=self.value, decision="review",
                           model_version=self.version, latency_ms=0.0, ts=NOW) for o in orders]


def champion() -> FraudScorer:
    return FraudScorer(review=0.5, block=0.9)  # the rules


def comparable(scores) -> list[dict]:
    return [s.model_dump(exclude={"latency_ms", "ts"}) for s in scores]


def test_a_shadow_changes_no_live_score_and_scores_every_order_beside_it():
    alone, none = challenged(champion(), None, ORDERS, FEATURES, 0.0)
    live, shadow = challenged(champion(), (Challenge("7", "shadow"), Constant(0.66)), ORDERS, FEATURES, 0.0)
    assert none == [] and comparable(live) == comparable(alone)
    assert {s.variant for s in live} == {"champion"}
    assert [s.order_id for s in shadow] == [o.order_id for o in ORDERS]
    assert {(s.variant, s.model_version, s.score) for s in shadow} == {("shadow", "7", 0.66)}


def test_an_ab_split_gives_the_challengers_users_its_scores_and_the_rest_the_champions():
    challenge = Challenge("7", "ab", 0.3, "salt")
    scores, shadow = challenged(champion(), (challenge, Constant(0.66)), ORDERS, FEATURES, 0.0)
    assert shadow == [] and [s.order_id for s in scores] == [o.order_id for o in ORDERS]
    rules = {s.order_id: s for s in challenged(champion(), None, ORDERS, FEATURES, 0.0)[0]}
    for order, score in zip(ORDERS, scores, strict=True):
        if challenge.variant(order.user_id) == "challenger":
            assert (score.variant, score.model_version, score.score) == ("challenger", "7", 0.66)
        else:
            assert comparable([score]) == comparable([rules[order.order_id]])
    assert 0 < sum(s.variant == "challenger" for s in scores) < len(ORDERS)


def test_a_failing_challenger_leaves_its_orders_to_the_champion():
    for mode, weight in (("ab", 0.5), ("shadow", 0.0)):
        scores, shadow = challenged(champion(), (Challenge("7", mode, weight, "salt"), Constant(0.66, fails=True)),
                                    ORDERS, FEATURES, 0.0)
        assert shadow == [] and len(scores) == len(ORDERS)
        assert {s.variant for s in scores} == {"champion"} and {s.model_version for s in scores} == {"rules"}
