"""Checks on entity updates: everything ``route`` and ``order_updates`` produce passes;
forged and malformed updates do not."""

from __future__ import annotations

import pytest

from scorers.routing import Update, order_updates, route, scored_update
from scorers.states import new_state
from scorers.update_checks import BadUpdate, check_update
from shopstream.events import CartEvent, Click, Order, OrderItem, OrderLabel

TOPICS = {"shop.clicks", "shop.carts", "shop.orders", "shop.order-labels", "app-entity-updates"}
TS = 1.78e9
EVENTS = [
    Click(user_id="u", session_id="s", item_id="i", device_id="d", ip="192.0.2.1", ts=TS),
    Click(user_id="u", session_id="s", item_id="i", ts=TS),
    CartEvent(user_id="u", session_id="s", action="remove", item_id="i", price=2, ts=TS),
    Order(order_id="o", user_id="u", session_id="s", items=[OrderItem(item_id="i", price=3)],
          amount=3, payment_fingerprint="p", device_id="d", ip="::1", terminal_id="t", ts=TS),
    Order(order_id="o", user_id="u", items=[OrderItem(item_id="i", price=3)], amount=3,
          payment_fingerprint="p", ts=TS),
    OrderLabel(order_id="o", is_fraud=True, ts=TS),
]


@pytest.mark.parametrize("event", EVENTS)
def test_every_update_a_worker_routes_passes(event):
    topic = {Click: "shop.clicks", CartEvent: "shop.carts", Order: "shop.orders",
             OrderLabel: "shop.order-labels"}[type(event)]
    for update in route(event, f"{topic}:3", 41):
        assert check_update(update, TOPICS) == (topic, 3, 41)


def test_what_order_states_cause_and_scored_updates_pass():
    order = new_state("order")
    (place,) = route(EVENTS[3], "shop.orders:2", 9)
    label = Update("order", "o", "label", TS, "shop.order-labels:0", (5, 0), (True,))
    placed = order_updates(order, place, "app-entity-updates:1", 7, 0)[1]
    labelled = order_updates(order, label, "app-entity-updates:1", 8, 1)[1]
    assert len(placed) == 7 and len(labelled) == 3
    for update in [*placed, *labelled]:
        assert check_update(update, TOPICS) == ("app-entity-updates", 1, update.seq[0])
    check_update(scored_update("o", True, TS, "shop.orders:2", 9), TOPICS)


CAUSED = Update("user", "u", "order", TS, "app-entity-updates:1/shop.orders:2", (7, 0, 0), (3.0, None, None))


GOOD = Update("user", "u1", "click", TS, "shop.clicks:0", (17, 0), ("d1", None))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"kind": "planet"}, "no entity kind"),
        ({"op": "label", "data": ("yes",)}, "does not fit"),
        ({"op": "order", "data": (1e154, None, None)}, "does not fit"),
        ({"data": ("d1",)}, "does not fit"),
        ({"data": (["d1"], None)}, "does not fit"),
        ({"entity_id": ""}, "entity id"),
        ({"entity_id": "x" * 300}, "entity id"),
        ({"ts": float("inf")}, "event time"),
        ({"ts": float("nan")}, "event time"),
        ({"ts": "soon"}, "event time"),
        ({"seq": (-1, 0)}, "seq"),
        ({"seq": (1, 10**9)}, "seq"),
        ({"seq": (1,)}, "seq"),
        ({"seq": (1.5, 0)}, "seq"),
        ({"source": "elsewhere:0"}, "source"),
        ({"source": "shop.clicks"}, "source"),
        ({"source": "shop.clicks:x"}, "source"),
        ({"source": "shop.clicks:00"}, "source"),  # the same partition under a second name
        ({"source": "shop.clicks:+1"}, "source"),
        ({"source": "shop.clicks:\u0661"}, "source"),  # a digit, but not an ASCII one
        ({"source": f"shop.clicks:{2 ** 31}"}, "source"),  # no partition id Kafka can have
        ({"seq": (2 ** 63, 0)}, "seq"),  # no offset Kafka can have
    ],
)
def test_forged_or_malformed_updates_are_refused(changes, why):
    with pytest.raises(BadUpdate, match=why):
        check_update(GOOD._replace(**changes), TOPICS)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"seq": (7, 0)}, "seq"),  # caused updates carry (offset, index, j)
        ({"seq": (7, 0, 10**6)}, "seq"),
        ({"seq": (7, 10**7, 0)}, "seq"),
        ({"source": "app-entity-updates:1/elsewhere:0"}, "source"),
        ({"source": "app-entity-updates:1/app-entity-updates:2"}, "source"),
        ({"source": "shop.orders:1/shop.orders:2"}, "source"),
        ({"source": "app-entity-updates:1/"}, "source"),
        ({"source": "app-entity-updates:01/shop.orders:2"}, "source"),
        ({"source": f"app-entity-updates:1/shop.orders:{2 ** 40}"}, "source"),
    ],
)
def test_forged_caused_updates_are_refused(changes, why):
    assert check_update(CAUSED, TOPICS) == ("app-entity-updates", 1, 7)
    with pytest.raises(BadUpdate, match=why):
        check_update(CAUSED._replace(**changes), TOPICS)


def test_a_plain_update_cannot_pose_as_a_caused_one():
    with pytest.raises(BadUpdate, match="seq"):
        check_update(GOOD._replace(seq=(17, 0, 0)), TOPICS)


def test_a_huge_seq_passes_the_shape_check_and_names_its_offset_for_the_end_offset_check():
    # 10**18 is a well-formed offset; only the source's end offset (checked by the
    # feature agent against the broker) shows that no record has it.
    assert check_update(GOOD._replace(seq=(10**18, 0)), TOPICS) == ("shop.clicks", 0, 10**18)
