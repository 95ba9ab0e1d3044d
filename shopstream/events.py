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

Hostile input is bounded before it is trusted (``parse_event``): the record's size, the
nesting depth of its JSON, the length of every string (unknown fields included), text
that cannot be written as UTF-8 (lone surrogates), amounts (``MAX_MONEY``), quantities,
the items of an order, and the event time on both sides. Booleans are strict: ``"yes"``
or ``1`` is not ``true``.

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
import functools
import hashlib
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
"""The version of this contract. Events with a higher version are dead-lettered."""


def _as_utc(ts: datetime) -> datetime:
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ValueError(f"{ts.isoformat()} is out of range in UTC") from None


MAX_MONEY = 1e9
"""The largest amount or price an event may carry: larger ones are typing errors or
attacks, and their squares overflow the features' float sums."""


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
Id = Annotated[str, Field(min_length=1, max_length=256)]
IpAddress = Annotated[IPv4Address | IPv6Address, PlainSerializer(str, return_type=str)]
Money = Annotated[float, Field(ge=0, le=MAX_MONEY, allow_inf_nan=False)]
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
    is_fraud: StrictBool
    """Whether the order turned out to be fraudulent."""
    chargeback: StrictBool = False
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


class Answer(Output):
    """Base of the answers to shop events, which a champion or a challenger gives."""

    variant: Literal["champion", "challenger", "shadow", "interleaved"] = "champion"
    """Who answered: the champion; the challenger of an A/B split; a shadow challenger (on
    the shadow topics only); or a list interleaved from both (``scorers.challenge``)."""


class Reason(BaseModel):
    """One feature that pushed a fraud score up."""

    model_config = ConfigDict(frozen=True)

    feature: str
    value: float | str | None = None
    contribution: float = 0.0


class FraudScore(Answer):
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


class SessionRecs(Answer):
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
    origin: str | None = None
    """``topic:partition:offset`` of the click or cart change answered: the key on which a
    consumer deduplicates, since a record can be answered twice after a crash."""
    teams: list[Literal["champion", "challenger"]] | None = None
    """For an interleaved list (``variant`` interleaved): whose list each item came from,
    item by item; the session's next click credits that model (``scorers.interleave``)."""


class DriftSignal(Output):
    """A stream the serving model sees that moved away from the model's own reference (the
    profile saved with it), or whose errors rose. Keyed on Kafka by ``key()``: model,
    stream and subject.

    >>> signal = DriftSignal(signal_id="s1", model="shopstream-fraud", model_version="3", stream="fraud",
    ...                      subject="order_amount", detector="windowed_distance", statistic="psi",
    ...                      value=0.31, threshold=0.25, n=1000, severity="drift", latency_ms=0,
    ...                      window_start=0, window_end=3600, ts=3600)
    >>> signal.key(), signal.drifted
    ('shopstream-fraud:fraud:order_amount', True)
    """

    signal_id: Id
    model: Id
    """Registered model name; ``model_version`` is the version whose reference was used."""
    stream: Literal["fraud", "recs"]
    subject: Id
    """What moved: a model input's name, ``score``, ``block_rate``, ``review_rate``,
    ``error``, ``estimated_precision``, ``estimated_recall``, ``pca_error``, ``hit_rate``,
    ``strategy:<name>``, ``popularity`` or ``unseen_items``."""
    segment: str = "all"
    detector: str
    """``adwin``, ``page_hinkley``, ``calibrated_ks``, ``windowed_distance``, ..."""
    params: dict[str, float | int | str] = Field(default_factory=dict)
    """The detector's parameters (delta, window, ERT, ...)."""
    statistic: str
    """What was measured, for example ``psi``, ``jensen_shannon``, ``ks`` or ``mean_change``."""
    value: float
    threshold: float
    ert: float | None = None
    """Expected values between false alarms on an unchanged stream, for calibrated tests."""
    p_value: float | None = None
    direction: Literal["up", "down", "both"] | None = None
    n: int = Field(ge=0)
    """Values in the window tested."""
    n_reference: int | None = None
    label_coverage: float | None = Field(default=None, ge=0, le=1)
    """For error subjects: the share of the window's orders with a label."""
    severity: Literal["warn", "drift"]
    window_start: Timestamp
    """Event time of the first value in the window tested."""
    window_end: Timestamp

    @property
    def drifted(self) -> bool:
        """Whether it is a drift, not a warning."""
        return self.severity == "drift"

    def key(self) -> str:
        """The Kafka key: ``model:stream:subject``."""
        return f"{self.model}:{self.stream}:{self.subject}"


