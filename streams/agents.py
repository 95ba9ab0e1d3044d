"""One agent per input topic: decode and validate each record, route it, log it.

Agents are thin adapters. Records arrive in micro-batches. A record that is not a valid
event becomes a dead letter on ``shop.dlq`` with its original bytes and origin; a valid
event is turned into entity updates (``scorers.routing.route``), which go to the
partition of the internal updates topic that owns each entity, and is appended to the
raw-event offline log. Faust flushes every send before it commits the batch's offsets,
and the log file is written before the batch is acknowledged,
so every input offset ends up processed or dead-lettered, and a worker never dies on
bad data.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import confluent_kafka
import faust
from mode.utils.aiter import aiter

from scorers.routing import Update, route
from shopstream.events import ERROR_KEPT, INPUTS, DeadLetter, Event, InvalidEvent, parse_events
from shopstream.offline import events_table
from streams import metrics
from streams.app import (
    app,
    delivered,
    dlq_topic,
    offline_log,
    owner_partition,
    retrying,
    send,
    settings,
    signer,
    survives,
    updates_topic,
)
from streams.codecs import encode_updates_chunked
from streams.commits import InOrder, broker_lacks

log = logging.getLogger(__name__)
WORKER = f"{settings.app_id}@{socket.gethostname()}"
PARTITIONS = settings.topics.partitions
PARSE_OPTIONS = settings.limits.parse_options()
UPDATE_RECORD_BYTES = min(1024 * 1024, settings.kafka.max_message_bytes // 2)


def owner(update: Update) -> int:
    """The updates-topic partition that owns the update's entity (stable across workers)."""
    return owner_partition(f"{update.kind}:{update.entity_id}".encode(), PARTITIONS)


async def dead_letter(message: faust.types.Message, reason: str, error: str,
                      exception: BaseException | None = None) -> None:
    """Send ``message`` to the dead-letter topic with why it failed: a short reason, the
    error, the exception's type and the record's origin. The letter fits in one record
    whatever the size of the original (``DeadLetter.of``); one that Kafka still refuses
    for a reason of its own is kept in a local file instead (``unsent_letter``)."""
    letter = DeadLetter.of(
        value=message.value, key=message.key, topic=message.topic,
        partition=message.partition, offset=message.offset, reason=reason, error=error,
        exception=type(exception).__name__ if exception is not None else None,
        record_ts_ms=round(message.timestamp * 1000) if message.timestamp else None,
        failed_at=datetime.now(UTC), worker=WORKER,
        max_bytes=settings.limits.dead_letter_bytes(settings.kafka.max_message_bytes),
    )
    try:
        # Waited for: Faust's flush before a commit gives up after 100 ms (see
        # streams.app.save), and a dead letter lost that way would leave its record neither
        # processed nor lettered.
        await delivered([send(dlq_topic, letter.model_dump_json().encode(), letter.record_key())],
                        "a dead letter")
    except confluent_kafka.KafkaException as exc:
        if exc.args[0].code() not in LETTER_REFUSED:
            raise
        unsent_letter(letter, exc)
        return
    metrics.DEAD_LETTERS.labels(message.topic, reason).inc()
    metrics.RECORDS.labels(message.topic, "dead_lettered").inc()


LETTER_REFUSED = {confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE, confluent_kafka.KafkaError.RECORD_LIST_TOO_LARGE,
                  confluent_kafka.KafkaError.INVALID_MSG, confluent_kafka.KafkaError.INVALID_TIMESTAMP,
                  confluent_kafka.KafkaError.INVALID_RECORD}
"""What Kafka answers about a record itself (as against a broker that is away, which
stops the worker without acknowledging): a letter refused so is refused again."""


def unsent_letter(letter: DeadLetter, exc: BaseException) -> None:
    """Keep a dead letter that Kafka refused in the worker's local file of unsent letters
    (its origin, sizes and digests: the value is in the input topic until retention
    removes it), count it and go on: a letter that cannot be sent must not stop the
    records behind it."""
    path = settings.home / "unsent-dead-letters.jsonl"
    log.error("Kafka refused the dead letter of %s:%s@%s (%r); its origin is kept in %s",
              letter.topic, letter.partition, letter.offset, exc, path)
    kept = letter.model_copy(update={"payload_b64": "", "key_b64": None,
                                     "truncated": True, "key_truncated": letter.key_bytes is not None,
                                     "error": f"{letter.error} (unsent: {exc!r})"[:ERROR_KEPT]})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(kept.model_dump_json() + "\n")
    except OSError as error:  # a full disk must not stop the stream either: the log has it
        log.error("could not keep the unsent dead letter in %s (%r): %s", path, error, kept.model_dump_json())
    metrics.UNSENT_LETTERS.labels(letter.topic).inc()
    metrics.RECORDS.labels(letter.topic, "unsent_letter").inc()


