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
   (sustained events/s and its peak RSS); the features role alone in 1, 2 and 4
   processes, and in 1 with every state in the heap instead of RocksDB (what states on
   disk cost); then fed at a fixed rate while probe clicks measure the time from
   producing an event to reading its feature through Feast.

It prints the three side by side and writes ``bench/results/throughput-<time>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
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
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from scorers.routing import route, route_all
from scorers.states import Batch, apply, new_state
from scorers.views import VIEWS
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, Event, parse_event
from shopstream.featurestore import feature_store
from shopstream.rows import JOIN_KEYS
from shopstream.settings import Settings, Topics, group_id, to_env
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tools.simulator import Shop, SimConfig, default_start

RESULTS = Path(__file__).parent / "results"
console = Console()


def isolated(settings: Settings, name: str) -> Settings:
    """The settings with topics and app id of their own, so runs never mix."""
    prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    topics = {k: f"{prefix}.{v}" for k, v in Topics().model_dump().items() if isinstance(v, str)}
    return settings.model_copy(update={"topics": settings.topics.model_copy(update=topics),  # replication too
                                       "app_id": prefix})


def simulated(n: int, seed: int = 11) -> list[Event]:
    config = SimConfig(seed=seed, users=20_000, items=50_000, sessions_per_hour=200_000)
    return list(Shop(config).events(start=default_start(n, config), n=n))


def produce(settings: Settings, events: list[Event]) -> None:
    ensure_topics(settings)
    with ShopProducer(settings, config={"linger.ms": 50, "batch.num.messages": 10_000}) as producer:
        for event in events:
            producer.send(event)


