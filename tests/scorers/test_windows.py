"""Window arithmetic: boundaries, lateness, pruning."""

from __future__ import annotations

import math

import pytest

from scorers.windows import LastN, WindowedDistinct, WindowedStats

M, H, D = 60, 3_600, 86_400


@pytest.mark.parametrize(
    ("events", "window", "count"),
    [
        ([0], "10m", 1),
        ([0, 599], "10m", 2),  # same 10 one-minute buckets
        ([0, 600], "10m", 1),  # 600 is bucket 10; the window is buckets 1..10, 0 is out
        ([59, 600], "10m", 1),
        ([60, 600], "10m", 2),
        ([0, 659], "10m", 1),
        ([0, 3_599], "1h", 2),
        ([0, 3_600], "1h", 1),  # one-minute hops: bucket 0 leaves as bucket 60 arrives
        ([0, 23 * H], "24h", 2),
        ([0, 24 * H], "24h", 1),  # one-hour hops
        ([0, 7 * D - 1], "7d", 2),
        ([0, 7 * D], "7d", 1),
        ([0, 29 * D], "30d", 2),
        ([0, 30 * D], "30d", 1),  # one-day hops
        ([0, 30 * D + 5, 30 * D + 6], "30d", 2),
    ],
)
def test_window_boundaries(events, window, count):
    stats = WindowedStats((window,), lateness_s=math.inf)
    for ts in events:
        stats.update(ts)
    assert stats.count(window) == count


@pytest.mark.parametrize(
    ("events", "count_10m", "count_1h"),
    [
        ([1000, 900], 2, 2),  # out of order, same buckets
        ([1000, 200], 1, 2),  # late: outside the 10 minutes, inside the hour
        ([5000, 1000], 1, 1),  # older than every window: kept nowhere that counts
    ],
)
def test_out_of_order_events_land_in_their_own_buckets(events, count_10m, count_1h):
    stats = WindowedStats(("10m", "1h"), lateness_s=300)
    for ts in events:
        stats.update(ts)
    assert (stats.count("10m"), stats.count("1h")) == (count_10m, count_1h)


def test_mean_and_std_over_windows():
    amounts = WindowedStats(("1d", "7d"))
    for day, value in [(0, 10.0), (3, 20.0), (6, 30.0), (6, 40.0)]:
        amounts.update(day * D + H, value)
    assert amounts.count("1d") == 2 and amounts.mean("1d") == 35.0 and amounts.std("1d") == 5.0
    assert amounts.count("7d") == 4 and amounts.sum("7d") == 100.0
    assert amounts.std("7d") == pytest.approx(11.1803, abs=1e-4)
    assert amounts.mean("7d", now=20 * D) == 0.0  # an empty, later window


def test_query_at_a_later_time_slides_the_window():
    clicks = WindowedStats(("10m",))
    clicks.update(0)
    assert clicks.count("10m") == 1
    assert clicks.count("10m", now=599) == 1
    assert clicks.count("10m", now=600) == 0
    assert clicks.count("10m", now=-100) == 0  # windows never move back in time


def test_state_stays_bounded():
    stats = WindowedStats(("10m", "1h", "24h"))
    for ts in range(0, 10 * D, 7):
        stats.update(ts)
    assert len(stats._buckets[60]) <= 64 and len(stats._buckets[3600]) <= 28
    assert stats.count("10m") == pytest.approx(600 / 7, abs=2)


def test_distinct_counts_last_sighting():
    ips = WindowedDistinct(("24h",), lateness_s=H)
    for ts, ip in [(0, "a"), (H, "b"), (2 * H, "a"), (25 * H, "c")]:
        ips.update(ts, ip)
    assert ips.count("24h") == 2  # "a" seen at 2h is still inside 2h..25h; "b" is not
    for n in range(200):
        ips.update(30 * D + n, f"ip{n}")
    assert ips.count("24h") == 200 and len(ips._last_seen) <= 265


def test_unknown_window_is_refused():
    with pytest.raises(ValueError, match="unknown windows"):
        WindowedStats(("5m",))


def test_last_n_keeps_the_newest():
    assert LastN(2).update("a").update("b").update("c").get() == ["b", "c"]


def test_totals_do_not_depend_on_arrival_order_or_slides():
    # The same events arriving in two orders (two partitions read interleaved differently,
    # or a restart) give the same totals to the last bit, and a bucket leaving a window
    # leaves exactly what the window would hold had it never been there.
    events = [(0, 0.1), (30, 0.2), (45, 0.3), (59, 98.55), (90, 29.45), (95, 1e-3)]
    forward, backward = WindowedStats(("1h",)), WindowedStats(("1h",))
    for ts, value in events:
        forward.update(ts, value)
    for ts, value in reversed(events):
        backward.update(ts, value)
    assert forward.totals() == backward.totals()

    slid, fresh = WindowedStats(("10m",)), WindowedStats(("10m",))
    slid.update(0, 0.1).update(300, 0.2).update(300, 0.3)
    fresh.update(300, 0.2).update(300, 0.3)
    assert slid.totals(now=600) == fresh.totals(now=600)
    assert slid.sum("10m") == 0.5 and slid.mean("10m") == 0.25
