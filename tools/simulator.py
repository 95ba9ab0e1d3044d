"""A synthetic shop: users, sessions, carts, orders, fraud and late labels, in event time.

Pure and seeded: ``Shop(config).events(start)`` yields events in time order and sends
nothing; ``shopstream simulate`` sends them through the client.

What makes it realistic enough to train and test on:

- **Long-tailed popularity with co-visitation.** Items belong to themes (a few dozen
  items each); a session browses mostly within one theme, choosing items by a Zipf law,
  so items are viewed together, and items that share a theme are bought together.
- **Users with habits.** Each user has a home device, IP, country and card, a typical
  basket value, and returns for several sessions.
- **Fraud, three ways**, each leaving the traces a fraud model should learn:
  card testing (one stolen card, a burst of small orders from new accounts and devices),
  account takeover (a known user, a new device and foreign IP, a large basket), and
  compromised terminals (for some days every order through a terminal is fraudulent).
- **Labels arrive late**: every order gets an ``OrderLabel`` days later (fraud by
  chargeback after 2 to 10 days, genuine orders confirmed after 7).

>>> events = list(Shop(SimConfig(seed=1)).events(start=1_700_000_000.0, n=500))
>>> len(events), all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(500, True)
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from shopstream.events import CartEvent, Click, Event, Order, OrderItem, OrderLabel

DAY = 86_400.0


@dataclass(frozen=True)
class SimConfig:
    """Size and behaviour of the simulated shop."""

    seed: int = 7
    users: int = 2_000
    items: int = 5_000
    theme_size: int = 40  # items per theme: the unit of co-visitation
    terminals: int = 200
    sessions_per_hour: float = 3_600.0  # new sessions per simulated hour
    click_gap_s: float = 20.0  # mean seconds between a session's clicks
    buy_probability: float = 0.08  # share of sessions that end in an order
    card_testing_per_day: float = 4.0  # card-testing bursts per simulated day
    takeover_share: float = 0.001  # share of sessions taken over by an account thief
    compromised_terminal_share: float = 0.02  # terminals compromised at some point
    genuine_label_delay_s: float = 7 * DAY
    fraud_label_delay_s: tuple[float, float] = (2 * DAY, 10 * DAY)


@dataclass
class _User:
    user_id: str
    device: str
    ip: str
    country: str
    card: str
    basket: float  # typical order value


class Shop:
    """The simulated shop; ``events`` yields its activity in event-time order."""

    def __init__(self, config: SimConfig = SimConfig()):
        self.config = config
        self._rng = random.Random(config.seed)
        self._themes = max(config.items // config.theme_size, 1)
        # Zipf laws: theme k is chosen with weight 1/(k+1)^0.8, rank r in a theme 1/(r+1).
        self._theme_weights = list(itertools.accumulate(
            1 / (k + 1) ** 0.8 for k in range(self._themes)))
        self._rank_weights = list(itertools.accumulate(
            1 / (r + 1) for r in range(config.theme_size)))
        self._users = [self._new_user(i) for i in range(config.users)]
        self._orders = itertools.count()
        self._compromised: dict[str, tuple[float, float]] = {}  # terminal -> (from, to)
        self._truth: dict[str, str | None] = {}  # order id -> fraud type, until labelled

    # --- people and things ------------------------------------------------------------

    def _new_user(self, i: int) -> _User:
        rng = self._rng
        return _User(user_id=f"user-{i}", device=f"dev-{rng.getrandbits(40):010x}",
                     ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                     country=rng.choice(["DE", "DE", "DE", "FR", "NL", "AT", "PL"]),
                     card=f"card-{rng.getrandbits(48):012x}", basket=rng.lognormvariate(3.5, 0.6))

    def _item(self, theme: int) -> tuple[str, float]:
        """An item of ``theme``, Zipf-distributed within it, and its price."""
        rank = self._rng.choices(range(self.config.theme_size), cum_weights=self._rank_weights)[0]
        index = theme * self.config.theme_size + rank
        price = round(5 + (index * 7919 % 1000) / 10, 2)  # a stable price per item
        return f"item-{index}", price

    def _theme(self) -> int:
        """Themes are long-tailed too: a few are very popular."""
        return self._rng.choices(range(self._themes), cum_weights=self._theme_weights)[0]

    def _terminal(self) -> str:
        return f"term-{self._rng.randrange(self.config.terminals)}"

    # --- the event stream -------------------------------------------------------------

    def events(self, start: float, n: int | None = None) -> Iterator[Event]:
        """Events from ``start`` (epoch seconds) on, in time order; ``n`` of them or forever."""
        cfg, rng = self.config, self._rng
        for t in range(cfg.terminals):
            if rng.random() < cfg.compromised_terminal_share:
                begin = start + rng.uniform(0, 20 * DAY)
                self._compromised[f"term-{t}"] = (begin, begin + rng.uniform(3, 14) * DAY)
        # (time, tie-breaker, generator or None, its next event): the earliest first
        queue: list[tuple[float, int, Iterator[Event] | None, Event]] = []
        tie = itertools.count()

        def schedule(generator: Iterator[Event] | None, event: Event | None) -> None:
            if event is not None:
                heapq.heappush(queue, (event.ts.timestamp(), next(tie), generator, event))

        next_session = start
        next_testing = start + rng.expovariate(cfg.card_testing_per_day / DAY)
        emitted = 0
        while n is None or emitted < n:
            upcoming = queue[0][0] if queue else math.inf
            if next_session <= min(next_testing, upcoming):
                session = _Session(self, next_session)
                schedule(session, next(session, None))
                next_session += rng.expovariate(cfg.sessions_per_hour / 3600)
            elif next_testing <= upcoming:
                burst = _CardTesting(self, next_testing)
                schedule(burst, next(burst, None))
                next_testing += rng.expovariate(cfg.card_testing_per_day / DAY)
            else:
                _, _, generator, event = heapq.heappop(queue)
                if isinstance(event, Order):
                    schedule(None, self._label(event))
                if generator is not None:
                    schedule(generator, next(generator, None))
                emitted += 1
                yield event

    def _label(self, order: Order) -> OrderLabel:
        cfg = self.config
        fraud_type = self._truth.pop(order.order_id, None)
        delay = (self._label_rng(order).uniform(*cfg.fraud_label_delay_s) if fraud_type
                 else cfg.genuine_label_delay_s)
        return OrderLabel(order_id=order.order_id, is_fraud=bool(fraud_type),
                          chargeback=bool(fraud_type), fraud_type=fraud_type,
                          ts=order.ts.timestamp() + delay)

    def _label_rng(self, order: Order) -> random.Random:
        return random.Random(f"{self.config.seed}-{order.order_id}")  # the same label every call


class _Session:
    """A generator of one session's events; ``next_ts`` is when its next event happens."""

    def __init__(self, shop: Shop, ts: float):
        self.shop, self.next_ts = shop, ts
        rng = shop._rng
        self.user = rng.choice(shop._users)
        self.session_id = f"sess-{rng.getrandbits(48):012x}"
        self._events = self._run(rng)

    def __iter__(self):
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def _advance(self, rng: random.Random) -> float:
        self.next_ts += rng.expovariate(1 / self.shop.config.click_gap_s)
        return self.next_ts

    def _run(self, rng: random.Random) -> Iterator[Event]:
        shop, user, cfg = self.shop, self.user, self.shop.config
        theme = shop._theme()
        takeover = rng.random() < cfg.takeover_share
        device, ip, country = user.device, user.ip, user.country
        if takeover:  # someone else holds the account: a new device, a foreign IP
            device = f"dev-{rng.getrandbits(40):010x}"
            ip = f"185.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            country = rng.choice(["RU", "NG", "BR", "VN"])
        cart: dict[str, float] = {}
        for _ in range(max(1, int(rng.expovariate(1 / 6)))):
            if rng.random() < 0.15:  # wander to another theme now and then
                theme = shop._theme()
            item, price = shop._item(theme)
            yield Click(user_id=user.user_id, session_id=self.session_id, item_id=item,
                        page_type="product", device_id=device, ip=ip, ts=self.next_ts)
            self._advance(rng)
            if rng.random() < 0.12 or (takeover and rng.random() < 0.5):
                cart[item] = price
                yield CartEvent(user_id=user.user_id, session_id=self.session_id, action="add",
                                item_id=item, qty=1, price=price, ts=self.next_ts)
                self._advance(rng)
        if cart and (takeover or rng.random() < cfg.buy_probability * 4):
            terminal = shop._terminal()
            window = shop._compromised.get(terminal)
            compromised = window is not None and window[0] <= self.next_ts <= window[1]
            fraud = "account_takeover" if takeover else "compromised_terminal" if compromised else None
            lines = [OrderItem(item_id=i, price=p, qty=1) for i, p in cart.items()]
            if takeover:  # the thief fills the basket with expensive things
                lines = [OrderItem(item_id=i, price=p, qty=rng.randint(2, 5)) for i, p in cart.items()]
            amount = round(sum(line.price * line.qty for line in lines), 2)
            order_id = f"ord-{shop.config.seed}-{next(shop._orders)}"
            shop._truth[order_id] = fraud
            yield Order(order_id=order_id, user_id=user.user_id,
                        session_id=self.session_id, items=lines, amount=amount, currency="EUR",
                        payment_fingerprint=user.card, device_id=device, ip=ip, country=country,
                        terminal_id=terminal, ts=self.next_ts)


