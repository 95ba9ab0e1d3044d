"""One agent per input topic: decode and validate each record, route it, log it.

Agents are thin adapters. Records arrive in micro-batches. A record that is not a valid
event becomes a dead letter on ``shop.dlq`` with its original bytes and origin; a valid
event is turned into entity updates (``scorers.features.route``), which go to the
partition of the internal updates topic that owns each entity, and is appended to the
raw-event offline log. Faust flushes every send before it commits the batch's offsets,
and the log file is written before the batch is acknowledged,
so every input offset ends up processed or dead-lettered, and a worker never dies on
bad data.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import faust

from scorers.features import Update, route
from shopstream.events import INPUTS, DeadLetter, Event, InvalidEvent, parse_event
from shopstream.offline import events_table
from streams import metrics
from streams.app import (
    app,
    dlq_topic,
    offline_log,
    owner_partition,
    retrying,
    settings,
    updates_topic,
)
from streams.codecs import encode_updates

log = logging.getLogger(__name__)
WORKER = f"{settings.app_id}@{socket.gethostname()}"
PARTITIONS = settings.topics.partitions


def owner(update: Update) -> int:
    """The updates-topic partition that owns the update's entity (stable across workers)."""
    return owner_partition(f"{update.kind}:{update.entity_id}".encode(), PARTITIONS)


async def dead_letter(message: faust.types.Message, reason: str, error: str) -> None:
    """Send ``message`` to the dead-letter topic with why it failed."""
    letter = DeadLetter.of(
        value=message.value, key=message.key, topic=message.topic,
        partition=message.partition, offset=message.offset, reason=reason, error=error,
        record_ts=datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None,
        failed_at=datetime.now(UTC), worker=WORKER,
    )
    await dlq_topic.send(key=message.key, value=letter.model_dump_json().encode())
    metrics.DEAD_LETTERS.labels(message.topic, reason).inc()


def decode(kind: str, message: faust.types.Message, now: datetime) -> Event:
    """The event in ``message``, or ``InvalidEvent`` saying why there is none."""
    return parse_event(
        INPUTS[kind], message.value, now=now, max_bytes=settings.limits.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.limits.max_future_skew_s),
    )


async def send_updates(updates: list[Update], ingested_ms: int) -> None:
    """Send updates to the partitions that own their entities, one record per partition."""
    by_partition: dict[int, list[Update]] = defaultdict(list)
    for update in updates:
        by_partition[owner(update)].append(update)
    for partition, group in by_partition.items():
        # force: publish now rather than attached to the next commit, which would hold the
        # updates back for a whole commit interval. Faust still flushes the producer before
        # it commits, and a resend after a crash is ignored by the entity states.
        await updates_topic.send(value=encode_updates(ingested_ms, group), partition=partition,
                                 force=True)


async def consume(kind: str, stream: faust.StreamT) -> None:
    """The body of every input agent."""
    batch_rows, within = settings.features.batch_rows, settings.features.batch_ms / 1000
    async for records in stream.take_events(batch_rows, within=within):  # [faust.Event]
        now = datetime.now(UTC)
        valid: list[tuple[Event, faust.types.Message]] = []
        for record in records:
            message = record.message
            metrics.EVENTS_IN.labels(message.topic).inc()
            try:
                valid.append((decode(kind, message, now), message))
            except InvalidEvent as exc:
                await dead_letter(message, exc.reason, exc.detail)
        if not valid:
            continue
        updates: list[Update] = []  # [Update(kind, entity, op, ts, source, seq, data)]
        routed: list[tuple[Event, faust.types.Message]] = []
        for event, message in valid:
            try:
                updates += route(event, f"{message.topic}:{message.partition}", message.offset)
                routed.append((event, message))
            except Exception as exc:  # noqa: BLE001 - a bug on one event must not stop the stream
                log.exception("routing %s at %s:%s@%s failed", kind, message.topic,
                              message.partition, message.offset)
                await dead_letter(message, "processing", repr(exc))
        if not routed:
            continue
        ingested_ms = min(message.timestamp for _, message in routed) * 1000
        await send_updates(updates, int(ingested_ms))
        if settings.features.offline:
            table = events_table([e for e, _ in routed],
                                 [(m.topic, m.partition, m.offset) for _, m in routed])
            await retrying("offline", offline_log.append, f"raw_{kind}", table)
        for _, message in routed:
            metrics.EVENTS_OUT.labels(message.topic).inc()


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
