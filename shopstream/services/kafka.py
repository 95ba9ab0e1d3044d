"""A local single-node Apache Kafka 4 broker in KRaft mode, run from Maven Central jars.

The broker jars (``org.apache.kafka:kafka_2.13`` and its runtime dependencies) are
resolved by ``mvn`` into ``<home>/cache/kafka-<version>/libs``. The storage is formatted
once with ``kafka.tools.StorageTool``; later starts reuse the log directory, so topics and
records survive a restart.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from shopstream.services import _process
from shopstream.settings import Settings


@dataclass(frozen=True)
class KafkaPaths:
    """Where the local broker keeps its jars, data, config and logs."""

    libs: Path
    data: Path
    config: Path
    logs: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        home = settings.home.resolve()
        root = home / "kafka"
        return cls(
            libs=settings.cache.resolve() / f"kafka-{settings.kafka.version}" / "libs",
            data=root / "data",
            config=root / "server.properties",
            logs=root / "logs",
            pid=root / "kafka.pid",
        )


def fetch_jars(settings: Settings) -> Path:
    """Resolve the broker jars with Maven, once; return the folder that holds them."""
    paths = KafkaPaths.of(settings)
    if paths.libs.is_dir() and any(paths.libs.glob("kafka_2.13-*.jar")):
        return paths.libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"`{tool}` is not on PATH; the local Kafka broker needs Java 17+ and Maven")
    staging = paths.libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    pom = resources.files("shopstream.services") / "pom.xml"
    with resources.as_file(pom) as pom_path:
        result = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom_path), "dependency:copy-dependencies",
             f"-Dkafka.version={settings.kafka.version}", "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            capture_output=True, text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"mvn could not resolve Kafka {settings.kafka.version}:\n"
                           f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    staging.rename(paths.libs)  # only a complete set of jars is ever used
    return paths.libs


def server_properties(settings: Settings, data_dir: Path) -> str:
    """The broker configuration: one node that is both broker and controller."""
    port, controller = settings.kafka.port, settings.kafka.controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        f"num.partitions={settings.topics.partitions}",
        f"message.max.bytes={settings.kafka.max_message_bytes}",
        f"replica.fetch.max.bytes={settings.kafka.max_message_bytes}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",  # 50 by default: slow to create on a small machine
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",  # Faust creates its changelog topics itself
        "log.retention.hours=168",
        "",
    ])


def _java(settings: Settings, paths: KafkaPaths, main_class: str, *args: str) -> list[str]:
    return [
        "java", "-Xms128m", f"-Xmx{settings.kafka.heap}", "-XX:+UseG1GC",
        "-XX:TieredStopAtLevel=1",  # C1 only: a faster start, ample for a dev broker
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={resources.files('shopstream.services') / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp", f"{paths.libs}/*", main_class, *args,
    ]


def _cluster_id() -> str:
    """A new cluster id: a random UUID, base64url without padding, as Kafka writes them.
    Not one that starts with ``-`` (one in 64 do): the storage tool would read it as an
    option and refuse to format (seen: "argument --cluster-id/-t: expected one argument").
    Kafka's own ``Uuid.randomUuid`` draws again for the same reason."""
    while (cluster := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster


def answers(settings: Settings, timeout: float = 2.0) -> bool:
    """Whether the broker answers a metadata request."""
    if not _process.port_open("127.0.0.1", settings.kafka.port):
        return False
    try:
        AdminClient(settings.kafka.client_config()).list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    return True


def start(settings: Settings, *, timeout: float = 90.0) -> float:
    """Start the broker unless it runs already; return the seconds until it answered."""
    paths = KafkaPaths.of(settings)
    if _process.pid_of(paths.pid) is not None and answers(settings):
        return 0.0
    if _process.port_open("127.0.0.1", settings.kafka.port):
        raise RuntimeError(f"port {settings.kafka.port} is taken by another process; "
                           "set SHOPSTREAM_KAFKA__BROKERS to another port")
    fetch_jars(settings)
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, paths.data))
    if not (paths.data / "meta.properties").exists():
        result = subprocess.run(
            _java(settings, paths, "kafka.tools.StorageTool", "format",
                  "-t", _cluster_id(), "-c", str(paths.config)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    _process.start(_java(settings, paths, "kafka.Kafka", str(paths.config)),
                   pid_file=paths.pid, log_file=paths.logs / "stdout.log")
    return _process.wait_for(lambda: answers(settings), timeout=timeout, what="Kafka",
                             pid_file=paths.pid, log_file=paths.logs / "server.log")


def stop(settings: Settings) -> bool:
    """Stop the broker; return whether one was running."""
    return _process.stop(KafkaPaths.of(settings).pid, timeout=60.0)


def status(settings: Settings) -> dict:
    """Pid, port and whether the broker answers."""
    paths = KafkaPaths.of(settings)
    return {"service": "kafka", "pid": _process.pid_of(paths.pid),
            "address": settings.kafka.brokers, "answers": answers(settings),
            "data": str(paths.data), "log": str(paths.logs / "server.log")}