class _CardTesting(_Session):
    """A stolen card tried with many small orders from fresh accounts within minutes."""

    def _run(self, rng: random.Random) -> Iterator[Event]:
        shop = self.shop
        card = f"card-{rng.getrandbits(48):012x}"
        ip = f"45.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(rng.randint(5, 25)):
            user = f"user-new-{rng.getrandbits(40):010x}"
            item, _ = shop._item(shop._theme())
            price = round(rng.uniform(0.5, 3.0), 2)
            order_id = f"ord-{shop.config.seed}-{next(shop._orders)}"
            shop._truth[order_id] = "card_testing"
            yield Order(order_id=order_id, user_id=user,
                        session_id=f"sess-{rng.getrandbits(48):012x}",
                        items=[OrderItem(item_id=item, price=price, qty=1)], amount=price,
                        currency="EUR", payment_fingerprint=card,
                        device_id=f"dev-{rng.getrandbits(40):010x}", ip=ip, country="US",
                        terminal_id=shop._terminal(), ts=self.next_ts)
            self.next_ts += rng.expovariate(1 / 15)


def default_start(n: int, config: SimConfig, now: datetime | None = None) -> float:
    """A start time such that ``n`` events end about now (events never lie in the future)."""
    now = now or datetime.now(UTC)
    events_per_second = config.sessions_per_hour / 3600 * 7  # about 7 events per session
    return now.timestamp() - n / events_per_second - 3 * config.click_gap_s * 10