def decode_all(kinds: list[str], messages: list[faust.types.Message],
               now: datetime) -> list[Event | InvalidEvent]:
    """The event in each message (of the input kind at the same place in ``kinds``), or the
    ``InvalidEvent`` that says why there is none: one batch validation per kind."""
    results: list[Event | InvalidEvent | None] = [None] * len(messages)
    places: dict[str, list[int]] = defaultdict(list)
    for i, kind in enumerate(kinds):
        places[kind].append(i)
    for kind, where in places.items():
        try:
            parsed = parse_events(INPUTS[kind], [messages[i].value for i in where], now=now,
                                  **PARSE_OPTIONS)
        except Exception:  # noqa: BLE001 - a bug, not a bad record: find the records that cause it
            log.exception("validating a batch of %d %s records failed; one by one", len(where), kind)
            parsed = [_decode_one(kind, messages[i], now) for i in where]
        for i, result in zip(where, parsed, strict=True):
            results[i] = result
    return results


def _decode_one(kind: str, message: faust.types.Message, now: datetime) -> Event | InvalidEvent:
    try:
        return parse_events(INPUTS[kind], [message.value], now=now, **PARSE_OPTIONS)[0]
    except Exception as exc:  # noqa: BLE001 - dead-lettered as a processing failure
        return InvalidEvent("processing", repr(exc))


def count(counter, messages: list[faust.types.Message], *labels: str) -> None:
    """Count ``messages`` in a Prometheus counter labelled by topic: once per topic."""
    for topic, n in Counter(message.topic for message in messages).items():
        counter.labels(topic, *labels).inc(n)


async def send_updates(updates: list[Update], ingested_ms: int) -> None:
    """Send updates to the partitions that own their entities, in as few records as fit
    under the broker's record size."""
    by_partition: dict[int, list[Update]] = defaultdict(list)
    for update in updates:
        by_partition[owner(update)].append(update)
    pending = []
    for partition, group in by_partition.items():
        for value in encode_updates_chunked(ingested_ms, group, UPDATE_RECORD_BYTES):
            # force: publish now rather than attached to the next commit, which would hold
            # the updates back for a whole commit interval. A resend after a crash is
            # ignored by the entity states.
            pending.append(send(updates_topic, signer.sign(None, value), None, partition))
    # Return only once Kafka has them: Faust's flush before a commit gives up after 100 ms
    # (see streams.app.save), so without this wait an input offset could commit while its
    # updates were still in the producer's buffer, and a worker killed then lost them
    # (the recovery test saw a user's clicks_count_10m short by four after a restart).
    await delivered(pending, "entity updates")


def fatal(what: str, exc: BaseException) -> None:
    """Exit now: an error that no record explains escaped a batch. Faust would
    acknowledge the whole batch on the way out of ``take_events``, committing records
    that were never processed; exiting first leaves them to be read again."""
    import os

    log.critical("%s failed outside any one record (%r); exiting with status 70 so that the "
                 "batch is read again", what, exc, exc_info=exc)
    logging.shutdown()
    os._exit(70)


async def handle(kind: str, messages: list[faust.types.Message]) -> None:
    """Process one micro-batch of input records: each ends processed or dead-lettered."""
    count(metrics.EVENTS_IN, messages)
    valid: list[tuple[Event, faust.types.Message, list[Update]]] = []
    events = decode_all([kind] * len(messages), messages, datetime.now(UTC))
    for message, event in zip(messages, events, strict=True):
        if isinstance(event, InvalidEvent):
            await dead_letter(message, event.reason, event.detail, event)
            continue
        try:
            updates = route(event, f"{message.topic}:{message.partition}", message.offset)
        except Exception as exc:  # noqa: BLE001 - a bug on one record must not stop the stream
            log.exception("%s at %s:%s@%s failed", kind, message.topic, message.partition,
                          message.offset)
            await dead_letter(message, "processing", repr(exc), exc)
        else:
            valid.append((event, message, updates))
    if not valid:
        return
    try:
        await write(kind, valid)
    except Exception:  # noqa: BLE001 - not a sink outage (those exit): find the records
        if len(valid) == 1:
            raise
        log.exception("a batch of %d %s records failed; writing them one by one", len(valid), kind)
        for item in valid:
            try:
                await write(kind, [item])
            except Exception as exc:  # noqa: BLE001 - this record's own failure
                await dead_letter(item[1], "processing", repr(exc), exc)


