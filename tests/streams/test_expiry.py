"""State expiry by event time (``streams.expiry``), on a stand-in for a Faust table."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from faust.types import TP

from scorers.states import STATES, new_state
from scorers.views import entity_ttl_days, state_ttl_s
from scorers.windows import WINDOW_SECONDS, WindowedDistinct, WindowedStats
from streams.codecs import encode_state, state_expiry
from streams.expiry import TableExpiry

DAY = 86_400.0


class Table(dict):
    """What ``TableExpiry`` reads of a Faust table: a name and its items."""

    name = "test-table"

    def __init__(self, *args):
        super().__init__(*args)
        self.deleted = []


async def save(table, changes):
    for key, value in changes.items():
        assert value is None  # expiry only deletes
        table.deleted.append(key)
        del table[key]


def expiry(table, partitions=(0, 1), skew_s=300.0):
    sweeper = TableExpiry(table, "updates", lambda key: int(key[-1:]), state_expiry,
                          lambda: {TP("updates", p) for p in partitions}, save, sweep_s=0.0,
                          max_skew_s=skew_s)
    sweeper.sweep_now = lambda: asyncio.run(sweeper.sweep())
    return sweeper


def saved(table, sweeper, key, ts, ttl):
    table[key] = encode_state("user", new_state("user", key.decode()), ts + ttl)
    sweeper.saved(key, ts, ts + ttl)


def test_states_expire_once_the_event_clock_passes_their_time_to_live():
    table = Table()
    sweeper = expiry(table)
    now = time.time()
    saved(table, sweeper, b"user:a0", now - 90 * DAY, 60 * DAY)
    saved(table, sweeper, b"user:b1", now - 10 * DAY, 60 * DAY)
    assert sweeper.sweep_now() == [b"user:a0"]  # b's events still count in its windows
    assert table.deleted == [b"user:a0"] and list(table) == [b"user:b1"]
    assert sweeper.sweep_now() == []


def test_an_event_stamped_far_ahead_cannot_expire_everything():
    table = Table()
    sweeper = expiry(table)
    now = time.time()
    saved(table, sweeper, b"user:a0", now - DAY, 60 * DAY)
    saved(table, sweeper, b"user:b1", now + 365 * DAY, 60 * DAY)  # a forged or broken clock
    assert sweeper.clock <= time.time() + 300
    assert sweeper.sweep_now() == []


def test_after_a_rebalance_the_index_is_rebuilt_from_the_owned_partitions_only():
    now = time.time()
    table = Table({b"user:a0": encode_state("user", new_state("user"), now - DAY),  # owned, expired
                   b"user:b1": encode_state("user", new_state("user"), now + DAY),  # owned, alive
                   b"user:c2": encode_state("user", new_state("user"), now - DAY)})  # a standby copy
    sweeper = expiry(table, partitions=(0, 1))
    sweeper.forget()
    assert sweeper.sweep_now() == []  # no clock yet: nothing is judged
    sweeper.saved(b"user:b1", now, now + DAY)
    assert sweeper.sweep_now() == [b"user:a0"]
    assert b"user:c2" in table  # another worker's to expire


def test_a_state_touched_again_lives_on():
    table = Table()
    sweeper = expiry(table)
    now = time.time()
    saved(table, sweeper, b"user:a0", now - 90 * DAY, 60 * DAY)
    saved(table, sweeper, b"user:a0", now, 60 * DAY)
    assert sweeper.sweep_now() == []


@pytest.mark.parametrize("kind", sorted(set(STATES) - {"order"}))
def test_a_state_outlives_its_longest_window(kind):
    state = new_state(kind)
    unused = {"labels"} if kind in ("device", "ip") else set()  # only instruments get labels
    windows = [w for name, value in vars(state).items()
               if isinstance(value, WindowedStats | WindowedDistinct) and name not in unused
               for w in value.windows]
    longest = max((WINDOW_SECONDS[w] for w in windows), default=0)
    assert entity_ttl_days(kind) * DAY >= longest
    assert state_ttl_s(kind, 300, 120) == entity_ttl_days(kind) * DAY + 300
    assert math.isfinite(state_ttl_s(kind, 300, 120))


def test_a_batch_before_the_next_sweep_is_due_is_swept_when_it_is():
    """The last batch of a quiet stream moves the clock on after a sweep: the sweep it
    missed comes on its own, under the agent's lock (CI saw old states kept for good)."""
    async def scenario():
        table, dropped = Table(), []
        sweeper = TableExpiry(table, "updates", lambda key: int(key[-1:]), state_expiry,
                              lambda: {TP("updates", 0)}, save, sweep_s=0.2, max_skew_s=300.0,
                              dropped=dropped.append)
        now = time.time()
        saved(table, sweeper, b"user:a0", now - 90 * DAY, 60 * DAY)
        assert await sweeper.sweep() == []  # the first sweep: nothing has expired yet
        saved(table, sweeper, b"user:b0", now, 60 * DAY)  # the clock moves on 90 days
        async with sweeper.lock:  # a batch in hand: the sweep waits for it
            assert await sweeper.sweep() == []  # not due: scheduled
            await asyncio.sleep(0.4)
            assert b"user:a0" in table
        await asyncio.sleep(0.1)
        return table, dropped

    table, dropped = asyncio.run(scenario())
    assert table.deleted == [b"user:a0"] and dropped == [b"user:a0"] and list(table) == [b"user:b0"]


def test_a_rebalance_cancels_a_scheduled_sweep():
    async def scenario():
        table = Table()
        sweeper = TableExpiry(table, "updates", lambda key: int(key[-1:]), state_expiry,
                              lambda: {TP("updates", 0)}, save, sweep_s=0.2, max_skew_s=300.0)
        now = time.time()
        saved(table, sweeper, b"user:a0", now - 90 * DAY, 60 * DAY)
        await sweeper.sweep()
        saved(table, sweeper, b"user:b0", now, 60 * DAY)
        await sweeper.sweep()  # scheduled
        sweeper.forget()  # ownership may change: the next batch sweeps
        await asyncio.sleep(0.4)
        return table

    assert asyncio.run(scenario()).deleted == []
