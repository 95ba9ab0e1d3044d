"""The served session recommender: session state in, ranked items out. Pure.

It blends strategies by clear rules:

1. A cart change with items in the cart asks "what goes with this basket": items bought
   together with the cart come first (strategy ``bought_together``).
2. A session with items the models know gets a blend of the sequence model (its softmax
   over the items that the faiss index retrieves), co-visitation and session neighbours
   (V-SKNN), each normalised to sum to one and weighted by ``Blend`` (the trainer picks
   the weights on its validation days). The strategy names the parts that contributed,
   for example ``sequence+covisit``.
3. A cold session, or one whose items nobody has seen, gets recent popularity
   (``popular``).

Whatever a rule leaves short of ``k`` items is filled from the next rule down, and the
strategy then says so (``covisit+popular``). Items in the cart and items bought in the
session are left out (``exclude_cart``, ``exclude_bought``); items already viewed stay
in, because shoppers do come back to them, unless ``exclude_viewed``.

>>> from scorers.neighbours import CoVisitation, Popularity, Session
>>> log = [Session(("tent", "pegs", "lamp"), 0), Session(("tent", "pegs"), 0), Session(("mug", "tea"), 0)]
>>> rec = Recommender(covisit=CoVisitation().fit(log), popular=Popularity().fit(log), k=3)
>>> rec.recommend(SessionView(items=("tent",)))
([('pegs', 0.8), ('lamp', 0.2), ('tent', 0.1)], 'covisit+popular')
>>> rec.recommend(SessionView())[1]
'popular'
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scorers.neighbours import BoughtTogether, CoVisitation, Popularity, Scores, SessionKNN, top
from scorers.retrieval import ItemIndex


@dataclass(frozen=True)
class SessionView:
    """What the recommender knows about a session: items viewed (oldest first), the
    cart, and what the session bought."""

    items: tuple[str, ...] = ()
    cart: tuple[str, ...] = ()
    bought: tuple[str, ...] = ()
    trigger: str = "click"  # click | cart: what the recommendations answer


@dataclass
class RecsSession:
    """A session as the recommendation agent keeps it: a reducer over its clicks and
    cart changes, which ignores a redelivered event (its offset is not newer).

    >>> state = RecsSession()
    >>> state.update("click", "tent", "shop.clicks:0", 5), state.update("add", "tent", "shop.carts:0", 2)
    (True, True)
    >>> state.update("click", "tent", "shop.clicks:0", 5)  # redelivered after a restart
    False
    >>> state.view("cart")
    SessionView(items=('tent',), cart=('tent',), bought=(), trigger='cart')
    >>> state.buy(["tent"], "orders:0", 0), state.view("click").bought
    (True, ('tent',))
    """

    items: list[str] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)  # item -> quantity changes summed
    offsets: dict[str, int] = field(default_factory=dict)  # source partition -> newest offset
    max_items: int = 100
    last_ts: float | None = None  # event time of the newest click or cart change, epoch seconds
    bought: list[str] = field(default_factory=list)  # items the session's orders bought, oldest first

    def update(self, op: str, item: str, source: str, offset: int) -> bool:
        """Apply a click (``op`` click) or cart change (add, remove); False if already seen."""
        if offset <= self.offsets.get(source, -1):
            return False
        self.offsets[source] = offset
        if op == "click":
            self.items = (self.items + [item])[-self.max_items:]
        else:
            self.cart[item] = self.cart.get(item, 0) + (1 if op == "add" else -1)
            if self.cart[item] <= 0:
                del self.cart[item]
        return True

    def buy(self, items: Sequence[str], source: str, offset: int) -> bool:
        """Apply an order of the session: its ``items`` leave the cart and are bought;
        False if already seen."""
        if offset <= self.offsets.get(source, -1):
            return False
        self.offsets[source] = offset
        for item in items:
            self.cart.pop(item, None)
            if item not in self.bought:
                self.bought.append(item)
        self.bought = self.bought[-self.max_items:]
        return True

    def view(self, trigger: str) -> SessionView:
        return SessionView(items=tuple(self.items), cart=tuple(sorted(self.cart)), bought=tuple(self.bought),
                           trigger=trigger)

    def to_json(self) -> bytes:
        """The session as its table keeps it (``max_items`` is the worker's setting, not saved)."""
        return json.dumps({"items": self.items, "cart": self.cart, "offsets": self.offsets,
                           "last_ts": self.last_ts, "bought": self.bought}).encode()

    @classmethod
    def from_json(cls, raw: bytes, max_items: int = 100) -> RecsSession:
        """The session ``to_json`` wrote; ValueError if ``raw`` is not one.

        >>> RecsSession.from_json(RecsSession(items=["tent"], last_ts=5.0).to_json())
        RecsSession(items=['tent'], cart={}, offsets={}, max_items=100, last_ts=5.0, bought=[])
        """
        try:
            data = json.loads(raw)
            return cls(items=list(data["items"]), cart=dict(data["cart"]), offsets=dict(data["offsets"]),
                       max_items=max_items, last_ts=data.get("last_ts"), bought=list(data.get("bought", [])))
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a saved session: {exc!r}") from exc


@dataclass(frozen=True)
class Blend:
    """Weights of the strategies blended for a warm session."""

    sequence: float = 0.5
    covisit: float = 0.25
    neighbours: float = 0.25


def normalised(scores: Scores) -> Scores:
    """Scores scaled to sum to one (an empty or all-zero map stays as it is)."""
    total = sum(v for v in scores.values() if v > 0)
    return {i: v / total for i, v in scores.items() if v > 0} if total > 0 else {}


class SequenceScorer:
    """The sequence model behind a faiss index: sessions in, ``{item: probability}`` out.

    The probabilities are a softmax over the ``candidates`` items the index returns for
    the session's query vector, the items the full softmax would rank highest.
    """

    def __init__(self, model, vocab: Sequence[str], index: ItemIndex, candidates: int = 200):
        import torch  # here, so that the rules-only paths do not import torch

        self._torch = torch
        self.model = model
        self.vocab = list(vocab)
        self.position = {item: i + 1 for i, item in enumerate(self.vocab)}  # 0 is padding
        self.index = index
        self.candidates = candidates
        self.timings: dict[str, float] = {}  # seconds in the model and the index, last batch

    def known(self, items: Sequence[str]) -> list[int]:
        return [self.position[i] for i in items if i in self.position]

    def scores_batch(self, sessions: Sequence[Sequence[str]]) -> list[Scores]:
        from models.sequence import left_pad

        known = [self.known(items) for items in sessions]
        rows = [r for r, seq in enumerate(known) if seq]
        out: list[Scores] = [{} for _ in sessions]
        if not rows:
            return out
        started = time.perf_counter()
        seq = left_pad([known[r] for r in rows], self.model.config.max_len)  # (B, T)
        with self._torch.inference_mode():
            queries = self.model.encode(seq).numpy()  # (B, C)
        encoded = time.perf_counter()
        found = self.index.search(queries, self.candidates)
        self.timings = {"model": encoded - started, "retrieval": time.perf_counter() - encoded}
        for r, hits in zip(rows, found, strict=True):
            if hits:
                logits = np.array([s for _, s in hits])
                p = np.exp(logits - logits.max())
                p /= p.sum()
                out[r] = {item: float(v) for (item, _), v in zip(hits, p, strict=True)}
        return out


@dataclass
class Recommender:
    """Blends the strategies it has; any of them may be missing (no model yet)."""

    sequence: SequenceScorer | None = None
    covisit: CoVisitation | None = None
    neighbours: SessionKNN | None = None
    bought_together: BoughtTogether | None = None
    popular: Popularity | None = None
    blend: Blend = field(default_factory=Blend)
    k: int = 20
    exclude_cart: bool = True
    exclude_bought: bool = True
    exclude_viewed: bool = False
    version: str = "rules"
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, last batch

    def _popular(self) -> Scores:
        """The normalised popularity, the most popular ``k`` plus room for exclusions:
        computed once per fitted ``Popularity`` (the rules-phase one is refitted whole)."""
        if getattr(self, "_popular_of", None) is not self.popular:
            self._popular_of = self.popular
            self._popular_top = dict(top(normalised(self.popular.scores(())), self.k + 200))
        return self._popular_top

    def excluded(self, view: SessionView) -> set[str]:
        return ((set(view.cart) if self.exclude_cart else set())
                | (set(view.bought) if self.exclude_bought else set())
                | (set(view.items) if self.exclude_viewed else set()))

    def parts(self, view: SessionView, sequence: Scores) -> dict[str, Scores]:
        """Each blended strategy's normalised scores for the session."""
        parts = {"sequence": sequence}
        if self.covisit is not None:
            parts["covisit"] = self.covisit.scores(view.items)
        if self.neighbours is not None:
            parts["neighbours"] = self.neighbours.scores(view.items)
        return {name: normalised(scores) for name, scores in parts.items()}

    def warm(self, view: SessionView, sequence: Scores,
             parts: dict[str, Scores] | None = None) -> tuple[Scores, list[str]]:
        """Rule 2: the blend, and the names of the strategies that contributed."""
        parts = self.parts(view, sequence) if parts is None else parts
        blended: Scores = {}
        used, total = [], 0.0
        for name, scores in parts.items():
            weight = getattr(self.blend, name)
            if weight <= 0 or not scores:
                continue
            used.append(name)
            total += weight
            for item, value in scores.items():
                blended[item] = blended.get(item, 0.0) + weight * value
        # Renormalised over the parts present, so a session the model cannot read still
        # gets scores on the same scale.
        return {i: v / total for i, v in blended.items()}, used

    def recommend(self, view: SessionView, sequence: Scores | None = None,
                  parts: dict[str, Scores] | None = None) -> tuple[list[tuple[str, float]], str]:
        """The ranked ``(item, score)`` list for one session, and the strategy (``parts``:
        the strategies' scores from ``parts()``, when they are already known)."""
        if sequence is None:
            sequence = self.sequence.scores_batch([view.items])[0] if self.sequence and view.items else {}
        excluded = self.excluded(view)
        ranked: list[tuple[str, float]] = []
        strategies: list[str] = []

        def fill(scores: Scores, name: str) -> None:
            taken = excluded | {i for i, _ in ranked}
            more = top(scores, self.k - len(ranked), taken)
            if more:
                ranked.extend((i, float(f"{s:.6g}")) for i, s in more)
                strategies.append(name)

        if view.trigger == "cart" and view.cart and self.bought_together is not None:
            fill(normalised(self.bought_together.scores(view.cart)), "bought_together")
        if len(ranked) < self.k and view.items:
            blended, used = self.warm(view, sequence, parts)
            fill(blended, "+".join(used))
        if len(ranked) < self.k and self.popular is not None:
            popular = self._popular()
            if ranked and popular:  # below everything personal, in popularity order
                scale = 0.5 * ranked[-1][1] / max(popular.values())
                popular = {i: v * scale for i, v in popular.items()}
            fill(popular, "popular")
        return ranked, "+".join(strategies) or "none"

    def recommend_batch(self, views: Sequence[SessionView]) -> list[tuple[list[tuple[str, float]], str]]:
        """``recommend`` for many sessions, with one model call for all of them."""
        sequences = (self.sequence.scores_batch([v.items for v in views]) if self.sequence
                     else [{} for _ in views])
        blended = time.perf_counter()
        results = [self.recommend(v, s) for v, s in zip(views, sequences, strict=True)]
        self.timings = {**(self.sequence.timings if self.sequence else {}),
                        "blend": time.perf_counter() - blended}
        return results
