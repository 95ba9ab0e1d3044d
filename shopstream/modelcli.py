"""The model commands of the ``shopstream`` CLI: train, models and eval.

Kept apart from ``shopstream.cli`` so that the event-side commands start without
importing torch or MLflow.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shopstream.settings import get_settings

console = Console()
train_app = typer.Typer(help="Train models from the offline store (batch jobs).", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: list, promote, roll back.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the whole system on a labelled log.", no_args_is_help=True)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def seconds(duration: str) -> float:
    """``"24h"`` -> 86400.0; plain numbers are seconds.

    >>> seconds("24h"), seconds("90s"), seconds("1.5d"), seconds("30")
    (86400.0, 90.0, 129600.0, 30.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", duration)
    if not match:
        raise typer.BadParameter(f"expected a duration such as 30m, 24h or 7d, got {duration!r}")
    return float(match[1]) * UNITS[match[2] or "s"]


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"expected a date such as 2018-06-14, got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@train_app.command("fraud")
def train_fraud(
    days: Annotated[float, typer.Option(help="Training window in days, validation included.")] = 28.0,
    valid_days: Annotated[float, typer.Option(help="Last days of the window that validate.")] = 4.0,
    delay_days: Annotated[float, typer.Option(help="Label delay: the window ends this long before "
                                                   "the newest label.")] = 7.0,
    labels_as_of: Annotated[str | None, typer.Option(help="Use labels known at this time "
                                                          "(default: the newest).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = 20,
    negatives: Annotated[float, typer.Option(help="Share of genuine orders kept.")] = 1.0,
    force: Annotated[bool, typer.Option(help="Promote to champion even if it does not win.")] = False,
    every: Annotated[str | None, typer.Option(help="Retrain on this schedule, e.g. 24h.")] = None,
    output: Annotated[Path | None, typer.Option(help="Folder for the checkpoint and plots.")] = None,
) -> None:
    """Train the fraud model, register it, and promote it if it beats the champion."""
    from trainers.fraud import FraudTrainConfig, train_and_register
    from trainers.loop import LoopConfig

    config = FraudTrainConfig(days=days, valid_days=valid_days, delay_days=delay_days,
                              negatives=negatives, loop=LoopConfig(epochs=epochs))
    interval = seconds(every) if every else None
    while True:
        started = time.monotonic()
        try:
            result = train_and_register(get_settings(), config, labels_as_of=_date(labels_as_of),
                                        force=force, output=output)
        except (ValueError, FileNotFoundError) as exc:
            if interval is None:
                raise typer.BadParameter(str(exc)) from exc
            console.print(f"[yellow]not trained this time:[/] {exc}")
        else:
            _print_result(result)
        if interval is None:
            return
        wait = max(interval - (time.monotonic() - started), 0)
        console.print(f"next training in {wait / 3600:.1f} h")
        time.sleep(wait)


def _print_result(result) -> None:
    table = Table(title=f"fraud model version {result.version.version}")
    for column in ("", "AUC", "AP", "card precision@100", "calibration error"):
        table.add_column(column)
    rows = [("new", result.metrics)] + ([("champion", result.champion_metrics)] if result.champion_metrics else [])
    for name, m in rows:
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in ("auc", "ap", "cp100", "ece")))
    console.print(table)
    console.print(f"trained on {result.n_train:,} orders, validated on {result.n_valid:,}; "
                  f"plots: {', '.join(str(p) for p in result.plots)}")
    console.print("[green]promoted to champion[/]" if result.promoted
                  else "[yellow]kept the current champion: the new version did not beat it[/]")


@models_app.command("list")
def models_list() -> None:
    """Every registered version with its metrics and aliases."""
    from trainers.registry import Registry

    registry = Registry(get_settings())
    table = Table(title=registry.name)
    for column in ("version", "aliases", "AUC", "AP", "CP@100", "training window", "rows", "created"):
        table.add_column(column)
    for v in registry.versions():
        table.add_row(v.version, ",".join(v.aliases), *(f"{v.metrics.get(k, float('nan')):.4f}"
                                                        for k in ("auc", "ap", "cp100")),
                      f"{v.tags.get('train_start', '')[:10]}..{v.tags.get('train_end', '')[:10]}",
                      v.tags.get("n_rows", ""),
                      datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@models_app.command("promote")
def models_promote(version: Annotated[str, typer.Argument(help="The version to make champion.")]) -> None:
    """Make a version the champion; workers switch to it within ``scoring.reload_s``."""
    from mlflow.exceptions import MlflowException

    from trainers.registry import Registry

    registry = Registry(get_settings())
    try:
        registry.promote(version)
    except MlflowException as exc:
        raise typer.BadParameter(f"{registry.name} has no version {version!r}") from exc
    console.print(f"version {version} is the champion")


@models_app.command("rollback")
def models_rollback() -> None:
    """Make the previous champion the champion again."""
    from trainers.registry import Registry

    try:
        version = Registry(get_settings()).rollback()
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"rolled back: version {version} is the champion")


@eval_app.command("fraud")
def eval_fraud(
    transactions: Annotated[Path, typer.Option(help="Labelled transactions (parquet or CSV) with "
                                                    "TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, "
                                                    "TERMINAL_ID, TX_AMOUNT, TX_FRAUD.")],
    history_start: Annotated[str, typer.Option(help="First day replayed.")],
    train_end: Annotated[str, typer.Option(help="End of the training window.")],
    test_start: Annotated[str, typer.Option(help="First day scored.")],
    test_end: Annotated[str, typer.Option(help="End of the test window (exclusive).")],
    delay_days: Annotated[float, typer.Option(help="Label delay in days.")] = 7.0,
    train_days: Annotated[float, typer.Option(help="Training window length in days.")] = 21.0,
    rate: Annotated[float, typer.Option(help="Events/s at which the test window is replayed.")] = 500.0,
    epochs: Annotated[int, typer.Option(help="Most training epochs.")] = 20,
    redis_db: Annotated[int, typer.Option(help="Redis database for this run (emptied first).")] = 15,
    output: Annotated[Path, typer.Option(help="Folder for metrics.json, scores.parquet, plots.")] = Path(
        "eval-fraud"),
) -> None:
    """Run the whole system on a labelled log and compare with LR, GBM and published results."""
    from trainers.evaluate_fraud import EvalWindow, run

    if not transactions.exists():
        raise typer.BadParameter(f"{transactions} does not exist")
    window = EvalWindow(_date(history_start), _date(train_end), _date(test_start), _date(test_end),
                        delay_days=delay_days, train_days=train_days)
    if not window.history_start < window.train_end < window.test_start < window.test_end:
        raise typer.BadParameter("expected history start < train end < test start < test end")
    run(get_settings(), transactions, window, output, rate=rate, epochs=epochs, redis_db=redis_db,
        console=console)
