"""Entity states: routing, feature values, idempotence and late events."""

from __future__ import annotations

import pytest

from scorers.routing import Update, grade, order_updates, route, route_all, scored_update
from scorers.states import NO_PREVIOUS_ORDER, apply, count, new_state, state_from_data
from scorers.views import ENTITY_VIEWS, VIEWS
from shopstream.events import CartEvent, Click, Order, OrderItem, OrderLabel

T0 = 1_700_000_400.0  # a whole hour, so windows start on round numbers


def click(ts, item="i1", session="s1", user="u1", device="d1", ip=None):
    return Click(user_id=user, session_id=session, item_id=item, device_id=device, ip=ip, ts=T0 + ts)


def order(ts, amount, order_id="o1", device="d1", ip="192.0.2.1", terminal="t1", user="u1"):
    return Order(order_id=order_id, user_id=user, session_id="s1",
                 items=[OrderItem(item_id="i1", price=amount, qty=1)], amount=amount,
                 payment_fingerprint="pf1", device_id=device, ip=ip, terminal_id=terminal,
                 ts=T0 + ts)


def run(events, kind, lateness=300.0):
    """Apply the events' updates for entities of ``kind``; return the state and rows."""
    state, rows = new_state(kind, lateness_s=lateness), []
    for update in route_all(events, "topic:0"):
        if update.kind == kind:
            rows.append(apply(state, update))
    return state, rows


def feature(row, view, name):
    return row[2 + VIEWS[view].features.index(name)]


def test_every_view_row_matches_its_columns():
    events = [click(0, ip="192.0.2.9"), order(60, 10.0),
              CartEvent(user_id="u1", session_id="s1", action="add", item_id="i2", price=1, ts=T0 + 90)]
    for kind in ENTITY_VIEWS:
        _, rows = run(events, kind)
        for changed in rows:
            for view, row in changed.items():
                assert len(row) == 2 + len(VIEWS[view].features), view


@pytest.mark.parametrize(
    ("clicks", "name", "value"),
    [
        ([0, 30, 660], "clicks_count_10m", 1),
        ([0, 30, 660], "clicks_count_1h", 3),
        ([0, 540, 599], "clicks_count_10m", 3),
        ([0, 3_600], "clicks_count_1h", 1),
        ([0, 3_600], "clicks_count_24h", 2),
        ([0, 60], "account_age_days", 60 / 86_400),
        ([0, 60], "devices_distinct_24h", 1),
    ],
)
def test_user_activity(clicks, name, value):
    _, rows = run([click(ts) for ts in clicks], "user")
    assert feature(rows[-1]["user_activity"], "user_activity", name) == pytest.approx(value)


def test_user_orders_and_time_since_last_order():
    _, rows = run([order(0, 100.0), order(600, 50.0, order_id="o2")], "user")
    first, second = rows[0]["user_orders"], rows[1]["user_orders"]
    assert feature(first, "user_orders", "seconds_since_last_order") == NO_PREVIOUS_ORDER
    assert feature(second, "user_orders", "seconds_since_last_order") == 600
    assert feature(second, "user_orders", "order_amount_count_30d") == 2
    assert feature(second, "user_orders", "order_amount_sum_7d") == 150
    assert feature(second, "user_orders", "order_amount_mean_30d") == 75
    assert feature(second, "user_orders", "order_amount_std_1d") == 25


def test_rows_are_stamped_with_the_watermark_not_the_late_event():
    state, rows = run([click(0), click(600), click(500)], "user")
    stamps = [row["user_activity"][1] for row in rows]
    assert stamps[:2] == [T0, T0 + 600]
    assert stamps[2] == pytest.approx(T0 + 600, abs=1e-5) and stamps[2] > stamps[1]  # no tie
    assert feature(rows[-1]["user_activity"], "user_activity", "clicks_count_10m") == 2


def test_too_late_updates_are_counted_and_ignored():
    state, rows = run([click(0), click(1000), click(600)], "user", lateness=300)
    assert rows[-1] == {} and state.late == 1
    assert count(state, "clicks", "1h") == 2


def test_redelivered_updates_have_no_effect():
    state = new_state("user")
    updates = [route(click(ts), "clicks:3", offset)[0] for offset, ts in enumerate([0, 10, 20])]
    for update in updates + updates[:2]:  # a crash redelivers the first two
        apply(state, update)
    assert count(state, "clicks", "10m") == 3
    other = route(click(30), "clicks:1", 0)[0]  # another partition has its own offsets
    assert apply(state, other) != {} and count(state, "clicks", "10m") == 4


def test_velocity_counts_orders_and_distinct_users():
    events = [order(0, 5, user="u1"), order(10, 5, user="u2", order_id="o2"),
              order(20, 5, user="u1", order_id="o3")]
    _, rows = run(events, "instrument")
    row = rows[-1]["instrument_velocity"]
    assert feature(row, "instrument_velocity", "orders_count_10m") == 3
    assert feature(row, "instrument_velocity", "users_distinct_24h") == 2


