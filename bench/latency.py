"""Fraud-scoring latency: from an order being produced to its score being consumed.

Run with ``make bench-latency`` (it starts Kafka and Redis), or
``python -m bench.latency`` with them running. In one run it measures:

a. the floor: a plain confluent-kafka loop that consumes each order and produces it to
   another topic at once (Kafka's own round trip on this machine, at the same rate);
b. shopstream: real workers scoring every order with a registered model, while orders
   arrive at ``--orders`` per second alongside ``--clicks`` background clicks per second,
   in two deployments (``--modes``): ``one`` worker doing everything, and ``split``, a
   feature worker beside a scoring worker (``SHOPSTREAM_ROLES``).

The model is a freshly initialised ``FraudNet`` registered as the champion: inference
costs the same as a trained one, and the bench needs no history. It prints p50, p99 and
max latency, the worker's time in feature reads versus inference per micro-batch, and
writes ``bench/results/latency-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.throughput import isolated
from models.configs import FraudConfig
from models.fraud import Checkpoint, FraudNet
from scorers.fraud import FEATURES, SIGNALS
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, Order, OrderItem
from shopstream.settings import ROLES, Settings, to_env
from shopstream.topics import ensure_topics
from trainers.registry import Registry

RESULTS = Path(__file__).parent / "results"
console = Console()


def order(i: int, run: str) -> Order:
    return Order(order_id=f"bench-{run}-{i}", user_id=f"user-{i % 5000}", amount=10 + i % 500,
                 payment_fingerprint=f"card-{i % 5000}", device_id=f"dev-{i % 3000}",
                 ip=f"10.0.{i % 250}.{i % 200}", terminal_id=f"term-{i % 300}",
                 items=[OrderItem(item_id=f"item-{i % 900}", price=10)], ts=datetime.now(UTC))


def click(i: int) -> Click:
    return Click(user_id=f"user-{i % 5000}", session_id=f"s-{i % 20000}", item_id=f"item-{i % 900}",
                 ts=datetime.now(UTC))


def drive(settings: Settings, seconds: float, orders_per_s: float, clicks_per_s: float,
          sent: dict[str, float]) -> None:
    """Produce orders (recording when each was sent) and background clicks, paced.

    Order ids are unique to the call, so a late score from an earlier run is not counted.
    """
    run = uuid.uuid4().hex[:6]
    with ShopProducer(settings, config={"linger.ms": 0}) as producer:
        producer.send(click(-1))  # the idempotent producer gets its id from the broker first
        producer.flush()
        started, i, c = time.monotonic(), 0, 0
        while (elapsed := time.monotonic() - started) < seconds:
            while c < elapsed * clicks_per_s:
                producer.send(click(c))
                c += 1
            while i < elapsed * orders_per_s:
                o = order(i, run)
                sent[o.order_id] = time.time()
                producer.send(o)
                i += 1
            time.sleep(0.0005)


def joined(consumer: Consumer, topics: list[str], timeout: float = 30.0) -> None:
    """Subscribe and return once partitions are assigned: the broker delays a new group's
    first assignment (group.initial.rebalance.delay.ms), which must not count as latency."""
    assigned = threading.Event()
    consumer.subscribe(topics, on_assign=lambda c, partitions: assigned.set())
    deadline = time.monotonic() + timeout
    while not assigned.is_set():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no partitions of {topics} assigned after {timeout}s")
        consumer.poll(0.1)


def receive(settings: Settings, topic: str, received: dict[str, float], stop: threading.Event,
            ready: threading.Event, key_of=lambda m: m.key().decode()) -> None:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"latency-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "latest", "fetch.wait.max.ms": 1})
    joined(consumer, [topic])
    ready.set()
    try:
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and not message.error():
                received.setdefault(key_of(message), time.time())
    finally:
        consumer.close()


def measure(settings: Settings, topic: str, seconds: float, orders_per_s: float, clicks_per_s: float,
            driver=drive, key_of=lambda m: m.key().decode()) -> dict:
    """Latency from each input being sent (``driver`` records when, by key) to its output
    being consumed from ``topic`` (matched by ``key_of(message)``)."""
    sent, received, stop, ready = {}, {}, threading.Event(), threading.Event()
    listener = threading.Thread(target=receive, args=(settings, topic, received, stop, ready, key_of),
                                daemon=True)
    listener.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the score consumer did not join")
        time.sleep(1)  # its position is resolved to the end of the topic
        driver(settings, seconds, orders_per_s, clicks_per_s, sent)
        time.sleep(3)
    finally:
        stop.set()
        listener.join()
    latencies = np.array([(received[k] - t) * 1000 for k, t in sent.items() if k in received])
    return {"sent": len(sent), "received": int(len(latencies)),
            "p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "max_ms": float(latencies.max()) if len(latencies) else None}


def order_key(message) -> bytes:
    return json.loads(message.value())["order_id"].encode()


def echo(settings: Settings, out_topic: str, stop: threading.Event, ready: threading.Event,
         source: str | None = None, key_fn=order_key) -> None:
    """a. Consume inputs (orders by default) and produce them again at once, keyed by
    ``key_fn(message)`` as their outputs would be."""
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-echo",
                         "auto.offset.reset": "latest", "fetch.wait.max.ms": 1})
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 0})
    joined(consumer, [source or settings.topics.orders])
    ready.set()
    try:
        while not stop.is_set():
            message = consumer.poll(0.05)
            if message is not None and not message.error():
                producer.produce(out_topic, key=key_fn(message), value=message.value())
                producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()


def register_model(settings: Settings) -> str:
    torch.manual_seed(0)
    model = FraudNet(FraudConfig(signals=tuple((n, len(f)) for n, f in SIGNALS.items())))
    path = Checkpoint(model, list(FEATURES), {"bench": True}).save(Path(tempfile.mkdtemp()) / "fraud.pt")
    registry = Registry(settings)
    version = registry.register(path, metrics={}, params={}, tags={"feature_service": "fraud_v1",
                                                                    "purpose": "latency bench"})
    registry.promote(version.version)
    return version.version


def stage_times(port: int) -> dict[str, float]:
    """Mean ms per scoring micro-batch in each stage, and its mean orders (``orders``),
    from the worker's histograms."""
    import httpx

    sums, counts = {}, {}
    for family in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics").text):
        for sample in family.samples:
            if sample.name == "shopstream_scoring_stage_seconds_sum":
                sums[sample.labels["stage"]] = sample.value
            elif sample.name == "shopstream_scoring_stage_seconds_count":
                counts[sample.labels["stage"]] = sample.value
            elif sample.name == "shopstream_scoring_batch_orders_sum":
                sums["orders"] = sample.value
            elif sample.name == "shopstream_scoring_batch_orders_count":
                counts["orders"] = sample.value
    return {stage: (1 if stage == "orders" else 1000) * sums[stage] / counts[stage]
            for stage in sums if counts.get(stage)}


