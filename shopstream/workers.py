"""Starting local workers as child processes and reading their ``/metrics``.

Used by ``shopstream demo`` and the integration tests, which both need a real worker
running beside them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class WorkerMetrics:
    """A snapshot of one worker's counters."""

    events_in: dict[str, float] = field(default_factory=dict)  # by topic
    events_out: dict[str, float] = field(default_factory=dict)  # by topic
    dead_letters: dict[str, float] = field(default_factory=dict)  # by reason
    lag: float = 0.0
    late: float = 0.0
    online_batches: float = 0.0
    online_rows: float = 0.0
    online_write_s: float = 0.0  # total seconds spent in online writes
    freshness: list[tuple[float, float]] = field(default_factory=list)  # (le, cumulative count)
    model_versions: dict[str, float] = field(default_factory=dict)  # model -> version (0: rules)
    predictions: dict[tuple[str, str], float] = field(default_factory=dict)  # (version, decision)
    recommendations: dict[tuple[str, str], float] = field(default_factory=dict)  # (version, strategy)
    labelled: dict[str, float] = field(default_factory=dict)  # tp, fp, fn, tn of labelled scores
    answers: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (model, version, variant)

    def freshness_quantile(self, q: float, since: WorkerMetrics | None = None) -> float | None:
        """Upper bound of the bucket holding quantile ``q`` of feature freshness, seconds:
        of every batch the worker wrote, or of those after ``since``, an earlier snapshot
        of the same worker (the histogram counts from the worker's start).

        >>> before = WorkerMetrics(freshness=[(0.5, 0), (1.0, 0), (30.0, 90), (float("inf"), 100)])
        >>> now = WorkerMetrics(freshness=[(0.5, 80), (1.0, 100), (30.0, 190), (float("inf"), 200)])
        >>> now.freshness_quantile(0.99), now.freshness_quantile(0.99, since=before)
        (inf, 1.0)
        """
        earlier = dict(since.freshness) if since is not None else {}
        counts = [(le, count - earlier.get(le, 0.0)) for le, count in self.freshness]
        if not counts or counts[-1][1] <= 0:
            return None
        total = counts[-1][1]
        return next(le for le, count in counts if count >= q * total)

    @property
    def total_in(self) -> float:
        return sum(self.events_in.values())

    @property
    def total_out(self) -> float:
        return sum(self.events_out.values())

    @property
    def total_dead(self) -> float:
        return sum(self.dead_letters.values())


def scrape(port: int, host: str = "127.0.0.1") -> WorkerMetrics | None:
    """The worker's metrics, or ``None`` if it does not answer."""
    try:
        text = httpx.get(f"http://{host}:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    lag = 0.0
    freshness: list[tuple[float, float]] = []
    versions: dict[str, float] = {}
    predictions: dict[tuple[str, str], float] = {}
    recommendations: dict[tuple[str, str], float] = {}
    answers: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "shopstream_events_in_total":
                sums["in"][sample.labels["topic"]] += sample.value
            elif sample.name == "shopstream_events_out_total":
                sums["out"][sample.labels["topic"]] += sample.value
            elif sample.name == "shopstream_dead_letters_total":
                sums["dead"][sample.labels["reason"]] += sample.value
            elif sample.name == "shopstream_consumer_lag":
                lag += sample.value
            elif sample.name == "shopstream_late_updates_total":
                sums["late"][""] += sample.value
            elif sample.name == "shopstream_online_batch_rows_count":
                sums["online"]["batches"] = sample.value
            elif sample.name == "shopstream_online_batch_rows_sum":
                sums["online"]["rows"] = sample.value
            elif sample.name == "shopstream_write_seconds_sum" and sample.labels["sink"] == "online":
                sums["online"]["seconds"] = sample.value
            elif sample.name == "shopstream_feature_freshness_seconds_bucket":
                freshness.append((float(sample.labels["le"]), sample.value))
            elif sample.name == "shopstream_model_version":
                versions[sample.labels["model"]] = sample.value
            elif sample.name == "shopstream_labelled_scores_total":
                sums["labelled"][sample.labels["outcome"]] += sample.value
            elif sample.name == "shopstream_model_predictions_total":
                key = (sample.labels["model"], sample.labels["version"], sample.labels["variant"])
                answers[key] = answers.get(key, 0.0) + sample.value
            elif sample.name == "ml_model_predictions_total":
                # Fraud scores count by decision, recommendations by strategy.
                kind = recommendations if sample.labels["model"].endswith("recs") else predictions
                key = (sample.labels["version"], sample.labels["decision"])
                kind[key] = kind.get(key, 0.0) + sample.value
    return WorkerMetrics(dict(sums["in"]), dict(sums["out"]), dict(sums["dead"]), lag,
                         late=sums["late"][""], online_batches=sums["online"]["batches"],
                         online_rows=sums["online"]["rows"],
                         online_write_s=sums["online"]["seconds"], freshness=freshness,
                         model_versions=versions, predictions=predictions, recommendations=recommendations,
                         labelled=dict(sums["labelled"]), answers=answers)


def samples(port: int, name: str, host: str = "127.0.0.1"):
    """The samples called ``name`` on the worker's /metrics."""
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=2).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield sample


