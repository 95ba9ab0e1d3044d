"""A short, seeded burst of shop events, with a share of deliberately broken records.

It feeds ``shopstream demo`` and the integration tests: valid clicks, cart changes,
orders and labels, plus the kinds of bad input a real shop sends by mistake, so that
the dead-letter path is exercised. Pure: it makes records, it sends nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shopstream.events import CartEvent, Click, Event, Order, OrderItem, OrderLabel

BAD_KINDS = ("invalid_json", "schema", "wrong_type", "negative_amount", "too_large", "future_ts")
SMALL_BAD_KINDS = tuple(kind for kind in BAD_KINDS if kind != "too_large")


@dataclass(frozen=True)
class Record:
    """One record to send: an event, or raw bytes for an input ``kind`` when it is broken."""

    kind: str  # click | cart | order | order_label
    event: Event | None = None
    raw: bytes | None = None
    bad: str | None = None  # which kind of breakage, for bad records


def bad_record(kind: str, now: datetime, rng: random.Random) -> Record:
    """One broken order of the given breakage ``kind``."""
    order = _order(now, rng, n=rng.randrange(10**6)).model_dump(mode="json")
    match kind:
        case "invalid_json":
            raw = b'{"order_id": "o-1", "amount": 12.5,'
        case "schema":
            raw = json.dumps({k: v for k, v in order.items() if k != "user_id"}).encode()
        case "wrong_type":
            raw = json.dumps({**order, "items": "three socks"}).encode()
        case "negative_amount":
            raw = json.dumps({**order, "amount": -40.0}).encode()
        case "too_large":
            raw = json.dumps({**order, "note": "x" * (5 * 1024 * 1024)}).encode()
        case "future_ts":
            raw = json.dumps({**order, "ts": (now + timedelta(days=400)).isoformat()}).encode()
        case _:
            raise ValueError(f"unknown breakage {kind!r}; choose from {BAD_KINDS}")
    return Record("order", raw=raw, bad=kind)


def _order(now: datetime, rng: random.Random, n: int, user: int | None = None) -> Order:
    items = [
        OrderItem(item_id=f"item-{rng.randrange(500)}", price=round(rng.uniform(3, 120), 2),
                  qty=rng.randint(1, 3))
        for _ in range(rng.randint(1, 4))
    ]
    user = rng.randrange(200) if user is None else user
    return Order(
        order_id=f"order-{n}", user_id=f"user-{user}", session_id=f"session-{user}-{n % 5}",
        items=items, amount=round(sum(i.price * i.qty for i in items), 2), currency="EUR",
        payment_fingerprint=f"card-{user}", device_id=f"device-{user}",
        ip=f"10.0.{user % 256}.{n % 256}", country="DE", ts=now,
    )


def burst(n: int, *, seed: int = 7, bad_share: float = 0.02, now: datetime | None = None,
          spread: timedelta = timedelta(minutes=10)) -> Iterator[Record]:
    """``n`` records: mostly clicks, some carts, orders and labels, ``bad_share`` broken.

    Broken records cycle through ``BAD_KINDS``, with a single 5 MB ``too_large`` record
    per burst, so that a long burst does not fill the disk.

    >>> records = list(burst(200, seed=1))
    >>> len(records), sum(r.bad is not None for r in records) > 0
    (200, True)
    """
    rng = random.Random(seed)
    end = now or datetime.now(UTC)
    bad = 0
    for i in range(n):
        ts = end - spread * (1 - i / max(n, 1))  # event time moves forward across the burst
        user = rng.randrange(200)
        session = f"session-{user}-{i // 50}"
        roll = rng.random()
        if roll < bad_share:
            kinds = BAD_KINDS if bad < len(BAD_KINDS) else SMALL_BAD_KINDS
            yield bad_record(kinds[bad % len(kinds)], end, rng)
            bad += 1
        elif roll < 0.80:
            yield Record("click", Click(user_id=f"user-{user}", session_id=session,
                                        item_id=f"item-{int(rng.paretovariate(1.2)) % 500}",
                                        page_type="product", device_id=f"device-{user}",
                                        ip=f"10.0.{user % 256}.1", ts=ts))
        elif roll < 0.92:
            yield Record("cart", CartEvent(user_id=f"user-{user}", session_id=session,
                                           action="add" if rng.random() < 0.8 else "remove",
                                           item_id=f"item-{rng.randrange(500)}", qty=1,
                                           price=round(rng.uniform(3, 120), 2), ts=ts))
        elif roll < 0.98:
            yield Record("order", _order(ts, rng, n=i, user=user))
        else:
            yield Record("order_label", OrderLabel(order_id=f"order-{rng.randrange(max(i, 1))}",
                                                   is_fraud=rng.random() < 0.1, ts=ts))
