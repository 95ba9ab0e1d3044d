"""The loop of every agent (``streams.agents.each_batch``) lets go of a batch once it is
handled: at a rebalance Faust waits until every message it handed out is acknowledged or
garbage, so a finished batch still held by the loop while it waits for the next one held
the rebalance, and with it every commit of the worker, for ever. Faust's own stream loop
holds its last message the same way, so the wait is bounded too
(``streams.commits.Consumer.wait_empty``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from types import SimpleNamespace

from faust.transport.consumer import Consumer as FaustConsumer

from streams import agents, commits


class Message:  # weak-referenceable, as Faust's messages are (its books are a WeakSet)
    """A message that counts the references its batch holds (``incref``, ``ack``)."""

    def __init__(self) -> None:
        self.refcount = 0

    def incref(self) -> None:
        self.refcount += 1

    def ack(self, consumer) -> None:
        self.refcount -= 1


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


class Held:  # a message as Faust's books see it, never acknowledged
    acked = False

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.tp, self.offset = SimpleNamespace(topic=topic, partition=partition), offset


class NeverEmpty:
    """A consumer whose handed-out messages are never acknowledged (one held alive by a
    stream's stale local, as Faust's ``Stream._c_aiter`` holds its last message). Its
    waits are Faust's own, so a wait that swallows a cancel shows here."""

    _clean_unacked_messages = FaustConsumer._clean_unacked_messages
    _wait_for_ack = FaustConsumer._wait_for_ack
    wait_empty = commits.Consumer.wait_empty

    def __init__(self) -> None:
        self.held = Held("shop.clicks", 1, 1527)
        self._unacked_messages = weakref.WeakSet([self.held])
        self._waiting_for_ack = None
        self.should_stop, self.commits, self.log = False, 0, logging.getLogger("faust-consumer")
        self.app = SimpleNamespace(agents=SimpleNamespace(human_tracebacks=lambda: ""))
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)

    @property
    def loop(self):
        return asyncio.get_running_loop()

    async def commit(self) -> None:
        self.commits += 1

    async def commit_and_end_transactions(self) -> None:
        await self.commit()


def test_a_rebalance_waits_for_unacknowledged_messages_only_so_long(monkeypatch, caplog):
    monkeypatch.setattr(commits, "REBALANCE_WAIT_S", 0.3)
    consumer = NeverEmpty()
    asyncio.run(asyncio.wait_for(consumer.wait_empty(), 5))
    assert consumer.commits >= 2  # while waiting, and once after
    assert "shop.clicks:1@1527" in caplog.text


def test_a_cancelled_wait_for_unacknowledged_messages_ends():
    """Faust's own wait swallows the cancel in its inner wait and loops on."""
    consumer = NeverEmpty()

    async def main() -> bool:
        waiting = asyncio.ensure_future(consumer.wait_empty())
        await asyncio.sleep(0.2)
        waiting.cancel()
        await asyncio.wait({waiting}, timeout=3)
        return waiting.done() and waiting.cancelled()

    assert asyncio.run(main()), "the wait went on after it was cancelled"


def test_a_batch_cancelled_mid_way_keeps_its_messages_unacknowledged(monkeypatch):
    """Issue 32: a stop cancels the agent in the middle of a batch, and the take loop's
    ``finally`` acknowledged the batch it handed out, so the consumer's last commit took
    records that were never processed. Each message now holds one more reference until
    its batch is handled; a handled batch lets go of it."""
    monkeypatch.setattr(agents, "InOrder", Admit)
    monkeypatch.setattr(agents, "IN_ORDER", [])
    monkeypatch.setattr(agents, "app", SimpleNamespace(consumer=None))
    started, messages = asyncio.Event(), []

    async def stalled(batch: list) -> None:
        messages.extend(batch)
        started.set()
        await asyncio.Event().wait()  # a sink that never answers

    async def main() -> None:
        loop = asyncio.create_task(agents.each_batch(Stream(batch_size=3), 10, 100.0, stalled, "a test agent"))
        await started.wait()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(main())
    assert [m.refcount for m in messages] == [1, 1, 1]  # still held: Faust's own ack passes them by

    handled = []

    async def handle(batch: list) -> None:
        handled.extend(batch)

    async def once() -> None:
        loop = asyncio.create_task(agents.each_batch(Stream(batch_size=2), 10, 100.0, handle, "a test agent"))
        while not handled:
            await asyncio.sleep(0.01)
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(once())
    assert [m.refcount for m in handled] == [0, 0]
