"""Copies of an order or a label, as a shop's retries send them (and a label that changes
its mind): the first counts, the others change no feature and are counted.

Seen failing before issue 14's fixes: the second label counted twice in the user's fraud
history, and a resent order twice in the user's, card's and terminal's windows."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Order, OrderItem, OrderLabel
from shopstream.featurestore import feature_store
from tests.integration.conftest import quiet, wait_until


def features(store, view: str, key: str, entity: str, names: list[str]) -> dict:
    """The entity's features; the views read again from the registry if the store's copy
    predates them (the worker registers them at its first write; CI once read the
    registry before that and failed with ``FeatureViewNotFoundException``)."""
    from feast.errors import FeatureViewNotFoundException

    try:
        rows = store.get_online_features(features=[f"{view}:{n}" for n in names],
                                         entity_rows=[{key: entity}]).to_dict()
    except FeatureViewNotFoundException:
        store.refresh_registry()
        return dict.fromkeys(names)
    return {n: rows[n][0] for n in names}


def duplicates(port: int) -> dict[str, float]:
    return {name: sum(s.value for s in workers.samples(port, f"shopstream_duplicate_{name}_total"))
            for name in ("labels", "orders")}


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
                                ["order_amount_count_30d"])["order_amount_count_30d"] == 1,
               what="the order to count")

    label = OrderLabel(order_id=f"{p}-o1", is_fraud=True, ts=now - 60)
    with ShopProducer(settings) as shop:
        shop.send(label)
        shop.send(label)
        shop.send(label.model_copy(update={"is_fraud": False}))
    wait_until(lambda: duplicates(settings.web_port)["labels"] == 2, what="both label copies to be seen")
    wait_until(lambda: features(store, "user_risk", "user_id", f"{p}-u", ["fraud_count_7d"])
               == {"fraud_count_7d": 1}, what="the label to count once")
    quiet(settings)  # every copy processed: nothing more can change the features
    assert features(store, "user_risk", "user_id", f"{p}-u", ["fraud_count_7d", "fraud_risk_7d"]) \
        == {"fraud_count_7d": 1, "fraud_risk_7d": 1.0}


def test_copies_of_an_order_count_once(worker):
    settings = worker
    store = feature_store(settings)
    p = settings.app_id
    now = time.time()
    order = Order(order_id=f"{p}-o2", user_id=f"{p}-u2", amount=30.0, payment_fingerprint=f"{p}-card2",
                  items=[OrderItem(item_id=f"{p}-i2", price=30.0)], terminal_id=f"{p}-t2", ts=now - 600)
    later = order.model_copy(update={"order_id": f"{p}-o3", "ts": datetime.fromtimestamp(now - 300, UTC)})
    with ShopProducer(settings) as shop:
        shop.send(order)
        for key in (b"a", b"b", b"c"):  # resends, keyed differently: other partitions, too
            shop.send_raw(settings.topics.orders, order.model_dump_json().encode(), key=key)
        shop.send(later)
    wait_until(lambda: duplicates(settings.web_port)["orders"] == 3, what="the three copies to be seen")
    wait_until(lambda: features(store, "user_orders", "user_id", f"{p}-u2", ["order_amount_count_30d"])
               == {"order_amount_count_30d": 2}, what="both orders to count")
    quiet(settings)  # every copy processed: nothing more can change the features
    assert features(store, "user_orders", "user_id", f"{p}-u2",
                    ["order_amount_count_30d", "order_amount_sum_1d"]) \
        == {"order_amount_count_30d": 2, "order_amount_sum_1d": 60.0}
    assert features(store, "instrument_velocity", "instrument_id", f"{p}-card2",
                    ["orders_count_1h"]) == {"orders_count_1h": 2}
