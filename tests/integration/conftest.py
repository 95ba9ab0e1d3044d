"""Integration fixtures: a real worker process on the test's own topics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from shopstream import workers
from shopstream.events import Click, Order
from shopstream.featurestore import feature_store
from shopstream.settings import Settings, to_env
from shopstream.topics import ensure_topics
from streams.app import internal_topics, updates_topic_name

pytestmark = pytest.mark.integration


def start_worker(settings: Settings, log_file: Path):
    """Start a worker process for ``settings`` and wait until it owns its partitions and
    has registered the Feast definitions (tests read them as soon as it is up)."""
    ensure_topics(settings)
    process = workers.start(to_env(settings), log_file)
    try:
        # Generous: a worker with a backlog builds its Feast clients while its agents run.
        workers.wait_ready(process, settings.web_port, log_file, timeout=240, until=workers.prepared)
    except Exception:
        workers.stop(process)
        raise
    return process


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A running worker on the test's topics; its log is printed if the test fails."""
    log_file = tmp_path / "worker.log"
    process = start_worker(settings, log_file)
    try:
        yield settings
    finally:
        code = workers.stop(process)
        print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-5000:])


def read_all(settings: Settings, topic: str, *, expect: int, timeout: float = 60.0) -> list:
    """Every record on ``topic`` from the start, waiting until ``expect`` have arrived."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"reader-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.message.max.bytes": settings.kafka.max_message_bytes})
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expect and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                records.append(message)
        # A little longer, so that extra records would be seen too.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                records.append(message)
    finally:
        consumer.close()
    return records


def drained(settings: Settings, topics: list[str]) -> bool:
    """Whether the app's group has committed every record of ``topics``."""
    offsets = committed_and_end_offsets(settings, topics)
    return all(committed == end or (end == 0 and committed < 0)  # an empty partition
               for committed, end in offsets.values())


def quiet(settings: Settings, timeout: float = 120.0) -> None:
    """Wait until the workers' group has committed every record of the inputs and of the
    internal topics (entity updates, drift inputs, session orders): a batch is committed
    after its writes, so nothing already sent can change a feature or a metric after."""
    topics = [*settings.topics.inputs().values(), *internal_topics(settings)]
    wait_until(lambda: drained(settings, topics), timeout, what="every input and internal record to be committed")


def committed_and_end_offsets(settings: Settings, topics: list[str]) -> dict:
    """``{(topic, partition): (committed offset of the app's group, end offset)}``."""
    return workers.offsets(settings, topics)


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def metrics(port: int, timeout: float = 60.0) -> workers.WorkerMetrics:
    """The worker's metrics, waiting while a busy worker is slow to answer ``/metrics``."""
    deadline = time.monotonic() + timeout
    while (scraped := workers.scrape(port)) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the worker on port {port} did not answer /metrics for {timeout:.0f}s")
        time.sleep(0.2)
    return scraped


def snapshot(settings, events):
    """Online features of every user, session and item in ``events``."""
    store = feature_store(settings)
    users = sorted({e.user_id for e in events if isinstance(e, Click | Order)})
    sessions = sorted({e.session_id for e in events if isinstance(e, Click)})
    items = sorted({e.item_id for e in events if isinstance(e, Click)})
    result = {}
    for key, ids, service in [("user_id", users, ["user_activity", "user_orders"]),
                              ("session_id", sessions, ["session_state"]),
                              ("item_id", items, ["item_popularity"])]:
        refs = [f"{view}:{name}" for view in service
                for name in store.get_feature_view(view).features and
                [f.name for f in store.get_feature_view(view).features]]
        result[key] = store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_dict()
    return result


def settled(settings, events, timeout=180):
    """The snapshot once the workers' group has committed every record of the inputs and
    of the entity updates: a batch is committed only after its online writes, so nothing
    sent before can change a feature after that."""
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    wait_until(lambda: drained(settings, topics), timeout, what="every input and update to be committed")
    return snapshot(settings, events)
