"""Online writes: feature rows to the Feast online store (Redis), a micro-batch at a time."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
from feast import FeatureStore

from scorers.features import VIEWS

JOIN_KEYS = {"user": "user_id", "session": "session_id", "item": "item_id",
             "instrument": "instrument_id", "device": "device_id", "ip": "ip",
             "terminal": "terminal_id"}
"""The Feast join key of each entity kind."""


def feature_table(view_name: str, rows: list[tuple]) -> pa.Table:
    """Rows ``(entity id, event time, *features)`` of a view as an Arrow table.

    ``created`` is the wall-clock time of the write: Feast uses it to choose between
    two rows of one entity with the same event time (the later write wins).
    """
    view = VIEWS[view_name]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(len(view.features) + 2)]
    arrays = {
        JOIN_KEYS[view.entity]: pa.array(columns[0], pa.string()),
        "event_timestamp": pa.array([int(ts * 1_000_000) for ts in columns[1]],
                                    pa.timestamp("us", tz="UTC")),
    }
    arrays["created"] = pa.array([datetime.now(UTC)] * len(columns[0]), pa.timestamp("us", tz="UTC"))
    for name, values in zip(view.features, columns[2:], strict=True):
        if name in view.lists:
            arrays[name] = pa.array(values, pa.list_(pa.string()))
        elif "_count_" in name or name.endswith("_count"):
            arrays[name] = pa.array(values, pa.int64())
        else:
            arrays[name] = pa.array(values, pa.float64())
    return pa.table(arrays)


def latest_per_entity(rows: list[tuple]) -> list[tuple]:
    """The newest row of each entity: only the latest value matters online."""
    latest: dict[str, tuple] = {}
    for row in rows:
        current = latest.get(row[0])
        if current is None or row[1] >= current[1]:
            latest[row[0]] = row
    return list(latest.values())


class OnlineWriter:
    """Writes micro-batches of feature rows through Feast to the online store."""

    def __init__(self, store: FeatureStore):
        self.store = store

    def write(self, view_name: str, rows: list[tuple]) -> int:
        """Write the newest row per entity of ``rows``; return how many were written."""
        latest = latest_per_entity(rows)
        if not latest:
            return 0
        self.store.write_to_online_store(view_name, feature_table(view_name, latest).to_pandas())
        return len(latest)
