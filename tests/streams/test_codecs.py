"""The worker's internal encodings: updates records and changelog states.

The golden test: features computed with every changed state written to the changelog and
read back after each batch, as a restarted worker would, equal those computed with the
states kept in memory, row for row, on the simulator's stream.
"""

from __future__ import annotations

import msgpack
import pytest

from scorers.routing import order_updates, route
from scorers.states import apply, new_state
from streams.codecs import (
    UPDATES_FORMAT,
    decode_state,
    decode_updates,
    encode_state,
    encode_states,
    encode_updates_chunked,
    state_expiry,
)
from tools.simulator import Shop, SimConfig, default_start

TOPIC = {"Click": "shop.clicks:0", "CartEvent": "shop.carts:0", "Order": "shop.orders:0",
         "OrderLabel": "shop.order_labels:0"}


def features(events, batch: int, round_trip: bool) -> tuple[list, dict]:
    """Every feature row of ``events``, applied in batches through encoded update records
    as the feature agent applies them; with ``round_trip``, each changed state is encoded
    and decoded after its batch."""
    states, rows = {}, []
    for start in range(0, len(events), batch):
        updates = [u for i, e in enumerate(events[start:start + batch], start)
                   for u in route(e, TOPIC[type(e).__name__], i)]
        (record,) = encode_updates_chunked(start, updates, 1 << 24)
        changed = {}
        pending = decode_updates(record)[1]
        while pending:
            caused = []
            for index, update in enumerate(pending):
                key = f"{update.kind}:{update.entity_id}"
                state = changed.get(key) or states.get(key) or new_state(update.kind, update.entity_id, 300.0)
                changed[key] = state
                if update.kind == "order":
                    caused += order_updates(state, update, "updates:0", start, index)[1]
                else:
                    rows += sorted(apply(state, update).items())
            pending = caused
        if round_trip:  # a flush encodes its states together; one alone encodes the same
            encoded = encode_states([(key.split(":")[0], state, 0.0) for key, state in changed.items()])
            assert encoded == [encode_state(key.split(":")[0], state, 0.0) for key, state in changed.items()]
            changed = {key: decode_state(raw) for key, raw in zip(changed, encoded, strict=True)}
        states.update(changed)
    return rows, {key: state.to_data() for key, state in states.items()}


def test_states_read_back_from_the_changelog_give_the_same_features():
    config = SimConfig(seed=5, users=300, items=500, sessions_per_hour=5_000, buy_probability=0.3)
    events = list(Shop(config).events(start=default_start(3_000, config), n=3_000))
    assert {type(e).__name__ for e in events} >= {"Click", "CartEvent", "Order"}
    kept, kept_states = features(events, 250, round_trip=False)
    restored, restored_states = features(events, 250, round_trip=True)
    assert len(kept) > 3_000
    assert restored == kept
    assert restored_states == kept_states


def test_a_state_names_no_class_and_keeps_big_sums_exact():
    state = new_state("user", "u1")
    for ts, amount in [(0, 1e9), (10, 1e9), (20, 0.01)]:
        state.amounts.update(ts, amount)
    raw = encode_state("user", state, 123.0)
    assert b"UserState" not in raw and b"scorers" not in raw
    assert state_expiry(raw) == 123.0
    assert decode_state(raw).amounts.totals() == state.amounts.totals()
    assert decode_state(raw).amounts._sums["30d"][2] > 2**64  # beyond MessagePack's integers


@pytest.mark.parametrize("value", [
    msgpack.packb([UPDATES_FORMAT + 1, 0, [], [], [], [], [], [], [], []]),  # another layout
    msgpack.packb({"a": 1}),
    msgpack.packb([UPDATES_FORMAT, 0, ["s:0"], ["user"], ["u"], ["click"], [1.0], [0], [[0, 0]], ["x"]]),
])
def test_updates_records_of_another_layout_are_refused(value):
    with pytest.raises(ValueError):
        decode_updates(value)


def test_an_updates_record_writes_each_source_once():
    updates = [u for i in range(50) for u in route(click(i), "shop.clicks:3", 1_000_000 + i)]
    (record,) = encode_updates_chunked(0, updates, 1 << 20)
    assert record.count(b"shop.clicks:3") == 1
    assert decode_updates(record)[1] == updates


def click(i):
    from shopstream.events import Click

    return Click(user_id=f"u{i % 3}", session_id="s", item_id=f"i{i}", device_id="d", ts=60 + i)
