"""The simulated shop: deterministic, in time order, with fraud and late labels."""

from __future__ import annotations

from collections import Counter

from shopstream.events import CartEvent, Click, Order, OrderLabel
from tools.simulator import Shop, SimConfig

DAY = 86_400
CONFIG = SimConfig(seed=3, users=300, items=2_000, sessions_per_hour=40, card_testing_per_day=6,
                   takeover_share=0.01)


def simulate(n=60_000, config=CONFIG):
    return list(Shop(config).events(start=1_700_000_000.0, n=n))


EVENTS = simulate()


def test_same_seed_same_shop():
    assert simulate(2_000) == simulate(2_000)
    assert simulate(2_000) != simulate(2_000, SimConfig(seed=4))


def test_events_come_in_time_order_and_mix_every_kind():
    assert all(a.ts <= b.ts for a, b in zip(EVENTS, EVENTS[1:], strict=False))
    kinds = Counter(type(e) for e in EVENTS)
    assert kinds[Click] > kinds[CartEvent] > kinds[Order] > 0 and kinds[OrderLabel] > 0


def test_popularity_is_long_tailed_and_sessions_stay_on_a_theme():
    views = Counter(e.item_id for e in EVENTS if isinstance(e, Click))
    counts = sorted(views.values(), reverse=True)
    top = sum(counts[: len(counts) // 100 or 1])
    assert top / sum(counts) > 0.05  # the top 1 % of items draw far more than 1 % of views
    same_theme = total = 0
    last: dict[str, int] = {}
    for e in EVENTS:
        if isinstance(e, Click):
            theme = int(e.item_id.split("-")[1]) // CONFIG.theme_size
            if e.session_id in last:
                total += 1
                same_theme += last[e.session_id] == theme
            last[e.session_id] = theme
    assert same_theme / total > 0.6  # co-visitation: consecutive views share a theme


def test_every_order_is_labelled_later_and_fraud_has_its_patterns():
    orders = {e.order_id: e for e in EVENTS if isinstance(e, Order)}
    labels = [e for e in EVENTS if isinstance(e, OrderLabel)]
    assert all(label.order_id in orders and label.ts > orders[label.order_id].ts for label in labels)
    frauds = Counter(label.fraud_type for label in labels if label.is_fraud)
    assert frauds["card_testing"] > 0 and frauds["account_takeover"] > 0
    for label in labels:
        delay = (label.ts - orders[label.order_id].ts).total_seconds()
        assert (2 * DAY <= delay <= 10 * DAY) if label.is_fraud else delay == 7 * DAY
    testing = [orders[label.order_id] for label in labels if label.fraud_type == "card_testing"]
    by_card = Counter(order.payment_fingerprint for order in testing)
    assert max(by_card.values()) >= 5 and all(order.amount < 5 for order in testing)
    takeovers = [orders[label.order_id] for label in labels if label.fraud_type == "account_takeover"]
    assert all(order.country not in ("DE", "FR", "NL", "AT", "PL") for order in takeovers)


def test_ground_truth_is_not_in_the_events():
    assert not any(e.model_extra for e in EVENTS)
