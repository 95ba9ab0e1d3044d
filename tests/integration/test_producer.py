"""The workers' librdkafka producer (``streams.producer``) against a real broker: keyed
records go where the Faust app's partitioner sends them, every future settles, and a
record Kafka refuses fails its own future instead of raising at the call."""

from __future__ import annotations

import asyncio
import uuid

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams.producer import Producer

pytestmark = pytest.mark.integration


def owner_partition(key: bytes, partitions: int) -> int:
    import zlib

    return zlib.crc32(key) % partitions


@pytest.fixture
def topic(settings) -> str:
    name = f"producer-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(settings.kafka.client_config())
    for future in admin.create_topics([NewTopic(name, num_partitions=6, replication_factor=1,
                                                config={"max.message.bytes": str(1024 * 1024)})]).values():
        future.result(30)
    return name


def test_keyed_records_go_to_their_owner_partitions_and_every_future_settles(settings, topic):
    keys = [f"user-{i}".encode() for i in range(2_000)]

    async def run():
        producer = Producer({**settings.kafka.client_config(), "linger.ms": 2})
        futures = [producer.send(topic, b"v", key) for key in keys]
        futures.append(producer.send(topic, b"no key"))
        delivered = await asyncio.wait_for(asyncio.gather(*futures), 60)
        producer.stop()
        return delivered

    delivered = asyncio.run(run())
    assert len(delivered) == len(keys) + 1
    assert [m.partition() for m in delivered[:-1]] == [owner_partition(k, 6) for k in keys]
    assert all(m.error() is None for m in delivered)


def test_a_record_too_large_fails_its_future_and_the_others_are_delivered(settings, topic):
    async def run():
        producer = Producer({**settings.kafka.client_config(), "message.max.bytes": 4 * 1024 * 1024})
        small = producer.send(topic, b"small", b"k")
        large = producer.send(topic, b"x" * (2 * 1024 * 1024), b"k")  # over the topic's 1 MiB
        client_refused = producer.send(topic, b"x" * (5 * 1024 * 1024), b"k")  # over the producer's own
        results = await asyncio.wait_for(asyncio.gather(small, large, client_refused, return_exceptions=True), 60)
        producer.stop()
        return results

    small, large, client_refused = asyncio.run(run())
    assert small.error() is None
    for failed in (large, client_refused):
        assert isinstance(failed, confluent_kafka.KafkaException)
        assert failed.args[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
