"""States expire by event time: a worker deletes what no event has touched for its time
to live, with a tombstone on the changelog, and the entity starts afresh."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from scorers.states import STATE_VERSION
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click
from shopstream.featurestore import feature_store
from shopstream.settings import group_id
from tests.integration.conftest import committed_and_end_offsets, read_all, start_worker, wait_until

pytestmark = pytest.mark.integration


def expired(port: int) -> dict[str, float]:
    return {s.labels["table"]: s.value for s in workers.samples(port, "shopstream_expired_states_total")}


def account_age(store, user: str) -> float | None:
    return store.get_online_features(features=["user_activity:account_age_days"],
                                     entity_rows=[{"user_id": user}]).to_dict()["account_age_days"][0]


def test_untouched_states_expire_and_the_entity_starts_afresh(settings, tmp_path):
    settings = settings.model_copy(update={"features": settings.features.model_copy(
        update={"expiry_sweep_s": 0.5})})
    now = datetime.now(UTC)
    old = Click(user_id="old-u", session_id="old-s", item_id="old-i", ts=now - timedelta(days=90))
    store = feature_store(settings)
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        with ShopProducer(settings) as shop:
            shop.send(old)
            shop.send(old.model_copy(update={"ts": now - timedelta(days=89)}))
        wait_until(lambda: account_age(store, "old-u") == pytest.approx(1.0), what="the old user's features")
        assert expired(settings.web_port).get(f"entity-state-v{STATE_VERSION}", 0) == 0

        # An event of today moves the event clock 89 days on: the old user (60 days of
        # features), session (1 day) and item (7 days) have expired.
        with ShopProducer(settings) as shop:
            shop.send(Click(user_id="new-u", session_id="new-s", item_id="new-i", ts=now))
        wait_until(lambda: expired(settings.web_port).get(f"entity-state-v{STATE_VERSION}", 0) >= 3
                   and expired(settings.web_port).get("session-recs-v1", 0) >= 1,
                   what="the old states to expire")
        time.sleep(1)  # an observation window: no other state expires after these
        assert expired(settings.web_port) == {f"entity-state-v{STATE_VERSION}": 3, "session-recs-v1": 1}

        # The old user comes back: a new state, whose account is new too.
        with ShopProducer(settings) as shop:
            shop.send(old.model_copy(update={"ts": now}))
        wait_until(lambda: account_age(store, "old-u") == 0, what="the old user to start afresh")
    finally:
        workers.stop(process)

    changelog = f"{group_id(settings)}-entity-state-v{STATE_VERSION}-changelog"
    written = sum(end for _, end in committed_and_end_offsets(settings, [changelog]).values())
    last = {}
    for message in read_all(settings, changelog, expect=written, timeout=30):
        last.setdefault(message.key(), []).append(message.value())
    for key in (b"user:old-u", b"session:old-s", b"item:old-i"):  # a tombstone, then afresh
        tombstones = [value is None for value in last[key]]  # a state may be saved in 1+ batches
        assert tombstones.count(True) == 1 and tombstones[-2:] == [True, False] and not tombstones[0], key
    assert None not in last[b"user:new-u"]
