"""Commits that never pass a record no agent finished: guards and repairs around Faust's
commit bookkeeping (faust-streaming#596, #606), and a view of that bookkeeping.

Faust keeps no public accessor for its books (``_acked``, ``_committed_offset``,
``_gap``, ``_unacked_messages``), so these read them directly; the unit tests in
``tests/streams/test_app.py`` pin the behaviour they rely on.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from types import SimpleNamespace
from typing import NamedTuple

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from faust.types.tuples import ack_lock
from intervaltree import IntervalTree

from streams import metrics

log = logging.getLogger(__name__)


def hold_commits_at_gaps(consumer_class: type = FaustConsumer) -> None:
    """Make Faust's commits wait at an offset that no agent acknowledged.

    Faust computes the offset to commit from the acknowledged ones, and gives up only
    when the lowest of them is more than one past the committed offset: a gap of exactly
    one offset slips through, and the commit jumps past a record that was never
    processed (faust-streaming#606). With this, the lowest acknowledged offset (or the
    start of a gap Faust knows of, such as a compacted record) must be the committed
    offset itself; ``repair_commits`` reads a gap that stays again. Idempotent.

    A partition that its group has never committed starts where its log starts
    (``committed_or_start``): Faust would otherwise commit from whatever offset was
    acknowledged first, and a worker killed at startup lost the first records of a
    partition (seen in ``tests/integration/test_recovery.py`` as a user's first cart).
    """
    original = getattr(consumer_class._new_offset, "__wrapped__", consumer_class._new_offset)

    def _new_offset(self, tp):
        acked, committed = self._acked.get(tp), committed_or_start(self, tp)
        if acked:
            if committed is None:  # nothing committed, and where the log starts is not known yet
                return None
            known = self._gap.get(tp)
            lowest = min(min(acked), min((i.begin for i in known), default=math.inf) if known else math.inf)
            if lowest > committed:
                return None
        return original(self, tp)

    _new_offset.__wrapped__ = original
    consumer_class._new_offset = _new_offset


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


hold_commits_at_gaps()


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
    if not acked or not committed:
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
    """Repair the partitions of ``consumer`` whose commits a ``commit_block`` holds back;
    ``gaps`` holds each partition's (committed offset, gap) from the previous check.

    Stale acknowledgements are dropped from Faust's books at once: ``ack`` never lets
    them in, so dropping them only restores what Faust expects. (Seen after a restart:
    every offset acknowledged twice, and the commit moving one offset per commit.) A gap
    that holds the commit at the same offset for a whole check interval, or comes with
    stale acknowledgements, is read again by seeking the partition back to its
    committed offset.

    Reading again is safe: entity states ignore updates they have applied (see
    ``streams.features``), and every output is at-least-once already. A seek that races
    a fetch already under way can miss; the next check tries again.
    """
    in_flight: dict = defaultdict(set)
    for message in list(consumer._unacked_messages):  # faust keeps no public accessor
        in_flight[message.tp].add(message.offset)
    seen = {}
    for tp in consumer.assignment():
        acked, committed = consumer._acked.get(tp), committed_or_start(consumer, tp)
        block = commit_block(acked or [], committed, in_flight[tp])
        if block is None:
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
        if tp not in consumer.assignment():  # revoked while this check ran
            continue
        metrics.COMMIT_REPAIRS.labels(tp.topic, "reread").inc()
        try:
            await consumer.seek(tp, committed)
        except Exception as exc:  # noqa: BLE001 - a timer must not die; the next check retries
            log.warning("could not read %s:%s again from %d (%r)", tp.topic, tp.partition,
                        committed, exc)
    gaps.clear()
    gaps.update(seen)


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
            "would_commit": FaustConsumer._new_offset(books, tp),
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
