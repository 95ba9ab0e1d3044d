"""Fault 3, broker restarts and rebalances under traffic: while a simulated shop sends,
Kafka stops for 20 s, a second worker joins and leaves again, three times. Every
partition (the entity updates included) drains, the raw log holds every event once after
deduplication by offset, and every order is scored."""

from __future__ import annotations

import json
import threading
import time

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Order
from shopstream.featurestore import offline_root
from shopstream.offline import OfflineLog
from shopstream.services import kafka
from streams.app import updates_topic_name
from tests.conftest import free_port
from tests.integration.conftest import drained, read_all, start_worker, wait_until
from tools.simulator import Shop, SimConfig, default_start

N, RATE, CYCLES, DOWN_S = 6_000, 50, 3, 20


@pytest.fixture
def worker(private_kafka, tmp_path):
    """A worker on a broker of this test's own, which the test stops and starts again."""
    log_file = tmp_path / "worker.log"
    process = start_worker(private_kafka, log_file)
    try:
        yield private_kafka
        assert process.poll() is None, f"the first worker exited with {process.returncode}"
    finally:
        code = workers.stop(process)
        print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-5000:])


def test_broker_stops_and_rebalances_lose_nothing(worker, tmp_path):
    settings = worker
    config = SimConfig(seed=3, users=120, items=300, sessions_per_hour=20_000)
    events = list(Shop(config).events(start=default_start(N, config), n=N))
    orders = {e.order_id for e in events if isinstance(e, Order)}
    done = threading.Event()

    def shop() -> None:  # a steady producer that outlives the broker's absences
        producer = ShopProducer(settings)
        for i, event in enumerate(events, 1):
            producer.send(event)
            if i % RATE == 0:
                time.sleep(1.0)  # about RATE events a second
        if producer.flush(180) == 0 and producer.stats.failed == 0:
            done.set()

    sender = threading.Thread(target=shop, daemon=True)
    sender.start()
    for cycle in range(CYCLES):
        time.sleep(5)
        kafka.stop(settings)
        time.sleep(DOWN_S)
        kafka.start(settings)
        second = settings.model_copy(update={"web_port": free_port()})
        extra = start_worker(second, tmp_path / f"second-{cycle}.log")
        time.sleep(5)
        workers.stop(extra)
    assert done.wait(300), "the shop could not send its events"
    sender.join()

    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    wait_until(lambda: drained(settings, topics), 300, what="every partition to drain")
    # It may still be in the rebalance that the second worker's leaving began (its wait
    # for the messages in hand takes up to REBALANCE_WAIT_S): ready again, not ready now.
    wait_until(lambda: workers.ready(settings.web_port), 120, what="the first worker to own its partitions again")

    log = OfflineLog(offline_root(settings))
    offsets = set()
    for table_name in [t for t in log.tables() if t.startswith("raw_")]:
        table = log.read(table_name, columns=["topic", "partition", "offset"]).to_pylist()
        offsets |= {(r["topic"], r["partition"], r["offset"]) for r in table}
    assert len(offsets) == N
    scores = read_all(settings, settings.topics.fraud_scores, expect=len(orders), timeout=120)
    assert {json.loads(m.value())["order_id"] for m in scores} == orders
