"""Fixtures shared by the whole suite.

Integration tests (marker ``integration``) get a real Kafka and Redis, started once per
test session on free ports in a temporary folder and stopped at the end. Each test gets
its own topic names and an empty Redis, so tests never see each other's records
or features.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopstream.settings import KafkaSettings, RedisSettings, Settings, Topics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bindable(port: int) -> bool:
    """Whether nothing holds ``port`` on loopback right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running Kafka and Redis, private to this test session."""
    from shopstream import services as local_services

    settings = Settings(
        home=tmp_path_factory.mktemp("home"),
        cache=ROOT / ".cache",  # the broker jars are shared with `make up`
        kafka=KafkaSettings(brokers=f"127.0.0.1:{free_port()}", controller_port=free_port()),
        redis=RedisSettings(port=free_port()),
    )
    try:
        local_services.up(settings)
        yield settings
    finally:
        local_services.down(settings)


@pytest.fixture
def settings(services: Settings, tmp_path: Path) -> Settings:
    """The session's services with topic names, an app id, an empty online store and a
    home (offline log, registries) unique to this test: tests reuse entity ids, so
    features must not carry over."""
    import redis

    with redis.Redis(host=services.redis.host, port=services.redis.port) as client:
        client.flushall()  # the session's private Redis
    prefix = f"t{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}.{default}" for name, default in Topics().model_dump().items()
             if isinstance(default, str)}
    return services.model_copy(update={
        "topics": Topics(**names, partitions=2),
        "app_id": f"{prefix}-app",
        "web_port": free_port(),
        "home": tmp_path / "home",
    })


@pytest.fixture
def data_dir() -> Path:
    """The shared real data beside the checkout; the test is skipped without it."""
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is missing: the real-data tests need ../shared/data")
    return DATA
