"""Golden feature rows: a digest of every row the pure core computes on two fixed streams.

Performance work on ``scorers.windows`` and ``scorers.states`` must not change a single
feature value, lateness count or tie-break. These digests were recorded before that work
(on the core with exact window sums, issue 15) and checked equal, row for row, against
the rows of the commit before it. A deliberate change of the features changes them:
record the new digests in the same commit and say why.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import struct
from datetime import UTC, datetime

import pytest

from scorers.routing import route_all
from scorers.states import apply, new_state
from shopstream.simulator import Shop, SimConfig, default_start

TRANSACTIONS = "fraud-transactions-2018q2.parquet"


def digest(events) -> tuple[int, int, str]:
    """(rows, late updates, sha256 of every row in order, floats by their exact bits)."""
    states, orders, sha, rows = {}, {}, hashlib.sha256(), 0
    for update in route_all(events, "shop:0", orders):
        state = states.get((update.kind, update.entity_id))
        if state is None:
            state = states[(update.kind, update.entity_id)] = new_state(update.kind, update.entity_id, 300.0)
        for view, row in sorted(apply(state, update).items()):
            rows += 1
            sha.update(view.encode())
            for value in row:
                sha.update(struct.pack("<d", value) if isinstance(value, float) else repr(value).encode())
    late = sum(state.late for state in states.values()) + sum(state.late for state in orders.values())
    return rows, late, sha.hexdigest()


def simulated(disorder: bool) -> list:
    """The simulator's events, with ``disorder`` 3 % of them moved later in the stream, by
    up to 8,000 places: some within the allowed lateness, some beyond it."""
    config = SimConfig(seed=3, users=500, items=800, sessions_per_hour=20_000, buy_probability=0.3)
    start = default_start(20_000, config, now=datetime(2026, 6, 1, tzinfo=UTC))
    events = list(Shop(config).events(start=start, n=20_000))
    if disorder:
        rng = random.Random(5)
        for i in sorted(rng.sample(range(len(events)), len(events) * 3 // 100), reverse=True):
            events.insert(min(i + rng.randrange(1, 8_000), len(events)), events.pop(i))
    return events


@pytest.mark.parametrize("disorder", [False, True])
def test_the_simulator_stream_gives_the_golden_rows(disorder):
    rows, late, sha = digest(simulated(disorder))
    assert late > 0 or not disorder
    assert (rows, late, sha) == GOLDEN[f"simulator{'-disordered' if disorder else ''}"]


def test_the_card_transactions_give_the_golden_rows(data_dir):
    from shopstream.replay import read

    events = list(itertools.islice(read(data_dir / TRANSACTIONS, "transactions"), 30_000))
    assert digest(events) == GOLDEN["transactions"]


GOLDEN = {
    "simulator": (65576, 0, "aa6b31dd4c1ab41365da90a1e735e5821f34609bd8212e096c971a55b1020c93"),
    "simulator-disordered": (65574, 2, "4b2bab8c773727630e300bb7e80f10ba0ffe0d1fb466cbaedda72810202460c5"),
    "transactions": (150000, 0, "6c4aa616ced42db795f346c0fbfc0b343b9ecb87f899a77c23fb1fe1eb3482f7"),
}
