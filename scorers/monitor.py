"""The drift watch of one fraud model: every detector of ``scorers.drift`` on the streams
a scoring worker already has, against the serving model's reference profile. Pure code,
no I/O; the ``drift`` role feeds it and sends what it finds.

Per scored order (``scored``): each numeric input but those in ``skip`` (windowed PSI, and
ADWIN with its delta shared by all the inputs watched), the inputs together (ADWIN on the
rank of the PCA reconstruction error among the reference's errors: bounded, as ADWIN's
bound assumes, where the error itself is heavy-tailed), the
score (Page-Hinkley on its mean, and a KS test calibrated to ``ert`` values between false
alarms), the review and block rates (ADWIN on the 0/1 streams), and, per window of
``window`` orders, precision and recall estimated from the scores. Per label
(``labelled``): the 0/1 error, watched by ADWIN in the order the orders happened, not the
order their labels came in.

A new champion brings a new profile and so a new ``FraudMonitor``: the detectors start
over against its reference.

>>> import numpy as np
>>> from scorers.profiles import ModelProfile
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(0, 1, (4_000, 2))
>>> profile = ModelProfile.of(["amount", "velocity"], x, scores=rng.beta(1, 9, 1_000), error_rate=0.1)
>>> watch = FraudMonitor(profile, ert=2_000, window=500)
>>> found = []
>>> for i, row in enumerate(rng.normal(0, 1, (1_000, 2))):
...     row[0] += 2.0 * (i >= 500)   # amounts move up halfway
...     found += watch.scored(row, float(rng.beta(1, 9)), "allow", ts=float(i))
>>> sorted({(f.subject, f.finding.detector) for f in found
...         if f.finding.severity == "drift" and f.subject in ("amount", "velocity")})
[('amount', 'adwin'), ('amount', 'windowed_distance')]
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from scorers.drift import (
    CALENDAR,
    Adwin,
    CalibratedKS,
    EventTimeOrder,
    Finding,
    PageHinkley,
    WindowedDistance,
    calendar_stratum,
    estimated_precision_recall,
)
from scorers.profiles import ModelProfile
from shopstream.events import DriftSignal

SCORE_BLOCK = 25
"""Orders per run drawn together when the score test is calibrated on a reference in event
time (``scorers.drift.calibrate_ks``): long enough to hold a burst of related orders."""
MIN_FLAGGED = 20
"""Flagged orders a window needs before its estimated precision and recall are judged."""


@dataclass(frozen=True)
class Found:
    """A finding, with what it is about and the event-time window it covers."""

    subject: str
    finding: Finding
    window_start: float
    window_end: float


class FraudMonitor:
    """Every drift detector of one fraud model, against its reference profile."""

    def __init__(self, profile: ModelProfile, ert: float = 10_000, window: int = 1_000, delta: float = 0.002,
                 review: float = 0.5, seed: int = 0, skip: Sequence[str] = ()):
        self.profile, self.ert, self.window, self.review = profile, ert, window, review
        self.names = list(profile.inputs)
        watched = [name for name in self.names if name not in skip]
        self._inputs = {name: (WindowedDistance(profile.inputs[name], window=window), Adwin(delta, watched=len(watched)))
                        for name in watched}
        self._pca = Adwin(delta)
        self._mean_score = PageHinkley()
        self._calendar = [self.names.index(name) for name in CALENDAR] if set(CALENDAR) <= set(self.names) else None
        self._scores = None
        if profile.scores is not None:
            # The whole reference, in event time where the profile has it: the calibration
            # draws it again in runs of neighbours (no held-out pool: the sorted sample's
            # every other value is no independent half). By calendar stratum where known.
            values, strata, block = profile.scores.sample, None, 1
            if profile.score_series:
                values, block = profile.score_series, SCORE_BLOCK
                if profile.series_strata and self._calendar is not None:
                    strata = profile.series_strata
            self._scores = CalibratedKS(values, window=min(200, window), every=10, ert=ert, seed=seed,
                                        strata=strata, block=block)
        self._rates = {"review_rate": Adwin(delta), "block_rate": Adwin(delta)}
        self._error = Adwin(delta)
        self._labels = EventTimeOrder()
        self._recent_scores: list[float] = []
        self._estimates: dict[str, WindowedEstimate] = {}
        if profile.scores is not None:  # the reference: what the validation scores promise
            precision, recall = estimated_precision_recall(profile.scores.sample, review)
            self._estimates = {"estimated_precision": WindowedEstimate(precision),
                               "estimated_recall": WindowedEstimate(recall)}
        self._times: deque[float] = deque(maxlen=self.window)

    def scored(self, row: Sequence[float], score: float, decision: str, ts: float) -> list[Found]:
        """Watch one scored order: its inputs (in ``profile.inputs`` order), score and
        decision at event time ``ts``; return what this order made the detectors find."""
        self._times.append(ts)
        found: list[Found] = []
        for name, value in zip(self.names, row, strict=True):
            for detector in self._inputs.get(name, ()):
                self._note(found, name, detector.update(float(value)))
        error = float(self.profile.reconstruction_error(np.asarray([row], np.float64))[0])
        self._note(found, "pca_error", self._pca.update(self.profile.errors.rank(error)))
        self._note(found, "score", self._mean_score.update(score))
        if self._scores is not None:
            stratum = None if self._calendar is None else calendar_stratum(*(row[i] for i in self._calendar))
            self._note(found, "score", self._scores.update(score, stratum))
        self._note(found, "review_rate", self._rates["review_rate"].update(float(decision != "allow")))
        self._note(found, "block_rate", self._rates["block_rate"].update(float(decision == "block")))
        self._recent_scores.append(score)
        if len(self._recent_scores) == self.window:
            flagged = sum(s >= self.review for s in self._recent_scores)
            if self._estimates and flagged >= MIN_FLAGGED:  # fewer: the estimate is noise
                precision, recall = estimated_precision_recall(self._recent_scores, self.review)
                for subject, value in (("estimated_precision", precision), ("estimated_recall", recall)):
                    self._note(found, subject, self._estimates[subject].update(value))
            self._recent_scores = []
        return found

    def labelled(self, order_ts: float, error: bool, watermark: float) -> list[Found]:
        """A label arrived for an order placed at ``order_ts``: ``error`` when its decision
        and the label disagree. Errors reach their detector in order time, once the
        labels' ``watermark`` has passed them."""
        self._labels.push(order_ts, (order_ts, float(error)))
        found: list[Found] = []
        for ts, value in self._labels.release(watermark):
            finding = self._error.update(value).finding
            if finding is not None:
                found.append(Found("error", finding, ts, ts))
        return found

    def _note(self, found: list[Found], subject: str, detector) -> None:
        if detector.finding is not None:
            found.append(Found(subject, detector.finding, self._times[0], self._times[-1]))


