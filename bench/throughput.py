"""Throughput and freshness of the feature pipeline, against two baselines, in one run.

Run with ``make bench`` (it starts Kafka and Redis), or ``python -m bench.throughput``
with them running. On the same simulated events it measures:

a. the raw limit: a plain confluent-kafka loop that consumes every event and produces it
   to another topic, with no decoding at all; and the floor under any Faust worker: a
   Faust agent that does nothing (``bench.null_agent``), reading only (``take``) or
   sending every record on (``forward``), on each of Faust's transports;
b. the naive pipeline: every event decoded, its features computed, and pushed to the
   online store with one ``FeatureStore.push`` per event;
c. shopstream: a real worker process with every feature on, draining the same events
   (sustained events/s and its peak RSS), then fed at a fixed rate while probe clicks
   measure the time from producing an event to reading its feature through Feast.

It prints the three side by side and writes ``bench/results/throughput-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psutil
from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.table import Table

from scorers.routing import route
from scorers.states import apply, new_state
from scorers.views import VIEWS
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, Event, parse_event
from shopstream.featurestore import feature_store
from shopstream.settings import Settings, Topics, group_id, to_env
from shopstream.simulator import Shop, SimConfig, default_start
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name

RESULTS = Path(__file__).parent / "results"
console = Console()


def isolated(settings: Settings, name: str) -> Settings:
    """The settings with topics and app id of their own, so runs never mix."""
    prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    topics = {k: f"{prefix}.{v}" for k, v in Topics().model_dump().items() if isinstance(v, str)}
    return settings.model_copy(update={"topics": Topics(**topics, partitions=settings.topics.partitions),
                                       "app_id": prefix})


def simulated(n: int, seed: int = 11) -> list[Event]:
    config = SimConfig(seed=seed, users=20_000, items=50_000, sessions_per_hour=200_000)
    return list(Shop(config).events(start=default_start(n, config), n=n))


def produce(settings: Settings, events: list[Event]) -> None:
    ensure_topics(settings)
    with ShopProducer(settings, config={"linger.ms": 50, "batch.num.messages": 10_000}) as producer:
        for event in events:
            producer.send(event)


def raw_limit(settings: Settings, n: int) -> float:
    """a. Consume every input record and produce it again: events/s."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-raw",
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20})
    consumer.subscribe(list(settings.topics.inputs().values()))
    ensure_topics(settings, [f"{settings.app_id}.raw-out"])
    seen, started = 0, None
    while seen < n:
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error():
                continue
            started = started or time.perf_counter()
            producer.produce(f"{settings.app_id}.raw-out", message.value(), message.key())
            producer.poll(0)
            seen += 1
    producer.flush()
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def null_agent(settings: Settings, n: int, transport: str, mode: str, timeout: float = 120) -> float | None:
    """a. A Faust agent that does nothing with the ``n`` input records: events/s, or None
    when it did not get through them within ``timeout`` seconds."""
    ensure_topics(settings, [f"{settings.app_id}.null-out"])
    env = {**os.environ, "BENCH_TRANSPORT": transport, "BENCH_MODE": mode, "BENCH_EVENTS": str(n),
           "BENCH_TOPICS": ",".join(settings.topics.inputs().values()),
           "BENCH_OUT": f"{settings.app_id}.null-out", "BENCH_GROUP": f"{settings.app_id}-{transport}-{mode}",
           "BENCH_BROKERS": settings.kafka.brokers.split(",")[0], "BENCH_PORT": "6171"}
    try:
        done = subprocess.run([sys.executable, "-m", "bench.null_agent"], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    for line in (done.stdout + done.stderr).splitlines():
        if "NULL_AGENT" in line:
            fields = dict(part.split("=") for part in line.split("NULL_AGENT")[1].split())
            return int(fields["events"]) / float(fields["seconds"])
    return None


def naive_push(settings: Settings, events: list[Event]) -> float:
    """b. Decode, compute features and push each event's rows on its own: events/s."""
    store = feature_store(settings, apply=True)
    states: dict = {}
    now = datetime.now(UTC)
    started = time.perf_counter()
    for offset, event in enumerate(events):
        parsed = parse_event(type(event), event.to_bytes(), now=now)
        for update in route(parsed, "naive:0", offset):
            state = states.setdefault((update.kind, update.entity_id),
                                      new_state(update.kind, update.entity_id, 300))
            for view, row in apply(state, update).items():
                frame = _frame(view, row)
                store.push(f"{view}_push_source", frame)
    return len(events) / (time.perf_counter() - started)


def _frame(view: str, row: tuple) -> pd.DataFrame:
    from shopstream.online import feature_table

    return feature_table(view, [row]).to_pandas()


class Worker:
    """A worker (``processes`` of them under ``shopstream worker --processes``) on
    isolated topics, with its resident memory sampled (all processes together)."""

    def __init__(self, settings: Settings, log: Path, processes: int = 1):
        self.settings, self.log, self.processes = settings, log, processes
        self.peak_rss = 0
        self._stop = threading.Event()

    def __enter__(self) -> Worker:
        if self.processes == 1:
            self.process = workers.start(to_env(self.settings), self.log)
        else:
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "shopstream.cli", "worker", "--processes", str(self.processes)],
                    env={**os.environ, **to_env(self.settings)}, stdout=log, stderr=subprocess.STDOUT)
        for i in range(self.processes):
            workers.wait_ready(self.process, self.settings.web_port + i, self.log, timeout=180)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while not self._stop.is_set():
            try:
                family = [proc, *proc.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in family))
            except psutil.Error:
                return
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        workers.stop(self.process)