async def write(kind: str, valid: list[tuple[Event, faust.types.Message, list[Update]]]) -> None:
    """Send the updates of valid events and append them to the raw offline log."""
    table = None
    if settings.features.offline:  # built first: a row that cannot be written sends nothing
        table = events_table([e for e, _, _ in valid],
                             [(m.topic, m.partition, m.offset) for _, m, _ in valid])
    ingested_ms = min(message.timestamp for _, message, _ in valid) * 1000
    await send_updates([u for _, _, updates in valid for u in updates], int(ingested_ms))
    if table is not None:
        await retrying("offline", offline_log.append, f"raw_{kind}", table)
    written = [message for _, message, _ in valid]
    count(metrics.EVENTS_OUT, written)
    count(metrics.RECORDS, written, "processed")


async def each_batch(stream: faust.StreamT, rows: int, ms: float, handle: Callable, what: str,
                     enabled: Callable[[], bool] = lambda: True, *, arrival: bool = False) -> None:
    """The loop of every agent: ``await handle(messages)`` for each micro-batch of at most
    ``rows`` records or ``ms`` milliseconds, or, with ``arrival``, of what has arrived
    (``take_arrived``: for agents whose answers are awaited). ``handle`` deals with each
    record's own failures; anything that escapes it is ``fatal``, so the batch is never
    acknowledged unprocessed. Each partition's records come in offset order, none
    skipped (``streams.commits.InOrder``)."""
    take = take_arrived(stream, rows, ms / 1000) if arrival else stream.take_events(rows, within=ms / 1000)
    in_order = InOrder(what, log_lacks=broker_lacks(settings))
    IN_ORDER.append(in_order)
    async for records in take:  # [faust.Event]
        try:
            if enabled():
                await _admit_and_handle(in_order, records, handle)
        except Exception as exc:  # noqa: BLE001 - see fatal
            fatal(what, exc)
        finally:
            del records  # see _admit_and_handle


async def _admit_and_handle(in_order: InOrder, records: list, handle: Callable) -> None:
    """One batch of ``each_batch``, in a frame of its own, which no reference to the
    batch outlives: its loop must hold none while it waits for the next batch. At a
    rebalance Faust waits until every message it handed out is acknowledged or gone
    (``Consumer.wait_empty``, a weak set emptied by garbage collection); a message read
    by two agents (clicks: the click and the recs agents) whose second copy Faust dropped
    from that agent's queue (``flow_control.clear``) is then gone only once nothing holds
    it. A finished batch left in a loop variable held it, and the rebalance waited for
    ever: every commit of the worker stuck, after Kafka's first absence
    (``tests/faults/test_broker_restart.py``).

    Each admitted message holds one more reference while its batch is handled, released
    only once ``handle`` returns: a stop (SIGTERM, a supervisor stopping the siblings of
    a process that exited, a crash in Faust) cancels the agent mid-batch, and the take
    loop's ``finally`` then acknowledges the batch it handed out; the reference keeps
    those messages unacknowledged, so the consumer's last commit passes them by."""
    messages = await in_order.admit(app.consumer, [record.message for record in records])
    if messages:
        for message in messages:
            message.incref()
        await handle(messages)
        consumer = app.consumer
        for message in messages:
            message.ack(consumer)


IN_ORDER: list[InOrder] = []
"""Every agent's ``InOrder``, forgotten at each rebalance."""


@app.timer(interval=1.0)
@survives
async def read_skipped_again() -> None:
    """Read again the partitions whose missing record has not come (``InOrder.retry``)."""
    for in_order in IN_ORDER:
        try:
            await in_order.retry(app.consumer)
        except Exception as exc:  # noqa: BLE001 - a timer must not die; it runs again
            log.warning("reading skipped records again failed (%r)", exc)


@app.on_partitions_revoked.connect
async def read_in_order_afresh(app, revoked, **kwargs) -> None:
    """At a rebalance: records wait for the new assignment's seek, and then start from
    the committed offsets (``InOrder``)."""
    app.consumer._shopstream_sought = False
    for in_order in IN_ORDER:
        in_order.forget()
    READ_FIRST.forget()


