"""The drift watch of a fraud model, on planted changes and on a stream that did not change."""

from __future__ import annotations

import numpy as np
import pytest

from scorers.monitor import FraudMonitor
from scorers.profiles import ModelProfile

NAMES = ["amount", "velocity", "age", "follows_velocity"]


def inputs(rng, n, broken=False):
    x = rng.normal(0, 1, (n, 4))
    x[:, 3] = (-1 if broken else 1) * x[:, 1] + 0.1 * rng.normal(0, 1, n)  # follows velocity
    return x


@pytest.fixture(scope="module")
def profile():
    rng = np.random.default_rng(0)
    return ModelProfile.of(NAMES, inputs(rng, 20_000), scores=rng.beta(2, 5, 4_000), error_rate=0.1)


def drifts(found):
    return {(f.subject, f.finding.detector) for f in found if f.finding.severity == "drift"}


def run(profile, n, *, broken_from=None, score=lambda rng: float(rng.beta(2, 5)), seed=1):
    rng = np.random.default_rng(seed)
    watch = FraudMonitor(profile, ert=5_000, window=500)
    found, first = [], {}
    for i in range(n):
        x = inputs(rng, 1, broken=broken_from is not None and i >= broken_from)[0]
        s = score(rng) if broken_from is None or i < broken_from else score(rng) if score else 0.0
        for f in watch.scored(x, s, "review" if s >= 0.5 else "allow", ts=float(i)):
            found.append(f)
            first.setdefault((f.subject, f.finding.detector, f.finding.severity), i)
    return found, first


def test_an_unchanged_stream_raises_no_drift(profile):
    found, _ = run(profile, 6_000)
    assert drifts(found) == set()


def test_a_broken_relation_between_inputs_is_found_by_the_pca_error_alone(profile):
    found, first = run(profile, 3_000, broken_from=1_000)
    assert ("pca_error", "adwin") in drifts(found)
    assert 1_000 <= first["pca_error", "adwin", "drift"] < 1_300
    # each input alone looks as it did in training
    assert not {subject for subject, _ in drifts(found)} & set(NAMES)


