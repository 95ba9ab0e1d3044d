"""``shopstream worker --processes 2``: two processes share the partitions, each serves
its own pages, every event is processed once, and a signal stops them both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.settings import to_env
from shopstream.topics import ensure_topics
from tests.conftest import free_port
from tests.integration.conftest import metrics, wait_until
from tools.burst import burst

pytestmark = pytest.mark.integration


def test_two_processes_share_the_partitions_and_stop_together(settings, tmp_path):
    port = free_port()  # the second process takes port + 1, which free_port leaves free
    settings = settings.model_copy(update={"web_port": port})
    ensure_topics(settings)
    log = (tmp_path / "workers.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "shopstream.cli", "worker", "--processes", "2"],
        env={**os.environ, **to_env(settings)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: workers.ready(port) and workers.ready(port + 1), 180,
                   what="both processes to own partitions")
        # Input and updates partitions are shared out; changelogs are read by both (standbys).
        assigned = [{tp for tp in httpx.get(f"http://127.0.0.1:{p}/health", timeout=5).json()["assigned"]
                     if ".shop." in tp or "entity-updates" in tp} for p in (port, port + 1)]
        assert assigned[0] and assigned[1] and not assigned[0] & assigned[1]
        with ShopProducer(settings) as shop:
            for record in burst(400, seed=4, bad_share=0.0):
                shop.send(record.event)
        wait_until(lambda: sum(metrics(p).total_out for p in (port, port + 1)) >= 400, 120,
                   what="both processes to process the events")
        assert sum(metrics(p).total_out for p in (port, port + 1)) == 400
    finally:
        code = workers.stop(supervisor, timeout=60)
        log.close()
    assert code == 0, (tmp_path / "workers.log").read_text()[-3000:]
    assert not workers.ready(port) and not workers.ready(port + 1)


def test_workers_stop_when_their_supervisor_is_killed(settings, tmp_path):
    """Seen in ``make bench``: a ``--processes 4`` supervisor, killed after the 30 s that
    ``workers.stop`` gives it, left a worker running for the rest of the bench, still in
    its consumer group."""
    port = free_port()
    settings = settings.model_copy(update={"web_port": port})
    ensure_topics(settings)
    with (tmp_path / "workers.log").open("wb") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "shopstream.cli", "worker", "--processes", "2"],
                                      env={**os.environ, **to_env(settings)}, stdout=log, stderr=subprocess.STDOUT)
    children: list[int] = []
    try:
        wait_until(lambda: workers.ready(port) and workers.ready(port + 1), 180, what="both processes to be ready")
        children = [int(pid) for pid in
                    Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()]
        assert len(children) == 2
        supervisor.kill()
        supervisor.wait()
        wait_until(lambda: not any(running(pid) for pid in children), 120, what="both workers to exit")
    finally:
        for pid in children:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one not yet reaped is a zombie: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
