"""The fault suite: real Kafka and Redis, hostile input and broken services, each test
bounded in time and signalling only processes it started itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import worker  # noqa: F401 - the fixture, shared

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    """Every test here needs the real services: mark it so ``make unit`` leaves it out."""
    for item in items:
        if Path(item.fspath).parent == HERE:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def private_redis(settings, tmp_path):
    """``settings`` on a Redis of this test's own and topics of its own (one partition), so
    that the test may stop, continue or fill that Redis."""
    from shopstream.services import redis
    from tests.faults.test_stalled_redis import isolated

    own = isolated(settings, tmp_path, "run")
    redis.start(own)
    try:
        yield own
    finally:
        redis.stop(own)
