"""Entity states, and the feature rows an update to one of them changes.

Pure code, no I/O. A worker keeps one state per entity (user, session, item, order,
instrument, device, IP, terminal) and calls ``apply`` on it for every ``Update`` that
``scorers.routing`` sends its way; ``apply`` returns the rows of the views in
``scorers.views`` that changed. A state is saved to its changelog as plain data
(``State.to_data``, read back with ``state_from_data``).

Updates are idempotent: a state remembers, per source partition, the last update it
applied, and ignores one it has already seen. That is what makes redelivery after a
crash harmless (at-least-once delivery, exactly-once effect on the features).

>>> from scorers.routing import route
>>> from shopstream.events import Click
>>> click = Click(user_id="u1", session_id="s1", item_id="i1", device_id="d1", ts=60)
>>> state = new_state("user")
>>> rows = apply(state, route(click, "shop.clicks:0", 17)[0])
>>> rows["user_activity"][:4]
('u1', 60.0, 1, 1)
>>> apply(state, route(click, "shop.clicks:0", 17)[0])   # the same update again: no effect
{}
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, ClassVar

from scorers.tiles import Contributions, Tiles, tiles_for
from scorers.views import AMOUNT_WINDOWS, ITEM_WINDOWS, RISK_WINDOWS, USER_WINDOWS, VELOCITY_WINDOWS
from scorers.windows import LastN, WindowedDistinct, WindowedStats

if TYPE_CHECKING:
    from scorers.routing import Update

STATE_VERSION = 7  # 4: orders via the order state; 5: exact window sums; 6: plain data; 7: tiles
"""Version of the entity-state layout. Workers keep states in a table named after it, so a
layout change starts from fresh state instead of misreading the old (replay to backfill)."""
SESSION_ITEMS = 50  # a session keeps its last 50 items viewed


@dataclass(frozen=True)
class StateLimits:
    """What one entity's state may hold, whatever an entity's traffic: so that an update
    costs the same however long the entity has lived, and a state always fits in one
    changelog record (settings ``features.max_distinct``, ``features.max_cart_items``)."""

    distinct: int = 1_000
    """Distinct values a user's devices and IPs, or an instrument's users, keep each."""
    cart_items: int = 200
    """Items a session's cart keeps: past it, the item changed longest ago is forgotten."""
    cart_changes: int = 8
    """Changes kept per item in a cart since the last order; older ones are summed into
    one (an order placed between them, arriving late, then counts them together)."""


LIMITS = StateLimits()
"""The limits of new states; a worker sets its own at start-up (``set_limits``)."""


def set_limits(limits: StateLimits) -> None:
    """Use ``limits`` for every state made from now on (a worker's start-up)."""
    global LIMITS  # noqa: PLW0603 - one per process, set before any state exists
    LIMITS = limits
NO_PREVIOUS_ORDER = -1.0  # seconds_since_last_order for a user's first order


@dataclass
class State:
    """Base of every entity state: the last update applied from each source, and the
    entity's watermark (its newest event time), as of which its features are computed."""

    entity_id: str = ""
    lateness_s: float = 0.0
    watermark: float = -math.inf
    applied: dict[str, tuple[int, int]] = field(default_factory=dict)
    source_watermarks: dict[str, float] = field(default_factory=dict)
    stamped: float = -math.inf  # event time of the last row, so that rows never tie
    late: int = 0  # updates refused as later than the allowed lateness
    slot: int = field(default=-1, repr=False)  # the entity's row in its kind's tiles, if counted

    TILES: ClassVar[Tiles | None] = None
    """Where this kind's counting aggregates live (``scorers.tiles``), if it has any."""

    def __post_init__(self):
        if self.TILES is not None:
            self.slot = self.TILES.allocate(self)

    def to_data(self, tiles: list | None = None) -> dict:
        """The state as plain data (dicts, lists, numbers, text), for the changelog: it
        names no class, so a renamed class cannot break recovery. ``state_from_data``
        reads it back. ``tiles``: its tiles' data if already at hand (``to_data_many``)."""
        data = dict(self.__dict__)
        for name in _aggregates(type(self)):
            data[name] = data[name].to_data()
        del data["slot"]
        if self.TILES is not None:
            data["tiles"] = self.TILES.to_data(self.slot) if tiles is None else tiles
        return data


