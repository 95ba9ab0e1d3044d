"""Recommendation latency: from a click being produced to its recommendations being consumed.

Run with ``make bench-recs`` (it starts Kafka and Redis), or ``python -m bench.recs_latency``
with them running. In one run it measures:

1. exact against HNSW search on item catalogs of growing size (time per query and recall
   of HNSW against the exact top 20), which sets ``scorers.retrieval.EXACT_BELOW``;
2. a. the floor: Kafka's own round trip (consume each click, produce it again) at the rate;
   b. shopstream: a real worker recommending after every click, with a champion bundle
      whose catalog has ``--items`` items (a sequence model with random weights, its faiss
      index, and co-visitation and session neighbours fitted on random sessions: the same
      work per click as a trained one).

It prints p50, p99 and max latency and the worker's time per micro-batch in the session
state, the model, the index and the blend, and writes
``bench/results/recs-latency-<time>.json``.
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
from rich.console import Console
from rich.table import Table

from bench.latency import RESULTS, echo, measure, stage_times
from bench.throughput import isolated, recs_cost_per_answer
from models.configs import SequenceConfig
from models.sequence import SequenceRecommender
from scorers.neighbours import CoVisitation, Popularity, Session, SessionKNN
from scorers.recommend import Recommender, SequenceScorer
from scorers.retrieval import ItemIndex
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, SessionRecs
from shopstream.settings import RecsSettings, Settings, to_env
from shopstream.topics import ensure_topics
from trainers.promotion import save_bundle
from trainers.registry import Registry

console = Console()
CLICKS_PER_SESSION = 5


def index_sizes(sizes: list[int], dim: int = 64, queries: int = 200, k: int = 20) -> list[dict]:
    """Per-query time of exact and HNSW search, and HNSW's recall@k against exact."""
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        vectors = rng.normal(size=(n, dim)).astype("float32")
        q = rng.normal(size=(queries, dim)).astype("float32")
        ids = [str(i) for i in range(n)]
        exact = ItemIndex.build(vectors, ids, exact_below=n + 1)
        started = time.perf_counter()
        built = ItemIndex.build(vectors, ids, exact_below=0)
        build_s = time.perf_counter() - started
        timings = {}
        for name, index in (("exact", exact), ("hnsw", built)):
            index.search(q[:10], k)  # warm
            started = time.perf_counter()
            for row in q:  # one session at a time, as in a small micro-batch
                index.search(row[None], k)
            timings[name] = (time.perf_counter() - started) / queries * 1000
        truth = [{i for i, _ in r} for r in exact.search(q, k)]
        found = [{i for i, _ in r} for r in built.search(q, k)]
        recall = float(np.mean([len(a & b) / k for a, b in zip(truth, found, strict=True)]))
        rows.append({"items": n, "exact_ms": timings["exact"], "hnsw_ms": timings["hnsw"],
                     "hnsw_recall": recall, "hnsw_build_s": build_s})
    return rows


