"""The training set is point-in-time correct: a feature value written after an order is
never part of that order's row, and labels that had not arrived are not used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scorers.routing import route_all
from scorers.states import apply, new_state
from scorers.views import VIEWS
from shopstream.events import Order, OrderItem, OrderLabel
from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import SERVED_FRAUD, OfflineLog, events_table, served_table
from shopstream.rows import feature_table
from shopstream.settings import Settings
from trainers.offline import features_as_served, historical_features, labelled_orders

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
    for update in route_all(events, "shop.orders:0"):
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


def test_the_later_of_two_rows_with_one_event_time_wins_even_in_one_batch(settings):
    # A late event corrects a row at the same event time; both land in one micro-batch.
    first, second = order("o1", 0, 40.0), order("o2", 60, 50.0)
    log_events(settings, "raw_order", [first, second])
    stamp = first.ts.timestamp() + 1
    features = VIEWS["user_orders"].features
    stale = ("u1", stamp, *[1.0 if "sum" in f else 0 for f in features])
    fixed = ("u1", stamp, *[2.0 if "sum" in f else 0 for f in features])
    OfflineLog(offline_root(settings)).append("user_orders", feature_table("user_orders", [stale, fixed]))
    log_events(settings, "raw_order_label", [OrderLabel(order_id="o2", is_fraud=False,
                                                        ts=T0 + timedelta(days=1))])
    frame = labelled_orders(settings, T0 - timedelta(days=1), T0 + timedelta(days=1),
                            labels_as_of=T0 + timedelta(days=2))
    [row] = historical_features(settings, frame)
    assert row["user_orders__order_amount_sum_30d"] == 2.0


def test_every_order_gets_the_row_a_brute_force_as_of_join_finds(settings):
    # Four users and two cards, thirty orders: each order's row must be, view by view,
    # the newest row of its entity strictly before it, or nothing if there is none.
    events = [Order(order_id=f"o{i}", user_id=f"u{i % 4}", amount=10.0 + i,
                    payment_fingerprint=f"card-{i % 2}", terminal_id=f"t{i % 3}",
                    items=[OrderItem(item_id="i1", price=10.0 + i)],
                    ts=T0 + timedelta(minutes=7 * i)) for i in range(30)]
    log_events(settings, "raw_order", events)
    log_features(settings, events)
    log_events(settings, "raw_order_label", [OrderLabel(order_id=e.order_id, is_fraud=i % 5 == 0,
                                                        ts=T0 + timedelta(days=1))
                                             for i, e in enumerate(events)])
    frame = labelled_orders(settings, T0, T0 + timedelta(days=1), labels_as_of=T0 + timedelta(days=2))
    rows = historical_features(settings, frame)
    assert len(rows) == len(events)
    log = OfflineLog(offline_root(settings))
    for view, key, column in [("user_orders", "user_id", "user_id"),
                              ("instrument_velocity", "instrument_id", "payment_fingerprint"),
                              ("terminal_risk", "terminal_id", "terminal_id")]:
        table = log.read(view).to_pandas()
        feature = VIEWS[view].features[0]
        for (_, placed), row in zip(frame.iterrows(), rows, strict=True):
            before = table[(table[key] == placed[column]) & (table.event_timestamp < placed.event_timestamp)]
            expected = before.sort_values(["event_timestamp", "created"])[feature].iloc[-1] if len(before) else None
            assert row[f"{view}__{feature}"] == expected, (view, placed.order_id)


def test_an_order_a_worker_scored_trains_on_the_row_it_was_served(settings):
    # o1 was scored while the pipeline lagged: its served row says the card had no orders
    # yet in 10 minutes, whatever the log's rows say; o2 was never scored (the worker was
    # down): it gets the point-in-time row. A redelivered o1, scored again, does not count.
    first, second = order("o1", 0, 40.0), order("o2", 60, 50.0)
    log_events(settings, "raw_order", [first, second])
    log_features(settings, [first, second])
    served = {"instrument_velocity__orders_count_10m": 0, "user_orders__order_amount_sum_30d": None}
    log = OfflineLog(offline_root(settings))
    log.append(SERVED_FRAUD, served_table(["o1"], [first.ts], [served], "3", T0))
    log.append(SERVED_FRAUD, served_table(["o1"], [first.ts], [{"instrument_velocity__orders_count_10m": 9}],
                                          "3", T0 + timedelta(seconds=5)))
    log_events(settings, "raw_order_label", [
        OrderLabel(order_id="o1", is_fraud=False, ts=T0 + timedelta(days=1)),
        OrderLabel(order_id="o2", is_fraud=True, ts=T0 + timedelta(days=1))])
    frame = labelled_orders(settings, T0 - timedelta(days=1), T0 + timedelta(days=1),
                            labels_as_of=T0 + timedelta(days=2))
    rows, was_served = features_as_served(settings, frame)
    by_order = dict(zip(frame["order_id"], rows, strict=True))
    assert dict(zip(frame["order_id"], was_served, strict=True)) == {"o1": True, "o2": False}
    assert by_order["o1"] == served
    assert by_order["o2"] == historical_features(settings, frame[frame.order_id == "o2"])[0]
    assert by_order["o2"]["user_orders__order_amount_sum_30d"] == pytest.approx(40.0)