def test_terminal_risk_comes_only_from_labels_that_arrived():
    orders = {}
    terminal = new_state("terminal", lateness_s=86_400)
    for update in route_all([order(0, 5, order_id="o1"), order(60, 5, order_id="o2")], "orders:0", orders):
        if update.kind == "terminal":
            before = apply(terminal, update)["terminal_risk"]
    assert feature(before, "terminal_risk", "fraud_risk_1d") == 0.0  # no label yet
    assert feature(before, "terminal_risk", "tx_count_1d") == 2

    label = route(OrderLabel(order_id="o2", is_fraud=True, ts=T0 + 3_600), "labels:0", 0)[0]
    what, caused = order_updates(orders["o2"], label, "updates:0", 5, 0)
    updates = {u.kind: u for u in caused}
    assert what == "label" and sorted(updates) == ["instrument", "terminal", "user"]
    after = apply(terminal, updates["terminal"])["terminal_risk"]
    assert feature(after, "terminal_risk", "fraud_risk_1d") == 1.0
    assert after[1] == T0 + 3_600  # risk is known from the label's arrival on


@pytest.mark.parametrize("kind", ["user", "instrument"])
def test_labels_give_users_and_instruments_a_fraud_history(kind):
    orders = {}
    list(route_all([order(0, 5, order_id="o1"), order(60, 5, order_id="o2")], "orders:0", orders))
    entity = new_state(kind, lateness_s=86_400)
    rows = {}
    for offset, (order_id, fraud) in enumerate([("o1", False), ("o2", True)]):
        label = route(OrderLabel(order_id=order_id, is_fraud=fraud, ts=T0 + 86_400 * 2), "labels:0", offset)[0]
        _, caused = order_updates(orders[order_id], label, "updates:0", 10 + offset, 0)
        (update,) = [u for u in caused if u.kind == kind]
        rows = apply(entity, update)
    row = rows[f"{kind}_risk"]
    assert feature(row, f"{kind}_risk", "fraud_count_7d") == 1
    assert feature(row, f"{kind}_risk", "fraud_risk_30d") == 0.5
    assert apply(entity, update) == {}  # a redelivered label changes nothing


def test_label_for_an_unknown_order_causes_nothing():
    label = route(OrderLabel(order_id="nope", is_fraud=True, ts=T0), "labels:0", 0)[0]
    assert order_updates(new_state("order"), label, "updates:0", 1, 0) == ("pending_label", [])


def test_session_keeps_last_items_and_cart():
    events = [click(0, item="a"), click(10, item="b"),
              CartEvent(user_id="u1", session_id="s1", action="add", item_id="b", price=1, ts=T0 + 20),
              CartEvent(user_id="u1", session_id="s1", action="add", item_id="c", price=1, ts=T0 + 30),
              CartEvent(user_id="u1", session_id="s1", action="remove", item_id="b", price=1, ts=T0 + 40)]
    _, rows = run(events, "session")
    _, ts, clicks, start, length, items, cart = rows[-1]["session_state"]
    assert (clicks, start, length, items, cart) == (2, T0, 40, ["a", "b"], ["c"])
    _, rows = run(events + [order(50, 1.0)], "session")
    assert rows[-1]["session_state"][-1] == []  # the order emptied the cart


def test_an_order_reaches_every_entity_it_names_through_its_order_state():
    (place,) = route(order(0, 5.0), "orders:2", 41)
    assert (place.kind, place.op, place.source, place.seq) == ("order", "place", "orders:2", (41, 0))
    what, updates = order_updates(new_state("order"), place, "updates:1", 7, 3)
    assert what == "placed"
    assert {(u.kind, u.op) for u in updates} == {
        ("user", "order"), ("instrument", "order"), ("device", "order"),
        ("ip", "order"), ("terminal", "order"), ("session", "order"), ("item", "purchase")}
    assert all(isinstance(u, Update) and u.source == "updates:1/orders:2" and u.seq[:2] == (7, 3)
               for u in updates)
    assert len({u.seq for u in updates}) == len(updates)


def test_copies_of_an_order_count_once():
    """Seen failing before: a resend of an order counted twice in every window it names."""
    first, copy = order(0, 5.0), order(30, 5.0)  # the same order id, sent again
    state, rows = run([first, copy], "user")
    assert len(rows) == 1
    assert feature(rows[0]["user_orders"], "user_orders", "order_amount_count_30d") == 1
    for kind in ("instrument", "terminal", "item", "session"):
        assert len(run([first, copy], kind)[1]) == 1, kind
    orders = {}
    list(route_all([first, copy, copy], "orders:0", orders))
    assert orders["o1"].copies == 2