def committed(settings: Settings, topics: list[str]) -> tuple[int, int]:
    """(records committed by the app's group, records written) over ``topics``."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": group_id(settings)})
    from confluent_kafka import TopicPartition

    tps = [TopicPartition(t, p) for t in topics for p in range(settings.topics.partitions)]
    done = sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    end = sum(consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps)
    consumer.close()
    return done, end


def shopstream_drain(settings: Settings, events: list[Event], log: Path,
                     processes: int = 1) -> tuple[float, float]:
    """c. A worker drains pre-produced events: (events/s, peak RSS in MB)."""
    produce(settings, events)
    inputs = list(settings.topics.inputs().values())
    all_topics = [*inputs, updates_topic_name(settings)]
    ports = [settings.web_port + i for i in range(processes)]
    with Worker(settings, log, processes) as worker:
        started = None
        while True:
            scraped = [workers.scrape(port) for port in ports]
            consumed = sum(m.total_in for m in scraped if m is not None)
            if started is None and consumed > 0:
                started = time.perf_counter()
            done, end = committed(settings, all_topics)
            if started and end and done >= end and consumed >= len(events):
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        return len(events) / elapsed, worker.peak_rss / 2**20


def freshness(settings: Settings, rate: float, seconds: float, log: Path) -> list[float]:
    """c. At ``rate`` events/s, ms from producing a probe click to reading it online."""
    store = feature_store(settings, apply=True)
    background = simulated(int(rate * seconds), seed=23)
    latencies: list[float] = []
    with Worker(settings, log):
        producer = ShopProducer(settings, config={"linger.ms": 5})
        pending: dict[str, float] = {}
        started = time.perf_counter()
        probe_every, next_probe, next_poll = 0.05, 0.0, 0.0
        for i, event in enumerate(background):
            due = i / rate
            while (now := time.perf_counter() - started) < due:
                if pending and now >= next_poll:  # a read every 20 ms: the bench must not
                    _poll(store, pending, latencies)  # starve the worker of CPU
                    next_poll = time.perf_counter() - started + 0.02
                time.sleep(min(0.002, max(due - now, 0)))
            producer.send(event.model_copy(update={"ts": datetime.now(UTC)}))
            if now >= next_probe:
                user = f"probe-{uuid.uuid4().hex[:10]}"
                producer.send(Click(user_id=user, session_id=user, item_id="probe",
                                    ts=datetime.now(UTC)))
                pending[user] = time.perf_counter()
                next_probe = now + probe_every
        producer.flush()
        deadline = time.perf_counter() + 30
        while pending and time.perf_counter() < deadline:
            _poll(store, pending, latencies)
            time.sleep(0.02)
    return latencies


def _poll(store, pending: dict[str, float], latencies: list[float]) -> None:
    users = list(pending)
    found = store.get_online_features(features=["user_activity:clicks_count_10m"],
                                      entity_rows=[{"user_id": u} for u in users]).to_dict()
    now = time.perf_counter()
    for user, count in zip(found["user_id"], found["clicks_count_10m"], strict=True):
        if count:
            latencies.append((now - pending.pop(user)) * 1000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    """Run a, b and c and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events for a and c")
    parser.add_argument("--naive-events", type=int, default=2_000, help="events for b")
    parser.add_argument("--rates", default="5000,1000",
                        help="events/s of the freshness runs; the first is the headline")
    parser.add_argument("--seconds", type=float, default=20, help="length of each freshness run")
    args = parser.parse_args()
    base = Settings()
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = Path(base.home) / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    console.print(f"simulating {args.events:,} events ...")
    events = simulated(args.events)
    raw = isolated(base, "raw")
    produce(raw, events)
    console.print("a. raw consume-and-produce loop ...")
    raw_eps = raw_limit(raw, len(events))
    console.print(f"   {raw_eps:,.0f} events/s")
    floors = {}
    for transport in ("kafka", "confluent"):
        for mode in ("take", "forward"):
            console.print(f"a. Faust null agent, {transport}://, {mode} ...")
            floors[f"{transport}_{mode}"] = eps = null_agent(raw, len(events), transport, mode)
            console.print("   did not finish in 120 s" if eps is None else f"   {eps:,.0f} events/s")
    console.print(f"b. naive: one Feast push per event ({args.naive_events:,} events) ...")
    naive_eps = naive_push(base, events[: args.naive_events])
    console.print(f"   {naive_eps:,.0f} events/s")
    console.print("c. shopstream worker draining the same events ...")
    ours = isolated(base, "worker")
    ours = ours.model_copy(update={"web_port": 6166})
    worker_eps, rss_mb = shopstream_drain(ours, events, logs / "bench-drain.log")
    console.print(f"   {worker_eps:,.0f} events/s, peak RSS {rss_mb:,.0f} MB")
    scale = {}
    for processes in (1, 2, 4):
        console.print(f"c. the features role alone, {processes} process(es), draining the same events ...")
        alone = isolated(base, f"features{processes}").model_copy(
            update={"web_port": 6180, "roles": ("features",)})
        scale[processes], _ = shopstream_drain(alone, events, logs / f"bench-features-{processes}.log",
                                               processes)
        console.print(f"   {scale[processes]:,.0f} events/s")
    runs = {}
    for rate in [float(r) for r in args.rates.split(",")]:
        console.print(f"c. freshness at {rate:,.0f} events/s for {args.seconds:.0f}s ...")
        fresh = isolated(base, "fresh").model_copy(update={"web_port": 6167})
        runs[rate] = freshness(fresh, rate, args.seconds, logs / "bench-fresh.log")
        console.print(f"   p50 {percentile(runs[rate], 50):,.0f} ms, p99 {percentile(runs[rate], 99):,.0f} ms")
    rate, latencies = next(iter(runs.items()))

    result = {
        "time": datetime.now(UTC).isoformat(), "events": len(events),
        "raw_limit_eps": raw_eps, "faust_null_agent_eps": floors, "naive_push_eps": naive_eps, "shopstream_eps": worker_eps,
        "features_role_eps_by_processes": {str(k): v for k, v in scale.items()},
        "shopstream_vs_naive": worker_eps / naive_eps, "shopstream_vs_raw": worker_eps / raw_eps,
        "freshness_rate_eps": rate, "freshness_probes": len(latencies),
        "p50_freshness_ms": percentile(latencies, 50), "p99_freshness_ms": percentile(latencies, 99),
        "max_freshness_ms": max(latencies, default=float("nan")), "peak_rss_mb": rss_mb,
        "freshness_by_rate": {str(r): {"probes": len(v), "p50_ms": percentile(v, 50),
                                       "p99_ms": percentile(v, 99)} for r, v in runs.items()},
        "features": {name: len(view.features) for name, view in VIEWS.items()},
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
    }
    table = Table("", "events/s", "vs naive", "p50 freshness", "p99 freshness", "peak RSS",
                  title="feature pipeline, one machine, one run")
    table.add_row("a. raw consume+produce", f"{raw_eps:,.0f}", f"{raw_eps / naive_eps:,.1f}x", "", "", "")
    for name, eps in floors.items():
        table.add_row(f"a. Faust null agent, {name.replace('_', ', ')}",
                      "did not finish" if eps is None else f"{eps:,.0f}",
                      "" if eps is None else f"{eps / naive_eps:,.1f}x", "", "", "")
    table.add_row("b. naive push per event", f"{naive_eps:,.0f}", "1.0x", "", "", "")
    table.add_row("c. shopstream worker", f"{worker_eps:,.0f}", f"{worker_eps / naive_eps:,.1f}x",
                  f"{result['p50_freshness_ms']:,.0f} ms", f"{result['p99_freshness_ms']:,.0f} ms",
                  f"{rss_mb:,.0f} MB")
    for processes, eps in scale.items():
        table.add_row(f"c. features role, {processes} process(es)", f"{eps:,.0f}",
                      f"{eps / naive_eps:,.1f}x", "", "", "")
    console.print(table)
    for r, values in runs.items():
        console.print(f"freshness at {r:,.0f} events/s: p50 {percentile(values, 50):,.0f} ms, "
                      f"p99 {percentile(values, 99):,.0f} ms ({len(values)} probes)")
    path = RESULTS / f"throughput-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
