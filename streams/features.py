"""The feature agent: applies entity updates to changelog-backed state, writes features.

Each record on the internal updates topic holds the updates for the entities that its
partition owns (see ``streams.agents.owner``), so every entity is updated by exactly
one worker, and its state lives in the ``entity-state`` table on that partition. A
restarted worker recovers the table from its changelog, and updates redelivered after
a crash are ignored by the states themselves, so features end up as if nothing had
happened (at-least-once delivery, exactly-once effect).

Per micro-batch: check every record (forged or malformed ones are dead-lettered and
change nothing), apply its updates, write the newest row per entity to the online store
and every row to the offline log, then the changed states to the table, and only then
let the batch be acknowledged (``handle``). Orders and labels reach the order's state
first, which passes them on (``scorers.routing.order_updates``) to the partitions of the
entities they count in, once per order id; a label that arrives before its order (the
topics are read at their own speeds) waits in the order's state until the order comes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict

import confluent_kafka
import faust
from faust.types import TP

from scorers.routing import Update, grade, order_updates
from scorers.states import STATE_VERSION, STATES, Batch, State, StateLimits, new_state, set_limits
from scorers.update_checks import BadUpdate, check_update
from scorers.views import state_ttl_s
from shopstream.rows import feature_table
from shopstream.signing import MAC_BYTES, Unsigned
from streams import metrics
from streams.agents import count, dead_letter, each_batch, fatal, send_updates
from streams.app import (
    app,
    offline_log,
    registered_store,
    retrying,
    save,
    saved,
    settings,
    signer,
    state_table,
    table_expiry,
    updates_topic,
    updates_topic_name,
)
from streams.codecs import decode_state, decode_updates, encode_states, state_expiry

# Keyed by b"kind:id". use_partitioner: a key's changelog partition is its owner partition
# (streams.app.partitioner), the same partition its updates arrive on.
log = logging.getLogger(__name__)
# Values are the states already encoded (``encode_state``): a snapshot taken when it is set.
# Faust encodes a changelog record when its producer buffer drains, so a live object in
# the table would be encoded with whatever a later batch had applied to it by then, and a
# worker killed before that batch's writes would restore a state that counts them.
entity_state = state_table(f"entity-state-v{STATE_VERSION}")
_live: OrderedDict[bytes, State] = OrderedDict()
"""Decoded states of the entities this worker owns, the most recently used last, so that
each is decoded once, not once per batch; at most ``features.live_states`` (``keep_live``);
forgotten at every rebalance, when ownership can change."""


def keep_live(states: dict[bytes, State]) -> None:
    """Hold ``states`` decoded, as the most recently used, and drop the least recently used
    beyond ``features.live_states``: they are saved (a batch's states are written before
    its records are acknowledged; the write-back cache keeps its own until it writes them),
    and decoded again when their entity comes back."""
    for key, state in states.items():
        _live[key] = state
        _live.move_to_end(key)
    while len(_live) > settings.features.live_states:
        _live.popitem(last=False)
_online = None  # the OnlineWriter, built by online_writer()
_online_lock = threading.Lock()
SOURCE_TOPICS = {*settings.topics.inputs().values(), updates_topic_name(settings)}
TTL_S = {kind: state_ttl_s(kind, settings.features.lateness_s, settings.features.order_state_days)
         for kind in STATES}


def online_writer():
    """The ``OnlineWriter``, built once by whichever thread asks first: the worker's
    start-up (``streams.app.prepare``) or the first batch's write, which waits for it."""
    global _online
    with _online_lock:
        if _online is None:
            # Feast takes seconds to import and apply; the worker is ready before that ends.
            from shopstream.online import OnlineWriter

            _online = OnlineWriter(registered_store())
    return _online


_NO_SUCH_PARTITION = {confluent_kafka.KafkaError._UNKNOWN_PARTITION,
                      confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART}


