"""Fault 2, a stalled Redis, then kill -9: the worker is killed while its online write
hangs on a stopped Redis. After Redis resumes and the worker restarts, online values
**and** offline rows equal those of an uninterrupted run.

Seen failing before issue 14's fixes: the feature agent put the batch's states in its
table (and so on the changelog) before writing them out; the restarted worker restored
states that counted the batch as applied, ignored its redelivered updates, and never
wrote their rows, online or offline.

One partition and one input topic keep every entity's updates in one order, so the two
runs make the same rows, and the offline logs can be compared row for row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click
from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import OfflineLog
from shopstream.settings import Topics
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tests.conftest import free_port
from tests.integration.conftest import drained, metrics, start_worker, wait_until

FIRST, SECOND = 600, 600
VIEWS = ("user_activity", "session_state", "item_popularity")


def events(tag: str) -> list[Click]:
    start = datetime.now(UTC) - timedelta(minutes=30)
    return [Click(user_id=f"{tag}u{i % 40}", session_id=f"{tag}s{i % 90}", item_id=f"{tag}i{i % 70}",
                  ts=start + timedelta(seconds=i)) for i in range(FIRST + SECOND)]


def isolated(settings, tmp_path, name: str):
    prefix = f"{name}{uuid.uuid4().hex[:6]}"
    return settings.model_copy(update={
        "topics": Topics(**{k: f"{prefix}.{v}" for k, v in Topics().model_dump().items()
                            if isinstance(v, str)}, partitions=1),
        "app_id": f"{prefix}-app", "web_port": free_port(), "home": tmp_path / name,
        "redis": settings.redis.model_copy(update={"port": free_port()}),
    })


def send(settings, clicks) -> None:
    with ShopProducer(settings) as producer:
        for click in clicks:
            producer.send(click)


def drain(settings, timeout=180) -> None:
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    wait_until(lambda: drained(settings, topics), timeout, what="every record to be committed")


def result(settings, clicks) -> tuple[dict, dict]:
    """Online features of every entity, and the offline rows of every view (as sets:
    a batch read again after a crash may write its rows twice)."""
    store = feature_store(settings)
    online = {}
    for view, key, ids in [("user_activity", "user_id", {c.user_id for c in clicks}),
                           ("session_state", "session_id", {c.session_id for c in clicks}),
                           ("item_popularity", "item_id", {c.item_id for c in clicks})]:
        names = [f"{view}:{f.name}" for f in store.get_feature_view(view).features]
        online[view] = store.get_online_features(
            features=names, entity_rows=[{key: i} for i in sorted(ids)]).to_dict()
    log = OfflineLog(offline_root(settings))
    offline = {}
    for view in VIEWS:
        rows = log.read(view).drop_columns(["created"]).to_pylist()  # created: wall-clock time
        offline[view] = {tuple(sorted((k, str(v)) for k, v in row.items())) for row in rows}
    offline["raw_click"] = set(log.read("raw_click", columns=["payload"]).column("payload").to_pylist())
    return online, offline


def test_kill_during_a_stalled_online_write_loses_no_row(private_redis, tmp_path):
    settings = private_redis
    clicks = events(settings.app_id[:4])
    ensure_topics(settings)
    send(settings, clicks[:FIRST])
    process = start_worker(settings, tmp_path / "first.log")
    redis_pid = int((settings.home / "redis" / "redis.pid").read_text())
    try:
        drain(settings)
        os.kill(redis_pid, signal.SIGSTOP)
        send(settings, clicks[FIRST:])
        wait_until(lambda: (m := workers.scrape(settings.web_port)) is not None
                   and m.total_in >= FIRST + SECOND, what="the second half to be read")
        wait_until(lambda: (metrics(settings.web_port).dead_letters == {}
                            and _retrying(settings.web_port, "online")), what="an online write to hang")
        health = httpx.get(f"http://127.0.0.1:{settings.web_port}/health", timeout=10)
        assert health.status_code == 503, health.text  # readiness fails while a sink is down
        assert health.json()["checks"]["redis"] != "ok"
        assert health.json()["checks"]["sink:online"] != "ok"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        os.kill(redis_pid, signal.SIGCONT)
    restarted = start_worker(settings, tmp_path / "second.log")
    try:
        drain(settings)
        wait_until(lambda: workers.unaccounted(settings.web_port).get(settings.topics.clicks, 0) == 0,
                   what="the restarted worker to finish its batch")
        interrupted = result(settings, clicks)
    finally:
        print("--- first worker:\n" + (tmp_path / "first.log").read_text()[-3000:])
        workers.stop(restarted)

    expected = reference_result(settings, tmp_path, clicks)
    assert interrupted[1] == expected[1], "offline rows differ after the stalled write and the kill"
    assert interrupted[0] == expected[0], "online values differ after the stalled write and the kill"


def reference_result(settings, tmp_path, clicks) -> tuple[dict, dict]:
    """``result`` of an uninterrupted run of ``clicks`` on topics of its own and Redis db 1."""
    reference = isolated(settings, tmp_path, "reference")
    reference = reference.model_copy(update={"redis": settings.redis.model_copy(update={"db": 1})})
    ensure_topics(reference)
    send(reference, clicks)
    process = start_worker(reference, tmp_path / "reference.log")
    try:
        drain(reference)
        return result(reference, clicks)
    finally:
        workers.stop(process)


def _health(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["checks"]


def _retrying(port: int, sink: str) -> bool:
    return any(s.labels["sink"] == sink and s.value > 0
               for s in workers.samples(port, "shopstream_write_retries_total"))


def test_a_full_offline_disk_is_waited_out_and_loses_no_row(private_redis, tmp_path):
    """The variant with a full disk: the offline log lives on a 12 KiB tmpfs that fills up
    under traffic; the worker retries, reports the sink down, and once the disk is made
    larger it writes everything, as an uninterrupted run does."""
    settings = private_redis
    offline = offline_root(settings)
    offline.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(offline)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root; the full-disk variant cannot run here")
    clicks = events(settings.app_id[:4])
    try:
        ensure_topics(settings)
        send(settings, clicks)
        process = start_worker(settings, tmp_path / "worker.log")
        try:
            wait_until(lambda: _retrying(settings.web_port, "offline"), 120,
                       what="the offline disk to fill up")
            wait_until(lambda: "No space" in _health(settings.web_port).get("sink:offline", ""), 30,
                       what="/health to report the full disk")
            subprocess.run(["mount", "-o", "remount,size=64m", str(offline)], check=True)
            drain(settings)
            assert workers.ready(settings.web_port)
            filled = result(settings, clicks)
        finally:
            workers.stop(process)
        assert not list(offline.glob("*/.*.tmp")), "a failed write left its hidden file"
    finally:
        subprocess.run(["umount", "-l", str(offline)], capture_output=True)
    expected = reference_result(settings, tmp_path, clicks)
    assert filled[1] == expected[1], "offline rows differ after the disk filled up"
    assert filled[0] == expected[0], "online values differ after the disk filled up"