def bundle(items: int, folder: Path) -> Path:
    """A champion-shaped bundle over ``items`` items with random weights and sessions."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    vocab = [f"item-{i}" for i in range(items)]
    model = SequenceRecommender(SequenceConfig(n_items=items))
    index = ItemIndex.build(model.item_vectors().numpy(), vocab)
    popular = rng.zipf(1.3, size=200_000) % items  # long-tailed sessions
    sessions = [Session(tuple(vocab[j] for j in popular[i:i + 5]), float(i)) for i in range(0, len(popular), 5)]
    recommender = Recommender(sequence=SequenceScorer(model, vocab, index), covisit=CoVisitation().fit(sessions),
                              neighbours=SessionKNN().fit(sessions), popular=Popularity().fit(sessions))
    return save_bundle(recommender, folder / "recs.pt")


def drive_clicks(items: int):
    def drive(settings: Settings, seconds: float, _orders: float, clicks_per_s: float, sent: dict) -> None:
        run = uuid.uuid4().hex[:6]
        rng = np.random.default_rng(1)
        with ShopProducer(settings, config={"linger.ms": 0}) as producer:
            producer.send(Click(user_id="warm", session_id=f"warm-{run}", item_id="item-0", ts=datetime.now(UTC)))
            producer.flush()
            started, c = time.monotonic(), 0
            while (elapsed := time.monotonic() - started) < seconds:
                while c < elapsed * clicks_per_s:
                    session = f"{run}-{c // CLICKS_PER_SESSION}"
                    sent[f"{session}:{c % CLICKS_PER_SESSION + 1}"] = time.time()
                    producer.send(Click(user_id=f"u{c % 5000}", session_id=session,
                                        item_id=f"item-{int(rng.zipf(1.3)) % items}", ts=datetime.now(UTC)))
                    c += 1
                time.sleep(0.0005)
    return drive


def recs_key(message) -> str:
    recs = SessionRecs.model_validate_json(message.value())
    return f"{recs.session_id}:{recs.session_length}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=float, default=1000.0, help="clicks per second")
    parser.add_argument("--items", type=int, default=100_000, help="catalog size of the index")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="10000,50000,100000,200000", help="catalog sizes for step 1")
    args = parser.parse_args()

    console.print("1. exact against HNSW search ...")
    sizes = index_sizes([int(s) for s in args.sizes.split(",") if s])
    table = Table(title="one query, top 20, 64 dimensions")
    for column in ("items", "exact ms", "HNSW ms", "HNSW recall@20", "HNSW build s"):
        table.add_column(column)
    for r in sizes:
        table.add_row(f"{r['items']:,}", f"{r['exact_ms']:.3f}", f"{r['hnsw_ms']:.3f}", f"{r['hnsw_recall']:.3f}",
                      f"{r['hnsw_build_s']:.1f}")
    console.print(table)

    settings = isolated(Settings(), "recs")
    settings = settings.model_copy(update={
        "home": Path(tempfile.mkdtemp(prefix="bench-recs-")), "web_port": 6078,
        "recs": RecsSettings(model_name=f"{settings.app_id}-recs", reload_s=1.0)})
    ensure_topics(settings)
    echo_topic = f"{settings.app_id}.echo"
    ensure_topics(settings, [echo_topic])
    drive = drive_clicks(args.items)

    console.print("2a. Kafka round trip ...")
    stop, ready = threading.Event(), threading.Event()
    echoing = threading.Thread(target=echo, args=(settings, echo_topic, stop, ready, settings.topics.clicks,
                                                  session_counter()), daemon=True)
    echoing.start()
    try:
        if not ready.wait(60):
            raise TimeoutError("the echo consumer did not join")
        floor = measure(settings, echo_topic, args.seconds, 0, args.clicks, driver=drive)
    finally:
        stop.set()
        echoing.join()

    console.print(f"2b. shopstream worker with a {args.items:,}-item champion ...")
    registry = Registry(settings, settings.recs.model_name)
    version = registry.register(bundle(args.items, Path(tempfile.mkdtemp())), metrics={}, params={},
                                tags={"purpose": "latency bench"}, description="bench").version
    registry.promote(version)
    log_file = settings.home / "worker.log"
    process = workers.start(to_env(settings), log_file)
    try:
        workers.wait_ready(process, settings.web_port, log_file)
        deadline = time.monotonic() + 120
        while (m := workers.scrape(settings.web_port)) is None or \
                m.model_versions.get(settings.recs.model_name) != float(version):
            if time.monotonic() > deadline:
                raise TimeoutError("the worker did not load the recommender")
            time.sleep(0.5)
        measure(settings, settings.topics.session_recs, 5, 0, args.clicks, driver=drive, key_of=recs_key)  # warm-up
        served = measure(settings, settings.topics.session_recs, args.seconds, 0, args.clicks, driver=drive,
                         key_of=recs_key)
        stages = {k: v for k, v in stage_times(settings.web_port).items() if k.startswith("recs_")}
        per_answer = recs_cost_per_answer([settings.web_port], settings.topics.session_recs)
    finally:
        workers.stop(process)

    table = Table(title=f"click produced -> recommendations consumed, {args.clicks:,.0f} clicks/s, "
                        f"{args.items:,}-item catalog, one worker")
    for column in ("", "received", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column)
    for name, r in (("a. Kafka round trip", floor), ("b. shopstream recommendations", served)):
        table.add_row(name, f"{r['received']:,}/{r['sent']:,}",
                      *(f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("p50_ms", "p99_ms", "max_ms")))
    console.print(table)
    console.print("worker, mean per micro-batch: " + ", ".join(f"{s.removeprefix('recs_')} {ms:.2f} ms"
                                                               for s, ms in sorted(stages.items())))
    console.print("worker, µs per answered click (the cost budget): "
                  + ", ".join(f"{stage} {us:,.0f}" for stage, us in per_answer.items())
                  + f"; total {sum(per_answer.values()):,.0f}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"recs-latency-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps({"clicks_per_s": args.clicks, "items": args.items, "seconds": args.seconds,
                                "index_sizes": sizes, "kafka_round_trip": floor, "shopstream": served,
                                "stage_ms_per_batch": stages, "us_per_answer": per_answer}, indent=2))
    console.print(f"wrote {path}")


def session_counter():
    """The echo's key for a click: its session and how many clicks the session has had,
    the key its recommendations are matched by."""
    counts: dict[str, int] = {}

    def key(message) -> bytes:
        session = json.loads(message.value())["session_id"]
        counts[session] = counts.get(session, 0) + 1
        return f"{session}:{counts[session]}".encode()
    return key


if __name__ == "__main__":
    main()
