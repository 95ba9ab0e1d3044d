"""Drift: reference profiles of what a model was trained on, and detectors that compare
a live stream with them. Pure code, no I/O.

A trainer stores a profile of what its model was trained on (``scorers.profiles``) with
its checkpoint; a worker feeds each live value to detectors built from it. Every
detector follows River's habit: ``update(x)`` returns the detector, and ``finding`` is
``None`` or the ``Finding`` that this update produced (a ``warn`` or a ``drift``).

- ``WindowedDistance``: every ``every`` values, the population stability index (numeric)
  or the Jensen-Shannon distance (categorical) of the last ``window`` values against the
  reference shares. PSI 0.1 is a moderate shift and 0.25 a major one, as the field uses
  them.
- ``Adwin``: River's ADWIN on a value stream (a feature, a 0/1 rate, an error), its
  ``delta`` divided by the number of streams watched together (Bonferroni), so that
  watching forty features does not make forty times the false alarms.
- ``PageHinkley``: River's Page-Hinkley on a mean, both directions.
- ``CalibratedKS``: a windowed two-sample Kolmogorov-Smirnov test against a reference
  sample, its threshold calibrated by bootstrap so that the expected run time between
  false alarms on an unchanged stream is ``ert`` values (as Alibi Detect calibrates its
  online detectors).

>>> import random
>>> rng = random.Random(0)
>>> profile = NumericProfile.of([rng.gauss(0, 1) for _ in range(5_000)])
>>> detector = WindowedDistance(profile, window=500)
>>> found = [detector.update(rng.gauss(1.0, 1)).finding for _ in range(500)]
>>> found[-1].statistic, found[-1].severity, round(found[-1].value, 2)
('psi', 'drift', 0.9)
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scorers.profiles import CategoricalProfile, NumericProfile


@dataclass(frozen=True)
class Finding:
    """What a detector found on one update: which test, its value and threshold."""

    detector: str
    statistic: str
    value: float
    threshold: float
    severity: str  # "warn" or "drift"
    n: int  # values the test looked at
    params: dict = field(default_factory=dict)


# --- distances --------------------------------------------------------------------------

def psi(expected: Sequence[float], counts: Sequence[int], floor: float = 1e-4) -> float:
    """Population stability index of observed bin ``counts`` against ``expected`` shares;
    empty bins count as ``floor`` so that the index stays finite.

    >>> psi([0.5, 0.5], [50, 50])
    0.0
    >>> round(psi([0.5, 0.5], [90, 10]), 3)
    0.879
    """
    p = np.maximum(np.asarray(expected, np.float64), floor)
    q = np.maximum(np.asarray(counts, np.float64) / max(sum(counts), 1), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(expected: Sequence[float], counts: Sequence[int]) -> float:
    """Jensen-Shannon distance (base 2, between 0 and 1) of observed ``counts`` against
    ``expected`` shares.

    >>> js_distance([0.5, 0.5], [5, 5]), js_distance([1.0, 0.0], [0, 7])
    (0.0, 1.0)
    """
    from scipy.spatial.distance import jensenshannon  # scipy.spatial loads on first use

    q = np.asarray(counts, np.float64)
    return float(jensenshannon(np.asarray(expected, np.float64), q / max(q.sum(), 1), base=2))


def ks_statistic(reference_sorted: np.ndarray, window: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two
    empirical distribution functions.

    >>> ks_statistic(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.5, 4.5]))
    0.75
    """
    w = np.sort(window)
    points = np.concatenate([reference_sorted, w])
    f_ref = np.searchsorted(reference_sorted, points, side="right") / len(reference_sorted)
    f_win = np.searchsorted(w, points, side="right") / len(w)
    return float(np.max(np.abs(f_ref - f_win)))


