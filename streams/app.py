"""The shopstream Faust application: its broker settings, topics, sinks and timers.

The agents live in ``streams.agents``, ``streams.features``, ``streams.fraud`` and
``streams.recs``; the web pages in ``streams.web``; the guards and repairs of Faust's
commits in ``streams.commits``. ``shopstream worker`` (or ``python -m streams.worker``)
imports them and starts a worker. Settings come from ``shopstream.settings``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import threading
import time
import zlib
from collections.abc import Callable

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import OfflineLog
from shopstream.settings import Settings, get_settings, group_id, internal_key
from shopstream.signing import Signer
from streams import metrics
from streams.commits import note_log_starts, repair_commits
from streams.expiry import TableExpiry
from streams.producer import Producer

log = logging.getLogger(__name__)


def updates_topic_name(settings: Settings) -> str:
    """The internal topic that carries entity updates between the two stages. It is named
    after ``app_id``, not the consumer group: scoring workers send to it too."""
    return f"{settings.app_id}-entity-updates"


def drift_inputs_topic_name(settings: Settings) -> str:
    """The internal topic of what the drift role watches (``streams.drift``): scored
    orders from the scoring workers and the order labels, named after ``app_id``."""
    return f"{settings.app_id}-drift-inputs"


def session_orders_topic_name(settings: Settings) -> str:
    """The internal topic of what each order bought, keyed by its session so that the
    session's recommendations, kept by session, leave those items out (``streams.recs``)."""
    return f"{settings.app_id}-session-orders"


def owner_partition(key: bytes, partitions: int) -> int:
    """The partition that owns ``key``: entity updates are sent there, and the entity's
    state is kept in the same partition of the state table's changelog."""
    return zlib.crc32(key) % partitions


async def save(table: faust.Table, changes: dict[bytes, bytes | None]) -> None:
    """Set (or, for None, delete) keys of a table of bytes, and return only once Kafka has
    acknowledged their changelog records. Values are signed (``signer``): read them with
    ``saved``.

    A plain ``table[key] = value`` queues the changelog record in Faust's producer
    buffer, and Faust's flush before a commit gives up on that buffer after 100 ms
    without progress (``ProducerBuffer.flush_atmost``): under load a commit can pass
    states that never reach the changelog, and a worker killed then restores states
    that miss updates whose offsets are committed (seen as a lost cart in
    ``tests/integration/test_recovery.py``). Waiting here, before the batch is
    acknowledged, keeps the order: sinks, then state, then offsets.
    """
    pending = []
    changelog = table.changelog_topic.get_topic_name()
    for key, value in changes.items():
        if value is None:
            table.data.pop(key, None)
        else:
            value = table.data[key] = signer.sign(key, value)  # verified where it is read
        pending.append(send(changelog, value, key, owner_partition(key, table.partitions)))
    await delivered(pending, f"the changelog of {table.name}")


def send(topic: faust.types.TopicT | str, value: bytes | None, key: bytes | None = None,
         partition: int | None = None) -> asyncio.Future:
    """Queue one record through the worker's librdkafka producer (``streams.producer``),
    keyed records to the partition ``partitioner`` would choose; the future settles when
    Kafka has it. Callers pass their futures to ``delivered`` before they acknowledge the
    records that caused them."""
    name = topic if isinstance(topic, str) else topic.get_topic_name()
    return worker_producer().send(name, value, key, partition)


def saved(table: faust.Table, key: bytes) -> bytes | None:
    """The value ``save`` set for ``key``, its signature checked (``Unsigned`` if it does
    not match: a forged or damaged changelog record), or None."""
    raw = table.get(key)
    return None if raw is None else signer.verify(key, raw)


DELIVERY_WARN_S = 15.0
"""How long ``delivered`` waits in silence before it says what it is waiting for."""


