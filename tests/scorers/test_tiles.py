"""Tiles against the one-at-a-time reference, ``WindowedStats``, on hostile streams."""

from __future__ import annotations

import random

import pytest

from scorers.tiles import Contributions, Tiles
from scorers.windows import WindowedStats

WINDOWS = ("10m", "1h", "24h", "7d", "30d")


class Entity:
    """An owner for a slot (slots are given back when their owner is collected)."""


@pytest.mark.parametrize("seed", range(6))
def test_tiles_count_as_windowed_stats_do(seed):
    """Random entities, aggregates, gaps from a second to weeks, events up to 40 days late,
    queries at times past the watermark, batches of 1 to 400: every answer equal."""
    rng = random.Random(seed)
    tiles = Tiles(("a", "b"), WINDOWS, capacity=2)  # grows as entities arrive
    owners = [Entity() for _ in range(7)]
    slots = [tiles.allocate(owner) for owner in owners]
    reference = {(e, a): WindowedStats(WINDOWS, lateness_s=float("inf")) for e in range(7) for a in range(2)}
    stamped = dict.fromkeys(range(7), 0.0)
    clock = 1_700_000_000.0
    for _ in range(12):
        batch, expected = Contributions(), []
        for place in range(rng.randint(1, 400)):
            entity, aggregate = rng.randrange(7), rng.randrange(2)
            clock += rng.choice([1, 7, 59.5, 60, 600, 3_600, 86_400, 6 * 86_400])
            ts = clock - rng.choice([0, 0, 0, 30, 3_000, 90_000, 40 * 86_400])
            now = stamped[entity] = max(stamped[entity], ts, clock - rng.choice([0, 0, 500]))
            reference[entity, aggregate].update(ts)
            batch.add(slots[entity], aggregate, ts, place)
            batch.ask(slots[entity], now, place)
            expected.append([count for a in range(2)
                             for count in [reference[entity, a].count(w, now) for w in WINDOWS]])
        assert tiles.settle(batch).tolist() == expected


def test_slots_come_back_when_their_entity_goes():
    tiles = Tiles(("a",), ("1h",), capacity=1)
    owner = Entity()
    tiles.allocate(owner)
    assert tiles.in_use() == 1
    del owner
    assert tiles.in_use() == 0


def test_a_reused_slot_starts_empty_and_tiles_survive_plain_data():
    tiles = Tiles(("a",), ("1h", "7d"), capacity=1)
    first = Entity()
    slot = tiles.allocate(first)
    batch = Contributions()
    for place, ts in enumerate([0, 100, 4_000]):
        batch.add(slot, 0, ts, place)
    tiles.settle(batch)
    data = tiles.to_data(slot)
    del first
    again = Entity()
    assert tiles.counts(tiles.allocate(again), 4_000) == [0, 0]
    restored = Entity()
    copy = tiles.allocate(restored)
    tiles.load(copy, data)
    assert tiles.counts(copy, 4_000) == [1, 3]
