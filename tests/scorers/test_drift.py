"""Drift profiles, distances and detectors, in tables."""

from __future__ import annotations

import numpy as np
import pytest

from scorers.drift import (
    Adwin,
    CalibratedKS,
    EventTimeOrder,
    Mixture,
    PageHinkley,
    RetrainPolicy,
    Seen,
    WindowedDistance,
    calibrate_ks,
    estimated_precision_recall,
    js_distance,
    matched_ks_statistic,
    psi,
)
from scorers.profiles import (
    CategoricalProfile,
    ModelProfile,
    NumericProfile,
    profile_from_data,
    reservoir,
)


@pytest.mark.parametrize(
    ("expected", "counts", "value"),
    [
        ([0.5, 0.5], [10, 10], 0.0),
        ([0.25, 0.25, 0.25, 0.25], [25, 25, 25, 25], 0.0),
        ([0.5, 0.5], [60, 40], 0.0405),  # 0.1 ln(1.2) - 0.1 ln(0.8)
        ([0.5, 0.5], [100, 0], 4.6043),  # an empty bin counts as 1e-4: 0.5 ln 2 + 0.4999 ln 5000
        ([0.9, 0.1], [50, 50], 0.8789),
    ],
)
def test_psi(expected, counts, value):
    assert psi(expected, counts) == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize(
    ("expected", "counts", "value"),
    [
        ([0.5, 0.5], [3, 3], 0.0),
        ([1.0, 0.0], [0, 4], 1.0),
        ([0.5, 0.5, 0.0], [1, 1, 2], 0.5579),
    ],
)
def test_jensen_shannon(expected, counts, value):
    assert js_distance(expected, counts) == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize(
    ("shift", "severity"),
    [(0.0, None), (0.25, None), (0.5, "drift"), (1.0, "drift")],  # PSI about 0.007, 0.08, 0.27, 0.97
)
def test_windowed_psi_grades_mean_shifts(shift, severity):
    rng = np.random.default_rng(1)
    detector = WindowedDistance(NumericProfile.of(rng.normal(0, 1, 20_000)), window=2_000)
    findings = [detector.update(x).finding for x in rng.normal(shift, 1, 2_000)]
    assert all(f is None for f in findings[:-1])  # one test per full window
    assert (findings[-1] and findings[-1].severity) == severity


def test_windowed_jensen_shannon_sees_a_new_category_mix():
    rng = np.random.default_rng(2)
    profile = CategoricalProfile.of(rng.choice(["card", "wallet", "bank"], 10_000, p=[0.7, 0.2, 0.1]))
    same, mixed = WindowedDistance(profile, window=1_000), WindowedDistance(profile, window=1_000)
    for a, b in zip(rng.choice(["card", "wallet", "bank"], 1_000, p=[0.7, 0.2, 0.1]),
                    rng.choice(["card", "wallet", "crypto"], 1_000, p=[0.3, 0.2, 0.5]), strict=True):
        same.update(a)
        mixed.update(b)
    assert same.finding is None and same.value < 0.05
    assert mixed.finding.severity == "drift" and mixed.finding.statistic == "jensen_shannon"


@pytest.mark.parametrize("profile", [NumericProfile.of(range(1_000), bins=5),
                                     CategoricalProfile.of(list("aaabbc"), top=2)])
def test_profiles_survive_plain_data(profile):
    assert profile_from_data(profile.to_data()) == profile


def test_adwin_shares_its_delta_among_the_streams_watched():
    """Forty streams at delta 0.2 together: each tests at 0.2 / 40, so fewer false alarms
    on forty unchanged streams than forty detectors at 0.2 each."""
    rng = np.random.default_rng(3)
    streams = rng.normal(0, 1, (40, 5_000))

    def alarms(watched):
        count = 0
        for values in streams:
            detector = Adwin(delta=0.2, watched=watched)
            count += sum(detector.update(x).finding is not None for x in values)
        return count

    assert Adwin(delta=0.2, watched=40)._adwin.delta == pytest.approx(0.2 / 40)
    assert alarms(40) < alarms(1) / 3


@pytest.mark.parametrize(("before", "after"), [(0.15, 0.6), (0.6, 0.15)])  # a rise and a fall
def test_adwin_finds_a_rate_change_in_either_direction(before, after):
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.random(3_000) < before, rng.random(2_000) < after]).astype(float)
    detector = Adwin()
    found = [i for i, x in enumerate(values) if detector.update(x).finding]
    assert found and 3_000 <= found[0] < 3_300
    assert all(i >= 3_000 for i in found)