async def take_arrived(stream: faust.StreamT, max_: int, within: float) -> AsyncIterator[list[faust.types.EventT]]:
    """Micro-batches sized by arrival: Faust's ``take_events``, except that a batch is
    handed over as soon as nothing more is waiting in the stream's queue, not after
    ``within`` seconds. A lone order is answered at once; under load, what arrived while
    the last batch was being handled makes the next one (up to ``max_``). ``within``
    only bounds the wait for a queue that never runs dry. Acknowledgements are Faust's:
    a batch's events are acknowledged after the loop body that handled them returns."""
    buffer: list[faust.types.EventT] = []
    ready, consumed = asyncio.Event(), asyncio.Event()
    consuming: asyncio.Future | None = None

    async def add_to_buffer(value):
        nonlocal consuming
        if consuming is not None:  # the loop body is handling a batch: wait for it
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("a taken value without its event")
        buffer.append(event)
        if len(buffer) >= max_:
            ready.set()
            consumed.clear()
            await stream.wait(consumed)  # never more than max_ in a batch
        elif stream.channel.empty():
            ready.set()
        return value

    acks, stream.enable_acks = stream.enable_acks, False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))  # noqa: SLF001 - as take_events does
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(ready, timeout=within)
            if not buffer:
                continue
            consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(buffer)
            finally:
                for event in buffer:
                    await stream.ack(event)
                buffer.clear()
                if not consuming.done():
                    consuming.set_result(None)
                ready.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add_to_buffer)  # noqa: SLF001

class ReadFirst:
    """The order agent routes an order's own updates only once the fraud agent of the
    same worker has read the features it scores that order on.

    Both read ``shop.orders``; the order's updates reach the online store three hops
    later (order agent, the order's state, the entities' states). Without this, a fraud
    agent behind by a burst read counts that already held the order it was scoring
    (1,000 of 1,500 orders in ``tests/integration/test_fraud.py``), so a model's inputs,
    and the drift watched on them, depended on the scorer's lag. Per partition it keeps
    the next offset the fraud agent has not read; the order agent waits for its batch's
    offsets to be below it, at most ``timeout_s`` (then it goes on, and says so: a
    stalled scorer must not stall the features; 0 switches the wait off). Inactive in a
    worker without the ``fraud`` role, whose orders another group scores: there the race
    stays (docs/operations.md)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.enabled: Callable[[], bool] = lambda: False  # set by the fraud agent's module
        self._read: dict = {}  # {tp: the next offset not read yet}
        self._changed = asyncio.Condition()  # bound to the loop that first uses it

    async def read(self, messages: list) -> None:
        """The fraud agent has read the features of ``messages`` (each with ``tp``, ``offset``)."""
        for message in messages:
            self._read[message.tp] = max(self._read.get(message.tp, 0), message.offset + 1)
        async with self._changed:
            self._changed.notify_all()

    def is_read(self, messages: list) -> bool:
        return all(self._read.get(m.tp, 0) > m.offset for m in messages)

    async def wait(self, messages: list) -> bool:
        """Wait until every one of ``messages`` was read; False if ``timeout_s`` ran out."""
        if self.timeout_s <= 0 or not self.enabled() or self.is_read(messages):
            return True
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.is_read(messages)), self.timeout_s)
            return True
        except TimeoutError:
            log.warning("the fraud agent has not read %d orders after %.1fs; routing their updates anyway",
                        sum(1 for m in messages if self._read.get(m.tp, 0) <= m.offset), self.timeout_s)
            metrics.READ_FIRST_TIMEOUTS.inc()
            return False

    def forget(self) -> None:
        """At a rebalance: both agents start again from the committed offsets."""
        self._read.clear()


READ_FIRST = ReadFirst(settings.scoring.read_first_s)
"""The one ``ReadFirst`` of this worker."""


async def consume(kind: str, stream: faust.StreamT) -> None:
    """The body of every input agent."""
    async def orders_read_first(messages: list[faust.types.Message]) -> None:
        await READ_FIRST.wait(messages)
        await handle(kind, messages)

    await each_batch(stream, settings.features.batch_rows, settings.features.batch_ms,
                     orders_read_first if kind == "order" else lambda messages: handle(kind, messages),
                     f"the {kind} agent")


def _input_agent(kind: str, topic_name: str) -> None:
    topic = app.topic(topic_name, value_type=bytes, key_type=bytes)

    async def agent(stream: faust.StreamT) -> None:
        await consume(kind, stream)

    agent.__name__ = agent.__qualname__ = f"{kind}_agent"
    app.agent(topic, name=f"{kind}_agent")(agent)


def register() -> None:
    """Register an input agent for every input topic (the ``features`` role)."""
    for kind, topic in settings.topics.inputs().items():
        _input_agent(kind, topic)
