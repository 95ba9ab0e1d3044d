"""Local Kafka and Redis for development, tests and the demo: ``shopstream services``.

``up`` is idempotent: it starts what is not running, waits until Kafka answers metadata
requests and Redis answers PING, and creates the topics. ``down`` stops both; their data
stays under ``<home>`` for the next ``up``. With ``SHOPSTREAM_PROFILE=cluster``
(``services up --cluster``) both are clusters: three brokers and six Redis nodes.
"""

from __future__ import annotations

from shopstream.services import kafka, redis
from shopstream.settings import Settings
from shopstream.topics import ensure_topics


def up(settings: Settings) -> dict[str, float]:
    """Start Redis and Kafka and create the topics; return each start-up time in seconds."""
    timings = {"redis": redis.start(settings), "kafka": kafka.start(settings)}
    ensure_topics(settings)
    (settings.home / "feast").mkdir(parents=True, exist_ok=True)  # the `feast` CLI's registry
    return timings


def down(settings: Settings, *, discard: bool = False) -> dict[str, bool]:
    """Stop Kafka and Redis; return which of them were running. ``discard``: kill them at
    once, for services whose data is thrown away after (the tests'): a broker's graceful
    shutdown can take a minute, and saves data nobody reads again."""
    if discard:
        return {"kafka": any([kafka.stop_node(settings, node, kill=True) for node in kafka.nodes(settings)]),
                "redis": any([redis.stop_node(settings, port, kill=True) for _, port in settings.redis.nodes])}
    return {"kafka": kafka.stop(settings), "redis": redis.stop(settings)}


def status(settings: Settings) -> list[dict]:
    """Status of each service: each broker and each Redis node."""
    return [*kafka.status(settings), *redis.status(settings)]
