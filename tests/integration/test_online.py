"""Online reads and writes on the real Redis: what ``OnlineReader`` returns in one round
trip is what Feast's own ``get_online_features`` returns, view by view."""

from __future__ import annotations

import time

import pytest

from scorers.fraud import FRAUD_VIEWS
from scorers.views import VIEWS
from shopstream.featurestore import feature_store
from shopstream.online import OnlineReader, OnlineWriter
from shopstream.rows import JOIN_KEYS

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # contract: in `make test-fast`


def row(view: str, entity: str, ts: float, seed: int) -> tuple:
    spec = VIEWS[view]
    values = [[f"x{seed}"] if f in spec.lists else seed + i for i, f in enumerate(spec.features)]
    return (entity, ts, *values)


def test_reader_matches_get_online_features(settings):
    store = feature_store(settings, apply=True)
    writer, now = OnlineWriter(store), time.time()
    written = {"user_activity": ["u1", "u2"], "user_orders": ["u1"], "instrument_velocity": ["c1"],
               "terminal_risk": ["t1", "t2"], "ip_velocity": ["10.0.0.1"]}
    for i, (view, entities) in enumerate(written.items()):
        writer.write(view, [row(view, e, now - 60, 10 * i + j) for j, e in enumerate(entities)])
    # Entities written, never seen (u3) and absent (no device, an empty terminal).
    rows = [{"user_id": "u1", "instrument_id": "c1", "device_id": None, "ip": "10.0.0.1", "terminal_id": "t1"},
            {"user_id": "u2", "instrument_id": "c9", "device_id": "d1", "ip": None, "terminal_id": "t2"},
            {"user_id": "u3", "instrument_id": None, "device_id": None, "ip": None, "terminal_id": ""}]

    got = OnlineReader(store, FRAUD_VIEWS).read(rows)

    for view in FRAUD_VIEWS:
        key = JOIN_KEYS[VIEWS[view].entity]
        present = [i for i, r in enumerate(rows) if r.get(key)]
        expected = store.get_online_features(
            features=[f"{view}:{f}" for f in VIEWS[view].features],
            entity_rows=[{key: rows[i][key]} for i in present], full_feature_names=True).to_dict()
        for n, i in enumerate(present):
            assert {name: got[i][name] for name in expected if name != key} == \
                {name: values[n] for name, values in expected.items() if name != key}, (view, rows[i])
        for i in set(range(len(rows))) - set(present):
            assert all(got[i][f"{view}__{f}"] is None for f in VIEWS[view].features)
    assert got[0]["user_activity__" + VIEWS["user_activity"].features[0]] == 0  # seed 0, first feature
    assert got[1]["terminal_risk__" + VIEWS["terminal_risk"].features[0]] == 31


def test_the_redis_writer_writes_what_feast_writes_and_sets_a_ttl(settings):
    """The fast path (one pipeline, cached keys) leaves the hash Feast's own
    ``online_write_batch`` leaves, field for field, plus a TTL per entity kind."""
    store = feature_store(settings, apply=True)
    writer = OnlineWriter(store)
    client = writer._redis._get_client(store.config.online_store)
    ts = time.time() - 0.4999995  # a fraction that rounds
    keys = [writer._redis_key("user_id", "ttl-u1"), writer._redis_key("session_id", "ttl-s1")]
    hashes = {}
    for fast in (True, False):
        client.delete(*keys)
        if not fast:
            writer._redis = None  # the provider's path
        for view in ("user_activity", "user_orders", "session_state"):
            entity = "ttl-s1" if view == "session_state" else "ttl-u1"
            writer.write(view, [row(view, entity, ts - 5, 1), row(view, entity, ts, 2)])
        hashes[fast] = {key: client.hgetall(key) for key in keys}
        if fast:
            ttls = {key: client.ttl(key) for key in keys}
    assert hashes[True] == hashes[False] and all(hashes[True].values())
    assert sorted(ttls.values()) == [pytest.approx(86_400, abs=5), pytest.approx(60 * 86_400, abs=5)]
