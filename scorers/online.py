"""Online judgement of a champion and its challenger, from what they answered and what
followed. Pure: the rows come from the topics (``evals.judge``).

Fraud: an order's label grades the score it got, days later. Each version is measured on
its labelled orders (AUC, AP, precision and recall at the review and block thresholds),
and the challenger is compared with the champion by a bootstrap of the difference: on
the same orders, resampled together, for a shadow (paired); on each side's own users,
resampled apart, for an A/B split.

Recommendations: the session's next click or cart add after a list is the truth a list is
graded on (HR@k, MRR@k). For interleaved lists it credits the team whose item it is
(``scorers.interleave.credit``), and the verdict is a sign test on the credits.

Live, the drift role grades each version as its answers meet their truth (``LiveGrades``):
the counts ``/metrics`` exports per version and variant.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> labels = rng.random(2_000) < 0.1
>>> good, poor = labels * 0.6 + rng.random(2_000) * 0.5, labels * 0.1 + rng.random(2_000) * 0.5
>>> v = compare_fraud(Scored(poor, labels), Scored(good, labels), paired=True, metric="ap")
>>> v.better, v.significant, v.lo > 0
('challenger', True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 500


@dataclass
class Scored:
    """One version's labelled scores: ``scores`` and ``labels`` (fraud: True) in order,
    with the order ids when the comparison pairs them."""

    scores: np.ndarray
    labels: np.ndarray
    ids: Sequence[str] | None = None

    def __post_init__(self):
        self.scores = np.asarray(self.scores, np.float64)
        self.labels = np.asarray(self.labels, bool)


def fraud_metrics(scored: Scored, review: float, block: float) -> dict[str, float]:
    """AUC, AP and the precision and recall at the review and block thresholds; NaN where
    the labels leave a metric undefined (no fraud, or no genuine order)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = scored.labels, scored.scores
    both = 0 < y.sum() < len(y)
    out = {"n": float(len(y)), "fraud": float(y.sum()),
           "auc": float(roc_auc_score(y, s)) if both else math.nan,
           "ap": float(average_precision_score(y, s)) if y.any() else math.nan}
    for name, threshold in (("review", review), ("block", block)):
        flagged = s >= threshold
        out[f"precision@{name}"] = float((flagged & y).sum() / flagged.sum()) if flagged.any() else math.nan
        out[f"recall@{name}"] = float((flagged & y).sum() / y.sum()) if y.any() else math.nan
    return out


def _metric(name: str, scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if not labels.any() or (name == "auc" and labels.all()):
        return math.nan
    return float(roc_auc_score(labels, scores) if name == "auc" else average_precision_score(labels, scores))


@dataclass(frozen=True)
class Verdict:
    """The challenger's ``metric`` minus the champion's, with its bootstrap interval at
    ``confidence``; ``better`` names the winner only when the interval excludes zero."""

    metric: str
    champion: float
    challenger: float
    diff: float
    lo: float
    hi: float
    confidence: float
    n: dict[str, int] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        return self.lo > 0 or self.hi < 0

    @property
    def better(self) -> str | None:
        return None if not self.significant else "challenger" if self.lo > 0 else "champion"


def compare_fraud(champion: Scored, challenger: Scored, *, paired: bool, metric: str = "ap",
                  confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP, seed: int = 0) -> Verdict:
    """The challenger against the champion on ``metric`` (auc or ap). ``paired``: both
    scored the same orders (a shadow), matched by ``ids`` when given, and are resampled
    together; else (A/B) each side is resampled on its own."""
    if paired and champion.ids is not None and challenger.ids is not None:
        where = {order: i for i, order in enumerate(challenger.ids)}
        common = [(i, where[order]) for i, order in enumerate(champion.ids) if order in where]
        a, b = (np.array([i for i, _ in common], int), np.array([j for _, j in common], int))
        champion = Scored(champion.scores[a], champion.labels[a])
        challenger = Scored(challenger.scores[b], challenger.labels[b])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(champion.labels), len(champion.labels))
        j = i if paired else rng.integers(0, len(challenger.labels), len(challenger.labels))
        diffs.append(_metric(metric, challenger.scores[j], challenger.labels[j])
                     - _metric(metric, champion.scores[i], champion.labels[i]))
    diffs = np.asarray(diffs)
    diffs = diffs[~np.isnan(diffs)]
    ours, theirs = _metric(metric, champion.scores, champion.labels), _metric(metric, challenger.scores,
                                                                               challenger.labels)
    tail = (1 - confidence) / 2
    lo, hi = (np.quantile(diffs, [tail, 1 - tail]) if len(diffs) else (math.nan, math.nan))
    return Verdict(metric, ours, theirs, theirs - ours, float(lo), float(hi), confidence,
                   {"champion": len(champion.labels), "challenger": len(challenger.labels)})