def to_data_many(states: list[State]) -> list[dict]:
    """``State.to_data`` of many states, their tiles read kind by kind in one go each."""
    tiles: list = [None] * len(states)
    by_tiles: dict[Tiles, list[int]] = defaultdict(list)
    for index, state in enumerate(states):
        if state.TILES is not None:
            by_tiles[state.TILES].append(index)
    for kind_tiles, indices in by_tiles.items():
        for index, data in zip(indices, kind_tiles.to_data_many([states[i].slot for i in indices]),
                               strict=True):
            tiles[index] = data
    return [state.to_data(data) for state, data in zip(states, tiles, strict=True)]


_AGGREGATES = {"WindowedStats", "WindowedDistinct", "LastN"}


@functools.cache
def _aggregates(cls: type) -> tuple[str, ...]:
    """The fields of a state class that hold window aggregates (they have ``to_data``)."""
    return tuple(spec.name for spec in fields(cls) if str(spec.type).split(" |")[0] in _AGGREGATES)


_TUPLES = {  # fields whose tuples plain data turns into lists
    "applied": lambda applied: {source: tuple(seq) for source, seq in applied.items()},
    "pending": lambda pending: None if pending is None else tuple(pending),
    "cart": lambda cart: {item: [tuple(change) for change in changes] for item, changes in cart.items()},
}


def state_from_data(kind: str, data: dict) -> State:
    """The state of ``kind`` that ``State.to_data`` gave ``data``. A field the data lacks
    (added since) keeps its default; one the state lacks (removed since) is ignored.

    >>> from scorers.routing import route
    >>> from shopstream.events import Click
    >>> state = new_state("session", "s1")
    >>> rows = apply(state, route(Click(user_id="u", session_id="s1", item_id="i", ts=60), "c:0", 1)[1])
    >>> state_from_data("session", state.to_data()).to_data() == state.to_data()
    True
    """
    state = new_state(kind, data["entity_id"], data["lateness_s"])
    if state.TILES is not None and "tiles" in data:
        state.TILES.load(state.slot, data["tiles"])
    for spec in fields(state):
        if spec.name not in data or spec.name == "slot":
            continue
        value, current = data[spec.name], getattr(state, spec.name)
        if isinstance(current, WindowedStats | WindowedDistinct | LastN):
            current.load(value)
        else:
            setattr(state, spec.name, _TUPLES[spec.name](value) if spec.name in _TUPLES else value)
    return state


def count(state: State, aggregate: str, window: str) -> int:
    """An entity's count of ``aggregate`` (``"clicks"``) in ``window`` as of its watermark.

    >>> from scorers.routing import route
    >>> from shopstream.events import Click
    >>> state = new_state("user")
    >>> for ts in (0, 30, 700):
    ...     _ = apply(state, route(Click(user_id="u", session_id="s", item_id="i", ts=ts), "c:0", ts)[0])
    >>> count(state, "clicks", "10m"), count(state, "clicks", "1h")   # the 10 minutes start at 120 s
    (1, 3)
    """
    tiles = state.TILES
    if state.watermark == -math.inf:
        return 0
    counts = tiles.counts(state.slot, state.watermark)
    return counts[tiles.aggregates.index(aggregate) * len(tiles.windows) + tiles.windows.index(window)]


@dataclass
class UserState(State):
    TILES = tiles_for((("clicks", "carts", "orders"), USER_WINDOWS))
    amounts: WindowedStats = None
    devices: WindowedDistinct = None
    ips: WindowedDistinct = None
    labels: WindowedStats = None  # by label arrival time; value 1 for fraud, 0 for genuine
    first_seen: float | None = None
    last_order: float | None = None
    previous_order: float | None = None

    def __post_init__(self):
        super().__post_init__()
        self.labels = self.labels or WindowedStats(RISK_WINDOWS, self.lateness_s)
        self.amounts = self.amounts or WindowedStats(AMOUNT_WINDOWS, self.lateness_s)
        self.devices = self.devices or WindowedDistinct(("24h",), self.lateness_s, LIMITS.distinct)
        self.ips = self.ips or WindowedDistinct(("24h",), self.lateness_s, LIMITS.distinct)


@dataclass
class VelocityState(State):
    """An instrument, device or IP: its orders and the distinct users behind them."""

    TILES = tiles_for((("orders",), VELOCITY_WINDOWS))
    users: WindowedDistinct = None
    labels: WindowedStats = None  # instruments only: the labels that arrived for its orders

    def __post_init__(self):
        super().__post_init__()
        self.labels = self.labels or WindowedStats(RISK_WINDOWS, self.lateness_s)
        self.users = self.users or WindowedDistinct(("24h",), self.lateness_s, LIMITS.distinct)


