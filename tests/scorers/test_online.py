"""Online judgement (``scorers.online``, ``evals.judge.promotion``) on hand-made rows:
the graders agree with the offline metrics on the same rows, and promotion follows the
evidence."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from evals.judge import Judgement, promotion
from scorers.challenge import Challenge
from scorers.online import (
    LiveGrades,
    Scored,
    compare_credits,
    compare_fraud,
    compare_hits,
    fraud_metrics,
    rank_of,
    recs_metrics,
)

RNG = np.random.default_rng(3)
LABELS = RNG.random(3_000) < 0.08
GOOD = np.clip(LABELS * 0.5 + RNG.random(3_000) * 0.6, 0, 1)
POOR = np.clip(LABELS * 0.1 + RNG.random(3_000) * 0.6, 0, 1)


def test_the_fraud_graders_are_the_offline_metrics_on_the_same_rows():
    got = fraud_metrics(Scored(GOOD, LABELS), review=0.5, block=0.9)
    assert got["auc"] == pytest.approx(roc_auc_score(LABELS, GOOD))
    assert got["ap"] == pytest.approx(average_precision_score(LABELS, GOOD))
    flagged = GOOD >= 0.5
    assert got["precision@review"] == pytest.approx((flagged & LABELS).sum() / flagged.sum())
    assert got["recall@review"] == pytest.approx((flagged & LABELS).sum() / LABELS.sum())
    assert (got["n"], got["fraud"]) == (3_000, LABELS.sum())
    empty = fraud_metrics(Scored([0.2, 0.3], [False, False]), review=0.5, block=0.9)
    assert np.isnan(empty["auc"]) and np.isnan(empty["ap"]) and np.isnan(empty["precision@review"])


def test_the_bootstrap_finds_the_better_model_paired_and_apart_and_not_a_tie():
    ids = [f"o{i}" for i in range(3_000)]
    shadow = compare_fraud(Scored(POOR, LABELS, ids), Scored(GOOD[::-1], LABELS[::-1], ids[::-1]), paired=True)
    assert shadow.better == "challenger" and shadow.n == {"champion": 3_000, "challenger": 3_000}  # matched by id
    worse = compare_fraud(Scored(GOOD[:1500], LABELS[:1500]), Scored(POOR[1500:], LABELS[1500:]), paired=False,
                          metric="auc")
    assert worse.better == "champion" and worse.hi < 0
    same = compare_fraud(Scored(GOOD, LABELS), Scored(GOOD, LABELS), paired=True)
    assert same.diff == 0 and not same.significant and same.better is None


def test_the_recs_graders():
    assert [rank_of(["a", "b", "c"], x, 2) for x in ("a", "b", "c")] == [1, 2, None]
    assert recs_metrics([]) == {"n": 0.0, "hr": pytest.approx(float("nan"), nan_ok=True),
                                "mrr": pytest.approx(float("nan"), nan_ok=True)}
    hits = compare_hits([True] * 30 + [False] * 70, [True] * 60 + [False] * 40)
    assert hits.better == "challenger" and hits.diff == pytest.approx(0.3)
    assert compare_hits([True] * 50 + [False] * 50, [True] * 52 + [False] * 48).better is None
    assert compare_credits(5, 25).better == "challenger" and compare_credits(25, 5).better == "champion"
    assert compare_credits(0, 0).better is None


def judged(champion: np.ndarray, challenger: np.ndarray, n: int = 3_000) -> Judgement:
    verdict = compare_fraud(Scored(champion[:n], LABELS[:n]), Scored(challenger[:n], LABELS[:n]), paired=True)
    measures = {side: {"n": float(n)} for side in ("champion", "challenger")}
    return Judgement("fraud", Challenge("2", "shadow"), "1", measures, {"ap": verdict})


def test_promotion_follows_the_evidence():
    promote, why = promotion(judged(POOR, GOOD), "ap", min_graded=500)
    assert promote and "the challenger is better on ap at 95% confidence" in why
    promote, why = promotion(judged(GOOD, POOR), "ap", min_graded=500)
    assert not promote and "the champion is better" in why
    promote, why = promotion(judged(POOR, GOOD, n=300), "ap", min_graded=500)
    assert not promote and "not enough evidence: 300 graded" in why
    promote, why = promotion(judged(GOOD, GOOD), "ap", min_graded=500)
    assert not promote and "no significant difference" in why
    assert promotion(judged(POOR, GOOD), "auc", 500) == (False, "no auc to compare yet: no graded answers on one side")


def test_lists_of_ended_sessions_are_forgotten_by_event_time():
    """A session's last list can never be graded once the session has ended; it must not
    sit in memory until the count bound pushes it out (the soak's drift worker grew by
    them)."""
    live = LiveGrades(capacity=200_000, list_wait_s=3_600)
    for n in range(20_000):  # a session every 10 s for 2.3 days, each answered twice
        session, ts = f"s{n}", n * 10.0
        live.answered(session, None, "1", "champion", ["a", "b"], ts)
        live.answered(session, "a", "1", "champion", ["c"], ts + 5)
    assert live.waiting_lists() <= 3_600 / 10 + 1
    # A session still going is graded however many others ended.
    assert live.answered("s19999", "c", "1", "champion", ["d"], 199_999.0) == [("1", "champion", "hit")]
