"""docker-compose.yml stays valid for users who have Docker."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def compose_command() -> list[str] | None:
    """``docker compose`` or ``docker-compose``, whichever works here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_is_valid():
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose client on this machine")
    env = {**os.environ, "REDIS_PASSWORD": "only-for-the-check", "INTERNAL_KEY": "only-for-the-check"}
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr


def test_compose_worker_can_be_scaled():
    """A worker with a fixed name or host port would break ``--scale``."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "redis", "worker", "trainer"} <= set(services)
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    # The drift role runs in the default worker; the drift-triggered trainer is a job.
    assert "drift" in services["worker"]["environment"]["SHOPSTREAM_ROLES"]
    # one process per container: Prometheus scrapes port 6066 of each, not 6067
    assert all(services[name]["command"][-2:] == ["--processes", "1"] for name in ("worker", "scorer"))
    assert services["trainer-drift"]["command"][-1] == "--on-signal"


def test_compose_is_safe_by_default():
    """Loopback-only ports unless BIND_HOST opens them, a Redis password from .env that
    never reaches a command line, and no worker port on the host (issue 14)."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("kafka", "redis"):
        assert all(port.startswith("${BIND_HOST:-127.0.0.1}:") for port in services[name]["ports"])
    redis = services["redis"]
    assert "--requirepass" not in " ".join(redis["command"])
    assert "requirepass" in " ".join(redis["command"])  # through a file
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "-a " not in " ".join(redis["healthcheck"]["test"])
    for name in ("worker", "scorer"):
        assert "ports" not in services[name]
        # Internal records are signed with a key from .env, never a default (issue 32).
        assert services[name]["environment"]["SHOPSTREAM_INTERNAL_KEY"].startswith("${INTERNAL_KEY:?")


def test_the_image_runs_unprivileged_and_leaves_secrets_out():
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".env.*" in ignored


def test_compose_cluster_profile_has_three_brokers_and_a_redis_cluster():
    """The ``cluster`` profile: three KRaft voters with replicated topics, six Redis nodes
    joined by a one-shot job, and workers pointed at both; nothing of it in the default."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    brokers = [services[f"kafka-{n}"] for n in (1, 2, 3)]
    voters = {b["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for b in brokers}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert [b["environment"]["KAFKA_NODE_ID"] for b in brokers] == [1, 2, 3]
    assert {b["environment"]["CLUSTER_ID"] for b in brokers} != {None} and len({b["environment"]["CLUSTER_ID"]
                                                                              for b in brokers}) == 1
    assert all(b["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == 2 for b in brokers)
    nodes = [services[f"redis-{n}"] for n in range(1, 7)]
    assert all("--cluster-enabled yes" in node["command"][-1] for node in nodes)
    assert all("masterauth" in node["command"][-1] for node in nodes)  # replicas reach masters
    assert "--cluster-replicas 1" in services["redis-cluster-init"]["command"][-1]
    env = services["cluster-worker"]["environment"]
    assert env["SHOPSTREAM_REDIS__CLUSTER"] == "true" and env["SHOPSTREAM_TOPICS__REPLICATION_FACTOR"] == 3
    assert env["SHOPSTREAM_KAFKA__BROKERS"] == "kafka-1:19092,kafka-2:19092,kafka-3:19092"
    cluster = [name for name, service in services.items() if "cluster" in service.get("profiles", [])]
    assert set(cluster) == {"kafka-1", "kafka-2", "kafka-3", *(f"redis-{n}" for n in range(1, 7)),
                            "redis-cluster-init", "cluster-worker"}


def test_compose_monitoring_profile_provisions_prometheus_and_grafana():
    """Prometheus with the tested rules scraping every worker replica, and Grafana with the
    dashboard, only in the `monitoring` profile and on loopback (issue 19)."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert all(port.startswith("${BIND_HOST:-127.0.0.1}:") for port in services[name]["ports"])
        for volume in services[name]["volumes"]:
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), volume
    config = [arg for arg in services["prometheus"]["command"] if arg.startswith("--config.file=")][0]
    scrape = yaml.safe_load((ROOT / "ops" / "prometheus" / config.rsplit("/", 1)[1]).read_text())
    assert scrape["rule_files"] == ["rules.yml"]
    assert {"worker", "scorer"} <= set(scrape["scrape_configs"][0]["dns_sd_configs"][0]["names"])
    assert scrape["scrape_configs"][0]["dns_sd_configs"][0]["port"] == 6066
