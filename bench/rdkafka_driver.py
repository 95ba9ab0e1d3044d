"""Faust's ``confluent://`` transport with its group join fixed: the ``rdkafka://`` driver.

faust-streaming's confluent driver serves librdkafka's rebalance callbacks only from
``Consumer.consume``, and Faust's fetcher calls that only once it has active partitions,
which it learns from those callbacks: a worker on Kafka 4 never gets an assignment. Here
the consumer thread polls for the assignment itself whenever it has none (at start and
after every revocation), pausing what it is assigned until Faust's fetcher asks for
records, so that nothing is fetched before Faust has set its positions.

``bench.null_agent`` runs on it with ``BENCH_TRANSPORT=rdkafka`` (``register``), to measure
what Faust's read path costs on librdkafka against aiokafka's (issue 33, step 4).
"""

from __future__ import annotations

import asyncio

from faust.transport.drivers import TRANSPORTS, confluent
from faust.types import TP

ASSIGN_POLL_S = 0.1
"""How long each poll for an assignment waits in librdkafka."""


class ConsumerThread(confluent.ConfluentConsumerThread):
    """The confluent driver's consumer thread, polling for its assignment itself."""

    _polling: asyncio.Task | None = None
    _paused: list | None = None

    async def subscribe(self, topics) -> None:
        await super().subscribe(topics)
        await self.call_thread(self._poll_for_assignment)

    async def _poll_for_assignment(self) -> None:
        """Start (in the consumer's thread) a task that serves librdkafka's callbacks until
        an assignment comes; records it returns meanwhile are kept for ``getmany``."""
        if self._polling is None or self._polling.done():
            self._polling = asyncio.get_running_loop().create_task(self._until_assigned())

    async def _until_assigned(self) -> None:
        while not self._assigned and not self.should_stop:
            kept = self._ensure_consumer().consumer.consume(num_messages=1, timeout=ASSIGN_POLL_S)
            if kept:  # paused at once on assignment; a record fetched before that is kept
                self._kept = [*getattr(self, "_kept", []), *kept]
            await asyncio.sleep(0)

    def _on_assign(self, consumer, assigned) -> None:
        super()._on_assign(consumer, assigned)

    def _on_revoke(self, consumer, revoked) -> None:
        self._assigned = False
        super()._on_revoke(consumer, revoked)
        self.thread_loop.create_task(self._poll_for_assignment())

    async def _seek_to_committed(self):
        """Seek to the committed offsets (the driver awaits librdkafka's plain ``seek``);
        a partition never committed stays where ``auto.offset.reset`` puts it."""
        consumer = self._ensure_consumer().consumer
        committed = consumer.committed(consumer.assignment(), timeout=10)
        for tp in committed:
            if tp.offset >= 0:
                consumer.seek(tp)
        return {TP(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}

    async def _seek_wait(self, consumer, partitions) -> None:
        for tp, offset in partitions.items():
            consumer.consumer.seek(confluent._TopicPartition(tp.topic, tp.partition, offset))

    def verify_event_path(self, now: float, tp: TP) -> None:
        """Faust's livelock check, which the driver lacks: nothing to report."""
        return None

    async def getmany(self, active_partitions, timeout: float):
        consumer = self._ensure_consumer().consumer
        if self._paused:
            paused, self._paused = self._paused, None
            await self.call_thread(consumer.resume, paused)
        records = await super().getmany(active_partitions, timeout)
        for message in getattr(self, "_kept", []):
            records.setdefault(TP(message.topic(), message.partition()), []).insert(0, message)
        self._kept = []
        return records


class Consumer(confluent.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(confluent.Transport):
    Consumer = Consumer


def register() -> None:
    """Make ``rdkafka://`` broker URLs use this driver."""
    TRANSPORTS.aliases["rdkafka"] = f"{__name__}:Transport"
