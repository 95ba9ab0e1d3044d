"""Fault 5: a flood of new entity ids keeps a worker's memory within its budget.

Seen failing before issue 32's fix: every entity a worker had seen in 120 days was held
decoded in its heap (about 6 KB each, with its tiles) besides its encoded copy in the
table's in-memory store, so a flood of random ids grew the worker without bound, and a
restart that restored the changelog grew it again. Now the states live in RocksDB on disk
(``features.state_store``) and at most ``features.live_states`` are held decoded.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import psutil
import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click
from shopstream.settings import FeatureSettings
from streams.app import updates_topic_name
from tests.integration.conftest import drained, start_worker, wait_until

pytestmark = pytest.mark.integration
WARM, FLOOD = 3_000, 40_000  # clicks; each names a new user, session and item: 3 entities
MiB = 1024 * 1024


def clicks(n: int, seed: int) -> list[Click]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    return [Click(user_id=f"u{rng.getrandbits(64):x}", session_id=f"s{rng.getrandbits(64):x}",
                  item_id=f"i{rng.getrandbits(64):x}", ts=start + timedelta(milliseconds=50 * i)) for i in range(n)]


def send_and_drain(settings, events) -> None:
    with ShopProducer(settings) as producer:
        for event in events:
            producer.send(event)
    topics = [settings.topics.clicks, updates_topic_name(settings)]
    wait_until(lambda: drained(settings, topics), 300, what=f"{len(events)} clicks to be processed")


def test_a_flood_of_new_ids_keeps_the_worker_within_its_state_memory_budget(settings, tmp_path):
    features = FeatureSettings(live_states=1_000, rocksdb_memory_mb=16)
    settings = settings.model_copy(update={"features": features, "roles": ("features",)})
    budget = (features.live_states * 8 * 1024 + 2 * features.rocksdb_memory_mb * MiB  # decoded, RocksDB
              + 3 * (WARM + FLOOD) * 256  # the expiry index: a key and a time per entity
              + 96 * MiB)  # batches in hand, tiles grown to a batch's states, allocator slack
    log_file = tmp_path / "worker.log"
    process = start_worker(settings, log_file)
    try:
        send_and_drain(settings, clicks(WARM, seed=1))
        time.sleep(2)
        before = psutil.Process(process.pid).memory_info().rss
        send_and_drain(settings, clicks(FLOOD, seed=2))
        time.sleep(2)
        after = psutil.Process(process.pid).memory_info().rss
        assert process.poll() is None
        print(f"RSS {before / MiB:.0f} MiB -> {after / MiB:.0f} MiB after {3 * FLOOD:,} new entities; "
              f"budget {budget / MiB:.0f} MiB")
        assert after - before < budget, f"the worker grew by {(after - before) / MiB:.0f} MiB"
        assert any((settings.home / "faust").rglob("*.sst")) or any((settings.home / "faust").rglob("*.log"))
    finally:
        workers.stop(process)
        print(log_file.read_text()[-3000:])