def bursty_rows(rng, n: int, bursts: bool) -> np.ndarray:
    """Rows whose fourth input follows the first, but for 2 % that break the relation
    wildly: scattered, or in runs of ten (as a card-testing burst places its orders)."""
    x = rng.normal(0, 1, (n, 4))
    x[:, 3] = x[:, 0] + 0.1 * rng.normal(0, 1, n)
    odd = np.zeros(n, bool)
    if bursts:
        for start in rng.choice(n - 10, n // 500, replace=False):
            odd[start:start + 10] = True
    else:
        odd[rng.choice(n, n // 50, replace=False)] = True
    x[odd, 3] += rng.normal(0, 8, odd.sum())
    return x


@pytest.mark.parametrize("seed", range(3))
def test_runs_of_odd_orders_in_unchanged_traffic_raise_no_pca_drift(seed):
    """Seen failing before (7 to 10 drifts per run here, and in the integration test's
    unchanged days): ADWIN took the raw reconstruction error, whose tail is heavy, so a
    run of odd orders looked like a change. It now takes the error's rank among the
    reference's errors."""
    rng = np.random.default_rng(seed)
    profile = ModelProfile.of(list("abcd"), bursty_rows(rng, 4_000, bursts=False), scores=rng.beta(1, 9, 1_000))
    watch = FraudMonitor(profile, ert=2_000, window=500)
    found = [f for i, row in enumerate(bursty_rows(rng, 5_000, bursts=True))
             for f in watch.scored(row, float(rng.beta(1, 9)), "allow", ts=float(i))]
    assert not [f for f in found if f.subject == "pca_error" and f.finding.severity == "drift"]


def test_a_shifted_score_distribution_is_found(profile):
    rng = np.random.default_rng(2)
    watch = FraudMonitor(profile, ert=5_000, window=500)
    found = []
    for i in range(3_000):
        s = float(rng.beta(2, 5) if i < 1_000 else rng.beta(3, 4))
        found += watch.scored(inputs(rng, 1)[0], s, "review" if s >= 0.5 else "allow", ts=float(i))
    score = [f for f in found if f.subject == "score" and f.finding.severity == "drift"]
    assert score and min(f.window_end for f in score) >= 1_000
    assert {f.finding.detector for f in score} >= {"calibrated_ks"}
    assert ("review_rate", "adwin") in drifts(found)


def test_errors_are_watched_in_order_time_whatever_order_labels_come_in(profile):
    rng = np.random.default_rng(3)
    watch = FraudMonitor(profile, ert=5_000, window=500)
    labels = [(float(t), bool(rng.random() < (0.1 if t < 2_000 else 0.4))) for t in range(4_000)]
    order = rng.permutation(len(labels))  # labels arrive shuffled within the stream
    found = []
    for k, i in enumerate(order):
        ts, error = labels[i]
        found += watch.labelled(ts, error, watermark=float(k) - 500)
    found += watch.labelled(1e9, False, watermark=1e9)
    errors = [f for f in found if f.subject == "error"]
    assert errors and 2_000 <= errors[0].window_end < 2_400


def test_skipped_inputs_are_not_watched_one_by_one(profile):
    """Seen failing before: calendar inputs alarmed on unchanged days (a window of orders
    follows the clock), so the drift role skips them."""
    rng = np.random.default_rng(3)
    watch = FraudMonitor(profile, ert=5_000, window=500, skip=["amount"])
    found = []
    for i in range(1_500):
        x = inputs(rng, 1)[0]
        x[0] += 3.0  # the skipped input moves far
        found += watch.scored(x, float(rng.beta(2, 5)), "allow", ts=float(i))
    assert not {s for s, _ in drifts(found)} & {"amount"}


def test_pending_orders_forget_the_oldest_and_signals_name_their_window():
    from scorers.drift import Finding
    from scorers.monitor import Found, PendingOrders, signal_of

    pending = PendingOrders(capacity=3)
    for i in range(5):
        pending.add(f"o{i}", float(i), flagged=i % 2 == 0)
    assert pending.pop("o1") is None and pending.pop("o4") == (4.0, True) and len(pending) == 2
    found = Found("error", Finding("adwin", "mean_change", -0.05, 0.0, "drift", 800,
                                   {"before": 0.2, "after": 0.15, "delta": 0.002}), 100.0, 200.0)
    signal = signal_of(found, "fraud-model", "7", label_coverage=0.5)
    assert (signal.direction, signal.window_start.timestamp(), signal.window_end.timestamp()) == ("down", 100.0, 200.0)
    assert signal.params["delta"] == 0.002 and signal.label_coverage == 0.5 and signal.drifted


def test_recs_watch_finds_a_falling_hit_rate_and_stays_quiet_while_it_holds():
    from scorers.monitor import RecsMonitor
    from scorers.online import LiveGrades
    from scorers.profiles import RecsProfile

    rng = np.random.default_rng(5)
    items = [f"i{k}" for k in range(50)]
    watch = RecsMonitor(RecsProfile.of(rng.choice(items, 5_000)), window=1_000)
    grades = LiveGrades()
    found = []
    for n in range(12_000):
        session = f"s{n % 300}"
        hit_rate = 0.3 if n < 8_000 else 0.15  # the next click is in the list less often
        clicked = items[0] if rng.random() < hit_rate else str(rng.choice(items[1:]))
        graded = grades.answered(session, clicked, "1", "champion", [items[0]], float(n))
        hit = graded[0][2] == "hit" if graded else None
        for f in watch.answered(clicked, hit, "sequence+popular", float(n)):
            found.append((n, f.subject, f.finding.severity))
    hits = [n for n, subject, severity in found if subject == "hit_rate" and severity == "drift"]
    assert hits and all(n >= 8_000 for n in hits) and hits[0] < 9_500
    assert not [f for f in found if f[1].startswith("strategy:")]  # the mix never changed