KEY_KEPT = 1024
"""Bytes of a record key that a dead letter keeps (in ``key_b64`` and as its own key)."""
ERROR_KEPT = 10_000
"""Characters of an error message that a dead letter keeps."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _record_time(ms: int | None) -> datetime | None:
    """The datetime of a Kafka record timestamp, or None: none set, or none a datetime can
    hold (a producer may stamp any 64-bit number of milliseconds)."""
    if ms is None or ms < 0:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class DeadLetter(BaseModel):
    """An input record that could not be processed, with everything needed to replay it.

    Written to ``shop.dlq`` as JSON. ``payload_b64`` holds the original value bytes, so
    nothing is lost even when the value is not JSON at all. Whatever the size of the
    record, its dead letter fits in one Kafka record: a key over ``KEY_KEPT`` bytes and a
    value too large for the room left keep their first bytes, are marked truncated, and
    are still identified by their sizes and SHA-256 digests.

    >>> letter = DeadLetter.of(value=b"x" * 10_000, key=None, topic="t", partition=0, offset=7,
    ...                        reason="schema", error="bad", failed_at=MIN_TS, worker="w",
    ...                        max_bytes=1000)
    >>> letter.truncated, len(letter.payload()) < 1000, letter.payload_bytes
    (True, True, 10000)
    """

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    schema_version: int = SCHEMA_VERSION
    topic: str
    """Topic the record was read from."""
    partition: int
    offset: int
    key_b64: str | None = None
    """The record key, base64 (its first ``KEY_KEPT`` bytes when ``key_truncated``)."""
    key_bytes: int | None = None
    """Size of the whole original key (None: the record had no key)."""
    key_sha256: str | None = None
    """SHA-256 of the whole original key, hex."""
    key_truncated: bool = False
    """Whether ``key_b64`` holds only the first bytes of the key."""
    payload_b64: str
    """The record value exactly as received, base64 (its first bytes when ``truncated``)."""
    payload_bytes: int
    """Size of the whole original value."""
    payload_sha256: str | None = None
    """SHA-256 of the whole original value, hex."""
    truncated: bool = False
    """Whether ``payload_b64`` holds only the first bytes of the value."""
    reason: str
    """Short label: empty, too_large, too_deep, invalid_json, schema, future_ts, past_ts,
    bad_update, unsigned (an internal record without a valid signature), processing (an
    unexpected error while handling a valid event)."""
    error: str
    """The error message (its first ``ERROR_KEPT`` characters)."""
    exception: str | None = None
    """Type of the exception that stopped the record, for example ``OverflowError``."""
    record_ts: Timestamp | None = None
    """The Kafka record timestamp (None when it has none, or one no datetime can hold)."""
    record_ts_ms: int | None = None
    """The Kafka record timestamp as the producer set it, in epoch milliseconds."""
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
        record_ts_ms: int | None = None,
        exception: str | None = None,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> DeadLetter:
        """The dead letter for one record, whose JSON and ``record_key`` together take at
        most ``max_bytes``: the value keeps the room that the rest leaves."""
        value = value or b""
        kept_key = None if key is None else key[:KEY_KEPT]
        letter = cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=_b64(kept_key),
            key_bytes=None if key is None else len(key),
            key_sha256=None if key is None else hashlib.sha256(key).hexdigest(),
            key_truncated=key is not None and len(kept_key) < len(key),
            payload_b64="",
            payload_bytes=len(value),
            payload_sha256=hashlib.sha256(value).hexdigest(),
            truncated=False,  # "false" is longer than "true": the room left counts it
            reason=reason,
            error=error[:ERROR_KEPT],
            exception=exception,
            record_ts=_record_time(record_ts_ms),
            record_ts_ms=record_ts_ms,
            failed_at=failed_at,
            worker=worker,
        )
        room = max_bytes - len(letter.model_dump_json()) - len(kept_key or b"")
        kept = value[:max(0, room) // 4 * 3]  # base64: 4 characters per 3 bytes
        return letter.model_copy(update={"payload_b64": _b64(kept), "truncated": len(kept) < len(value)})

    def payload(self) -> bytes:
        """The original record value (its first bytes when ``truncated``)."""
        return base64.b64decode(self.payload_b64)

    def key(self) -> bytes | None:
        """The original record key (its first bytes when ``key_truncated``)."""
        return None if self.key_b64 is None else base64.b64decode(self.key_b64)

    def record_key(self) -> bytes | None:
        """The key of the dead letter's own Kafka record: the original record's key, cut
        to ``KEY_KEPT`` bytes, so that a record's letters share a partition."""
        return self.key()


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
    "fraud_shadow": FraudScore,
    "recs_shadow": SessionRecs,
}

