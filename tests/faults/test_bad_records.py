"""Fault 1, bad-record accounting: hostile records mixed into good traffic on every input
topic. Every offset ends processed or dead-lettered, exactly one of the two, and every
partition is committed to its end.

Seen failing before issue 14's fixes: the first hostile record raised out of its agent
(``OverflowError``, ``RecursionError``, a failed dead letter for the 12 MiB record), Faust
acknowledged the whole micro-batch on the way out, and the batch's good records got no
features, no score and no dead letter while their offsets were committed.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import DeadLetter
from shopstream.featurestore import offline_root
from shopstream.offline import OfflineLog
from streams.app import updates_topic_name
from tests.faults.hostile import hostile
from tests.integration.conftest import (
    committed_and_end_offsets,
    drained,
    read_all,
    wait_until,
)
from tools.burst import burst

pytestmark = pytest.mark.integration
GOOD = 2000


def test_every_offset_is_processed_or_dead_lettered_once(worker):
    settings = worker
    topics = settings.topics.inputs()
    now = datetime.now(UTC)
    sent: Counter = Counter()  # by topic
    valid_orders, valid_clicks, valid_carts = set(), 0, 0
    with ShopProducer(settings) as producer:
        for n, record in enumerate(burst(GOOD, seed=14, bad_share=0.0)):
            producer.send(record.event)
            sent[topics[record.kind]] += 1
            if record.kind == "order":
                valid_orders.add(record.event.order_id)
            valid_clicks += record.kind == "click"
            valid_carts += record.kind == "cart"
            if n % 400 == 0:  # hostile records spread through the good ones
                for kind, topic in topics.items():
                    for name, payload in hostile(kind, now, huge=(n == 0 and kind == "order")).items():
                        producer.send_raw(topic, payload, key=name.encode())
                        sent[topic] += 1
    assert producer.stats.failed == 0
    total = sum(sent.values())

    internal = updates_topic_name(settings)
    wait_until(lambda: drained(settings, [*topics.values(), internal]), timeout=240,
               what="every input and update record to be committed")
    ends = committed_and_end_offsets(settings, list(topics.values()))
    assert all(committed == end for committed, end in ends.values()), ends
    assert sum(end for _, end in ends.values()) == total

    # Each offset is in the raw offline log or in the dead-letter topic: never both, never neither.
    log = OfflineLog(offline_root(settings))
    logged: Counter = Counter()
    for kind in topics:
        table = log.read(f"raw_{kind}", columns=["topic", "partition", "offset"]).to_pylist()
        logged.update((row["topic"], row["partition"], row["offset"]) for row in table)
    letters = [DeadLetter.model_validate_json(m.value())
               for m in read_all(settings, settings.topics.dlq, expect=total - len(logged))]
    dead = Counter((letter.topic, letter.partition, letter.offset) for letter in letters)
    assert max(dead.values()) == 1 and max(logged.values()) == 1
    every = {(topic, partition, offset) for (topic, partition), (_, end) in ends.items()
             for offset in range(end)}
    assert set(dead) | set(logged) == every
    assert not set(dead) & set(logged)
    assert set(dead) == {o for o in every if o not in logged}

    # Why each was refused is on the letter; the 12 MiB one kept its origin and a marked head.
    by_key = defaultdict(set)
    for letter in letters:
        by_key[letter.reason].add(letter.exception)
    assert set(by_key) >= {"schema", "too_deep", "invalid_json", "too_large", "past_ts", "empty"}
    (huge,) = [letter for letter in letters if letter.payload_bytes > 12 * 1024 * 1024]
    assert huge.truncated and huge.topic == topics["order"] and huge.payload_sha256

    # Counters: processed + dead-lettered = sent, per topic, and nothing unaccounted.
    records = workers.records(settings.web_port)
    for topic in topics.values():
        assert records[topic, "processed"] + records[topic, "dead_lettered"] == sent[topic], topic
    assert all(value == 0 for value in workers.unaccounted(settings.web_port).values())

    # Outputs: one score per valid order, one recommendation per valid click.
    scores = read_all(settings, settings.topics.fraud_scores, expect=len(valid_orders))
    assert Counter(json.loads(m.value())["order_id"] for m in scores) == Counter(valid_orders)
    recs = read_all(settings, settings.topics.session_recs, expect=valid_clicks + valid_carts)
    triggers = Counter(json.loads(m.value())["trigger"] for m in recs)
    assert triggers == {"click": valid_clicks, "cart": valid_carts}
    origins = Counter(json.loads(m.value())["origin"] for m in recs)
    assert max(origins.values()) == 1
    assert {tuple(o.rsplit(":", 2)) for o in origins} <= {(t, str(p), str(o)) for t, p, o in logged}