class WindowedEstimate:
    """An estimated metric window after window: a drift when it falls more than ``drop``
    below its ``reference`` (the estimate on the validation scores), a warning from half
    that on."""

    def __init__(self, reference: float, drop: float = 0.1):
        self.reference, self.drop = reference, drop
        self.finding: Finding | None = None

    def update(self, value: float) -> WindowedEstimate:
        fall = self.reference - value
        self.finding = None
        if fall >= self.drop / 2:
            self.finding = Finding("windowed_estimate", "drop", fall, self.drop if fall >= self.drop else self.drop / 2,
                                   "drift" if fall >= self.drop else "warn", 1, {"reference": self.reference})
        return self


class PendingOrders:
    """Scored orders waiting for their labels: order id to (event time, flagged). Past
    ``capacity`` the oldest scored are forgotten (their labels then grade nothing).

    >>> pending = PendingOrders(capacity=2)
    >>> for order in ("a", "b", "c"):
    ...     pending.add(order, 1.0, flagged=True)
    >>> pending.pop("a"), pending.pop("c"), len(pending)
    (None, (1.0, True), 1)
    """

    def __init__(self, capacity: int = 200_000):
        self.capacity = capacity
        self._orders: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def add(self, order_id: str, ts: float, flagged: bool) -> None:
        self._orders[order_id] = (ts, flagged)
        if len(self._orders) > self.capacity:
            self._orders.popitem(last=False)

    def pop(self, order_id: str) -> tuple[float, bool] | None:
        return self._orders.pop(order_id, None)

    def __len__(self) -> int:
        return len(self._orders)


DIRECTIONS = {"adwin": None, "windowed_estimate": "down"}


