"""Feature views: the entity each describes, its columns with their types, and its TTL.

Pure definitions, no I/O. Every view and column is defined once, here: the Feast repo
(``feature_repo/shop_features.py``), the online writer and the offline log read their
schemas from ``VIEWS``, and ``scorers.states`` builds rows in the same column order.

Names are mechanical: ``{what}_{stat}_{window}``, for example ``order_amount_mean_7d``.
A column is an integer when it counts (``_count_`` in its name, or ending in ``_count``),
a list of item ids when the view names it in ``lists``, and a float otherwise.

>>> VIEWS["user_orders"].features[:2], VIEWS["user_orders"].type_of("order_amount_count_30d")
(('order_amount_count_30d', 'order_amount_sum_1d'), 'int')
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    """A feature view: the entity it describes, its feature columns and its TTL."""

    name: str
    entity: str
    features: tuple[str, ...]
    ttl_days: int
    lists: tuple[str, ...] = ()  # features holding lists of item ids; the rest are numbers

    def type_of(self, feature: str) -> str:
        """``"int"``, ``"float"`` or ``"list"`` (of item ids): the type of a column."""
        if feature in self.lists:
            return "list"
        return "int" if "_count_" in feature or feature.endswith("_count") else "float"

    @property
    def types(self) -> dict[str, str]:
        """Every feature column and its type, in order."""
        return {feature: self.type_of(feature) for feature in self.features}


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
        # Its counts over 1 and 7 days would equal user_activity's orders_count_24h and
        # orders_count_7d, so only the 30 days count is here.
        View("user_orders", "user",
             ("order_amount_count_30d",)
             + _names("order_amount", ("sum", "mean", "std"), AMOUNT_WINDOWS)
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
