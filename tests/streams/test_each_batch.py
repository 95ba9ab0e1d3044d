"""The loop of every agent (``streams.agents.each_batch``) lets go of a batch once it is
handled: at a rebalance Faust waits until every message it handed out is acknowledged or
garbage, so a finished batch still held by the loop while it waits for the next one held
the rebalance, and with it every commit of the worker, for ever. Faust's own stream loop
holds its last message the same way, so the wait is bounded too (``streams.app.App``)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from types import SimpleNamespace

from streams import agents


class Message:  # weak-referenceable, as Faust's messages are (its books are a WeakSet)
    pass


class Stream:
    """A stream whose ``take_events`` yields one batch, then waits for ``more``."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size, self.more, self.refs = batch_size, asyncio.Event(), []

    async def take_events(self, rows: int, within: float):
        batch = [SimpleNamespace(message=Message()) for _ in range(self.batch_size)]
        self.refs = [weakref.ref(record.message) for record in batch]
        yield batch
        del batch  # as Faust's take_events clears its buffer once the loop body returns
        await self.more.wait()


class Admit:
    """``InOrder`` that admits every message."""

    def __init__(self, what: str = "", log_lacks=None) -> None:
        pass

    async def admit(self, consumer, messages: list) -> list:
        return messages


def test_a_handled_batch_is_not_held_while_the_next_is_awaited(monkeypatch):
    monkeypatch.setattr(agents, "InOrder", Admit)
    monkeypatch.setattr(agents, "IN_ORDER", [])
    monkeypatch.setattr(agents, "app", SimpleNamespace(consumer=None))
    handled: list[int] = []

    async def handle(messages: list) -> None:
        handled.append(len(messages))

    async def main() -> list:
        stream = Stream(batch_size=3)
        loop = asyncio.create_task(agents.each_batch(stream, 10, 100.0, handle, "a test agent"))
        while not handled:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the loop is back in take_events, waiting
        gc.collect()
        alive = [ref for ref in stream.refs if ref() is not None]
        loop.cancel()
        return alive

    alive = asyncio.run(main())
    assert handled == [3]
    assert not alive, f"{len(alive)} messages of a handled batch still held while the next was awaited"


class NeverEmpty:
    """A consumer whose handed-out messages are never acknowledged (one held alive by a
    stream's stale local, as Faust's ``Stream._c_aiter`` holds its last message)."""

    def __init__(self) -> None:
        self._unacked_messages = [SimpleNamespace(tp=SimpleNamespace(topic="shop.clicks", partition=1),
                                                  offset=1527)]
        self.commits = 0

    async def wait_empty(self) -> None:
        await asyncio.Event().wait()

    async def commit(self) -> None:
        self.commits += 1


def test_a_rebalance_waits_for_unacknowledged_messages_only_so_long(monkeypatch, caplog):
    from streams import app as app_module

    monkeypatch.setattr(app_module, "REBALANCE_WAIT_S", 0.05)
    consumer = NeverEmpty()
    fake = SimpleNamespace(conf=SimpleNamespace(stream_wait_empty=True))
    asyncio.run(asyncio.wait_for(app_module.App._consumer_wait_empty(fake, consumer, None), 5))
    assert consumer.commits == 1
    assert "shop.clicks:1@1527" in caplog.text
