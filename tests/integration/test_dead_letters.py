"""Bad input never kills a worker and is never lost: every offset is accounted for."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import DeadLetter
from tests.integration.conftest import committed_and_end_offsets, metrics, read_all, wait_until
from tools.burst import BAD_KINDS, burst

pytestmark = pytest.mark.integration

BAD_PAYLOADS = {
    "invalid_json": b'{"order_id": "o-1", "amount": 12.5,',
    "not_utf8": b"\xff\xfe\xfa binary garbage",
    "not_an_object": b"[1, 2, 3]",
    "empty": b"",
}


def test_every_input_offset_is_processed_or_dead_lettered(worker):
    settings = worker
    topics = settings.topics.inputs()
    sent: Counter = Counter()  # by topic
    with ShopProducer(settings) as producer:
        for record in burst(600, seed=11, bad_share=0.05):
            if record.event is not None:
                producer.send(record.event)
            else:
                producer.send_raw(topics[record.kind], record.raw)
            sent[topics[record.kind]] += 1
        for name, payload in BAD_PAYLOADS.items():  # bad records on every input topic
            for topic in topics.values():
                producer.send_raw(topic, payload, key=name.encode())
                sent[topic] += 1
        # unknown fields are accepted and kept
        unknown = {"user_id": "u", "session_id": "s", "item_id": "i",
                   "ts": datetime.now(UTC).isoformat(), "referrer": "newsletter"}
        producer.send_raw(topics["click"], json.dumps(unknown).encode())
        sent[topics["click"]] += 1
    assert producer.stats.failed == 0
    total = sum(sent.values())

    # A record is counted in when its batch arrives and out when the batch is done: wait for both.
    wait_until(lambda: (m := workers.scrape(settings.web_port)) is not None
               and m.total_in >= total and m.total_out + m.total_dead >= total,
               what=f"the worker to consume and account for {total} records")
    scraped = metrics(settings.web_port)
    assert scraped.events_in == dict(sent)
    assert scraped.total_out + scraped.total_dead == total

    letters = [DeadLetter.model_validate_json(m.value())
               for m in read_all(settings, settings.topics.dlq, expect=int(scraped.total_dead))]
    assert len(letters) == scraped.total_dead
    assert Counter(letter.reason for letter in letters) == Counter(scraped.dead_letters)
    bad_in_burst = sum(r.bad is not None for r in burst(600, seed=11, bad_share=0.05))
    assert len(letters) == bad_in_burst + len(BAD_PAYLOADS) * len(topics)
    assert {letter.reason for letter in letters} >= {"invalid_json", "schema", "too_large",
                                                      "future_ts", "empty"}
    # A dead letter carries the original bytes and where they came from, uniquely.
    origins = {(letter.topic, letter.partition, letter.offset) for letter in letters}
    assert len(origins) == len(letters)
    by_key = [letter for letter in letters if letter.key_b64]
    assert {letter.payload() for letter in by_key} == set(BAD_PAYLOADS.values())
    assert max(letter.payload_bytes for letter in letters) > 5 * 1024 * 1024  # the 5 MB event

    # Every offset of every input partition is committed: nothing was skipped.
    wait_until(lambda: all(committed == end for committed, end in
                           committed_and_end_offsets(settings, list(topics.values())).values()),
               what="committed offsets to reach the end of every partition")
    ends = committed_and_end_offsets(settings, list(topics.values()))
    assert sum(end for _, end in ends.values()) == total


def test_worker_survives_bad_data_and_keeps_going(worker):
    settings = worker
    with ShopProducer(settings) as producer:
        for kind in BAD_KINDS:
            for record in burst(50, seed=2, bad_share=1.0):
                if record.bad == kind:
                    producer.send_raw(settings.topics.orders, record.raw)
                    break
        for record in burst(100, seed=3, bad_share=0.0):
            producer.send(record.event)
    wait_until(lambda: metrics(settings.web_port).total_out >= 100,
               what="good events after bad ones to be processed")
    assert workers.ready(settings.web_port)
