"""The worker's debugging aids: where a stuck task waits, and why a commit is stuck."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from streams.commits import (
    CommitBlock,
    Consumer,
    InOrder,
    commit_block,
    confirm_gap,
    consumer_state,
    repair_commits,
)
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
    # (faust-streaming#606); with commits.Consumer._new_offset it holds, so the repair sees it.
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
    tp = TP("shop.clicks", 0)
    books = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                            _gap=defaultdict(IntervalTree, {tp: IntervalTree.from_tuples(gap)}),
                            _committed_offset=defaultdict(lambda: None, {tp: committed}))
    assert Consumer._new_offset(books, tp) == expected


@pytest.mark.parametrize(("acked", "start", "expected"), [([5, 6], 0, None), ([0, 1], 0, 2), ([5, 6], 5, 7)])
def test_a_partition_never_committed_commits_from_where_its_log_starts(acked, start, expected):
    """Seen failing before: Faust committed 7 for [5, 6], and a worker killed at startup
    lost the first records of a partition."""
    tp = TP("shop.carts", 0)
    books = SimpleNamespace(_acked={tp: list(acked)}, _acked_index={tp: set(acked)},
                            _gap=defaultdict(IntervalTree), _committed_offset=defaultdict(lambda: None),
                            _shopstream_log_start={tp: start})
    assert Consumer._new_offset(books, tp) == expected


def test_a_gap_at_the_start_of_a_log_is_a_commit_block():
    """Seen failing in CI: offset 0 read as "nothing committed", so a partition never
    committed whose first records were read but not acknowledged stayed stuck."""
    assert commit_block([5, 6], committed=0, in_flight=set()) == CommitBlock(0, (0, 4))


def test_no_commit_block_while_the_commit_can_advance_or_the_gap_is_being_processed():
    assert commit_block([], committed=11, in_flight=set()) is None
    assert commit_block([11, 12, 14], committed=11, in_flight=set()) is None  # commits up to 13
    assert commit_block([15], committed=11, in_flight={12}) is None  # its micro-batch is running
    assert commit_block([15], committed=None, in_flight=set()) is None  # nothing committed yet


class _Books(SimpleNamespace):
    """Faust's commit books for two partitions, and the seeks asked of the consumer."""

    flow_active, _paused_partitions, _read_offset, highwaters = True, frozenset(), {}, {}

    def assignment(self):
        return set(self._committed_offset)

    def highwater(self, tp):
        return self.highwaters.get(tp)

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


def test_repair_rereads_a_partition_never_committed_from_where_its_log_starts():
    tp = TP("shop.clicks", 0)
    consumer = _Books(_acked={tp: [5, 6]}, _acked_index={tp: {5, 6}}, _committed_offset={tp: None},
                      _shopstream_log_start={tp: 0}, _unacked_messages=[], seeks=[])
    gaps: dict = {}
    asyncio.run(repair_commits(consumer, gaps))
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer.seeks == [(tp, 0)]


def test_repair_learns_where_a_log_starts_when_the_assignment_did_not_say():
    tp = TP("shop.clicks", 0)

    class Starts(_Books):
        async def earliest_offsets(self, *tps):
            return dict.fromkeys(tps, 3)

    consumer = Starts(_acked={tp: [5]}, _acked_index={tp: {5}}, _committed_offset={tp: None},
                      _unacked_messages=[], seeks=[])
    asyncio.run(repair_commits(consumer, {}))
    assert consumer._shopstream_log_start == {tp: 3}


def test_repair_skips_a_partition_revoked_meanwhile_and_survives_a_failing_seek():
    tp = TP("shop.clicks", 0)

    class Revoking(_Books):
        async def seek(self, tp, offset):
            raise AssertionError("seek on a partition this worker no longer owns")

    consumer = Revoking(_acked={tp: [989, 989, 991]}, _acked_index={tp: {989, 991}},
                        _committed_offset={tp: 990}, _unacked_messages=[], seeks=[])
    asyncio.run(repair_commits(consumer, {}))  # the seek raises: logged, not raised
    assert consumer._acked[tp] == [991]


def _message(tp: TP, offset: int):
    from faust.types.tuples import ConsumerMessage

    message = ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, None, None, b"", None, tp=tp)
    message.incref()  # delivered to one stream
    return message


