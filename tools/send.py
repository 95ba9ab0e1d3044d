"""Sending a stream of events through the shop client, paced, with a progress bar.

Shared by ``shopstream simulate`` and ``shopstream replay``. Pacing is either a rate in
events per second of wall-clock time, or a speed factor on the gaps between event times
(2.0 replays an hour in 30 minutes); with neither, events go as fast as possible.

As fast as possible has a catch: workers read the input topics at different paces, so a
topic can fall weeks of event time behind another, and an order label that arrives weeks
after the orders around it misses its risk windows. ``hold`` keeps them in step: every
``hold_every`` events the sender waits while ``hold()`` is true (for example while the
workers' backlog is over a bound, see ``backlog_over``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from shopstream.client import DeliveryStats, ShopProducer
from shopstream.events import Event
from shopstream.progress import progress_bar
from shopstream.settings import Settings


def backlog_over(settings: Settings, limit: int, topics: list[str] | None = None) -> Callable[[], bool]:
    """A ``hold`` for ``send``: whether the workers' group has more than ``limit`` records
    of ``topics`` (the input topics by default) not committed yet."""
    from shopstream import workers

    topics = topics or list(settings.topics.inputs().values())
    return lambda: workers.backlog(settings, topics) > limit


def send(events: Iterable[Event], settings: Settings, *, rate: float = 0.0, speed: float = 0.0,
         total: int | None = None, console: Console | None = None,
         hold: Callable[[], bool] | None = None, hold_every: int = 1000) -> DeliveryStats:
    """Send ``events`` in order; return the delivery counts once all are acknowledged."""
    if rate and speed:
        raise ValueError("give a rate or a speed factor, not both")
    producer = ShopProducer(settings, config={"linger.ms": 20, "batch.num.messages": 10_000})
    started = time.monotonic()
    first_ts = None
    progress = progress_bar(TextColumn("[bold]sending"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]:>9,.0f} events/s"), TimeElapsedColumn(),
                            console=console or Console(), transient=False)
    with progress:
        task = progress.add_task("sending", total=total, rate=0.0)
        for i, event in enumerate(events, start=1):
            if rate > 0:
                due = i / rate
            elif speed > 0:
                ts = event.ts.timestamp()
                first_ts = ts if first_ts is None else first_ts
                due = (ts - first_ts) / speed
            else:
                due = 0.0
            if (ahead := due - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
            producer.send(event)
            if hold is not None and i % hold_every == 0:
                producer.flush()
                while hold():
                    time.sleep(0.2)
            if i % 1000 == 0:
                elapsed = time.monotonic() - started
                progress.update(task, completed=i, rate=i / elapsed if elapsed else 0.0)
        elapsed = time.monotonic() - started
        progress.update(task, completed=producer.stats.sent,
                        rate=producer.stats.sent / elapsed if elapsed else 0.0)
        producer.close()
    return producer.stats
