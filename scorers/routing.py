"""Routing: which entities each event updates, and how orders reach theirs.

Pure code, no I/O. A worker turns every valid event into ``Update``s with ``route`` and
sends each to the partition that owns its entity, where ``scorers.states.apply`` applies
it. Orders and labels go to the order's state first (``order_updates``), which passes
them on to the entities they count in, once per order id.

>>> from shopstream.events import Click
>>> click = Click(user_id="u1", session_id="s1", item_id="i1", device_id="d1", ts=60)
>>> [(u.kind, u.entity_id, u.op) for u in route(click, "shop.clicks:0", 17)]
[('user', 'u1', 'click'), ('session', 's1', 'click'), ('item', 'i1', 'view')]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from scorers.states import OrderState, apply, is_new, new_state
from shopstream.events import CartEvent, Click, Event, Order, OrderLabel


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


def scored_update(order_id: str, flagged: bool, ts: float, source: str, offset: int) -> Update:
    """Tells the order's state what its fraud decision was, for the label to grade it."""
    return Update("order", order_id, "scored", ts, f"{source}:scored", (offset, 0), (flagged,))


def grade(state: OrderState, what: str) -> str | None:
    """How the order's decision fares against its first label, tp, fp, fn or tn, once both
    are known: when ``order_updates`` says the first label came (``"label"``,
    ``"pending_label"``) to a scored order, or the score came (``"scored_after_label"``)
    to a labelled one. None otherwise, so each decision is graded once.

    >>> state = OrderState(flagged=True, label=False)
    >>> grade(state, "label"), grade(state, "duplicate_label")
    ('fp', None)
    """
    if what not in ("label", "pending_label", "scored_after_label") or state.flagged is None \
            or state.label is None:
        return None
    return {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}[
        (bool(state.flagged), bool(state.label))]


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
    ``"duplicate_label"``, ``"scored"``, ``"scored_after_label"`` (the order's first score,
    its label already in: ``grade`` grades it then), ``"late"``, or ``"redelivered"``.

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
    late, placed, scored = state.late, state.ts is not None, state.flagged is not None
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
    elif update.op == "scored" and not scored and state.label is not None:
        what = "scored_after_label"
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
