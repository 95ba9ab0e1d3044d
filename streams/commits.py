"""Commits that never pass a record no agent finished: guards and repairs around Faust's
commit bookkeeping (faust-streaming#596, #606), and a view of that bookkeeping.

Faust keeps no public accessor for its books (``_acked``, ``_committed_offset``,
``_gap``, ``_unacked_messages``), so these read them directly; the unit tests in
``tests/streams/test_app.py`` pin the behaviour they rely on.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
from collections import defaultdict
from types import SimpleNamespace
from typing import NamedTuple

from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import Consumer as AiokafkaConsumer
from faust.types import TP
from faust.types.tuples import ack_lock
from intervaltree import IntervalTree

from shopstream.topics import first_offset_from
from streams import metrics

log = logging.getLogger(__name__)


TESTED_FAUST = ("0.15.3",)
"""The faust-streaming versions whose consumer internals ``Consumer`` is tested against
(``tests/streams/test_app.py``, ``test_each_batch.py`` and the fault suite)."""

REBALANCE_WAIT_S = 15.0
"""How long a rebalance (or a stop) waits for the messages handed out to be acknowledged."""


class UntestedFaust(RuntimeError):
    """The installed faust-streaming is not one ``Consumer`` was tested against."""


def check_faust_version(version: str | None = None, allow_untested: bool = False) -> str:
    """The installed faust-streaming version; ``UntestedFaust`` if it is not one of
    ``TESTED_FAUST`` and ``allow_untested`` is not set: ``Consumer`` overrides internals
    that a release may change without notice, and a commit past an unprocessed record is
    silent data loss, not an error.

    >>> check_faust_version("0.15.3")
    '0.15.3'
    >>> check_faust_version("0.16.0", allow_untested=True)
    '0.16.0'
    """
    if version is None:
        from importlib.metadata import version as installed

        version = installed("faust-streaming")
    if version not in TESTED_FAUST and not allow_untested:
        raise UntestedFaust(
            f"faust-streaming {version} is installed, and shopstream's consumer is tested with "
            f"{', '.join(TESTED_FAUST)} only: install a tested version (uv sync with the lock file), or "
            "set SHOPSTREAM_ALLOW_UNTESTED_FAUST=true to run anyway and run the fault suite")
    return version


class Consumer(AiokafkaConsumer):
    """Faust's aiokafka consumer with commits that never pass a record no agent finished
    (faust-streaming#596, #606), seeks in the fetcher's thread and a bounded wait for the
    messages in hand. The worker's runtime (``streams.runtime``) makes the app build this
    consumer, after ``check_faust_version``."""

    def _new_offset(self, tp: TP) -> int | None:
        """Commits wait at an offset that no agent acknowledged.

        Faust computes the offset to commit from the acknowledged ones, and gives up only
        when the lowest of them is more than one past the committed offset: a gap of
        exactly one offset slips through, and the commit jumps past a record that was
        never processed (faust-streaming#606). Here the lowest acknowledged offset (or the
        start of a gap Faust knows of, such as a compacted record) must be the committed
        offset itself; ``repair_commits`` reads a gap that stays again.

        A partition that its group has never committed starts where its log starts
        (``committed_or_start``): Faust would otherwise commit from whatever offset was
        acknowledged first, so a worker killed at start-up would lose the first records
        of a partition."""
        acked, committed = self._acked.get(tp), committed_or_start(self, tp)
        if acked:
            if committed is None:  # nothing committed, and where the log starts is not known yet
                return None
            known = self._gap.get(tp)
            lowest = min(min(acked), min((i.begin for i in known), default=math.inf) if known else math.inf)
            if lowest > committed:
                return None
        return FaustConsumer._new_offset(self, tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust marks no gap on its own. It notes one whenever a fetched offset is more
        than one past the last one read, and lets commits pass it; but a fetch that races
        a seek, or records Faust marked read and never delivered (faust-streaming#596),
        look just the same, and those offsets were never processed. ``InOrder`` reads such
        a gap again and notes it (``confirm_gap``) only when the log has nothing there."""
        return None

    async def perform_seek(self) -> None:
        """Mark the consumer as sought (``_shopstream_sought``) once Faust has moved its
        partitions to their committed offsets after an assignment: records delivered
        before that come from wherever the fetcher stood."""
        self._shopstream_sought = False
        await super().perform_seek()
        self._shopstream_sought = True

    async def _seek(self, partition: TP, offset: int) -> None:
        """Seek in the thread where aiokafka fetches. Faust's ``seek`` calls aiokafka's from
        the worker's own thread, and aiokafka's ``seek_to`` deletes the partition's
        buffered records while its fetcher, in the consumer thread, may be reading them
        (``KeyError`` in ``Fetcher.fetched_records``, which ends Faust's fetcher and with
        it the worker)."""
        await self._thread.call_thread(self._thread.seek, partition, offset)

    async def wait_empty(self) -> None:
        """Faust's wait for the messages in hand, ended after ``REBALANCE_WAIT_S``.

        At a rebalance (and at a stop) Faust suspends the flow of messages, drops those
        still queued for agents, and waits until every message it handed out is
        acknowledged or garbage (its books are a weak set), with no bound: anything that
        still holds a message whose copy was dropped from an agent's queue keeps it
        unacknowledged, and the wait never ends. It cannot be cut from outside either:
        its inner wait (``Consumer._wait_for_ack``) swallows ``CancelledError``.

        Here the wait is the same loop with a deadline, and a cancel ends it. What it
        leaves is logged and counted. Nothing is lost: a message not acknowledged is not
        committed past, so whoever owns its partition next reads it again (at least once;
        states ignore what they applied)."""
        deadline = time.monotonic() + REBALANCE_WAIT_S
        while not self.should_stop and self._unacked_messages:
            gc.collect()  # messages nobody holds leave the weak set once collected
            await self.commit()
            self._clean_unacked_messages()
            if not self._unacked_messages:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                cut_wait(self._unacked_messages)
                break
            # Faust's ack() wakes the future it finds armed here.
            self._waiting_for_ack = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait({self._waiting_for_ack}, timeout=min(1.0, left))
            finally:
                self._waiting_for_ack = None
        await self.commit_and_end_transactions()


def committed_or_start(consumer, tp: TP) -> int | None:
    """The committed offset of ``tp``, or for a partition its group has never committed,
    the offset its log starts at (``note_log_starts``); None while neither is known."""
    committed = consumer._committed_offset.get(tp)
    if committed is None:
        committed = getattr(consumer, "_shopstream_log_start", {}).get(tp)
    return committed


async def note_log_starts(consumer, tps: set[TP]) -> None:
    """Remember where the logs of newly assigned partitions start."""
    if tps:
        starts = await consumer.earliest_offsets(*tps)
        consumer.__dict__.setdefault("_shopstream_log_start", {}).update(starts)


async def confirm_gap(consumer, tp: TP, first: int, last: int) -> None:
    """Note offsets ``first..last`` of ``tp`` as a gap the log really has (compaction,
    transaction markers, retention), so that commits may pass them."""
    await FaustConsumer._add_gap(consumer, tp, first, last)


def cut_wait(unacked) -> None:
    """Log and count a wait for ``unacked`` messages that ends without them."""
    left = sorted(f"{m.tp.topic}:{m.tp.partition}@{m.offset}" for m in list(unacked))
    log.warning("%d messages handed out are still unacknowledged after %.0fs (%s); going on "
                "without them: they are read again from the committed offsets", len(left),
                REBALANCE_WAIT_S, ", ".join(left[:10]) + (" ..." if len(left) > 10 else ""))
    metrics.REBALANCE_WAITS_CUT.inc()


def broker_lacks(settings):
    """``InOrder``'s ``log_lacks`` for the brokers of ``settings``: whether a partition's
    log holds none of the offsets ``first..last`` (``shopstream.topics.first_offset_from``)."""
    async def log_lacks(tp: TP, first: int, last: int) -> bool:
        found = await asyncio.to_thread(first_offset_from, settings, tp.topic, tp.partition, first)
        return found is not None and found > last

    return log_lacks


class Sorted(NamedTuple):
    """``InOrder.sort``'s verdict on one micro-batch."""

    keep: list  # to process now, in the order given
    drop: list  # not to process: read again later
    reread: dict  # {tp: offset}: read the partition again from there
    gaps: list  # [(tp, first, last)]: offsets the log does not have, confirmed
    suspects: list  # [(tp, first, last)]: a gap that came back the same, for the broker


class InOrder:
    """Hands an agent each partition's records in offset order, with none skipped.

    Entity states ignore an update from a source whose later updates they have applied
    (``scorers.states.is_new``), so a record processed after later records of its
    partition is lost, silently. Faust can deliver exactly that: after a restart it can
    mark records as read that no stream ever receives (faust-streaming#596), and the
    records before a seek can come from wherever the fetcher stood. Here every record of
    a partition must be the next offset: the first after an assignment is the committed
    offset (or where the log starts, if nothing was committed), and a record past a
    gap is dropped with the rest of its partition's batch while the partition is read
    again from the first missing offset. A gap that comes back the same after that is
    checked with the broker (``log_lacks``, an ``async (tp, first, last) -> bool``): only
    offsets the log does not hold (compaction, transaction markers) are let through.
    Coming back the same proves nothing on its own: a fetch already under way when the
    partition was sought delivers its later records again, and Faust then drops the
    sought ones below them (seen in CI as 1,655 existing clicks passed as a gap). Without
    ``log_lacks`` a gap is never passed. Records read before the assignment's seek are
    dropped too: the seek delivers them again. Earlier offsets than the next are
    redeliveries, processed again, which states ignore.
    """

    def __init__(self, what: str = "an agent", patience_s: float = 2.0, log_lacks=None) -> None:
        self.what, self.patience_s = what, patience_s  # what: the agent, in log lines
        self.log_lacks = log_lacks
        self._next: dict[TP, int] = {}
        self._tried: dict[TP, tuple[int, int]] = {}  # the gap last read again
        self._absent: dict[TP, tuple[int, int]] = {}  # a gap the broker confirmed: (first, next offset)
        self._seeking: dict[TP, float] = {}  # when the partition was last read again

    def forget(self) -> None:
        """At a rebalance: what comes next is decided by the new assignment's seek."""
        self._next.clear()
        self._tried.clear()
        self._absent.clear()
        self._seeking.clear()

    def sort(self, messages: list, sought: bool, start, now: float) -> Sorted:
        """The verdict on ``messages`` (each with ``tp`` and ``offset``), given whether
        the assignment's seek is done, ``start(tp)``, the offset a partition's first
        record must have (None: unknown, so the first record sets it), and the time.

        Records fetched before a partition is read again still come for a while: they
        are dropped without reading it again once more, for ``patience_s``."""
        keep, drop, reread, gaps, suspects = [], [], {}, [], []
        stopped = set()  # partitions whose later records in this batch are dropped
        for message in messages:
            tp, offset = message.tp, message.offset
            if not sought or tp in stopped:
                drop.append(message)
                continue
            expected = self._next.get(tp)
            if expected is None:
                expected = start(tp)
            if expected is None or offset == expected:
                self._next[tp] = offset + 1
                self._seeking.pop(tp, None)
            elif offset < expected:  # a redelivery
                self._next[tp] = expected
            elif self._absent.get(tp) == (expected, offset):  # the broker has no such offsets
                gaps.append((tp, expected, offset - 1))
                del self._absent[tp]
                self._seeking.pop(tp, None)
                self._next[tp] = offset + 1
            elif self._tried.get(tp) == (expected, offset):  # the same gap again: ask the broker
                self._next[tp] = expected
                del self._tried[tp]
                drop.append(message)
                stopped.add(tp)
                suspects.append((tp, expected, offset - 1))
                continue
            else:
                self._next[tp] = expected
                drop.append(message)
                if now - self._seeking.get(tp, -math.inf) >= self.patience_s:
                    self._tried[tp] = (expected, offset)
                    self._seeking[tp] = now
                    reread[tp] = expected
                    stopped.add(tp)
                continue
            keep.append(message)
        return Sorted(keep, drop, reread, gaps, suspects)

    async def check(self, suspects: list, now: float) -> dict:
        """Ask the broker about each gap that came back the same (``Sorted.suspects``),
        and where to read each partition again from: its first missing offset either way.
        If the log lacks the offsets, the next record past them passes; if it holds them,
        or cannot say, the partition is read again as for any gap."""
        reread = {}
        for tp, first, last in suspects:
            lacks = False  # unknown counts as held: read it again, ask again later
            try:
                if self.log_lacks is not None:
                    lacks = await self.log_lacks(tp, first, last)
                    if not lacks:
                        log.warning("%s: %s:%s offsets %d..%d came back missing, but the log holds them",
                                    self.what, tp.topic, tp.partition, first, last)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: could not ask the broker about %s:%s %d..%d (%r)", self.what,
                            tp.topic, tp.partition, first, last, exc)
            if lacks:
                self._absent[tp] = (first, last + 1)
            self._seeking[tp] = now
            reread[tp] = first
        return reread

    def overdue(self, now: float) -> dict:
        """The partitions read again ``patience_s`` ago whose first missing record has not
        come yet, and from where to read them again (noted as read again now). Faust drops
        a fetched record below the last offset it handed out, so a seek that raced a fetch
        can deliver nothing at all; with no later record to show the gap, only time does."""
        due = {tp: self._next[tp] for tp, since in self._seeking.items()
               if now - since >= self.patience_s and tp in self._next}
        for tp in due:
            self._seeking[tp] = now
        return due

    async def retry(self, consumer) -> None:
        """Read again the partitions ``overdue`` now."""
        await self._seek(consumer, self.overdue(time.monotonic()), "still missing")

    async def _seek(self, consumer, offsets: dict, why: str) -> None:
        what = self.what
        for tp, offset in offsets.items():
            log.warning("%s: %s:%s %s from offset %d; reading it again from there",
                        what, tp.topic, tp.partition, why, offset)
            metrics.COMMIT_REPAIRS.labels(tp.topic, "skipped").inc()
            if tp not in consumer.assignment():  # revoked meanwhile: the next owner seeks
                continue
            try:
                await consumer.seek(tp, offset)
            except Exception as exc:  # noqa: BLE001 - tried again while the record is missing
                log.warning("%s: could not read %s:%s again from %d (%r)", what, tp.topic,
                            tp.partition, offset, exc)

    async def admit(self, consumer, messages: list) -> list:
        """The messages of a micro-batch to process now; the rest are read again."""
        what = self.what
        verdict = self.sort(messages, getattr(consumer, "_shopstream_sought", False),
                            lambda tp: committed_or_start(consumer, tp), time.monotonic())
        for message in verdict.drop:
            # Not acknowledged, ever: the reading again delivers another copy. Held by one
            # more reference so that Faust's acknowledgement after the batch passes it by,
            # and out of the books a rebalance waits on.
            message.incref()
            consumer._unacked_messages.discard(message)
        for tp, first, last in verdict.gaps:
            log.info("%s: %s:%s has no offsets %d..%d; passing them", what, tp.topic,
                     tp.partition, first, last)
            await confirm_gap(consumer, tp, first, last)
        await self._seek(consumer, verdict.reread, "skipped")
        await self._seek(consumer, await self.check(verdict.suspects, time.monotonic()), "skipped again")
        return verdict.keep


