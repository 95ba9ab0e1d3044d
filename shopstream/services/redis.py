"""A local Redis server on loopback, from Debian's ``redis-server`` package, or a local
Redis Cluster of the same binary (``cluster-enabled yes``; ``services up --cluster``),
joined with ``redis-cli --cluster create``.

The package is installed with apt when it is missing and this process may do so. The
server gets its own port and data folder under ``<home>/redis`` and saves to disk
(RDB snapshots plus an append-only file), so online features survive a restart.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis as redis_client

from shopstream.services import _process
from shopstream.settings import Settings


def install() -> str:
    """Path of ``redis-server``, installed with apt-get first if it is missing."""
    return _process.apt_install("redis-server", "redis-server")


def _root(settings: Settings) -> Path:
    return settings.home.resolve() / "redis"


def _node_root(settings: Settings, port: int) -> Path:
    return _root(settings) if not settings.redis.cluster else _root(settings) / f"node-{port}"


def client(settings: Settings) -> redis_client.Redis:
    """A client for the configured Redis (a cluster client for a cluster)."""
    return settings.redis.client(socket_timeout=2)


def _node_client(settings: Settings, port: int) -> redis_client.Redis:
    """A plain client for one server, cluster node or not."""
    node = settings.redis.model_copy(update={"port": port, "cluster": False, "db": 0})
    return node.client(socket_timeout=2)


def _node_answers(settings: Settings, port: int) -> bool:
    try:
        with _node_client(settings, port) as node:
            return bool(node.ping())
    except redis_client.RedisError:
        return False


def answers(settings: Settings) -> bool:
    """Whether Redis answers PING; for a cluster, whether every node answers and the
    cluster serves all its slots."""
    if not settings.redis.cluster:
        return _node_answers(settings, settings.redis.port)
    return all(_cluster_ok(settings, port) for _, port in settings.redis.nodes)


def _cluster_ok(settings: Settings, port: int) -> bool:
    try:
        with _node_client(settings, port) as node:
            info = node.cluster("info")
    except redis_client.RedisError:
        return False
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) >= \
        settings.redis.cluster_nodes


def password_file(settings: Settings) -> Path:
    """A config file, readable by this user only, that sets the server's password (and,
    in a cluster, the password replicas use to reach their masters)."""
    path = _root(settings) / "auth.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        secret = settings.redis.password.get_secret_value().replace("\\", "\\\\").replace('"', '\\"')
        file.write(f'requirepass "{secret}"\n')
        if settings.redis.cluster:
            file.write(f'masterauth "{secret}"\n')
    os.chmod(path, 0o600)
    return path


def start_node(settings: Settings, port: int) -> None:
    """Start the server on ``port`` unless it runs; return at once (``start`` waits)."""
    root = _node_root(settings, port)
    pid_file = root / "redis.pid"
    if _process.pid_of(pid_file) is not None:
        return
    if _process.port_open("127.0.0.1", port):
        raise RuntimeError(f"port {port} is taken by another process; "
                           "set SHOPSTREAM_REDIS__PORT to another port")
    server = install()
    (root / "data").mkdir(parents=True, exist_ok=True)
    command = [
        server, "--bind", "127.0.0.1", "--port", str(port),
        "--dir", str(root / "data"), "--daemonize", "no",
        "--appendonly", "yes", "--save", "60 1000",
        "--logfile", str(root / "redis.log"),
    ]
    if settings.redis.cluster:
        command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(settings.redis.cluster_node_timeout_ms)]
    if settings.redis.password is not None:
        command.insert(1, str(password_file(settings)))  # not on the command line: `ps` shows that
    _process.start(command, pid_file=pid_file, log_file=root / "stdout.log")


def _create_cluster(settings: Settings) -> None:
    """Join the fresh nodes into one cluster: masters take the slots, replicas follow."""
    addresses = [f"{host}:{port}" for host, port in settings.redis.nodes]
    command = ["redis-cli", "--cluster", "create", *addresses,
               "--cluster-replicas", str(settings.redis.cluster_replicas), "--cluster-yes"]
    env = dict(os.environ)
    if settings.redis.password is not None:
        env["REDISCLI_AUTH"] = settings.redis.password.get_secret_value()  # not on the command line
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"`redis-cli --cluster create` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def start(settings: Settings, *, timeout: float = 60.0) -> float:
    """Start Redis (every node of a cluster, joined into one the first time) unless it runs
    already; return the seconds until it answered."""
    ports = [port for _, port in settings.redis.nodes]
    first = _node_root(settings, ports[0])
    if all(_process.pid_of(_node_root(settings, p) / "redis.pid") for p in ports) and answers(settings):
        return 0.0
    started = time.monotonic()
    for port in ports:
        start_node(settings, port)
    for port in ports:
        root = _node_root(settings, port)
        _process.wait_for(lambda port=port: _node_answers(settings, port), timeout=timeout,
                          what=f"Redis on port {port}", pid_file=root / "redis.pid",
                          log_file=root / "redis.log")
    if settings.redis.cluster:
        with _node_client(settings, ports[0]) as node:
            fresh = int(node.cluster("info").get("cluster_known_nodes", 1)) < 2
        if fresh:
            _create_cluster(settings)
        _process.wait_for(lambda: answers(settings), timeout=timeout, what="Redis Cluster",
                          pid_file=first / "redis.pid", log_file=first / "redis.log")
    return time.monotonic() - started


def stop_node(settings: Settings, port: int, *, kill: bool = False) -> bool:
    """Stop the server on ``port`` (``kill``: at once, with SIGKILL); return if it ran."""
    pid_file = _node_root(settings, port) / "redis.pid"
    return _process.kill(pid_file) if kill else _process.stop(pid_file)


def stop(settings: Settings) -> bool:
    """Stop Redis, every node of a cluster (they save on SIGTERM); return if one ran."""
    return any([stop_node(settings, port) for _, port in settings.redis.nodes])


def cluster_nodes(settings: Settings) -> dict[int, dict]:
    """Each cluster node by port, as a node that answers sees it: role, master, slots."""
    for _, port in settings.redis.nodes:
        try:
            with _node_client(settings, port) as node:
                return {int(address.split("@")[0].rsplit(":", 1)[1]): info
                        for address, info in node.cluster("nodes").items()}
        except redis_client.RedisError:
            continue
    return {}


def status(settings: Settings) -> list[dict]:
    """Each server: pid, address, role and whether it answers."""
    view = cluster_nodes(settings) if settings.redis.cluster else {}
    rows = []
    for host, port in settings.redis.nodes:
        root = _node_root(settings, port)
        info = view.get(port, {})
        flags = info.get("flags", "")
        role = ("master" if "master" in flags else "replica" if "slave" in flags else "?") \
            + (" (failed)" if "fail" in flags else "") if settings.redis.cluster else "standalone"
        if info.get("slots"):
            role += " " + ",".join("-".join(slot) for slot in info["slots"])
        rows.append({"service": f"redis-{port}" if settings.redis.cluster else "redis",
                     "pid": _process.pid_of(root / "redis.pid"), "address": f"{host}:{port}",
                     "role": role, "answers": _node_answers(settings, port),
                     "data": str(root / "data"), "log": str(root / "redis.log")})
    return rows
