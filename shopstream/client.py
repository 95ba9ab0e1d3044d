"""Clients for the two sides of shopstream: shops that produce events, and downstream
services that consume scores, recommendations and drift signals.

A shop's back end sends events with ``ShopProducer``::

    from shopstream.client import ShopProducer
    from shopstream.events import Click

    with ShopProducer() as producer:
        producer.send(Click(user_id="u1", session_id="s1", item_id="i9", ts=now))

Events are validated before they leave, keyed so that one session's (or one user's)
events stay in order on one partition, and their delivery is reported. A downstream
service reads typed outputs with ``OutputConsumer``::

    from shopstream.client import OutputConsumer

    for score in OutputConsumer(group_id="checkout", kinds=["fraud_score"]):
        if score.decision == "block": ...
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer

from shopstream.events import (
    OUTPUTS,
    CartEvent,
    Click,
    Event,
    Order,
    OrderLabel,
    Output,
)
from shopstream.settings import Settings, get_settings

log = logging.getLogger(__name__)


def event_key(event: Event) -> str:
    """The partition key of an input event.

    Clicks and cart changes are keyed by session, so a session's events stay in order;
    orders by user, so a user's order history does; labels by order.
    """
    match event:
        case Click() | CartEvent():
            return event.session_id
        case Order():
            return event.user_id
        case OrderLabel():
            return event.order_id
    raise TypeError(f"{type(event).__name__} is not an input event")


@dataclass
class DeliveryStats:
    """Counts of delivery reports received so far."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class ShopProducer:
    """Validating, keyed producer of shop events (clicks, carts, orders, labels).

    Parameters
    ----------
    settings
        Where the brokers and topics are; ``get_settings()`` when omitted.
    on_delivery
        Called with ``(error, message)`` for every delivery report, after the counts in
        ``stats`` are updated.
    config
        Extra librdkafka settings, for example ``{"linger.ms": 20}``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        config: dict[str, Any] | None = None,
    ):
        self.settings = settings or get_settings()
        self.on_delivery = on_delivery
        self.stats = DeliveryStats()
        self._topics = {
            Click: self.settings.topics.clicks,
            CartEvent: self.settings.topics.carts,
            Order: self.settings.topics.orders,
            OrderLabel: self.settings.topics.order_labels,
        }
        self._producer = Producer(
            {
                **self.settings.kafka.client_config(),
                "enable.idempotence": True,  # no duplicates or reordering on retries
                "linger.ms": 5,
                "message.max.bytes": self.settings.kafka.max_message_bytes,
                **(config or {}),
            }
        )

    def send(self, event: Event) -> None:
        """Validate ``event`` and queue it for its topic; raise if it is invalid."""
        event = type(event).model_validate(event.model_dump())  # catches model_construct()
        topic = self._topics.get(type(event))
        if topic is None:
            raise TypeError(f"{type(event).__name__} is not a shop event")
        self.send_raw(topic, event.to_bytes(), key=event_key(event).encode())

    def send_raw(self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None,
                 timestamp_ms: int | None = None) -> None:
        """Queue bytes as they are, unvalidated: for replays and tests of bad input. By
        default the partition is the key's and the record is stamped now."""
        placed = {} if partition is None else {"partition": partition}
        if timestamp_ms is not None:
            placed["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._delivered, **placed)
                break
            except BufferError:  # the local queue is full: wait for deliveries, then retry
                self._producer.poll(0.1)
        self.stats.sent += 1
        self._producer.poll(0)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            self.stats.errors.append(str(error))
            log.warning("delivery to %s failed: %s", message.topic(), error)
        if self.on_delivery is not None:
            self.on_delivery(error, message)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding deliveries; return how many are still undelivered."""
        return self._producer.flush(timeout)

    def close(self) -> None:
        """Flush, and raise if anything could not be delivered."""
        remaining = self.flush()
        if remaining:
            raise RuntimeError(f"{remaining} events were not delivered before the timeout")

    def __enter__(self) -> ShopProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class OutputConsumer:
    """Typed consumer of shopstream's outputs, for downstream services.

    Parameters
    ----------
    group_id
        The consumer group of the downstream service.
    kinds
        Which outputs to read: ``fraud_score``, ``session_recs`` and/or ``drift``.
    from_beginning
        Start at the earliest offset when the group has no committed offset yet.
    """

    def __init__(
        self,
        group_id: str,
        kinds: Iterable[str] = ("fraud_score",),
        settings: Settings | None = None,
        *,
        from_beginning: bool = False,
        config: dict[str, Any] | None = None,
    ):
        self.settings = settings or get_settings()
        topics = self.settings.topics.outputs()
        unknown = set(kinds) - set(topics)
        if unknown:
            raise ValueError(f"unknown output kinds {sorted(unknown)}; choose from {sorted(topics)}")
        self._models = {topics[kind]: OUTPUTS[kind] for kind in kinds}
        self._consumer = Consumer(
            {
                **self.settings.kafka.client_config(),
                "group.id": group_id,
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                **(config or {}),
            }
        )
        self._consumer.subscribe(list(self._models))

    def poll(self, timeout: float = 1.0) -> Output | None:
        """The next output, or ``None`` if none arrived within ``timeout`` seconds."""
        message = self._consumer.poll(timeout)
        if message is None:
            return None
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                return None
            raise RuntimeError(str(message.error()))
        return self._models[message.topic()].model_validate_json(message.value())

    def __iter__(self) -> Iterator[Output]:
        while True:
            output = self.poll()
            if output is not None:
                yield output

    def close(self) -> None:
        """Commit and leave the group."""
        self._consumer.close()

    def __enter__(self) -> OutputConsumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
