"""``shopstream eval fraud``: the whole system on a labelled transaction log.

1. The history (everything before the test window) is replayed into Kafka at
   ``history_rate`` events/s, the test window's pace unless told otherwise; a worker
   builds the features and the offline log, scoring with the rules. The model trains on
   the feature rows the worker served, so history replayed faster than the worker keeps
   up would teach it rows the test window never serves (docs/operations.md).
2. The trainer trains on ``[train_start, train_end]`` with the labels known at the test
   start, from the offline store, and the model is promoted; the worker picks it up.
3. The test window is replayed at ``rate`` events/s; the worker scores its orders.
4. Metrics come from what ``scores.fraud`` carried. Following the published protocol
   (Le Borgne et al.), a card already known to be compromised before a test day (a fraud
   label had arrived) is left out of that day. Logistic regression and gradient boosting
   train on the same feature rows as the model, for comparison.

Everything runs in its own topics, consumer group, home folder (offline log, registries)
and Redis database (``redis_db``, emptied first), so it touches nothing else.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from scorers.fraud import matrix
from shopstream import workers
from shopstream.events import FraudScore, Order
from shopstream.progress import progress_bar
from shopstream.settings import ScoringSettings, Settings, Topics, to_env
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tools.replay import read
from tools.send import backlog_over, send
from trainers import metrics as fraud_metrics
from trainers.configs import FraudTrainConfig, LoopConfig
from trainers.fraud import baseline_scores, train_and_register
from trainers.offline import features_as_served, order_events, raw

HISTORY_BACKLOG = 5_000
"""Most records (inputs and entity updates) the worker may have left to do while the
history is replayed: about three hours of event time on the full transaction log."""
PUBLISHED = {"best published (full data)": {"auc": 0.876, "ap": 0.687, "cp100": 0.303}}


@dataclass
class EvalWindow:
    history_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    delay_days: float = 7.0
    train_days: float = 21.0  # training window length, ending at train_end


def isolated(settings: Settings, output: Path, redis_db: int) -> Settings:
    """Settings of a private run: own topics, group, home and Redis database."""
    prefix = f"eval-{uuid.uuid4().hex[:6]}"
    names = {k: f"{prefix}.{v}" for k, v in Topics().model_dump().items() if isinstance(v, str)}
    return settings.model_copy(update={
        "topics": Topics(**names, partitions=settings.topics.partitions),
        "app_id": prefix, "home": (output / "home").resolve(), "web_port": _free_port(),
        "redis": settings.redis.model_copy(update={"db": redis_db}), "registry_uri": None,
        "scoring": ScoringSettings(**{**settings.scoring.model_dump(), "reload_s": 2.0}),
    })


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_processed(settings: Settings, console: Console, what: str, timeout: float = 7200) -> None:
    """Wait, with a progress bar, until the worker has committed every input record."""
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    total = sum(end for _, end in workers.offsets(settings, topics).values())
    with progress_bar(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
        task = progress.add_task(what, total=total)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = workers.offsets(settings, topics)
            total = sum(end for _, end in offsets.values())
            left = sum(end - max(committed, 0) for committed, end in offsets.values())
            progress.update(task, total=total, completed=total - left)
            if left == 0:
                return
            time.sleep(2)
    raise TimeoutError(f"the worker did not finish {what} within {timeout:.0f}s")


def collect_scores(settings: Settings, order_ids: set[str], timeout: float) -> dict[str, FraudScore]:
    """The first score of each order in ``order_ids`` from ``scores.fraud``."""
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-eval",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topics.fraud_scores])
    found: dict[str, FraudScore] = {}
    deadline = time.monotonic() + timeout
    try:
        # Compare sizes, not sets: a set difference per message made reading half a
        # million scores take longer than the timeout.
        while len(found) < len(order_ids) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            score = FraudScore.model_validate_json(message.value())
            if score.order_id in order_ids:
                found.setdefault(score.order_id, score)
    finally:
        consumer.close()
    return found


@contextmanager
def running_worker(settings: Settings, output: Path):
    """A worker of ``settings`` (all roles), logging to ``output/worker.log``, up and ready."""
    log_file = output / "worker.log"
    process = workers.start(to_env(settings), log_file)
    try:
        workers.wait_ready(process, settings.web_port, log_file, timeout=180)
        yield process
    finally:
        workers.stop(process)


def replay(events: list, settings: Settings, rate: float, console: Console, what: str) -> None:
    """Send ``events`` at ``rate`` events/s (0: as fast as the worker goes) and wait until
    the worker has processed them all. Never more than ``HISTORY_BACKLOG`` records ahead of
    the worker: a label topic weeks of event time behind the orders would apply its labels
    outside their risk windows."""
    console.print(f"replaying {len(events):,} events at {f'{rate:,.0f}/s' if rate else 'full speed'}")
    send(events, settings, rate=rate, total=len(events), console=console,
         hold=backlog_over(settings, HISTORY_BACKLOG, [*settings.topics.inputs().values(),
                                                       updates_topic_name(settings)]))
    wait_processed(settings, console, what)


def known_compromised(transactions: pd.DataFrame, day: pd.Timestamp, delay_days: float) -> set:
    """Cards with a fraud whose label had arrived before ``day`` began."""
    arrived = transactions["TX_DATETIME"] + pd.Timedelta(days=delay_days) < day
    return set(transactions.loc[arrived & (transactions["TX_FRAUD"] == 1), "CUSTOMER_ID"].astype(str))


def run(settings: Settings, transactions: Path, window: EvalWindow, output: Path, *, rate: float = 500.0,
        history_rate: float | None = None, epochs: int = 20, negatives: float = 1.0, redis_db: int = 15,
        console: Console | None = None, plant: Callable[[list], list] | None = None,
        on_scored: Callable[[Settings, list], None] | None = None) -> dict:
    """The whole evaluation; returns what ``metrics.json`` holds. ``plant`` changes the test
    window's events before they are sent (``eval drift``); ``on_scored`` is called with the
    run's own settings and the test events once they are all scored, the worker still up.
    ``history_rate``: events/s of the history, ``rate`` if None; 0 sends it as fast as the
    worker goes, up to ``HISTORY_BACKLOG`` records ahead of it."""
    import redis

    console = console or Console()
    output.mkdir(parents=True, exist_ok=True)
    settings = isolated(settings, output, redis_db)
    with redis.Redis.from_url(settings.redis.url(reveal=True)) as client:
        client.flushdb()
    frame = pd.read_parquet(transactions) if transactions.suffix == ".parquet" else pd.read_csv(transactions)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"], utc=True)
    start, test_start, test_end = (pd.Timestamp(t) for t in (window.history_start, window.test_start,
                                                            window.test_end))
    events = [e for e in read(transactions, "transactions", label_delay_days=window.delay_days)
              if start <= e.ts < test_end]
    history = [e for e in events if e.ts < test_start]
    test = [e for e in events if e.ts >= test_start]
    if plant is not None:
        test = plant(test)
    test_orders = [e for e in test if isinstance(e, Order)]
    console.print(f"history: {len(history):,} events; test window: {len(test):,} events, "
                  f"{len(test_orders):,} orders")

    ensure_topics(settings)
    history_rate = rate if history_rate is None else history_rate
    with running_worker(settings, output):
        replay(history, settings, history_rate, console, "features of the history")
        train_start = max(window.history_start + timedelta(days=7),
                          window.train_end - timedelta(days=window.train_days))
        config = FraudTrainConfig(delay_days=window.delay_days, valid_days=min(4.0, window.train_days / 4),
                                  negatives=negatives, loop=LoopConfig(epochs=epochs))
        result = train_and_register(settings, config, labels_as_of=window.test_start, force=True,
                                    window=(train_start, window.train_end), output=output / "model")
        version = result.version.version
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = workers.scrape(settings.web_port)
            if m is not None and m.model_versions.get(settings.scoring.model_name) == float(version):
                break
            time.sleep(1)
        else:
            raise TimeoutError(f"the worker did not load model version {version}")
        console.print(f"model version {version} is scoring; replaying the test window at {rate:,.0f}/s")
        send(test, settings, rate=rate, total=len(test), console=console)
        wait_processed(settings, console, "scoring the test window")
        scores = collect_scores(settings, {o.order_id for o in test_orders}, timeout=300)
        if on_scored is not None:
            on_scored(settings, test)

    # Feature rows of the test orders for the baselines: those the worker served the net,
    # as their training rows are (trainers.offline.features_as_served).
    orders = raw(settings, "raw_order").drop_duplicates("order_id")
    orders = orders[orders["order_id"].isin({o.order_id for o in test_orders})].reset_index(drop=True)
    test_x = matrix(order_events(orders), features_as_served(settings, orders)[0])
    train_x = np.concatenate([result.train.x, result.valid.x])
    train_y = np.concatenate([result.train.frame["label"], result.valid.frame["label"]])
    others = baseline_scores(train_x, train_y, test_x)

    truth = frame.assign(order_id=frame["TRANSACTION_ID"].astype(str)).set_index("order_id")
    table = pd.DataFrame({
        "transaction_id": truth.loc[orders["order_id"], "TRANSACTION_ID"].to_numpy(),
        "customer_id": truth.loc[orders["order_id"], "CUSTOMER_ID"].astype(str).to_numpy(),
        "ts": pd.to_datetime(orders["event_timestamp"], utc=True).to_numpy(),
        "label": truth.loc[orders["order_id"], "TX_FRAUD"].astype(int).to_numpy(),
        "score": [scores[i].score if i in scores else np.nan for i in orders["order_id"]],
        "model_version": [scores[i].model_version if i in scores else None for i in orders["order_id"]],
        **{f"score_{name}": values for name, values in others.items()},
    })
    table.to_parquet(output / "scores.parquet", index=False)
    kept = without_known_compromised(table, frame, window.delay_days)
    results, curves = {}, {}
    for name, column in (("shopstream", "score"), ("logreg", "score_logreg"), ("gbm", "score_gbm")):
        scored = kept.dropna(subset=[column])
        curve = metric_frame(scored, scored[column])
        results[name] = {k: v for k, v in fraud_metrics.evaluate(curve).items() if k in ("auc", "ap", "cp100")}
        curves[name] = curve
    fraud_metrics.plot(curves, output, "test window")
    summary = {"models": results, "cp100_ceiling": fraud_metrics.card_precision_ceiling(curves["shopstream"]),
               "n_test": int(len(kept)), "n_test_fraud": int(kept["label"].sum()),
               "n_scored": int(table["score"].notna().sum()), "n_test_orders": len(test_orders),
               "model_version": version, "train_rows": int(len(train_x)),
               "window": {k: str(v) for k, v in window.__dict__.items()}, "rate": rate,
               "history_rate": history_rate}
    (output / "metrics.json").write_text(json.dumps(summary, indent=2))
    _print(summary, console)
    return summary


def without_known_compromised(table: pd.DataFrame, frame: pd.DataFrame, delay_days: float) -> pd.DataFrame:
    parts = []
    for day, rows in table.groupby(table["ts"].dt.floor("D")):
        known = known_compromised(frame, day, delay_days)
        parts.append(rows[~rows["customer_id"].isin(known)])
    return pd.concat(parts) if parts else table


def metric_frame(table: pd.DataFrame, scores) -> pd.DataFrame:
    """The (day, card, score, label) rows that ``trainers.metrics`` reads, from a test table
    with ``ts``, ``customer_id`` and ``label``."""
    return pd.DataFrame({"day": table["ts"].dt.date, "card": table["customer_id"], "score": scores,
                         "label": table["label"]})


def _print(summary: dict, console: Console) -> None:
    table = Table(title=f"fraud, test window: {summary['n_test']:,} transactions, "
                        f"{summary['n_test_fraud']:,} fraud (known-compromised cards removed)",
                  caption=f"card precision@100 of a perfect ranking on these days: "
                          f"{summary['cp100_ceiling']:.3f}")
    for column in ("model", "AUC ROC", "average precision", "card precision@100"):
        table.add_column(column)
    for name, m in {**summary["models"], **PUBLISHED}.items():
        table.add_row(name, *(f"{m[k]:.3f}" for k in ("auc", "ap", "cp100")))
    console.print(table)
