"""The append-only offline log: raw events and feature rows as parquet files.

Every write adds one new file, so its cost is proportional to the batch, never to the
size of the log (Feast's own push-to-offline rewrites the whole file). Each table is a
folder, ``<root>/<table>/``, that a Feast ``FileSource`` reads as one dataset. Files are
named ``<yyyymmdd>-<hhmmss>-<random>.parquet`` by the wall-clock time of the write and
appear atomically: a file is written under a hidden name and renamed when complete.

Many small files make reads slow, so ``compact`` merges each day's files into one, and
old files are removed after ``features.offline_keep_days`` (``expire``). A worker runs
both by itself every ``features.offline_maintain_s`` (``maintain``); ``shopstream offline
compact`` runs a compaction by hand. Both hold a lock file in the log's root, so two
processes take turns instead of merging the same files twice.

Durability: a file's bytes are fsynced before it is renamed into place, and the folder
after, so a file that a committed Kafka offset relies on survives a power cut. A write
that fails (a full disk) removes its hidden file; ``remove_stale_tmp`` clears those
left by a process that was killed mid-write.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock


@dataclass
class CompactionStats:
    """What a compaction did to one table."""

    table: str
    files_before: int
    files_after: int
    rows: int


class OfflineLog:
    """Append-only parquet tables under ``root``."""

    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = Path(root)
        self.fsync = fsync

    def append(self, table: str, data: pa.Table) -> Path | None:
        """Write ``data`` as a new file of ``table``; return its path (``None`` if empty)."""
        if data.num_rows == 0:
            return None
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"
        self._write(data, folder, name, compression="zstd")
        return folder / name

    def _write(self, data: pa.Table, folder: Path, name: str, **options) -> None:
        """Write ``data`` under a hidden name (readers skip names starting with "."),
        make it durable, and rename it into place; on failure leave nothing behind."""
        hidden = folder / f".{name}.tmp"
        try:
            with open(hidden, "wb") as file:
                pq.write_table(data, file, **options)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            os.replace(hidden, folder / name)
        except BaseException:
            hidden.unlink(missing_ok=True)
            raise
        if self.fsync:  # the rename itself
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove_stale_tmp(self, older_than_s: float = 3600.0) -> int:
        """Remove hidden files that a killed writer left, older than ``older_than_s`` (a
        live writer's are seconds old); return how many."""
        if not self.root.is_dir():
            return 0
        cutoff, removed = time.time() - older_than_s, 0
        for path in self.root.glob("*/.*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process removed it first
                continue
        return removed

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

    def compact(self, table: str, *, min_files: int = 2, before: str | None = None) -> CompactionStats:
        """Merge each day's files of ``table`` into one file (only the days before the
        ``yyyymmdd`` day ``before``, if given: a day still written to is left alone).

        The merged file appears before the small ones disappear, so a reader that lists
        the folder in between may see rows twice (point-in-time reads drop such copies).
        Two compactions of one log take turns (a lock file), and each lists the files again
        once it holds the lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".compact.lock"):
            return self._compact(table, min_files=min_files, before=before)

    def expire(self, table: str, keep_days: float, now: datetime | None = None) -> int:
        """Remove the files of ``table`` written on days that ended more than ``keep_days``
        days before ``now``; return how many. Taken in turns with compactions."""
        now = now or datetime.now(UTC)
        cutoff = f"{now - timedelta(days=keep_days):%Y%m%d}"
        self.root.mkdir(parents=True, exist_ok=True)
        removed = 0
        with FileLock(self.root / ".compact.lock"):
            for path in self.files(table):
                if path.name[:8] < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def maintain(self, keep_days: float, now: datetime | None = None) -> list[tuple[str, int, CompactionStats]]:
        """What a worker runs now and then: for every table, remove the files older than
        ``keep_days``, then merge each earlier day's files into one. Returns, per table,
        the files removed and what the compaction did."""
        now = now or datetime.now(UTC)
        done = []
        for table in self.tables():
            removed = self.expire(table, keep_days, now)
            done.append((table, removed, self.compact(table, before=f"{now:%Y%m%d}")))
        return done

    def _compact(self, table: str, *, min_files: int, before: str | None) -> CompactionStats:
        by_day: dict[str, list[Path]] = defaultdict(list)
        files = self.files(table)
        for path in files:
            by_day[path.name[:8]].append(path)
        rows = 0
        for day, group in by_day.items():
            if len(group) < min_files or (before is not None and day >= before):
                rows += sum(pq.read_metadata(p).num_rows for p in group)
                continue
            merged = pa.concat_tables([pq.read_table(p) for p in group], promote_options="default")
            folder = self.root / table
            name = f"{day}-000000-compact{uuid.uuid4().hex[:8]}.parquet"
            self._write(merged, folder, name, compression="zstd", row_group_size=256_000)
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


SERVED_FRAUD = "served_fraud"
"""The offline log's table of the feature rows served to fraud scoring (``served_table``)."""


def served_table(order_ids: list[str], order_ts: list[datetime], features: list[dict],
                 model_version: str, served_at: datetime) -> pa.Table:
    """The feature rows a scoring worker read for a batch of orders, as it read them
    (``view__feature`` to value, as JSON): what a model was served, so that a trainer can
    learn from exactly that ("train like you serve"), whatever the pipeline's lag was."""
    import orjson

    return pa.table({
        "order_id": pa.array(order_ids, pa.string()),
        "event_timestamp": pa.array([int(t.timestamp() * 1_000_000) for t in order_ts],
                                    pa.timestamp("us", tz="UTC")),
        "served_at": pa.array([int(served_at.timestamp() * 1_000_000)] * len(order_ids),
                              pa.timestamp("us", tz="UTC")),
        "model_version": pa.array([model_version] * len(order_ids), pa.string()),
        "features": pa.array([orjson.dumps(row, default=str).decode() for row in features], pa.string()),
    })
