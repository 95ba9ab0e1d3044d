"""Worker start-up: seconds from ``shopstream worker`` being started to ready.

Run with ``make bench-startup`` (it starts Kafka and Redis), or
``python -m bench.startup`` with them running. Ready means what supervisors and the
tests wait for (``shopstream.workers.ready``): ``/health`` answers and the worker owns
partitions. In one run, ``--starts`` times each (median reported):

a. the floor: a Python interpreter that imports Faust and exits, the least any Faust
   worker pays before it can join its group;
b. a worker with every role and no registered model (it answers with the rules);
c. the same with a champion fraud model registered, which the worker loads in the
   background while the rules answer; ``model s`` is when ``/health`` first names it.

``prepared s`` is when the worker had also built what it builds after readiness, its
Feast writer and reader (``/health``'s ``preparing`` empty; ``workers.prepared``).

Each start is a fresh process on topics and a consumer group of its own, as a new
worker at a rolling restart or a scale-out. Writes ``bench/results/startup-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from shopstream import workers
from shopstream.settings import Settings, to_env
from shopstream.topics import ensure_topics

RESULTS = Path(__file__).parent / "results"
FLOOR = "import faust.transport.drivers.aiokafka; from faust import App, Worker"  # faust imports lazily
console = Console()


def floor_s() -> float:
    """Seconds for a fresh interpreter to import Faust's app, worker and Kafka driver."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", FLOOR], check=True)
    return time.monotonic() - started


def start_once(settings: Settings, log_file: Path, model: str | None, timeout: float = 120.0) -> dict:
    """Start one worker; return seconds to ready, to prepared and, with ``model``, to that
    model loaded."""
    ensure_topics(settings)
    started = time.monotonic()
    process = workers.start(to_env(settings), log_file)
    ready_s = prepared_s = loaded_s = None
    try:
        with httpx.Client(timeout=2) as client:
            while time.monotonic() - started < timeout:
                if process.poll() is not None:
                    raise RuntimeError(f"the worker exited with {process.returncode}; see {log_file}")
                try:
                    health = client.get(f"http://127.0.0.1:{settings.web_port}/health").json()
                except (httpx.HTTPError, ValueError):
                    health = {}
                now = time.monotonic() - started
                if ready_s is None and health.get("assigned"):
                    ready_s = now
                if prepared_s is None and health.get("assigned") and health.get("preparing", {}) == {}:  # no such key: an older worker, prepared when ready
                    prepared_s = now
                served = (health.get("models") or {}).get(model) or {}
                if model and loaded_s is None and served.get("version") and served.get("error") is None:
                    loaded_s = now
                if prepared_s is not None and (not model or loaded_s is not None):
                    break
                time.sleep(0.05)
            else:
                raise TimeoutError(f"the worker was not ready within {timeout:.0f}s; see {log_file}")
    finally:
        workers.stop(process)
    return {"ready_s": ready_s, "prepared_s": prepared_s, "model_s": loaded_s}


def case(base: Settings, name: str, starts: int, model: str | None) -> list[dict]:
    from bench.throughput import isolated

    runs = []
    for i in range(starts):
        settings = isolated(base, f"startup-{name}-{i}")
        runs.append(start_once(settings, base.home / f"{name}-{i}.log", model))
        console.print(f"  {name} start {i + 1}: ready in {runs[-1]['ready_s']:.2f}s, prepared in "
                      f"{runs[-1]['prepared_s']:.2f}s" + (f", model in {runs[-1]['model_s']:.2f}s" if model else ""))
    return runs


def median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=5, help="starts of each kind (the median is reported)")
    parser.add_argument("--web-port", type=int, default=6079)
    args = parser.parse_args()

    base = Settings().model_copy(update={"home": Path(tempfile.mkdtemp(prefix="bench-startup-")),
                                         "web_port": args.web_port})
    console.print("a. the floor: import faust in a fresh interpreter ...")
    floor = [floor_s() for _ in range(args.starts)]
    console.print("b. a worker with every role, no model registered ...")
    rules = case(base, "rules", args.starts, None)
    console.print("c. a worker with a registered champion fraud model ...")
    from bench.latency import register_model

    with_model = base.model_copy(update={"home": base.home / "with-model"})
    version = register_model(with_model)
    champion = case(with_model, "champion", args.starts, with_model.scoring.model_name)

    table = Table(title=f"worker start-up, median of {args.starts} starts")
    for column in ("", "ready s", "prepared s", "model loaded s", "starts (ready s)"):
        table.add_column(column)
    table.add_row("a. import faust (floor)", f"{statistics.median(floor):.2f}", "", "",
                  " ".join(f"{s:.2f}" for s in floor))
    for label, runs in (("b. worker, rules only", rules), (f"c. worker, champion v{version}", champion)):
        loaded = median(runs, "model_s")
        table.add_row(label, f"{median(runs, 'ready_s'):.2f}", f"{median(runs, 'prepared_s'):.2f}",
                      "" if loaded is None else f"{loaded:.2f}", " ".join(f"{r['ready_s']:.2f}" for r in runs))
    console.print(table)

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"startup-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({
        "starts": args.starts, "floor_import_faust_s": floor,
        "rules": rules, "champion": champion,
        "median": {"floor_s": statistics.median(floor), "rules_ready_s": median(rules, "ready_s"),
                   "rules_prepared_s": median(rules, "prepared_s"),
                   "champion_ready_s": median(champion, "ready_s"),
                   "champion_prepared_s": median(champion, "prepared_s"),
                   "champion_model_s": median(champion, "model_s")},
    }, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
