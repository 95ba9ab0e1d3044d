"""The ``shopstream`` command: services, workers, schemas and the demo.

Run ``shopstream --help`` for the commands, and ``shopstream COMMAND --help`` for each.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shopstream.settings import get_settings, group_id

app = typer.Typer(help=__doc__.split("\n")[0], no_args_is_help=True, add_completion=False)
services_app = typer.Typer(help="Start, stop and inspect the local Kafka and Redis.",
                           no_args_is_help=True)
app.add_typer(services_app, name="services")
console = Console()


ClusterOption = Annotated[bool, typer.Option(
    "--cluster", help="The local cluster: three Kafka brokers and a six-node Redis Cluster "
                      "(the same as SHOPSTREAM_PROFILE=cluster).")]


def _profile(cluster: bool):
    """The settings, with the cluster profile when ``--cluster`` is given."""
    import os

    if cluster:
        os.environ["SHOPSTREAM_PROFILE"] = "cluster"
        get_settings.cache_clear()
    return get_settings()


@services_app.command("up")
def services_up(cluster: ClusterOption = False) -> None:
    """Start Kafka and Redis (if not running), wait until they answer, create the topics."""
    from shopstream import services

    settings = _profile(cluster)
    what = "a Kafka cluster and a Redis Cluster" if settings.profile == "cluster" else "Redis and Kafka"
    with console.status(f"starting {what} ..."):
        timings = services.up(settings)
    for name, seconds in timings.items():
        console.print(f"{name}: " + ("already running" if seconds == 0 else f"ready in {seconds:.1f}s"))
    _status_table(services.status(settings))
    if cluster:
        console.print("Workers and commands use the cluster with [bold]export SHOPSTREAM_PROFILE=cluster[/] "
                      "(or that line in .env).")


@services_app.command("install")
def services_install() -> None:
    """Install redis-server and prometheus with apt if they are missing and fetch the Kafka
    jars with Maven."""
    from shopstream.services import kafka, prometheus, redis

    settings = get_settings()
    console.print(f"redis-server: {redis.install()}")
    console.print(f"prometheus: {prometheus.install()}")
    with console.status(f"resolving Kafka {settings.kafka.version} with mvn ..."):
        console.print(f"kafka jars: {kafka.fetch_jars(settings)}")


@services_app.command("down")
def services_down(cluster: ClusterOption = False) -> None:
    """Stop Kafka and Redis; their data is kept for the next ``up``."""
    from shopstream import services

    for name, was_running in services.down(_profile(cluster)).items():
        console.print(f"{name}: " + ("stopped" if was_running else "was not running"))


@services_app.command("monitor")
def services_monitor(
    ports: Annotated[str, typer.Option(help="Web ports of the workers to scrape, comma-separated "
                                            "(default: SHOPSTREAM_WEB_PORT and the next three).")] = "",
    interval: Annotated[float, typer.Option(help="Seconds between scrapes.")] = 15.0,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the local Prometheus instead.")] = False,
) -> None:
    """Start Debian's Prometheus on loopback (installed with apt if missing) scraping the
    local workers, with shopstream's alert rules (ops/prometheus)."""
    from shopstream.services import prometheus

    settings = get_settings()
    if stop:
        console.print("prometheus: " + ("stopped" if prometheus.stop(settings) else "was not running"))
        return
    scraped = [int(p) for p in ports.split(",") if p.strip()] or [settings.web_port + i for i in range(4)]
    with console.status("starting Prometheus ..."):
        seconds = prometheus.start(settings, scraped, interval_s=interval)
    console.print(f"prometheus: ready in {seconds:.1f}s at {prometheus.url(settings)} "
                  f"(alerts: {prometheus.url(settings)}/alerts), scraping ports {', '.join(map(str, scraped))}")


@services_app.command("status")
def services_status(cluster: ClusterOption = False) -> None:
    """Show each broker and Redis node: whether it runs and answers, and its role (the
    active controller, Redis masters and their slots); exit 1 if one does not answer."""
    from shopstream import services

    rows = services.status(_profile(cluster))
    _status_table(rows)
    if not all(row["answers"] for row in rows):
        raise typer.Exit(1)


