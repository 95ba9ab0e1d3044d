"""The local Kafka and Redis: idempotent start, status, and data that survives a restart."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from shopstream import services as local_services
from shopstream.services import kafka, redis
from shopstream.topics import ensure_topics
from tests.integration.conftest import read_all

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # contract: in `make test-fast`


def test_up_is_idempotent_and_status_reports_both(services):
    settings = services
    pids = {row["service"]: row["pid"] for row in local_services.status(settings)}
    assert local_services.up(settings) == {"redis": 0.0, "kafka": 0.0}  # already running
    rows = local_services.status(settings)
    assert all(row["answers"] for row in rows)
    assert {row["service"]: row["pid"] for row in rows} == pids


def test_topics_are_created_from_settings(settings):
    assert sorted(ensure_topics(settings)) == sorted(settings.topics.all())
    assert ensure_topics(settings) == []  # a second call creates nothing
    metadata = AdminClient(settings.kafka.client_config()).list_topics(timeout=10)
    for name in settings.topics.all():
        assert len(metadata.topics[name].partitions) == settings.topics.partitions


def test_kafka_keeps_its_records_across_a_restart(private_kafka):
    settings = private_kafka
    ensure_topics(settings, [settings.topics.clicks])
    producer = Producer(settings.kafka.client_config())
    for i in range(50):
        producer.produce(settings.topics.clicks, value=f"record-{i}".encode())
    assert producer.flush(30) == 0

    assert kafka.stop(settings)
    assert not kafka.answers(settings)
    started = time.monotonic()
    kafka.start(settings)
    print(f"broker restart took {time.monotonic() - started:.1f}s")

    values = {m.value() for m in read_all(settings, settings.topics.clicks, expect=50)}
    assert values == {f"record-{i}".encode() for i in range(50)}


def test_redis_keeps_its_data_across_a_restart(settings, tmp_path):
    from tests.conftest import free_port

    settings = settings.model_copy(update={  # a Redis of this test's own: it is stopped
        "home": tmp_path / "own", "redis": settings.redis.model_copy(update={"port": free_port()})})
    redis.start(settings)
    client = redis.client(settings)
    client.set(f"{settings.app_id}:probe", "kept")
    try:
        assert redis.stop(settings)
        redis.start(settings)
        assert redis.client(settings).get(f"{settings.app_id}:probe") == b"kept"
    finally:
        redis.stop(settings)


def test_a_redis_password_never_reaches_the_command_line(settings, tmp_path):
    from pydantic import SecretStr

    from tests.conftest import free_port

    secret = 'pa ss"word-not-in-ps'
    guarded = settings.model_copy(update={
        "home": tmp_path / "guarded",
        "redis": settings.redis.model_copy(update={"port": free_port(), "password": SecretStr(secret)})})
    redis.start(guarded)
    try:
        pid = int((tmp_path / "guarded" / "redis" / "redis.pid").read_text())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode()
        assert "word-not-in-ps" not in cmdline
        assert redis.client(guarded).ping()
        unauthenticated = guarded.model_copy(update={"redis": guarded.redis.model_copy(update={"password": None})})
        assert not redis.answers(unauthenticated)
        assert oct((tmp_path / "guarded" / "redis" / "auth.conf").stat().st_mode & 0o777) == "0o600"
    finally:
        redis.stop(guarded)