class CommitBlock(NamedTuple):
    """What holds a partition's commits back: acknowledged offsets that Faust's books
    should no longer hold (already committed, or twice), and the offsets (first, last)
    read but never acknowledged, if any."""

    stale: int
    gap: tuple[int, int] | None


def clean_acks(acked: list[int], committed: int) -> list[int]:
    """The acknowledged offsets that Faust's ``ack`` would have let in: each once, none
    below the committed offset, in order."""
    return sorted({offset for offset in acked if offset >= committed})


def commit_block(acked: list[int], committed: int | None, in_flight: set[int]) -> CommitBlock | None:
    """Why a partition's commits cannot advance, or ``None`` if nothing in Faust's books
    stops them.

    Faust commits a partition up to its first unacknowledged offset, and only while the
    lowest acknowledged offset is next to the committed one. Its ``ack`` keeps each
    offset once and never one below the commit, and nothing else should reach the books.
    A race in Faust's recovery after a restart (faust-streaming#596) breaks both: it can
    mark records as read that no stream ever receives, so nothing acknowledges them, and
    it can move the committed offset back under acknowledged ones. Either way the
    partition's commits stop for good while its later records are processed. A gap
    whose records are still being processed (``in_flight``) is not one: it fills when
    their micro-batch ends.
    """
    if not acked or committed is None:  # 0 is an offset: a log that starts there
        return None
    valid = clean_acks(acked, committed)
    stale = len(acked) - len(valid)
    gap = None
    if valid and valid[0] > committed and not any(o in in_flight for o in range(committed, valid[0])):
        gap = (committed, valid[0] - 1)
    if not stale and gap is None:
        return None
    return CommitBlock(stale, gap)