def raw_limit(settings: Settings, n: int, fanout: float = 1.0) -> float:
    """a. Consume every input record and produce it again, ``fanout`` times on average (a
    worker's Kafka records per event, to compare like with like): events/s."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-raw-{fanout:.2f}",
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
            for _ in range(int((seen + 1) * fanout) - int(seen * fanout)):
                producer.produce(f"{settings.app_id}.raw-out", message.value(), message.key())
            producer.poll(0)
            seen += 1
    producer.flush()
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


NULL_AGENTS = [
    ("kafka", "take", {}), ("kafka", "forward", {}), ("kafka", "forward_rdkafka", {}),
    # Faust on librdkafka (bench.rdkafka_driver), and the tuning others point to (issue 33, step 4).
    ("rdkafka", "take", {}),
    ("kafka", "take", {"BENCH_LOOP": "uvloop"}), ("kafka", "forward_rdkafka", {"BENCH_LOOP": "uvloop"}),
    ("kafka", "take", {"BENCH_MAX_POLL": "2000"}), ("kafka", "take", {"BENCH_BUFFER": "20000"}),
]
"""The Faust null agents of the bench: transport, mode and tuning."""


def null_agent(settings: Settings, n: int, transport: str, mode: str, timeout: float = 120,
               **tuning: str) -> float | None:
    """a. A Faust agent that does nothing with the ``n`` input records: events/s, or None
    when it did not get through them within ``timeout`` seconds. ``tuning``: more of its
    environment (``BENCH_LOOP``, ``BENCH_MAX_POLL``, ``BENCH_BUFFER``)."""
    ensure_topics(settings, [f"{settings.app_id}.null-out"])
    env = {**os.environ, **tuning, "BENCH_TRANSPORT": transport, "BENCH_MODE": mode, "BENCH_EVENTS": str(n),
           "BENCH_TOPICS": ",".join(settings.topics.inputs().values()),
           "BENCH_OUT": f"{settings.app_id}.null-out", "BENCH_GROUP": "-".join([settings.app_id, transport, mode, *tuning.values()]),
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
    from shopstream.rows import feature_table

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
        for i in range(self.processes):  # prepared: Feast's import is start-up, not throughput
            workers.wait_ready(self.process, self.settings.web_port + i, self.log, timeout=180,
                               until=workers.prepared)
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


def shopstream_drain(settings: Settings, events: list[Event], log: Path, processes: int = 1) -> dict:
    """c. A worker drains pre-produced events: events/s, peak RSS in MB, CPU µs per event
    of each process involved, and the Kafka records and bytes it produced per event. The
    events are produced once the worker is prepared, faster than it drains them."""
    ensure_topics(settings)
    inputs = list(settings.topics.inputs().values())
    all_topics = [*inputs, updates_topic_name(settings)]
    ports = [settings.web_port + i for i in range(processes)]
    with Worker(settings, log, processes) as worker:
        produce(settings, events)
        started, cpu_before = None, {}
        while True:
            scraped = [workers.scrape(port) for port in ports]
            consumed = sum(m.total_in for m in scraped if m is not None)
            if started is None and consumed > 0:
                started, cpu_before = time.perf_counter(), cpu_seconds(settings, worker)
            done, end = committed(settings, all_topics)
            if started and end and done >= end and consumed >= len(events):
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(settings, worker)
        recs_costs = recs_cost_per_answer(ports, settings.topics.session_recs) if "recs" in settings.roles else {}
    by_topic = produced(settings)
    records, size = (sum(counts[i] for counts in by_topic.values()) for i in (0, 1))
    return {"eps": len(events) / elapsed, "peak_rss_mb": worker.peak_rss / 2**20,
            "cpu_us_per_event": {name: (cpu_after[name] - cpu_before[name]) / len(events) * 1e6
                                 for name in cpu_after if name in cpu_before},
            "recs_us_per_answer": recs_costs,
            "kafka_records_per_event": records / len(events), "kafka_bytes_per_event": size / len(events),
            "kafka_per_event_by_topic": {topic.removeprefix(settings.app_id).lstrip(".-"):
                                         {"records": n / len(events), "bytes": b / len(events)}
                                         for topic, (n, b) in sorted(by_topic.items()) if n}}


def recs_cost_per_answer(ports: list[int], recs_topic: str) -> dict[str, float]:
    """The recommendation agent's cost budget: µs per answered click or cart change in
    each stage (session state, model, index, blend), summed over the workers on ``ports``,
    from their histograms and their count of lists sent on ``recs_topic``."""
    import httpx

    spent: dict[str, float] = {}
    answered = 0.0
    for port in ports:
        for family in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text):
            for sample in family.samples:
                if sample.name == "shopstream_scoring_stage_seconds_sum" and sample.labels["stage"].startswith("recs_"):
                    stage = sample.labels["stage"].removeprefix("recs_")
                    spent[stage] = spent.get(stage, 0.0) + sample.value
                elif sample.name == "shopstream_outputs_total" and sample.labels["topic"] == recs_topic:
                    answered += sample.value
    return {stage: seconds / answered * 1e6 for stage, seconds in sorted(spent.items())} if answered else {}


def correctness(settings: Settings, events: list[Event], sample: int = 200, seed: int = 3) -> dict:
    """c. Sampled online features of a drained worker against the pure core's, the
    computation of the naive pipeline, applied to the same events in order: per view, the
    entities compared and those whose features differ (with one example)."""
    states, orders, latest = {}, {}, {}
    updates = route_all(events, "naive:0", orders)
    while chunk := list(itertools.islice(updates, 5_000)):
        batch = Batch()
        for update in chunk:
            key = (update.kind, update.entity_id)
            if (state := states.get(key)) is None:
                state = states[key] = new_state(update.kind, update.entity_id, settings.features.lateness_s)
            batch.apply(state, update)
        for view, rows in batch.rows().items():
            for row in rows:
                latest[view, row[0]] = row
    store = feature_store(settings, apply=True)
    rng, report = random.Random(seed), {}
    for name, view in VIEWS.items():
        entities = sorted(entity for v, entity in latest if v == name)
        picked = rng.sample(entities, min(sample, len(entities)))
        if not picked:
            continue
        key = JOIN_KEYS[view.entity]
        found = store.get_online_features(features=[f"{name}:{f}" for f in view.features],
                                          entity_rows=[{key: e} for e in picked]).to_dict()
        differ = []
        for i, entity in enumerate(picked):
            online = tuple(found[f][i] for f in view.features)
            expected = tuple(list(v) if isinstance(v, list | tuple) else v for v in latest[name, entity][2:])
            if online != expected:
                differ.append({"entity": entity, "online": online, "expected": expected})
        report[name] = {"compared": len(picked), "differ": len(differ), "example": differ[:1]}
    return report


def cpu_seconds(settings: Settings, worker: Worker) -> dict[str, float]:
    """CPU seconds (user + system) so far of the worker's processes, the broker, Redis and
    this bench."""
    found = {"worker": [worker.process.pid], "bench": [os.getpid()]}
    for service in ("kafka", "redis"):
        try:
            found[service] = [int((Path(settings.home) / service / f"{service}.pid").read_text().split()[0])]
        except (OSError, ValueError):
            continue
    seconds = {}
    for name, pids in found.items():
        try:
            procs = [psutil.Process(pid) for pid in pids]
            if name == "worker":
                procs += procs[0].children(recursive=True)
            seconds[name] = sum(sum(p.cpu_times()[:2]) for p in procs)
        except psutil.Error:
            continue
    return seconds


def produced(settings: Settings) -> dict[str, tuple[int, int]]:
    """Records and bytes (as stored by the broker) in each of the app's own topics, its
    inputs excepted: updates, changelogs, scores, recommendations and dead letters."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    inputs = set(settings.topics.inputs().values())
    topics = AdminClient(settings.kafka.client_config()).list_topics(timeout=10).topics
    ours = {name: len(meta.partitions) for name, meta in topics.items()
            if name.startswith(settings.app_id) and name not in inputs}
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-count"})
    data = Path(settings.home) / "kafka" / "data"
    counts = {t: (sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for p in range(n)),
                  sum(f.stat().st_size for p in range(n) for f in (data / f"{t}-{p}").glob("*.log")))
              for t, n in ours.items()}
    consumer.close()
    return counts


