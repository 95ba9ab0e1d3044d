"""Event-time window aggregates: pure reducers with no I/O.

Each aggregate keeps its state in time buckets and answers "as of" the latest event time
it has seen (its watermark). A window of size ``W`` with bucket ``b`` covers the ``W/b``
buckets that end with the watermark's bucket, so windows hop by one bucket: 1 minute for
windows up to 1 hour, 1 hour for 24 hours and 7 days, 1 day for 30 days (``BUCKETS``).

A query may name a later ``now``, for example the time of another entity's event, and
the window then ends there instead.

Late events: an event older than the watermark still counts in its own bucket, and so
in every window that covers that bucket. Deciding which events are too late to accept
is the caller's business (``scorers.states`` judges it per source). Buckets older than
the longest window plus ``lateness_s`` are dropped, so the state stays bounded.

>>> clicks = WindowedStats(("10m", "1h"), lateness_s=300)
>>> for ts in (0, 30, 590, 650):
...     _ = clicks.update(ts)
>>> clicks.count("10m"), clicks.count("1h")   # at 650 s the 10 minutes start at 60 s
(2, 4)
>>> clicks.update(500).update(10).count("10m")   # 500 s is in the 10 minutes, 10 s is not
3
>>> clicks.count("1h")
6
"""

from __future__ import annotations

import functools
import math
from collections import deque

WINDOW_SECONDS = {"10m": 600, "1h": 3_600, "24h": 86_400, "1d": 86_400, "7d": 604_800,
                  "30d": 2_592_000}
"""Window names as they appear in feature names, and their length in seconds."""

BUCKETS = {"10m": 60, "1h": 60, "24h": 3_600, "1d": 3_600, "7d": 3_600, "30d": 86_400}
"""The bucket (and hop) of each window, in seconds."""


def _bucket(ts: float, size: int) -> int:
    return math.floor(ts / size)


