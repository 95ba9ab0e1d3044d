"""The shopstream Faust application: its broker settings, topics, web pages and timers,
among them the repair of partitions whose commits Faust's books hold back.

The agents live in ``streams.agents``; ``shopstream worker`` (or
``python -m streams.worker``) imports both and starts a worker. Settings come from
``shopstream.settings``.
"""

from __future__ import annotations

import asyncio
import logging
import math
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
from faust.types import TP
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


async def save(table: faust.Table, changes: dict[bytes, bytes | None]) -> None:
    """Set (or, for None, delete) keys of a table of bytes, and return only once Kafka has
    acknowledged their changelog records.

    A plain ``table[key] = value`` queues the changelog record in Faust's producer
    buffer, and Faust's flush before a commit gives up on that buffer after 100 ms
    without progress (``ProducerBuffer.flush_atmost``): under load a commit can pass
    states that never reach the changelog, and a worker killed then restores states
    that miss updates whose offsets are committed (seen as a lost cart in
    ``tests/integration/test_recovery.py``). Waiting here, before the batch is
    acknowledged, keeps the order: sinks, then state, then offsets.
    """
    pending = []
    for key, value in changes.items():
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
        pending.append(await table.changelog_topic.send(
            key=key, value=value, partition=owner_partition(key, table.partitions), force=True))
    await asyncio.gather(*pending)


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
        web_host=settings.web_host,
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
offline_log = OfflineLog(offline_root(settings), fsync=settings.features.offline_fsync)


@app.task
async def remove_stale_tmp() -> None:
    """Clear hidden files that a killed writer left in the offline log."""
    if removed := await asyncio.to_thread(offline_log.remove_stale_tmp):
        log.warning("removed %d unfinished files from the offline log", removed)


EXIT_SINK_DOWN = 75  # EX_TEMPFAIL: a supervisor restarts the worker; Kafka redelivers
sinks_down: dict[str, str] = {}
"""Sinks whose last write failed, with the error: readiness fails while one is down."""


def retryable(exc: BaseException) -> bool:
    """Whether a failed write can succeed if tried again: the sink is unreachable, slow,
    loading, failing over or out of space. Anything else (bad data, a bug, refused
    credentials) fails the same way every time.

    >>> retryable(ConnectionError()), retryable(TimeoutError()), retryable(ValueError())
    (True, True, False)
    """
    import redis.exceptions as r

    if isinstance(exc, r.AuthenticationError | r.AuthorizationError | r.NoPermissionError):
        return False
    return isinstance(exc, OSError | r.ConnectionError | r.TimeoutError | r.BusyLoadingError
                      | r.ReadOnlyError | r.TryAgainError | r.ClusterDownError)