def matched_ks_statistic(references: dict[str, np.ndarray], window: np.ndarray, strata: Sequence[str]) -> float:
    """The KS statistic of ``window`` against the reference mixed as the window is: each
    stratum's sorted reference sample (``references``) weighted by the share of the
    window's values in that stratum (``strata``, one per value).

    >>> refs = {"day": np.array([1.0, 2.0]), "night": np.array([5.0, 6.0])}
    >>> matched_ks_statistic(refs, np.array([5.5, 6.5]), ["night", "night"])   # a night window
    0.5
    >>> ks_statistic(np.array([1.0, 2.0, 5.0, 6.0]), np.array([5.5, 6.5]))     # against the whole day
    0.75
    """
    w = np.sort(window)
    keys, counts = np.unique(np.asarray(strata), return_counts=True)
    refs = [references[k] for k in keys]
    points = np.concatenate([w, *refs])
    f_ref = sum(c * np.searchsorted(r, points, side="right") / len(r) for c, r in zip(counts, refs, strict=True))
    f_win = np.searchsorted(w, points, side="right") / len(w)
    return float(np.max(np.abs(f_ref / len(w) - f_win)))


class Mixture:
    """``matched_ks_statistic`` for many windows against one stratified reference: each
    stratum's distribution function is computed once, on the grid of all reference
    values, and a window's mixture is a weighted sum of those rows.

    Between two grid points the mixture is flat and the window's function only rises, so
    the largest gap is at a grid point or just before the next one: exact, not sampled.
    """

    def __init__(self, references: dict[str, np.ndarray]):
        self.keys = list(references)
        self.index = {key: i for i, key in enumerate(self.keys)}
        self.grid = np.unique(np.concatenate(list(references.values())))
        self.cdf = np.stack([np.searchsorted(references[k], self.grid, side="right") / len(references[k])
                             for k in self.keys])

    def statistic(self, window: np.ndarray, strata: np.ndarray) -> float:
        """``strata``: each value's stratum as an index into ``keys``."""
        n, w = len(window), np.sort(window)
        mix = (np.bincount(strata, minlength=len(self.keys)) / n) @ self.cdf
        at = np.searchsorted(w, self.grid, side="right") / n
        gaps = [np.max(np.abs(at - mix)), np.searchsorted(w, self.grid[0], side="left") / n]
        if len(self.grid) > 1:
            gaps.append(np.max(np.abs(np.searchsorted(w, self.grid[1:], side="left") / n - mix[:-1])))
        return float(max(gaps))


CALENDAR = ("is_weekend", "hour_sin", "hour_cos")
"""The inputs a calendar stratum is read from."""
ALL = "*"
"""The stratum of values whose own stratum has too few reference values: the whole reference."""


def calendar_strata(names: Sequence[str], x: np.ndarray, hours: int = 6) -> list[str] | None:
    """Each row's calendar stratum, weekday or weekend and a block of ``hours`` hours, read
    from its calendar inputs; None when the inputs have none. A model that weighs the
    hour scores night orders unlike day ones, so a window of night orders is compared with
    the reference's night orders, not with a whole day (``CalibratedKS`` with strata).

    >>> import math
    >>> row = [1.0, math.sin(2 * math.pi * 3 / 24), math.cos(2 * math.pi * 3 / 24)]   # Saturday, 3 a.m.
    >>> calendar_strata(["is_weekend", "hour_sin", "hour_cos"], np.array([row]))
    ['weekend 00h']
    """
    if not set(CALENDAR) <= set(names):
        return None
    columns = [list(names).index(name) for name in CALENDAR]
    return [calendar_stratum(*(float(row[i]) for i in columns), hours=hours) for row in np.asarray(x, np.float64)]


def calendar_stratum(is_weekend: float, hour_sin: float, hour_cos: float, hours: int = 6) -> str:
    """One row's calendar stratum (``calendar_strata``), from its three calendar inputs."""
    hour = (math.degrees(math.atan2(hour_sin, hour_cos)) / 15) % 24
    return f"{'weekend' if is_weekend >= 0.5 else 'weekday'} {int(round(hour, 6) // hours * hours):02d}h"


