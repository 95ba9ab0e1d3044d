"""``streams.agents.ReadFirst``: an order's own updates wait for its fraud score's read."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP

from streams.agents import ReadFirst

A, B = TP("shop.orders", 0), TP("shop.orders", 1)


def _messages(*offsets) -> list:
    return [SimpleNamespace(tp=tp, offset=offset) for tp, offset in offsets]


def test_the_updates_wait_until_the_fraud_agent_has_read_every_order_of_the_batch():
    async def run():
        gate = ReadFirst(timeout_s=10)
        gate.enabled = lambda: True
        waiting = asyncio.create_task(gate.wait(_messages((A, 3), (B, 0))))
        await gate.read(_messages((A, 0), (A, 1), (A, 2), (A, 3)))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # B:0 is not read yet
        await gate.read(_messages((B, 0)))
        assert await asyncio.wait_for(waiting, 1) is True
        assert await gate.wait(_messages((A, 1))) is True  # read before: no wait
    asyncio.run(run())


def test_a_scorer_that_never_reads_holds_the_updates_only_for_the_timeout():
    async def run():
        gate = ReadFirst(timeout_s=0.05)
        gate.enabled = lambda: True
        assert await gate.wait(_messages((A, 0))) is False
        gate.enabled = lambda: False  # no fraud agent here, or scoring switched off
        assert await gate.wait(_messages((A, 1))) is True
    asyncio.run(run())


def test_a_rebalance_forgets_what_was_read():
    async def run():
        gate = ReadFirst(timeout_s=0.05)
        gate.enabled = lambda: True
        await gate.read(_messages((A, 5)))
        assert gate.is_read(_messages((A, 5)))
        gate.forget()
        assert not gate.is_read(_messages((A, 5)))
    asyncio.run(run())


def test_a_timeout_of_zero_switches_the_wait_off():
    async def run():
        gate = ReadFirst(timeout_s=0)
        gate.enabled = lambda: True
        assert await gate.wait(_messages((A, 0))) is True  # not read, and no wait: off
    asyncio.run(run())
