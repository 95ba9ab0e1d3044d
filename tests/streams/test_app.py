"""The worker's debugging aids: where a stuck task waits, and why a commit is stuck."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from streams.commits import CommitBlock, commit_block, consumer_state, repair_commits
from streams.web import await_chain


async def _innermost(event: asyncio.Event) -> None:
    await event.wait()


async def _middle(event: asyncio.Event) -> None:
    await _innermost(event)


async def _generator(event: asyncio.Event):
    await _middle(event)
    yield 1


async def _outer(event: asyncio.Event) -> None:
    async for _ in _generator(event):
        pass


def test_await_chain_follows_coroutines_and_async_generators_to_the_innermost_wait():
    async def main() -> list[str]:
        event = asyncio.Event()
        task = asyncio.create_task(_outer(event))
        await asyncio.sleep(0)  # let it run up to its wait
        chain = await_chain(task)
        event.set()
        await task
        return chain

    chain = asyncio.run(main())
    names = [line.rsplit(" in ", 1)[1] for line in chain]
    assert names[:4] == ["_outer", "_generator", "_middle", "_innermost"]
    assert all("test_app.py:" in line for line in chain[:4])


def test_consumer_state_shows_a_commit_stuck_behind_a_hole_among_the_acked_offsets():
    stuck, fine = TP("shop.clicks", 0), TP("shop.clicks", 1)
    gap = IntervalTree()
    gap.addi(20, 25)
    consumer = SimpleNamespace(
        _active_partitions={fine}, _paused_partitions={stuck}, _buffered_partitions=set(),
        _acked={stuck: [14, 12, 15, 16, 11], fine: []}, _gap={fine: gap},
        _committed_offset={stuck: 11, fine: 30}, _read_offset={stuck: 16, fine: 29},
        _unacked_messages=[SimpleNamespace(topic="shop.clicks", partition=0, offset=13)],
        flow_active=True, assignment=lambda: {stuck, fine}, highwater=lambda tp: 40,
    )
    state = consumer_state(consumer)
    clicks0, clicks1 = state["partitions"]["shop.clicks:0"], state["partitions"]["shop.clicks:1"]
    assert clicks0 == {"committed": 11, "would_commit": 13, "acked_duplicates": 0, "read": 16, "highwater": 40, "acked": 5, "acked_first": [11, 12, 14, 15, 16], "acked_min": 11,
                       "acked_max": 16, "acked_holes": [(13, 13)], "gaps": [],
                       "active": False, "paused": True, "buffered": False}
    assert clicks1["gaps"] == [(20, 24)] and clicks1["active"] and clicks1["acked_holes"] == []
    assert state["unacked"] == 1 and state["unacked_first"] == [("shop.clicks", 0, 13)]


def test_a_commit_block_is_the_offsets_between_the_commit_and_the_lowest_ack():
    # committed 11 (the next offset to read); 11 and 12 were read but never acknowledged
    assert commit_block([15, 13, 14], committed=11, in_flight=set()) == CommitBlock(0, (11, 12))


def test_a_commit_block_counts_acks_below_the_commit_and_repeated_ones():
    # Seen after a restart: Faust commits 990, then gets stuck on [989, 989, 990, ...]
    assert commit_block([989, 989, 990, 991], committed=990, in_flight=set()) == CommitBlock(2, None)
    assert commit_block([992, 992, 995], committed=990, in_flight=set()) == CommitBlock(1, (990, 991))


def test_one_missing_offset_is_a_commit_block_too():
    # Faust's own check let a gap of one offset through and committed past it
    # (faust-streaming#606); with hold_commits_at_gaps it holds, so the repair sees it.
    assert commit_block([12, 13], committed=11, in_flight=set()) == CommitBlock(0, (11, 11))


@pytest.mark.parametrize(
    ("acked", "committed", "gap", "expected"),
    [
        ([11, 12, 13], 11, [], 14),  # contiguous from the commit
        ([12, 13], 11, [], None),  # offset 11 missing: hold (Faust committed 14)
        ([14, 15], 11, [], None),  # a wider gap: held by Faust already
        ([12, 13], 11, [(11, 12)], 14),  # 11 is a known gap (a compacted or control record)
        ([5, 6], None, [], None),  # nothing committed yet, and where the log starts unknown
        ([0, 1], 0, [], 2),  # a commit of 0 is a commit
    ],
)
def test_faust_commits_never_pass_an_offset_that_was_not_acknowledged(acked, committed, gap, expected):
    from faust.transport.consumer import Consumer as FaustConsumer

    tp = TP("shop.clicks", 0)
    books = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                            _gap=defaultdict(IntervalTree, {tp: IntervalTree.from_tuples(gap)}),
                            _committed_offset=defaultdict(lambda: None, {tp: committed}))
    assert FaustConsumer._new_offset(books, tp) == expected


@pytest.mark.parametrize(("acked", "start", "expected"), [([5, 6], 0, None), ([0, 1], 0, 2), ([5, 6], 5, 7)])
def test_a_partition_never_committed_commits_from_where_its_log_starts(acked, start, expected):
    """Seen failing before: Faust committed 7 for [5, 6], and a worker killed at startup
    lost the first records of a partition."""
    from faust.transport.consumer import Consumer as FaustConsumer

    tp = TP("shop.carts", 0)
    books = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                            _gap=defaultdict(IntervalTree), _committed_offset=defaultdict(lambda: None),
                            _shopstream_log_start={tp: start})
    assert FaustConsumer._new_offset(books, tp) == expected


def test_no_commit_block_while_the_commit_can_advance_or_the_gap_is_being_processed():
    assert commit_block([], committed=11, in_flight=set()) is None
    assert commit_block([11, 12, 14], committed=11, in_flight=set()) is None  # commits up to 13
    assert commit_block([15], committed=11, in_flight={12}) is None  # its micro-batch is running
    assert commit_block([15], committed=None, in_flight=set()) is None  # nothing committed yet


class _Books(SimpleNamespace):
    """Faust's commit books for two partitions, and the seeks asked of the consumer."""

    def assignment(self):
        return set(self._committed_offset)

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))