def _offsets(messages) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def test_repair_rereads_a_partition_with_records_waiting_that_nothing_reads_for_a_whole_check():
    stalled, busy, done = TP("shop.carts", 0), TP("shop.carts", 1), TP("shop.clicks", 0)
    consumer = _Books(_acked={}, _acked_index={}, _committed_offset={stalled: 136, busy: 40, done: 77},
                      _read_offset={stalled: 136, busy: 40}, highwaters={stalled: 415, busy: 383, done: 77},
                      _unacked_messages=[], seeks=[])
    gaps: dict = {}
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer.seeks == []  # not yet: it may be read meanwhile
    consumer._read_offset = {stalled: 136, busy: 90}  # one partition was read meanwhile, the other not
    asyncio.run(repair_commits(consumer, gaps))
    assert consumer.seeks == [(stalled, 136)]


def test_no_stall_while_a_partition_is_paused_in_hand_or_the_flow_is_stopped():
    tp = TP("shop.carts", 0)
    for change in ({"_paused_partitions": {tp}}, {"flow_active": False},
                   {"_unacked_messages": [SimpleNamespace(tp=tp, offset=136)]}):
        consumer = _Books(_acked={}, _acked_index={}, _committed_offset={tp: 136}, highwaters={tp: 415},
                          _unacked_messages=[], seeks=[])
        for name, value in change.items():
            setattr(consumer, name, value)
        gaps: dict = {}
        for _ in range(3):
            asyncio.run(repair_commits(consumer, gaps))
        assert consumer.seeks == [], change


def test_in_order_keeps_each_partition_in_offset_order_from_its_committed_offset():
    a, b = TP("t", 0), TP("t", 1)
    in_order = InOrder()
    verdict = in_order.sort([_message(a, 5), _message(b, 0), _message(a, 6), _message(b, 1)], True,
                            {a: 5, b: 0}.get, 0.0)
    assert _offsets(verdict.keep) == [(0, 5), (1, 0), (0, 6), (1, 1)]
    assert verdict.drop == [] and verdict.reread == {} and verdict.gaps == []


def test_a_record_past_a_skipped_one_waits_while_the_partition_is_read_again():
    """faust-streaming#596 after a restart: offsets 8..11 marked read and never delivered.
    Processing 12 first would make the entity states ignore 8..11 for good."""
    a, b = TP("t", 0), TP("t", 1)
    in_order = InOrder()
    in_order.sort([_message(a, 7), _message(b, 3)], True, {a: 7, b: 3}.get, 0.0)
    verdict = in_order.sort([_message(a, 12), _message(b, 4), _message(a, 13)], True, {}.get, 0.0)
    assert _offsets(verdict.keep) == [(1, 4)]
    assert _offsets(verdict.drop) == [(0, 12), (0, 13)]
    assert verdict.reread == {a: 8}
    # Records fetched before the seek still come: dropped, without reading again, for a while.
    verdict = in_order.sort([_message(a, 14)], True, {}.get, 1.0)
    assert _offsets(verdict.drop) == [(0, 14)] and verdict.reread == {}
    assert in_order.sort([_message(a, 15)], True, {}.get, 2.5).reread == {a: 8}  # then it does
    # Read again from 8: in order now.
    verdict = in_order.sort([_message(a, 8), _message(a, 9)], True, {}.get, 3.0)
    assert _offsets(verdict.keep) == [(0, 8), (0, 9)] and verdict.reread == {}


def test_the_first_record_after_an_assignment_must_be_the_committed_offset():
    a = TP("t", 0)
    in_order = InOrder()
    verdict = in_order.sort([_message(a, 3)], True, {a: 0}.get, 0.0)  # 0..2 never delivered
    assert verdict.keep == [] and verdict.reread == {a: 0}
    in_order.forget()
    assert _offsets(in_order.sort([_message(a, 3)], True, {}.get, 0.0).keep) == [(0, 3)]  # start unknown


def _lacks(answer: bool, asked: list):
    async def log_lacks(tp, first, last):
        asked.append((tp, first, last))
        return answer
    return log_lacks


