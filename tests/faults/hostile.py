"""Hostile records for every input topic: each one broke a worker's accounting once
(issue 14) or is a classic of its kind. Pure: it makes bytes, it sends nothing."""

from __future__ import annotations

import json
from datetime import datetime

from shopstream.events import CartEvent, Click, Order, OrderItem, OrderLabel


def valid(kind: str, now: datetime, n: int) -> dict:
    """A valid event of ``kind`` as JSON-ready data."""
    match kind:
        case "click":
            event = Click(user_id=f"hu{n}", session_id=f"hs{n}", item_id="hi", ts=now)
        case "cart":
            event = CartEvent(user_id=f"hu{n}", session_id=f"hs{n}", action="add", item_id="hi",
                              price=3.5, ts=now)
        case "order":
            event = Order(order_id=f"ho{n}", user_id=f"hu{n}", items=[OrderItem(item_id="hi", price=3.5)],
                          amount=3.5, payment_fingerprint=f"hp{n}", ts=now)
        case _:
            event = OrderLabel(order_id=f"ho{n}", is_fraud=False, ts=now)
    return event.model_dump(mode="json")


def _nest(depth: int) -> dict:
    tree: dict = {"leaf": 1}
    for _ in range(depth):
        tree = {"a": tree}
    return tree


def hostile(kind: str, now: datetime, *, huge: bool = False) -> dict[str, bytes]:
    """Named hostile values for the ``kind`` topic; ``huge`` adds a 12 MiB record, whose
    dead letter cannot hold it whole."""
    base = valid(kind, now, 0)

    def with_(**changes) -> bytes:
        return json.dumps({**base, **changes}).encode()

    records = {
        "overflow_ts": with_(ts="0001-01-01T00:00:00+01:00"),
        "past_ts": with_(ts="1990-01-01T00:00:00Z"),
        "deep_json": b'{"a": ' * 1500 + b"1" + b"}" * 1500,
        "deep_unknown_field": with_(extra=_nest(20)),
        "lone_surrogate": json.dumps({**base, "note": "\ud800"}).encode(),
        "long_unknown_string": with_(note="x" * 100_000),
        "nan": with_(ts=float("nan")),
        "not_an_object": b"[1, 2, 3]",
        "null": b"null",
        "empty": b"",
        "binary": b"\xff\xfe\x00garbage",
    }
    if kind == "cart":
        records["huge_price"] = with_(price=1.4e154)
    if kind == "order":
        records["huge_amount"] = with_(amount=1.4e154)
        records["too_many_items"] = with_(items=[{"item_id": "x", "price": 1.0}] * 1001)
    if kind == "order_label":
        records["string_bool"] = with_(is_fraud="yes")
        records["int_bool"] = with_(is_fraud=1)
    if huge:
        records["huge_record"] = with_(note="x" * (12 * 1024 * 1024))
    return records


