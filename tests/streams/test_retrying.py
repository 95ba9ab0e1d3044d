"""Sink writes: what is retried, for how long, and what is not."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from streams import app as streams_app
from streams.app import retryable, retrying


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (OSError(28, "No space left on device"), True),
        (redis.exceptions.ConnectionError(), True),
        (redis.exceptions.TimeoutError(), True),
        (redis.exceptions.BusyLoadingError(), True),
        (redis.exceptions.AuthenticationError(), False),  # a ConnectionError, but it will not pass
        (redis.exceptions.ResponseError("WRONGTYPE"), False),
        (redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."), True),
        (redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's "
                                        "currently unable to persist to disk."), True),
        (redis.exceptions.ResponseError("Command # 1 (HSET k f v) of pipeline caused error: MISCONF "
                                        "Redis is configured to save RDB snapshots"), True),
        (ValueError("bad row"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
    ],
)
def test_only_errors_that_can_pass_are_retried(error, expected):
    assert retryable(error) is expected


def test_an_error_that_cannot_pass_is_raised_at_once():
    calls = []

    def write():
        calls.append(1)
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        asyncio.run(retrying("offline", write))
    assert calls == [1]


def test_a_passing_outage_is_waited_out_and_marks_the_sink_down_meanwhile():
    calls, seen_down = [], []

    def write():
        calls.append(1)
        seen_down.append("online" in streams_app.sinks_down)
        if len(calls) < 3:
            raise redis.exceptions.ConnectionError("refused")
        return "written"

    assert asyncio.run(retrying("online", write)) == "written"
    assert len(calls) == 3 and seen_down == [False, True, True]
    assert "online" not in streams_app.sinks_down


def test_an_outage_longer_than_the_bound_stops_the_worker(monkeypatch):
    monkeypatch.setattr(streams_app.settings, "sink_retry_s", 0.3)

    class Stopped(Exception):
        pass

    def give_up(sink, exc):
        raise Stopped(sink)

    monkeypatch.setattr(streams_app, "give_up", give_up)

    def write():
        raise TimeoutError("no answer")

    with pytest.raises(Stopped, match="online"):
        asyncio.run(retrying("online", write))
    streams_app.sinks_down.clear()
