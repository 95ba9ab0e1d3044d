"""Runs a shopstream worker: every input agent, the web server, the metrics.

Run with ``shopstream worker`` or ``python -m streams.worker``. Start more workers with
the same ``SHOPSTREAM_APP_ID`` to share the partitions.
"""

from __future__ import annotations

import faust

from shopstream.topics import ensure_topics
from streams import agents, fraud, recs  # noqa: F401 - registers the input, fraud and recs agents
from streams.app import app, settings, updates_topic_name
from streams.features import online_writer


def main() -> None:
    """Start a worker in the foreground until interrupted."""
    ensure_topics(settings)
    ensure_topics(settings, [updates_topic_name(settings)])
    app.conf.datadir.mkdir(parents=True, exist_ok=True)
    if settings.features.online:
        online_writer()  # registers the Feast definitions before the first batch arrives
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
