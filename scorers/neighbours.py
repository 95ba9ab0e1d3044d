"""Non-neural session recommenders: popularity, co-visitation, bought-together, item-kNN
and V-SKNN.

All are pure: ``fit`` takes training sessions (``Session``: the items in the order they
were seen, and when the session ended), ``scores(items)`` takes the items of the
session being served, newest last, and returns ``{item: score}``. ``top`` turns scores
into a ranked list. The first three are strategies that the served recommender blends
(``scorers.recommend``); item-kNN and V-SKNN are the baselines of Ludewig et al. (UMUAI
2021) that ``shopstream eval recs`` compares against.

>>> sessions = [Session(("a", "b", "c"), 1.0), Session(("a", "b"), 2.0), Session(("d", "e"), 3.0)]
>>> top(CoVisitation().fit(sessions).scores(["a"]), 2)
[('b', 2.0), ('c', 0.5)]
>>> top(Popularity().fit(sessions).scores([]), 2)
[('a', 2.0), ('b', 2.0)]
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Session:
    """One training session: its items in the order seen, and when it ended (epoch s)."""

    items: tuple[str, ...]
    ts: float
    session_id: str = ""


Scores = dict[str, float]


def top(scores: Scores, k: int, exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
    """The ``k`` best ``(item, score)``, best first; ties go to the smaller item id, so the
    order never depends on dict order."""
    excluded = set(exclude)
    return heapq.nsmallest(k, ((i, s) for i, s in scores.items() if i not in excluded),
                           key=lambda pair: (-pair[1], pair[0]))


class Popularity:
    """Items by how often they were seen, recent sessions counting more.

    ``half_life_days`` halves the weight of a session per that many days before the
    newest session; ``None`` counts every session the same (the POP baseline).
    """

    def __init__(self, half_life_days: float | None = None, size: int = 1000):
        self.half_life_days = half_life_days
        self.size = size
        self._scores: Scores = {}

    def fit(self, sessions: Sequence[Session]) -> Popularity:
        newest = max((s.ts for s in sessions), default=0.0)
        counts: Counter = Counter()
        for session in sessions:
            weight = 1.0 if self.half_life_days is None else \
                0.5 ** ((newest - session.ts) / 86400 / self.half_life_days)
            for item in session.items:
                counts[item] += weight
        self._scores = dict(top(counts, self.size))
        return self

    def scores(self, items: Sequence[str]) -> Scores:
        return dict(self._scores)

    def state(self) -> Scores:
        """The fitted scores, as plain data (``from_state`` restores them).

        >>> Popularity.from_state(Popularity().fit([Session(("a", "b", "a"), 0)]).state()).scores(())
        {'a': 2.0, 'b': 1.0}
        """
        return dict(self._scores)

    @classmethod
    def from_state(cls, scores: Scores, **params) -> Popularity:
        model = cls(**params)
        model._scores = dict(scores)
        return model


class RecentPopularity:
    """Popularity from the newest ``keep`` sessions a worker saw, for its answers before
    there is a champion. ``refit(known, now)`` returns a new ``Popularity`` when one is
    due, else None: at every call while the one in use knows fewer than ``min_items``
    items (a worker that has just started would otherwise keep answering from its first
    handful of clicks, and a cart holding those few items would get nothing), then every
    ``refit_s`` seconds.

    >>> recent = RecentPopularity(keep=2, refit_s=10.0, min_items=5)
    >>> for item in "aab":
    ...     recent.add(Session((item,), 0.0))
    >>> recent.refit(known=0, now=0.0).scores(())  # the oldest "a" is gone
    {'a': 1.0, 'b': 1.0}
    >>> recent.refit(known=9, now=5.0) is None, recent.refit(known=3, now=5.0) is None
    (True, False)
    """

    def __init__(self, keep: int = 50_000, refit_s: float = 10.0, min_items: int = 40):
        self.refit_s, self.min_items = refit_s, min_items
        self._sessions: deque[Session] = deque(maxlen=keep)
        self._refitted = -math.inf

    def add(self, session: Session) -> None:
        self._sessions.append(session)

    def refit(self, known: int, now: float) -> Popularity | None:
        """A fresh ``Popularity`` if one is due (``known``: items the one in use knows)."""
        if not self._sessions or (known >= self.min_items and now - self._refitted < self.refit_s):
            return None
        self._refitted = now
        return Popularity().fit(list(self._sessions))


class CoVisitation:
    """Items seen near each other in the same sessions.

    A pair ``window`` or fewer positions apart gets ``1 / distance``, times the session's
    recency weight (``half_life_days``, as in ``Popularity``). Each item keeps its
    ``neighbours`` best partners. A session is scored from its last ``history`` items,
    the newest weighing most (``1 / age``, age 1 for the newest).
    """

    def __init__(self, window: int = 3, neighbours: int = 100, history: int = 5,
                 half_life_days: float | None = None):
        self.window = window
        self.neighbours = neighbours
        self.history = history
        self.half_life_days = half_life_days
        self._partners: dict[str, list[tuple[str, float]]] = {}

    def fit(self, sessions: Sequence[Session]) -> CoVisitation:
        newest = max((s.ts for s in sessions), default=0.0)
        pairs: dict[str, Counter] = defaultdict(Counter)
        for session in sessions:
            weight = 1.0 if self.half_life_days is None else \
                0.5 ** ((newest - session.ts) / 86400 / self.half_life_days)
            items = session.items
            for i, a in enumerate(items):
                for j in range(max(0, i - self.window), min(len(items), i + self.window + 1)):
                    if j != i and items[j] != a:
                        pairs[a][items[j]] += weight / abs(i - j)
        self._partners = {a: top(partners, self.neighbours) for a, partners in pairs.items()}
        return self

    def partners(self, item: str) -> list[tuple[str, float]]:
        return self._partners.get(item, [])

    def scores(self, items: Sequence[str]) -> Scores:
        scores: Scores = defaultdict(float)
        for age, item in enumerate(reversed(items[-self.history:]), start=1):
            for partner, weight in self._partners.get(item, ()):
                scores[partner] += weight / age
        return dict(scores)

    def state(self) -> dict[str, list[tuple[str, float]]]:
        return self._partners

    @classmethod
    def from_state(cls, partners: dict[str, list[tuple[str, float]]], **params) -> CoVisitation:
        model = cls(**params)
        model._partners = partners
        return model


class BoughtTogether(CoVisitation):
    """Items bought in the same orders: co-visitation over baskets, any distance apart.

    Fitted on one ``Session`` per order (its items); scores a cart from all its items.

    >>> bt = BoughtTogether().fit([Session(("tent", "pegs", "lamp"), 0.0), Session(("tent", "pegs"), 0.0)])
    >>> top(bt.scores(["tent"]), 2)
    [('pegs', 2.0), ('lamp', 1.0)]
    """

    def __init__(self, neighbours: int = 100, history: int = 20, half_life_days: float | None = None):
        super().__init__(window=10_000, neighbours=neighbours, history=history,
                         half_life_days=half_life_days)

    def fit(self, sessions: Sequence[Session]) -> BoughtTogether:
        # Distance means nothing in a basket: count each distinct pair once per order.
        unique = [Session(tuple(dict.fromkeys(s.items)), s.ts) for s in sessions]
        newest = max((s.ts for s in unique), default=0.0)
        pairs: dict[str, Counter] = defaultdict(Counter)
        for basket in unique:
            weight = 1.0 if self.half_life_days is None else \
                0.5 ** ((newest - basket.ts) / 86400 / self.half_life_days)
            for a in basket.items:
                for b in basket.items:
                    if a != b:
                        pairs[a][b] += weight
        self._partners = {a: top(partners, self.neighbours) for a, partners in pairs.items()}
        return self

    def scores(self, items: Sequence[str]) -> Scores:
        scores: Scores = defaultdict(float)
        for item in dict.fromkeys(items[-self.history:]):
            for partner, weight in self._partners.get(item, ()):
                scores[partner] += weight
        return dict(scores)


class ItemKNN:
    """The item-kNN baseline: items that share sessions with the session's last item,
    by cosine similarity of their session sets.

    >>> knn = ItemKNN().fit([Session(("a", "b"), 0), Session(("a", "b"), 0), Session(("a", "c"), 0)])
    >>> [(i, round(s, 3)) for i, s in top(knn.scores(["a"]), 2)]
    [('b', 0.816), ('c', 0.577)]
    """

    def __init__(self, neighbours: int = 100):
        self.neighbours = neighbours
        self._similar: dict[str, list[tuple[str, float]]] = {}

    def fit(self, sessions: Sequence[Session]) -> ItemKNN:
        support: Counter = Counter()
        together: dict[str, Counter] = defaultdict(Counter)
        for session in sessions:
            items = set(session.items)
            support.update(items)
            for a in items:
                for b in items:
                    if a != b:
                        together[a][b] += 1
        self._similar = {
            a: top({b: n / math.sqrt(support[a] * support[b]) for b, n in partners.items()},
                   self.neighbours)
            for a, partners in together.items()}
        return self

    def scores(self, items: Sequence[str]) -> Scores:
        return dict(self._similar.get(items[-1], ())) if items else {}


class SessionKNN:
    """V-SKNN, vector-multiplication session-kNN (Jannach and Ludewig, RecSys 2017).

    The session being served is a vector whose item weights fall linearly with age: the
    item at position ``p`` of ``L`` (1 is the oldest) weighs ``p / L``. A past session's
    similarity is the dot product with its binary item vector; among the ``sample_size``
    most recent past sessions that share an item, the ``k`` most similar are the
    neighbours, and an item scores the sum of the similarities of the neighbours that
    contain it.

    >>> knn = SessionKNN(k=2).fit([Session(("a", "x"), 1), Session(("b", "y"), 2), Session(("a", "b", "z"), 3)])
    >>> [(i, s) for i, s in knn.neighbours(["a", "b"])]  # weights a: 1/2, b: 2/2
    [(2, 1.5), (1, 1.0)]
    >>> top(knn.scores(["a", "b"]), 3)
    [('b', 2.5), ('a', 1.5), ('z', 1.5)]
    """

    def __init__(self, k: int = 100, sample_size: int = 500):
        self.k = k
        self.sample_size = sample_size
        self._sessions: list[frozenset[str]] = []
        self._ends: list[float] = []
        self._with_item: dict[str, list[int]] = defaultdict(list)

    def fit(self, sessions: Sequence[Session]) -> SessionKNN:
        ordered = sorted(sessions, key=lambda s: s.ts)  # indices grow with recency
        self._sessions = [frozenset(s.items) for s in ordered]
        self._ends = [s.ts for s in ordered]
        self._with_item = defaultdict(list)
        for index, items in enumerate(self._sessions):
            for item in items:
                self._with_item[item].append(index)
        return self

    def state(self) -> list[tuple[tuple[str, ...], float]]:
        """The past sessions, as plain data: ``(sorted items, end time)``, oldest first
        (``from_state`` fits them again)."""
        return [(tuple(sorted(items)), ts) for items, ts in zip(self._sessions, self._ends, strict=True)]

    @classmethod
    def from_state(cls, sessions: list[tuple[Sequence[str], float]], **params) -> SessionKNN:
        return cls(**params).fit([Session(tuple(items), ts) for items, ts in sessions])

    def weights(self, items: Sequence[str]) -> dict[str, float]:
        """Each distinct item's weight in the session vector (its newest position counts)."""
        n = len(items)
        return {item: (p + 1) / n for p, item in enumerate(items)}  # later positions overwrite

    def neighbours(self, items: Sequence[str]) -> list[tuple[int, float]]:
        """The ``k`` most similar past sessions, as ``(index, similarity)``."""
        weights = self.weights(items)
        candidates: set[int] = set()
        for item in weights:
            # Each item's sessions are in index (recency) order: the most recent
            # sample_size of the union are among the most recent sample_size of each.
            candidates.update(self._with_item.get(item, ())[-self.sample_size:])
        if len(candidates) > self.sample_size:
            candidates = set(heapq.nlargest(self.sample_size, candidates))  # the most recent
        similarity = {c: sum(w for item, w in weights.items() if item in self._sessions[c])
                      for c in candidates}
        return heapq.nlargest(self.k, similarity.items(), key=lambda pair: (pair[1], pair[0]))

    def scores(self, items: Sequence[str]) -> Scores:
        scores: Scores = defaultdict(float)
        for index, similarity in self.neighbours(items):
            for item in self._sessions[index]:
                scores[item] += similarity
        return dict(scores)