def test_caused_updates_are_idempotent_when_the_updates_partition_is_read_again():
    user = new_state("user")
    places = [route(order(60 * i, 5.0, order_id=f"o{i}"), "orders:0", i)[0] for i in range(3)]
    caused = [order_updates(new_state("order"), place, "updates:0", 100 + i, 0)[1]
              for i, place in enumerate(places)]
    for updates in caused:
        for update in updates:
            if update.kind == "user":
                apply(user, update)
    # A crash before the order states were saved: the updates partition is read again.
    again = [order_updates(new_state("order"), place, "updates:0", 100 + i, 0)[1]
             for i, place in enumerate(places)]
    assert again == caused
    assert all(apply(user, u) == {} for updates in again for u in updates if u.kind == "user")
    assert count(user, "orders", "1h") == 3


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
def test_session_cart_does_not_depend_on_which_topic_is_read_first(order):
    """A cart add before an order is part of it, whatever the arrival order."""
    def add(item, ts):
        return CartEvent(user_id="u1", session_id="s1", action="add", item_id=item, price=1, ts=ts)

    ordered = Order(order_id="o", user_id="u1", session_id="s1", amount=1, payment_fingerprint="pf",
                    items=[OrderItem(item_id="a", price=1)], ts=T0 + 10)
    events = [("carts:0", add("a", T0)), ("orders:0", ordered), ("carts:1", add("b", T0 + 20))]
    state = new_state("session")
    for i in order:
        source, event = events[i]
        for update in route_all([event], source):
            if update.kind == "session":
                apply(state, update)
    assert state.cart_items() == ["b"]


def test_a_state_saved_by_an_older_version_still_loads():
    state, _ = run([click(0), click(30)], "user")
    data = state.to_data()
    del data["source_watermarks"], data["stamped"]  # fields added later
    data["renamed_since"] = 1  # a field removed later
    restored = state_from_data("user", data)
    assert restored.source_watermarks == {} and restored.stamped == float("-inf")
    assert apply(restored, route(click(60), "topic:0", 9)[0])["user_activity"][2] == 3


@pytest.mark.parametrize("second", [True, False])  # a resend, or a changed verdict
def test_only_the_first_label_of_an_order_counts(second):
    orders = new_state("order")
    (place,) = route(order(0, 5, order_id="o1"), "orders:0", 0)
    order_updates(orders, place, "updates:0", 1, 0)
    first = route(OrderLabel(order_id="o1", is_fraud=True, ts=T0 + 100), "labels:0", 0)[0]
    what, caused = order_updates(orders, first, "updates:0", 3, 0)
    assert what == "label" and len(caused) == 3
    again = route(OrderLabel(order_id="o1", is_fraud=second, ts=T0 + 200), "labels:0", 1)[0]
    assert order_updates(orders, again, "updates:0", 4, 0) == ("duplicate_label", [])
    assert orders.label_count == 2


def test_a_label_before_its_order_waits_for_it():
    orders = new_state("order")
    label = route(OrderLabel(order_id="o1", is_fraud=True, ts=T0 + 100), "labels:0", 0)[0]
    assert order_updates(orders, label, "updates:0", 3, 0) == ("pending_label", [])
    (place,) = route(order(0, 5, order_id="o1"), "orders:0", 0)
    what, caused = order_updates(orders, place, "updates:0", 8, 2)
    released = [u for u in caused if u.op == "label"]
    assert what == "placed" and sorted(u.kind for u in released) == ["instrument", "terminal", "user"]
    # Released by the order's record, so their seqs follow the updates partition's order.
    assert {(u.ts, u.data, u.source, u.seq[:2]) for u in released} == {
        (T0 + 100, (True,), "updates:0/labels:0", (8, 2))}
    assert orders.pending is None


@pytest.mark.parametrize("kind", ["user", "item"])
def test_feature_values_do_not_depend_on_which_topic_was_read_first(kind):
    """A later cart read before an earlier click: the rows are stamped apart (no tie), but
    the features of the last row are those of reading them in order."""
    clicked = route(click(150), "clicks:0", 1)
    carted = route(CartEvent(user_id="u1", session_id="s1", action="add", item_id="i1", price=1,
                             ts=T0 + 200), "carts:0", 1)
    finals = []
    for first, second in [(clicked, carted), (carted, clicked)]:
        state = new_state(kind, lateness_s=300)
        rows = [apply(state, u) for u in first + second if u.kind == kind]
        finals.append(rows[-1][ENTITY_VIEWS[kind][0]][2:])
    assert finals[0] == finals[1]


@pytest.mark.parametrize("label_first", [False, True], ids=["score-then-label", "label-then-score"])
def test_a_decision_is_graded_once_whichever_of_score_and_label_comes_first(label_first):
    """The score reaches the order's state through the fraud agent and the label straight
    from its topic: after a restart with a backlog, or while the scorer builds its feature
    reader, the label comes first. Before, such a decision was never graded."""
    orders = new_state("order")
    (place,) = route(order(0, 5, order_id="o1"), "orders:0", 0)
    order_updates(orders, place, "updates:0", 1, 0)
    scored = scored_update("o1", True, T0 + 50, "orders:0", 0)
    label = route(OrderLabel(order_id="o1", is_fraud=False, ts=T0 + 100), "labels:0", 0)[0]
    graded = []
    for offset, update in enumerate([label, scored] if label_first else [scored, label], 2):
        what, _ = order_updates(orders, update, "updates:0", offset, 0)
        graded.append(grade(orders, what))
    assert [g for g in graded if g] == ["fp"]
    again = route(OrderLabel(order_id="o1", is_fraud=True, ts=T0 + 200), "labels:0", 1)[0]
    assert grade(orders, order_updates(orders, again, "updates:0", 9, 0)[0]) is None