async def delivered(pending: list, what: str) -> None:
    """Return once Kafka has acknowledged every send of ``pending`` (the futures of
    ``send``): agents call it before the records behind those sends can be acknowledged.

    The wait is watched, not bounded by a guess: every ``DELIVERY_WARN_S`` it says how
    many records of ``what`` are unconfirmed, readiness fails meanwhile (``sinks_down``),
    and once Kafka has confirmed nothing for ``SHOPSTREAM_SINK_RETRY_S`` the worker exits
    as for any sink that stays down (``give_up``), its records unacknowledged: a broker
    away for good ends in a restart, not in an agent that waits forever and holds every
    commit of its partitions without a word."""
    if not pending:
        return
    waiting = asyncio.ensure_future(asyncio.gather(*pending))
    started = time.monotonic()
    while not (await asyncio.wait({waiting}, timeout=DELIVERY_WARN_S))[0]:
        waited = time.monotonic() - started
        sinks_down["kafka"] = f"{len(pending)} records of {what} unconfirmed for {waited:.0f}s"
        metrics.WRITE_RETRIES.labels("kafka").inc()
        metrics.SINK_UP.labels("kafka").set(0)
        log.warning("Kafka has not confirmed %d records of %s after %.0fs; waiting", len(pending), what, waited)
        if waited > settings.sink_retry_s:
            give_up("kafka", TimeoutError(f"{len(pending)} records of {what} unconfirmed"))
    waiting.result()  # a send that failed raises here, as gather would
    if sinks_down.pop("kafka", None) is not None:
        log.info("Kafka confirms %s again", what)
        metrics.SINK_UP.labels("kafka").set(1)


def state_table(name: str) -> faust.Table:
    """A table of encoded states (bytes) keyed like the entities, partitioned by owner
    (``use_partitioner``: a key's changelog partition is its owner partition), on the store
    ``features.state_store`` names (``streams.store``)."""
    placed = {}
    if settings.features.state_store == "rocksdb":
        from streams import store

        placed = {"store": store.url(name),
                  "options": store.options(settings.features.rocksdb_memory_mb, settings.topics.partitions)}
    return app.Table(name, default=None, partitions=settings.topics.partitions, use_partitioner=True,
                     key_type=bytes, value_type=bytes, **placed)  # the app's raw serializer


def table_expiry(table: faust.Table, source_topic: str, expiry_of: Callable[[bytes], float],
                 lock: asyncio.Lock, dropped: Callable[[bytes], object] = lambda key: None) -> TableExpiry:
    """Expiry by event time (``streams.expiry``) for a table of bytes whose partitions are
    those of ``source_topic`` under the app's partitioner; ``lock`` is the one the agent
    holds while it handles a batch."""
    return TableExpiry(table, source_topic, lambda key: owner_partition(key, settings.topics.partitions),
                       expiry_of, lambda: app.consumer.assignment(), save,
                       settings.features.expiry_sweep_s, settings.limits.max_future_skew_s, lock, dropped)


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


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer with ``acks=all`` and idempotence always, not only in transactions:
    a send retried after a lost answer (a leader that died, a broker restarting) is
    written once, in order, and only once ``min.insync.replicas`` have it."""

    def _settings_extra(self) -> dict:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class App(faust.App):
    """Faust's app, with its own producer (``IdempotentProducer``) and, once the worker's
    runtime sets ``consumer_class`` (``streams.runtime``), its own consumer."""

    consumer_class: type | None = None

    def _new_producer(self):
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_consumer(self):
        if self.consumer_class is None:
            return super()._new_consumer()
        return self.consumer_class(self.transport, callback=self.topics.on_message, loop=self.transport.loop,
                                   on_partitions_revoked=self._on_partitions_revoked,
                                   on_partitions_assigned=self._on_partitions_assigned, beacon=self.beacon)


def create_app(settings: Settings) -> App:
    """A Faust app configured from ``settings``."""
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka.brokers.split(","))
    return App(
        group_id(settings),
        broker=brokers,
        broker_credentials=broker_credentials(settings),
        value_serializer="raw",  # agents decode and validate themselves, see streams.agents
        key_serializer="raw",
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        producer_max_request_size=settings.kafka.max_message_bytes,
        consumer_max_fetch_size=settings.kafka.max_message_bytes,
        # One folder per process (its web port is its own on a host): each holds RocksDB
        # databases that one process at a time may open.
        datadir=str(settings.home.resolve() / "faust" / group_id(settings) / str(settings.web_port)),
        web_port=settings.web_port,
        web_host=settings.web_host,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_partitioner=partitioner,
    )


def survives(fun: Callable) -> Callable:
    """A timer or start-up task that logs and counts its exceptions (``shopstream_task_
    failures_total``) instead of raising them: Faust stops the whole worker when one
    raises, which for a periodic chore is the wrong trade. It runs again at its next turn.
    Put it under ``@app.timer`` or ``@app.task``."""

    @functools.wraps(fun)
    async def surviving(*args, **kwargs):
        try:
            return await fun(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the worker must go on; the log has the traceback
            metrics.TASK_FAILURES.labels(fun.__name__).inc()
            log.exception("%s failed; the worker goes on", fun.__name__)
            return None

    return surviving


def kafka_producer(settings: Settings) -> Producer:
    """The librdkafka producer of every record a worker sends (``send``)."""
    return Producer({
        **settings.kafka.client_config(),
        "message.max.bytes": settings.kafka.max_message_bytes + PRODUCER_OVERHEAD,
        "linger.ms": settings.kafka.linger_ms,
        "batch.size": settings.kafka.batch_bytes,
        # No compression: Faust's consumer (aiokafka) reads lz4, snappy and zstd only
        # with codec libraries it does not install, and a worker reads what workers send.
    })


PRODUCER_OVERHEAD = 64 * 1024
"""Room over ``kafka.max_message_bytes`` for a record's framing in librdkafka's own count
(its ``message.max.bytes`` measures the whole batch a record travels in)."""

settings = get_settings()
app = create_app(settings)
_producer: Producer | None = None


def worker_producer() -> Producer:
    """The worker's producer, built by its first send: librdkafka connects to the brokers
    as soon as a producer is built, which a process that only imports the agents (a test,
    a tool) must not do."""
    global _producer
    if _producer is None:
        _producer = kafka_producer(settings)
    return _producer


@app.on_before_shutdown.connect
async def flush_producer(app, **kwargs) -> None:
    """Deliver what the producer still holds before the worker exits (every send that
    mattered was already waited for; this is for the rest, such as drift signals)."""
    if _producer is not None:
        await asyncio.to_thread(_producer.flush, 10.0)

dlq_topic = app.topic(settings.topics.dlq, value_type=bytes, key_type=bytes)
# Internal: entity updates, each on the partition that owns its entity (streams.agents).
updates_topic = app.topic(updates_topic_name(settings), value_type=bytes, key_type=bytes,
                          partitions=settings.topics.partitions, internal=True)
offline_log = OfflineLog(offline_root(settings), fsync=settings.features.offline_fsync)


@app.task
@survives
async def remove_stale_tmp() -> None:
    """Clear hidden files that a killed writer left in the offline log."""
    if removed := await asyncio.to_thread(offline_log.remove_stale_tmp):
        log.warning("removed %d unfinished files from the offline log", removed)


@app.timer(interval=settings.features.offline_maintain_s or 86_400.0, on_leader=True)
@survives
async def maintain_offline_log() -> None:
    """Remove expired offline files and merge each earlier day's (one worker per group)."""
    if not settings.features.offline or not settings.features.offline_maintain_s:
        return
    for table, removed, stats in await asyncio.to_thread(offline_log.maintain, settings.features.offline_keep_days):
        if removed or stats.files_after < stats.files_before:
            log.info("offline log %s: %d expired files removed; %d files now %d", table, removed,
                     stats.files_before, stats.files_after)


