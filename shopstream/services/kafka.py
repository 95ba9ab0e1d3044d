"""Local Apache Kafka 4 brokers in KRaft mode, run from Maven Central jars: one by default,
or a cluster of one broker per address in ``kafka.brokers`` (``services up --cluster``),
each node both broker and controller, all of them voters of the controller quorum.

The broker jars (``org.apache.kafka:kafka_2.13`` and its runtime dependencies) are
resolved by ``mvn`` into ``<home>/cache/kafka-<version>/libs``. The storage is formatted
once with ``kafka.tools.StorageTool``; later starts reuse the log directory, so topics and
records survive a restart.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from confluent_kafka.admin import AdminClient

from shopstream.services import _process
from shopstream.settings import Settings


@dataclass(frozen=True)
class KafkaPaths:
    """Where one local broker keeps its jars, data, config and logs."""

    libs: Path
    data: Path
    config: Path
    logs: Path
    pid: Path

    @classmethod
    def of(cls, settings: Settings, node: int = 1) -> KafkaPaths:
        """The paths of broker ``node`` (from 1); a single broker keeps the folder of old."""
        home = settings.home.resolve()
        root = home / "kafka" if len(settings.kafka.ports) == 1 else home / "kafka" / f"node-{node}"
        return cls(
            libs=settings.cache.resolve() / f"kafka-{settings.kafka.version}" / "libs",
            data=root / "data",
            config=root / "server.properties",
            logs=root / "logs",
            pid=root / "kafka.pid",
        )


def nodes(settings: Settings) -> list[int]:
    """The node ids of the local brokers, one per bootstrap address: 1, 2, 3, ..."""
    return list(range(1, len(settings.kafka.ports) + 1))


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


def server_properties(settings: Settings, data_dir: Path, node: int = 1) -> str:
    """The configuration of broker ``node``: broker and controller in one process. With
    several nodes, every node is a voter of the controller quorum, and internal topics
    (consumer offsets, transactions) are replicated like shopstream's own."""
    kafka, topics = settings.kafka, settings.topics
    count = len(kafka.ports)
    port, controller = kafka.ports[node - 1], kafka.controller_port + node - 1
    voters = ",".join(f"{n}@127.0.0.1:{kafka.controller_port + n - 1}" for n in range(1, count + 1))
    internal_rf = min(count, max(topics.replication_factor, 1))
    internal_isr = min(internal_rf, topics.min_insync_replicas)
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        f"num.partitions={topics.partitions}",
        f"default.replication.factor={internal_rf}",  # topics Faust creates (changelogs)
        f"min.insync.replicas={internal_isr}",
        f"message.max.bytes={kafka.max_message_bytes}",
        f"replica.fetch.max.bytes={kafka.max_message_bytes}",
        f"offsets.topic.replication.factor={internal_rf}",
        "offsets.topic.num.partitions=4",  # 50 by default: slow to create on a small machine
        f"transaction.state.log.replication.factor={internal_rf}",
        f"transaction.state.log.min.isr={internal_isr}",
        f"share.coordinator.state.topic.replication.factor={internal_rf}",
        f"share.coordinator.state.topic.min.isr={internal_isr}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",  # Faust creates its changelog topics itself
        "unclean.leader.election.enable=false",  # never elect a replica that lacks records
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


def answers(settings: Settings, timeout: float = 2.0, *, node: int | None = None) -> bool:
    """Whether the brokers (or broker ``node`` alone) answer a metadata request, and, for
    the whole cluster, whether every local broker has joined it."""
    ports = settings.kafka.ports if node is None else [settings.kafka.ports[node - 1]]
    if not any(_process.port_open("127.0.0.1", port) for port in ports):
        return False
    config = settings.kafka.client_config()
    if node is not None:
        config["bootstrap.servers"] = f"127.0.0.1:{ports[0]}"
    try:
        metadata = AdminClient(config).list_topics(timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return False
    return node is not None or len(metadata.brokers) >= len(settings.kafka.ports)


def _format(settings: Settings, paths: KafkaPaths, cluster_id: str) -> None:
    result = subprocess.run(
        _java(settings, paths, "kafka.tools.StorageTool", "format", "-t", cluster_id,
              "-c", str(paths.config)),
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def _cluster_id_of(settings: Settings) -> str | None:
    """The cluster id a node's storage was formatted with, if any has been."""
    for node in nodes(settings):
        meta = KafkaPaths.of(settings, node).data / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
    return None


def start_node(settings: Settings, node: int) -> None:
    """Start broker ``node`` unless it runs; return at once (``start`` waits)."""
    paths = KafkaPaths.of(settings, node)
    if _process.pid_of(paths.pid) is not None:
        return
    port = settings.kafka.ports[node - 1]
    if _process.port_open("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken by another process; "
                           "set SHOPSTREAM_KAFKA__BROKERS to other ports")
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, paths.data, node))
    if not (paths.data / "meta.properties").exists():
        _format(settings, paths, _cluster_id_of(settings) or _cluster_id())
    _process.start(_java(settings, paths, "kafka.Kafka", str(paths.config)),
                   pid_file=paths.pid, log_file=paths.logs / "stdout.log")


