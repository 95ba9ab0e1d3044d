"""Debian's Prometheus on loopback, scraping local workers with shopstream's alert rules.

``shopstream services monitor`` (``make monitor``) starts it; ``services monitor --stop``
stops it. The scrape configuration is ``ops/prometheus/prometheus.yml`` with the targets
replaced by the given workers' web ports and its rules copied beside it; the data lives
under ``<home>/prometheus``. Debian's package ships ``promtool`` too, which ``make test``
uses to test the rules.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import yaml

from shopstream.services import _process
from shopstream.settings import Settings

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
"""The repository's scrape configuration and alert rules."""


def install() -> str:
    """Path of ``prometheus``, installed with apt-get (Debian's ``prometheus``) if missing."""
    return _process.apt_install("prometheus", "prometheus")


def promtool() -> str:
    """Path of ``promtool``, which Debian's ``prometheus`` package ships."""
    install()
    return shutil.which("promtool") or "/usr/bin/promtool"


def _root(settings: Settings) -> Path:
    return settings.home.resolve() / "prometheus"


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.prometheus_port}"


def config(targets: list[str], interval_s: float = 15.0) -> dict:
    """The repository's scrape configuration, scraping ``targets`` (``host:port``) every
    ``interval_s`` seconds.

    >>> config(["127.0.0.1:6066"], 5)["scrape_configs"][0]["static_configs"]
    [{'targets': ['127.0.0.1:6066']}]
    """
    conf = yaml.safe_load((OPS / "prometheus.yml").read_text())
    conf["global"] = {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": f"{interval_s:g}s"}
    (job,) = [job for job in conf["scrape_configs"] if job["job_name"] == "shopstream"]
    job["static_configs"] = [{"targets": targets}]
    return conf


def start(settings: Settings, ports: list[int], *, interval_s: float = 15.0, timeout: float = 60.0) -> float:
    """Start Prometheus on ``127.0.0.1:<prometheus_port>`` scraping the workers on ``ports``
    (restarted if it runs already, so that the targets are these); return the seconds
    until it was ready."""
    binary = install()
    root = _root(settings)
    root.mkdir(parents=True, exist_ok=True)
    stop(settings)
    shutil.copy(OPS / "rules.yml", root / "rules.yml")
    (root / "prometheus.yml").write_text(yaml.safe_dump(config([f"127.0.0.1:{p}" for p in ports], interval_s)))
    started = time.monotonic()
    _process.start([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{settings.prometheus_port}"],
                   pid_file=root / "prometheus.pid", log_file=root / "prometheus.log")
    _process.wait_for(lambda: ready(settings), timeout=timeout, what="Prometheus",
                      pid_file=root / "prometheus.pid", log_file=root / "prometheus.log")
    return time.monotonic() - started


def stop(settings: Settings) -> bool:
    """Stop Prometheus; return whether it ran. Its data is kept."""
    return _process.stop(_root(settings) / "prometheus.pid")


def ready(settings: Settings) -> bool:
    try:
        return httpx.get(f"{url(settings)}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(settings: Settings, promql: str) -> list[dict]:
    """The result of an instant query: ``[{"metric": {...}, "value": [time, "value"]}]``."""
    response = httpx.get(f"{url(settings)}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def test_rules(rules_test: Path = OPS / "rules_test.yml") -> tuple[int, str]:
    """Run ``promtool test rules``; return its exit code and output."""
    import subprocess

    result = subprocess.run([promtool(), "test", "rules", str(rules_test)], capture_output=True, text=True,
                            cwd=rules_test.parent)
    return result.returncode, result.stdout + result.stderr
