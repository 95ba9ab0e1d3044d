"""Progress that shows anywhere (issue 19): a bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from shopstream.progress import PlainProgress, progress_bar


def test_a_log_gets_plain_lines_with_rate_and_finish_and_a_terminal_gets_the_bar():
    log = io.StringIO()
    bar = progress_bar(console=Console(file=log), every_s=0)  # not a terminal: a file
    assert isinstance(bar, PlainProgress)
    with bar:
        task = bar.add_task("[bold]replaying", total=10)
        for _ in range(4):
            bar.advance(task)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("replaying: 1/10 (10%), ") and "/s, " in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("replaying: 4/10 (40%)") and lines[-1].endswith("done")  # stopped early
    assert isinstance(progress_bar(console=Console(file=io.StringIO(), force_terminal=True)), Progress)


def test_a_task_without_a_total_counts_and_reports_its_status():
    log = io.StringIO()
    with PlainProgress(every_s=0, out=log) as bar:
        task = bar.add_task("training", status="")
        bar.update(task, advance=250, status="epoch 1 loss=0.5")
    assert log.getvalue().splitlines()[0].startswith("training: 250, ")
    assert log.getvalue().splitlines()[0].endswith("epoch 1 loss=0.5")
