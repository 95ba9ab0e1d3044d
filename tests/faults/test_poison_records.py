"""Fault 1 again: records that a shop's producer can send and the broker accepts, but that
once stopped a partition for good.

Seen failing before issue 32's fix: a record on ``shop.clicks`` with a 3 MiB key and a
12 MiB invalid value made the worker exit with status 70 in a loop. Its dead letter carried
the key twice (as the letter's own key and in ``key_b64``) beside the base64 value, went
over the producer's record limit, and every valid record behind it on that partition
stayed unanswered. A record stamped later than any ``datetime`` (year 10,000 and on, which
brokers before Kafka 4.0 accept by default) broke its dead letter the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import DeadLetter
from tests.faults.hostile import valid
from tests.integration.conftest import read_all, start_worker, wait_until

pytestmark = pytest.mark.integration


def allow_any_timestamp(settings, topics: list[str]) -> None:
    """Let ``topics`` take records stamped any time ahead, as brokers before Kafka 4.0 did
    by default (Kafka 4 refuses those more than an hour ahead)."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient(settings.kafka.client_config())
    entry = ConfigEntry("message.timestamp.after.max.ms", str(2 ** 63 - 1),
                        incremental_operation=AlterConfigOpType.SET)
    futures = admin.incremental_alter_configs([ConfigResource("topic", topic, incremental_configs=[entry])
                                               for topic in topics])
    for future in futures.values():
        future.result(30)
MiB = 1024 * 1024
GOOD = 20  # valid records behind the poison, on the same partition of each topic


def test_a_record_of_any_size_or_time_becomes_a_dead_letter_and_the_partition_goes_on(settings, tmp_path: Path):
    from datetime import UTC, datetime

    topics = settings.topics.inputs()
    now = datetime.now(UTC)
    log_file = tmp_path / "worker.log"
    process = start_worker(settings, log_file)
    try:
        allow_any_timestamp(settings, list(topics.values()))
        with ShopProducer(settings) as producer:
            for n, (kind, topic) in enumerate(topics.items()):
                poison = json.dumps({**valid(kind, now, n), "ts": "not a time"}).encode()
                producer.send_raw(topic, poison + b" " * (12 * MiB), key=bytes([65 + n]) * (3 * MiB), partition=0)
                producer.send_raw(topic, b"{not json", key=b"far-future", partition=0, timestamp_ms=2 ** 62)
                producer.flush()
                for i in range(GOOD):
                    producer.send_raw(topic, json.dumps(valid(kind, now, 1000 + i)).encode(),
                                      key=f"good-{i}".encode(), partition=0)
        assert producer.stats.failed == 0, producer.stats.errors

        letters = [DeadLetter.model_validate_json(m.value())
                   for m in read_all(settings, settings.topics.dlq, expect=2 * len(topics), timeout=180)]
        assert len(letters) == 2 * len(topics), [(x.topic, x.offset, x.reason) for x in letters]
        assert process.poll() is None, "the worker exited"

        huge = [x for x in letters if x.key_bytes == 3 * MiB]
        assert {x.topic for x in huge} == set(topics.values())
        for letter in huge:
            assert letter.key_truncated and letter.truncated and letter.offset == 0
            assert letter.payload_bytes > 12 * MiB and len(letter.key_sha256) == 64
            assert letter.payload().startswith(b"{")  # the head of the value, kept
        future = [x for x in letters if x.key() == b"far-future"]
        assert {x.topic for x in future} == set(topics.values())
        assert all(x.record_ts is None and x.record_ts_ms == 2 ** 62 for x in future)

        # The valid records behind them were processed: their offsets committed, every one
        # counted as processed.
        wait_until(lambda: all(workers.records(settings.web_port)[topic, "processed"] >= GOOD
                               for topic in topics.values()),
                   timeout=120, what="the valid records behind the poison to be processed")
        orders = read_all(settings, settings.topics.fraud_scores, expect=GOOD)
        assert {json.loads(m.value())["order_id"] for m in orders} == {f"ho{1000 + i}" for i in range(GOOD)}
        assert process.poll() is None, "the worker exited"
    finally:
        code = workers.stop(process)
        print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-5000:])
