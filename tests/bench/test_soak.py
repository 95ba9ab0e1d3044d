"""The soak's verdict: a slope test that fails a rising series and passes a flat one."""

from __future__ import annotations

import random

from bench.soak import SOAK_USERS, freshness_p99, shop, trend


def test_a_steady_rise_fails_and_noise_around_a_level_passes():
    rng = random.Random(3)
    ts = [10.0 * i for i in range(120)]  # 20 minutes, a sample every 10 s
    leaking = [900 + 0.05 * t + rng.gauss(0, 5) for t in ts]  # +60 MiB over the window
    flat = [900 + rng.gauss(0, 5) for _ in ts]
    assert trend(ts, leaking, 0.05, 25.0)["rising"]
    assert not trend(ts, flat, 0.05, 25.0)["rising"]


def test_a_significant_rise_below_the_floor_passes():
    ts = [10.0 * i for i in range(120)]
    creeping = [900 + 0.01 * t for t in ts]  # +12 MiB: significant, but under 25 MiB
    result = trend(ts, creeping, 0.05, 25.0)
    assert result["p"] < 0.01 and not result["rising"]
    assert 45 < result["threshold"] < 46  # 5 % of the mean, above the floor


def test_freshness_p99_comes_from_the_interval_not_the_whole_run():
    before = [(0.1, 1000.0), (1.0, 1000.0), (30.0, 1000.0)]  # all fast so far
    now = [(0.1, 1000.0), (1.0, 1000.0), (30.0, 1100.0)]  # the last 100 all slow
    assert freshness_p99(now, before) == 30.0
    assert freshness_p99(before, before) is None


def test_the_soaks_shop_is_steady_before_the_judged_window():
    """The first soak drew 20,000 users over two days: new users (kept 60 days) arrived all
    along and the workers' memory rose with them, which the trend test cannot tell from a
    leak. Its shop now stops growing in the first third (a soak sends 100,000 events or
    more; a third of that here)."""
    events = list(shop(60_000, seed=17))
    span_days = (events[-1].ts - events[0].ts).total_seconds() / 86_400
    users = [e.user_id for e in events if getattr(e, "user_id", None)]
    regulars = {f"user-{i}" for i in range(SOAK_USERS)} & set(users)
    early = {u for u in users[: len(users) // 3] if u in regulars}
    assert span_days >= 3.5  # sessions (kept a day) expire as they start from the first quarter
    assert len(early) >= 0.9 * len(regulars)
    # Card testers' fresh accounts keep coming: four bursts a day, a few hundred in all.
    assert len(set(users) - regulars) < 400
