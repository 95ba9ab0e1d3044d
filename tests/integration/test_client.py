"""The shop producer and the downstream consumer against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from pydantic import ValidationError

from shopstream import workers
from shopstream.client import OutputConsumer, ShopProducer
from shopstream.events import Click, FraudScore, Order
from shopstream.topics import ensure_topics, first_offset_from, read_range
from tests.integration.conftest import read_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # contract: in `make test-fast`
NOW = datetime.now(UTC)


def test_producer_keys_sessions_onto_one_partition_and_reports_delivery(settings):
    ensure_topics(settings)
    reports = []
    with ShopProducer(settings, on_delivery=lambda err, msg: reports.append(err)) as producer:
        for i in range(40):
            producer.send(Click(user_id="u1", session_id=f"s{i % 4}", item_id=f"i{i}", ts=NOW))
    assert producer.stats.delivered == 40 and reports == [None] * 40

    messages = read_all(settings, settings.topics.clicks, expect=40)
    partitions = {}
    for message in messages:
        click = Click.model_validate_json(message.value())
        assert message.key() == click.session_id.encode()
        partitions.setdefault(click.session_id, set()).add(message.partition())
    assert all(len(p) == 1 for p in partitions.values())  # a session stays on one partition


def test_producer_refuses_invalid_events_before_sending(settings):
    producer = ShopProducer(settings)
    broken = Order.model_construct(order_id="o", user_id="u", items=[], amount=-1, ts=NOW)
    with pytest.raises(ValidationError):
        producer.send(broken)
    assert producer.stats.sent == 0


def test_output_consumer_yields_typed_scores(settings):
    ensure_topics(settings)
    consumer = OutputConsumer(f"{settings.app_id}-downstream", ["fraud_score"], settings,
                              from_beginning=True)
    scores = [FraudScore(order_id=f"o{i}", user_id="u", score=i / 10, decision="allow",
                         model_version="rules", latency_ms=1.0, ts=NOW) for i in range(5)]
    producer = ShopProducer(settings)
    for score in scores:
        producer.send_raw(settings.topics.fraud_scores, score.to_bytes())
    producer.close()
    got = []
    with consumer:
        for _ in range(60):
            if (output := consumer.poll(1.0)) is not None:
                got.append(output)
            if len(got) == len(scores):
                break
    assert sorted(got, key=lambda s: s.order_id) == scores
    assert all(isinstance(score, FraudScore) for score in got)


def test_output_consumer_refuses_unknown_kinds(settings):
    with pytest.raises(ValueError, match="unknown output kinds"):
        OutputConsumer("g", ["fraud", "recs"], settings)


def test_read_range_reads_a_span_of_one_partition_back(settings):
    topic = settings.topics.clicks
    ensure_topics(settings, [topic])
    producer = Producer(settings.kafka.client_config())
    for i in range(5):
        producer.produce(topic, value=f"v{i}".encode(), partition=1)
    producer.flush(30)
    assert read_range(settings, topic, 1, 1, 4) == [b"v1", b"v2", b"v3"]
    assert read_range(settings, topic, 1, 3, 99, timeout=10) == [b"v3", b"v4"]  # the log ends first
    assert read_range(settings, topic, 1, 2, 2) == []


def test_first_offset_from_passes_what_the_log_lacks_and_nothing_it_holds(settings):
    """What ``streams.commits.InOrder`` asks before it lets a gap in offsets through."""
    topic = f"{settings.app_id}-offsets"
    ensure_topics(settings, [topic])
    transactional = Producer({**settings.kafka.client_config(), "transactional.id": f"{settings.app_id}-tx"})
    transactional.init_transactions(30)
    transactional.begin_transaction()
    for i in range(3):  # offsets 0..2, then the commit's marker at 3
        transactional.produce(topic, value=f"t{i}".encode(), partition=0)
    transactional.commit_transaction(30)
    # The commit returns before the marker is in the partition: wait for it, so that the
    # next record is offset 4 and not 3.
    wait_until(lambda: workers.offsets(settings, [topic])[(topic, 0)][1] == 4, 30, what="the commit marker")
    producer = Producer(settings.kafka.client_config())
    producer.produce(topic, value=b"after", partition=0)  # offset 4
    producer.flush(30)
    assert [first_offset_from(settings, topic, 0, offset) for offset in range(5)] == [0, 1, 2, 4, 4]
    assert first_offset_from(settings, topic, 0, 5, timeout=5) is None  # past the end

