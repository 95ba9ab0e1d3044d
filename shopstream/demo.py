"""The demo: a worker, a burst of shop events through the client, and live progress.

Run with ``make demo`` (which also installs and starts Kafka and Redis) or
``shopstream demo --events 20000 --rate 2000``. The screen shows what was produced, what
the worker consumed and processed, the dead letters by reason, and the consumer lag.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from shopstream import workers
from shopstream.burst import burst
from shopstream.client import ShopProducer
from shopstream.settings import Settings
from shopstream.topics import ensure_topics


@dataclass
class Rates:
    """Events per second from successive counter readings."""

    _last: tuple[float, float] | None = None
    value: float = 0.0

    def update(self, count: float) -> float:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.value = (count - self._last[1]) / (now - self._last[0])
        self._last = (now, count)
        return self.value


def produce(settings: Settings, events: int, rate: float, seed: int, producer: ShopProducer) -> None:
    """Send ``events`` records at about ``rate`` per second (0: as fast as possible)."""
    topics = settings.topics.inputs()
    started = time.monotonic()
    for i, record in enumerate(burst(events, seed=seed)):
        if record.event is not None:
            producer.send(record.event)
        else:
            producer.send_raw(topics[record.kind], record.raw)
        if rate > 0 and (ahead := (i + 1) / rate - (time.monotonic() - started)) > 0:
            time.sleep(ahead)
    producer.flush()


def view(produced: int, total: int, m: workers.WorkerMetrics | None, rate: float,
         progress: Progress) -> Group:
    """The screen: a progress bar and a table of the worker's counters."""
    table = Table(title="worker", expand=True)
    for column in ("topic", "consumed", "processed"):
        table.add_column(column, justify="right" if column != "topic" else "left")
    if m is not None:
        for topic in sorted(m.events_in):
            table.add_row(topic, f"{m.events_in[topic]:,.0f}", f"{m.events_out.get(topic, 0):,.0f}")
    dead = ", ".join(f"{r} {n:,.0f}" for r, n in sorted((m.dead_letters if m else {}).items()))
    summary = Table.grid(padding=(0, 3))
    summary.add_row(
        f"[bold]{rate:,.0f}[/] events/s",
        f"dead letters [bold red]{m.total_dead if m else 0:,.0f}[/] ({dead or 'none'})",
        f"lag [bold]{m.lag if m else 0:,.0f}[/]",
    )
    return Group(progress, Panel(summary, title="shopstream"), table)


def run(settings: Settings, *, events: int = 5000, rate: float = 1000, seed: int = 7,
        console: Console | None = None) -> workers.WorkerMetrics:
    """Start a worker unless one answers, send the burst, show progress until it is drained."""
    console = console or Console()
    ensure_topics(settings)
    log_file = settings.home.resolve() / "logs" / "worker.log"
    worker = None
    if not workers.ready(settings.web_port):
        console.print(f"starting a worker (log: {log_file}) ...")
        worker = workers.start({}, log_file)
        took = workers.wait_ready(worker, settings.web_port, log_file)
        console.print(f"worker ready in {took:.1f}s")
    before = workers.scrape(settings.web_port) or workers.WorkerMetrics()
    producer = ShopProducer(settings)
    sender = threading.Thread(target=produce, args=(settings, events, rate, seed, producer),
                              daemon=True)
    progress = Progress(TextColumn("produced"), BarColumn(), MofNCompleteColumn())
    task = progress.add_task("produced", total=events)
    rates = Rates()
    started = time.monotonic()
    last_change, last_handled = time.monotonic(), -1.0
    sender.start()
    try:
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                m = workers.scrape(settings.web_port)
                handled = (m.total_in - before.total_in) if m else 0
                progress.update(task, completed=producer.stats.sent)
                live.update(view(producer.stats.sent, events, m, rates.update(m.total_in if m else 0),
                                 progress))
                if not sender.is_alive() and handled >= events and m is not None and m.lag == 0:
                    break
                if handled != last_handled:
                    last_change, last_handled = time.monotonic(), handled
                elif time.monotonic() - last_change > 60:
                    raise RuntimeError(f"the worker stopped making progress; see {log_file}")
                time.sleep(0.5)
    finally:
        if worker is not None:
            workers.stop(worker)
    elapsed = time.monotonic() - started
    console.print()
    console.print(
        f"[green]done[/] in {elapsed:.1f}s ({events / elapsed:,.0f} records/s): {events:,} sent, "
        f"{producer.stats.delivered:,} delivered; the worker processed "
        f"{m.total_out - before.total_out:,.0f} and dead-lettered {m.total_dead - before.total_dead:,.0f}."
    )
    return m