async def repair_commits(consumer, gaps: dict) -> None:
    """Repair the partitions of ``consumer`` whose commits a ``commit_block`` holds back,
    or that have stalled (``stall_mark``); ``gaps`` holds each partition's (committed
    offset, gap) and stall marks from the previous check. A partition never committed
    whose start is not known yet is looked up first.

    Stale acknowledgements are dropped from Faust's books at once: ``ack`` never lets
    them in, so dropping them only restores what Faust expects. (Seen after a restart:
    every offset acknowledged twice, and the commit moving one offset per commit.) A gap
    that holds the commit at the same offset for a whole check interval, or comes with
    stale acknowledgements, is read again by seeking the partition back to its
    committed offset, as is a partition with the same stall mark at two checks in a row.

    Reading again is safe: entity states ignore updates they have applied (see
    ``streams.features``), and every output is at-least-once already. A seek that races
    a fetch already under way can miss; the next check tries again.
    """
    unknown = {tp for tp in consumer.assignment() if committed_or_start(consumer, tp) is None}
    if unknown:  # the assignment's own lookup failed or has not run: without it, no commits
        try:
            await note_log_starts(consumer, unknown)
        except Exception as exc:  # noqa: BLE001 - a timer must not die; the next check retries
            log.warning("could not read where %d partitions start (%r)", len(unknown), exc)
    in_flight: dict = defaultdict(set)
    for message in list(consumer._unacked_messages):  # faust keeps no public accessor
        in_flight[message.tp].add(message.offset)
    seen = {}
    for tp in consumer.assignment():
        acked, committed = consumer._acked.get(tp), committed_or_start(consumer, tp)
        block = commit_block(acked or [], committed, in_flight[tp])
        if block is None:
            if not acked and not in_flight[tp] and (mark := stall_mark(consumer, tp, committed)) is not None:
                if gaps.get(("stalled", tp)) != mark:
                    seen[("stalled", tp)] = mark
                    continue
                log.warning("%s:%s has records from %d to %d but none has been read for a whole check; "
                            "reading it again from %d", tp.topic, tp.partition, committed,
                            consumer.highwater(tp) - 1, committed)
                await _reread(consumer, tp, committed, "stalled")
            continue
        if block.stale:
            log.warning("commits of %s:%s at %d: dropping %d stale acknowledgements",
                        tp.topic, tp.partition, committed, block.stale)
            metrics.COMMIT_REPAIRS.labels(tp.topic, "stale").inc()
            with ack_lock:  # Faust's lock for its acknowledgement books
                acked[:] = clean_acks(acked, committed)
                consumer._acked_index[tp] = set(acked)
        if block.gap is None:
            continue
        # After stale acknowledgements a gap is the race's, not a fetch running late, and
        # Faust would commit past a gap of one offset: read it again now.
        if not block.stale and gaps.get(tp) != (committed, block.gap):
            seen[tp] = (committed, block.gap)
            continue
        log.warning("commits of %s:%s are stuck at %d: offsets %d..%d were read but never "
                    "acknowledged; reading the partition again from %d",
                    tp.topic, tp.partition, committed, *block.gap, committed)
        await _reread(consumer, tp, committed, "reread")
    gaps.clear()
    gaps.update(seen)


