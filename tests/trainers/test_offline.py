"""The training set is point-in-time correct: a feature value written after an order is
never part of that order's row, and labels that had not arrived are not used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scorers.features import VIEWS, apply, new_state, route
from shopstream.events import Order, OrderItem, OrderLabel
from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import OfflineLog, events_table
from shopstream.online import feature_table
from shopstream.settings import Settings
from trainers.offline import historical_features, labelled_orders

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path / "home")
    feature_store(settings, apply=True)  # registers the views over this home's offline log
    return settings


def order(order_id: str, minutes: float, amount: float) -> Order:
    return Order(order_id=order_id, user_id="u1", amount=amount, payment_fingerprint="card-1",
                 terminal_id="t1", items=[OrderItem(item_id="i1", price=amount)],
                 ts=T0 + timedelta(minutes=minutes))


def log_events(settings, table, events):
    OfflineLog(offline_root(settings)).append(
        table, events_table(events, [("topic", 0, i) for i, _ in enumerate(events)]))


def log_features(settings, events):
    """Feature rows of ``events``, as a worker would append them."""
    states, rows = {}, {}
    for offset, event in enumerate(events):
        for update in route(event, "shop.orders:0", offset):
            state = states.setdefault((update.kind, update.entity_id), new_state(update.kind))
            for view, row in apply(state, update).items():
                rows.setdefault(view, []).append(row)
    for view, view_rows in rows.items():
        OfflineLog(offline_root(settings)).append(view, feature_table(view, view_rows))


def test_a_value_planted_after_an_order_is_not_in_its_row(settings):
    first, second = order("o1", 0, 40.0), order("o2", 60, 50.0)
    log_events(settings, "raw_order", [first, second])
    log_features(settings, [first, second])
    # The plant: a user_orders row one second after o2 with an absurd amount sum.
    planted = ("u1", (second.ts + timedelta(seconds=1)).timestamp(),
               *[123_456.0 if "sum" in f else 0 for f in VIEWS["user_orders"].features])
    OfflineLog(offline_root(settings)).append("user_orders", feature_table("user_orders", [planted]))
    frame = labelled_orders(settings, T0 - timedelta(days=1), T0 + timedelta(days=1),
                            labels_as_of=T0 + timedelta(days=30))
    assert frame.empty  # no labels at all yet
    log_events(settings, "raw_order_label", [
        OrderLabel(order_id="o1", is_fraud=False, ts=T0 + timedelta(days=7)),
        OrderLabel(order_id="o2", is_fraud=True, ts=T0 + timedelta(days=9))])
    frame = labelled_orders(settings, T0 - timedelta(days=1), T0 + timedelta(days=1),
                            labels_as_of=T0 + timedelta(days=30))
    rows = historical_features(settings, frame)
    by_order = dict(zip(frame["order_id"], rows, strict=True))
    # o1 is the user's first order: nothing before it, so no user_orders features at all.
    assert by_order["o1"]["user_orders__order_amount_sum_30d"] is None
    # o2 sees o1 (40.0), not itself and not the plant one second after it.
    assert by_order["o2"]["user_orders__order_amount_sum_30d"] == pytest.approx(40.0)
    assert by_order["o2"]["user_orders__order_amount_count_30d"] == 1
    assert by_order["o2"]["terminal_risk__tx_count_1d"] == 1


def test_labels_that_arrive_after_the_cut_are_not_used(settings):
    first, second = order("o1", 0, 40.0), order("o2", 60, 50.0)
    log_events(settings, "raw_order", [first, second])
    log_events(settings, "raw_order_label", [
        OrderLabel(order_id="o1", is_fraud=False, ts=T0 + timedelta(days=7)),
        OrderLabel(order_id="o2", is_fraud=True, ts=T0 + timedelta(days=9))])
    frame = labelled_orders(settings, T0 - timedelta(days=1), T0 + timedelta(days=1),
                            labels_as_of=T0 + timedelta(days=8))
    assert list(frame["order_id"]) == ["o1"]
    assert list(frame["label"]) == [0]