@dataclass
class TerminalState(State):
    """A terminal or merchant: its transactions, and the labels that have arrived for them."""

    TILES = tiles_for((("tx",), AMOUNT_WINDOWS))
    labels: WindowedStats = None  # by label arrival time; value 1 for fraud, 0 for genuine

    def __post_init__(self):
        super().__post_init__()
        self.labels = self.labels or WindowedStats(AMOUNT_WINDOWS, self.lateness_s)


@dataclass
class ItemState(State):
    TILES = tiles_for((("views", "carts", "purchases"), ITEM_WINDOWS))


@dataclass
class SessionState(State):
    clicks: int = 0
    start: float | None = None
    end: float | None = None
    items: LastN = field(default_factory=lambda: LastN(SESSION_ITEMS))
    # item -> [(event time, +1 for an add or -1 for a removal)] since the last order, by
    # event time so the cart does not depend on which topic was read first; the items in
    # the order of their last change (``change_cart``).
    cart: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    ordered_at: float = -math.inf  # event time of the session's last order

    def cart_items(self) -> list[str]:
        """Items in the cart now, sorted."""
        return sorted(item for item, changes in self.cart.items() if sum(d for _, d in changes) > 0)

    def change_cart(self, item: str, ts: float, delta: int) -> None:
        """Add (+1) or remove (-1) ``item`` at ``ts``, within ``LIMITS``: at most
        ``cart_items`` items, each with at most ``cart_changes`` changes.

        >>> session = SessionState()
        >>> for n in range(LIMITS.cart_items + 5):
        ...     session.change_cart(f"i{n}", n, +1)
        >>> len(session.cart), "i0" in session.cart, f"i{LIMITS.cart_items + 4}" in session.cart
        (200, False, True)
        >>> for n in range(20):
        ...     session.change_cart("x", 1000 + n, +1 if n % 2 == 0 else -1)
        >>> len(session.cart["x"]), sum(d for _, d in session.cart["x"])
        (8, 0)
        """
        changes = self.cart.pop(item, None)  # in again last: the latest changed
        if changes is None:
            changes = []
            if len(self.cart) >= LIMITS.cart_items:
                del self.cart[next(iter(self.cart))]
        changes.append((ts, delta))
        if len(changes) > LIMITS.cart_changes:
            changes.sort()
            (_, first), (second_ts, second) = changes[0], changes[1]
            changes[:2] = [(second_ts, first + second)]
        self.cart[item] = changes


@dataclass
class OrderState(State):
    """What a later label needs to know about its order."""

    terminal: str | None = None
    instrument: str | None = None
    user: str | None = None
    ts: float | None = None
    flagged: bool | None = None  # whether its fraud score said review or block
    # A label that arrived before its order (topics are read at different speeds):
    # (label time, is_fraud, source, seq), released when the order arrives.
    pending: tuple | None = None
    label_count: int = 0  # labels seen; the first one counts, later ones are duplicates
    label: bool | None = None  # the first label's is_fraud, to grade a score that comes after it
    copies: int = 0  # copies of the order after the first (the same order id again)


STATES = {"user": UserState, "session": SessionState, "item": ItemState, "order": OrderState,
          "instrument": VelocityState, "device": VelocityState, "ip": VelocityState,
          "terminal": TerminalState}


def new_state(kind: str, entity_id: str = "", lateness_s: float = 0.0) -> State:
    """A fresh state for an entity of ``kind``."""
    return STATES[kind](entity_id=entity_id, lateness_s=lateness_s)


# --- applying updates -----------------------------------------------------------------

Rows = dict[str, tuple]  # view name -> (entity id, event time, *feature values)