def test_a_gap_that_comes_back_the_same_passes_once_the_broker_says_the_log_lacks_it():
    a, asked = TP("t", 0), []
    in_order = InOrder(log_lacks=_lacks(True, asked))
    in_order.sort([_message(a, 0)], True, {a: 0}.get, 0.0)
    assert in_order.sort([_message(a, 2)], True, {}.get, 0.0).reread == {a: 1}  # a transaction marker at 1
    verdict = in_order.sort([_message(a, 2), _message(a, 3)], True, {}.get, 0.5)
    assert verdict.keep == [] and verdict.suspects == [(a, 1, 1)] and verdict.reread == {}
    assert asyncio.run(in_order.check(verdict.suspects, 0.5)) == {a: 1} and asked == [(a, 1, 1)]
    verdict = in_order.sort([_message(a, 2), _message(a, 3)], True, {}.get, 0.6)  # read again from 1
    assert _offsets(verdict.keep) == [(0, 2), (0, 3)] and verdict.gaps == [(a, 1, 1)]


def test_a_gap_that_comes_back_the_same_is_not_passed_while_the_log_holds_it():
    """Seen in CI: a fetch under way when the partition was sought delivered 1825.. again,
    Faust dropped the sought 170.. below them, and the gap 170..1824 came back the same;
    it was passed, and 1,655 clicks the log held were never processed."""
    a, asked = TP("t", 1), []
    in_order = InOrder(log_lacks=_lacks(False, asked))
    assert in_order.sort([_message(a, 1825)], True, {a: 170}.get, 0.0).reread == {a: 170}
    verdict = in_order.sort([_message(a, 1825), _message(a, 1826)], True, {}.get, 0.5)
    assert verdict.keep == [] and verdict.gaps == [] and verdict.suspects == [(a, 170, 1824)]
    assert asyncio.run(in_order.check(verdict.suspects, 0.5)) == {a: 170}
    verdict = in_order.sort([_message(a, 1825)], True, {}.get, 3.0)  # the race again
    assert verdict.keep == [] and verdict.gaps == [] and verdict.reread == {a: 170}
    verdict = in_order.sort([_message(a, 170), _message(a, 171)], True, {}.get, 3.5)  # the seek lands
    assert _offsets(verdict.keep) == [(1, 170), (1, 171)]
    assert not InOrder().sort([_message(a, 5)], True, {a: 5}.get, 0.0).suspects  # (in order: nothing to ask)


def test_a_gap_is_never_passed_without_a_broker_to_ask_or_when_asking_fails():
    a = TP("t", 0)

    async def failing(tp, first, last):
        raise RuntimeError("broker down")

    for in_order in (InOrder(), InOrder(log_lacks=failing)):
        in_order.sort([_message(a, 4)], True, {a: 1}.get, 0.0)
        verdict = in_order.sort([_message(a, 4)], True, {}.get, 0.5)
        assert asyncio.run(in_order.check(verdict.suspects, 0.5)) == {a: 1}
        assert in_order.sort([_message(a, 4)], True, {}.get, 3.0).keep == []


def test_redeliveries_are_kept_and_records_before_the_assignments_seek_are_not():
    a = TP("t", 0)
    in_order = InOrder()
    before = in_order.sort([_message(a, 40), _message(a, 41)], False, {a: 30}.get, 0.0)
    assert before.keep == [] and _offsets(before.drop) == [(0, 40), (0, 41)] and before.reread == {}
    in_order.sort([_message(a, 30), _message(a, 31)], True, {a: 30}.get, 0.0)
    verdict = in_order.sort([_message(a, 30), _message(a, 32)], True, {}.get, 0.0)  # 30 again: a redelivery
    assert _offsets(verdict.keep) == [(0, 30), (0, 32)] and verdict.reread == {}


class _Consumer:
    def __init__(self, tps, committed):
        self._committed_offset, self._shopstream_sought = committed, True
        self._unacked_messages, self._tps, self.acked, self.seeks = set(), set(tps), [], []
        self._gap = defaultdict(IntervalTree)

    def assignment(self):
        return self._tps

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def ack(self, message):
        self.acked.append(message.offset)
        return True


def test_admit_never_acknowledges_a_dropped_record_and_reads_its_partition_again():
    a = TP("t", 0)
    consumer = _Consumer([a], {a: 7})
    messages = [_message(a, 7), _message(a, 9)]
    consumer._unacked_messages.update(messages)
    kept = asyncio.run(InOrder("test").admit(consumer, messages))
    assert _offsets(kept) == [(0, 7)] and consumer.seeks == [(a, 8)]
    assert messages[1] not in consumer._unacked_messages  # a rebalance does not wait for it
    for message in messages:  # what Faust does after the batch
        message.ack(consumer)
    assert consumer.acked == [7]