@functools.cache
def _layout(windows: tuple[str, ...]) -> tuple[dict[int, int], dict[str, int]]:
    """For each bucket size the longest window using it, and each window's span in buckets."""
    unknown = set(windows) - set(WINDOW_SECONDS)
    if unknown:
        raise ValueError(f"unknown windows {sorted(unknown)}; known: {sorted(WINDOW_SECONDS)}")
    horizon: dict[int, int] = {}
    for window in windows:
        size = BUCKETS[window]
        horizon[size] = max(horizon.get(size, 0), WINDOW_SECONDS[window])
    return horizon, {w: WINDOW_SECONDS[w] // BUCKETS[w] for w in windows}


class _Bucketed:
    """Common book-keeping: the watermark, lateness and which bucket sizes are kept."""

    def __init__(self, windows: tuple[str, ...], lateness_s: float = 0.0):
        self.windows = windows
        self.lateness_s = lateness_s
        self.watermark = -math.inf
        self._horizon, self._spans = _layout(windows)  # shared by every aggregator alike

    def _advance(self, ts: float) -> None:
        self.watermark = max(self.watermark, ts)

    def _oldest_kept(self, size: int) -> int:
        """The oldest bucket any window or admissible late event can still reach."""
        reach = self._horizon[size] + self.lateness_s
        return _bucket(self.watermark - reach, size)

    def _first(self, window: str, now: float | None = None) -> tuple[int, int, int]:
        size = BUCKETS[window]
        last = _bucket(self.watermark if now is None else max(self.watermark, now), size)
        return size, last - WINDOW_SECONDS[window] // size + 1, last


SCALE = 1_000_000
"""Values are kept as exact integers of millionths (amounts to the micro-unit)."""


class WindowedStats(_Bucketed):
    """Count, sum, mean and standard deviation of a value over event-time windows.

    Window totals are kept up to date as events arrive and as time moves on (a bucket's
    values are subtracted when it leaves a window), so reading them costs nothing.

    Sums are exact: each value is rounded once to millionths (``SCALE``) and added as an
    integer, so the totals do not depend on the order events arrive in or on when buckets
    leave a window. Float sums would: ``(0.1 + 0.2) - 0.1`` is not ``0.2``, and two runs
    that read partitions interleaved differently, or a restart, would differ in the last
    digit.

    >>> amounts = WindowedStats(("1d", "7d"))
    >>> for day, amount in [(0, 10.0), (1, 30.0), (1, 20.0)]:
    ...     _ = amounts.update(day * 86_400 + 3_600, amount)
    >>> amounts.count("1d"), amounts.sum("1d"), amounts.mean("7d"), round(amounts.std("7d"), 3)
    (2, 50.0, 20.0, 8.165)
    """

    def __init__(self, windows: tuple[str, ...], lateness_s: float = 0.0):
        super().__init__(windows, lateness_s)
        # bucket size -> {bucket index: [count, sum, sum of squares]}, sums in SCALE units
        self._buckets: dict[int, dict[int, list[int]]] = {size: {} for size in self._horizon}
        # bucket size -> the newest bucket the window totals are computed up to
        self._last: dict[int, int | None] = dict.fromkeys(self._horizon)
        self._sums: dict[str, list[int]] = {w: [0, 0, 0] for w in windows}

    def _slide(self, size: int, last: int) -> None:
        """Move the windows of bucket ``size`` forward so that they end at bucket ``last``."""
        old = self._last[size]
        if old is not None and last <= old:
            return
        buckets = self._buckets[size]
        for window, span in self._spans.items():
            if BUCKETS[window] != size:
                continue
            total = self._sums[window]
            if old is None or last - old >= span:  # nothing of the old window survives
                total[:] = [0, 0, 0]
                leaving = []
            else:
                leaving = range(old - span + 1, last - span + 1)
            for index in leaving:
                cell = buckets.get(index)
                if cell is not None:
                    total[0] -= cell[0]
                    total[1] -= cell[1]
                    total[2] -= cell[2]
        self._last[size] = last
        if len(buckets) > self._horizon[size] // size + 2 and math.isfinite(self.lateness_s):
            oldest = _bucket(last * size - self._horizon[size] - self.lateness_s, size)
            for index in [i for i in buckets if i < oldest]:
                del buckets[index]

    def update(self, ts: float, value: float = 1.0) -> WindowedStats:
        """Add ``value`` at event time ``ts``."""
        self._advance(ts)
        value = SCALE if value == 1.0 else round(value * SCALE)
        square = value * value
        watermark, lasts = self.watermark, self._last
        for size, buckets in self._buckets.items():
            last = math.floor(watermark / size)
            if lasts[size] is None or last > lasts[size]:
                self._slide(size, last)
            index = math.floor(ts / size)
            cell = buckets.get(index)
            if cell is None:
                cell = buckets[index] = [0, 0, 0]
            cell[0] += 1
            cell[1] += value
            cell[2] += square
            age = self._last[size] - index
            for window, span in self._spans.items():
                if BUCKETS[window] == size and 0 <= age < span:
                    total = self._sums[window]
                    total[0] += 1
                    total[1] += value
                    total[2] += square
        return self

    def totals(self, now: float | None = None) -> dict[str, tuple[int, float, float]]:
        """``(count, sum, sum of squares)`` of every window ending at ``now``.

        A ``now`` later than the watermark moves the windows forward for good: time only
        goes forward, and later events older than ``now`` still land in their buckets.

        >>> stats = WindowedStats(("10m", "1h")).update(0, 2.0).update(900, 3.0)
        >>> stats.totals()
        {'10m': (1, 3.0, 9.0), '1h': (2, 5.0, 13.0)}
        """
        self._move_to(now)
        return {w: (c, t / SCALE, q / SCALE**2) for w, (c, t, q) in self._sums.items()}

    def counts(self, now: float | None = None) -> list[int]:
        """The count of every window ending at ``now``, in the order of ``windows``: what
        ``totals`` gives, for less, when only counts are needed."""
        self._move_to(now)
        return [total[0] for total in self._sums.values()]

    def _move_to(self, now: float | None) -> None:
        if now is not None and now > self.watermark:
            for size in self._buckets:
                self._slide(size, _bucket(now, size))

    def count(self, window: str, now: float | None = None) -> int:
        """Number of values in the window ending at ``now`` (default: the watermark)."""
        return self.totals(now)[window][0]

    def to_data(self) -> list:
        """The aggregate's content as plain lists, dicts and numbers (its layout, the
        windows and lateness, is the code's); ``load`` reads it back."""
        return [self.watermark, self._buckets, self._last, self._sums]

    def load(self, data: list) -> WindowedStats:
        """Take the content of ``to_data`` (of an aggregate with the same windows)."""
        self.watermark, buckets, last, sums = data
        self._buckets = {int(size): {int(i): list(cell) for i, cell in cells.items()}
                         for size, cells in buckets.items()}
        self._last = {int(size): index for size, index in last.items()}
        self._sums = {window: list(total) for window, total in sums.items()}
        return self

    def sum(self, window: str, now: float | None = None) -> float:
        """Sum of the values in the window."""
        return self.totals(now)[window][1]

    def mean(self, window: str, now: float | None = None) -> float:
        """Mean of the values in the window; 0 when it is empty."""
        n, total, _ = self.totals(now)[window]
        return total / n if n else 0.0

    def std(self, window: str, now: float | None = None) -> float:
        """Population standard deviation of the values in the window; 0 when empty."""
        n, total, squares = self.totals(now)[window]
        if not n:
            return 0.0
        return math.sqrt(max(squares / n - (total / n) ** 2, 0.0))


class WindowedDistinct(_Bucketed):
    """Number of distinct values seen in an event-time window, up to ``cap`` of them.

    At most ``cap`` values are kept: past it, the value whose last sighting arrived first
    is forgotten, so a flood of distinct values costs the same per update and the same
    memory as ``cap`` of them, and a count saturates at ``cap``. Values too old for any
    window are dropped when the number kept has doubled since the last sweep, so the
    sweeps cost O(1) per update over time.

    >>> devices = WindowedDistinct(("24h",))
    >>> for ts, device in [(0, "a"), (10, "b"), (20, "a"), (90_000, "c")]:
    ...     _ = devices.update(ts, device)
    >>> devices.count("24h")   # "a" and "b" were last seen more than a day before "c"
    1
    >>> ips = WindowedDistinct(("24h",), cap=3)
    >>> for n in range(10):
    ...     _ = ips.update(n, f"ip{n}")
    >>> ips.count("24h"), sorted(ips.to_data()[1])
    (3, ['ip7', 'ip8', 'ip9'])
    """

    def __init__(self, windows: tuple[str, ...], lateness_s: float = 0.0, cap: int = 1_000):
        super().__init__(windows, lateness_s)
        self.cap = cap
        self._last_seen: dict[str, float] = {}  # value -> latest event time, by arrival
        self._sweep_at = 64

    def update(self, ts: float, value: str) -> WindowedDistinct:
        """Note that ``value`` was seen at ``ts``."""
        self._advance(ts)
        seen = self._last_seen.pop(value, -math.inf)  # in again last: the latest to arrive
        self._last_seen[value] = max(seen, ts)
        if len(self._last_seen) > self.cap:
            del self._last_seen[next(iter(self._last_seen))]
        if len(self._last_seen) > self._sweep_at:
            self._sweep()
        return self

    def _sweep(self) -> None:
        size = max(self._horizon)
        oldest = self._oldest_kept(size)
        self._last_seen = {v: t for v, t in self._last_seen.items() if _bucket(t, size) >= oldest}
        self._sweep_at = max(64, 2 * len(self._last_seen))

    def to_data(self) -> list:
        """The content as plain data; see ``WindowedStats.to_data``."""
        return [self.watermark, self._last_seen]

    def load(self, data: list) -> WindowedDistinct:
        """Take the content of ``to_data`` (its last ``cap`` values, if it has more)."""
        self.watermark, last_seen = data
        values = list(last_seen.items())
        self._last_seen = dict(values[-self.cap:])
        self._sweep_at = max(64, 2 * len(self._last_seen))
        return self

    def count(self, window: str, now: float | None = None) -> int:
        """Distinct values whose last sighting falls in the window."""
        size, first, _ = self._first(window, now)
        return sum(1 for ts in self._last_seen.values() if _bucket(ts, size) >= first)


class LastN:
    """The most recent ``n`` values, oldest first (a session's last items viewed).

    >>> items = LastN(3)
    >>> for item in "abcd":
    ...     _ = items.update(item)
    >>> items.get()
    ['b', 'c', 'd']
    """

    def __init__(self, n: int):
        self.n = n
        self._values: deque = deque(maxlen=n)

    def update(self, value) -> LastN:
        """Append a value, dropping the oldest beyond ``n``."""
        self._values.append(value)
        return self

    def get(self) -> list:
        """The values, oldest first."""
        return list(self._values)

    def to_data(self) -> list:
        """The values, oldest first, as plain data."""
        return list(self._values)

    def load(self, data: list) -> LastN:
        """Take the values of ``to_data``."""
        self._values = deque(data, maxlen=self.n)
        return self
