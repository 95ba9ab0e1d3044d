"""Fault 3 again: a graceful stop while a sink hangs acknowledges nothing it has not
processed.

Seen failing before issue 32's fix: SIGTERM to ``shopstream worker --processes 2`` while
Redis was stopped cancelled the feature agents in the middle of their online writes; the
``finally`` of Faust's take loop acknowledged the batches in hand, the consumers committed
them on the way out, and the restarted worker never read those entity updates again: their
clicks were missing from every feature.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from shopstream import workers
from shopstream.featurestore import feature_store
from shopstream.settings import Topics, to_env
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tests.conftest import bindable, free_port
from tests.faults.test_stalled_redis import FIRST, SECOND, _retrying, drain, events, send
from tests.integration.conftest import start_worker, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def two_partitions(private_redis):
    """A Redis of this test's own, on topics of two partitions (one per process), and a
    web port free with the next one."""
    return private_redis.model_copy(update={
        "topics": Topics(**{**private_redis.topics.model_dump(), "partitions": 2}),
        "web_port": two_free_ports()})


def two_free_ports() -> int:
    """A port that is free with the one after it (the second process serves on ``+ 1``)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and bindable(port + 1):
            return port
    raise RuntimeError("no two free ports in a row")


def clicks_counted(settings, clicks) -> int:
    """The clicks that the users' ``clicks_count_1h`` counts, summed over every user."""
    users = sorted({c.user_id for c in clicks})
    rows = feature_store(settings).get_online_features(
        features=["user_activity:clicks_count_1h"], entity_rows=[{"user_id": u} for u in users]).to_dict()
    return sum(n or 0 for n in rows["clicks_count_1h"])


def test_sigterm_during_a_stalled_online_write_acknowledges_nothing_unwritten(two_partitions, tmp_path):
    settings = two_partitions
    clicks = events(settings.app_id[:4])
    ensure_topics(settings)
    send(settings, clicks[:FIRST])
    log_file = tmp_path / "supervisor.log"
    with log_file.open("ab") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "shopstream.cli", "worker", "--processes", "2"],
                                      env={**os.environ, **to_env(settings)}, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ports = [settings.web_port, settings.web_port + 1]
    redis_pid = int((settings.home / "redis" / "redis.pid").read_text())
    updates = updates_topic_name(settings)
    try:
        for port in ports:
            workers.wait_ready(supervisor, port, log_file, timeout=240, until=workers.prepared)
        drain(settings)
        before = workers.offsets(settings, [updates])
        os.kill(redis_pid, signal.SIGSTOP)
        send(settings, clicks[FIRST:])
        wait_until(lambda: all(_retrying(port, "online") for port in ports), 120,
                   what="both processes' online writes to hang")
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(120)
        after = workers.offsets(settings, [updates])
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        os.kill(redis_pid, signal.SIGCONT)
        print("--- supervisor and workers:\n" + log_file.read_text()[-6000:])
    # Nothing the stalled writes held was committed: every update record past the first
    # half is read again.
    assert {tp: committed for tp, (committed, _) in after.items()} == \
        {tp: committed for tp, (committed, _) in before.items()}, (before, after)
    assert any(end > committed for committed, end in after.values()), "no update was in hand"

    restarted = start_worker(settings, tmp_path / "restarted.log")
    try:
        drain(settings)
        counted = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not counted or counted[-1] != FIRST + SECOND):
            counted.append(clicks_counted(settings, clicks))
            time.sleep(0.5)
        assert counted[-1] == FIRST + SECOND, f"clicks counted after the restart, last five reads: {counted[-5:]}"
    finally:
        workers.stop(restarted)
        print("--- restarted worker:\n" + (tmp_path / "restarted.log").read_text()[-6000:])
