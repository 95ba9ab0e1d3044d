"""The demo: a simulated shop streaming into a worker, watched live, features read back.

Run with ``make demo`` (which also installs and starts Kafka and Redis and registers the
Feast repo) or ``shopstream demo --events 20000 --rate 1000``. The screen shows events
per second by topic, dead letters (the stream carries a few broken records on purpose),
consumer lag, online micro-batches (their size and write time), feature freshness and
late events; at the end a few feature vectors are read back through Feast.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from shopstream import workers
from shopstream.burst import SMALL_BAD_KINDS, bad_record
from shopstream.client import ShopProducer
from shopstream.events import Click, Order
from shopstream.featurestore import feature_store
from shopstream.settings import Settings
from shopstream.simulator import Shop, SimConfig, default_start
from shopstream.topics import ensure_topics

BROKEN_EVERY = 400  # one broken record in this many, to show the dead-letter path


@dataclass
class Rates:
    """Events per second per topic, from successive counter readings."""

    _last: tuple[float, dict[str, float]] | None = None
    value: dict[str, float] = field(default_factory=dict)

    def update(self, counts: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] >= 0.5:
            elapsed = now - self._last[0]
            self.value = {t: (n - self._last[1].get(t, 0)) / elapsed for t, n in counts.items()}
            self._last = (now, dict(counts))
        elif self._last is None:
            self._last = (now, dict(counts))
        return self.value


@dataclass
class Sent:
    """What the sender thread has sent so far."""

    records: int = 0
    users: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)


def produce(settings: Settings, events: int, rate: float, seed: int, sent: Sent) -> None:
    """Send ``events`` simulated events at ``rate`` per second, with some broken records."""
    config = SimConfig(seed=seed)
    rng = random.Random(seed)
    topics = settings.topics.inputs()
    started = time.monotonic()
    with ShopProducer(settings) as producer:
        for i, event in enumerate(Shop(config).events(default_start(events, config), n=events)):
            if i % BROKEN_EVERY == BROKEN_EVERY - 1:
                broken = bad_record(SMALL_BAD_KINDS[i // BROKEN_EVERY % len(SMALL_BAD_KINDS)],
                                    event.ts, rng)
                producer.send_raw(topics[broken.kind], broken.raw)
            else:
                producer.send(event)
                if isinstance(event, Order) and len(sent.users) < 200:
                    sent.users.append(event.user_id)
                if isinstance(event, Click) and len(sent.sessions) < 200:
                    sent.sessions.append(event.session_id)
            sent.records = i + 1
            if rate > 0 and (ahead := (i + 1) / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)


def view(m: workers.WorkerMetrics | None, rates: dict[str, float], progress: Progress) -> Group:
    """The live screen."""
    table = Table(expand=True, title="worker, by input topic")
    for column in ("topic", "events/s", "consumed", "processed"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    if m is not None:
        for topic in sorted(m.events_in):
            table.add_row(topic, f"{rates.get(topic, 0):,.0f}", f"{m.events_in[topic]:,.0f}",
                          f"{m.events_out.get(topic, 0):,.0f}")
    summary = Table.grid(padding=(0, 3))
    if m is not None:
        dead = ", ".join(f"{r} {n:,.0f}" for r, n in sorted(m.dead_letters.items())) or "none"
        batch = m.online_rows / m.online_batches if m.online_batches else 0
        write_ms = 1000 * m.online_write_s / m.online_batches if m.online_batches else 0
        p50, p99 = m.freshness_quantile(0.5), m.freshness_quantile(0.99)
        summary.add_row(f"[bold]{sum(rates.values()):,.0f}[/] events/s",
                        f"lag [bold]{m.lag:,.0f}[/]", f"late events [bold]{m.late:,.0f}[/]")
        summary.add_row(f"online batches [bold]{m.online_batches:,.0f}[/]",
                        f"avg [bold]{batch:,.0f}[/] rows, [bold]{write_ms:,.0f}[/] ms each",
                        "freshness p50 " + (f"[bold]≤{p50 * 1000:,.0f}[/] ms" if p50 else "-")
                        + ", p99 " + (f"[bold]≤{p99 * 1000:,.0f}[/] ms" if p99 else "-"))
        summary.add_row(f"dead letters [bold red]{m.total_dead:,.0f}[/]", dead, "")
    return Group(progress, Panel(summary, title="shopstream"), table)


def read_back(settings: Settings, sent: Sent, console: Console) -> None:
    """Print a few feature vectors read through Feast."""
    store = feature_store(settings)
    users = list(dict.fromkeys(sent.users))[:3]
    sessions = list(dict.fromkeys(sent.sessions))[:3]
    if users:
        names = ["user_activity__clicks_count_1h", "user_activity__orders_count_24h",
                 "user_activity__devices_distinct_24h", "user_orders__order_amount_mean_30d",
                 "user_orders__seconds_since_last_order", "user_activity__account_age_days"]
        # Views share feature names (orders_count_24h), so read them by their full names.
        features = store.get_online_features(
            features=[name.replace("__", ":") for name in names], full_feature_names=True,
            entity_rows=[{"user_id": u} for u in users]).to_dict()
        _print_vectors(console, "the user views of fraud_v1", "user_id", features, names)
    if sessions:
        features = store.get_online_features(
            features=["session_state:clicks_count", "session_state:session_length_s",
                      "session_state:last_items", "session_state:cart_items"],
            entity_rows=[{"session_id": s} for s in sessions]).to_dict()
        _print_vectors(console, "session_state (recs_v1)", "session_id", features,
                       ["clicks_count", "session_length_s", "last_items", "cart_items"])


def _print_vectors(console: Console, title: str, key: str, features: dict, names: list[str]) -> None:
    table = Table(key, *(name.split("__")[-1] for name in names),
                  title=f"read back through Feast: {title}")
    for i, entity in enumerate(features[key]):
        cells = []
        for name in names:
            value = features.get(name, [None] * (i + 1))[i]
            if isinstance(value, list):
                cells.append(", ".join(value[-3:]) + (" …" if len(value) > 3 else ""))
            elif isinstance(value, float):
                cells.append(f"{value:,.2f}")
            else:
                cells.append("-" if value is None else str(value))
        table.add_row(entity, *cells)
    console.print(table)


def run(settings: Settings, *, events: int = 20_000, rate: float = 1000, seed: int = 7,
        console: Console | None = None) -> workers.WorkerMetrics | None:
    """Start a worker unless one answers, stream the shop through it, show it live."""
    console = console or Console()
    ensure_topics(settings)
    with console.status("registering the Feast feature repo ..."):
        feature_store(settings, apply=True)
    log_file = settings.home.resolve() / "logs" / "worker.log"
    worker = None
    if not workers.ready(settings.web_port):
        console.print(f"starting a worker (log: {log_file}) ...")
        worker = workers.start({}, log_file)
        console.print(f"worker ready in {workers.wait_ready(worker, settings.web_port, log_file):.1f}s")
    before = workers.scrape(settings.web_port) or workers.WorkerMetrics()
    sent = Sent()
    sender = threading.Thread(target=produce, args=(settings, events, rate, seed, sent), daemon=True)
    progress = Progress(TextColumn("sent"), BarColumn(), MofNCompleteColumn())
    task = progress.add_task("sent", total=events)
    rates = Rates()
    started = time.monotonic()
    last_change, last_seen = time.monotonic(), -1.0
    sender.start()
    m = None
    try:
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                m = workers.scrape(settings.web_port)
                handled = (m.total_in - before.total_in) if m else 0
                progress.update(task, completed=sent.records)
                live.update(view(m, rates.update(m.events_in if m else {}), progress))
                if not sender.is_alive() and handled >= events and m is not None and m.lag == 0:
                    break
                if handled != last_seen:
                    last_change, last_seen = time.monotonic(), handled
                elif time.monotonic() - last_change > 60:
                    raise RuntimeError(f"the worker stopped making progress; see {log_file}")
                time.sleep(0.5)
        time.sleep(1.5)  # the last micro-batch reaches the online store
        elapsed = time.monotonic() - started
        console.print(
            f"[green]done[/] in {elapsed:.1f}s ({events / elapsed:,.0f} events/s end to end): "
            f"{m.total_out - before.total_out:,.0f} processed, "
            f"{m.total_dead - before.total_dead:,.0f} dead-lettered.")
        read_back(settings, sent, console)
    finally:
        if worker is not None:
            workers.stop(worker)
    return m
