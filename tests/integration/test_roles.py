"""A feature worker and a scoring worker apart (``SHOPSTREAM_ROLES``): every order is
scored exactly once, a malformed one is dead-lettered exactly once, features are still
written, and each group accounts for every offset it reads."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from confluent_kafka import Producer

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import DeadLetter, FraudScore, Order, OrderItem
from shopstream.featurestore import feature_store
from tests.integration.conftest import drained, metrics, read_all, start_worker, wait_until

pytestmark = pytest.mark.integration
N = 60


def test_scoring_apart_from_features(settings, tmp_path):
    features = settings.model_copy(update={"roles": ("features", "recs")})
    scoring = settings.model_copy(update={"roles": ("fraud",), "web_port": settings.web_port + 1})
    started = [start_worker(features, tmp_path / "features.log"),
               start_worker(scoring, tmp_path / "scoring.log")]
    try:
        now = datetime.now(UTC)
        with ShopProducer(settings) as producer:
            for i in range(N):
                producer.send(Order(order_id=f"o{i}", user_id=f"u{i % 5}", amount=20.0 + i,
                                    payment_fingerprint=f"card-{i % 5}", terminal_id="t1",
                                    items=[OrderItem(item_id="i1", price=20.0 + i)],
                                    ts=now - timedelta(seconds=N - i)))
        raw = Producer(settings.kafka.client_config())
        raw.produce(settings.topics.orders, key=b"u0", value=b"{not json")
        raw.flush()

        scored = [FraudScore.model_validate_json(m.value())
                  for m in read_all(settings, settings.topics.fraud_scores, expect=N)]
        assert Counter(s.order_id for s in scored) == Counter(f"o{i}" for i in range(N))
        letters = [DeadLetter.model_validate_json(m.value())
                   for m in read_all(settings, settings.topics.dlq, expect=1)]
        assert [(d.topic, d.reason) for d in letters] == [(settings.topics.orders, "invalid_json")]

        store = feature_store(settings)
        wait_until(lambda: store.get_online_features(
            features=["user_orders:order_amount_count_30d"], entity_rows=[{"user_id": "u0"}]
        ).to_dict()["order_amount_count_30d"] == [N // 5], what="u0's order count online")
        for worker in (features, scoring):
            wait_until(lambda w=worker: drained(w, [settings.topics.orders]),
                       what=f"group of {worker.roles} to commit every order offset")
        assert metrics(scoring.web_port).total_dead == 0  # the feature worker dead-letters
        # The scoring worker is a group of its own: every order partition, nothing else.
        health = httpx.get(f"http://127.0.0.1:{scoring.web_port}/health").json()
        assert health["group"] == f"{settings.app_id}-fraud"
        assigned = [a for a in health["assigned"] if "__assignor" not in a]  # Faust's own
        assert sorted(assigned) == [f"{settings.topics.orders}:{p}" for p in range(settings.topics.partitions)]
    finally:
        for process in started:
            workers.stop(process)