def stall_mark(consumer, tp: TP, committed: int | None) -> tuple[int, int | None] | None:
    """What a partition looks like to the commit check when it may be stalled: records
    waiting past the committed offset, the partition fetched (not paused, flow on), and
    nothing of it in hand. The same mark at two checks in a row means nothing was read
    meanwhile: Faust's fetcher has lost the partition (seen after a restart: one partition
    never delivered from its committed offset, with nothing later to show a gap). None if
    the partition is not waiting, is Faust's own, or its end is not known."""
    highwater = consumer.highwater(tp)
    if (committed is None or highwater is None or committed >= highwater or not consumer.flow_active
            or tp in consumer._paused_partitions or tp.topic.endswith("-changelog") or "__assignor" in tp.topic):
        return None
    return committed, consumer._read_offset.get(tp)


async def _reread(consumer, tp: TP, offset: int, repair: str) -> None:
    """Read ``tp`` again from ``offset`` (counted as a ``repair`` of its commits)."""
    if tp not in consumer.assignment():  # revoked while this check ran
        return
    metrics.COMMIT_REPAIRS.labels(tp.topic, repair).inc()
    try:
        await consumer.seek(tp, offset)
    except Exception as exc:  # noqa: BLE001 - a timer must not die; the next check retries
        log.warning("could not read %s:%s again from %d (%r)", tp.topic, tp.partition, offset, exc)


