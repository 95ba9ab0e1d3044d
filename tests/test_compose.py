"""docker-compose.yml stays valid for users who have Docker."""

from __future__ import annotations

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
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_compose_worker_can_be_scaled():
    """A worker with a fixed name or host port would break ``--scale``."""
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "redis", "worker", "trainer"} <= set(services)
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
