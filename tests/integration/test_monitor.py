"""A real Prometheus (Debian's) scraping a running worker (issue 19)."""

from __future__ import annotations

import pytest

from shopstream.services import prometheus
from tests.conftest import free_port
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def test_prometheus_scrapes_a_running_worker_and_loads_the_rules(worker, tmp_path):
    settings = worker.model_copy(update={"home": tmp_path / "home", "prometheus_port": free_port()})
    try:
        prometheus.start(settings, [settings.web_port], interval_s=1)
        wait_until(lambda: prometheus.query(settings, 'up{job="shopstream"}')
                   and prometheus.query(settings, 'up{job="shopstream"}')[0]["value"][1] == "1",
                   60, "Prometheus to scrape the worker")
        series = prometheus.query(settings, '{__name__=~"shopstream_.+", job="shopstream"}')
        assert {s["metric"]["__name__"] for s in series} >= {"shopstream_consumer_lag", "shopstream_duplicate_labels_total"}
        import httpx

        groups = httpx.get(f"{prometheus.url(settings)}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {rule["name"] for group in groups for rule in group["rules"]} >= {"ShopstreamConsumerLag",
                                                                               "ShopstreamDrift"}
    finally:
        prometheus.stop(settings)
