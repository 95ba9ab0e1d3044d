"""Online reads and writes on the real Redis: what ``OnlineReader`` returns in one round
trip is what Feast's own ``get_online_features`` returns, view by view."""

from __future__ import annotations

import time

import pytest

from scorers.features import VIEWS
from scorers.fraud import FRAUD_VIEWS
from shopstream.featurestore import feature_store
from shopstream.online import JOIN_KEYS, OnlineReader, OnlineWriter

pytestmark = pytest.mark.integration


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