def test_faust_marks_no_gap_of_its_own_and_a_confirmed_one_is_noted():
    a = TP("t", 0)
    consumer = _Consumer([a], {a: None})
    asyncio.run(Consumer._add_gap(consumer, a, 3, 5))  # what Faust calls on a jump in offsets
    assert not consumer._gap[a]
    asyncio.run(confirm_gap(consumer, a, 3, 5))
    assert sorted((i.begin, i.end) for i in consumer._gap[a]) == [(3, 6)]


def test_admit_survives_a_failing_seek_and_tries_again_with_a_later_record():
    a = TP("t", 0)

    class Failing(_Consumer):
        async def seek(self, tp, offset):
            self.seeks.append((tp, offset))
            raise RuntimeError("rebalancing")

    consumer = Failing([a], {a: 7})
    in_order = InOrder("test", patience_s=0.0)
    assert asyncio.run(in_order.admit(consumer, [_message(a, 9)])) == []
    assert asyncio.run(in_order.admit(consumer, [_message(a, 10)])) == []
    assert consumer.seeks == [(a, 7), (a, 7)]


def test_a_partition_whose_missing_record_never_comes_is_read_again_in_time():
    """Seen in CI: the seek raced a fetch, Faust dropped every record of the reading again
    (below the offset it had handed out), nothing later came to show the gap, and the
    worker waited for good."""
    a = TP("t", 0)
    consumer = _Consumer([a], {a: 174})
    in_order = InOrder("test", patience_s=2.0)
    assert asyncio.run(in_order.admit(consumer, [_message(a, 180)])) == []
    assert consumer.seeks == [(a, 174)]
    assert in_order.overdue(time.monotonic() + 1.0) == {}  # not yet
    assert in_order.overdue(time.monotonic() + 2.5) == {a: 174}
    assert in_order.overdue(time.monotonic() + 3.0) == {}  # noted as read again just now
    in_order.sort([_message(a, 174)], True, {}.get, time.monotonic())
    assert in_order.overdue(time.monotonic() + 10.0) == {}  # it came: nothing is missing


def test_a_seek_runs_in_the_consumer_thread_where_aiokafka_fetches():
    """aiokafka's seek deletes the partition's buffered records; run from the worker's
    thread it raced the fetcher in the consumer thread (KeyError, the worker crashed)."""
    class Thread:
        inside, seeks = False, []

        async def call_thread(self, fun, *args):
            self.inside = True
            try:
                return fun(*args)
            finally:
                self.inside = False

        def seek(self, tp, offset):
            self.seeks.append((tp, offset, "consumer thread" if self.inside else "worker thread"))

    consumer = SimpleNamespace(_thread=Thread())
    tp = TP("shop.carts", 0)
    asyncio.run(Consumer._seek(consumer, tp, 136))  # what Faust's seek calls
    assert consumer._thread.seeks == [(tp, 136, "consumer thread")]


def test_the_worker_consumer_is_the_guarded_one_on_a_tested_faust_only(monkeypatch):
    """A worker refuses an untested faust-streaming release (``Runtime.start``) and, on a
    tested one, builds ``commits.Consumer``, not Faust's, whose commits pass an
    unacknowledged offset (the case of ``test_faust_commits_never_pass...``)."""
    from faust.transport.consumer import Consumer as FaustConsumer

    from streams.app import create_app, settings
    from streams.commits import UntestedFaust, check_faust_version
    from streams.runtime import Runtime

    with pytest.raises(UntestedFaust, match="SHOPSTREAM_ALLOW_UNTESTED_FAUST"):
        check_faust_version("0.99.0")
    # the worker's producer connects when built: this test has no broker to give it
    monkeypatch.setattr("streams.app.worker_producer", lambda: "the producer")
    app = create_app(settings)
    assert type(app.consumer) is not Consumer  # an app that no runtime started: Faust's own
    app = create_app(settings)
    Runtime(settings, app).start()
    assert type(app.consumer) is Consumer
    tp = TP("shop.clicks", 0)
    books = SimpleNamespace(_acked={tp: [12, 13]}, _acked_index={tp: {12, 13}}, _gap=defaultdict(IntervalTree),
                            _committed_offset=defaultdict(lambda: None, {tp: 11}))
    assert FaustConsumer._new_offset(books, tp) == 14 and app.consumer._new_offset.__func__(books, tp) is None