def consumer_state(consumer) -> dict:
    """Faust's commit bookkeeping for every assigned partition: what was read, acknowledged
    and committed, and whether the partition is being fetched. A partition whose commits
    stop advancing while its records are processed shows here why (a hole in ``acked``
    that no ``gap`` covers, or a partition left paused). Holes and gaps are (first, last)
    offsets, both included. Faust keeps no public accessor."""
    active, paused = consumer._active_partitions or set(), consumer._paused_partitions
    buffered = consumer._buffered_partitions
    committed = defaultdict(lambda: None, consumer._committed_offset)
    state = {}
    for tp in sorted(consumer.assignment()):
        acked = sorted(consumer._acked.get(tp, ()))
        holes = [(a + 1, b - 1) for a, b in zip(acked, acked[1:], strict=False) if b - a > 1]
        # What Faust would commit now, from its own code run on copies of its books.
        books = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                                _gap={tp: consumer._gap[tp].copy()} if tp in consumer._gap else
                                defaultdict(IntervalTree),
                                _committed_offset=committed)
        state[f"{tp.topic}:{tp.partition}"] = {
            "committed": committed[tp],
            "would_commit": Consumer._new_offset(books, tp),
            "acked_duplicates": len(acked) - len(set(acked)),
            "read": consumer._read_offset.get(tp),
            "highwater": consumer.highwater(tp),
            "acked": len(acked), "acked_first": acked[:8], "acked_min": acked[0] if acked else None,
            "acked_max": acked[-1] if acked else None, "acked_holes": holes[:10],
            "gaps": [(i.begin, i.end - 1) for i in sorted(consumer._gap.get(tp, ()))][:10],
            "active": tp in active, "paused": tp in paused, "buffered": tp in buffered,
        }
    unacked = sorted((m.topic, m.partition, m.offset) for m in consumer._unacked_messages)
    return {"flow_active": consumer.flow_active, "partitions": state,
            "unacked": len(unacked), "unacked_first": unacked[:20]}
