"""Prometheus metrics of a worker, served on ``/metrics`` by the Faust web server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_IN = Counter("shopstream_events_in", "Input records consumed.", ["topic"])
EVENTS_OUT = Counter("shopstream_events_out", "Input events processed successfully.", ["topic"])
DEAD_LETTERS = Counter("shopstream_dead_letters", "Input records sent to the dead-letter topic.",
                       ["topic", "reason"])
OUTPUTS = Counter("shopstream_outputs", "Records emitted on output topics.", ["topic"])
CONSUMER_LAG = Gauge("shopstream_consumer_lag",
                     "Records between the committed offset and the end of the partition.",
                     ["topic", "partition"])