class EndOffsets:
    """End offsets of the partitions that entity updates name as their source, looked up
    again only when an update names an offset past the one known: a real update's
    offset is always below its source's end offset, a forged one need not be."""

    def __init__(self):
        self._known: dict[TP, int] = {}
        self._client: confluent_kafka.Consumer | None = None
        self._lock = threading.Lock()

    def _ask_broker(self, partitions: set[TP]) -> dict[TP, int]:
        """End offsets from the broker, by a client of this lookup's own: Faust's consumer
        answers through its thread, which stops before a worker's last wait for the batch
        in hand, so a batch that asked it then waited for good (seen: ``--processes 2``
        hanging on stop)."""
        with self._lock:
            if self._client is None:
                self._client = confluent_kafka.Consumer({
                    **settings.kafka.client_config(), "group.id": f"{settings.app_id}-end-offsets",
                    "enable.auto.commit": False})
            return {tp: self._end_offset(tp) for tp in partitions}

    def _end_offset(self, tp: TP) -> int:
        try:
            return self._client.get_watermark_offsets(
                confluent_kafka.TopicPartition(tp.topic, tp.partition), timeout=10)[1]
        except confluent_kafka.KafkaException as exc:
            if exc.args and exc.args[0].code() in _NO_SUCH_PARTITION:  # a forged partition
                return 0
            raise

    async def check(self, sources: set[tuple[str, int, int]]) -> None:
        """Raise ``BadUpdate`` for a source offset that its partition does not have yet."""
        beyond = {TP(topic, partition) for topic, partition, offset in sources
                  if offset >= self._known.get(TP(topic, partition), -1)}
        assigned = app.consumer.assignment() if beyond else set()
        for tp in beyond & assigned:  # the consumer's own highwater first: no round trip
            if (local := app.consumer.highwater(tp)) is not None:
                self._known[tp] = max(self._known.get(tp, -1), local)
        beyond = {TP(t, p) for t, p, o in sources if o >= self._known.get(TP(t, p), -1)}
        if beyond:  # another worker's inputs, or a forged offset: ask the broker
            self._known.update(await asyncio.to_thread(self._ask_broker, beyond))
        for topic, partition, offset in sources:
            end = self._known.get(TP(topic, partition))
            if end is None or offset >= end:
                raise BadUpdate(f"offset {offset} of {topic}:{partition} does not exist yet "
                                f"(end offset {end})")


end_offsets = EndOffsets()


def checked_updates(message: faust.types.Message) -> tuple[int, list[Update], set[tuple[str, int, int]]]:
    """The updates of one internal record, each checked (``scorers.update_checks``), and
    the source offsets they name, or an exception that is the record's own fault: a
    record is applied whole or not at all."""
    ingested_ms, updates = decode_updates(signer.verify(None, message.value))
    if not isinstance(ingested_ms, int) or isinstance(ingested_ms, bool):
        raise BadUpdate(f"ingestion time {ingested_ms!r} is not milliseconds")
    return ingested_ms, updates, {check_update(update, SOURCE_TOPICS) for update in updates}


async def offsets_exist(sources: set[tuple[str, int, int]]) -> None:
    """``BadUpdate`` if a source offset does not exist yet. Looking the end offsets up can
    fail for reasons that are no record's (a broker moving a leader at startup): those are
    retried, then stop the worker, so that no good record is dead-lettered for them."""
    for attempt in range(5):
        try:
            return await end_offsets.check(sources)
        except BadUpdate:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker's, not the record's
            if attempt == 4:
                raise
            log.warning("looking up end offsets failed (%r); trying again", exc)
            await asyncio.sleep(0.2 * 2 ** attempt)


def apply_record(message: faust.types.Message, updates: list[Update], states: dict[bytes, State],
                 batch: Batch, follow_ups: list[Update]) -> None:
    """Apply the (checked) updates of one internal record; their rows are the batch's."""
    via = f"{message.topic}:{message.partition}"
    for index, update in enumerate(updates):
        key = f"{update.kind}:{update.entity_id}".encode()
        state = states.get(key) or live_state(key) or new_state(
            update.kind, update.entity_id, settings.features.lateness_s)
        states[key] = state
        if update.kind == "order":  # passed on once per order id (``order_updates``)
            what, caused = order_updates(state, update, via, message.offset, index)
            follow_ups += caused
            if outcome := grade(state, what):
                metrics.graded(outcome)
            if what in ORDER_METRICS:
                ORDER_METRICS[what].inc()
            elif what == "late":
                metrics.LATE_UPDATES.labels("order").inc()
            continue
        late = state.late
        batch.apply(state, update)
        if state.late > late:
            metrics.LATE_UPDATES.labels(update.kind).inc()


