"""State expiry by event time: a table's keys that no event has touched for their time to
live are deleted, so memory, changelogs and restore times stay flat.

An agent tells ``TableExpiry`` when it saves a key and when that key expires (an event
time), and calls ``sweep`` after each batch; at most every ``sweep_s`` wall-clock seconds
the sweep deletes the keys whose expiry the worker's event-time clock has passed
(with ``save``: ``streams.app.save``). A batch that comes before the next sweep is due
leaves one scheduled for then, taken under the agent's ``lock``, so the last batch of a
quiet stream is swept too (without it, a clock moved on by that batch waited for the next
event, which might never come). Each deletion is a tombstone on the table's changelog, so compaction drops the key there too.
The clock is the newest event time the agent has saved, but never more than
``max_skew_s`` ahead of the wall clock, so that one event stamped far in the future
cannot expire everything.

Only keys of partitions this worker reads as their active owner are deleted: a standby
copy belongs to another worker. After a rebalance the index is rebuilt from the table
itself, reading each value's expiry with ``expiry_of`` (cheap: no state is decoded).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from faust.types import TP

from streams import metrics

log = logging.getLogger(__name__)


class TableExpiry:
    """Expires the keys of ``table``, whose partitions are those of ``source_topic``."""

    def __init__(self, table, source_topic: str, partition_of: Callable[[bytes], int],
                 expiry_of: Callable[[bytes], float], assignment: Callable[[], set[TP]],
                 save: Callable[..., Awaitable[None]], sweep_s: float, max_skew_s: float,
                 lock: asyncio.Lock | None = None, dropped: Callable[[bytes], object] = lambda key: None):
        self.table, self.source_topic, self.save = table, source_topic, save
        self.partition_of, self.expiry_of, self.assignment = partition_of, expiry_of, assignment
        self.sweep_s, self.max_skew_s = sweep_s, max_skew_s
        self.lock = lock or asyncio.Lock()
        self.dropped = dropped  # called with each expired key, e.g. to drop it from a cache
        self.clock = -math.inf
        self._due: dict[bytes, float] = {}
        self._indexed = False
        self._next_sweep = 0.0
        self._later: asyncio.Task | None = None

    def saved(self, key: bytes, event_ts: float, expires_at: float) -> None:
        """Note that ``key`` was saved with an event at ``event_ts``, to expire at ``expires_at``."""
        self._due[key] = expires_at
        self.clock = max(self.clock, min(event_ts, time.time() + self.max_skew_s))

    def forget(self) -> None:
        """At a rebalance: ownership may change, so the index is rebuilt at the next sweep."""
        self._due.clear()
        self._indexed = False
        if self._later is not None:
            self._later.cancel()  # the next batch sweeps, with the new assignment
            self._later = None

    async def sweep(self) -> list[bytes]:
        """Delete the keys that have expired, if a sweep is due, and return them; if one is
        not due yet, schedule it for when it is."""
        if not math.isfinite(self.clock):
            return []
        wait = self._next_sweep - time.monotonic()
        if wait > 0:
            if self._later is None or self._later.done():
                self._later = asyncio.get_running_loop().create_task(self._sweep_later(wait))
            return []
        self._next_sweep = time.monotonic() + self.sweep_s
        if not self._indexed:
            self._index()
        expired = [key for key, expires in self._due.items() if expires <= self.clock]
        for key in expired:
            del self._due[key]
        await self.save(self.table, dict.fromkeys(expired))
        name = self.table.name
        metrics.EXPIRED_STATES.labels(name).inc(len(expired))
        metrics.STATES.labels(name).set(len(self._due))
        for key in expired:
            self.dropped(key)
        return expired

    async def _sweep_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        try:
            async with self.lock:  # never inside a batch of the agent's
                await self.sweep()
        except Exception as exc:  # noqa: BLE001 - the next batch sweeps again
            log.warning("%s: a scheduled expiry sweep failed (%r)", self.table.name, exc)

    def _index(self) -> None:
        active = {tp.partition for tp in self.assignment() if tp.topic == self.source_topic}
        for key, raw in list(self.table.items()):
            if key in self._due or raw is None or self.partition_of(key) not in active:
                continue
            try:
                self._due[key] = self.expiry_of(raw)
            except Exception as exc:  # noqa: BLE001 - a damaged value: keep it, say so
                log.warning("%s: no expiry in the saved value of %r (%r); it is kept",
                            self.table.name, key, exc)
        self._indexed = True
