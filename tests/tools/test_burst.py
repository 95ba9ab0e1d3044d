"""The demo burst: deterministic, and every breakage it makes is dead-lettered."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shopstream.events import INPUTS, InvalidEvent, parse_event
from tools.burst import BAD_KINDS, bad_record, burst

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EXPECTED_REASON = {"invalid_json": "invalid_json", "schema": "schema", "wrong_type": "schema",
                   "negative_amount": "schema", "too_large": "too_large", "future_ts": "future_ts"}


def test_same_seed_same_burst():
    assert list(burst(300, seed=3, now=NOW)) == list(burst(300, seed=3, now=NOW))
    assert list(burst(300, seed=3, now=NOW)) != list(burst(300, seed=4, now=NOW))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_breakage_is_rejected_for_its_reason(kind):
    record = bad_record(kind, NOW, random.Random(0))
    with pytest.raises(InvalidEvent) as caught:
        parse_event(INPUTS[record.kind], record.raw, now=NOW)
    assert caught.value.reason == EXPECTED_REASON[kind]


def test_good_records_parse_and_cover_every_input_kind():
    records = list(burst(2000, seed=1, now=NOW, bad_share=0.0))
    assert {r.kind for r in records} == set(INPUTS)
    for record in records:
        assert parse_event(INPUTS[record.kind], record.event.to_bytes(), now=NOW) == record.event
