"""Runs a shopstream worker: the agents of its roles, the web server, the metrics.

Run with ``shopstream worker`` or ``python -m streams.worker``. Start more workers with
the same ``SHOPSTREAM_APP_ID`` to share the partitions. ``SHOPSTREAM_ROLES`` picks what
a worker does (``features``, ``fraud``, ``recs``, ``drift``; all by default): scoring workers apart
from feature workers answer orders without queueing behind feature updates.
"""

from __future__ import annotations

import gc
import importlib
import sys

import faust

from shopstream.topics import ensure_topics, partition_problems
from streams import agents
from streams.app import (
    EXIT_PARTITIONS,
    app,
    internal_topics,
    keyed_topics,
    prepare,
    refuse_partitions,
    settings,
)
from streams.commits import UntestedFaust
from streams.runtime import Runtime


def register(roles) -> None:
    """Register the agents of ``roles`` with the app."""
    if "features" in roles:
        agents.register()
        from streams.features import online_writer

        if settings.features.online:
            prepare("online_writer", online_writer)
    for role in ("fraud", "recs", "drift"):
        if role in roles:
            importlib.import_module(f"streams.{role}")  # its agents register on import


def tune_gc(threshold: int) -> None:
    """Collect cycles less often (``Settings.gc_threshold``): states are freed by reference
    counting when they expire; the cycle collector only needs to run now and then.

    >>> before = gc.get_threshold()
    >>> tune_gc(50_000); gc.get_threshold()[0]
    50000
    >>> gc.set_threshold(*before)
    """
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


def main() -> None:
    """Start a worker in the foreground until interrupted."""
    tune_gc(settings.gc_threshold)
    ensure_topics(settings)
    ensure_topics(settings, internal_topics(settings))
    if problems := partition_problems(settings, keyed_topics(settings)):
        refuse_partitions(problems)
    register(settings.roles)
    try:
        Runtime(settings, app).start()
    except UntestedFaust as exc:
        print(f"refusing to run: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_PARTITIONS) from exc
    if settings.internal_key is None:
        print("shopstream: internal records are signed with the development key; set "
              "SHOPSTREAM_INTERNAL_KEY (docs/operations.md, \"Trust boundary\")", file=sys.stderr, flush=True)
    app.conf.datadir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