def freshness(settings: Settings, rate: float, seconds: float, log: Path, warmup_s: float = 5.0) -> dict:
    """c. At ``rate`` events/s, ms from producing a probe click to reading it online: the
    probes sent after the first ``warmup_s`` seconds, and how many were never read."""
    store = feature_store(settings, apply=True)
    background = simulated(int(rate * seconds), seed=23)
    latencies: list[float] = []
    warm: set[str] = set()
    with Worker(settings, log):
        producer = ShopProducer(settings, config={"linger.ms": 5})
        pending: dict[str, float] = {}
        started = time.perf_counter()
        probe_every, next_probe, next_poll = 0.05, 0.0, 0.0
        for i, event in enumerate(background):
            due = i / rate
            while (now := time.perf_counter() - started) < due:
                if pending and now >= next_poll:  # a read every 20 ms: the bench must not
                    _poll(store, pending, latencies, warm)  # starve the worker of CPU
                    next_poll = time.perf_counter() - started + 0.02
                time.sleep(min(0.002, max(due - now, 0)))
            producer.send(event.model_copy(update={"ts": datetime.now(UTC)}))
            if now >= next_probe:
                user = f"probe-{uuid.uuid4().hex[:10]}"
                producer.send(Click(user_id=user, session_id=user, item_id="probe",
                                    ts=datetime.now(UTC)))
                pending[user] = time.perf_counter()
                if now < warmup_s:
                    warm.add(user)
                next_probe = now + probe_every
        producer.flush()
        deadline = time.perf_counter() + 30
        while pending and time.perf_counter() < deadline:
            _poll(store, pending, latencies, warm)
            time.sleep(0.02)
    return {"probes": len(latencies) + len(set(pending) - warm), "unmatched": len(set(pending) - warm),
            "latencies": latencies}


