"""``shopstream eval drift`` on a few seeds: what each detector finds, and the bar's check."""

from __future__ import annotations

import numpy as np
import pytest

from evals import drift as ed


@pytest.fixture(scope="module")
def table():
    scenarios = [s for s in ed.SCENARIOS if s.name in ("mean +1.0 sd", "error 0.15 -> 0.5")]
    runs = ed.evaluate(seeds=2, null_length=5_000, ert=2_000, workers=1, scenarios=scenarios)
    return ed.summary(runs)


def row(table, scenario, detector):
    return table[(table.scenario == scenario) & table.detector.str.startswith(detector)].iloc[0]


def test_a_large_shift_is_found_and_the_baseline_fires_at_its_fixed_rate(table):
    assert row(table, "mean +1.0 sd", "adwin (River").recall == 1.0
    assert row(table, "mean +1.0 sd", "calibrated_ks").mean_delay < 200
    assert row(table, "null (numeric)", "every 500").false_alarms_per_10k == pytest.approx(20.0)
    assert np.isinf(row(table, "null (numeric)", "adwin (River").mean_run_between_false_alarms)


def test_the_bar_judges_detection_only_for_detectors_quiet_on_the_null_run(table):
    bar = ed.bar_check(table, ert=2_000)
    baseline = bar[bar.detector.str.startswith("every")]
    assert not baseline.holds.any()  # it finds the jump late and alarms every 500 values
    assert set(bar.criterion) >= {"null run: at most 0.1 false alarms per 10,000 values"}


def test_scenarios_plant_their_change_where_they_say():
    rng = np.random.default_rng(0)
    values, _ = ed._gaussian(rng, 20_000, shift=1.0)
    assert abs(values[:ed.CHANGE_AT].mean()) < 0.1 and abs(values[ed.CHANGE_AT:].mean() - 1.0) < 0.05
    ramp, _ = ed._gaussian(rng, ed.CHANGE_AT + 1_000, shift=1.0, ramp=500)
    assert ramp[ed.CHANGE_AT + 500:].mean() == pytest.approx(1.0, abs=0.15)


def test_real_runs_plant_amounts_in_the_second_half_and_count_drifts_around_the_change():
    from datetime import UTC, datetime, timedelta

    from shopstream.events import Click, DriftSignal, Order, OrderItem

    t0 = datetime(2018, 6, 22, tzinfo=UTC)
    events = [Order(order_id=f"o{i}", user_id="u", amount=10, payment_fingerprint="c",
                    items=[OrderItem(item_id="i", price=10)], ts=t0 + timedelta(hours=i)) for i in range(10)]
    events.insert(3, Click(session_id="s", user_id="u", item_id="i", ts=t0 + timedelta(hours=2.5)))
    planted = ed.plant_amounts(3.0)(events)
    amounts = [float(e.amount) for e in planted if isinstance(e, Order)]
    assert amounts == [10.0] * 5 + [30.0] * 5  # from the middle of the window (4.5 h) on

    def signal(hours, subject, severity="drift"):
        end = t0 + timedelta(hours=hours)
        return DriftSignal(signal_id=f"{subject}{hours}", model="m", model_version="1", stream="fraud",
                           subject=subject, detector="adwin", statistic="mean_change", value=1, threshold=0,
                           n=10, severity=severity, window_start=t0, window_end=end, ts=end, latency_ms=0)

    orders = [e for e in planted if isinstance(e, Order)]
    metrics = ed.signal_metrics([signal(2, "pca_error"), signal(3, "score", "warn"), signal(7, "amount_log")],
                                orders, planted_at=t0 + timedelta(hours=4.5))
    assert metrics["drifts_before_change"] == 1 and metrics["orders_before_change"] == 5
    assert metrics["first_drift_after_change"]["amount_log"]["delay_orders"] == 3  # the orders at 5, 6 and 7 h
