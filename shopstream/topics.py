"""Creates shopstream's topics on start-up when they do not exist yet.

Existing topics are left as they are: partition counts are only set at creation. Every
topic allows records of ``kafka.max_message_bytes``, so that an oversized event can be
dead-lettered whole.

Run ``shopstream topics`` to create them by hand. ``read_range`` reads a span of one
partition back (the drift role warms its watches up with it); ``first_offset_from`` says
which offsets a partition's log really holds (the agents ask before passing a gap);
``read_since`` reads every record of a topic written since a time (``models report``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from contextlib import closing

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from shopstream.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(
    settings: Settings, names: Iterable[str] | None = None, *, timeout: float = 30.0
) -> list[str]:
    """Create the missing topics among ``names`` (default: all of them); return those created."""
    names = list(names) if names is not None else settings.topics.all()
    admin = AdminClient(settings.kafka.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [name for name in dict.fromkeys(names) if name not in existing]
    if not missing:
        return []
    config = {"max.message.bytes": str(settings.kafka.max_message_bytes)}
    if settings.topics.replication_factor > 1:
        config["min.insync.replicas"] = str(settings.topics.min_insync_replicas)
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=settings.topics.partitions,
                replication_factor=settings.topics.replication_factor,
                config=config,
            )
            for name in missing
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another worker won the race
                raise
    log.info("created topics %s", created)
    visible(admin, missing, timeout=timeout)
    return created


def visible(admin: AdminClient, names: list[str], *, timeout: float = 30.0) -> None:
    """Wait until a broker's metadata lists every topic of ``names`` with a leader for each
    of its partitions. Creation returns once the controller has committed a topic; the
    brokers learn of it a moment later, and a client that asks one at once can be told
    that the topic does not exist (a producer's first records, or a consumer's
    subscription, then miss it)."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        pending = [name for name in names if name not in topics or topics[name].error is not None
                   or any(p.leader < 0 for p in topics[name].partitions.values())]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {pending} were created, but the brokers' metadata still lacks them "
                               f"after {timeout:.0f}s")
        time.sleep(0.05)


def partition_problems(settings: Settings, names: Iterable[str], *, timeout: float = 30.0) -> list[str]:
    """Why the topics ``names`` that exist cannot be served as they are: each whose
    partition count is not ``topics.partitions``, the count that the workers' tables and
    their routing of entities to partitions are built on. A partition added to a running
    topic moves keys to other partitions (a key's partition is its hash modulo the
    count), so a session's records would land on two partitions, its state split in two,
    and Faust's tables would be asked for a partition their changelog lacks."""
    metadata = AdminClient(settings.kafka.client_config()).list_topics(timeout=timeout).topics
    expected = settings.topics.partitions
    return [f"{name} has {len(metadata[name].partitions)} partitions, not {expected} "
            f"(SHOPSTREAM_TOPICS__PARTITIONS)"
            for name in dict.fromkeys(names)
            if name in metadata and metadata[name].error is None and len(metadata[name].partitions) != expected]


def delete_topics(settings: Settings, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Delete topics, ignoring those that do not exist (used by tests)."""
    admin = AdminClient(settings.kafka.client_config())
    for future in admin.delete_topics(list(names), operation_timeout=timeout).values():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def _records(settings: Settings, topic: str, partition: int, start: int, timeout: float):
    """The records of one partition from offset ``start`` on, as the broker has them (past
    offsets its log lacks), until its end or until ``timeout`` passes. No group joins and
    nothing is committed."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-read-range",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "isolation.level": "read_uncommitted"})
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return
                raise KafkaException(message.error())
            yield message
    finally:
        consumer.close()


def read_range(settings: Settings, topic: str, partition: int, start: int, end: int,
               *, timeout: float = 30.0, keys: bool = False) -> list:
    """The values of the records at offsets ``start`` to ``end - 1`` of one partition, in
    order (with ``keys``, ``(key, value)`` pairs); fewer when the log no longer holds them
    all, or ``timeout`` passes first."""
    values: list = []
    if end <= start:
        return values
    with closing(_records(settings, topic, partition, start, timeout)) as records:
        for message in records:
            if message.offset() >= end:
                break
            values.append((message.key(), message.value()) if keys else message.value())
            if message.offset() == end - 1:
                break
    return values


def first_offset_from(settings: Settings, topic: str, partition: int, offset: int,
                      *, timeout: float = 10.0) -> int | None:
    """The offset of the first record of one partition at or after ``offset``, as the
    broker has it: past offsets the log lacks (compacted or expired records, transaction
    markers), but never past one it holds. None when the log has nothing there, or
    ``timeout`` passes first."""
    with closing(_records(settings, topic, partition, offset, timeout)) as records:
        return next((message.offset() for message in records), None)


def read_since(settings: Settings, topic: str, since_ms: int, *, timeout: float = 120.0) -> list:
    """Every record of ``topic`` written at or after ``since_ms`` (epoch milliseconds, the
    records' timestamps), partition by partition, up to each partition's end when asked;
    records written meanwhile may or may not be in. Empty for a topic that does not exist."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-read-since",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        wanted = [TopicPartition(topic, p, since_ms) for p in sorted(metadata.partitions)]
        starts = consumer.offsets_for_times(wanted, timeout=10)
    finally:
        consumer.close()
    found, deadline = [], time.monotonic() + timeout
    for start in starts:
        if start.offset < 0:  # nothing written since then
            continue
        with closing(_records(settings, topic, start.partition, start.offset,
                              max(deadline - time.monotonic(), 1.0))) as records:
            found.extend(records)
    return found