def _poll(store, pending: dict[str, float], latencies: list[float], warm: set[str] = frozenset()) -> None:
    users = list(pending)
    found = store.get_online_features(features=["user_activity:clicks_count_10m"],
                                      entity_rows=[{"user_id": u} for u in users]).to_dict()
    now = time.perf_counter()
    for user, count in zip(found["user_id"], found["clicks_count_10m"], strict=True):
        if count:
            sent = pending.pop(user)
            if user not in warm:
                latencies.append((now - sent) * 1000)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    """Run a, b and c and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events for a and c")
    parser.add_argument("--naive-events", type=int, default=2_000, help="events for b")
    parser.add_argument("--rates", default="1000,3000",
                        help="events/s of freshness runs besides those at 25, 50, 75 and 90 %% of capacity")
    parser.add_argument("--seconds", type=float, default=20, help="length of each freshness run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each single-process drain, for the spread")
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
    for transport, mode, tuning in NULL_AGENTS:
        name = "_".join([transport, mode, *(f"{k.removeprefix('BENCH_').lower()}{v}" for k, v in tuning.items())])
        console.print(f"a. Faust null agent, {transport}://, {mode} {tuning or ''} ...")
        floors[name] = eps = null_agent(raw, len(events), transport, mode, 60 if transport == "rdkafka" else 120,
                                        **tuning)
        console.print("   did not finish in time" if eps is None else f"   {eps:,.0f} events/s")
    console.print(f"b. naive: one Feast push per event ({args.naive_events:,} events) ...")
    naive_eps = naive_push(base, events[: args.naive_events])
    console.print(f"   {naive_eps:,.0f} events/s")
    drains: dict[str, list[dict]] = {}
    check, fanout, raw_fanout_eps = {}, 1.0, raw_eps
    for run in range(args.runs):
        console.print(f"c. shopstream worker, every role, draining the same events (run {run + 1}) ...")
        ours = isolated(base, "worker").model_copy(update={"web_port": 6166})
        drains.setdefault("every role", []).append(shopstream_drain(ours, events, logs / "bench-drain.log"))
        console.print(f"   {drains['every role'][-1]['eps']:,.0f} events/s")
        if run == 0:
            fanout = drains["every role"][0]["kafka_records_per_event"]
            console.print(f"a. raw loop producing {fanout:.2f} records per event, as the worker does ...")
            raw_fanout_eps = raw_limit(raw, len(events), fanout)
            console.print(f"   {raw_fanout_eps:,.0f} events/s")
            console.print("c. sampled online features against the pure core ...")
            check = correctness(ours, events)
            console.print("   " + ", ".join(f"{v}: {r['differ']}/{r['compared']} differ" for v, r in check.items()))
    console.print("c. shopstream worker, every role, 2 processes, draining the same events ...")
    ours = isolated(base, "worker2").model_copy(update={"web_port": 6166})
    drains["every role, 2 process(es)"] = [shopstream_drain(ours, events, logs / "bench-drain-2.log", 2)]
    console.print(f"   {drains['every role, 2 process(es)'][-1]['eps']:,.0f} events/s")
    for processes in (1, 2, 4):
        for _ in range(args.runs if processes == 1 else 1):
            console.print(f"c. the features role alone, {processes} process(es), draining the same events ...")
            alone = isolated(base, f"features{processes}").model_copy(
                update={"web_port": 6180, "roles": ("features",)})
            drains.setdefault(f"features, {processes} process(es)", []).append(
                shopstream_drain(alone, events, logs / f"bench-features-{processes}.log", processes))
            console.print(f"   {drains[f'features, {processes} process(es)'][-1]['eps']:,.0f} events/s")
    for _ in range(args.runs):  # the baseline of states on disk: every state in the heap
        console.print("c. the features role alone, 1 process, states in memory, draining the same events ...")
        alone = isolated(base, "features-memory").model_copy(update={
            "web_port": 6180, "roles": ("features",),
            "features": base.features.model_copy(update={"state_store": "memory", "live_states": 10_000_000})})
        drains.setdefault("features, 1 process(es), states in memory", []).append(
            shopstream_drain(alone, events, logs / "bench-features-memory.log", 1))
        console.print(f"   {drains['features, 1 process(es), states in memory'][-1]['eps']:,.0f} events/s")
    worker_eps = statistics.median(d["eps"] for d in drains["every role"])
    rates = {f"{share}% of capacity": worker_eps * share / 100 for share in (25, 50, 75, 90)}
    rates |= {f"{float(r):,.0f} events/s": float(r) for r in args.rates.split(",") if r}
    runs = {}
    for label, rate in rates.items():
        console.print(f"c. freshness at {rate:,.0f} events/s ({label}) for {args.seconds:.0f}s ...")
        fresh = isolated(base, "fresh").model_copy(update={"web_port": 6167})
        runs[label] = {"rate_eps": rate, **freshness(fresh, rate, args.seconds, logs / "bench-fresh.log")}
        latencies = runs[label]["latencies"]
        console.print(f"   p50 {percentile(latencies, 50):,.0f} ms, p99 {percentile(latencies, 99):,.0f} ms, "
                      f"{runs[label]['unmatched']} of {runs[label]['probes']} probes never read")

    def spread(name: str) -> dict:
        values = [d["eps"] for d in drains[name]]
        first = drains[name][0]
        return {"eps_median": statistics.median(values), "eps_min": min(values), "eps_max": max(values),
                "eps_runs": values, "peak_rss_mb": max(d["peak_rss_mb"] for d in drains[name]),
                "cpu_us_per_event": first["cpu_us_per_event"],
                "kafka_records_per_event": first["kafka_records_per_event"],
                "kafka_bytes_per_event": first["kafka_bytes_per_event"],
                "kafka_per_event_by_topic": first["kafka_per_event_by_topic"],
                "recs_us_per_answer": first.get("recs_us_per_answer", {})}

    result = {
        "time": datetime.now(UTC).isoformat(), "events": len(events), "runs": args.runs,
        "raw_limit_eps": raw_eps, "raw_at_worker_fanout": {"records_per_event": fanout, "eps": raw_fanout_eps},
        "faust_null_agent_eps": floors, "naive_push_eps": naive_eps,
        "shopstream_eps": worker_eps, "shopstream_vs_naive": worker_eps / naive_eps,
        "shopstream_vs_raw": worker_eps / raw_eps,
        "drains": {name: spread(name) for name in drains},
        "features_role_eps_by_processes": {str(p): spread(f"features, {p} process(es)")["eps_median"]
                                           for p in (1, 2, 4)},
        "peak_rss_mb": spread("every role")["peak_rss_mb"],
        # What keeping states on disk (RocksDB, the default) costs the features role, against
        # every state in the heap: 1 - on disk / in memory, medians of the same events.
        "state_on_disk_cost": 1 - spread("features, 1 process(es)")["eps_median"]
        / spread("features, 1 process(es), states in memory")["eps_median"],
        "correctness": check,
        "freshness": {label: {"rate_eps": r["rate_eps"], "probes": r["probes"], "unmatched": r["unmatched"],
                              "p50_ms": percentile(r["latencies"], 50), "p99_ms": percentile(r["latencies"], 99),
                              "max_ms": max(r["latencies"], default=float("nan"))} for label, r in runs.items()},
        "features": {name: len(view.features) for name, view in VIEWS.items()},
        "machine": {"cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30)},
    }
    table = Table("", "events/s (median)", "min to max", "vs raw", "CPU µs/event: worker, kafka, redis, bench",
                  "Kafka records, bytes / event", title=f"feature pipeline, one machine, {args.runs} runs")
    table.add_row("a. raw consume+produce", f"{raw_eps:,.0f}", "", "1.00", "", "")
    table.add_row(f"a. raw, {fanout:.2f} records produced per event", f"{raw_fanout_eps:,.0f}", "",
                  f"{raw_fanout_eps / raw_eps:.3f}", "", f"{fanout:.2f}, -")
    for name, eps in floors.items():
        table.add_row(f"a. Faust null agent, {name.replace('_', ', ')}",
                      "did not finish" if eps is None else f"{eps:,.0f}", "",
                      "" if eps is None else f"{eps / raw_eps:.3f}", "", "")
    table.add_row("b. naive push per event", f"{naive_eps:,.0f}", "", f"{naive_eps / raw_eps:.4f}", "", "")
    for name in drains:
        d = result["drains"][name]
        cpu = d["cpu_us_per_event"]
        table.add_row(f"c. {name}", f"{d['eps_median']:,.0f}", f"{d['eps_min']:,.0f} to {d['eps_max']:,.0f}",
                      f"{d['eps_median'] / raw_eps:.3f}",
                      ", ".join(f"{cpu.get(k, float('nan')):,.0f}" for k in ("worker", "kafka", "redis", "bench")),
                      f"{d['kafka_records_per_event']:.2f}, {d['kafka_bytes_per_event']:,.0f}")
    console.print(table)
    topics = Table("drain", "topic", "records per event", "bytes per event",
                   title="Kafka records the worker produced per input event, by topic")
    for name in drains:
        for topic, counts in result["drains"][name]["kafka_per_event_by_topic"].items():
            topics.add_row(name, topic, f"{counts['records']:.3f}", f"{counts['bytes']:,.0f}")
    console.print(topics)
    budget = Table("drain", "stage", "µs per answered click", title="the recommendation agent's cost budget")
    for name in drains:
        for stage, us in result["drains"][name]["recs_us_per_answer"].items():
            budget.add_row(name, stage, f"{us:,.0f}")
    console.print(budget)
    fresh_table = Table("offered", "events/s", "probes", "never read", "p50 ms", "p99 ms", "max ms",
                        title="freshness: produce to readable through Feast, warm-up excluded")
    for label, r in result["freshness"].items():
        fresh_table.add_row(label, f"{r['rate_eps']:,.0f}", str(r["probes"]), str(r["unmatched"]),
                            f"{r['p50_ms']:,.0f}", f"{r['p99_ms']:,.0f}", f"{r['max_ms']:,.0f}")
    console.print(fresh_table)
    path = RESULTS / f"throughput-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
