"""Starting, finding and stopping a background server process by its pid file."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def pid_of(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive, else ``None``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(command: list[str], *, pid_file: Path, log_file: Path, env: dict | None = None) -> int:
    """Start ``command`` detached from this process, logging to ``log_file``; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it; Ctrl-C spares it
            env={**os.environ, **(env or {})},
        )
    pid_file.write_text(str(process.pid))
    return process.pid


def stop(pid_file: Path, *, timeout: float = 30.0) -> bool:
    """Stop the process in ``pid_file`` with SIGTERM, then SIGKILL; return if one ran."""
    pid = pid_of(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def kill(pid_file: Path, *, timeout: float = 10.0) -> bool:
    """Kill the process in ``pid_file`` at once (SIGKILL: a crash, for fault tests); wait
    until it is gone; return whether one ran."""
    pid = pid_of(pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:  # reap it if it is our child, so that it does not linger as a zombie
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def apt_install(package: str, binary: str) -> str:
    """Path of ``binary``, installing Debian's ``package`` with apt-get first if it is
    missing (as root, or with password-less sudo)."""
    found = shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{binary} is missing and apt-get is not available: install {package} yourself")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        result = subprocess.run(prefix + command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed; install {package} yourself:\n"
                               f"{result.stderr[-2000:]}")
    # Debian starts the package's own service; shopstream runs its own, so stop that one.
    subprocess.run(prefix + ["service", package, "stop"], capture_output=True)
    return shutil.which(binary) or f"/usr/bin/{binary}"


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(check, *, timeout: float, what: str, pid_file: Path, log_file: Path) -> float:
    """Poll ``check()`` until it is true; return the seconds waited or raise with the log tail."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        if pid_of(pid_file) is None:
            raise RuntimeError(f"{what} exited during start-up; last log lines:\n{tail(log_file)}")
        time.sleep(0.25)
    raise TimeoutError(f"{what} did not answer within {timeout:.0f}s; last log lines:\n{tail(log_file)}")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, or a note that it is missing."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"