async def retrying(sink: str, write: Callable, *args):
    """Run the blocking ``write(*args)`` in a thread until it succeeds, backing off.

    A worker whose Redis or disk is unavailable waits instead of dropping or skipping:
    the batch is not acknowledged, so its offsets are not committed, until it is written.
    Only errors that can pass are retried (``retryable``); any other is raised at once,
    for the caller to tie to the records that caused it. When a sink stays down for
    ``SHOPSTREAM_SINK_RETRY_S`` the worker exits with status 75, loudly and without
    acknowledging anything, so that Kafka hands its partitions to a healthy worker.
    """
    delay, deadline = 0.1, time.monotonic() + settings.sink_retry_s
    while True:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(write, *args)
        except Exception as exc:  # noqa: BLE001 - classified below
            if not retryable(exc):
                metrics.WRITE_FAILURES.labels(sink, type(exc).__name__).inc()
                raise
            sinks_down[sink] = repr(exc)
            metrics.WRITE_RETRIES.labels(sink).inc()
            metrics.SINK_UP.labels(sink).set(0)
            if time.monotonic() > deadline:
                give_up(sink, exc)
            log.warning("%s write failed (%r); retrying in %.1fs", sink, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        if sinks_down.pop(sink, None) is not None:
            log.info("%s is back", sink)
        metrics.SINK_UP.labels(sink).set(1)
        metrics.WRITE_SECONDS.labels(sink).observe(time.perf_counter() - started)
        return result


def give_up(sink: str, exc: BaseException) -> None:
    """Exit the worker now, acknowledging nothing more: ``sink`` has failed for longer
    than ``SHOPSTREAM_SINK_RETRY_S``. Faust's shutdown would acknowledge the batch in
    hand (its ``take_events`` does so on the way out), so the exit is immediate."""
    import os

    log.critical("%s has failed for %.0fs (last error %r); exiting with status %d so that "
                 "the records in hand are read again", sink, settings.sink_retry_s, exc,
                 EXIT_SINK_DOWN)
    logging.shutdown()
    os._exit(EXIT_SINK_DOWN)


@app.page("/metrics")
async def prometheus_metrics(web, request):
    """Prometheus text exposition of the worker's metrics."""
    metrics.account()
    # aiohttp sets the charset itself and refuses one inside content_type.
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")


class FailedVersions:
    """Model versions that failed to load, so that a broken champion is tried again every
    ``retry_s`` seconds rather than on every registry check (each try downloads it)."""

    def __init__(self, retry_s: float = 300.0):
        self.retry_s = retry_s
        self._failed: dict[str, float] = {}

    def skip(self, version: str) -> bool:
        """Whether ``version`` failed less than ``retry_s`` seconds ago."""
        return time.monotonic() - self._failed.get(version, -math.inf) < self.retry_s

    def failed(self, version: str) -> None:
        self._failed[version] = time.monotonic()


models: dict[str, dict] = {}
"""What the scoring agents last heard from the registry, per model: the version in use
and the last error, for ``/health`` (they keep serving on the rules or the previous
model while the registry is away, so it does not make a worker unready)."""


async def _probe(check, timeout: float = 2.0) -> str | None:
    """``None`` if the awaitable ``check`` completes within ``timeout`` seconds, else why not."""
    try:
        await asyncio.wait_for(check, timeout)
    except TimeoutError:
        return f"no answer within {timeout:.0f}s"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return repr(exc)
    return None


async def _kafka_probe() -> str | None:
    assigned = sorted(app.consumer.assignment())
    if not assigned:
        return "no partitions assigned"
    return await _probe(app.consumer.highwaters(assigned[0]))


def _redis_ping() -> None:
    import redis

    with redis.Redis.from_url(settings.redis.url(reveal=True), socket_timeout=1.5,
                              socket_connect_timeout=1.5) as client:
        client.ping()


@app.page("/health")
async def health(web, request):
    """Liveness and readiness, checked now: Kafka answers for an assigned partition, Redis
    answers a ping, no sink is failing its writes. 503 when any of those fails; the
    registry is reported but does not count (scoring falls back without it)."""
    assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    checks = {"kafka": await _kafka_probe(), "redis": await _probe(asyncio.to_thread(_redis_ping))}
    checks.update({f"sink:{sink}": error for sink, error in sinks_down.items()})
    ready = all(error is None for error in checks.values())
    body = {"status": "ok" if ready else "unavailable", "ready": ready,
            "checks": {name: error or "ok" for name, error in checks.items()},
            "models": models, "app_id": settings.app_id, "group": group_id(settings),
            "roles": list(settings.roles), "assigned": assigned}
    return web.json(body, status=200 if ready else 503)


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


def debug_page(path: str):
    """``app.page(path)`` when ``SHOPSTREAM_DEBUG_PAGES`` is on; otherwise the page is
    not served at all."""
    return app.page(path) if settings.debug_pages else (lambda handler: handler)


@debug_page("/debug/tasks")
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


@debug_page("/debug/consumer")
async def debug_consumer(web, request):
    """``consumer_state`` of this worker, as JSON."""
    return web.json(consumer_state(app.consumer))


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


_gaps: dict = {}


@app.on_partitions_assigned.connect
async def remember_log_starts(app, assigned, **kwargs) -> None:
    await note_log_starts(app.consumer, set(assigned))


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
