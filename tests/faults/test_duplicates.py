"""Copies of a label, as a shop's retries send them (and a label that changes its mind):
the first counts, the others change no feature and are counted.

Seen failing before issue 14's fixes: the second label counted twice in the user's fraud
history."""

from __future__ import annotations

import time

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Order, OrderItem, OrderLabel
from shopstream.featurestore import feature_store
from tests.integration.conftest import wait_until


def features(store, view: str, key: str, entity: str, names: list[str]) -> dict:
    rows = store.get_online_features(features=[f"{view}:{n}" for n in names],
                                     entity_rows=[{key: entity}]).to_dict()
    return {n: rows[n][0] for n in names}


def duplicates(port: int) -> dict[str, float]:
    return {name: sum(s.value for s in workers.samples(port, f"shopstream_duplicate_{name}_total"))
            for name in ("labels",)}


def test_copies_of_a_label_count_once(worker):
    settings = worker
    store = feature_store(settings)
    p = settings.app_id
    now = time.time()
    order = Order(order_id=f"{p}-o1", user_id=f"{p}-u", amount=30.0, payment_fingerprint=f"{p}-card",
                  items=[OrderItem(item_id=f"{p}-i", price=30.0)], terminal_id=f"{p}-t", ts=now - 600)
    with ShopProducer(settings) as shop:
        shop.send(order)
    wait_until(lambda: features(store, "user_orders", "user_id", f"{p}-u",
                                ["order_amount_count_1d"])["order_amount_count_1d"] == 1,
               what="the order to count")

    label = OrderLabel(order_id=f"{p}-o1", is_fraud=True, ts=now - 60)
    with ShopProducer(settings) as shop:
        shop.send(label)
        shop.send(label)
        shop.send(label.model_copy(update={"is_fraud": False}))
    wait_until(lambda: duplicates(settings.web_port)["labels"] == 2, what="both label copies to be seen")
    wait_until(lambda: features(store, "user_risk", "user_id", f"{p}-u", ["fraud_count_7d"])
               == {"fraud_count_7d": 1}, what="the label to count once")
    time.sleep(2)  # nothing more arrives
    assert features(store, "user_risk", "user_id", f"{p}-u", ["fraud_count_7d", "fraud_risk_7d"]) \
        == {"fraud_count_7d": 1, "fraud_risk_7d": 1.0}