def _status_table(rows: list[dict]) -> None:
    table = Table("service", "pid", "address", "role", "answers", "data", "log")
    for row in rows:
        table.add_row(row["service"], str(row["pid"] or "-"), row["address"], row["role"],
                      "[green]yes[/]" if row["answers"] else "[red]no[/]", row["data"], row["log"])
    console.print(table)


@app.command()
def topics() -> None:
    """Create the input, output and dead-letter topics that do not exist yet."""
    from shopstream.topics import ensure_topics

    created = ensure_topics(get_settings())
    console.print(f"created {', '.join(created)}" if created else "all topics exist")


@app.command()
def schema(out: Annotated[Path, typer.Option(help="Folder to write into.")] = Path("schemas")) -> None:
    """Write a JSON Schema for every event, output and the dead letter."""
    from shopstream.schema import write

    for path in write(out):
        console.print(f"wrote {path}")


@app.command()
def worker(
    roles: Annotated[str | None, typer.Option(
        help="What this worker does, comma-separated: features, fraud, recs (default: all; "
             "or SHOPSTREAM_ROLES).")] = None,
    processes: Annotated[int | None, typer.Option(
        min=1, help="Worker processes to run, sharing the partitions (one Python process "
                    "uses one core); process i serves its web pages on SHOPSTREAM_WEB_PORT + i. "
                    "Default: 2 on a machine with two cores or more, else 1.")] = None,
) -> None:
    """Run a stream worker in the foreground (Ctrl-C stops it)."""
    import os

    from shopstream.workers import default_processes

    processes = processes or default_processes()

    if roles is not None:
        os.environ["SHOPSTREAM_ROLES"] = roles  # read when the worker's settings load
        get_settings.cache_clear()
    if processes > 1:
        from shopstream.workers import supervise

        raise typer.Exit(supervise(get_settings(), processes))
    from streams.worker import main as worker_main

    worker_main()


@app.command()
def workers(
    group: Annotated[str | None, typer.Option(
        help="Consumer group (default: the workers' group of SHOPSTREAM_APP_ID and SHOPSTREAM_ROLES).")] = None,
    cluster: ClusterOption = False,
) -> None:
    """Show which worker owns which partition and how far behind each partition is."""
    from shopstream.workers import group_view

    settings = _profile(cluster)
    state, rows = group_view(settings, group)
    table = Table("topic", "partition", "owner", "committed", "end", "lag",
                  title=f"group {group or group_id(settings)}: {state}")
    for row in rows:
        table.add_row(row.topic, str(row.partition), row.owner,
                      f"{row.committed:,}" if row.committed >= 0 else "-", f"{row.end:,}", f"{row.lag:,}")
    console.print(table)
    per_owner: dict[str, list[int]] = {}
    for row in rows:
        per_owner.setdefault(row.owner, []).append(row.lag)
    for owner, lags in sorted(per_owner.items()):
        console.print(f"{owner}: {len(lags)} partitions, lag {sum(lags):,}")


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="How many events to send.")] = 20_000,
    rate: Annotated[float, typer.Option(help="Events per second; 0: as fast as possible.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the simulated shop.")] = 7,
    model: Annotated[bool, typer.Option(help="Replay history and train a fraud model first.")] = True,
) -> None:
    """Stream a simulated shop through a worker, show it live, read features back."""
    from tools import demo as demo_module

    demo_module.run(get_settings(), events=events, rate=rate, seed=seed, console=console,
                    with_model=model)


