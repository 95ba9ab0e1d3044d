"""One fraud decision per order id (issue 32, finding 11).

Seen failing before its fix: an order sent again got a score of its own, from the
features its first copy had changed (one more order in every count), so an order already
allowed could come back blocked, and the drift role and the served rows counted it twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.decisions import Decisions
from shopstream.events import FraudScore, Order, OrderItem
from shopstream.featurestore import offline_root
from shopstream.offline import SERVED_FRAUD, OfflineLog
from tests.integration.conftest import read_all, wait_until

pytestmark = pytest.mark.integration


def score(order_id: str, value: float) -> FraudScore:
    return FraudScore(order_id=order_id, user_id="u", score=value, decision="allow" if value < 0.5 else "block",
                      model_version="rules", latency_ms=1.0, ts=datetime.now(UTC))


def test_an_order_id_keeps_its_first_decision(settings):
    with settings.redis.client() as client:
        decisions = Decisions(client, f"{settings.app_id}:decision:", 60)
        first = score("o1", 0.1)
        assert decisions.decide([first], ["orders:0:7"]) == [(first, False)]
        # Sent again, from another record: the first decision, as a repeat.
        assert decisions.decide([score("o1", 0.9)], ["orders:1:3"]) == [(first, True)]
        # The same record read again after a restart: the first decision, no repeat.
        assert decisions.decide([score("o1", 0.8)], ["orders:0:7"]) == [(first, False)]
        # Two copies in one batch: the second gets the first's.
        a, b = score("o2", 0.2), score("o2", 0.95)
        assert decisions.decide([a, b], ["orders:0:8", "orders:0:9"]) == [(a, False), (a, True)]
        assert 0 < client.ttl(f"{settings.app_id}:decision:o1") <= 60


def test_a_resent_order_gets_its_first_decision_and_counts_once(worker):
    settings = worker
    order = Order(order_id="resent-1", user_id="u-resent", items=[OrderItem(item_id="i", price=40.0)],
                  amount=40.0, payment_fingerprint="p-resent", ts=datetime.now(UTC))
    with ShopProducer(settings) as producer:
        producer.send(order)
    (first,) = read_all(settings, settings.topics.fraud_scores, expect=1)
    wait_until(lambda: workers.records(settings.web_port)[settings.topics.orders, "processed"] >= 1,
               what="the first copy to be processed")
    with ShopProducer(settings) as producer:  # the shop retries: the same order, later
        producer.send(order.model_copy(update={"amount": 4000.0, "ts": datetime.now(UTC)}))
    scores = read_all(settings, settings.topics.fraud_scores, expect=2)
    assert len(scores) == 2
    assert json.loads(scores[1].value()) == json.loads(first.value())  # the first decision, whole
    assert [s.value for s in workers.samples(settings.web_port, "shopstream_repeated_orders_total")] == [1.0]
    served = OfflineLog(offline_root(settings)).read(SERVED_FRAUD, columns=["order_id"]).column("order_id")
    assert served.to_pylist() == ["resent-1"]