def signal_of(found: Found, model: str, version: str, stream: str = "fraud", n_reference: int | None = None,
              label_coverage: float | None = None) -> DriftSignal:
    """The ``DriftSignal`` of a finding; its id names the model version, subject, detector
    and window end, so a finding sent twice (a record read again) is one signal.

    >>> from scorers.drift import Finding
    >>> f = Found("score", Finding("adwin", "mean_change", 0.2, 0.0, "drift", 500, {"before": 0.1, "after": 0.3}),
    ...           0.0, 3600.0)
    >>> s = signal_of(f, "shopstream-fraud", "3")
    >>> s.signal_id, s.direction, s.key()
    ('shopstream-fraud:3:score:adwin:3600', 'up', 'shopstream-fraud:fraud:score')
    """
    finding = found.finding
    params = {k: v for k, v in finding.params.items() if isinstance(v, int | float | str)}
    direction = DIRECTIONS.get(finding.detector, "both")
    if finding.detector == "adwin":
        direction = "up" if params.get("after", 0) >= params.get("before", 0) else "down"
    end = datetime.fromtimestamp(found.window_end, UTC)
    return DriftSignal(
        signal_id=f"{model}:{version}:{found.subject}:{finding.detector}:{found.window_end:.0f}",
        model=model, model_version=version, stream=stream, subject=found.subject,
        detector=finding.detector, params=params, statistic=finding.statistic, value=finding.value,
        threshold=finding.threshold, ert=params.get("ert"), direction=direction, n=finding.n,
        n_reference=n_reference, label_coverage=label_coverage, severity=finding.severity,
        window_start=datetime.fromtimestamp(found.window_start, UTC), window_end=end, ts=end, latency_ms=0.0)


STRATEGIES = ("bought_together", "sequence", "covisit", "neighbours", "popular", "fallback")


class RecsMonitor:
    """The drift watch of a session recommender, per answered click or cart change
    (``answered``): the hit rate (whether the click was in the list the session was last
    given, graded by ``scorers.online.LiveGrades``; two-sided ADWIN), each strategy's share
    of the lists (ADWIN on whether it contributed), and, against the recommender's
    reference ``RecsProfile``, the popularity of the clicked items (Jensen-Shannon over its
    top items, the rest as one) and the share of clicked items it never saw in training
    (ADWIN).

    >>> from scorers.profiles import RecsProfile
    >>> watch = RecsMonitor(RecsProfile.of(["a", "b"] * 50), window=100)
    >>> found = []
    >>> for i in range(400):
    ...     found += watch.answered("a" if i < 200 else f"new-{i}", i < 200, "sequence", float(i))
    >>> sorted({f.subject for f in found if f.finding.severity == "drift"})
    ['hit_rate', 'popularity', 'unseen_items']
    """

    def __init__(self, profile=None, window: int = 1_000, delta: float = 0.002):
        self.profile = profile
        self._hit = Adwin(delta)
        self._strategies = {name: Adwin(delta, watched=len(STRATEGIES)) for name in STRATEGIES}
        self._popularity = WindowedDistance(profile.popularity, window=window) if profile else None
        self._unseen = Adwin(delta) if profile else None
        self.window = window
        self._times: deque[float] = deque(maxlen=window)

    def answered(self, clicked: str | None, hit: bool | None, strategy: str, ts: float) -> list[Found]:
        """A list of ``strategy`` sent at ``ts`` after a click on ``clicked`` (None for a
        cart change); ``hit``: whether the click was in the session's list before (None:
        no list of this version to grade)."""
        self._times.append(ts)
        found: list[Found] = []
        if hit is not None:
            self._note(found, "hit_rate", self._hit.update(float(hit)))
        if clicked is not None:
            if self.profile is not None:
                self._note(found, "popularity", self._popularity.update(clicked))
                self._note(found, "unseen_items", self._unseen.update(float(clicked not in self.profile.items)))
        parts = set(strategy.split("+"))
        for name, detector in self._strategies.items():
            self._note(found, f"strategy:{name}", detector.update(float(name in parts)))
        return found

    def _note(self, found: list[Found], subject: str, detector) -> None:
        if detector.finding is not None:
            found.append(Found(subject, detector.finding, self._times[0], self._times[-1]))
