"""The append-only offline log: raw events and feature rows as parquet files.

Every write adds one new file, so its cost is proportional to the batch, never to the
size of the log (Feast's own push-to-offline rewrites the whole file). Each table is a
folder, ``<root>/<table>/``, that a Feast ``FileSource`` reads as one dataset. Files are
named ``<yyyymmdd>-<hhmmss>-<random>.parquet`` by the wall-clock time of the write and
appear atomically: a file is written under a hidden name and renamed when complete.

Many small files make reads slow, so ``compact`` merges each day's files into one;
``shopstream offline compact`` runs it.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass
class CompactionStats:
    """What a compaction did to one table."""

    table: str
    files_before: int
    files_after: int
    rows: int


class OfflineLog:
    """Append-only parquet tables under ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def append(self, table: str, data: pa.Table) -> Path | None:
        """Write ``data`` as a new file of ``table``; return its path (``None`` if empty)."""
        if data.num_rows == 0:
            return None
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        hidden = folder / f".{name}.tmp"  # readers skip names starting with "."
        pq.write_table(data, hidden, compression="zstd")
        os.replace(hidden, folder / name)
        return folder / name

    def files(self, table: str) -> list[Path]:
        """The table's complete files, oldest first."""
        folder = self.root / table
        return sorted(folder.glob("[0-9]*.parquet")) if folder.is_dir() else []

    def tables(self) -> list[str]:
        """Names of the tables that have files."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.files(p.name))

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """The whole table (raises ``FileNotFoundError`` if it has no files)."""
        files = self.files(table)
        if not files:
            raise FileNotFoundError(f"the offline log has no table {table!r} under {self.root}")
        return pa.concat_tables(pq.read_table(f, columns=columns) for f in files)

    def compact(self, table: str, *, min_files: int = 2) -> CompactionStats:
        """Merge each day's files of ``table`` into one file.

        The merged file appears before the small ones disappear, so a reader that lists
        the folder in between may see rows twice: run it when no training job reads.
        """
        by_day: dict[str, list[Path]] = defaultdict(list)
        files = self.files(table)
        for path in files:
            by_day[path.name[:8]].append(path)
        rows = 0
        for day, group in by_day.items():
            if len(group) < min_files:
                rows += sum(pq.read_metadata(p).num_rows for p in group)
                continue
            merged = pa.concat_tables([pq.read_table(p) for p in group], promote_options="default")
            folder = self.root / table
            name = f"{day}-000000-compact{uuid.uuid4().hex[:8]}.parquet"
            hidden = folder / f".{name}.tmp"
            pq.write_table(merged, hidden, compression="zstd", row_group_size=256_000)
            os.replace(hidden, folder / name)
            for path in group:
                path.unlink()
            rows += merged.num_rows
        return CompactionStats(table, len(files), len(self.files(table)), rows)


def _arrow_type(annotation) -> pa.DataType:
    text = str(annotation)
    if "bool" in text:
        return pa.bool_()
    if annotation is int or "Annotated[int" in text:
        return pa.int64()
    if "float" in text:
        return pa.float64()
    return pa.string()


def events_table(events: list, origins: list[tuple[str, int, int]]) -> pa.Table:
    """Raw events of one kind, with their Kafka origin, as an Arrow table.

    Scalar fields become columns; ``items`` and unknown extra fields are kept whole in
    ``payload``, the event's JSON.
    """
    if not events:
        return pa.table({})
    model = type(events[0])
    fields = {name: _arrow_type(info.annotation) for name, info in model.model_fields.items()
              if name not in ("ts", "items")}
    columns: dict[str, list] = {name: [] for name in fields}
    for event in events:
        for name in fields:
            value = getattr(event, name)
            columns[name].append(value if value is None or fields[name] != pa.string() else str(value))
    topics, partitions, offsets = zip(*origins, strict=True)
    return pa.table({
        "event_timestamp": pa.array([int(e.ts.timestamp() * 1_000_000) for e in events],
                                    pa.timestamp("us", tz="UTC")),
        **{name: pa.array(values, fields[name]) for name, values in columns.items()},
        "payload": pa.array([e.model_dump_json() for e in events], pa.string()),
        "topic": pa.array(topics, pa.string()),
        "partition": pa.array(partitions, pa.int32()),
        "offset": pa.array(offsets, pa.int64()),
    })
