"""One agent per input topic: decode and validate each record, count it, hand it on.

Agents are thin adapters. A record that is not a valid event becomes a dead letter on
``shop.dlq`` with its original bytes and origin; so does a valid event whose processing
raised. Dead letters are sent as Faust attachments, which are published before the
record's offset is committed, so every input offset ends up either processed or
dead-lettered, and a worker never dies on bad data.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta

import faust

from shopstream.events import INPUTS, DeadLetter, Event, InvalidEvent, parse_event
from streams import metrics
from streams.app import app, dlq_topic, settings

log = logging.getLogger(__name__)
WORKER = f"{settings.app_id}@{socket.gethostname()}"


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


async def process(kind: str, event: Event) -> None:
    """Hand a valid event on to the feature and scoring pipeline of its kind."""
    # The platform only validates and counts; features and scorers plug in here.


def decode(kind: str, message: faust.types.Message) -> Event:
    """The event in ``message``, or ``InvalidEvent`` saying why there is none."""
    return parse_event(
        INPUTS[kind], message.value, now=datetime.now(UTC),
        max_bytes=settings.limits.max_event_bytes,
        max_future_skew=timedelta(seconds=settings.limits.max_future_skew_s),
    )


async def consume(kind: str, stream: faust.StreamT) -> None:
    """The body of every input agent."""
    async for record in stream.events():  # faust.Event: the raw record and its offset
        message = record.message
        metrics.EVENTS_IN.labels(message.topic).inc()
        try:
            event = decode(kind, message)
        except InvalidEvent as exc:
            await dead_letter(message, exc.reason, exc.detail)
            continue
        try:
            await process(kind, event)
        except Exception as exc:  # noqa: BLE001 - a bug on one event must not stop the stream
            log.exception("processing %s at %s:%s@%s failed", kind, message.topic,
                          message.partition, message.offset)
            await dead_letter(message, "processing", repr(exc))
            continue
        metrics.EVENTS_OUT.labels(message.topic).inc()


def _input_agent(kind: str, topic_name: str) -> None:
    topic = app.topic(topic_name, value_type=bytes, key_type=bytes)

    async def agent(stream: faust.StreamT) -> None:
        await consume(kind, stream)

    agent.__name__ = agent.__qualname__ = f"{kind}_agent"
    app.agent(topic, name=f"{kind}_agent")(agent)


for _kind, _topic in settings.topics.inputs().items():
    _input_agent(_kind, _topic)