def test_page_hinkley_finds_a_mean_shift_in_both_directions():
    for sign in (1, -1):
        detector = PageHinkley(threshold=20)
        values = np.concatenate([np.zeros(500), np.full(500, sign * 1.0)])
        found = [i for i, x in enumerate(values) if detector.update(x).finding]
        assert found and 500 <= found[0] < 560


def test_calibrated_ks_runs_about_its_expected_time_between_false_alarms():
    """Calibrated from held-out training values, not from the reference itself: drawn from
    the reference, the streams miss the reference's own sampling error, and a live stream
    alarmed about twice as often as set (1,111 values apart for 2,000)."""
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, 10_000)
    reference, pool = train[:2_000], train[2_000:]
    threshold = calibrate_ks(reference, window=100, every=10, ert=2_000, pool=pool, streams=40, seed=2)
    detector = CalibratedKS(reference, window=100, every=10, ert=2_000, threshold=threshold)
    live = rng.normal(0, 1, 100_000)
    alarms = sum(detector.update(x).finding is not None for x in live)
    assert 0.6 * 2_000 <= len(live) / alarms <= 1.8 * 2_000
    shifted = CalibratedKS(reference, window=100, every=10, ert=2_000, threshold=threshold)
    found = next(i for i, x in enumerate(rng.normal(1, 1, 1_000)) if shifted.update(x).finding)
    assert found < 150  # one window of +1 sd is enough


def test_labels_are_released_in_event_time_order():
    order = EventTimeOrder()
    for ts, label in [(5, "e"), (1, "a"), (3, "c"), (2, "b"), (4, "d")]:
        order.push(ts, label)
    assert order.release(0) == []
    assert order.release(3) == ["a", "b", "c"]
    assert len(order) == 2 and order.release(10) == ["d", "e"]


@pytest.mark.parametrize(
    ("scores", "threshold", "expected"),
    [
        ([0.9, 0.8, 0.1, 0.2], 0.5, (0.85, 0.85)),
        ([1.0, 1.0, 0.0], 0.5, (1.0, 1.0)),
        ([0.3, 0.2], 0.5, (0.0, 0.0)),  # nothing flagged: nothing found
        ([0.6, 0.6], 0.5, (0.6, 1.0)),
    ],
)
def test_precision_and_recall_estimated_from_calibrated_scores(scores, threshold, expected):
    assert estimated_precision_recall(scores, threshold) == pytest.approx(expected)


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    kept = reservoir(range(100_000), 1_000, seed=1)
    assert len(kept) == 1_000 and 40_000 < np.mean(kept) < 60_000
    assert reservoir(range(10), 50) == list(range(10))


def test_a_model_profile_survives_plain_data_and_sees_a_broken_relation():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1, (3_000, 4))
    x[:, 3] = 2 * x[:, 1] + 0.05 * rng.normal(0, 1, 3_000)
    profile = ModelProfile.of(["a", "b", "c", "d"], x, scores=rng.random(500), error_rate=0.12)
    again = ModelProfile.from_data(profile.to_data())
    assert again == profile
    broken = x.copy()
    broken[:, 3] = rng.permutation(broken[:, 3])  # each input's own distribution unchanged
    assert np.median(again.reconstruction_error(broken)) > 20 * np.median(again.reconstruction_error(x))


NOW = 100_000.0


def _seen(*specs):
    """Signals ``(subject, severity, seconds before NOW)``."""
    return [Seen("fraud", subject, severity, NOW - ago, f"{subject}@{ago}") for subject, severity, ago in specs]


TOP = [f"input_{i}" for i in range(10)]


