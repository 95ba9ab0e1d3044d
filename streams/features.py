"""The feature agent: applies entity updates to changelog-backed state, writes features.

Each record on the internal updates topic holds the updates for the entities that its
partition owns (see ``streams.agents.owner``), so every entity is updated by exactly
one worker, and its state lives in the ``entity-state`` table on that partition. A
restarted worker recovers the table from its changelog, and updates redelivered after
a crash are ignored by the states themselves, so features end up as if nothing had
happened (at-least-once delivery, exactly-once effect).

Per micro-batch: apply every update, write the changed states to the table, the newest
row per entity to the online store, every row to the offline log, and only then let
the batch be acknowledged. Labels fan out as risk updates to the partitions of the
terminal, instrument and user of their order; a label that arrives before its order (the
topics are read at their own speeds) waits in the order's state until the order comes.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict

import faust

from scorers.features import (
    STATE_VERSION,
    State,
    Update,
    apply,
    is_new,
    label_outcome,
    label_updates,
    new_state,
    released_labels,
)
from shopstream.featurestore import feature_store
from shopstream.online import OnlineWriter, feature_table
from streams import metrics
from streams.agents import dead_letter, send_updates
from streams.app import app, offline_log, retrying, settings, updates_topic
from streams.codecs import StateValue, decode_updates

# Keyed by b"kind:id". use_partitioner: a key's changelog partition is its owner partition
# (streams.app.partitioner), the same partition its updates arrive on.
log = logging.getLogger(__name__)
entity_state = app.Table(f"entity-state-v{STATE_VERSION}", default=None, partitions=settings.topics.partitions,
                         use_partitioner=True, key_type=bytes, value_type=StateValue)
_online: OnlineWriter | None = None


def online_writer() -> OnlineWriter:
    """The online writer, created on first use (the store connects lazily)."""
    global _online
    if _online is None:
        _online = OnlineWriter(feature_store(settings, apply=True))
    return _online


def apply_record(message: faust.types.Message, states: dict[bytes, State],
                 rows: dict[str, list[tuple]], follow_ups: list[Update]) -> int:
    """Apply the updates of one internal record; return its ingestion time (ms)."""
    ingested_ms, updates = decode_updates(message.value)
    source = f"{message.topic}:{message.partition}"
    for index, update in enumerate(updates):
        key = f"{update.kind}:{update.entity_id}".encode()
        state = states.get(key) or entity_state.get(key) or new_state(
            update.kind, update.entity_id, settings.features.lateness_s)
        late, new = state.late, is_new(state, update)
        for view, row in apply(state, update).items():
            rows[view].append(row)
        if state.late > late:
            metrics.LATE_UPDATES.labels(update.kind).inc()
        states[key] = state
        if update.kind == "order" and update.op == "label":
            if new and (outcome := label_outcome(state, update)) is not None:
                metrics.graded(outcome)
            more = label_updates(state, update, source, (message.offset, index))
            if not more and new:
                metrics.PENDING_LABELS.inc()
            follow_ups += more
        elif update.kind == "order" and update.op == "index":
            follow_ups += released_labels(state)
    return ingested_ms


def write_online(rows: dict[str, list[tuple]]) -> int:
    """Write the newest row per entity of every view; return the rows written."""
    writer = online_writer()
    return sum(writer.write(view, view_rows) for view, view_rows in rows.items())


def write_offline(rows: dict[str, list[tuple]]) -> None:
    """Append every row to its view's offline log."""
    for view, view_rows in rows.items():
        offline_log.append(view, feature_table(view, view_rows))


@app.agent(updates_topic, name="feature_agent")
async def feature_agent(stream: faust.StreamT) -> None:
    """Stage two: entity updates in, features out."""
    batch_rows, within = settings.features.batch_rows, settings.features.batch_ms / 1000
    async for records in stream.take_events(batch_rows, within=within):  # [faust.Event]
        states: dict[bytes, State] = {}
        rows: dict[str, list[tuple]] = defaultdict(list)  # view -> [(entity, ts, *features)]
        follow_ups: list[Update] = []
        oldest_ms = int(time.time() * 1000)
        for record in records:
            try:
                oldest_ms = min(oldest_ms, apply_record(record.message, states, rows, follow_ups))
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the stream
                log.exception("applying %s:%s@%s failed", record.message.topic,
                              record.message.partition, record.message.offset)
                await dead_letter(record.message, "processing", repr(exc))
        for key, state in states.items():  # one changelog record per changed entity
            entity_state[key] = state
        if follow_ups:
            await send_updates(follow_ups, oldest_ms)
        if settings.features.online and rows:
            written = await retrying("online", write_online, rows)
            metrics.BATCH_ROWS.observe(written)
            metrics.FRESHNESS.observe(max(time.time() - oldest_ms / 1000, 0.0))
        if settings.features.offline and rows:
            await retrying("offline", write_offline, rows)


