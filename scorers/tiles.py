"""Window counts of many entities at once: numpy tiles, settled once per micro-batch.

Pure code, no I/O. ``scorers.windows.WindowedStats`` answers one entity, one update at a
time, in Python. The counting aggregates of an entity kind (a user's clicks, carts and
orders; an item's views, carts and purchases; the orders of an instrument, device or
IP; a terminal's transactions) live here instead, in one block of memory per kind:

- every entity has a row (its *slot*) in each bucket size's ring of tiles;
- a tile holds one time bucket: its index (the *tag*) and one count per aggregate;
- bucket ``b`` sits at ring position ``b mod R``, with ``R`` the longest window of that
  bucket size in buckets. A bucket that a newer one pushes out of its position is older
  than every window that can still be asked for (windows only move forward), and an
  update to a bucket older than its position's tag is outside them too, so neither is
  kept, exactly as ``WindowedStats`` ignores them.

A micro-batch is applied in two phases. While the states apply their updates (in Python,
one at a time, as before), each update to a counting aggregate is noted as a
*contribution* and each row that needs counts as a *query*, both with the update's
place in the batch. ``Tiles.settle`` then answers every query with numpy: the tiles as
they were before the batch, plus the batch's own contributions up to the query's place
(gathered pairwise within each entity), and finally adds the contributions to the tiles
(``np.maximum.at`` for the tags, ``np.add.at`` for the counts). The answers equal the
one-at-a-time ones exactly: a window's count at time ``now`` is the number of updates
applied so far whose bucket lies in the window's buckets ending with ``now``'s
(``tests/scorers/test_golden.py`` checks it row for row).

>>> tiles = Tiles(("clicks",), ("10m", "1h"))
>>> owner = type("Entity", (), {})()
>>> slot = tiles.allocate(owner)
>>> batch = Contributions()
>>> for place, ts in enumerate([0, 30, 590, 650]):
...     batch.add(slot, 0, ts, place)
...     _ = batch.ask(slot, ts, place)
>>> tiles.settle(batch).tolist()   # per query: clicks in 10 minutes, in 1 hour
[[1, 1], [2, 2], [3, 3], [2, 4]]
>>> later = Contributions()
>>> _ = later.ask(slot, 4_000, 0)
>>> tiles.settle(later).tolist()   # the 1 hour window ending at 4,000 s starts at 420 s
[[0, 2]]
"""

from __future__ import annotations

import functools
import weakref

import numpy as np

from scorers.windows import BUCKETS, WINDOW_SECONDS

EMPTY = np.iinfo(np.int64).min
"""The tag of a tile that holds no bucket."""


class Contributions:
    """What a micro-batch adds to and asks of one kind's tiles, in the order it happens:
    contributions (an update counted in an aggregate at event time ``ts``) and queries
    (the counts of every window as of ``now``). ``place`` orders them: a query sees the
    contributions whose place is not after its own."""

    def __init__(self):
        self.slots: list[int] = []
        self.aggregates: list[int] = []
        self.times: list[float] = []
        self.places: list[int] = []
        self.query_slots: list[int] = []
        self.query_times: list[float] = []
        self.query_places: list[int] = []

    def add(self, slot: int, aggregate: int, ts: float, place: int) -> None:
        self.slots.append(slot)
        self.aggregates.append(aggregate)
        self.times.append(ts)
        self.places.append(place)

    def ask(self, slot: int, now: float, place: int) -> int:
        """Ask for the counts of ``slot`` as of ``now``; return the query's number."""
        self.query_slots.append(slot)
        self.query_times.append(now)
        self.query_places.append(place)
        return len(self.query_slots) - 1

    def __len__(self) -> int:
        return len(self.slots) + len(self.query_slots)