ORDER_METRICS = {"copy": metrics.DUPLICATE_ORDERS, "duplicate_label": metrics.DUPLICATE_LABELS,
                 "pending_label": metrics.PENDING_LABELS}


def write_online(rows: dict[str, list[tuple]]) -> int:
    """Write the newest row per entity of every view; return the rows written."""
    writer = online_writer()
    return sum(writer.write(view, view_rows) for view, view_rows in rows.items())


def write_offline(rows: dict[str, list[tuple]]) -> None:
    """Append every row to its view's offline log."""
    for view, view_rows in rows.items():
        offline_log.append(view, feature_table(view, view_rows))


async def handle(messages: list[faust.types.Message], sinks: Sinks) -> None:
    """Apply one run of a micro-batch's update records; their rows go to ``sinks``.

    Sinks first, then state: ``apply_batch`` writes the rows online and offline before
    the changed states it hands to the write-back cache are written, and the cache
    writes them to the table (and so to its changelog) before it acknowledges their
    records; Faust commits the offsets only after that. A worker killed before the
    writes finish restores states that do not include the batch, and reads the batch
    again, so no row is lost; one killed after them writes some rows twice, which later
    reads deduplicate.
    """
    states: dict[bytes, State] = {}
    batch = Batch()
    follow_ups: list[Update] = []
    oldest_ms = int(time.time() * 1000)
    processed: list[faust.types.Message] = []
    for message in messages:
        try:
            ingested_ms, updates, sources = checked_updates(message)
        except Exception as exc:  # noqa: BLE001 - forged or malformed: nothing applied
            await dead_letter(message, "unsigned" if isinstance(exc, Unsigned) else "bad_update", repr(exc), exc)
            continue
        try:
            await offsets_exist(sources)
        except BadUpdate as exc:  # an offset no source has: forged
            await dead_letter(message, "bad_update", repr(exc), exc)
            continue
        try:
            apply_record(message, updates, states, batch, follow_ups)
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the stream
            log.exception("applying %s:%s@%s failed", message.topic, message.partition,
                          message.offset)
            await dead_letter(message, "processing", repr(exc), exc)
            continue
        oldest_ms = min(oldest_ms, ingested_ms)
        processed.append(message)
    count(metrics.RECORDS, processed, "processed")
    sinks.add(batch.rows(), oldest_ms)  # view -> [(entity, ts, *features)], counts settled
    if follow_ups:
        await send_updates(follow_ups, oldest_ms)
    keep_live(states)
    cache.changed(states, messages)


SINK_ROWS = 65_536
"""How many rows ``Sinks`` holds before it writes them, whatever is left of the batch."""


class Sinks:
    """The feature rows of a micro-batch's runs, written online and offline together.

    A batch is applied in runs to bound the states decoded at once (``by_size``), but a
    write costs far more than a row (a Redis pipeline's round trip, an offline file), so
    the rows of every run wait here and are written once for the batch, or once they
    reach ``max_rows``. ``apply_batch`` writes them before the cache writes any state."""

    def __init__(self, max_rows: int = SINK_ROWS):
        self.max_rows = max_rows
        self.rows: dict[str, list[tuple]] = {}
        self.count = 0
        self.oldest_ms: int | None = None  # the oldest input record time of the rows held

    def add(self, rows: dict[str, list[tuple]], oldest_ms: int) -> None:
        """Hold ``rows`` (per view) from records whose oldest input time is ``oldest_ms``."""
        for view, view_rows in rows.items():
            if view_rows:
                self.rows.setdefault(view, []).extend(view_rows)
                self.count += len(view_rows)
                self.oldest_ms = oldest_ms if self.oldest_ms is None else min(self.oldest_ms, oldest_ms)

    def full(self) -> bool:
        return self.count >= self.max_rows

    async def write(self) -> None:
        """Write the rows held to the stores that are switched on, retrying until done."""
        if not self.count:
            return
        rows, oldest_ms = self.rows, self.oldest_ms
        if settings.features.online:
            written = await retrying("online", write_online, rows)
            metrics.BATCH_ROWS.observe(written)
            metrics.FRESHNESS.observe(max(time.time() - oldest_ms / 1000, 0.0))
        if settings.features.offline:
            await retrying("offline", write_offline, rows)
        self.rows, self.count, self.oldest_ms = {}, 0, None


