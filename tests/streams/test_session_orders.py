"""What orders bought travels to their sessions' recommendations packed: one record per
micro-batch and partition of the session-orders topic (``streams.recs.forward_bought``),
each entry on the partition of its session, and a record with two orders of one session
applies both (``decode_bought``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

from shopstream.events import Order, OrderItem
from streams import recs
from streams.app import owner_partition, settings, signer


def order(n: int, session: str | None) -> SimpleNamespace:
    event = Order(order_id=f"o{n}", user_id=f"u{n}", session_id=session, items=[OrderItem(item_id=f"i{n}", price=1)],
                  amount=1, payment_fingerprint="card", ts=datetime(2026, 12, 7, 12, 0, n % 60, tzinfo=UTC))
    return SimpleNamespace(value=event.to_bytes(), key=f"u{n}".encode(), topic=settings.topics.orders,
                           partition=0, offset=n)


def test_a_batch_of_orders_sends_one_record_per_partition_of_their_sessions(monkeypatch):
    sent = []

    def send(topic, value, key=None, partition=None):
        sent.append(SimpleNamespace(value=value, key=key, partition=partition, topic=recs.BOUGHT, offset=len(sent)))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(recs, "send", send)
    sessions = [f"s{n % 7}" for n in range(40)]
    asyncio.run(recs.forward_bought([order(n, session) for n, session in enumerate(sessions)] + [order(99, None)]))
    partitions = {owner_partition(s.encode(), settings.topics.partitions) for s in sessions}
    assert sorted(record.partition for record in sent) == sorted(partitions)
    received = {}
    for record in sent:
        for session, (items, ts) in recs.decode_bought(record).items():
            assert owner_partition(session.encode(), settings.topics.partitions) == record.partition
            received[session] = (items, ts)
    assert received == {f"s{k}": ([f"i{n}" for n in range(40) if n % 7 == k],
                                  datetime(2026, 12, 7, 12, 0, max(n for n in range(40) if n % 7 == k),
                                           tzinfo=UTC).timestamp()) for k in range(7)}


def test_a_record_of_the_former_layout_is_still_read():
    value = b'{"session_id": "s1", "items": ["a", "b"], "ts": 5.0}'
    record = SimpleNamespace(key=b"s1", value=signer.sign(b"s1", value), topic=recs.BOUGHT, partition=0, offset=0)
    assert recs.decode_bought(record) == {"s1": (["a", "b"], 5.0)}
