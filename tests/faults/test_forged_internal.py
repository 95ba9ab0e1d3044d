"""Fault 6: forged records on the internal topics and the state changelog (issue 32).

Seen failing before its fix: every well-formed record on them was trusted. A forged label
on the drift inputs was graded and watched as a real one, a forged session order emptied
a session's recommendations of what it "bought", and a forged changelog record was
restored as the entity's state at the next start (a user with 50 clicks it never made).
Now each internal record carries an HMAC of its key and value under the deployment's key
(``shopstream.signing``); one without it is a dead letter, or a state started afresh.
"""

from __future__ import annotations

import json
import time

import orjson
import pytest
from confluent_kafka import Producer

from scorers.routing import Update
from scorers.states import STATE_VERSION, apply, new_state
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, DeadLetter
from shopstream.featurestore import feature_store
from shopstream.settings import group_id, internal_key
from shopstream.signing import Signer
from streams.app import drift_inputs_topic_name, owner_partition, session_orders_topic_name
from streams.codecs import encode_state
from tests.integration.conftest import read_all, start_worker, wait_until

pytestmark = pytest.mark.integration


def test_forged_drift_inputs_and_session_orders_are_dead_lettered(worker):
    settings = worker
    now = time.time()
    label = orjson.dumps({"k": "label", "id": "o-forged", "f": True, "t": now})
    bought = json.dumps({"session_id": "s-victim", "items": ["i1"], "ts": now}).encode()
    stranger = Signer(b"a key of somebody else's")
    forged = [(drift_inputs_topic_name(settings), b"fraud", label),
              (drift_inputs_topic_name(settings), b"fraud", stranger.sign(b"fraud", label)),
              (drift_inputs_topic_name(settings), b"recs", Signer(internal_key(settings)).sign(b"fraud", label)),
              (session_orders_topic_name(settings), b"s-victim", bought),
              (session_orders_topic_name(settings), b"s-victim", stranger.sign(b"s-victim", bought))]
    producer = Producer(settings.kafka.client_config())
    for topic, key, value in forged:
        producer.produce(topic, key=key, value=value)
    producer.flush(10)

    letters = [DeadLetter.model_validate_json(m.value())
               for m in read_all(settings, settings.topics.dlq, expect=len(forged))]
    assert sorted((x.topic, x.reason, x.payload()) for x in letters) == \
        sorted((topic, "unsigned", value) for topic, _, value in forged)
    unsigned = [s.value for s in workers.samples(settings.web_port, "shopstream_drift_inputs_total")
                if s.labels["outcome"] == "unsigned"]
    assert unsigned == [3.0]


def clicks(store, user) -> int:
    rows = store.get_online_features(features=["user_activity:clicks_count_1h"],
                                     entity_rows=[{"user_id": user}]).to_dict()
    return rows["clicks_count_1h"][0] or 0


def test_a_forged_changelog_record_is_not_restored(settings, tmp_path):
    user = f"{settings.app_id}-victim"
    now = time.time()
    process = start_worker(settings, tmp_path / "first.log")
    store = feature_store(settings)
    try:
        with ShopProducer(settings) as shop:
            for n in range(3):
                shop.send(Click(user_id=user, session_id=f"{user}-s", item_id=f"i{n}", ts=now - 300 + n))
        wait_until(lambda: clicks(store, user) == 3, what="the victim's three clicks to count")
    finally:
        workers.stop(process)

    state = new_state("user", user, settings.features.lateness_s)  # 50 clicks the victim never made
    for n in range(50):
        apply(state, Update("user", user, "click", now - 200 + n, f"{settings.topics.clicks}:0", (10_000 + n, 0),
                            (None, None)))
    key = f"user:{user}".encode()
    changelog = f"{group_id(settings)}-entity-state-v{STATE_VERSION}-changelog"
    producer = Producer(settings.kafka.client_config())
    producer.produce(changelog, key=key, value=encode_state("user", state, now + 86_400),
                     partition=owner_partition(key, settings.topics.partitions))
    producer.flush(10)

    restarted = start_worker(settings, tmp_path / "second.log")
    try:
        with ShopProducer(settings) as shop:
            shop.send(Click(user_id=user, session_id=f"{user}-s", item_id="j", ts=now - 10))
        wait_until(lambda: workers.records(settings.web_port)[settings.topics.clicks, "processed"] >= 1,
                   what="the next click to be processed")
        wait_until(lambda: clicks(store, user) in (1, 4, 51), what="the next click to count")
        assert clicks(store, user) == 1  # the forged state refused: the victim starts afresh
        unreadable = [s.value for s in workers.samples(settings.web_port, "shopstream_unreadable_states_total")]
        assert unreadable == [1.0]
    finally:
        workers.stop(restarted)
