"""``shopstream worker`` runs two processes on a machine with two cores or more, one on a
single core, and exactly ``--processes`` when told (``shopstream.workers.default_processes``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shopstream import workers
from shopstream.cli import app as cli


@pytest.mark.parametrize(("cores", "args", "expected"), [(2, [], 2), (8, [], 2), (1, [], 1), (8, ["--processes", "1"], 1),
                                                         (1, ["--processes", "3"], 3)])
def test_the_worker_command_runs_two_processes_where_there_are_two_cores(monkeypatch, cores, args, expected):
    started = []
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(workers, "supervise", lambda settings, processes: started.append(processes) or 0)
    monkeypatch.setattr("streams.worker.main", lambda: started.append(1))
    result = CliRunner().invoke(cli, ["worker", *args])
    assert result.exit_code == 0, result.output
    assert started == [expected]
