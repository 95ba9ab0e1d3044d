"""The event contract: what shops send to shopstream and what shopstream sends back.

Every event is a pydantic v2 model with a ``schema_version``. Inputs arrive on the
``shop.*`` topics as UTF-8 JSON; outputs leave on ``scores.fraud``, ``recs.session`` and
``signals.drift``. ``shopstream schema`` writes a JSON Schema per model for shops that
validate in other languages.

Unknown fields are **accepted and kept** (``extra="allow"``): a shop can add a field
before the contract names it without its events being dead-lettered, and the field is
carried through to the offline log. Known fields are validated strictly: a missing or
wrongly typed field, a negative amount or a bad currency code is a dead letter.

Timestamps are timezone-aware UTC. An ISO-8601 string or a number of epoch seconds is
accepted; a naive timestamp is read as UTC.

>>> click = Click(user_id="u1", session_id="s1", item_id="i9", ts=1700000000)
>>> click.ts.isoformat()
'2023-11-14T22:13:20+00:00'
>>> parse_event(Click, b'{"user_id": "u1"}', now=click.ts)
Traceback (most recent call last):
...
shopstream.events.InvalidEvent: schema: 3 validation errors for Click...
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
"""The version of this contract. Events with a higher version are dead-lettered."""


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
IpAddress = Annotated[IPv4Address | IPv6Address, PlainSerializer(str, return_type=str)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]


class Event(BaseModel):
    """Base of every event: a schema version and an event time."""

    model_config = ConfigDict(
        extra="allow",  # unknown fields are kept, see the module docstring
        frozen=True,
        coerce_numbers_to_str=True,  # shops with integer ids need not quote them
        use_attribute_docstrings=True,
    )

    schema_version: int = SCHEMA_VERSION
    """Version of the contract the producer wrote against."""
    ts: Timestamp
    """When it happened (event time), UTC."""

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, version: int) -> int:
        if not 1 <= version <= SCHEMA_VERSION:
            raise ValueError(f"schema_version {version} is not supported (1..{SCHEMA_VERSION})")
        return version

    def to_bytes(self) -> bytes:
        """The event as UTF-8 JSON, as it travels on Kafka."""
        return self.model_dump_json().encode()


# --- inputs ---------------------------------------------------------------------------


class Click(Event):
    """A page view or item click within a session."""

    user_id: Id
    """The shop's user id; anonymous visitors use a stable cookie id."""
    session_id: Id
    """The browsing session."""
    item_id: Id
    """The item viewed."""
    page_type: str = Field("product", max_length=64)
    """Kind of page: product, category, search, home, cart, checkout, ..."""
    device_id: Id | None = None
    """Device fingerprint."""
    ip: IpAddress | None = None
    """Client IP address."""


class CartEvent(Event):
    """An item added to or removed from a cart."""

    user_id: Id
    session_id: Id
    action: Literal["add", "remove"]
    """Whether the item was added or removed."""
    item_id: Id
    qty: int = Field(1, ge=1, le=10_000)
    """Units added or removed."""
    price: Money
    """Unit price, in the shop's currency."""


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="allow", frozen=True, coerce_numbers_to_str=True)

    item_id: Id
    price: Money
    """Unit price."""
    qty: int = Field(1, ge=1, le=10_000)


class Order(Event):
    """A placed order: the event that gets a fraud score."""

    order_id: Id
    user_id: Id
    session_id: Id | None = None
    items: list[OrderItem] = Field(min_length=1, max_length=1_000)
    amount: Money
    """Total charged, after discounts and shipping."""
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    """ISO 4217 code."""
    payment_fingerprint: Id
    """A stable, non-reversible fingerprint of the payment instrument (never the PAN)."""
    device_id: Id | None = None
    ip: IpAddress | None = None
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    """ISO 3166-1 alpha-2 billing or IP country."""
    terminal_id: Id | None = None
    """Merchant or point-of-sale terminal, for marketplaces and card-present sales."""


class OrderLabel(Event):
    """Ground truth that arrives after an order: a fraud confirmation or chargeback.

    ``ts`` is the time the label became known, which is later than the order.
    """

    order_id: Id
    is_fraud: bool
    """Whether the order turned out to be fraudulent."""
    chargeback: bool = False
    """Whether the label came from a chargeback."""
    fraud_type: str | None = Field(None, max_length=64)
    """Kind of fraud when known, for example card_testing or account_takeover."""


# --- outputs --------------------------------------------------------------------------


