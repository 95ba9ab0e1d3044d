"""Progress that shows anywhere: rich's bar on a terminal, plain lines everywhere else.

Long commands (``eval``, ``train``, ``replay``, ``send``) report progress with
``progress_bar(...)``. On a terminal that is rich's ``Progress``; in a CI log, under
``nohup`` or in a container, where a live bar shows nothing until the end, it is
``PlainProgress``: one line per task every ``every_s`` seconds with the count, the rate
and an estimated finish, and a last line when the task ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import Progress
from rich.text import Text

EVERY_S = 30.0
"""Seconds between two plain progress lines of one task."""


def progress_bar(*columns, console: Console | None = None, every_s: float = EVERY_S, **options):
    """Rich's ``Progress(*columns, **options)`` on a terminal, else a ``PlainProgress``."""
    console = console or Console()
    if console.is_terminal:
        return Progress(*columns, console=console, **options)
    return PlainProgress(every_s=every_s, out=console.file)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    fields: dict = field(default_factory=dict)
    started: float = 0.0
    printed: float = 0.0
    done: bool = False


class PlainProgress:
    """The part of rich's ``Progress`` that shopstream uses (``add_task``, ``update``,
    ``advance``, ``start``, ``stop``, a context manager), printing plain lines.

    >>> import io
    >>> clock, out = iter([0.0, 40.0, 41.0, 60.0]), io.StringIO()
    >>> bar = PlainProgress(every_s=30, out=out, clock=lambda: next(clock))
    >>> with bar:
    ...     task = bar.add_task("[bold]evaluating", total=1000)
    ...     bar.update(task, completed=400)   # 40 s in: a line
    ...     bar.update(task, completed=410)   # 1 s later: none
    ...     bar.update(task, completed=1000)  # finished: a line
    >>> print(out.getvalue(), end="")
    evaluating: 400/1,000 (40%), 10/s, 40s elapsed, about 1m00s left
    evaluating: 1,000/1,000 (100%), 17/s, 1m00s elapsed, done
    """

    def __init__(self, every_s: float = EVERY_S, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.every_s, self.out, self.clock = every_s, out or sys.stdout, clock
        self.tasks: list[_Task] = []

    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        """End every task still running with its last line."""
        for task in self.tasks:
            if not task.done:
                self._print(task, self.clock(), final=True)

    def add_task(self, description: str, total: float | None = None, completed: float = 0,
                 **fields) -> int:
        now = self.clock()
        self.tasks.append(_Task(Text.from_markup(description).plain, total, completed, fields, now, now))
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **fields) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if description is not None:
            task.description = Text.from_markup(description).plain
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        task.fields.update(fields)
        now = self.clock()
        finished = task.total is not None and task.completed >= task.total
        if finished and not task.done:
            self._print(task, now, final=True)
        elif not task.done and now - task.printed >= self.every_s:
            self._print(task, now)

    def _print(self, task: _Task, now: float, final: bool = False) -> None:
        elapsed = now - task.started
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        count = f"{task.completed:,.0f}" + (f"/{task.total:,.0f} ({task.completed / task.total:.0%})"
                                           if task.total else "")
        line = f"{task.description}: {count}, {rate:,.0f}/s, {_duration(elapsed)} elapsed"
        if final:
            line += ", done"
        elif task.total and rate > 0:
            line += f", about {_duration((task.total - task.completed) / rate)} left"
        status = task.fields.get("status")
        print(line + (f", {status}" if status else ""), file=self.out, flush=True)
        task.printed, task.done = now, final


def _duration(seconds: float) -> str:
    """``_duration(75)`` is ``'1m15s'``; ``_duration(3725)`` is ``'1h02m05s'``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
