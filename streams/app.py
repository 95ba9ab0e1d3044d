"""The shopstream Faust application: its broker settings, topics, web pages and timers,
among them the repair of partitions whose commits Faust's books hold back.

The agents live in ``streams.agents``; ``shopstream worker`` (or
``python -m streams.worker``) imports both and starts a worker. Settings come from
``shopstream.settings``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from types import SimpleNamespace
from typing import NamedTuple

import faust
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types.tuples import ack_lock
from intervaltree import IntervalTree
from prometheus_client import generate_latest

from shopstream.featurestore import offline_root
from shopstream.offline import OfflineLog
from shopstream.settings import Settings, get_settings, group_id
from streams import metrics

log = logging.getLogger(__name__)


def updates_topic_name(settings: Settings) -> str:
    """The internal topic that carries entity updates between the two stages. It is named
    after ``app_id``, not the consumer group: scoring workers send to it too."""
    return f"{settings.app_id}-entity-updates"


def owner_partition(key: bytes, partitions: int) -> int:
    """The partition that owns ``key``: entity updates are sent there, and the entity's
    state is kept in the same partition of the state table's changelog."""
    return zlib.crc32(key) % partitions


def partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """The producer partitioner of the app, consistent with ``owner_partition``."""
    if key is None:
        return random.choice(available or all_partitions)
    return sorted(all_partitions)[owner_partition(key, len(all_partitions))]


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's view of the SASL and SSL settings, or ``None`` for plaintext."""
    kafka = settings.kafka
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context else None


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``."""
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka.brokers.split(","))
    return faust.App(
        group_id(settings),
        broker=brokers,
        broker_credentials=broker_credentials(settings),
        value_serializer="raw",  # agents decode and validate themselves, see streams.agents
        key_serializer="raw",
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        producer_max_request_size=settings.kafka.max_message_bytes,
        consumer_max_fetch_size=settings.kafka.max_message_bytes,
        datadir=str(settings.home.resolve() / "faust" / group_id(settings)),
        web_port=settings.web_port,
        web_host="0.0.0.0",
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_partitioner=partitioner,
    )


settings = get_settings()
app = create_app(settings)
dlq_topic = app.topic(settings.topics.dlq, value_type=bytes, key_type=bytes)
# Internal: entity updates, each on the partition that owns its entity (streams.agents).
updates_topic = app.topic(updates_topic_name(settings), value_type=bytes, key_type=bytes,
                          partitions=settings.topics.partitions, internal=True)
offline_log = OfflineLog(offline_root(settings))


async def retrying(sink: str, write: Callable, *args):
    """Run the blocking ``write(*args)`` in a thread until it succeeds, backing off.

    A worker whose Redis or disk is unavailable waits instead of dropping or skipping:
    the batch is not acknowledged, so its offsets are not committed, until it is written.
    """
    delay = 0.1
    while True:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(write, *args)
        except Exception as exc:  # noqa: BLE001 - any failure of a sink is retried
            metrics.WRITE_RETRIES.labels(sink).inc()
            log.warning("%s write failed (%r); retrying in %.1fs", sink, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        metrics.WRITE_SECONDS.labels(sink).observe(time.perf_counter() - started)
        return result


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """Prometheus text exposition of the worker's metrics."""
    # aiohttp sets the charset itself and refuses one inside content_type.
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")


@app.page("/health")
async def health(web, request):
    """Liveness and readiness: the worker is up, and which partitions it owns."""
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    return web.json({"status": "ok", "app_id": settings.app_id, "group": group_id(settings),
                     "roles": list(settings.roles), "assigned": assigned})


def await_chain(task: asyncio.Task) -> list[str]:
    """Where ``task`` waits: every frame of its chain of awaits, outermost first
    (``Task.print_stack`` shows only the outermost coroutine of a suspended task)."""
    import gc
    import inspect

    frames, current = [], task.get_coro()
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
        if frame is not None:
            frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(current, "cr_await", None) or getattr(current, "ag_await", None)
        if awaited is None and frame is None:
            # ``async for`` awaits the generator's ``asend`` object, which only the
            # garbage collector can see through.
            awaited = next((r for r in gc.get_referents(current)
                            if inspect.isasyncgen(r) or inspect.iscoroutine(r)), None)
        current = awaited
    return frames


@app.page("/debug/tasks")
async def debug_tasks(web, request):
    """The await chain of every asyncio task of the worker, for a worker that stops making
    progress without an error. Plain text, one block per task."""
    blocks = [f"{task.get_name()}\n  " + "\n  ".join(await_chain(task))
              for task in asyncio.all_tasks()]
    return web.bytes("\n\n".join(sorted(blocks)).encode(), content_type="text/plain")


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


@app.page("/debug/consumer")
async def debug_consumer(web, request):
    """``consumer_state`` of this worker, as JSON."""
    return web.json(consumer_state(app.consumer))


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
    # One missing offset does not stop Faust: it commits past it (faust-streaming#606).
    if not stale and (gap is None or gap[1] == gap[0]):
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
        acked, committed = consumer._acked.get(tp), consumer._committed_offset.get(tp)
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
        metrics.COMMIT_REPAIRS.labels(tp.topic, "reread").inc()
        await consumer.seek(tp, committed)
    gaps.clear()
    gaps.update(seen)


_gaps: dict = {}


@app.timer(interval=settings.commit_check_s)
async def repair_blocked_commits() -> None:
    """``repair_commits`` of this worker, every ``SHOPSTREAM_COMMIT_CHECK_S``."""
    await repair_commits(app.consumer, _gaps)


@app.timer(interval=2.0)
async def update_lag() -> None:
    """Refresh the consumer-lag gauge from the highwater marks and committed offsets."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})  # faust keeps no public accessor
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog") or "__assignor" in tp.topic:  # Faust's own
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = committed.get(tp) or 0  # Kafka-style: the next offset to read
        metrics.CONSUMER_LAG.labels(tp.topic, tp.partition).set(max(highwater - position, 0))
