"""Where a worker's CPU goes, stage by stage, without Kafka: the pure core in one process.

Run with ``python -m bench.profile_core [--events N] [--cprofile]``. It takes the
simulator's events as the bytes a shop produces and times each stage a worker runs on
them, in micro-batches as the agents see them: parse and validate, route, encode the
updates record, decode and check it, apply the updates to entity states (orders through
their order state), encode the changed states for the changelog, build the online rows
(Feast's protobufs, with the Redis call left out) and the offline Arrow tables.

It prints microseconds per input event for each stage and, with ``--cprofile``, the
functions that take the most time. Kafka, Faust and Redis are measured by ``make bench``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from collections import defaultdict
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from scorers.routing import order_updates, route
from scorers.states import Batch, new_state
from scorers.update_checks import check_update
from shopstream.events import INPUTS, parse_events
from shopstream.offline import events_table
from shopstream.rows import feature_table, latest_per_entity
from shopstream.settings import Settings
from streams.codecs import decode_updates, encode_states, encode_updates_chunked
from tools.simulator import Shop, SimConfig, default_start

KIND = {"Click": "click", "CartEvent": "cart", "Order": "order", "OrderLabel": "order_label"}
UPDATES = "app-entity-updates"


def simulated_records(n: int, seed: int = 11) -> list[tuple[str, bytes]]:
    config = SimConfig(seed=seed, users=20_000, items=50_000, sessions_per_hour=200_000)
    events = Shop(config).events(start=default_start(n, config), n=n)
    return [(KIND[type(e).__name__], e.model_dump_json().encode()) for e in events]


class Stages:
    """Seconds spent per stage: ``with stages("parse"): ...``."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._stage = ""

    def __call__(self, stage: str) -> Stages:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.seconds[self._stage] += time.perf_counter() - self._started


def apply_updates(updates, states, changed, batch, start) -> list:
    """Apply updates as the feature agent does; return the updates orders cause."""
    caused = []
    for index, update in enumerate(updates):
        key = f"{update.kind}:{update.entity_id}".encode()
        state = changed.get(key) or states.get(key) or new_state(update.kind, update.entity_id, 300.0)
        changed[key] = state
        if update.kind == "order":
            caused += order_updates(state, update, f"{UPDATES}:0", start, index)[1]
            continue
        batch.apply(state, update)
    return caused


def run(records: list[tuple[str, bytes]], batch: int, stages: Stages) -> dict[str, int]:
    settings = Settings()
    options = settings.limits.parse_options()
    now = datetime.now(UTC)
    states: dict[bytes, object] = {}
    counts = defaultdict(int)
    inputs = settings.topics.inputs()
    topics = {*inputs.values(), UPDATES}
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        with stages("parse"):  # one batch per kind, as the input agents do
            events = [None] * len(chunk)
            for kind in INPUTS:
                where = [i for i, (k, _) in enumerate(chunk) if k == kind]
                parsed = parse_events(INPUTS[kind], [chunk[i][1] for i in where], now=now, **options)
                for i, event in zip(where, parsed, strict=True):
                    events[i] = (kind, event)
        with stages("route"):
            updates = [u for i, (k, e) in enumerate(events) for u in route(e, f"{inputs[k]}:0", start + i)]
        with stages("encode updates"):
            encoded = encode_updates_chunked(0, updates, 1 << 20)
        with stages("decode updates"):
            decoded = [u for record in encoded for u in decode_updates(record)[1]]
        with stages("check updates"):
            for update in decoded:
                check_update(update, topics)
        changed: dict[bytes, object] = {}
        with stages("apply"):
            batch_of = Batch()
            caused = apply_updates(decoded, states, changed, batch_of, start)
            apply_updates(caused, states, changed, batch_of, start)
            rows = batch_of.rows()
        counts["updates"] += len(decoded) + len(caused)
        counts["rows"] += sum(map(len, rows.values()))
        counts["states"] += len(changed)
        with stages("encode states"):
            encode_states([(key[:key.index(b":")].decode(), state, 0.0) for key, state in changed.items()])
        states.update(changed)
        with stages("online rows"):
            for view_rows in rows.values():
                latest_per_entity(view_rows)
        with stages("offline tables"):
            for view, view_rows in rows.items():
                feature_table(view, view_rows)
        by_kind = defaultdict(list)
        for i, (k, e) in enumerate(events):
            by_kind[k].append((e, ("t", 0, start + i)))
        with stages("raw offline tables"):
            for pairs in by_kind.values():
                events_table([e for e, _ in pairs], [o for _, o in pairs])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--cprofile", action="store_true", help="print the top functions too")
    parser.add_argument("--gc", type=int, default=Settings().gc_threshold,
                        help="the cycle collector's threshold, as a worker sets it (700: Python's default)")
    args = parser.parse_args()
    gc.set_threshold(args.gc, *gc.get_threshold()[1:])
    records = simulated_records(args.events)
    stages = Stages()
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler:
        profiler.enable()
    counts = run(records, args.batch, stages)
    if profiler:
        profiler.disable()
    table = Table(title=f"{args.events:,} events, batches of {args.batch:,}, gc threshold {args.gc:,}: "
                        f"{counts['updates'] / args.events:.2f} updates, "
                        f"{counts['rows'] / args.events:.2f} rows, "
                        f"{counts['states'] / args.events:.2f} changed states per event")
    table.add_column("stage")
    table.add_column("µs / event", justify="right")
    total = sum(stages.seconds.values())
    for stage, seconds in stages.seconds.items():
        table.add_row(stage, f"{seconds / args.events * 1e6:.1f}")
    table.add_row("total", f"{total / args.events * 1e6:.1f}  ({args.events / total:,.0f} events/s)")
    Console().print(table)
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
