"""What a running worker owns beside its agents, set up by ``streams.worker.main``.

The ``Runtime`` gives the app its consumer (``streams.commits.Consumer``: commits that
never pass an unprocessed record, after a check of the faust-streaming release it was
tested with) and builds the librdkafka producer that every record is sent through
(``streams.app.send``). The order of a batch's writes (sinks, then states, then offsets)
rests on both: an agent waits for its sends (``streams.app.delivered``) before it
acknowledges the records behind them, and the consumer commits only acknowledged ones.
A process that only imports the agents (a test, a tool) builds neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from shopstream.settings import Settings
from streams import commits
from streams.producer import Producer


@dataclass
class Runtime:
    """The consumer class and the producer of one worker process."""

    settings: Settings
    app: faust.App
    producer: Producer | None = None

    def start(self) -> Runtime:
        """Check the Faust release (``commits.UntestedFaust`` if untested), make the app
        build the guarded consumer, and build the producer (librdkafka connects now, so
        a broker that is away shows before the worker says it is ready)."""
        commits.check_faust_version(allow_untested=self.settings.allow_untested_faust)
        self.app.consumer_class = commits.Consumer
        from streams.app import worker_producer

        self.producer = worker_producer()
        return self
