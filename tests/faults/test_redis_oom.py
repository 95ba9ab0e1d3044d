"""Fault 7: Redis answers OOM (it reached its ``maxmemory`` with no eviction), then gets room.

Seen failing before issue 32's fix: the OOM reply was not one of the errors a sink write
retries, so it escaped the feature agent's batch and the worker exited with status 70,
and again after each restart, while Redis stayed full.
"""

from __future__ import annotations

import httpx
import pytest
import redis as redis_client

from shopstream import workers
from shopstream.topics import ensure_topics
from tests.faults.test_stalled_redis import FIRST, SECOND, _retrying, drain, events, send
from tests.faults.test_stop_during_stall import clicks_counted
from tests.integration.conftest import start_worker, wait_until

pytestmark = pytest.mark.integration


def test_redis_out_of_memory_is_waited_out_as_a_sink_that_is_down(private_redis, tmp_path):
    settings = private_redis
    clicks = events(settings.app_id[:4])
    ensure_topics(settings)
    log_file = tmp_path / "worker.log"
    process = start_worker(settings, log_file)
    client = redis_client.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # below what it uses: every write is refused
        with pytest.raises(redis_client.exceptions.OutOfMemoryError):
            client.set("probe", "x")
        send(settings, clicks)
        wait_until(lambda: _retrying(settings.web_port, "online"), 120, what="online writes to be retried")
        health = httpx.get(f"http://127.0.0.1:{settings.web_port}/health", timeout=10)
        assert health.status_code == 503, health.text
        assert "OutOfMemoryError" in health.json()["checks"]["sink:online"]
        assert process.poll() is None, "the worker exited"

        client.config_set("maxmemory", 0)  # room again
        drain(settings)
        wait_until(lambda: clicks_counted(settings, clicks) == FIRST + SECOND, 60,
                   what="every click to be counted once Redis has room")
        assert workers.ready(settings.web_port)
        assert process.poll() is None, "the worker exited"
    finally:
        client.config_set("maxmemory", 0)
        client.close()
        code = workers.stop(process)
        print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-5000:])