@pytest.mark.parametrize(
    ("signals", "last_retrain", "rows", "reason"),
    [
        (_seen(("error", "drift", 1)), None, 1_100, "the labelled error drifted"),
        (_seen(("error", "warn", 1)), None, 1_100, None),  # a warning alone never
        (_seen(("error", "drift", 1)), None, 1_099, None),  # less than 10 % more data
        (_seen(("error", "drift", 1)), 50_000.0, 1_100, None),  # within the cooldown
        (_seen(("error", "drift", 1)), -40_000.0, 1_100, "the labelled error drifted"),  # past it
        (_seen(("estimated_recall", "drift", 1)), None, 2_000, None),  # one window is not held
        (_seen(("estimated_recall", "drift", 1), ("estimated_precision", "drift", 2)), None, 2_000,
         "an estimated metric drifted in two windows running"),
        (_seen(("score", "drift", 1), ("input_0", "drift", 1), ("input_1", "drift", 1)), None, 2_000, None),
        (_seen(("score", "drift", 1), ("input_0", "drift", 1), ("input_1", "drift", 1), ("input_9", "drift", 1)),
         None, 2_000, "the score drifted with 3 of the 10 most important inputs"),
        (_seen(("input_0", "drift", 1), ("input_1", "drift", 1), ("input_2", "drift", 1)), None, 2_000, None),
        (_seen(("score", "drift", 1), ("other", "drift", 1), ("input_1", "drift", 1), ("input_2", "drift", 1)),
         None, 2_000, None),  # an input outside the top ten does not count
        (_seen(("score", "drift", 86_401), ("input_0", "drift", 1), ("input_1", "drift", 1), ("input_9", "drift", 1)),
         None, 2_000, None),  # the score drifted more than a day before its inputs
        (_seen(("estimated_recall", "drift", 90_000), ("estimated_recall", "drift", 1)), None, 2_000, None),
        (_seen(("error", "drift", 86_400)), None, 1_100, "the labelled error drifted"),  # a day ago still counts
    ],
)
def test_retrain_policy(signals, last_retrain, rows, reason):
    decided = RetrainPolicy().decide(signals, now=NOW, last_retrain=last_retrain, rows=rows,
                                     champion_rows=1_000, important=TOP)
    assert decided == reason


def test_a_retrain_rests_on_the_recent_signals_of_its_reason_only():
    """Seen failing in CI before the grounds were kept apart: the retrain triggered by a
    planted change cited, among its signals, a score drift of the unchanged days before it
    that alone had called for nothing (tests/integration/test_drift.py)."""
    signals = _seen(("score", "drift", 200_000), ("amount", "warn", 1), ("score", "drift", 2), ("input_0", "drift", 1),
                    ("input_1", "drift", 1), ("input_2", "drift", 3), ("other", "drift", 1))
    reason, grounds = RetrainPolicy().grounds(signals, now=NOW, important=TOP)
    assert reason == "the score drifted with 3 of the 10 most important inputs"
    assert sorted(s.signal_id for s in grounds) == ["input_0@1", "input_1@1", "input_2@3", "score@2"]


def test_calibrated_ks_without_a_pool_keeps_its_run_time_against_a_small_reference():
    """The monitor's case: a profile's few hundred scores and no held-out pool. Seen failing
    before: the monitor split the sorted sample into every other value, two halves nearly
    equal, so the calibration never saw the reference's own sampling error, and live
    streams alarmed several times as often as set (in the integration test, on every
    unchanged window)."""
    rng = np.random.default_rng(7)
    ert, live, alarms = 2_000, 0, 0
    for seed in range(8):  # the error is in the reference drawn, so average over several
        reference = np.sort(rng.beta(2, 5, 300))
        detector = CalibratedKS(reference, window=100, every=10, ert=ert, seed=seed)
        stream = rng.beta(2, 5, 20_000)
        alarms += sum(detector.update(x).finding is not None for x in stream)
        live += len(stream)
    assert 0.5 * ert <= live / max(alarms, 1) <= 2.0 * ert


def test_the_mixture_gives_the_matched_ks_statistic_exactly():
    rng = np.random.default_rng(3)
    refs = {"*": np.sort(rng.normal(0, 1, 300)), "night": np.sort(rng.normal(1, 1, 80)),
            "day": np.sort(rng.integers(0, 5, 120).astype(float))}  # ties too
    mixture = Mixture(refs)
    for _ in range(50):
        strata = rng.choice(list(refs), 60)
        window = np.where(strata == "day", rng.integers(0, 6, 60), rng.normal(0.5, 1.2, 60))
        assert mixture.statistic(window, np.array([mixture.index[k] for k in strata])) == pytest.approx(
            matched_ks_statistic(refs, window, strata))


def test_a_calendar_matched_ks_stays_quiet_on_a_window_of_nights():
    """A model that weighs the hour scores nights higher: against the whole day a window of
    night orders is a drift, against the reference's nights it is not."""
    rng = np.random.default_rng(4)
    hours = rng.integers(0, 24, 2_000)
    strata = ["night" if h < 6 else "day" for h in hours]
    scores = rng.beta(2, 8, 2_000) + 0.3 * (hours < 6)
    nights = rng.beta(2, 8, 200) + 0.3
    plain = CalibratedKS(scores, window=100, every=10, ert=2_000)
    matched = CalibratedKS(scores, window=100, every=10, ert=2_000, strata=strata)
    assert any(plain.update(x).finding for x in nights)
    assert not any(matched.update(x, "night").finding for x in nights)