def stratified(values: np.ndarray, strata: Sequence[str] | None, fewest: int = 30) -> dict[str, np.ndarray]:
    """Sorted reference samples by stratum, with ``ALL`` the whole; a stratum with fewer
    than ``fewest`` values is left to ``ALL``."""
    values = np.asarray(values, np.float64)
    found = {ALL: np.sort(values)}
    if strata is not None:
        strata = np.asarray(strata)
        for key in np.unique(strata):
            kept = values[strata == key]
            if len(kept) >= fewest:
                found[str(key)] = np.sort(kept)
    return found


# --- detectors --------------------------------------------------------------------------

class WindowedDistance:
    """Every ``every`` values (default: ``window``), the PSI (numeric profile) or
    Jensen-Shannon distance (categorical) of the last ``window`` values; a finding when it
    reaches ``warn`` (``drift`` from ``drift`` on). Defaults: PSI 0.1 and 0.25; for
    Jensen-Shannon 0.1 and 0.2."""

    def __init__(self, profile: NumericProfile | CategoricalProfile, window: int = 1_000,
                 every: int | None = None, warn: float | None = None, drift: float | None = None):
        self.profile, self.window, self.every = profile, window, every or window
        numeric = isinstance(profile, NumericProfile)
        self.statistic = "psi" if numeric else "jensen_shannon"
        self.warn = 0.1 if warn is None else warn
        self.drift = (0.25 if numeric else 0.2) if drift is None else drift
        self._shares = profile.shares if numeric else list(profile.shares.values())
        self._values: deque = deque(maxlen=window)
        self._seen = 0
        self.value: float | None = None
        self.finding: Finding | None = None

    def update(self, x) -> WindowedDistance:
        self.finding = None
        self._values.append(x)
        self._seen += 1
        if len(self._values) == self.window and self._seen % self.every == 0:
            counts = self.profile.counts(list(self._values))
            measure = psi if self.statistic == "psi" else js_distance
            self.value = measure(self._shares, counts)
            if self.value >= self.warn:
                self.finding = Finding("windowed_distance", self.statistic, self.value,
                                       self.drift if self.value >= self.drift else self.warn,
                                       "drift" if self.value >= self.drift else "warn", self.window,
                                       {"window": self.window, "every": self.every})
        return self


class Adwin:
    """River's ADWIN on a stream of numbers, with ``delta`` shared by the ``watched``
    streams looked at together (Bonferroni: each gets ``delta / watched``). Two-sided: a
    rise or a fall of the mean. A finding (always ``drift``) carries the mean before and
    after the cut as ``params`` and the change as ``value``.

    >>> detector = Adwin(delta=0.002)
    >>> found = [detector.update(float(i >= 1_000)).finding for i in range(1_200)]
    >>> first = next(i for i, f in enumerate(found) if f)
    >>> 1_000 <= first < 1_100, found[first].params["after"] > found[first].params["before"]
    (True, True)
    """

    def __init__(self, delta: float = 0.002, watched: int = 1, grace_period: int = 10):
        # river.drift imports scikit-learn: seconds, paid by the first watch, not at import.
        from river import drift as river_drift

        self.delta, self.watched, self.grace_period = delta, watched, grace_period

        self._adwin = river_drift.ADWIN(delta=delta / watched, grace_period=grace_period)
        self.finding: Finding | None = None

    def update(self, x: float) -> Adwin:
        self.finding = None
        before = self._adwin.estimation
        self._adwin.update(x)
        if self._adwin.drift_detected:
            after = self._adwin.estimation
            self.finding = Finding("adwin", "mean_change", after - before, 0.0, "drift", int(self._adwin.width),
                                   {"delta": self.delta, "watched": self.watched, "before": before,
                                    "after": after})
        return self