class Batch:
    """The updates of one micro-batch, and the rows they change, view by view.

    ``apply`` applies updates one at a time, in order, as ``apply`` (the function) does;
    the window counts of their rows are settled all at once by ``rows``, in numpy
    (``scorers.tiles``), so a state's counts are only up to date once ``rows`` has run.

    >>> from scorers.routing import route
    >>> from shopstream.events import Click
    >>> state, batch = new_state("user"), Batch()
    >>> for offset, ts in enumerate([0, 30, 700]):
    ...     _ = batch.apply(state, route(Click(user_id="u", session_id="s", item_id="i", ts=ts), "c:0", offset)[0])
    >>> [row[2:4] for row in batch.rows()["user_activity"]]   # clicks in 10 minutes, 1 hour
    [(1, 1), (2, 2), (1, 3)]
    """

    def __init__(self):
        self._rows: dict[str, list] = defaultdict(list)
        self._asked: dict[Tiles, Contributions] = {}
        self._waiting: list[tuple[str, int, Tiles, int, tuple, tuple]] = []
        self._place = 0

    def apply(self, state: State, update: Update) -> None:
        """Apply ``update`` to ``state`` (see ``apply``)."""
        self._place += 1
        for view, row in apply_one(state, update, self).items():
            rows = self._rows[view]
            if type(row) is _Counted:
                self._waiting.append((view, len(rows), *row))
            rows.append(row)

    def count(self, state: State, aggregate: int, ts: float) -> None:
        """Count an update at ``ts`` in the state's ``aggregate`` (an index in ``TILES.aggregates``)."""
        self._contributions(state).add(state.slot, aggregate, ts, self._place)

    def counted(self, state: State, now: float, head: tuple, tail: tuple) -> _Counted:
        """A row ``(*head, *counts as of now, *tail)``, its counts settled by ``rows``."""
        tiles = state.TILES
        return _Counted((tiles, self._contributions(state).ask(state.slot, now, self._place), head, tail))

    def _contributions(self, state: State) -> Contributions:
        tiles = state.TILES
        batch = self._asked.get(tiles)
        if batch is None:
            batch = self._asked[tiles] = Contributions()
        return batch

    def rows(self) -> dict[str, list[tuple]]:
        """Every changed row, per view in the order of the updates; the counts settled."""
        answers = {tiles: tiles.settle(batch).tolist() for tiles, batch in self._asked.items()}
        for view, index, tiles, query, head, tail in self._waiting:
            self._rows[view][index] = (*head, *answers[tiles][query], *tail)
        self._asked, self._waiting = {}, []
        return self._rows


class _Counted(tuple):
    """A row waiting for its window counts: (tiles, query, head, tail)."""


def apply(state: State, update: Update) -> Rows:
    """Apply ``update`` to ``state``; return the feature rows it changed.

    Rows are stamped with the entity's watermark and computed as of it: a late event
    changes the features from the watermark on, never before, so a point-in-time read
    sees nothing from its future. An update already applied returns no rows and changes
    nothing.

    Lateness is judged per source partition: an update older than the newest one from
    its own source by more than the allowed lateness is counted in ``state.late`` and
    changes nothing else. Sources that merely run behind others (one partition consumed
    faster than another during a fast replay) are not late; their events still count.

    This is a ``Batch`` of one update; a worker applies its micro-batches as one.
    """
    batch = Batch()
    batch.apply(state, update)
    return {view: rows[0] for view, rows in batch.rows().items()}


def apply_one(state: State, update: Update, batch: Batch) -> Rows:
    """Apply ``update`` to ``state`` within ``batch``: the rows, counts still to settle."""
    source = update.source
    seen = state.applied.get(source)
    if seen is not None and update.seq <= seen:
        return {}
    state.applied[source] = update.seq
    state.entity_id = update.entity_id
    newest = state.source_watermarks.get(source, -math.inf)
    if update.ts < newest - state.lateness_s:
        state.late += 1
        return {}
    state.source_watermarks[source] = max(newest, update.ts)
    state.watermark = max(state.watermark, update.ts)
    # A row that would tie with the entity's previous row is stamped a microsecond later:
    # readers that break ties unreliably (Feast's file store does) then see the newest.
    # Its values are computed as of the watermark all the same, so that they do not
    # depend on the order in which the topics were read (which decides the ties).
    state.stamped = max(state.watermark, state.stamped + 1e-6)
    return _APPLY[update.kind](state, update, state.watermark, batch)


def _risk(labels: WindowedStats, u: Update, now: float) -> tuple:
    """Confirmed frauds among the labels that arrived in each window, and their share."""
    labels.update(u.ts, float(u.data[0]))
    totals = labels.totals(now).values()
    return (*(int(frauds) for _, frauds, _ in totals),
            *(frauds / labelled if labelled else 0.0 for labelled, frauds, _ in totals))


_USER_COUNTS = {"click": 0, "cart": 1, "order": 2}