@app.command()
def simulate(
    events: Annotated[int, typer.Option(help="How many events to send.")] = 100_000,
    rate: Annotated[float, typer.Option(help="Events per second; 0: as fast as possible.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same shop.")] = 7,
    users: Annotated[int, typer.Option(help="Number of regular users.")] = 2_000,
    items: Annotated[int, typer.Option(help="Catalogue size.")] = 5_000,
    sessions_per_hour: Annotated[float, typer.Option(help="New sessions per simulated hour.")] = 3_600,
) -> None:
    """Send a simulated shop's clicks, carts, orders, fraud and late labels to Kafka.

    Event times end about now: the simulation starts as far in the past as its events span.
    """
    from tools.send import send
    from tools.simulator import Shop, SimConfig, default_start

    config = SimConfig(seed=seed, users=users, items=items, sessions_per_hour=sessions_per_hour)
    stream = Shop(config).events(start=default_start(events, config), n=events)
    stats = send(stream, get_settings(), rate=rate, total=events, console=console)
    console.print(f"sent {stats.sent:,}, delivered {stats.delivered:,}, failed {stats.failed:,}")


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="The log: CSV or parquet.")],
    format: Annotated[str, typer.Option("--format", "-f", help="sessions, shop or transactions.")],
    map: Annotated[list[str] | None, typer.Option(
        "--map", help="Column mapping CONTRACT=COLUMN, e.g. --map timestamp=ts (repeatable).")] = None,
    speed: Annotated[float, typer.Option(
        help="Speed factor on event-time gaps; 0: as fast as possible.")] = 0,
    label_delay_days: Annotated[float, typer.Option(
        help="transactions: days between an order and its label.")] = 7.0,
    limit: Annotated[int | None, typer.Option(help="Send only the first N events.")] = None,
    max_backlog: Annotated[int | None, typer.Option(
        help="Pause while the workers have more than N input records left, so that the "
             "topics stay in step in event time (labels after their orders). The workers' "
             "group comes from SHOPSTREAM_APP_ID and SHOPSTREAM_ROLES, as for the workers.")] = None,
) -> None:
    """Replay a real log (session clicks, shop events, card transactions) in event-time order."""
    import itertools

    from tools.replay import parse_mapping, read
    from tools.send import backlog_over, send

    try:
        events = read(file, format, parse_mapping(map or []), label_delay_days=label_delay_days)
        if limit is not None:
            events = itertools.islice(events, limit)
        settings = get_settings()
        hold = backlog_over(settings, max_backlog) if max_backlog is not None else None
        stats = send(events, settings, speed=speed, total=limit, console=console, hold=hold)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    console.print(f"sent {stats.sent:,}, delivered {stats.delivered:,}, failed {stats.failed:,}")


offline_app = typer.Typer(help="The append-only offline log.", no_args_is_help=True)
app.add_typer(offline_app, name="offline")


@offline_app.command("compact")
def offline_compact(
    table: Annotated[str | None, typer.Argument(help="One table; all when omitted.")] = None,
) -> None:
    """Merge each day's small files of the offline log into one file."""
    from shopstream.featurestore import offline_root
    from shopstream.offline import OfflineLog

    log = OfflineLog(offline_root(get_settings()))
    result = Table("table", "files before", "files after", "rows")
    for name in [table] if table else log.tables():
        stats = log.compact(name)
        result.add_row(name, f"{stats.files_before:,}", f"{stats.files_after:,}", f"{stats.rows:,}")
    console.print(result)


@offline_app.command("tables")
def offline_tables() -> None:
    """List the offline log's tables with their files and rows."""
    import pyarrow.parquet as pq

    from shopstream.featurestore import offline_root
    from shopstream.offline import OfflineLog

    log = OfflineLog(offline_root(get_settings()))
    result = Table("table", "files", "rows")
    for name in log.tables():
        files = log.files(name)
        result.add_row(name, f"{len(files):,}", f"{sum(pq.read_metadata(f).num_rows for f in files):,}")
    console.print(result)


@app.command("settings")
def show_settings() -> None:
    """Print the settings in effect, secrets masked."""
    console.print_json(get_settings().model_dump_json())


from shopstream.modelcli import eval_app, models_app, train_app  # noqa: E402 - after the commands above

app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")


def main() -> None:
    """Entry point of the ``shopstream`` script."""
    logging.basicConfig(level=get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "faiss", "feast.infra.registry.registry"):  # a line per call: noise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
