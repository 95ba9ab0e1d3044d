"""The worker's sends, through librdkafka (confluent-kafka), as awaitables.

Faust's own send path (``topic.send``: a ``FutureMessage``, the producer buffer, aiokafka's
batches) costs about 200 µs of worker CPU per record, and a worker sends several records
per input event (updates, changelogs, drift inputs, outputs). librdkafka batches and
sends in its own threads; here each ``send`` costs a ``produce`` call and a share of one
wake-up of the event loop per group of delivery reports.

Records are partitioned as the workers' Faust app partitions them (``streams.app.
partitioner``): a keyed record by CRC-32 of its key modulo the partition count, which is
librdkafka's ``consistent`` partitioner, and a record without a key at random.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

import confluent_kafka

log = logging.getLogger(__name__)


class Producer:
    """An idempotent librdkafka producer whose ``send`` returns an asyncio future, settled
    with the delivered message, or with a ``KafkaException`` once librdkafka gives up.

    ``start`` binds it to the running loop and starts the thread that serves delivery
    reports; ``stop`` flushes what is queued and stops it.
    """

    def __init__(self, config: dict[str, object]):
        self._producer = confluent_kafka.Producer({
            "enable.idempotence": True,  # acks=all, retries in order, written once
            "partitioner": "consistent_random",
            **config,
        })
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: deque[tuple[asyncio.Future, object, object]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving delivery reports to the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="shopstream-producer", daemon=True)
        self._thread.start()

    def send(self, topic: str, value: bytes | None, key: bytes | None = None,
             partition: int | None = None) -> asyncio.Future:
        """Queue one record; the future settles when Kafka has acknowledged it."""
        if self._loop is None:
            self.start()
        future = self._loop.create_future()

        def report(err, msg) -> None:  # in the serving thread
            with self._lock:
                wake = not self._reports
                self._reports.append((future, err, msg))
            if wake:  # one wake-up of the loop per group of reports, not one per record
                self._loop.call_soon_threadsafe(self._settle)

        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key, on_delivery=report)
                else:
                    self._producer.produce(topic, value, key, partition=partition, on_delivery=report)
                return future
            except BufferError:  # librdkafka's queue is full: let it drain
                self._producer.poll(0.01)
            except confluent_kafka.KafkaException as exc:  # refused before queueing (too large)
                future.set_exception(exc)
                return future

    def _settle(self) -> None:
        with self._lock:
            reports, self._reports = self._reports, deque()
        for future, err, msg in reports:
            if future.done():  # cancelled by a waiter that gave up
                continue
            if err is None:
                future.set_result(msg)
            else:
                future.set_exception(confluent_kafka.KafkaException(err))

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    def __len__(self) -> int:
        """Records queued and not yet acknowledged."""
        return len(self._producer)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for what is queued; return the records left."""
        left = self._producer.flush(timeout)
        if left:
            log.warning("%d records are still undelivered after %.0fs", left, timeout)
        return left

    def stop(self, timeout: float = 10.0) -> int:
        """Deliver what is queued (for up to ``timeout`` seconds) and stop; return the
        records left undelivered."""
        left = self._producer.flush(timeout)
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if left:
            log.warning("%d records were still undelivered when the producer stopped", left)
        return left