WORKERS = {"one": [ROLES], "split": [("features", "recs"), ("fraud",)]}
"""The worker processes of each mode, by roles: one worker doing everything, or a feature
worker and a scoring worker (``SHOPSTREAM_ROLES``)."""


def scoring_run(base: Settings, mode: str, args: argparse.Namespace) -> tuple[dict, dict[str, float]]:
    """Latency of the workers of ``mode`` on topics of their own, and their stage times."""
    settings = isolated(base, f"latency-{mode}")
    settings = settings.model_copy(update={
        "scoring": settings.scoring.model_copy(update={"model_name": f"{settings.app_id}-fraud",
                                                       "reload_s": 1.0})})  # SHOPSTREAM_SCORING__* apply
    ensure_topics(settings)
    version = register_model(settings)
    started = []
    try:
        for i, roles in enumerate(WORKERS[mode]):
            worker = settings.model_copy(update={"roles": roles, "web_port": settings.web_port + i})
            log_file = settings.home / f"worker-{mode}-{i}.log"
            started.append((worker, workers.start(to_env(worker), log_file), log_file))
        for worker, process, log_file in started:
            workers.wait_ready(process, worker.web_port, log_file)
        port = next(w.web_port for w, _, _ in started if "fraud" in w.roles)
        deadline = time.monotonic() + 60
        while (m := workers.scrape(port)) is None or \
                m.model_versions.get(settings.scoring.model_name) != float(version):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not load the model")
            time.sleep(0.5)
        measure(settings, settings.topics.fraud_scores, 5, args.orders, args.clicks)  # warm-up
        scored = measure(settings, settings.topics.fraud_scores, args.seconds, args.orders, args.clicks)
        return scored, stage_times(port)
    finally:
        for _, process, _ in started:
            workers.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=float, default=1000.0, help="orders per second")
    parser.add_argument("--clicks", type=float, default=1000.0, help="background clicks per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--modes", default="one,split",
                        help="comma-separated: one (one worker does everything), split "
                             "(a feature worker and a scoring worker)")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - set(WORKERS):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {sorted(WORKERS)}")

    base = Settings().model_copy(update={
        "home": Path(tempfile.mkdtemp(prefix="bench-latency-")), "web_port": 6077})
    settings = isolated(base, "latency-floor")
    ensure_topics(settings)
    echo_topic = f"{settings.app_id}.echo"
    ensure_topics(settings, [echo_topic])

    console.print("a. Kafka round trip (consume, produce, consume) ...")
    stop, ready = threading.Event(), threading.Event()
    echoing = threading.Thread(target=echo, args=(settings, echo_topic, stop, ready), daemon=True)
    echoing.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the echo consumer did not join")
        floor = measure(settings, echo_topic, args.seconds, args.orders, args.clicks)
    finally:
        stop.set()
        echoing.join()

    results, stages = {}, {}
    for mode in modes:
        console.print(f"{mode}: shopstream scoring with a registered model, workers {WORKERS[mode]} ...")
        results[mode], stages[mode] = scoring_run(base, mode, args)

    table = Table(title=f"order produced -> score consumed, {args.orders:,.0f} orders/s "
                        f"+ {args.clicks:,.0f} clicks/s; read and model: ms per scoring batch")
    for column in ("", "received", "p50 ms", "p99 ms", "max ms", "orders/batch", "read ms", "model ms"):
        table.add_column(column)
    rows = [("Kafka round trip", floor, {})] + [(f"shopstream {mode}", results[mode], stages[mode])
                                                 for mode in modes]
    for name, r, stage in rows:
        table.add_row(name, f"{r['received']:,}/{r['sent']:,}",
                      *(f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("p50_ms", "p99_ms", "max_ms")),
                      *(f"{stage[k]:.2f}" if k in stage else "-" for k in ("orders", "feature_read", "inference")))
    console.print(table)
    for mode in modes:
        console.print(f"shopstream {mode}: workers with roles "
                      + " and ".join(",".join(roles) for roles in WORKERS[mode]))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"latency-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"orders_per_s": args.orders, "clicks_per_s": args.clicks,
                                "seconds": args.seconds, "kafka_round_trip": floor,
                                "scoring": base.scoring.model_dump(include={"batch_rows", "batch_ms",
                                                                           "torch_threads"}),
                                "shopstream": {mode: {**results[mode], "workers": WORKERS[mode],
                                                      "stage_ms_per_batch": stages[mode]}
                                               for mode in modes}}, indent=2))
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