ENTRY_BYTES = 250
"""What an unwritten state costs in the cache besides its encoded bytes and its key: the
dict's slot, the tuple, two floats and the objects' headers."""


class WriteBack:
    """The changed entity states not yet on their changelog, and the records that changed
    them, held unacknowledged until they are (a write-back cache, as Kafka Streams' record
    cache and Quix Streams' transaction cache are).

    ``flush`` writes one changelog record per changed entity, waits for Kafka's
    acknowledgements, and only then acknowledges the held records, so Faust never commits
    an offset past a state that is not written, and the sinks of a batch are always
    written before its states (``handle``). It runs every ``state_flush_s`` (after a batch
    or on a timer) and never while a batch is being handled (``lock``).
    """

    def __init__(self, interval_s: float, max_bytes: int):
        self.interval_s, self.max_bytes = interval_s, max_bytes
        self.lock = asyncio.Lock()
        self._dirty: dict[bytes, tuple[bytes, float, float]] = {}  # key: (encoded, watermark, expires)
        self._bytes = 0  # of the encoded states in _dirty
        self._held: list[faust.types.Message] = []
        self._since = time.monotonic()
        self._flusher: asyncio.Task | None = None
        # Since ``mark``: each changed key's entry before its first change, and how many
        # records were held; what ``rollback`` restores.
        self._undo: dict[bytes, tuple[bytes, float, float] | None] = {}
        self._held_at_mark = 0

    def changed(self, states: dict[bytes, State], messages: list[faust.types.Message]) -> None:
        """Note a handled run of records: its changed states, encoded now, so that holding
        them costs their encoded size and none stays decoded for the cache's sake (an
        entity changed again before the flush is encoded again and written once), and its
        records, held from now."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_due())
        if not self._dirty and not self._held:
            self._since = time.monotonic()
        changed = []
        for key, state in states.items():
            kind = key[:key.index(b":")].decode()
            changed.append((kind, state, state.watermark + TTL_S[kind]))
        for key, raw, (_, state, expires) in zip(states, encode_states(changed), changed, strict=True):
            before = self._dirty.get(key)
            self._undo.setdefault(key, before)
            if before is not None:
                self._bytes -= len(before[0]) + len(key) + ENTRY_BYTES
            self._dirty[key] = (raw, state.watermark, expires)
            self._bytes += len(raw) + len(key) + ENTRY_BYTES
        for message in messages:
            message.incref()
        self._held += messages

    def mark(self) -> None:
        """Note that the rows of every change so far are written: ``rollback`` undoes only
        what comes after."""
        self._undo = {}
        self._held_at_mark = len(self._held)

    def rollback(self) -> list[bytes]:
        """Undo the changes since ``mark``, whose rows are not written, and return their
        keys. Their records stay held by no one and are never acknowledged, so their
        offsets are not committed and the batch is read again after a restart."""
        for key, before in self._undo.items():
            if (now := self._dirty.pop(key, None)) is not None:
                self._bytes -= len(now[0]) + len(key) + ENTRY_BYTES
            if before is not None:
                self._dirty[key] = before
                self._bytes += len(before[0]) + len(key) + ENTRY_BYTES
        undone = list(self._undo)
        del self._held[self._held_at_mark:]
        self.mark()
        return undone

    def unwritten(self, key: bytes) -> State | None:
        """The changed state of ``key`` not yet on the changelog, if any, decoded."""
        held = self._dirty.get(key)
        return None if held is None else decode_state(held[0])

    def full(self) -> bool:
        """Whether the unwritten states hold ``max_bytes`` or more."""
        return self._bytes >= self.max_bytes

    def due(self) -> bool:
        """Whether the oldest change has waited ``interval_s``, or the cache is full."""
        return bool(self._held) and (time.monotonic() - self._since >= self.interval_s or self.full())

    async def _flush_when_due(self) -> None:
        """Flush when no batch comes to do it: the stream is quiet, or Faust has stopped
        the flow of records for a rebalance or a stop and waits for those in hand to be
        acknowledged (at once then, so that the worker leaves its group before a rebalance
        that another's leaving starts). A task of its own, not a Faust timer: Faust stops
        its timers before that last wait."""
        while True:
            await asyncio.sleep(0.05)
            stopping = app.should_stop or not app.consumer.flow_active  # a rebalance or a stop
            if self._held and stopping or self.due():
                try:
                    async with self.lock:
                        await self.flush()
                except Exception as exc:  # noqa: BLE001 - nothing acknowledged: see fatal
                    fatal("flushing entity states", exc)

    async def flush(self) -> None:
        """Write the changed states, then acknowledge the records held for them."""
        dirty, held = self._dirty, self._held
        self._dirty, self._held, self._bytes = {}, [], 0
        self.mark()
        if not dirty and not held:
            return
        saved = {}
        for key, (raw, watermark, expires) in dirty.items():
            expiry.saved(key, watermark, expires)
            saved[key] = raw
        await save(entity_state, saved)
        metrics.STATE_FLUSHES.observe(len(saved))
        consumer = app.consumer
        for message in held:
            message.ack(consumer)
        await expiry.sweep()

cache = WriteBack(settings.features.state_flush_s, settings.features.state_flush_bytes)
expiry = table_expiry(entity_state, updates_topic_name(settings), lambda raw: state_expiry(raw, MAC_BYTES),
                      cache.lock, dropped=lambda key: _live.pop(key, None))


def live_state(key: bytes) -> State | None:
    """The saved state of ``key``, decoded once while it stays in use."""
    state = _live.get(key) or cache.unwritten(key)
    if state is None:
        try:
            raw = saved(entity_state, key)  # one read of the store, a miss for a new entity
            if raw is not None:
                state = _live[key] = decode_state(raw)
        except Exception as exc:  # noqa: BLE001 - a damaged or forged changelog record: start afresh
            log.warning("entity %r: unreadable saved state (%r); starting it afresh", key, exc)
            metrics.UNREADABLE_STATES.inc()
            return None
    return state


@app.on_partitions_revoked.connect
async def forget_live_states(app, revoked, **kwargs) -> None:
    """At a rebalance: write what the cache holds while the partitions are still this
    worker's, then forget the states, whose ownership may change. (Dropping the held
    records instead would not do: Faust does not read them again in a worker that keeps
    their partition, and one never acknowledged stops its partition's commits for good.)"""
    async with cache.lock:
        await cache.flush()
    _live.clear()
    expiry.forget()


@app.agent(updates_topic, name="feature_agent")
async def feature_agent(stream: faust.StreamT) -> None:
    """Stage two: entity updates in, features out."""
    set_limits(StateLimits(distinct=settings.features.max_distinct,
                           cart_items=settings.features.max_cart_items))

    await each_batch(stream, settings.features.batch_rows, settings.features.batch_ms, apply_batch,
                     "the feature agent")


async def apply_batch(messages: list[faust.types.Message]) -> None:
    """Handle a micro-batch in runs of ``features.batch_update_bytes``, then write its rows
    once (``Sinks``) and the states it changed once, however many of its runs changed
    them (sooner if they fill the cache, and then the rows before them)."""
    async with cache.lock:
        sinks = Sinks()
        cache.mark()
        try:
            for run in by_size(messages, settings.features.batch_update_bytes):
                await handle(run, sinks)
                if sinks.full() or cache.full():
                    await sinks.write()  # a run's rows before its states
                    cache.mark()
                if cache.full():
                    await cache.flush()
            await sinks.write()
            cache.mark()
        except BaseException:
            # Cancelled (a stop) or failing before the rows were written: the stop flushes
            # the cache, and a saved state that counts records whose rows are not written
            # would make the restarted worker skip them when it reads them again.
            for key in cache.rollback():
                _live.pop(key, None)
            raise
        if cache.due():
            await cache.flush()


def by_size(messages: list, limit: int) -> list[list]:
    """``messages`` in runs of at most ``limit`` value bytes (a longer message alone): the
    entities one run touches are decoded at once, so the run's size bounds the states in
    memory, whatever a batch of update records holds (each can carry thousands).

    >>> from types import SimpleNamespace as M
    >>> [len(run) for run in by_size([M(value=b"x" * n) for n in (5, 5, 5, 20, 1)], 10)]
    [2, 1, 1, 1]
    """
    runs: list[list] = []
    size = limit + 1
    for message in messages:
        length = len(message.value or b"")  # a record without a value is handled (refused) too
        if size + length > limit:
            runs.append([])
            size = 0
        runs[-1].append(message)
        size += length
    return runs
