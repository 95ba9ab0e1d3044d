"""The cluster suite: three real Kafka brokers (KRaft, replication 3, min ISR 2) and a real
Redis Cluster (three masters, three replicas), started once on free loopback ports in a
temporary folder; faults are injected only into those processes, under a steady load.

Each test gets its own topics, app id and home, and an empty online store. The same
simulated shop is replayed through every test, so each can compare its online features
with those of one uninterrupted reference run.
"""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Order
from shopstream.settings import KafkaSettings, RedisSettings, Settings, Topics
from streams.app import updates_topic_name
from tests.conftest import ROOT, bindable, free_port
from tests.integration.conftest import drained, settled, start_worker, wait_until
from tools.simulator import Shop, SimConfig, default_start

HERE = Path(__file__).parent
N, RATE = 4_000, 100  # events per test, sent at about RATE a second: 40 s of traffic
PARTITIONS = 4


def pytest_collection_modifyitems(items):
    """Every test here needs the real cluster: mark it so ``make unit`` leaves it out."""
    for item in items:
        if Path(item.fspath).parent == HERE:
            item.add_marker(pytest.mark.integration)


def free_run(count: int, *, also: int = 0) -> int:
    """The first of ``count`` consecutive free ports (and, with ``also``, the same ports
    shifted by ``also``, which a Redis Cluster node takes for its bus)."""
    for _ in range(200):
        base = random.randrange(20_000, 40_000)
        ports = [base + i for i in range(count)] + ([base + also + i for i in range(count)] if also else [])
        if all(bindable(port) for port in ports):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running local cluster, private to this test session."""
    from shopstream import services

    settings = Settings(
        profile="cluster",
        home=tmp_path_factory.mktemp("cluster"),
        cache=ROOT / ".cache",
        kafka=KafkaSettings(brokers=",".join(f"127.0.0.1:{free_port()}" for _ in range(3)),
                            controller_port=free_run(3)),
        redis=RedisSettings(port=free_run(6, also=10_000), cluster=True, cluster_node_timeout_ms=2000),
        sink_retry_s=120,
    )
    try:
        services.up(settings)
        yield settings
    finally:
        services.down(settings, discard=True)


@pytest.fixture
def on_cluster(cluster: Settings, tmp_path: Path) -> Settings:
    """The cluster with this test's own topics, app id, web port and home, and an empty
    online store."""
    return fresh(cluster, tmp_path / "home")


def fresh(cluster: Settings, home: Path) -> Settings:
    """``cluster`` with new topics, app id, web port and home; the online store emptied."""
    from redis.cluster import RedisCluster

    with cluster.redis.client() as client:
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    prefix = f"c{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}.{default}" for name, default in Topics().model_dump().items()
             if isinstance(default, str)}
    return cluster.model_copy(update={
        "topics": cluster.topics.model_copy(update={**names, "partitions": PARTITIONS}),
        "app_id": f"{prefix}-app", "web_port": free_port(), "home": home,
    })


@functools.cache
def shop_events() -> list:
    """The simulated shop every test replays: drawn once, so that the reference and every
    test see the same event times (a shop drawn again later starts later)."""
    config = SimConfig(seed=11, users=150, items=400, sessions_per_hour=20_000)
    return list(Shop(config).events(start=default_start(N, config), n=N))


@dataclass
class Load:
    """A shop sending ``events`` at about ``rate`` a second from a thread of its own, with
    an idempotent ``acks=all`` producer that retries through broker failures."""

    settings: Settings
    events: list
    rate: float = RATE
    sent: int = 0
    failed: int = 0
    finished: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Load:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        producer = ShopProducer(self.settings, config={"message.timeout.ms": 300_000})
        started = time.monotonic()
        for i, event in enumerate(self.events, 1):
            producer.send(event)
            self.sent = i
            if (ahead := i / self.rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        producer.flush(300)
        self.failed = producer.stats.failed
        self.finished.set()

    def wait(self, timeout: float = 360) -> None:
        assert self.finished.wait(timeout), f"the shop sent only {self.sent} of {len(self.events)} events"
        assert self.failed == 0, f"{self.failed} events were not delivered"


def orders_of(events: list) -> set[str]:
    return {e.order_id for e in events if isinstance(e, Order)}


def drain(settings: Settings, timeout: float = 240) -> None:
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    wait_until(lambda: drained(settings, topics), timeout, what="every partition to drain")


@pytest.fixture(scope="session")
def reference(cluster: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The online features after one uninterrupted run of the shop on the cluster, at the
    same rate as the tests: records then arrive in about the order of their event times,
    as in the tests, and no more of them come later than the lateness a state admits."""
    events = shop_events()
    home = tmp_path_factory.mktemp("reference")
    settings = fresh(cluster, home / "home")
    process = start_worker(settings, home / "worker.log")
    try:
        Load(settings, events).start().wait()
        drain(settings)
        return settled(settings, events)
    finally:
        workers.stop(process)