# --- decoding -------------------------------------------------------------------------

E = TypeVar("E", bound=Event)


class InvalidEvent(ValueError):
    """Why a record is not a valid event; ``reason`` is a short, countable label."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


MIN_TS = datetime(2000, 1, 1, tzinfo=UTC)
"""The default earliest event time: older events are clock or typing errors."""


def _check_tree(value: object, *, max_depth: int, max_string: int, depth: int = 1) -> None:
    """Raise ``InvalidEvent`` if decoded JSON nests deeper than ``max_depth``, holds a
    string (or key) longer than ``max_string`` characters, or text that is not valid
    Unicode (a lone surrogate such as ``"\\ud800"``, which JSON allows and UTF-8 does not)."""
    if depth > max_depth:
        raise InvalidEvent("too_deep", f"the JSON nests deeper than {max_depth} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_tree(key, max_depth=max_depth, max_string=max_string, depth=depth)
            _check_tree(item, max_depth=max_depth, max_string=max_string, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_tree(item, max_depth=max_depth, max_string=max_string, depth=depth + 1)
    elif isinstance(value, str):
        if len(value) > max_string:
            raise InvalidEvent("too_large", f"a string of {len(value)} characters is over the "
                                            f"{max_string}-character limit")
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise InvalidEvent("invalid_json", f"text that is not valid Unicode: {exc}") from None


def parse_event(
    model: type[E],
    raw: bytes | None,
    *,
    now: datetime,
    max_bytes: int = 1024 * 1024,
    max_future_skew: timedelta = timedelta(minutes=5),
    min_ts: datetime = MIN_TS,
    max_depth: int = 8,
    max_string: int = 4096,
) -> E:
    """Decode and validate one record, or raise ``InvalidEvent`` saying why not.

    The checks run cheapest first: size, then JSON (its depth, strings and text), then
    the schema, then event time. Whatever the bytes, the only exception raised is
    ``InvalidEvent``. Workers use ``parse_events``, which does the same for a batch.

    >>> parse_event(Click, b'{"user_id": "u", "session_id": "s", "item_id": "i",'
    ...             b' "ts": "0001-01-01T00:00:00+01:00"}', now=MIN_TS)
    Traceback (most recent call last):
    ...
    shopstream.events.InvalidEvent: schema: 1 validation error for Click...
    >>> parse_event(Click, b'{"a": ' * 1500 + b'1' + b'}' * 1500, now=MIN_TS)
    Traceback (most recent call last):
    ...
    shopstream.events.InvalidEvent: too_deep: ...
    """
    (result,) = parse_events(model, [raw], now=now, max_bytes=max_bytes,
                             max_future_skew=max_future_skew, min_ts=min_ts,
                             max_depth=max_depth, max_string=max_string)
    if isinstance(result, InvalidEvent):
        raise result
    return result


def parse_events(
    model: type[E],
    raws: list[bytes | None],
    *,
    now: datetime,
    max_bytes: int = 1024 * 1024,
    max_future_skew: timedelta = timedelta(minutes=5),
    min_ts: datetime = MIN_TS,
    max_depth: int = 8,
    max_string: int = 4096,
) -> list[E | InvalidEvent]:
    """Decode and validate a batch of records: for each, its event or the ``InvalidEvent``
    that says why it has none (returned, not raised).

    JSON is read with orjson (stricter than the standard library: no ``NaN``, no lone
    surrogates) and the whole batch is validated in one call of a compiled pydantic
    ``TypeAdapter``; only a batch that holds an invalid event is validated again record by
    record, to tell which.

    >>> raws = [b'{"user_id": "u", "session_id": "s", "item_id": "i", "ts": 60}', b"{"]
    >>> [type(r).__name__ for r in parse_events(Click, raws, now=MIN_TS.replace(year=2030))]
    ['InvalidEvent', 'InvalidEvent']
    >>> [getattr(r, "reason", None) for r in parse_events(Click, raws, now=MIN_TS, min_ts=datetime(1970, 1, 1, tzinfo=UTC))]
    [None, 'invalid_json']
    """
    results: list[E | InvalidEvent | None] = [None] * len(raws)
    decoded, where = [], []
    for i, raw in enumerate(raws):
        try:
            decoded.append(_decode(raw, max_bytes, max_depth, max_string))
        except InvalidEvent as exc:
            results[i] = exc
        else:
            where.append(i)
    try:
        events = _batch_adapter(model).validate_python(decoded)
    except Exception:  # noqa: BLE001 - some record is invalid: find which, one by one
        events = [_validate(model, data) for data in decoded]
    latest, earliest = now + max_future_skew, min_ts
    for i, event in zip(where, events, strict=True):
        if isinstance(event, Event) and event.ts > latest:
            event = InvalidEvent("future_ts", f"ts {event.ts.isoformat()} is after {latest.isoformat()}")
        elif isinstance(event, Event) and event.ts < earliest:
            event = InvalidEvent("past_ts", f"ts {event.ts.isoformat()} is before {earliest.isoformat()}")
        results[i] = event
    return results


@functools.cache
def _batch_adapter(model: type[E]) -> TypeAdapter:
    return TypeAdapter(list[model])


def _decode(raw: bytes | None, max_bytes: int, max_depth: int, max_string: int) -> dict:
    """The JSON object in ``raw``, or ``InvalidEvent``."""
    if not raw:
        raise InvalidEvent("empty", "the record has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"{len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded") or "recursion" in str(exc):
            raise InvalidEvent("too_deep", f"the JSON nests deeper than {max_depth} levels") from None
        raise InvalidEvent("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise InvalidEvent("invalid_json", f"expected a JSON object, got {type(data).__name__}")
    # No string can be longer than the record, nor nest deeper than its brackets: most
    # records need no walk of their tree.
    if len(raw) > max_string or raw.count(b"{") + raw.count(b"[") > max_depth:
        _check_tree(data, max_depth=max_depth, max_string=max_string)
    return data


def _validate(model: type[E], data: dict) -> E | InvalidEvent:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return InvalidEvent("schema", str(exc))
    except Exception as exc:  # noqa: BLE001 - a validator bug must not escape as anything else
        return InvalidEvent("schema", f"{type(exc).__name__}: {exc}")