class PageHinkley:
    """River's Page-Hinkley test on a mean, in both directions."""

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0):
        from river import drift as river_drift  # as in ADWIN

        self.min_instances, self.delta, self.threshold = min_instances, delta, threshold
        self._test = river_drift.PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold,
                                             mode="both")
        self._n = 0
        self.finding: Finding | None = None

    def update(self, x: float) -> PageHinkley:
        self.finding = None
        self._n += 1
        self._test.update(x)
        if self._test.drift_detected:
            self.finding = Finding("page_hinkley", "cumulative_deviation", self.threshold, self.threshold,
                                   "drift", self._n, {"delta": self.delta, "min_instances": self.min_instances})
            self._n = 0
        return self


def calibrate_ks(reference: Sequence[float], window: int, every: int, ert: float, pool: Sequence[float] = (),
                 streams: int = 60, length: int | None = None, seed: int = 0,
                 strata: Sequence[str] | None = None, block: int = 1) -> float:
    """The KS threshold at which a ``CalibratedKS`` against ``reference`` raises a false
    alarm once every ``ert`` values on average on a stream that did not change.

    Bootstrap null streams are tested as the detector tests a live stream. They must
    carry how far the reference sample is from the distribution it came from: streams drawn
    from the reference alone would miss it, and alarm about twice as often as asked on a
    live stream (docs/drift.md, "How the KS threshold is calibrated"). So either
    the streams are drawn from ``pool``, training values held out of the reference, or,
    without one, each stream is tested against a reference drawn again from the reference
    (the two-sample bootstrap: both samples from the one empirical distribution, as both
    come from one distribution on an unchanged stream). With ``strata`` (one per reference
    value) the streams keep each value's stratum and the test is ``matched_ks_statistic``.
    With ``block`` > 1 the reference is in time order and is drawn in runs of ``block``
    neighbours (a moving-block bootstrap): live windows hold runs of related values, a
    burst of one card's orders, and a window of independent draws varies less than they
    do (docs/drift.md has the figures).
    For a threshold ``h`` each stream's run length is
    the first test at which the statistic passes ``h``. The expected run time is estimated
    from run lengths censored at the stream's ``length`` (the exponential MLE: time
    watched over alarms seen), and ``h`` is the smallest statistic at which it reaches
    ``ert``.
    """
    rng = np.random.default_rng(seed)
    values = np.asarray(reference, np.float64)
    labels = np.asarray(strata if strata is not None else [ALL] * len(values))
    pool = np.asarray(pool, np.float64)
    length = length or int(min(max(4 * ert, 20 * window), 200_000))
    tests = np.arange(window, length + 1, every)  # values seen at each test
    peaks = np.empty((streams, len(tests)))
    whole = stratified(values, None if strata is None else labels)
    for s in range(streams):
        if len(pool):
            refs, stream, kinds = whole, rng.choice(pool, length), np.full(length, ALL)
        else:
            again = _runs(rng, len(values), len(values), block)
            refs = stratified(values[again], None if strata is None else labels[again])
            drawn = _runs(rng, len(values), length, block)
            stream, kinds = values[drawn], labels[drawn]
        if strata is None:
            stats = [ks_statistic(refs[ALL], stream[t - window:t]) for t in tests]
        else:
            mixture = Mixture(refs)
            index = np.array([mixture.index.get(k, mixture.index[ALL]) for k in kinds])
            stats = [mixture.statistic(stream[t - window:t], index[t - window:t]) for t in tests]
        peaks[s] = np.maximum.accumulate(stats)
    candidates = np.unique(peaks)
    lo, hi = 0, len(candidates) - 1
    while lo < hi:  # the expected run time grows with the threshold
        mid = (lo + hi) // 2
        if _run_time(peaks, tests, candidates[mid]) >= ert:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def _runs(rng: np.random.Generator, n: int, length: int, block: int) -> np.ndarray:
    """``length`` indices into ``n`` values: runs of ``block`` neighbours from random starts.

    >>> runs = _runs(np.random.default_rng(0), 100, 10, 5)
    >>> len(runs), bool((np.diff(runs[:5]) == 1).all()), bool((runs < 100).all())
    (10, True, True)
    """
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, -(-length // block))
    return (starts[:, None] + np.arange(block)).reshape(-1)[:length]


def _run_time(peaks: np.ndarray, tests: np.ndarray, threshold: float) -> float:
    """Expected values between false alarms at ``threshold``: censored exponential MLE."""
    first = np.array([np.searchsorted(row, threshold, side="right") for row in peaks])
    alarms = first < len(tests)
    watched = np.where(alarms, tests[np.minimum(first, len(tests) - 1)], tests[-1]).sum()
    return math.inf if not alarms.any() else float(watched / alarms.sum())


class CalibratedKS:
    """A windowed two-sample KS test of the last ``window`` values against a reference
    sample, every ``every`` values, with the threshold that gives an expected run time of
    ``ert`` values between false alarms on an unchanged stream (``calibrate_ks``, with
    ``pool`` the training values held out of ``reference``, if any). After an alarm the
    window starts empty, so that one change is one alarm.

    With ``strata`` (one per reference value, such as ``calendar_strata``), each update
    names its value's stratum and the window is compared with the reference mixed as the
    window is (``matched_ks_statistic``): a window of night orders with the reference's
    night orders. With ``block`` > 1, ``reference`` is in time order and the calibration
    draws it in runs (``calibrate_ks``)."""

    def __init__(self, reference: Sequence[float], window: int = 200, every: int = 10, ert: float = 10_000,
                 pool: Sequence[float] = (), threshold: float | None = None, seed: int = 0,
                 strata: Sequence[str] | None = None, block: int = 1):
        self.window, self.every, self.ert = window, every, ert
        self._refs = stratified(reference, strata)
        self._reference = self._refs[ALL]
        self._matched = len(self._refs) > 1
        self._mixture = Mixture(self._refs) if self._matched else None
        self.threshold = threshold if threshold is not None else calibrate_ks(
            reference, window, every, ert, pool, seed=seed, strata=strata if self._matched else None, block=block)
        self._values: deque = deque(maxlen=window)
        self._strata: deque = deque(maxlen=window)
        self._since = 0
        self.finding: Finding | None = None

    def update(self, x: float, stratum: str | None = None) -> CalibratedKS:
        self.finding = None
        self._values.append(x)
        if self._mixture is not None:
            self._strata.append(self._mixture.index.get(stratum, self._mixture.index[ALL]))
        self._since += 1
        if len(self._values) == self.window and (self._since - self.window) % self.every == 0:
            value = (self._mixture.statistic(np.asarray(self._values), np.asarray(self._strata)) if self._matched
                     else ks_statistic(self._reference, np.asarray(self._values)))
            if value > self.threshold:
                self.finding = Finding("calibrated_ks", "ks", value, self.threshold, "drift", self.window,
                                       {"window": self.window, "every": self.every, "ert": self.ert})
                self._values.clear()
                self._strata.clear()
                self._since = 0
        return self


# --- labels and estimates ---------------------------------------------------------------

class EventTimeOrder:
    """Values released in event-time order once a watermark passes them: labels arrive in
    their own order, but an error rate is watched in the order the orders happened.

    >>> order = EventTimeOrder()
    >>> for ts, value in [(30, "c"), (10, "a"), (20, "b")]:
    ...     order.push(ts, value)
    >>> order.release(25), order.release(100)
    (['a', 'b'], ['c'])
    """

    def __init__(self):
        self._heap: list[tuple[float, int, object]] = []
        self._n = 0

    def push(self, ts: float, value) -> None:
        heapq.heappush(self._heap, (ts, self._n, value))
        self._n += 1

    def release(self, watermark: float) -> list:
        out = []
        while self._heap and self._heap[0][0] <= watermark:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)