def _user(state: UserState, u: Update, now: float, batch: Batch) -> Rows:
    if u.op == "label":
        return {"user_risk": (state.entity_id, state.stamped, *_risk(state.labels, u, now))}
    ts = u.ts
    batch.count(state, _USER_COUNTS[u.op], ts)
    state.first_seen = ts if state.first_seen is None else min(state.first_seen, ts)
    if u.op in ("click", "order"):
        device, ip = u.data[-2:]
        if device:
            state.devices.update(ts, device)
        if ip:
            state.ips.update(ts, ip)
    rows = {"user_activity": batch.counted(state, now, (state.entity_id, state.stamped), (
        state.devices.count("24h", now), state.ips.count("24h", now), (now - state.first_seen) / 86_400))}
    if u.op == "order":
        state.amounts.update(ts, u.data[0])
        if state.last_order is None or ts >= state.last_order:  # keep the two latest
            state.previous_order, state.last_order = state.last_order, ts
        elif state.previous_order is None or ts > state.previous_order:
            state.previous_order = ts
        rows["user_orders"] = _user_orders(state, now)
    return rows


def _user_orders(state: UserState, now: float) -> tuple:
    last, previous = state.last_order, state.previous_order
    since = NO_PREVIOUS_ORDER if previous is None else max(last - previous, 0.0)
    by_window = state.amounts.totals(now)
    totals = by_window.values()
    means = [total / n if n else 0.0 for n, total, _ in totals]
    stds = [math.sqrt(max(sq / n - (total / n) ** 2, 0.0)) if n else 0.0 for n, total, sq in totals]
    return (state.entity_id, state.stamped, by_window["30d"][0], *(t for _, t, _ in totals), *means, *stds, since)


def _velocity(state: VelocityState, u: Update, now: float, batch: Batch) -> Rows:
    if u.op == "label":
        return {f"{u.kind}_risk": (state.entity_id, state.stamped, *_risk(state.labels, u, now))}
    batch.count(state, 0, u.ts)
    state.users.update(u.ts, u.data[0])
    return {f"{u.kind}_velocity": batch.counted(state, now, (state.entity_id, state.stamped),
                                                (state.users.count("24h", now),))}


def _terminal(state: TerminalState, u: Update, now: float, batch: Batch) -> Rows:
    if u.op == "order":
        batch.count(state, 0, u.ts)
    else:
        state.labels.update(u.ts, float(u.data[0]))
    risks = tuple(frauds / labelled if labelled else 0.0
                  for labelled, frauds, _ in state.labels.totals(now).values())
    return {"terminal_risk": batch.counted(state, now, (state.entity_id, state.stamped), risks)}


_ITEM_COUNTS = {"view": 0, "cart": 1, "purchase": 2}


def _item(state: ItemState, u: Update, now: float, batch: Batch) -> Rows:
    batch.count(state, _ITEM_COUNTS[u.op], u.ts)
    return {"item_popularity": batch.counted(state, now, (state.entity_id, state.stamped), ())}


def _session(state: SessionState, u: Update, now: float, batch: Batch) -> Rows:
    state.start = u.ts if state.start is None else min(state.start, u.ts)
    state.end = u.ts if state.end is None else max(state.end, u.ts)
    if u.op == "click":
        state.clicks += 1
        state.items.update(u.data[0])
    elif u.op in ("add", "remove") and u.ts > state.ordered_at:  # else it was ordered already
        state.change_cart(u.data[0], u.ts, 1 if u.op == "add" else -1)
    elif u.op == "order" and u.ts > state.ordered_at:  # the cart up to now became the order
        state.ordered_at = u.ts
        for item in list(state.cart):
            state.cart[item] = [change for change in state.cart[item] if change[0] > u.ts]
            if not state.cart[item]:
                del state.cart[item]
    return {"session_state": (state.entity_id, state.stamped, state.clicks, state.start,
                              state.end - state.start, state.items.get(), state.cart_items())}


def _order(state: OrderState, u: Update, now: float, batch: Batch) -> Rows:
    if u.op == "place" and state.ts is None:
        state.user, _, state.instrument, _, _, state.terminal = u.data[:6]
        state.ts = u.ts
    elif u.op == "place":
        state.copies += 1
    elif u.op == "scored":
        (state.flagged,) = u.data
    elif u.op == "label":
        state.label_count += 1
        if state.label is None:
            (state.label,) = u.data
    return {}


def is_new(state: State, update: Update) -> bool:
    """Whether ``update`` has not been applied to ``state`` yet."""
    seen = state.applied.get(update.source)
    return seen is None or update.seq > seen


_APPLY = {"user": _user, "session": _session, "item": _item, "order": _order,
          "instrument": _velocity, "device": _velocity, "ip": _velocity, "terminal": _terminal}
