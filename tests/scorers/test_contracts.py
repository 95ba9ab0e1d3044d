"""The contract every stateful scorer keeps, checked generically (as River's ``checks`` do
for every estimator): for each entity state, window and recommender class, an update
returns what it updated, encoding round-trips, a redelivered update changes nothing, and
reads change nothing.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import fields

import pytest

from scorers.neighbours import BoughtTogether, CoVisitation, Popularity, Session, SessionKNN
from scorers.recommend import RecsSession
from scorers.routing import order_updates, route, route_all
from scorers.states import STATES, apply, count, new_state, state_from_data
from scorers.windows import LastN, WindowedDistinct, WindowedStats
from shopstream.events import Order
from tools.simulator import Shop, SimConfig

START = 1_700_000_400.0


def shop_events(n: int = 3_000) -> list:
    return list(itertools.islice(Shop(SimConfig(seed=3, users=50, items=200)).events(start=START, n=n), n))


def fed(kind: str, n: int = 300):
    """A state of ``kind`` fed with the updates a simulated shop routes to it, and a
    function that delivers the last 50 of them again and returns what that caused. An
    order's updates pass through its order state (``order_updates``), as in a worker."""
    events = shop_events()
    if kind == "order":
        orders: dict = {}
        list(route_all(events, "topic:0", orders))
        state = max(orders.values(), key=lambda o: len(o.to_data()["applied"]))

        def redeliver() -> list:  # the orders' records read again: what their states pass on
            return [caused for offset, event in enumerate(events) if isinstance(event, Order)
                    for index, update in enumerate(route(event, "topic:0", offset)) if update.kind == "order"
                    for caused in order_updates(orders[update.entity_id], update, "updates:0", offset, index)[1]]
        return state, redeliver
    state = new_state(kind, "e1", lateness_s=300.0)
    updates = [u for u in route_all(events, "topic:0") if u.kind == kind][:n]
    assert updates, f"the shop sends no {kind} update"
    for update in updates:
        apply(state, update)
    return state, lambda: [rows for update in updates[-50:] if (rows := apply(state, update))]


def reads(state) -> list:
    """Everything a worker reads of a state: each tiled aggregate in each window, and each
    window field's counts and totals."""
    out = []
    if state.TILES is not None:
        out += [count(state, a, w) for a in state.TILES.aggregates for w in state.TILES.windows]
    for spec in fields(state):
        value = getattr(state, spec.name)
        if isinstance(value, WindowedStats):
            out.append((value.counts(), value.totals()))
        elif isinstance(value, WindowedDistinct):
            out.append([value.count(w) for w in value.windows])
        elif isinstance(value, LastN):
            out.append(value.get())
    return out


@pytest.fixture(params=sorted(STATES))
def kind(request) -> str:
    return request.param


def test_a_state_round_trips_through_its_encoding(kind):
    state, _ = fed(kind)
    again = state_from_data(kind, copy.deepcopy(state.to_data()))
    assert again.to_data() == state.to_data()
    assert reads(again) == reads(state)


def test_a_redelivered_update_changes_nothing(kind):
    state, redeliver = fed(kind)
    before = state.to_data()
    assert redeliver() == []  # a crash makes the partitions read their last records again
    assert state.to_data() == before


def test_reads_change_nothing(kind):
    state, _ = fed(kind)
    before = state.to_data()
    reads(state), reads(state)
    assert state.to_data() == before


WINDOWS = [lambda: WindowedStats(("10m", "1h", "1d")), lambda: WindowedDistinct(("1h", "1d")), lambda: LastN(5)]


@pytest.mark.parametrize("make", WINDOWS, ids=["WindowedStats", "WindowedDistinct", "LastN"])
def test_a_window_update_returns_it_round_trips_and_reads_change_nothing(make):
    window = make()
    for i in range(200):
        value = f"v{i % 7}" if not isinstance(window, WindowedStats) else float(i % 5)
        assert (window.update(START + 30 * i, value) if not isinstance(window, LastN)
                else window.update(value)) is window
    data = copy.deepcopy(window.to_data())
    assert make().load(data).to_data() == window.to_data()
    if isinstance(window, WindowedStats):
        before = window.to_data()
        window.counts(), window.totals(), window.count("1h"), window.sum("1d"), window.mean("1h"), window.std("1d")
        assert window.to_data() == before
    elif isinstance(window, WindowedDistinct):
        before = window.to_data()
        window.count("1h"), window.count("1d")
        assert window.to_data() == before


SESSIONS = [Session(("a", "b", "c"), 0.0), Session(("b", "c"), 10.0), Session(("c", "d", "a"), 20.0),
            Session(("a", "d"), 30.0)]
RECOMMENDERS = [Popularity, CoVisitation, BoughtTogether, SessionKNN]


@pytest.mark.parametrize("cls", RECOMMENDERS, ids=lambda c: c.__name__)
def test_a_recommender_fit_returns_it_round_trips_and_scores_change_nothing(cls):
    model = cls()
    assert model.fit(SESSIONS) is model
    restored = cls.from_state(copy.deepcopy(model.state()))
    for items in (["a"], ["b", "c"], ["d"], []):
        assert restored.scores(items) == model.scores(items)
    before = copy.deepcopy(model.state())
    model.scores(["a", "b"])
    assert model.state() == before


def test_the_recs_session_updates_round_trips_ignores_redeliveries_and_reads_change_nothing():
    events = [(op, f"i{n % 7}", f"shop.{'clicks' if op == 'click' else 'carts'}:0", n)
              for n, op in enumerate(["click", "add", "click", "remove", "add", "click"] * 10)]
    session = RecsSession(max_items=20)
    assert all(session.update(*event) for event in events)
    assert session.buy(["i1"], "orders:0", 3)
    saved = session.to_json()
    assert RecsSession.from_json(saved, max_items=20) == session
    assert not any(session.update(*event) for event in events[-20:]) and not session.buy(["i2"], "orders:0", 3)
    assert session.to_json() == saved  # redelivered: nothing changed
    session.view("click"), session.view("cart")
    assert session.to_json() == saved
    with pytest.raises(ValueError, match="not a saved session"):
        RecsSession.from_json(b'{"items": 3}')