EXIT_SINK_DOWN = 75  # EX_TEMPFAIL: a supervisor restarts the worker; Kafka redelivers
sinks_down: dict[str, str] = {}
"""Sinks whose last write failed, with the error: readiness fails while one is down."""


def retryable(exc: BaseException) -> bool:
    """Whether a failed write can succeed if tried again: the sink is unreachable, slow,
    loading, failing over or out of space (a full disk; a Redis at its ``maxmemory`` or
    unable to save its snapshot, which refuses writes with OOM and MISCONF). Anything else (bad data, a bug, refused
    credentials) fails the same way every time.

    >>> retryable(ConnectionError()), retryable(TimeoutError()), retryable(ValueError())
    (True, True, False)
    """
    import redis.exceptions as r
    from feast.errors import FeatureViewNotFoundException

    if isinstance(exc, r.AuthenticationError | r.AuthorizationError | r.NoPermissionError):
        return False
    if isinstance(exc, FeatureViewNotFoundException):  # the registry is being rewritten by
        return True  # another worker starting up (seen with --processes 2)
    if isinstance(exc, r.OutOfMemoryError) or (isinstance(exc, r.ResponseError) and "MISCONF" in str(exc)):
        return True  # Redis full (maxmemory) or unable to save: an operator frees it, as a disk
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


EXIT_PARTITIONS = 78  # EX_CONFIG: a restart does not help; an operator must act


