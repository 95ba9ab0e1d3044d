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

from shopstream.settings import get_settings

app = typer.Typer(help=__doc__.split("\n")[0], no_args_is_help=True, add_completion=False)
services_app = typer.Typer(help="Start, stop and inspect the local Kafka and Redis.",
                           no_args_is_help=True)
app.add_typer(services_app, name="services")
console = Console()


@services_app.command("up")
def services_up() -> None:
    """Start Kafka and Redis (if not running), wait until they answer, create the topics."""
    from shopstream import services

    settings = get_settings()
    with console.status("starting Redis and Kafka ..."):
        timings = services.up(settings)
    for name, seconds in timings.items():
        console.print(f"{name}: " + ("already running" if seconds == 0 else f"ready in {seconds:.1f}s"))
    _status_table(services.status(settings))


@services_app.command("install")
def services_install() -> None:
    """Install redis-server with apt if it is missing and fetch the Kafka jars with Maven."""
    from shopstream.services import kafka, redis

    settings = get_settings()
    console.print(f"redis-server: {redis.install()}")
    with console.status(f"resolving Kafka {settings.kafka.version} with mvn ..."):
        console.print(f"kafka jars: {kafka.fetch_jars(settings)}")


@services_app.command("down")
def services_down() -> None:
    """Stop Kafka and Redis; their data is kept for the next ``up``."""
    from shopstream import services

    for name, was_running in services.down(get_settings()).items():
        console.print(f"{name}: " + ("stopped" if was_running else "was not running"))


@services_app.command("status")
def services_status() -> None:
    """Show whether Kafka and Redis run and answer; exit 1 if one does not."""
    from shopstream import services

    rows = services.status(get_settings())
    _status_table(rows)
    if not all(row["answers"] for row in rows):
        raise typer.Exit(1)


def _status_table(rows: list[dict]) -> None:
    table = Table("service", "pid", "address", "answers", "data", "log")
    for row in rows:
        table.add_row(row["service"], str(row["pid"] or "-"), row["address"],
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
def worker() -> None:
    """Run a stream worker in the foreground (Ctrl-C stops it)."""
    from streams.worker import main as worker_main

    worker_main()


@app.command()
def demo(
    events: Annotated[int, typer.Option(help="How many records to send.")] = 5000,
    rate: Annotated[float, typer.Option(help="Records per second; 0: as fast as possible.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the burst.")] = 7,
) -> None:
    """Send a burst of shop events through a worker and show live progress."""
    from shopstream import demo as demo_module

    demo_module.run(get_settings(), events=events, rate=rate, seed=seed, console=console)


@app.command("settings")
def show_settings() -> None:
    """Print the settings in effect, secrets masked."""
    console.print_json(get_settings().model_dump_json())


def main() -> None:
    """Entry point of the ``shopstream`` script."""
    logging.basicConfig(level=get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per scrape is noise
    app()


if __name__ == "__main__":
    main()
