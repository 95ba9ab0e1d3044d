"""A small known log through a real worker: exact features online (Feast, Redis) and
offline (a point-in-time historical read), window boundaries and late events included."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shopstream.client import ShopProducer
from shopstream.events import Click, Order, OrderItem, OrderLabel
from shopstream.featurestore import feature_store
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def online(store, view, entity_key, entity, names):
    refs = [f"{view}:{name}" for name in names]
    return store.get_online_features(features=refs, entity_rows=[{entity_key: entity}]).to_dict()


def wait_online(store, view, key, entity, name, value, timeout=60):
    wait_until(lambda: online(store, view, key, entity, [name])[name][0] == value, timeout,
               what=f"{view}:{name} of {entity} to become {value}")


def test_features_online_and_point_in_time_offline(worker):
    settings = worker
    store = feature_store(settings)
    p = settings.app_id  # entity ids unique to this test
    user, session, terminal, card = f"{p}-u", f"{p}-s", f"{p}-t", f"{p}-card"
    t0 = (int(time.time()) // 3600 - 3) * 3600  # three whole hours ago

    def click(offset, item):
        return Click(user_id=user, session_id=session, item_id=f"{p}-{item}", device_id=f"{p}-d1",
                     ts=t0 + offset)

    def order(offset, order_id, amount, device):
        return Order(order_id=f"{p}-{order_id}", user_id=user, session_id=session,
                     items=[OrderItem(item_id=f"{p}-a", price=amount, qty=1)], amount=amount,
                     payment_fingerprint=card, device_id=f"{p}-{device}", ip="198.51.100.7",
                     terminal_id=terminal, ts=t0 + offset)

    producer = ShopProducer(settings)
    # Phase 1: clicks at 0 s, 30 s and 11 min.
    for offset, item in [(0, "a"), (30, "b"), (660, "c")]:
        producer.send(click(offset, item))
    producer.flush()
    wait_online(store, "user_activity", "user_id", user, "clicks_count_1h", 3)
    assert online(store, "user_activity", "user_id", user, ["clicks_count_10m"])["clicks_count_10m"] == [1]

    # Phase 2: two orders, from two devices.
    producer.send(order(720, "o1", 100.0, "d1"))
    producer.send(order(780, "o2", 50.0, "d2"))
    producer.flush()
    wait_online(store, "user_orders", "user_id", user, "order_amount_count_30d", 2)
    got = online(store, "user_orders", "user_id", user,
                 ["order_amount_sum_1d", "order_amount_mean_1d", "order_amount_std_1d",
                  "seconds_since_last_order"])
    assert got["order_amount_sum_1d"] == [150.0] and got["order_amount_mean_1d"] == [75.0]
    assert got["order_amount_std_1d"] == [25.0] and got["seconds_since_last_order"] == [60.0]
    wait_online(store, "user_activity", "user_id", user, "orders_count_10m", 2)
    got = online(store, "user_activity", "user_id", user,
                 ["devices_distinct_24h", "ips_distinct_24h", "account_age_days"])
    assert got["devices_distinct_24h"] == [2] and got["ips_distinct_24h"] == [1]
    assert got["account_age_days"] == [pytest.approx(780 / 86_400)]
    wait_online(store, "instrument_velocity", "instrument_id", card, "orders_count_10m", 2)

    # Phase 3: two clicks late against the newest click (660 s): 1 minute (counted) and
    # 6 minutes (refused: the lateness is 5 minutes), and a label for the second order.
    # The label waits for the clicks: it moves the user's watermark to 900 s, and a click
    # read after it (the topics are read concurrently) would be stamped there instead.
    producer.send(click(600, "d"))
    producer.send(click(300, "e"))
    producer.flush()
    wait_online(store, "user_activity", "user_id", user, "clicks_count_1h", 4)
    producer.send(OrderLabel(order_id=f"{p}-o2", is_fraud=True, ts=t0 + 900))
    producer.flush()
    assert online(store, "user_activity", "user_id", user, ["clicks_count_10m"])["clicks_count_10m"] == [2]
    wait_online(store, "terminal_risk", "terminal_id", terminal, "fraud_risk_1d", 1.0)
    assert online(store, "terminal_risk", "terminal_id", terminal, ["tx_count_1d"])["tx_count_1d"] == [2]
    session_state = online(store, "session_state", "session_id", session, ["last_items", "clicks_count"])
    assert session_state["clicks_count"] == [4]
    assert session_state["last_items"] == [[f"{p}-{x}" for x in "abcd"]]
    late = {sample.labels["entity"]: sample.value
            for family in text_string_to_metric_families(
                httpx.get(f"http://127.0.0.1:{settings.web_port}/metrics").text)
            for sample in family.samples if sample.name == "shopstream_late_updates_total"}
    assert late == {"user": 1.0, "session": 1.0}  # the click at 300 s, for both

    # Offline, point in time: each row is visible from its event time on, never before.
    # The late click is stamped with the watermark (780 s), so it counts from there on.
    def historical(features):
        entities = pd.DataFrame({
            "user_id": [user] * 5,
            "event_timestamp": [datetime.fromtimestamp(t0 + s, UTC) for s in (20, 700, 750, 790, 1000)],
        })
        frame = store.get_historical_features(entity_df=entities, features=features).to_df()
        return frame.sort_values("event_timestamp")

    deadline = time.monotonic() + 30
    while True:
        activity = historical(["user_activity:clicks_count_1h", "user_activity:clicks_count_10m"])
        if activity["clicks_count_1h"].tolist()[-1] == 4 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert activity["clicks_count_1h"].tolist() == [1, 3, 3, 4, 4]
    assert activity["clicks_count_10m"].tolist() == [1, 1, 1, 2, 2]
    orders = historical(["user_orders:order_amount_count_30d", "user_orders:order_amount_sum_1d"])
    # Every entity row comes back; those before the user's first order have no values.
    seconds = [int(ts.timestamp()) - t0 for ts in orders["event_timestamp"]]
    assert seconds == [20, 700, 750, 790, 1000]
    assert orders["order_amount_count_30d"].isna().tolist() == [True, True, False, False, False]
    assert orders["order_amount_count_30d"].tolist()[2:] == [1, 2, 2]
    assert orders["order_amount_sum_1d"].tolist()[2:] == [100.0, 150.0, 150.0]