class Output(Event):
    """Base of every output: which model made it and how long it took."""

    model_version: str
    """Registry version of the model that produced it, or ``rules``/``baseline``."""
    latency_ms: float = Field(ge=0)
    """Time from the input record being consumed to this output being ready."""


class Reason(BaseModel):
    """One feature that pushed a fraud score up."""

    model_config = ConfigDict(frozen=True)

    feature: str
    value: float | str | None = None
    contribution: float = 0.0


class FraudScore(Output):
    """The fraud score of one order."""

    order_id: Id
    user_id: Id
    score: Probability
    """Probability that the order is fraudulent."""
    decision: Literal["allow", "review", "block"]
    reasons: list[Reason] = Field(default_factory=list)
    """The features that pushed the score up most, strongest first."""


class RecommendedItem(BaseModel):
    """One recommended item and its score."""

    model_config = ConfigDict(frozen=True, coerce_numbers_to_str=True)

    item_id: Id
    score: float


class SessionRecs(Output):
    """Recommendations for a session, sent after a click or cart change."""

    session_id: Id
    user_id: Id | None = None
    items: list[RecommendedItem]
    strategy: str
    """Which strategies produced the list, joined by ``+`` in the order they filled it:
    bought_together, sequence, covisit, neighbours, popular (see ``scorers.recommend``)."""
    trigger: Literal["click", "cart"] = "click"
    """What the recommendations answer: a click, or a cart change."""
    session_length: int = Field(0, ge=0)
    """Items the session had viewed when they were made (the prefix length)."""


class DriftSignal(Output):
    """A feature or score distribution that moved away from its reference."""

    subject: str
    """The feature or score that drifted."""
    statistic: str
    """The test used, for example psi or ks."""
    value: float
    threshold: float
    drifted: bool
    window_start: Timestamp
    window_end: Timestamp


class DeadLetter(BaseModel):
    """An input record that could not be processed, with everything needed to replay it.

    Written to ``shop.dlq`` as JSON. ``payload_b64`` holds the original value bytes, so
    nothing is lost even when the value is not JSON at all.
    """

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    schema_version: int = SCHEMA_VERSION
    topic: str
    """Topic the record was read from."""
    partition: int
    offset: int
    key_b64: str | None = None
    """The record key, base64."""
    payload_b64: str
    """The record value exactly as received, base64."""
    payload_bytes: int
    reason: str
    """Short label: empty, too_large, invalid_json, schema, future_ts, processing."""
    error: str
    """The full error message."""
    record_ts: Timestamp | None = None
    """The Kafka record timestamp."""
    failed_at: Timestamp
    """When the worker gave up on it."""
    worker: str
    """The worker (application id and host) that dead-lettered it."""

    @classmethod
    def of(
        cls,
        *,
        value: bytes | None,
        key: bytes | None,
        topic: str,
        partition: int,
        offset: int,
        reason: str,
        error: str,
        failed_at: datetime,
        worker: str,
        record_ts: datetime | None = None,
    ) -> DeadLetter:
        """The dead letter for one record."""
        value = value or b""
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            payload_b64=base64.b64encode(value).decode(),
            payload_bytes=len(value),
            reason=reason,
            error=error[:10_000],  # a pathological error message must not outgrow the record
            record_ts=record_ts,
            failed_at=failed_at,
            worker=worker,
        )

    def payload(self) -> bytes:
        """The original record value."""
        return base64.b64decode(self.payload_b64)


INPUTS: dict[str, type[Event]] = {
    "click": Click,
    "cart": CartEvent,
    "order": Order,
    "order_label": OrderLabel,
}
OUTPUTS: dict[str, type[Output]] = {
    "fraud_score": FraudScore,
    "session_recs": SessionRecs,
    "drift": DriftSignal,
}

# --- decoding -------------------------------------------------------------------------

E = TypeVar("E", bound=Event)


class InvalidEvent(ValueError):
    """Why a record is not a valid event; ``reason`` is a short, countable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_event(
    model: type[E],
    raw: bytes | None,
    *,
    now: datetime,
    max_bytes: int = 1024 * 1024,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> E:
    """Decode and validate one record, or raise ``InvalidEvent`` saying why not.

    The checks run cheapest first: size, then JSON, then the schema, then event time.
    """
    if not raw:
        raise InvalidEvent("empty", "the record has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_json", f"expected a JSON object, got {type(data).__name__}")
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent("schema", str(exc)) from None
    if event.ts > now + max_future_skew:
        raise InvalidEvent(
            "future_ts", f"ts {event.ts.isoformat()} is after {(now + max_future_skew).isoformat()}"
        )
    return event
