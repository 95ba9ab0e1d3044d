"""Feature rows as the offline log and the online store take them, without Feast.

A row of a view is ``(entity id, event time, *features)`` in the order of the view's
features (``scorers.views``). Workers build Arrow tables of them for the offline log and
keep the newest per entity for the online store; neither needs Feast imported.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from scorers.views import VIEWS

JOIN_KEYS = {"user": "user_id", "session": "session_id", "item": "item_id",
             "instrument": "instrument_id", "device": "device_id", "ip": "ip",
             "terminal": "terminal_id"}
"""The Feast join key of each entity kind."""


def feature_table(view_name: str, rows: list[tuple]) -> pa.Table:
    """Rows ``(entity id, event time, *features)`` of a view as an Arrow table.

    ``created`` is the wall-clock time of the write, plus each row's position in
    microseconds: Feast uses it to choose between two rows of one entity with the same
    event time, and the later write must win even inside one batch.
    """
    view = VIEWS[view_name]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(len(view.features) + 2)]
    arrays = {
        JOIN_KEYS[view.entity]: pa.array(columns[0], pa.string()),
        "event_timestamp": pa.array([int(ts * 1_000_000) for ts in columns[1]],
                                    pa.timestamp("us", tz="UTC")),
    }
    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    arrays["created"] = pa.array(range(now, now + len(columns[0])), pa.timestamp("us", tz="UTC"))
    arrow = {"list": pa.list_(pa.string()), "int": pa.int64(), "float": pa.float64()}
    for (name, kind), values in zip(view.types.items(), columns[2:], strict=True):
        arrays[name] = pa.array(values, arrow[kind])
    return pa.table(arrays)


def latest_per_entity(rows: list[tuple]) -> list[tuple]:
    """The newest row of each entity: only the latest value matters online."""
    latest: dict[str, tuple] = {}
    for row in rows:
        current = latest.get(row[0])
        if current is None or row[1] >= current[1]:
            latest[row[0]] = row
    return list(latest.values())