def internal_signer(settings: Settings) -> Signer:
    """The ``Signer`` of this worker's internal records; a worker without the key that its
    cluster needs exits at once with status 78 (EX_CONFIG), saying which setting to set."""
    try:
        return Signer(internal_key(settings))
    except ValueError as exc:
        import os
        import sys

        print(f"refusing to run: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_PARTITIONS)


signer = internal_signer(settings)


def internal_topics(settings: Settings) -> list[str]:
    """The topics the workers write to themselves, keyed like the inputs."""
    return [updates_topic_name(settings), drift_inputs_topic_name(settings), session_orders_topic_name(settings)]


def keyed_topics(settings: Settings) -> list[str]:
    """The topics whose partitions own keyed state: the inputs and the internal topics."""
    return [*settings.topics.inputs().values(), *internal_topics(settings)]


def refuse_partitions(problems: list[str]) -> None:
    """Exit now, acknowledging nothing more: a keyed topic's partition count changed."""
    import os
    import sys

    message = (f"refusing to run: {'; '.join(problems)}. Adding partitions to a running shopstream "
               "would split the state of the keys that move; nothing past the last commit is "
               "acknowledged, and nothing is lost. See docs/cluster.md, 'Adding partitions', for "
               f"the way to grow a topic. Exiting with status {EXIT_PARTITIONS}.")
    log.critical(message)
    if not logging.getLogger().handlers:  # before Faust has set up logging
        print(message, file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(EXIT_PARTITIONS)


@app.timer(interval=settings.partition_check_s)
@survives
async def check_partitions() -> None:
    """Refuse to go on once a keyed topic has gained partitions (``refuse_partitions``)."""
    from shopstream.topics import partition_problems

    try:
        problems = await asyncio.to_thread(partition_problems, settings, keyed_topics(settings), timeout=10)
    except Exception as exc:  # noqa: BLE001 - Kafka away: the next check will tell
        log.debug("partition check failed: %r", exc)
        return
    if problems:
        refuse_partitions(problems)


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


models: dict[str, dict] = {}
"""What the scoring agents last heard from the registry, per model: the version in use
and the last error, for ``/health`` (they keep serving on the rules or the previous
model while the registry is away, so it does not make a worker unready)."""

preparing: dict[str, str | None] = {}
"""What the worker still prepares after it is ready, with the last error (None: no try
failed yet): ``/health`` lists it. Importing Feast and registering its definitions takes
seconds that readiness does not wait for; the first batch that needs them does."""


_feast_store: list = []  # the worker's FeatureStore, once registered_store() has built it
_feast_lock = threading.Lock()


def registered_store():
    """The worker's Feast ``FeatureStore``, shopstream's definitions applied, built once by
    whichever thread asks first and shared by the online writer and reader: one
    registration per worker, not one per client."""
    with _feast_lock:
        if not _feast_store:
            _feast_store.append(feature_store(settings, apply=True))
    return _feast_store[0]


def prepare(name: str, build: Callable[[], object]) -> None:
    """Run the blocking ``build`` in a thread once the worker starts, and again, backing
    off, until it succeeds; ``name`` stays in ``preparing`` until then. ``build`` must be
    safe to call twice: an agent that needs what it builds may build it first."""
    preparing[name] = None

    async def prepared() -> None:
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(build)
            except Exception as exc:  # noqa: BLE001 - tried again; the agents retry their own use
                preparing[name] = repr(exc)
                log.warning("could not prepare %s (%r); trying again in %.0fs", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            preparing.pop(name, None)
            return

    prepared.__name__ = prepared.__qualname__ = f"prepare_{name}"  # Faust names tasks by function
    app.task(survives(prepared))


_gaps: dict = {}  # streams.commits.repair_commits's notes between checks


@app.on_partitions_assigned.connect
async def remember_log_starts(app, assigned, **kwargs) -> None:
    """Where the assigned partitions' logs start, for commits of partitions never
    committed. A broker too slow to say is asked again by the commit check
    (``repair_commits``): an exception here would stop the worker, as Faust crashes the
    app when an assignment handler raises."""
    try:
        await note_log_starts(app.consumer, set(assigned))
    except Exception as exc:  # noqa: BLE001 - the commit check asks again
        log.warning("could not read where %d assigned partitions start (%r); the commit check asks again",
                    len(assigned), exc)


@app.timer(interval=settings.commit_check_s)
@survives
async def repair_blocked_commits() -> None:
    """``repair_commits`` of this worker, every ``SHOPSTREAM_COMMIT_CHECK_S``."""
    await repair_commits(app.consumer, _gaps)


@app.timer(interval=2.0)
@survives
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


from streams import web  # noqa: E402, F401 - its pages register on import, after the app exists