# --- recommendations --------------------------------------------------------------------

def rank_of(items: Sequence[str], clicked: str, k: int) -> int | None:
    """The 1-based rank of ``clicked`` in the first ``k`` of ``items``, or None.

    >>> rank_of(["a", "b", "c"], "b", 3), rank_of(["a", "b", "c"], "c", 2)
    (2, None)
    """
    for rank, item in enumerate(items[:k], start=1):
        if item == clicked:
            return rank
    return None


def recs_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """HR and MRR over lists whose next action is known (``ranks``: its rank, or None).

    >>> recs_metrics([1, None, 2, None])
    {'n': 4.0, 'hr': 0.5, 'mrr': 0.375}
    """
    n = len(ranks)
    if not n:
        return {"n": 0.0, "hr": math.nan, "mrr": math.nan}
    return {"n": float(n), "hr": sum(r is not None for r in ranks) / n,
            "mrr": sum(1.0 / r for r in ranks if r is not None) / n}


def compare_hits(champion: Sequence[bool], challenger: Sequence[bool], confidence: float = CONFIDENCE,
                 resamples: int = BOOTSTRAP, seed: int = 0, paired: bool = False) -> Verdict:
    """The challenger's hit rate against the champion's, by a bootstrap: of each side on
    its own sessions (A/B), or, ``paired``, of the events both answered (a shadow: the
    i-th of each is the same event), resampled together."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(champion, float), np.asarray(challenger, float)
    if not len(a) or not len(b):
        return Verdict("hr", math.nan, math.nan, math.nan, math.nan, math.nan, confidence,
                       {"champion": len(a), "challenger": len(b)})
    if paired:
        picks = rng.integers(0, len(a), (resamples, len(a)))
        diffs = b[picks].mean(1) - a[picks].mean(1)
    else:
        diffs = rng.choice(b, (resamples, len(b))).mean(1) - rng.choice(a, (resamples, len(a))).mean(1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return Verdict("hr", float(a.mean()), float(b.mean()), float(b.mean() - a.mean()), float(lo), float(hi),
                   confidence, {"champion": len(a), "challenger": len(b)})


def compare_credits(champion: int, challenger: int, confidence: float = CONFIDENCE) -> Verdict:
    """Interleaving's verdict: the challenger's share of the credited clicks against one
    half, with its exact (Clopper-Pearson) interval; ``diff`` is that share minus 0.5.

    >>> v = compare_credits(30, 70)
    >>> v.better, round(v.diff, 2)
    ('challenger', 0.2)
    >>> compare_credits(48, 52).better is None
    True
    """
    from scipy.stats import binomtest

    n = champion + challenger
    if not n:
        return Verdict("credit", math.nan, math.nan, math.nan, math.nan, math.nan, confidence,
                       {"champion": 0, "challenger": 0})
    interval = binomtest(challenger, n, 0.5).proportion_ci(confidence, method="exact")
    share = challenger / n
    return Verdict("credit", 1 - share, share, share - 0.5, interval.low - 0.5, interval.high - 0.5, confidence,
                   {"champion": champion, "challenger": challenger})


Graded = tuple[str, str, str]
"""One grade: ``(model version, variant, outcome)``."""


class LiveGrades:
    """Each served version's grades as they happen, as counts a Prometheus counter carries
    (``shopstream_online_graded_total``): a fraud score by the outcome of its decision
    once the order's label arrives (``tp``, ``fp``, ``fn``, ``tn``; review or block counts
    as flagged), a recommendation list by whether the session's next click is in it
    (``hit``, ``miss``). Champion, challenger and shadow are graded alike, each on its own
    answers, so rates per version come from the counters. At most ``capacity`` orders and
    sessions wait; the oldest are forgotten first (their grades are then never counted). A
    session's list waits ``list_wait_s`` of event time (the newest answer's) for its next
    click: a session left alone that long has ended, and its list would otherwise sit in
    memory until the count bound pushed it out.

    >>> live = LiveGrades(capacity=10)
    >>> live.scored("o1", "3", "champion", flagged=True)
    >>> live.scored("o1", "4", "shadow", flagged=False)
    >>> live.labelled("o1", is_fraud=True)
    [('3', 'champion', 'tp'), ('4', 'shadow', 'fn')]
    >>> live.labelled("o1", is_fraud=True)   # a label read again grades nothing twice
    []
    >>> live.answered("s", None, "3", "champion", ["a", "b"], ts=0.0)
    []
    >>> live.answered("s", "b", "3", "champion", ["c"], 10.0), live.answered("s", "b", "3", "champion", ["d"], 20.0)
    ([('3', 'champion', 'hit')], [('3', 'champion', 'miss')])
    >>> live.answered("t", None, "3", "champion", ["e"], 21.0 + live.list_wait_s), live.waiting_lists()
    ([], 1)
    """

    def __init__(self, capacity: int = 200_000, list_wait_s: float = 3_600.0) -> None:
        self.capacity, self.list_wait_s = capacity, list_wait_s
        self._orders: OrderedDict[str, list[tuple[str, str, bool]]] = OrderedDict()
        self._lists: OrderedDict[tuple[str, str], tuple[str, frozenset[str], float]] = OrderedDict()
        self._clock = float("-inf")

    def scored(self, order_id: str, version: str, variant: str, flagged: bool) -> None:
        """``version`` answered ``order_id`` as ``variant``; ``flagged``: review or block."""
        answers = self._orders.setdefault(order_id, [])
        if (version, variant, flagged) not in answers:  # a score sent again counts once
            answers.append((version, variant, flagged))
        self._bound(self._orders)

    def labelled(self, order_id: str, is_fraud: bool) -> list[Graded]:
        """The grades the label of ``order_id`` gives; the order is graded then forgotten."""
        grades = []
        for version, variant, flagged in self._orders.pop(order_id, []):
            outcome = ("t" if flagged == is_fraud else "f") + ("p" if flagged else "n")
            grades.append((version, variant, outcome))
        return grades

    def answered(self, session: str, clicked: str | None, version: str, variant: str,
                 items: Sequence[str], ts: float) -> list[Graded]:
        """``version`` sent ``items`` (as ``variant``) at event time ``ts`` after a click on
        ``clicked`` in ``session`` (None: a cart change). The click grades the list this
        variant sent the session before it; the new list waits for the next click."""
        grades = []
        key = (session, variant)
        if clicked is not None and (shown := self._lists.get(key)) is not None:
            grades.append((shown[0], variant, "hit" if clicked in shown[1] else "miss"))
        self._lists[key] = (version, frozenset(items), ts)
        self._lists.move_to_end(key)
        self._bound(self._lists)
        self._clock = max(self._clock, ts)
        while self._lists and next(iter(self._lists.values()))[2] < self._clock - self.list_wait_s:
            self._lists.popitem(last=False)  # least recently answered first
        return grades

    def waiting_lists(self) -> int:
        """Lists waiting for their session's next click."""
        return len(self._lists)

    def _bound(self, book: OrderedDict) -> None:
        while len(book) > self.capacity:
            book.popitem(last=False)
