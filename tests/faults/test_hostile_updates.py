"""Fault 5, hostile updates: forged and malformed records on the internal updates topic go
to the dead-letter topic, change nothing, and no entity stops accepting updates.

Seen failing before issue 14's fixes: the update with ``seq`` (10**18, 0) was applied, so
the victim's state took it as the newest update from ``shop.clicks`` and ignored every
real click after it (``clicks_count_1h`` stayed at 1). Before issue 32's: a partition id
of 2**31 raised out of the end-offset lookup and the worker exited (status 70) in a loop,
and any well-formed record was applied, whoever wrote it (a forged label won over the real
one). Now every internal record must carry the deployment's signature (``shopstream.signing``).
"""

from __future__ import annotations

import json
import time
from collections import Counter

import msgpack
from confluent_kafka import Producer

from scorers.routing import Update
from shopstream.client import ShopProducer
from shopstream.events import Click, DeadLetter
from shopstream.featurestore import feature_store
from shopstream.settings import internal_key
from shopstream.signing import Signer
from streams.app import owner_partition, updates_topic_name
from streams.codecs import UPDATES_FORMAT, encode_updates
from tests.integration.conftest import read_all, wait_until


def clicks(store, user) -> int:
    rows = store.get_online_features(features=["user_activity:clicks_count_1h"],
                                     entity_rows=[{"user_id": user}]).to_dict()
    return rows["clicks_count_1h"][0] or 0


def test_forged_and_malformed_updates_are_dead_lettered_and_harm_nobody(worker):
    settings = worker
    store = feature_store(settings)
    user = f"{settings.app_id}-victim"
    now = time.time()
    click = Click(user_id=user, session_id=f"{user}-s", item_id="i", ts=now - 60)
    with ShopProducer(settings) as shop:
        shop.send(click)
    wait_until(lambda: clicks(store, user) == 1, what="the first click to count")

    clicks_topic, internal = settings.topics.clicks, updates_topic_name(settings)
    partition = owner_partition(f"user:{user}".encode(), settings.topics.partitions)
    source = f"{clicks_topic}:{owner_partition(click.session_id.encode(), settings.topics.partitions)}"

    def update(**changes):
        row = {"kind": "user", "entity": user, "op": "click", "ts": now - 30, "source": source,
               "seq": [0, 0], "data": [None, None], **changes}
        return encode_updates(int(now * 1000), [Update(**{"entity_id" if k == "entity" else k: v
                                                          for k, v in row.items()})])

    def columns(*values):
        return msgpack.packb([UPDATES_FORMAT, int(now * 1000), *values])

    forged = {
        "seq_from_the_future": update(seq=[10**18, 0]),
        "offset_not_written_yet": update(seq=[5_000_000, 0]),
        "not_json": b"\x00\x01 not json",
        "json_of_an_older_worker": json.dumps([1, [["user", user, "click", now, source, [0, 0],
                                                     [None, None]]]]).encode(),
        "columns_of_unequal_length": columns([source], ["user"], [user], ["click"], [now], [0], [], []),
        "source_index_out_of_range": columns([source], ["user"], [user], ["click"], [now], [3],
                                             [[0, 0]], [[None, None]]),
        "unknown_kind": update(kind="planet"),
        "unknown_op": update(op="teleport"),
        "bad_data": update(data=[["d"], 3]),
        "infinite_ts": update(ts=float("inf")),
        "foreign_source": update(source="elsewhere:0"),
        "partition_that_does_not_exist": update(source=f"{clicks_topic}:99"),
        "partition_kafka_cannot_have": update(source=f"{clicks_topic}:{2 ** 31}"),  # issue 32
        "offset_kafka_cannot_have": update(seq=[2 ** 63, 0]),
        "second_name_of_a_partition": update(source=source.replace(":", ":0")),
        "huge_amount": update(op="order", data=[1.4e154, None, None]),
        "bool_ingestion_time": encode_updates(True, []),
    }
    # Signed with the deployment's key (a worker with a bug could write them): the checks
    # after the signature's refuse them. Then the forgeries of anyone without the key.
    signer = Signer(internal_key(settings))
    unsigned = {"genuine_looking_but_unsigned": update(seq=[1, 0]),
                "signed_with_another_key": Signer(b"another deployment's key").sign(None, update(seq=[1, 0])),
                "forged_label": update(op="label", data=[True], seq=[1, 0])}
    producer = Producer(settings.kafka.client_config())
    for name, value in forged.items():
        producer.produce(internal, value=signer.sign(None, value), key=name.encode(), partition=partition)
    for name, value in unsigned.items():
        producer.produce(internal, value=value, key=name.encode(), partition=partition)
    producer.flush(10)

    with ShopProducer(settings) as shop:  # the victim's next real click
        shop.send(Click(user_id=user, session_id=f"{user}-s", item_id="j", ts=now - 10))
    wait_until(lambda: clicks(store, user) == 2, what="the victim's next click to count")

    letters = [DeadLetter.model_validate_json(m.value())
               for m in read_all(settings, settings.topics.dlq, expect=len(forged) + len(unsigned))]
    assert Counter(letter.reason for letter in letters) == {"bad_update": len(forged), "unsigned": len(unsigned)}
    assert {letter.topic for letter in letters} == {internal}
    assert {letter.payload() for letter in letters} == \
        {signer.sign(None, value) for value in forged.values()} | set(unsigned.values())
