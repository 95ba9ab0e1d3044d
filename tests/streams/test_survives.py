"""A worker's timers, start-up tasks and assignment handler survive their own exceptions:
Faust stops the whole worker when one raises (mode's ``Service._execute_task`` and
Faust's ``_on_partitions_assigned`` crash the app)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from types import SimpleNamespace

import pytest

from streams import metrics
from streams.app import app, remember_log_starts, survives


def failures(task: str) -> float:
    return metrics.TASK_FAILURES.labels(task)._value.get()


def test_a_failing_task_is_logged_counted_and_survived(caplog):
    @survives
    async def chore() -> None:
        raise KeyError("a bug in a periodic chore")

    before = failures("chore")
    with caplog.at_level(logging.ERROR, logger="streams.app"):
        assert asyncio.run(chore()) is None
    assert failures("chore") == before + 1
    assert "chore failed; the worker goes on" in caplog.text and "KeyError" in caplog.text


def test_a_cancelled_task_is_still_cancelled():
    @survives
    async def chore() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(chore())


def chain(fun):
    while fun is not None:
        yield fun
        fun = getattr(fun, "__wrapped__", None)


def test_every_timer_and_task_of_the_worker_survives_its_exceptions():
    for role in ("agents", "features", "fraud", "recs", "drift"):
        importlib.import_module(f"streams.{role}")  # each registers its timers and tasks
    surviving = survives(lambda: None).__code__
    tasks = [(inspect_name(task), any(f.__code__ is surviving for f in chain(task))) for task in app._app_tasks]
    assert len(tasks) >= 9 and all(ok for _, ok in tasks), [name for name, ok in tasks if not ok]


def inspect_name(task) -> str:
    *_, innermost = chain(task)
    return f"{innermost.__module__}.{innermost.__qualname__}"


def test_an_assignment_survives_a_broker_too_slow_to_say_where_logs_start(caplog):
    async def earliest_offsets(*tps):
        raise TimeoutError("the broker took too long")

    consumer = SimpleNamespace(earliest_offsets=earliest_offsets)
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        asyncio.run(remember_log_starts(SimpleNamespace(consumer=consumer), {("shop.clicks", 0)}))
    assert "the commit check asks again" in caplog.text