class Tiles:
    """The tiles of every entity of one kind: counts of ``aggregates`` over ``windows``.

    Answers come as one row per query: every aggregate's counts, window by window
    (``clicks`` 10m, 1h, ..., then ``carts`` 10m, ...), the order of the views' columns.
    """

    def __init__(self, aggregates: tuple[str, ...], windows: tuple[str, ...], capacity: int = 1024):
        unknown = set(windows) - set(WINDOW_SECONDS)
        if unknown:
            raise ValueError(f"unknown windows {sorted(unknown)}; known: {sorted(WINDOW_SECONDS)}")
        self.aggregates, self.windows = aggregates, windows
        self.spans = [WINDOW_SECONDS[w] // BUCKETS[w] for w in windows]
        self.rings: dict[int, int] = {}  # bucket size -> positions: its longest window
        for window, span in zip(windows, self.spans, strict=True):
            self.rings[BUCKETS[window]] = max(self.rings.get(BUCKETS[window], 0), span)
        self.capacity = 0
        self.tags: dict[int, np.ndarray] = {}
        self.cells: dict[int, np.ndarray] = {}
        self._free: list[int] = []
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        for size, ring in self.rings.items():
            tags = np.full((capacity, ring), EMPTY, np.int64)
            cells = np.zeros((capacity, ring, len(self.aggregates)), np.int32)
            if self.capacity:
                tags[:self.capacity], cells[:self.capacity] = self.tags[size], self.cells[size]
            self.tags[size], self.cells[size] = tags, cells
        self._free.extend(range(capacity - 1, self.capacity - 1, -1))
        self.capacity = capacity

    def allocate(self, owner: object) -> int:
        """A slot of empty tiles for ``owner``, given back when ``owner`` is collected."""
        if not self._free:
            self._grow(2 * self.capacity)
        slot = self._free.pop()
        for size in self.rings:
            self.tags[size][slot] = EMPTY
            self.cells[size][slot] = 0
        weakref.finalize(owner, self._free.append, slot)
        return slot

    def in_use(self) -> int:
        """Slots held by live entities."""
        return self.capacity - len(self._free)

    def to_data(self, slot: int) -> list:
        """The slot's tiles as plain data: per bucket size, ``[tag, *counts]`` of each tile
        in use."""
        return self.to_data_many([slot])[0]

    def to_data_many(self, slots: list[int]) -> list[list]:
        """``to_data`` of many slots at once (a flush's worth), for less than one by one."""
        slots = np.asarray(slots, np.int64)
        out: list[list] = [[] for _ in range(len(slots))]
        for size in self.rings:
            tags = self.tags[size][slots]
            which, where = np.nonzero(tags != EMPTY)
            tiles = np.column_stack((tags[which, where], self.cells[size][slots[which], where])).tolist()
            ends = np.cumsum(np.bincount(which, minlength=len(slots))).tolist()
            start = 0
            for data, end in zip(out, ends, strict=True):
                data.append([size, tiles[start:end]])
                start = end
        return out

    def load(self, slot: int, data: list) -> None:
        """Take the tiles of ``to_data`` into ``slot``."""
        for size, tiles in data:
            if size not in self.rings or not tiles:
                continue
            ring = self.rings[size]
            for tag, *counts in tiles:
                self.tags[size][slot, tag % ring] = tag
                self.cells[size][slot, tag % ring] = counts

    def counts(self, slot: int, now: float) -> list[int]:
        """The counts of ``slot`` as of ``now``, without the batch in progress."""
        batch = Contributions()
        batch.ask(slot, now, 0)
        return self._answer(batch, np.array([slot]), np.array([now])).ravel().tolist()

    def settle(self, batch: Contributions) -> np.ndarray:
        """Answer the batch's queries, then add its contributions to the tiles."""
        slots = np.asarray(batch.query_slots, np.int64)
        answers = self._answer(batch, slots, np.asarray(batch.query_times, np.float64))
        if batch.slots:
            self._add(np.asarray(batch.slots, np.int64), np.asarray(batch.aggregates, np.int64),
                      np.asarray(batch.times, np.float64))
        return answers

    def _answer(self, batch: Contributions, slots: np.ndarray, now: np.ndarray) -> np.ndarray:
        n_aggregates, n_windows = len(self.aggregates), len(self.windows)
        answers = np.zeros((len(slots), n_aggregates, n_windows), np.int64)
        if not len(slots):
            return answers.reshape(0, n_aggregates * n_windows)
        last = {size: np.floor(now / size).astype(np.int64) for size in self.rings}
        first = [last[BUCKETS[w]] - span + 1 for w, span in zip(self.windows, self.spans, strict=True)]
        for size in self.rings:  # the tiles as they were before the batch
            tags, cells = self.tags[size][slots], self.cells[size][slots]
            for w, window in enumerate(self.windows):
                if BUCKETS[window] == size:
                    inside = (tags >= first[w][:, None]).astype(np.int32)
                    answers[:, :, w] += np.einsum("nr,nra->na", inside, cells)
        if batch.slots:  # the batch's own contributions, up to each query's place
            self._answer_from_batch(batch, slots, first, answers)
        return answers.reshape(len(slots), n_aggregates * n_windows)

    def _answer_from_batch(self, batch: Contributions, slots: np.ndarray, first: list[np.ndarray],
                           answers: np.ndarray) -> None:
        n_aggregates = len(self.aggregates)
        group = np.asarray(batch.slots, np.int64) * n_aggregates + np.asarray(batch.aggregates, np.int64)
        places = np.asarray(batch.places, np.int64)
        by = np.lexsort((places, group))  # by group, then place
        key = (group[by] << 32) | places[by]
        times = np.asarray(batch.times, np.float64)[by]
        buckets = {size: np.floor(times / size).astype(np.int64) for size in self.rings}
        query_places = np.asarray(batch.query_places, np.int64)
        for a in range(n_aggregates):
            asked = (slots * n_aggregates + a) << 32
            lo = np.searchsorted(key, asked, "left")
            hi = np.searchsorted(key, asked | query_places, "right")
            pairs, query, index = _ranges(lo, hi)
            if not pairs:
                continue
            for w, window in enumerate(self.windows):
                hits = buckets[BUCKETS[window]][index] >= first[w][query]
                answers[:, a, w] += np.bincount(query[hits], minlength=len(slots))

    def _add(self, slots: np.ndarray, aggregates: np.ndarray, times: np.ndarray) -> None:
        for size, ring in self.rings.items():
            buckets = np.floor(times / size).astype(np.int64)
            where = (slots, buckets % ring)
            tags = self.tags[size]
            before = tags[where]
            np.maximum.at(tags, where, buckets)
            after = tags[where]
            newer = after != before  # a newer bucket takes the position: it starts at zero
            self.cells[size][slots[newer], where[1][newer]] = 0
            kept = buckets == after  # older than the position's bucket: outside every window
            np.add.at(self.cells[size], (slots[kept], where[1][kept], aggregates[kept]), 1)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Every ``(query, index)`` with ``lo[query] <= index < hi[query]``, and how many."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    query = np.repeat(np.arange(len(lo)), lengths)
    starts = np.cumsum(lengths) - lengths
    index = np.arange(total) - np.repeat(starts - lo, lengths)
    return total, query, index


@functools.cache
def tiles_for(layout: tuple[tuple[str, ...], tuple[str, ...]]) -> Tiles:
    """The one ``Tiles`` of a process for an ``(aggregates, windows)`` layout."""
    return Tiles(*layout)