def estimated_precision_recall(scores: Sequence[float], threshold: float) -> tuple[float, float]:
    """Precision and recall at ``threshold`` expected from calibrated fraud probabilities
    alone, before any label arrives (the idea of NannyML's CBPE): a score ``s`` at or above
    the threshold is a true positive with probability ``s``, one below a missed fraud with
    probability ``s``. An estimate, only as good as the calibration.

    >>> estimated_precision_recall([0.9, 0.8, 0.1, 0.2], 0.5)
    (0.85, 0.85)
    """
    s = np.asarray(scores, np.float64)
    flagged = s >= threshold
    tp, fp, fn = s[flagged].sum(), (1 - s[flagged]).sum(), s[~flagged].sum()
    precision = tp / (tp + fp) if flagged.any() else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    return round(float(precision), 12), round(float(recall), 12)


# --- retraining -------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """A drift signal as the retrain policy reads it."""

    stream: str  # "fraud" or "recs"
    subject: str  # an input's name, "score", "error", "estimated_precision", "hit_rate", ...
    severity: str  # "warn" or "drift"
    window_end: float  # event time, seconds
    signal_id: str = ""


@dataclass(frozen=True)
class RetrainPolicy:
    """When drift calls for training a model again, besides the schedule.

    A retrain is due on a confirmed drift of the labelled error; on an estimated metric
    (precision or recall from scores, before labels) drifting in two windows running; or
    on the score drifting together with at least ``input_share`` of the ``top_inputs`` most
    important inputs. Signals count together only while their windows end within
    ``recent_s`` of the newest: a score that drifted alone days ago, and was let pass, is
    no ground for a retrain when inputs drift later. Never on warnings alone, never when
    the offline data has grown by less than ``data_growth`` since the champion was trained
    (the same data would give the same model), and at most once per ``cooldown_s``.

    >>> policy = RetrainPolicy()
    >>> policy.decide([Seen("fraud", "error", "drift", 100.0)], now=100.0, last_retrain=None,
    ...               rows=1_200, champion_rows=1_000, important=["amount"])
    'the labelled error drifted'
    """

    cooldown_s: float = 86_400.0
    data_growth: float = 0.10
    input_share: float = 0.3
    top_inputs: int = 10
    recent_s: float = 86_400.0

    def decide(self, signals: Sequence[Seen], now: float, last_retrain: float | None, rows: int,
               champion_rows: int, important: Sequence[str]) -> str | None:
        """The reason to retrain now, or ``None``. ``signals``: those of one model;
        ``important``: its inputs, most important first."""
        if last_retrain is not None and now - last_retrain < self.cooldown_s:
            return None
        if rows < champion_rows * (1 + self.data_growth):
            return None
        found = self.grounds(signals, now, important)
        return None if found is None else found[0]

    def grounds(self, signals: Sequence[Seen], now: float, important: Sequence[str]) -> tuple[str, list[Seen]] | None:
        """The reason the recent drifted ``signals`` give, with the signals it rests on,
        whatever the cooldown and the data.

        >>> old, new = Seen("fraud", "score", "drift", 0.0, "old"), Seen("fraud", "a", "drift", 90_000.0, "new")
        >>> RetrainPolicy(input_share=1.0).grounds([old, new], now=90_000.0, important=["a"]) is None
        True
        """
        drifted = [s for s in signals if s.severity == "drift" and now - s.window_end <= self.recent_s]
        if error := [s for s in drifted if s.subject == "error"]:
            return "the labelled error drifted", error
        estimated = [s for s in drifted if s.subject.startswith("estimated_")]
        if len({s.window_end for s in estimated}) >= 2:
            return "an estimated metric drifted in two windows running", estimated
        top = list(important[:self.top_inputs])
        inputs = [s for s in drifted if s.subject in top]
        scores = [s for s in drifted if s.subject == "score"]
        count = len({s.subject for s in inputs})
        if scores and top and count >= math.ceil(self.input_share * len(top)):
            return f"the score drifted with {count} of the {len(top)} most important inputs", scores + inputs
        return None