def start(settings: Settings, *, timeout: float = 120.0) -> float:
    """Start every local broker that is not running; return the seconds until the cluster
    answered with all of them."""
    if all(_process.pid_of(KafkaPaths.of(settings, n).pid) for n in nodes(settings)) and answers(settings):
        return 0.0
    fetch_jars(settings)
    if _cluster_id_of(settings) is None and len(nodes(settings)) > 1:
        cluster_id = _cluster_id()  # the same id for every node of a new cluster
        for node in nodes(settings):
            paths = KafkaPaths.of(settings, node)
            paths.data.mkdir(parents=True, exist_ok=True)
            paths.config.write_text(server_properties(settings, paths.data, node))
            _format(settings, paths, cluster_id)
    for node in nodes(settings):
        start_node(settings, node)
    first = KafkaPaths.of(settings, 1)
    return _process.wait_for(lambda: answers(settings), timeout=timeout, what="Kafka",
                             pid_file=first.pid, log_file=first.logs / "server.log")


def stop_node(settings: Settings, node: int, *, kill: bool = False) -> bool:
    """Stop broker ``node`` (``kill``: at once, with SIGKILL); return whether it ran."""
    paths = KafkaPaths.of(settings, node)
    if kill:
        return _process.kill(paths.pid)
    return _process.stop(paths.pid, timeout=60.0)


def stop(settings: Settings) -> bool:
    """Stop every local broker; return whether one was running."""
    return any([stop_node(settings, node) for node in nodes(settings)])


class Placement(NamedTuple):
    """Where a partition lives: its leader node (-1: none), its replicas, those in sync."""

    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


def placements(settings: Settings, topics: list[str], timeout: float = 10.0) -> dict[tuple[str, int], Placement]:
    """The ``Placement`` of each partition of ``topics``, from the cluster's metadata."""
    metadata = AdminClient(settings.kafka.client_config()).list_topics(timeout=timeout)
    return {(name, p.id): Placement(p.leader, tuple(p.replicas), tuple(p.isrs)) for name in topics
            if name in metadata.topics for p in metadata.topics[name].partitions.values()}


def quorum_leader(settings: Settings) -> int | None:
    """The active controller: the leader of the newest epoch that any running node's
    ``quorum-state`` file records (KRaft writes it when a leader is elected or learnt)."""
    best: tuple[int, int] | None = None
    for node in nodes(settings):
        paths = KafkaPaths.of(settings, node)
        if _process.pid_of(paths.pid) is None:
            continue
        try:
            state = json.loads((paths.data / "__cluster_metadata-0" / "quorum-state").read_text())
        except (FileNotFoundError, ValueError):
            continue
        leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
        if leader is not None and leader > 0 and _process.pid_of(KafkaPaths.of(settings, leader).pid):
            if best is None or epoch > best[1]:
                best = (leader, epoch)
    return best[0] if best else None


def status(settings: Settings) -> list[dict]:
    """Each local broker: pid, port, whether it answers, and its role."""
    controller = quorum_leader(settings) if len(nodes(settings)) > 1 else 1
    rows = []
    for node in nodes(settings):
        paths = KafkaPaths.of(settings, node)
        pid = _process.pid_of(paths.pid)
        role = "broker, controller" + (" (active)" if node == controller and pid else "")
        rows.append({"service": f"kafka-{node}" if len(nodes(settings)) > 1 else "kafka",
                     "pid": pid, "address": f"127.0.0.1:{settings.kafka.ports[node - 1]}",
                     "role": role, "answers": pid is not None and answers(settings, node=node),
                     "data": str(paths.data), "log": str(paths.logs / "server.log")})
    return rows
