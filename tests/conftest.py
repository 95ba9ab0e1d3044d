"""Fixtures shared by the whole suite.

Integration tests (marker ``integration``) get a real Kafka and Redis, started once per
``pytest`` run on free ports in a temporary folder and stopped at the end. Under
pytest-xdist (``-n``) the first test process that needs them starts them, the others
find them through a file beside them, and the controlling process stops them when the run
ends. Each test gets its own topic names, app id and home, and each test process its own
Redis database, emptied before every test, so tests never see each other's records or
features. A test that stops or stalls a service starts a private one (``private_kafka``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from shopstream.settings import KafkaSettings, RedisSettings, Settings, Topics

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SHARED = "SHOPSTREAM_TEST_SERVICES"
"""The environment variable naming the folder of the run's shared services; the
controlling process sets it before pytest-xdist starts its workers, which inherit it."""


PORTS = range(20000, 32000)
"""Ports handed to test services and workers: below Linux's ephemeral range (32768 and up),
so no client connection's local port takes one between choosing it and binding it."""


def _port_block() -> range:
    """This test process's own slice of ``PORTS``, so two pytest-xdist workers never choose the
    same port (``gw3`` takes the fourth of 8 slices; a run without xdist takes the first)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) % 8 if worker.removeprefix("gw").isdigit() else 0
    size = len(PORTS) // 8
    return range(PORTS.start + index * size, PORTS.start + (index + 1) * size, 2)


_next_port = [None]


def free_port() -> int:
    """A TCP port that nothing listens on right now, with the port after it free too: a worker
    started with ``--processes 2`` and tests that start a second worker take ``port + 1``.

    Ports come round-robin from this process's slice of ``PORTS``, starting at a random pair so
    that two test runs side by side rarely try the same ports."""
    block = _port_block()
    if _next_port[0] is None:
        _next_port[0] = random.randrange(len(block))
    for _ in range(len(block)):
        port = block[_next_port[0] % len(block)]
        _next_port[0] += 1
        if bindable(port) and bindable(port + 1):
            return port
    raise RuntimeError(f"no free pair of ports in {block}")


def bindable(port: int) -> bool:
    """Whether nothing holds ``port`` on loopback right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_started = [time.monotonic()]


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controlling process, or a run without -n
        _started[0] = time.monotonic()
        os.environ[SHARED] = tempfile.mkdtemp(prefix="shopstream-tests-")
        # One thread per test process for torch, LightGBM and numpy's BLAS: several test
        # processes share the cores, and each sizing its pools to all of them makes the
        # training tests many times slower than alone. Set before any of them is imported.
        for pool in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(pool, "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the run's shared services, if a test started them, and remove their folder."""
    if hasattr(config, "workerinput") or not os.environ.get(SHARED):
        return
    folder = Path(os.environ.pop(SHARED))
    if (folder / "services.json").exists():
        from shopstream import services as local_services

        local_services.down(_shared_settings(folder), discard=True)
    shutil.rmtree(folder, ignore_errors=True)


DURATIONS = ROOT / ".shopstream" / "test-durations.txt"
"""Where each run writes its slowest tests (``make test`` prints the same table)."""


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Write the run's 25 slowest test phases, as ``--durations=25`` prints them, to
    ``DURATIONS``, with the run's wall time and how many tests passed, failed and skipped."""
    if hasattr(config, "workerinput"):
        return
    reports = [r for key in ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "")
               for r in terminalreporter.stats.get(key, []) if hasattr(r, "duration") and hasattr(r, "when")]
    if not reports:
        return
    slowest = sorted(reports, key=lambda r: r.duration, reverse=True)[:25]
    counts = {key: len([r for r in terminalreporter.stats.get(key, []) if getattr(r, "when", "call") == "call"
                        or key in ("error", "skipped")]) for key in ("passed", "failed", "error", "skipped")}
    wall = time.monotonic() - _started[0]
    lines = [f"pytest wall time {wall:.0f}s; " + ", ".join(f"{n} {k}" for k, n in counts.items()),
             "slowest 25 durations", *(f"{r.duration:8.2f}s {r.when:<8} {r.nodeid}" for r in slowest)]
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text("\n".join(lines) + "\n")
    terminalreporter.write_line(f"slowest tests written to {DURATIONS}")


