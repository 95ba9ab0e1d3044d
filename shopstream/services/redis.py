"""A local Redis server on loopback, from Debian's ``redis-server`` package.

The package is installed with apt when it is missing and this process may do so. The
server gets its own port and data folder under ``<home>/redis`` and saves to disk
(RDB snapshots plus an append-only file), so online features survive a restart.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import redis as redis_client

from shopstream.services import _process
from shopstream.settings import Settings


def install() -> str:
    """Path of ``redis-server``, installed with apt-get first if it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("redis-server is missing and apt-get is not available: install Redis 7")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]):
        result = subprocess.run(prefix + command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed; install redis-server yourself:\n"
                               f"{result.stderr[-2000:]}")
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    # Debian starts its own instance on port 6379; shopstream runs its own, so stop that one.
    subprocess.run(prefix + ["service", "redis-server", "stop"], capture_output=True)
    return found


def _root(settings: Settings) -> Path:
    return settings.home.resolve() / "redis"


def client(settings: Settings) -> redis_client.Redis:
    """A client for the configured Redis."""
    return redis_client.Redis.from_url(settings.redis.url(reveal=True), socket_timeout=2)


def answers(settings: Settings) -> bool:
    """Whether Redis answers PING."""
    try:
        return bool(client(settings).ping())
    except redis_client.RedisError:
        return False


def password_file(settings: Settings) -> Path:
    """A config file, readable by this user only, that sets the server's password."""
    path = _root(settings) / "auth.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        secret = settings.redis.password.get_secret_value().replace("\\", "\\\\").replace('"', '\\"')
        file.write(f'requirepass "{secret}"\n')
    os.chmod(path, 0o600)
    return path


def start(settings: Settings, *, timeout: float = 30.0) -> float:
    """Start Redis unless it runs already; return the seconds until it answered."""
    root = _root(settings)
    pid_file = root / "redis.pid"
    if _process.pid_of(pid_file) is not None and answers(settings):
        return 0.0
    if _process.port_open("127.0.0.1", settings.redis.port):
        raise RuntimeError(f"port {settings.redis.port} is taken by another process; "
                           "set SHOPSTREAM_REDIS__PORT to another port")
    server = install()
    (root / "data").mkdir(parents=True, exist_ok=True)
    command = [
        server, "--bind", "127.0.0.1", "--port", str(settings.redis.port),
        "--dir", str(root / "data"), "--daemonize", "no",
        "--appendonly", "yes", "--save", "60 1000",
        "--logfile", str(root / "redis.log"),
    ]
    if settings.redis.password is not None:
        command.insert(1, str(password_file(settings)))  # not on the command line: `ps` shows that
    _process.start(command, pid_file=pid_file, log_file=root / "stdout.log")
    return _process.wait_for(lambda: answers(settings), timeout=timeout, what="Redis",
                             pid_file=pid_file, log_file=root / "redis.log")


def stop(settings: Settings) -> bool:
    """Stop Redis (it saves on SIGTERM); return whether one was running."""
    return _process.stop(_root(settings) / "redis.pid")


def status(settings: Settings) -> dict:
    """Pid, address and whether Redis answers."""
    root = _root(settings)
    return {"service": "redis", "pid": _process.pid_of(root / "redis.pid"),
            "address": f"{settings.redis.host}:{settings.redis.port}",
            "answers": answers(settings), "data": str(root / "data"),
            "log": str(root / "redis.log")}
