"""Runs a shopstream worker: every input agent, the web server, the metrics.

Run with ``shopstream worker`` or ``python -m streams.worker``. Start more workers with
the same ``SHOPSTREAM_APP_ID`` to share the partitions.
"""

from __future__ import annotations

import faust

from shopstream.topics import ensure_topics
from streams import agents  # noqa: F401 - registers the agents
from streams.app import app, settings


def main() -> None:
    """Start a worker in the foreground until interrupted."""
    ensure_topics(settings)
    app.conf.datadir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