@pytest.hookimpl(trylast=True)  # after tests/faults and tests/cluster mark theirs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Integration tests first: they are few and long, the unit tests many and short, so a
    test process that ends its long tests early takes short ones, and the run does not end
    waiting for one long test that started last. The order is the same in every process,
    as pytest-xdist requires."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is None)


def _shared_settings(folder: Path, ports: dict[str, int] | None = None) -> Settings:
    """The settings of the services on ``ports`` (default: those ``folder/services.json``
    records) whose data is under ``folder``."""
    ports = ports or json.loads((folder / "services.json").read_text())
    return Settings(
        home=folder / "home",
        cache=ROOT / ".cache",  # the broker jars are shared with `make up`
        kafka=KafkaSettings(brokers=f"127.0.0.1:{ports['kafka']}", controller_port=ports["controller"]),
        redis=RedisSettings(port=ports["redis"]),
    )


def redis_db(worker: str) -> int:
    """The Redis database of pytest-xdist's test process ``worker`` (``PYTEST_XDIST_WORKER``;
    empty without xdist): each has its own, so that emptying it spares the others.

    >>> redis_db(""), redis_db("gw0"), redis_db("gw2")
    (0, 1, 3)
    """
    db = 1 + int(worker.removeprefix("gw")) if worker else 0
    if db > 7:
        raise pytest.UsageError("at most 7 test processes (-n 7): each takes two of Redis's 16 databases")
    return db


def spare_db(settings: Settings) -> int:
    """A second Redis database of this test process, for a test that compares two online
    stores (``settings``' own, emptied before each test, is the first); emptied here."""
    db = settings.redis.db + 8
    with settings.redis.model_copy(update={"db": db}).client() as client:
        client.flushdb()
    return db


@pytest.fixture(scope="session")
def services() -> Settings:
    """Settings of the run's running Kafka and Redis, started by the first test process
    that asks; the Redis database is this test process's own."""
    from shopstream import services as local_services

    folder = Path(os.environ[SHARED])
    with FileLock(folder / "services.lock"):
        if not (folder / "services.json").exists():
            ports = {"kafka": free_port(), "controller": free_port(), "redis": free_port()}
            try:
                local_services.up(_shared_settings(folder, ports))
            except BaseException:
                local_services.down(_shared_settings(folder, ports), discard=True)
                raise
            (folder / "services.json").write_text(json.dumps(ports))  # for the others, and the stop
        settings = _shared_settings(folder)
    db = redis_db(os.environ.get("PYTEST_XDIST_WORKER", ""))
    return settings.model_copy(update={"redis": settings.redis.model_copy(update={"db": db})})


@pytest.fixture
def settings(services: Settings, tmp_path: Path) -> Settings:
    """The session's services with topic names, an app id, an empty online store and a
    home (offline log, registries) unique to this test: tests reuse entity ids, so
    features must not carry over."""
    import redis

    with redis.Redis(host=services.redis.host, port=services.redis.port, db=services.redis.db) as client:
        client.flushdb()  # this test process's own database
    prefix = f"t{uuid.uuid4().hex[:8]}"
    names = {name: f"{prefix}.{default}" for name, default in Topics().model_dump().items()
             if isinstance(default, str)}
    return services.model_copy(update={
        "topics": Topics(**names, partitions=2),
        "app_id": f"{prefix}-app",
        "web_port": free_port(),
        "home": tmp_path / "home",
    })


@pytest.fixture
def private_kafka(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """``settings`` on a Kafka broker of this test's own, for tests that stop or restart it
    (the run's broker serves the other tests meanwhile). Its home holds the broker's data."""
    from shopstream.services import kafka

    own = settings.model_copy(update={
        "home": tmp_path / "private-home",
        "kafka": settings.kafka.model_copy(update={"brokers": f"127.0.0.1:{free_port()}",
                                                   "controller_port": free_port()})})
    kafka.start(own)
    try:
        yield own
    finally:
        for node in kafka.nodes(own):
            kafka.stop_node(own, node, kill=True)  # its data is thrown away


@pytest.fixture
def data_dir() -> Path:
    """The shared real data beside the checkout; the test is skipped without it."""
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is missing: the real-data tests need ../shared/data")
    return DATA
