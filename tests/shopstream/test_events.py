"""The event contract: what is accepted, what is dead-lettered, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shopstream.client import event_key
from shopstream.events import (
    INPUTS,
    OUTPUTS,
    CartEvent,
    Click,
    DeadLetter,
    FraudScore,
    InvalidEvent,
    Order,
    OrderLabel,
    parse_event,
    parse_events,
)
from shopstream.schema import schemas

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ORDER = {
    "order_id": "o1", "user_id": "u1", "session_id": "s1",
    "items": [{"item_id": "i1", "price": 10.0, "qty": 2}], "amount": 20.0, "currency": "EUR",
    "payment_fingerprint": "pf1", "device_id": "d1", "ip": "192.0.2.1", "country": "DE",
    "ts": "2026-06-01T11:59:00Z",
}


def raw(**changes) -> bytes:
    order = {**ORDER, **changes}
    return json.dumps({k: v for k, v in order.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (raw(user_id=...), "schema"),  # a required field is missing
        (raw(items=[]), "schema"),  # an order needs a line
        (raw(items="three socks"), "schema"),  # wrong type
        (raw(amount="twenty"), "schema"),  # wrong type
        (raw(amount=-20.0), "schema"),  # negative amount
        (raw(items=[{"item_id": "i1", "price": -1, "qty": 1}]), "schema"),
        (raw(items=[{"item_id": "i1", "price": 1, "qty": 0}]), "schema"),
        (raw(amount=float("nan")), "invalid_json"),  # NaN is not JSON (orjson refuses it)
        (raw(currency="euro"), "schema"),
        (raw(country="Germany"), "schema"),
        (raw(ip="999.1.1.1"), "schema"),
        (raw(ts="yesterday"), "schema"),
        (raw(schema_version=2), "schema"),  # a contract from the future
        (raw(ts=(NOW + timedelta(days=400)).isoformat()), "future_ts"),
        (raw(note="x" * (2 * 1024 * 1024)), "too_large"),
        # Hostile input found by trying (issue 14): each escaped as another exception before.
        (raw(ts="0001-01-01T00:00:00+01:00"), "schema"),  # OverflowError in UTC
        (b'{"a": ' * 1500 + b"1" + b"}" * 1500, "too_deep"),  # RecursionError in json
        (raw(extra={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}), "too_deep"),
        (raw(note="\ud800"), "invalid_json"),  # a lone surrogate: JSON allows it, UTF-8 does not
        (raw(**{"\udfff": 1}), "invalid_json"),  # the same in a key
        (raw(note="x" * 5000), "too_large"),  # a long string in an unknown field
        (raw(amount=1.4e154), "schema"),  # its square overflowed the features to inf
        (raw(items=[{"item_id": "i1", "price": 1e10, "qty": 1}]), "schema"),
        (raw(items=[{"item_id": f"i{n}", "price": 1, "qty": 1} for n in range(1001)]), "schema"),
        (raw(ts="1969-12-31T23:59:59Z"), "past_ts"),
        (raw(ts=-1e12), "past_ts"),
    ],
)
def test_bad_orders_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(Order, payload, now=NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({}, lambda o: o.amount == 20.0 and o.items[0].qty == 2),
        ({"user_id": 42}, lambda o: o.user_id == "42"),  # integer ids are accepted as strings
        ({"ts": 1780315140}, lambda o: o.ts == datetime(2026, 6, 1, 11, 59, tzinfo=UTC)),
        ({"ts": "2026-06-01T11:59:00"}, lambda o: o.ts.tzinfo is UTC),  # naive is UTC
        ({"ts": "2026-06-01T13:59:00+02:00"}, lambda o: o.ts == datetime(2026, 6, 1, 11, 59, tzinfo=UTC)),
        ({"ts": (NOW + timedelta(minutes=4)).isoformat()}, lambda o: o.ts > NOW),  # within skew
        ({"ts": "2016-01-03T00:00:00Z"}, lambda o: o.ts.year == 2016),  # replays of old logs
        ({"coupon": "SUMMER"}, lambda o: o.model_extra == {"coupon": "SUMMER"}),  # kept
        ({"ip": "2001:db8::1"}, lambda o: str(o.ip) == "2001:db8::1"),
        ({"session_id": None, "device_id": None, "ip": None}, lambda o: o.session_id is None),
    ],
)
def test_good_orders_are_accepted(changes, check):
    assert check(parse_event(Order, raw(**changes), now=NOW))


def test_unknown_fields_survive_a_round_trip():
    order = parse_event(Order, raw(coupon="SUMMER"), now=NOW)
    assert json.loads(order.to_bytes())["coupon"] == "SUMMER"
    assert Order.model_validate_json(order.to_bytes()) == order


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Click, {"user_id": "u", "session_id": "s", "item_id": "i", "ts": 1.7e9}),
        (CartEvent, {"user_id": "u", "session_id": "s", "action": "add", "item_id": "i",
                     "price": 1.5, "ts": 1.7e9}),
        (OrderLabel, {"order_id": "o", "is_fraud": True, "chargeback": True, "ts": 1.7e9}),
    ],
)
def test_every_input_round_trips_through_json(model, data):
    event = parse_event(model, json.dumps(data).encode(), now=NOW)
    assert event.schema_version == 1
    assert model.model_validate_json(event.to_bytes()) == event


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (CartEvent, {"user_id": "u", "session_id": "s", "action": "wishlist", "item_id": "i",
                     "price": 1.5, "ts": 0}, "action"),
        (CartEvent, {"user_id": "u", "session_id": "s", "action": "add", "item_id": "i",
                     "price": -1, "ts": 0}, "price"),
        (Click, {"user_id": "", "session_id": "s", "item_id": "i", "ts": 0}, "user_id"),
        (OrderLabel, {"order_id": "o", "is_fraud": "perhaps", "ts": 1.7e9}, "is_fraud"),
        (OrderLabel, {"order_id": "o", "is_fraud": "yes", "ts": 1.7e9}, "is_fraud"),  # strict
        (OrderLabel, {"order_id": "o", "is_fraud": 1, "ts": 1.7e9}, "is_fraud"),
        (OrderLabel, {"order_id": "o", "is_fraud": False, "chargeback": "no", "ts": 1.7e9},
         "chargeback"),
    ],
)
def test_invalid_inputs_name_the_field(model, data, field):
    with pytest.raises(InvalidEvent, match=field):
        parse_event(model, json.dumps(data).encode(), now=NOW)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (Click(user_id="u", session_id="s", item_id="i", ts=NOW), "s"),
        (CartEvent(user_id="u", session_id="s", action="add", item_id="i", price=1, ts=NOW), "s"),
        (Order.model_validate_json(raw()), "u1"),
        (OrderLabel(order_id="o9", is_fraud=False, ts=NOW), "o9"),
    ],
)
def test_events_are_keyed_by_session_user_or_order(event, key):
    assert event_key(event) == key


def test_outputs_carry_model_version_and_latency():
    score = FraudScore(order_id="o", user_id="u", score=0.7, decision="review",
                       model_version="3", latency_ms=4.2, ts=NOW)
    assert {"model_version", "latency_ms", "schema_version"} <= set(json.loads(score.to_bytes()))
    with pytest.raises(ValueError):
        FraudScore(order_id="o", user_id="u", score=1.5, decision="allow", model_version="3",
                   latency_ms=1, ts=NOW)


def test_dead_letter_keeps_the_original_bytes_and_origin():
    payload = b"\x00\x01 not json \xff"
    letter = DeadLetter.of(value=payload, key=b"k", topic="shop.orders", partition=3, offset=41,
                           reason="invalid_json", error="boom", failed_at=NOW, worker="w@h")
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.payload() == payload
    assert (again.topic, again.partition, again.offset, again.payload_bytes) == ("shop.orders", 3, 41, len(payload))


def test_a_dead_letter_too_large_for_kafka_keeps_its_origin_and_a_marked_head():
    payload = b"x" * (12 * 1024 * 1024)
    letter = DeadLetter.of(value=payload, key=b"k", topic="shop.orders", partition=1, offset=9,
                           reason="too_large", error="big", failed_at=NOW, worker="w@h",
                           exception="InvalidEvent", max_bytes=4096)
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.truncated and again.payload() == payload[:len(again.payload())]
    assert len(again.payload()) > 2048  # what the rest of the letter leaves
    assert (again.topic, again.partition, again.offset, again.payload_bytes) == ("shop.orders", 1, 9, len(payload))
    assert again.exception == "InvalidEvent" and len(again.payload_sha256) == 64
    assert len(letter.model_dump_json()) < 4096


def test_a_dead_letter_fits_its_record_whatever_the_size_of_the_key():
    key, payload = b"k" * (4 * 1024 * 1024), b"v" * (12 * 1024 * 1024)
    letter = DeadLetter.of(value=payload, key=key, topic="shop.clicks", partition=0, offset=3,
                           reason="too_large", error="\u0000" * 20_000, failed_at=NOW, worker="w@h",
                           max_bytes=1024 * 1024)
    value = letter.model_dump_json().encode()
    assert len(value) + len(letter.record_key()) <= 1024 * 1024
    again = DeadLetter.model_validate_json(value)
    assert again.truncated and again.key_truncated and again.payload() == payload[:len(again.payload())]
    assert (again.key_bytes, again.payload_bytes) == (len(key), len(payload))
    assert again.key() == key[:len(again.key())] and len(again.key_sha256) == 64
    assert len(again.payload()) > 700_000  # the value keeps what room is left


def test_a_dead_letter_keeps_a_timestamp_that_no_datetime_can_hold():
    letter = DeadLetter.of(value=b"x", key=None, topic="t", partition=0, offset=0, reason="schema",
                           error="bad", failed_at=NOW, worker="w", record_ts_ms=2 ** 62)
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.record_ts is None and again.record_ts_ms == 2 ** 62
    assert DeadLetter.of(value=b"x", key=None, topic="t", partition=0, offset=0, reason="schema",
                         error="bad", failed_at=NOW, worker="w", record_ts_ms=1_700_000_000_000
                         ).record_ts == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


HOSTILE = [b"\x00", b"{}", b"{" * 100_000, b"[" * 3000, b'{"ts": 1e400}', b'{"ts": "9999-12-31T23:59:59-01:00"}',
           b'{"ts": 1e20}', b'{"ts": -1e20}', b'{"user_id": {"$gt": ""}}', b'{"items": [[[[[[]]]]]]}',
           b'{"\\ud800": "\\udc00"}', "{\"ts\": \"2026-06-01T00:00:00Z\", \"x\": \"\u00e9\"}".encode("latin-1"),
           b'{"order_id": "o", "user_id": "u", "items": [{"item_id": "i", "price": 1e308, "qty": 1}], '
           b'"amount": 1e308, "payment_fingerprint": "p", "ts": 1.7e9}']


@pytest.mark.parametrize("payload", HOSTILE)
@pytest.mark.parametrize("model", list(INPUTS.values()))
def test_whatever_the_bytes_only_invalid_event_is_raised(model, payload):
    try:
        parse_event(model, payload, now=NOW)
    except InvalidEvent:
        pass


def test_json_schema_covers_every_event():
    found = schemas()
    assert set(found) == {m.__name__ for m in [*INPUTS.values(), *OUTPUTS.values()]} | {"DeadLetter"}
    order = found["Order"]
    assert {"order_id", "items", "amount", "payment_fingerprint"} <= set(order["required"])
    assert order["properties"]["amount"]["minimum"] == 0
    assert order.get("additionalProperties", True) is True  # unknown fields are accepted


def test_a_batch_with_bad_records_gives_each_record_its_own_result():
    good = [Click(user_id=f"u{i}", session_id="s", item_id="i", ts=NOW).model_dump_json().encode()
            for i in range(3)]
    raws = [good[0], b"{", good[1], json.dumps({"user_id": "u"}).encode(), None, good[2]]
    results = parse_events(Click, raws, now=NOW)
    assert [getattr(r, "reason", None) for r in results] == [None, "invalid_json", None, "schema",
                                                            "empty", None]
    assert [r.user_id for r in results if isinstance(r, Click)] == ["u0", "u1", "u2"]
    assert parse_events(Click, good, now=NOW) == [parse_event(Click, raw, now=NOW) for raw in good]


@pytest.mark.parametrize(("change", "valid"), [({}, True), ({"severity": "alarm"}, False),
                                               ({"label_coverage": 1.5}, False), ({"stream": "ads"}, False),
                                               ({"n": -1}, False), ({"ert": 10_000.0, "direction": "up"}, True)])
def test_a_drift_signal_round_trips_and_refuses_what_it_cannot_mean(change, valid):
    from pydantic import ValidationError

    from shopstream.events import DriftSignal

    fields = dict(signal_id="s", model="m", model_version="1", stream="fraud", subject="score",
                  detector="calibrated_ks", statistic="ks", value=0.2, threshold=0.15, n=200,
                  severity="drift", latency_ms=1.0, window_start=0, window_end=60, ts=60) | change
    if not valid:
        with pytest.raises(ValidationError):
            DriftSignal(**fields)
        return
    signal = DriftSignal(**fields)
    assert DriftSignal.model_validate_json(signal.to_bytes()) == signal
