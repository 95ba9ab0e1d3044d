"""Offline-store readers for trainers: labelled orders, and their features.

Orders and labels come from the raw-event log that workers append (``raw_order`` and
``raw_order_label``). An order's features are, first, the row a scoring worker read for
it (``served_fraud``: ``features_as_served``), so a model learns from the inputs it is
given; for an order no worker scored, Feast's ``get_historical_features`` over the
feature service, read as of a moment just before the order: the order's own updates
are stamped at its event time, so they are not part of its features, exactly as when
the worker scores it before applying it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from shopstream.events import Order
from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import SERVED_FRAUD, OfflineLog
from shopstream.settings import Settings

BEFORE = pd.Timedelta(microseconds=1)  # features as of just before the order
ORDER_KEYS = {"user_id": "user_id", "payment_fingerprint": "instrument_id",
              "device_id": "device_id", "ip": "ip", "terminal_id": "terminal_id"}
"""Order column -> Feast join key of the entity it names."""


def raw(settings: Settings, table: str) -> pd.DataFrame:
    """A raw-event table of the offline log, each event once (redeliveries dropped)."""
    frame = OfflineLog(offline_root(settings)).read(table).to_pandas()
    return frame.drop_duplicates(subset=["topic", "partition", "offset"]).sort_values(
        "event_timestamp", kind="stable").reset_index(drop=True)


def compact(settings: Settings) -> int:
    """Merge the offline log's small files (a worker writes one per table and micro-batch):
    Feast's file store reads thousands of small files slowly. Returns the files merged."""
    log = OfflineLog(offline_root(settings))
    return sum(stats.files_before - stats.files_after for stats in map(log.compact, log.tables()))


def labelled_orders(settings: Settings, start: datetime, end: datetime, *,
                    labels_as_of: datetime) -> pd.DataFrame:
    """Orders placed in ``[start, end)`` whose label had arrived by ``labels_as_of``.

    One row per order, with ``label`` (0/1), ``fraud_type`` and ``label_ts``. An order
    whose label came later is left out: at ``labels_as_of`` nobody knew it.
    """
    orders = raw(settings, "raw_order").drop_duplicates("order_id", keep="first")
    orders = orders[(orders.event_timestamp >= start) & (orders.event_timestamp < end)]
    try:
        labels = raw(settings, "raw_order_label")
    except FileNotFoundError:
        labels = pd.DataFrame(columns=["order_id", "event_timestamp", "is_fraud", "fraud_type"])
    labels = labels[labels.event_timestamp <= labels_as_of].drop_duplicates("order_id", keep="last")
    labels = labels.rename(columns={"event_timestamp": "label_ts"})[
        ["order_id", "label_ts", "is_fraud", "fraud_type"]]
    frame = orders.merge(labels, on="order_id", how="inner")
    frame["label"] = frame.pop("is_fraud").astype(int)
    return frame.reset_index(drop=True)


def orders_between(settings: Settings, start: datetime, end: datetime) -> pd.DataFrame:
    """Every order placed in ``[start, end)``, labelled or not, each once, in event time:
    the traffic a model serves (``labelled_orders`` is what it can learn from)."""
    orders = raw(settings, "raw_order").drop_duplicates("order_id", keep="first")
    orders = orders[(orders.event_timestamp >= start) & (orders.event_timestamp < end)]
    return orders.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def order_events(frame: pd.DataFrame) -> list[Order]:
    """The ``Order`` events of raw-log rows (their ``payload`` is the event's JSON)."""
    return [Order.model_validate_json(payload) for payload in frame["payload"]]


def historical_features(settings: Settings, orders: pd.DataFrame, service: str = "fraud_v1",
                        progress=None) -> list[dict]:
    """Each order's features (``view__feature``) as of just before it, via Feast.

    Entities an order does not name (no device, say) get a key that matches nothing, so
    their features are missing, as online. Rows are returned in ``orders``' order.
    """
    store = feature_store(settings)
    logged = set(OfflineLog(offline_root(settings)).tables())
    projections = store.get_feature_service(service).feature_view_projections
    wanted = [f"{p.name}__{f.name}" for p in projections for f in p.features]
    # A view with no rows yet (no order ever named a device, say) has no files to read.
    features = [f"{p.name}:{f.name}" for p in projections if p.name in logged for f in p.features]
    entity_df = pd.DataFrame({key: orders[column].astype("string").fillna("").to_numpy()
                              for column, key in ORDER_KEYS.items()})
    entity_df["event_timestamp"] = pd.to_datetime(orders["event_timestamp"].to_numpy(), utc=True) - BEFORE
    entity_df["row"] = range(len(entity_df))
    result = []
    chunk = 100_000 if features else 0  # bounded memory for the join
    for start in range(0, len(entity_df) if chunk else 0, chunk or 1):
        part = entity_df.iloc[start:start + chunk]
        joined = store.get_historical_features(entity_df=part, features=features,
                                               full_feature_names=True).to_df()
        result.append(joined)
        if progress is not None:
            progress(len(part))
    joined = pd.concat(result) if result else entity_df
    # Back in ``orders``' order, each row once: the join names an entity row by its keys
    # and time, so two orders with the same keys in the same microsecond come back twice.
    joined = joined.drop(columns=list(ORDER_KEYS.values()) + ["event_timestamp"], errors="ignore")
    joined = entity_df[["row"]].merge(joined.drop_duplicates("row"), on="row", how="left").sort_values("row")
    for name in wanted:
        if name not in joined.columns:
            joined[name] = None
    values = joined[wanted].astype(object).where(joined[wanted].notna(), None)
    return values.to_dict("records")


def window_before(end: datetime, days: float) -> tuple[datetime, datetime]:
    """``(end - days, end)``."""
    return end - timedelta(days=days), end


def served_features(settings: Settings, orders: pd.DataFrame) -> list[dict | None]:
    """Per order of ``orders``, the feature row a worker served it when it scored it
    (``served_fraud``, the first if it was scored twice), or ``None`` if none did."""
    import orjson

    log = OfflineLog(offline_root(settings))
    if SERVED_FRAUD not in log.tables():
        return [None] * len(orders)
    served = log.read(SERVED_FRAUD, columns=["order_id", "served_at", "features"]).to_pandas()
    served = served.sort_values("served_at", kind="stable")  # files are not in the order written
    first = served.drop_duplicates("order_id", keep="first").set_index("order_id")["features"]
    rows = first.reindex(orders["order_id"].astype(str).to_numpy())
    return [None if isinstance(row, float) or row is None else orjson.loads(row) for row in rows]


def features_as_served(settings: Settings, orders: pd.DataFrame, progress=None) -> tuple[list[dict], list[bool]]:
    """Each order's features as a worker served them, and, for the orders no worker
    scored, as of just before the order (``historical_features``); and which were
    served. Training on served rows keeps a model's inputs the ones it will be given,
    whatever the pipeline's lag was (a fast replay scores orders before their entities'
    earlier events are online, and stamps rows late: docs/drift.md)."""
    rows = served_features(settings, orders)
    was_served = [row is not None for row in rows]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        joined = historical_features(settings, orders.iloc[missing].reset_index(drop=True), progress=progress)
        for i, row in zip(missing, joined, strict=True):
            rows[i] = row
    return rows, was_served