def records(port: int, host: str = "127.0.0.1") -> dict[tuple[str, str], float]:
    """``{(topic, outcome): records}`` of ``shopstream_records_total``; missing pairs are 0."""
    counts: dict[tuple[str, str], float] = defaultdict(float)
    for sample in samples(port, "shopstream_records_total", host):
        counts[sample.labels["topic"], sample.labels["outcome"]] += sample.value
    return counts


def unaccounted(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """``shopstream_records_unaccounted`` by topic: records read but neither processed nor
    dead-lettered, which is 0 for every topic whenever no micro-batch is in hand."""
    return {s.labels["topic"]: s.value for s in samples(port, "shopstream_records_unaccounted", host)}


def registry_checks(port: int, model: str, host: str = "127.0.0.1") -> float:
    """How many times the worker has asked the registry for ``model``'s champion."""
    return sum(s.value for s in samples(port, "shopstream_registry_checks_total", host)
               if s.labels["model"] == model)


def reload_failures(port: int, model: str, host: str = "127.0.0.1") -> float:
    """How many times the worker failed to load a champion of ``model``."""
    return sum(s.value for s in samples(port, "shopstream_model_reloads_total", host)
               if s.labels["model"] == model and s.labels["outcome"] == "failed")


def offsets(settings, topics: list[str], group: str | None = None) -> dict[tuple[str, int], tuple[int, int]]:
    """``{(topic, partition): (committed offset of the workers' group, end offset)}``."""
    from confluent_kafka import Consumer, TopicPartition

    from shopstream.settings import group_id

    consumer = Consumer({**settings.kafka.client_config(), "group.id": group or group_id(settings)})
    try:
        metadata = consumer.list_topics(timeout=10).topics  # the real partition counts
        partitions = [TopicPartition(topic, p) for topic in topics if topic in metadata
                      for p in sorted(metadata[topic].partitions)]
        committed = consumer.committed(partitions, timeout=10)
        return {(tp.topic, tp.partition): (tp.offset, consumer.get_watermark_offsets(tp, timeout=10)[1])
                for tp in committed}
    finally:
        consumer.close()


@dataclass(frozen=True)
class Owned:
    """One partition a group reads: who owns it and how far behind it is."""

    topic: str
    partition: int
    owner: str  # the member's host and id, or "-" when no member owns it
    committed: int  # -1: nothing committed yet
    end: int

    @property
    def lag(self) -> int:
        return self.end - max(self.committed, 0)


def group_view(settings, group: str | None = None, timeout: float = 10.0) -> tuple[str, list[Owned]]:
    """The state of a workers' group (default: this settings' group): its state, and every
    partition its members own or it has committed, with the owner and the lag."""
    from confluent_kafka.admin import AdminClient

    from shopstream.settings import group_id

    group = group or group_id(settings)
    admin = AdminClient(settings.kafka.client_config())
    description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()
    owners = {}
    for member in description.members:
        name = f"{member.host.lstrip('/')} {member.member_id.rsplit('-', 1)[-1][:8]}"
        for tp in member.assignment.topic_partitions if member.assignment else []:
            if not tp.topic.endswith(("-changelog", "__assignor-__leader")):  # tables, not read
                owners[tp.topic, tp.partition] = name  # through the group: no commits, no lag
    topics = sorted({topic for topic, _ in owners} | set(settings.topics.inputs().values()))
    rows = [Owned(topic, partition, owners.get((topic, partition), "-"), committed, end)
            for (topic, partition), (committed, end) in sorted(offsets(settings, topics, group).items())
            if (topic, partition) in owners or committed >= 0]
    return str(description.state).rsplit(".", 1)[-1].lower(), rows


def backlog(settings, topics: list[str]) -> int:
    """Records of ``topics`` that the app's group has not committed yet."""
    return sum(end - max(committed, 0) for committed, end in offsets(settings, topics).values())


def debug_page(port: int, page: str, host: str = "127.0.0.1") -> str:
    """A worker's ``/debug/<page>`` (``tasks``: where each of its tasks waits; ``consumer``:
    its commit bookkeeping per partition), or why there is none."""
    try:
        return httpx.get(f"http://{host}:{port}/debug/{page}", timeout=10).text
    except httpx.HTTPError as exc:
        return f"no /debug/{page} from port {port}: {exc!r}"


def health(port: int, host: str = "127.0.0.1") -> dict:
    """The worker's ``/health`` body; empty when it does not answer."""
    try:
        return httpx.get(f"http://{host}:{port}/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


def ready(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the worker's ``/health`` answers and it owns partitions."""
    return bool(health(port, host).get("assigned"))


def prepared(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the worker is ready and has prepared what it builds after readiness (the
    Feast clients and the registered definitions: ``/health``'s ``preparing`` is empty)."""
    body = health(port, host)
    return bool(body.get("assigned")) and body.get("preparing") == {}


def start(env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """Start ``python -m streams.worker`` with extra environment ``env``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.worker"],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def wait_ready(process: subprocess.Popen, port: int, log_file: Path, timeout: float = 90,
               *, until=ready) -> float:
    """Wait until the worker is ready (or ``until(port)`` holds, ``prepared`` for one);
    return the seconds waited, or raise with its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with {process.returncode}:\n{_tail(log_file)}")
        if until(port):
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"the worker was not {until.__name__} within {timeout:.0f}s "
                       f"(/health: {health(port)}):\n{_tail(log_file)}")


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """Stop a worker cleanly (SIGTERM), killing it after ``timeout``; return its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def next_to_stop(children, signalled: set[int], web_port: int, since: float,
                 settle_s: float = 60.0) -> int | None:
    """Which child to signal now, if any: one at a time, each once the one before has
    exited and the others have settled (ready again, or ``settle_s`` passed). Faust can
    hang stopping a worker while a rebalance hands it partitions: with all stopped at
    once, the last to leave is handed the others' partitions, and the records it fetches
    for them are never acknowledged (seen as ``--processes 2`` needing SIGKILL)."""
    alive = [i for i, child in enumerate(children) if child.poll() is None]
    if any(i in signalled for i in alive):
        return None  # the one signalled last is still stopping
    waiting = [i for i in alive if i not in signalled]
    if not waiting:
        return None
    settled = time.monotonic() - since > settle_s or all(ready(web_port + i) for i in waiting)
    return waiting[0] if settled or not signalled else None


def stop_with_parent(parent: int) -> Callable[[], None]:
    """What a child runs before it starts: on Linux, ask for SIGTERM when ``parent`` dies
    (``prctl(PR_SET_PDEATHSIG)``), so that a supervisor killed outright (SIGKILL after a
    stop timeout, the OOM killer) leaves no worker behind, still in its consumer group."""
    def arm() -> None:
        if sys.platform != "linux":
            return
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # it died before the request
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


def default_processes(cores: int | None = None) -> int:
    """Worker processes ``shopstream worker`` runs when not told: two on a machine with two
    cores or more (``make bench``: the features role drains 65 % faster on two processes
    than on one, every role 8 % faster, with Kafka and Redis on the same two cores), else
    one.

    >>> default_processes(1), default_processes(2), default_processes(16)
    (1, 2, 2)
    """
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return 2 if cores >= 2 else 1


def supervise(settings, processes: int) -> int:
    """Run ``processes`` workers of ``settings`` side by side until one stops or a signal
    comes; then stop the others and return the first exit status that is not 0.

    They join one consumer group, so Kafka shares the partitions among them: partitions
    are the unit of scale, so more processes than partitions leave some idle. Each gets
    its own web port (``web_port + i``) for ``/health`` and ``/metrics``. Any one that
    exits stops them all, so the supervisor above (systemd, Kubernetes, compose)
    restarts the set, as it would restart one worker.
    """
    import signal

    from shopstream.settings import to_env

    children = []
    for i in range(processes):
        env = {**os.environ, **to_env(settings.model_copy(update={"web_port": settings.web_port + i}))}
        children.append(subprocess.Popen([sys.executable, "-m", "streams.worker"], env=env,
                                         preexec_fn=stop_with_parent(os.getpid())))
    stopping: list[int] = []
    signalled: set[int] = set()

    def forward(signum, _frame):
        stopping.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    status, since = 0, time.monotonic()
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code is not None and not stopping:  # one stopped on its own: stop the rest
                status = status or code
                forward(signal.SIGTERM, None)
        if stopping and next_to_stop(children, signalled, settings.web_port, since) is not None:
            i = next_to_stop(children, signalled, settings.web_port, since)
            children[i].send_signal(stopping[0])
            signalled.add(i)
            since = time.monotonic()
        time.sleep(0.2)
    return status or next((c.returncode for c in children if c.returncode), 0)
