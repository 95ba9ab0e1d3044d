"""Streaming features: which entity each event updates, their state, and their feature rows.

Pure code, no I/O. A worker turns every valid event into ``Update``s with ``route``, sends
each update to the partition that owns its entity, and there calls ``apply`` on the
entity's state, which returns the feature rows that changed. Orders and labels go to
the order's state first (``order_updates``), which passes them on to the entities they
count in, once per order id. The feature views and
their columns are defined once, in ``VIEWS``; the Feast repo builds its views from it.

Names are mechanical: ``{what}_{stat}_{window}``, for example ``order_amount_mean_7d``.

Updates are idempotent: a state remembers, per source partition, the last update it
applied, and ignores one it has already seen. That is what makes redelivery after a
crash harmless (at-least-once delivery, exactly-once effect on the features).

>>> from shopstream.events import Click
>>> click = Click(user_id="u1", session_id="s1", item_id="i1", device_id="d1", ts=60)
>>> [(u.kind, u.entity_id, u.op) for u in route(click, "shop.clicks:0", 17)]
[('user', 'u1', 'click'), ('session', 's1', 'click'), ('item', 'i1', 'view')]
>>> state = new_state("user")
>>> rows = apply(state, route(click, "shop.clicks:0", 17)[0])
>>> rows["user_activity"][:4]
('u1', 60.0, 1, 1)
>>> apply(state, route(click, "shop.clicks:0", 17)[0])   # the same update again: no effect
{}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from typing import NamedTuple

from scorers.windows import LastN, WindowedDistinct, WindowedStats
from shopstream.events import CartEvent, Click, Event, Order, OrderLabel


@dataclass(frozen=True)
class View:
    """A feature view: the entity it describes, its feature columns and its TTL."""

    name: str
    entity: str
    features: tuple[str, ...]
    ttl_days: int
    lists: tuple[str, ...] = ()  # features holding lists of item ids; the rest are numbers


def _names(what: str, stats: tuple[str, ...], windows: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{what}_{stat}_{window}" for stat in stats for window in windows)


USER_WINDOWS = ("10m", "1h", "24h", "7d")
AMOUNT_WINDOWS = ("1d", "7d", "30d")
VELOCITY_WINDOWS = ("10m", "1h", "24h")
ITEM_WINDOWS = ("1h", "24h")
RISK_WINDOWS = ("7d", "30d")

VIEWS: dict[str, View] = {
    view.name: view
    for view in [
        View("user_activity", "user",
             _names("clicks", ("count",), USER_WINDOWS) + _names("carts", ("count",), USER_WINDOWS)
             + _names("orders", ("count",), USER_WINDOWS)
             + ("devices_distinct_24h", "ips_distinct_24h", "account_age_days"), ttl_days=30),
        View("user_orders", "user",
             _names("order_amount", ("count", "sum", "mean", "std"), AMOUNT_WINDOWS)
             + ("seconds_since_last_order",), ttl_days=60),
        View("instrument_velocity", "instrument",
             _names("orders", ("count",), VELOCITY_WINDOWS) + ("users_distinct_24h",), ttl_days=7),
        View("device_velocity", "device",
             _names("orders", ("count",), VELOCITY_WINDOWS) + ("users_distinct_24h",), ttl_days=7),
        View("ip_velocity", "ip",
             _names("orders", ("count",), VELOCITY_WINDOWS) + ("users_distinct_24h",), ttl_days=7),
        View("user_risk", "user", _names("fraud", ("count", "risk"), RISK_WINDOWS), ttl_days=60),
        View("instrument_risk", "instrument", _names("fraud", ("count", "risk"), RISK_WINDOWS),
             ttl_days=60),
        View("terminal_risk", "terminal",
             _names("tx", ("count",), AMOUNT_WINDOWS) + _names("fraud", ("risk",), AMOUNT_WINDOWS),
             ttl_days=60),
        View("item_popularity", "item",
             _names("views", ("count",), ITEM_WINDOWS) + _names("carts", ("count",), ITEM_WINDOWS)
             + _names("purchases", ("count",), ITEM_WINDOWS), ttl_days=7),
        View("session_state", "session",
             ("clicks_count", "session_start", "session_length_s", "last_items", "cart_items"),
             ttl_days=1, lists=("last_items", "cart_items")),
    ]
}
"""Every feature view, by name."""

ENTITY_VIEWS: dict[str, tuple[str, ...]] = {}
for _view in VIEWS.values():
    ENTITY_VIEWS.setdefault(_view.entity, ())
    ENTITY_VIEWS[_view.entity] += (_view.name,)

def entity_ttl_days(kind: str) -> int:
    """How long an entity's features live: the longest TTL among its feature views.

    >>> entity_ttl_days("session"), entity_ttl_days("user")
    (1, 60)
    """
    return max(VIEWS[name].ttl_days for name in ENTITY_VIEWS[kind])


def state_ttl_s(kind: str, lateness_s: float, order_days: float) -> float:
    """Seconds of event time after an entity's newest update that its state is kept: its
    features' lifetime (an order's: how long it waits for a label), plus the lateness
    still admitted.

    >>> state_ttl_s("session", 300, 120), state_ttl_s("order", 0, 120) / 86_400
    (86700, 120.0)
    """
    days = order_days if kind == "order" else entity_ttl_days(kind)
    return days * 86_400 + lateness_s


STATE_VERSION = 5  # 4: orders reach their entities through the order state; 5: exact window sums
"""Version of the entity-state layout. Workers keep states in a table named after it, so a
layout change starts from fresh state instead of misreading the old (replay to backfill)."""
SESSION_ITEMS = 50  # a session keeps its last 50 items viewed
NO_PREVIOUS_ORDER = -1.0  # seconds_since_last_order for a user's first order


class Update(NamedTuple):
    """One change to one entity, caused by one event.

    ``source`` and ``seq`` identify where it came from (input partition, and offset with
    the update's index), so that a state can ignore a redelivered update.
    """

    kind: str  # user | session | item | instrument | device | ip | terminal | order
    entity_id: str
    op: str
    ts: float  # event time, epoch seconds
    source: str
    seq: tuple[int, int]
    data: tuple = ()


def route(event: Event, source: str, offset: int) -> list[Update]:
    """The updates that ``event`` causes, one per entity it touches."""
    ts = event.ts.timestamp()
    match event:
        case Click():
            targets = [("user", event.user_id, "click", (event.device_id, _str(event.ip))),
                       ("session", event.session_id, "click", (event.item_id,)),
                       ("item", event.item_id, "view", ())]
        case CartEvent():
            targets = [("user", event.user_id, "cart", ()),
                       ("session", event.session_id, event.action, (event.item_id,)),
                       ("item", event.item_id, "cart", ())]
        case Order():  # the order's state fans it out, once per order id (``order_updates``)
            targets = [("order", event.order_id, "place",
                        (event.user_id, event.amount, event.payment_fingerprint, event.device_id,
                         _str(event.ip), event.terminal_id, event.session_id,
                         tuple(line.item_id for line in event.items)))]
        case OrderLabel():
            targets = [("order", event.order_id, "label", (event.is_fraud,))]
        case _:
            raise TypeError(f"cannot route {type(event).__name__}")
    return [Update(kind, entity, op, ts, source, (offset, i), data)
            for i, (kind, entity, op, data) in enumerate(targets)]


def _str(value) -> str | None:
    return None if value is None else str(value)


# --- entity states --------------------------------------------------------------------


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

    def __setstate__(self, saved: dict) -> None:
        """Restore a state saved by an older version: fields it lacks take their defaults."""
        for spec in fields(self):
            if spec.name not in saved and spec.default is not MISSING:
                saved[spec.name] = spec.default
            elif spec.name not in saved and spec.default_factory is not MISSING:
                saved[spec.name] = spec.default_factory()
        self.__dict__.update(saved)


@dataclass
class UserState(State):
    clicks: WindowedStats = None
    carts: WindowedStats = None
    orders: WindowedStats = None
    amounts: WindowedStats = None
    devices: WindowedDistinct = None
    ips: WindowedDistinct = None
    labels: WindowedStats = None  # by label arrival time; value 1 for fraud, 0 for genuine
    first_seen: float | None = None
    last_order: float | None = None
    previous_order: float | None = None

    def __post_init__(self):
        self.labels = self.labels or WindowedStats(RISK_WINDOWS, self.lateness_s)
        self.clicks = self.clicks or WindowedStats(USER_WINDOWS, self.lateness_s)
        self.carts = self.carts or WindowedStats(USER_WINDOWS, self.lateness_s)
        self.orders = self.orders or WindowedStats(USER_WINDOWS, self.lateness_s)
        self.amounts = self.amounts or WindowedStats(AMOUNT_WINDOWS, self.lateness_s)
        self.devices = self.devices or WindowedDistinct(("24h",), self.lateness_s)
        self.ips = self.ips or WindowedDistinct(("24h",), self.lateness_s)


@dataclass
class VelocityState(State):
    """An instrument, device or IP: its orders and the distinct users behind them."""

    orders: WindowedStats = None
    users: WindowedDistinct = None
    labels: WindowedStats = None  # instruments only: the labels that arrived for its orders

    def __post_init__(self):
        self.labels = self.labels or WindowedStats(RISK_WINDOWS, self.lateness_s)
        self.orders = self.orders or WindowedStats(VELOCITY_WINDOWS, self.lateness_s)
        self.users = self.users or WindowedDistinct(("24h",), self.lateness_s)


@dataclass
class TerminalState(State):
    """A terminal or merchant: its transactions, and the labels that have arrived for them."""

    tx: WindowedStats = None
    labels: WindowedStats = None  # by label arrival time; value 1 for fraud, 0 for genuine

    def __post_init__(self):
        self.tx = self.tx or WindowedStats(AMOUNT_WINDOWS, self.lateness_s)
        self.labels = self.labels or WindowedStats(AMOUNT_WINDOWS, self.lateness_s)


@dataclass
class ItemState(State):
    views: WindowedStats = None
    carts: WindowedStats = None
    purchases: WindowedStats = None

    def __post_init__(self):
        self.views = self.views or WindowedStats(ITEM_WINDOWS, self.lateness_s)
        self.carts = self.carts or WindowedStats(ITEM_WINDOWS, self.lateness_s)
        self.purchases = self.purchases or WindowedStats(ITEM_WINDOWS, self.lateness_s)


@dataclass
class SessionState(State):
    clicks: int = 0
    start: float | None = None
    end: float | None = None
    items: LastN = field(default_factory=lambda: LastN(SESSION_ITEMS))
    # item -> [(event time, +1 for an add or -1 for a removal)] since the last order;
    # kept by event time so the cart does not depend on which topic was read first.
    cart: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    ordered_at: float = -math.inf  # event time of the session's last order

    def cart_items(self) -> list[str]:
        """Items in the cart now, sorted."""
        return sorted(item for item, changes in self.cart.items() if sum(d for _, d in changes) > 0)


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
    copies: int = 0  # copies of the order after the first (the same order id again)


STATES = {"user": UserState, "session": SessionState, "item": ItemState, "order": OrderState,
          "instrument": VelocityState, "device": VelocityState, "ip": VelocityState,
          "terminal": TerminalState}


def new_state(kind: str, entity_id: str = "", lateness_s: float = 0.0) -> State:
    """A fresh state for an entity of ``kind``."""
    return STATES[kind](entity_id=entity_id, lateness_s=lateness_s)


# --- applying updates -----------------------------------------------------------------

Rows = dict[str, tuple]  # view name -> (entity id, event time, *feature values)


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
    """
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
    state.stamped = max(state.watermark, state.stamped + 1e-6)
    return _APPLY[update.kind](state, update, state.stamped)


def _risk(labels: WindowedStats, u: Update, now: float) -> tuple:
    """Confirmed frauds among the labels that arrived in each window, and their share."""
    labels.update(u.ts, float(u.data[0]))
    totals = labels.totals(now).values()
    return (*(int(frauds) for _, frauds, _ in totals),
            *(frauds / labelled if labelled else 0.0 for labelled, frauds, _ in totals))


def _user(state: UserState, u: Update, now: float) -> Rows:
    if u.op == "label":
        return {"user_risk": (state.entity_id, now, *_risk(state.labels, u, now))}
    ts = u.ts
    {"click": state.clicks, "cart": state.carts, "order": state.orders}[u.op].update(ts)
    state.first_seen = ts if state.first_seen is None else min(state.first_seen, ts)
    if u.op in ("click", "order"):
        device, ip = u.data[-2:]
        if device:
            state.devices.update(ts, device)
        if ip:
            state.ips.update(ts, ip)
    rows = {"user_activity": _user_activity(state, now)}
    if u.op == "order":
        state.amounts.update(ts, u.data[0])
        if state.last_order is None or ts >= state.last_order:  # keep the two latest
            state.previous_order, state.last_order = state.last_order, ts
        elif state.previous_order is None or ts > state.previous_order:
            state.previous_order = ts
        rows["user_orders"] = _user_orders(state, now)
    return rows


def _counts(stats: WindowedStats, now: float) -> list[int]:
    return [count for count, _, _ in stats.totals(now).values()]


def _user_activity(state: UserState, now: float) -> tuple:
    return (
        state.entity_id, now,
        *_counts(state.clicks, now), *_counts(state.carts, now), *_counts(state.orders, now),
        state.devices.count("24h", now), state.ips.count("24h", now),
        (now - state.first_seen) / 86_400,
    )


def _user_orders(state: UserState, now: float) -> tuple:
    last, previous = state.last_order, state.previous_order
    since = NO_PREVIOUS_ORDER if previous is None else max(last - previous, 0.0)
    totals = state.amounts.totals(now).values()
    means = [total / n if n else 0.0 for n, total, _ in totals]
    stds = [math.sqrt(max(sq / n - (total / n) ** 2, 0.0)) if n else 0.0 for n, total, sq in totals]
    return (state.entity_id, now, *(n for n, _, _ in totals), *(t for _, t, _ in totals),
            *means, *stds, since)


def _velocity(state: VelocityState, u: Update, now: float) -> Rows:
    if u.op == "label":
        return {f"{u.kind}_risk": (state.entity_id, now, *_risk(state.labels, u, now))}
    state.orders.update(u.ts)
    state.users.update(u.ts, u.data[0])
    return {f"{u.kind}_velocity": (state.entity_id, now, *_counts(state.orders, now),
                                   state.users.count("24h", now))}


def _terminal(state: TerminalState, u: Update, now: float) -> Rows:
    if u.op == "order":
        state.tx.update(u.ts)
    else:
        state.labels.update(u.ts, float(u.data[0]))
    risks = [frauds / labelled if labelled else 0.0
             for labelled, frauds, _ in state.labels.totals(now).values()]
    return {"terminal_risk": (state.entity_id, now, *_counts(state.tx, now), *risks)}


def _item(state: ItemState, u: Update, now: float) -> Rows:
    {"view": state.views, "cart": state.carts, "purchase": state.purchases}[u.op].update(u.ts)
    return {"item_popularity": (state.entity_id, now, *_counts(state.views, now),
                                *_counts(state.carts, now), *_counts(state.purchases, now))}


def _session(state: SessionState, u: Update, now: float) -> Rows:
    state.start = u.ts if state.start is None else min(state.start, u.ts)
    state.end = u.ts if state.end is None else max(state.end, u.ts)
    if u.op == "click":
        state.clicks += 1
        state.items.update(u.data[0])
    elif u.op in ("add", "remove") and u.ts > state.ordered_at:  # else it was ordered already
        state.cart.setdefault(u.data[0], []).append((u.ts, 1 if u.op == "add" else -1))
    elif u.op == "order" and u.ts > state.ordered_at:  # the cart up to now became the order
        state.ordered_at = u.ts
        for item in list(state.cart):
            state.cart[item] = [change for change in state.cart[item] if change[0] > u.ts]
            if not state.cart[item]:
                del state.cart[item]
    return {"session_state": (state.entity_id, now, state.clicks, state.start,
                              state.end - state.start, state.items.get(), state.cart_items())}


def _order(state: OrderState, u: Update, now: float) -> Rows:
    if u.op == "place" and state.ts is None:
        state.user, _, state.instrument, _, _, state.terminal = u.data[:6]
        state.ts = u.ts
    elif u.op == "place":
        state.copies += 1
    elif u.op == "scored":
        (state.flagged,) = u.data
    elif u.op == "label":
        state.label_count += 1
    return {}


def scored_update(order_id: str, flagged: bool, ts: float, source: str, offset: int) -> Update:
    """Tells the order's state what its fraud decision was, for the label to grade it."""
    return Update("order", order_id, "scored", ts, f"{source}:scored", (offset, 0), (flagged,))


def is_new(state: State, update: Update) -> bool:
    """Whether ``update`` has not been applied to ``state`` yet."""
    seen = state.applied.get(update.source)
    return seen is None or update.seq > seen


def label_outcome(state: OrderState, label: Update) -> str | None:
    """How the order's decision fares against its label: tp, fp, fn or tn (None if unscored).

    >>> state = OrderState(flagged=True)
    >>> label_outcome(state, Update("order", "o1", "label", 0.0, "labels:0", (0, 0), (False,)))
    'fp'
    """
    if label.op != "label" or state.flagged is None:
        return None
    (is_fraud,) = label.data
    return {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}[
        (bool(state.flagged), bool(is_fraud))]


_APPLY = {"user": _user, "session": _session, "item": _item, "order": _order,
          "instrument": _velocity, "device": _velocity, "ip": _velocity, "terminal": _terminal}


def order_updates(state: OrderState, update: Update, via: str, offset: int,
                  index: int) -> tuple[str, list[Update]]:
    """Apply an update to an order's state; return what it was and the updates it causes.

    An order reaches the entities it names (user, instrument, device, IP, terminal,
    session, items) only through its order's state, and only the first copy of an order
    id does: a shop's resend at another offset changes no window and is counted
    (``"copy"``). A label does the same for the risk of the order's terminal, instrument
    and user; a label that arrives before its order waits in the state and is released
    by the order (``"pending_label"``), and only the first label of an order counts.

    The caused updates come from ``via`` (the updates partition of the order's state) at
    ``offset``, the record that caused them: their source is ``"{via}/{origin}"``, with
    the origin being the input partition of the order or label, and their seq
    ``(offset, index, j)``. For each such source the seqs grow as ``via`` is read, so a
    target ignores them when a crash makes them come again, and their event times grow
    as the origin's do, so lateness is judged as for updates sent directly.

    What it was: ``"placed"``, ``"copy"``, ``"label"``, ``"pending_label"``,
    ``"duplicate_label"``, ``"scored"``, ``"late"``, or ``"redelivered"``.

    >>> from shopstream.events import Order, OrderItem
    >>> order = Order(order_id="o1", user_id="u1", amount=5, payment_fingerprint="c1",
    ...               items=[OrderItem(item_id="i1", price=5)], ts=60)
    >>> (place,) = route(order, "shop.orders:0", 7)
    >>> state = new_state("order")
    >>> what, caused = order_updates(state, place, "updates:2", 40, 0)
    >>> what, [(u.kind, u.entity_id, u.op, u.source, u.seq) for u in caused][:2]
    ('placed', [('user', 'u1', 'order', 'updates:2/shop.orders:0', (40, 0, 0)), ('instrument', 'c1', 'order', 'updates:2/shop.orders:0', (40, 0, 1))])
    >>> (copy,) = route(order, "shop.orders:1", 3)        # the shop sent it again
    >>> order_updates(state, copy, "updates:2", 41, 0)
    ('copy', [])
    >>> order_updates(state, place, "updates:2", 40, 0)    # redelivered after a crash
    ('redelivered', [])
    """
    if not is_new(state, update):
        return "redelivered", []
    late, placed = state.late, state.ts is not None
    apply(state, update)
    if state.late > late:
        return "late", []
    caused: list[tuple[str, str, str, float, str, tuple]] = []  # kind, id, op, ts, origin, data
    if update.op == "place" and placed:
        return "copy", []
    if update.op == "place":
        what = "placed"
        caused += [(kind, entity, op, update.ts, update.source, data)
                   for kind, entity, op, data in _placed(update)]
        if state.pending is not None:  # a label that was waiting for this order
            ts, is_fraud, origin = state.pending[:3]
            state.pending = None
            caused += _label_targets(state, ts, is_fraud, origin)
    elif update.op == "label" and state.label_count > 1:
        what = "duplicate_label"
    elif update.op == "label" and state.ts is None:
        state.pending = (update.ts, bool(update.data[0]), update.source)
        what = "pending_label"
    elif update.op == "label":
        what = "label"
        caused += _label_targets(state, update.ts, bool(update.data[0]), update.source)
    else:
        what = update.op
    return what, [Update(kind, entity, op, ts, f"{via}/{origin}", (offset, index, j), data)
                  for j, (kind, entity, op, ts, origin, data) in enumerate(caused)]


def route_all(events: Iterable[Event], source: str,
              orders: dict[str, OrderState] | None = None) -> Iterator[Update]:
    """Every update that ``events`` cause, in one process, as workers would apply them:
    orders and labels pass through their order's state in ``orders`` (offsets are the
    events' positions). For tests and notebooks that need features without Kafka.

    >>> from shopstream.events import Order, OrderItem
    >>> order = Order(order_id="o1", user_id="u1", amount=5, payment_fingerprint="c1",
    ...               items=[OrderItem(item_id="i1", price=5)], ts=60)
    >>> [(u.kind, u.op) for u in route_all([order, order], "shop.orders:0")]
    [('user', 'order'), ('instrument', 'order'), ('item', 'purchase')]
    """
    orders = {} if orders is None else orders
    for offset, event in enumerate(events):
        for index, update in enumerate(route(event, source, offset)):
            if update.kind == "order":
                state = orders.setdefault(update.entity_id, new_state("order", update.entity_id))
                yield from order_updates(state, update, "updates:0", offset, index)[1]
            else:
                yield update


def _placed(place: Update) -> list[tuple[str, str, str, tuple]]:
    """The entities an order counts in: (kind, id, op, data)."""
    user, amount, instrument, device, ip, terminal, session, items = place.data
    targets = [("user", user, "order", (amount, device, ip)),
               ("instrument", instrument, "order", (user,))]
    if device:
        targets.append(("device", device, "order", (user,)))
    if ip is not None:
        targets.append(("ip", ip, "order", (user,)))
    if terminal:
        targets.append(("terminal", terminal, "order", ()))
    if session:
        targets.append(("session", session, "order", ()))
    return targets + [("item", item, "purchase", ()) for item in items]


def _label_targets(state: OrderState, ts: float, is_fraud: bool, origin: str) -> list[tuple]:
    """A label's updates to the risk of its order's terminal, instrument and user."""
    return [(kind, entity, "label", ts, origin, (is_fraud,))
            for kind, entity in (("terminal", state.terminal), ("instrument", state.instrument),
                                 ("user", state.user)) if entity]