def test_repair_drops_stale_acks_at_once_and_rereads_a_gap_that_stays_two_checks():
    doubled, gapped = TP("shop.clicks", 0), TP("shop.clicks", 1)
    consumer = _Books(
        _acked={doubled: [989, 989, 990, 990, 991], gapped: [14, 15]},
        _acked_index={doubled: {989, 990, 991}, gapped: {14, 15}},
        _committed_offset={doubled: 990, gapped: 11},
        _unacked_messages=[], seeks=[],
    )
    gaps: dict = {}
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer._acked[doubled] == [990, 991] and consumer._acked_index[doubled] == {990, 991}
    assert consumer.seeks == []  # a gap is only read again once it has stayed a whole interval
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer.seeks == [(gapped, 11)]
    assert consumer._acked[gapped] == [14, 15]


def test_repair_leaves_a_gap_alone_that_moves_or_is_being_processed():
    tp = TP("shop.clicks", 0)
    consumer = _Books(_acked={tp: [15]}, _acked_index={tp: {15}}, _committed_offset={tp: 11},
                      _unacked_messages=[], seeks=[])
    gaps: dict = {}
    asyncio.run(repair_commits(consumer, gaps))
    consumer._committed_offset[tp] = 12  # the commit moved: not the same gap
    asyncio.run(repair_commits(consumer, gaps))
    consumer._unacked_messages = [SimpleNamespace(tp=tp, offset=13)]  # its batch is running
    asyncio.run(repair_commits(consumer, gaps))
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer.seeks == []


def test_repair_rereads_at_once_a_gap_that_comes_with_stale_acks_even_of_one_offset():
    tp = TP("shop.clicks", 0)
    # 990 missing: once the stale 989s are gone, Faust would commit past it
    consumer = _Books(_acked={tp: [989, 989, 991, 992]}, _acked_index={tp: {989, 991, 992}},
                      _committed_offset={tp: 990}, _unacked_messages=[], seeks=[])
    asyncio.run(repair_commits(consumer, {}))
    assert consumer._acked[tp] == [991, 992] and consumer.seeks == [(tp, 990)]


def test_repair_skips_a_partition_revoked_meanwhile_and_survives_a_failing_seek():
    tp = TP("shop.clicks", 0)

    class Revoking(_Books):
        async def seek(self, tp, offset):
            raise AssertionError("seek on a partition this worker no longer owns")

    consumer = Revoking(_acked={tp: [989, 989, 991]}, _acked_index={tp: {989, 991}},
                        _committed_offset={tp: 990}, _unacked_messages=[], seeks=[])
    asyncio.run(repair_commits(consumer, {}))  # the seek raises: logged, not raised
    assert consumer._acked[tp] == [991]
