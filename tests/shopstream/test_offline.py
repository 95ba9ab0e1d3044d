"""The offline log: appends that never touch what is already written, and compaction."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopstream.offline import OfflineLog, events_table
from shopstream.rows import feature_table, latest_per_entity
from tools.simulator import Shop, SimConfig


def batch(start: int, n: int = 100) -> pa.Table:
    return feature_table("user_orders", [
        (f"u{i}", 1_700_000_000 + i, 1, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 0.0, 0.0, 0.0, -1.0)
        for i in range(start, start + n)])


def test_an_append_writes_one_file_and_reads_or_rewrites_nothing(tmp_path, monkeypatch):
    log = OfflineLog(tmp_path)
    for i in range(50):
        log.append("user_orders", batch(i * 100))
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in log.files("user_orders")}

    def no_reads(*args, **kwargs):
        raise AssertionError("an append must not read the log")

    monkeypatch.setattr(pq, "read_table", no_reads)
    monkeypatch.setattr(pq, "ParquetFile", no_reads)
    written = log.append("user_orders", batch(5000))
    monkeypatch.undo()

    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in log.files("user_orders")}
    assert set(after) - set(before) == {written}
    assert all(after[p] == before[p] for p in before)  # nothing already written changed
    assert log.read("user_orders").num_rows == 5100


def test_readers_never_see_a_half_written_file(tmp_path):
    log = OfflineLog(tmp_path)
    log.append("user_orders", batch(0))
    (tmp_path / "user_orders" / ".20260101-000000-partial.parquet.tmp").write_bytes(b"PAR1 junk")
    assert log.read("user_orders").num_rows == 100
    assert len(log.files("user_orders")) == 1


def test_compaction_merges_each_day_and_keeps_every_row(tmp_path):
    log = OfflineLog(tmp_path)
    for i in range(20):
        log.append("user_orders", batch(i * 10, n=10))
    folder = tmp_path / "user_orders"
    first = log.files("user_orders")[0]
    os.rename(first, folder / ("20200101" + first.name[8:]))  # one file from another day
    rows = sorted(log.read("user_orders").column("user_id").to_pylist())

    stats = log.compact("user_orders")
    assert (stats.files_before, stats.files_after, stats.rows) == (20, 2, 200)
    assert sorted(log.read("user_orders").column("user_id").to_pylist()) == rows
    assert log.compact("user_orders").files_after == 2  # nothing left to merge


def test_upkeep_removes_expired_days_and_merges_earlier_ones_but_not_today(tmp_path):
    """Issue 32: the offline log grew without end unless someone ran a compaction."""
    from datetime import UTC, datetime

    log = OfflineLog(tmp_path)
    folder = tmp_path / "user_orders"
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    for day, files in (("20261001", 3), ("20261120", 4), ("20261207", 5)):  # expired, earlier, today
        for i in range(files):
            written = log.append("user_orders", batch(i * 10, n=10))
            os.rename(written, folder / (day + written.name[8:]))
    log.append("served_fraud", pa.table({"order_id": ["o1"]}))
    (served,) = log.files("served_fraud")
    os.rename(served, served.with_name("20261001" + served.name[8:]))

    done = {table: (removed, stats.files_after) for table, removed, stats in log.maintain(31, now)}
    assert done == {"user_orders": (3, 1 + 5), "served_fraud": (1, 0)}
    assert sorted({p.name[:8] for p in log.files("user_orders")}) == ["20261120", "20261207"]
    assert log.read("user_orders").num_rows == 90  # every row of the days kept


def test_feature_table_types_follow_the_view():
    table = batch(0, n=3)
    assert table.schema.field("order_amount_count_30d").type == pa.int64()
    assert table.schema.field("order_amount_mean_7d").type == pa.float64()
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    lists = feature_table("session_state", [("s", 1.0, 2, 1.0, 0.0, ["a", "b"], [])])
    assert lists.column("last_items").to_pylist() == [["a", "b"]]


def test_feature_table_refuses_rows_of_the_wrong_width():
    with pytest.raises(ValueError):
        feature_table("user_orders", [("u", 1.0, 1, 2)])


def test_latest_per_entity_keeps_the_newest_row():
    rows = [("a", 1.0, 1), ("b", 5.0, 2), ("a", 3.0, 3), ("a", 2.0, 4)]
    assert sorted(latest_per_entity(rows)) == [("a", 3.0, 3), ("b", 5.0, 2)]


def test_raw_events_keep_scalars_as_columns_and_the_rest_as_json():
    orders = [e for e in Shop(SimConfig(seed=2)).events(start=1.7e9, n=3000) if type(e).__name__ == "Order"]
    table = events_table(orders, [("shop.orders", 0, i) for i in range(len(orders))])
    assert table.num_rows == len(orders) > 0
    assert {"order_id", "amount", "payment_fingerprint", "payload", "offset"} <= set(table.column_names)
    assert table.column("amount").to_pylist() == [o.amount for o in orders]


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    log = OfflineLog(tmp_path)
    log.append("user_orders", batch(0))

    def disk_full(data, where, **options):
        where.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    with pytest.raises(OSError, match="No space"):
        log.append("user_orders", batch(100))
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "user_orders").iterdir()] == [log.files("user_orders")[0].name]
    assert log.read("user_orders").num_rows == 100


def test_files_are_fsynced_before_they_appear(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    OfflineLog(tmp_path).append("user_orders", batch(0))
    assert len(synced) == 2  # the file, then its folder
    synced.clear()
    OfflineLog(tmp_path, fsync=False).append("user_orders", batch(0))
    assert synced == []


def test_stale_hidden_files_are_removed_and_fresh_ones_kept(tmp_path):
    log = OfflineLog(tmp_path)
    log.append("user_orders", batch(0))
    stale = tmp_path / "user_orders" / ".20260101-000000-a.parquet.tmp"
    fresh = tmp_path / "user_orders" / ".20260101-000000-b.parquet.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"PAR1")
    os.utime(stale, (0, 0))
    assert log.remove_stale_tmp() == 1
    assert not stale.exists() and fresh.exists()


def test_two_compactions_at_once_take_turns(tmp_path):
    import threading

    log = OfflineLog(tmp_path)
    for i in range(30):
        log.append("user_orders", batch(i * 10, n=10))
    errors = []

    def compact():
        try:
            OfflineLog(tmp_path).compact("user_orders")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=compact) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(log.files("user_orders")) == 1
    assert sorted(log.read("user_orders").column("user_id").to_pylist()) == sorted(f"u{i}" for i in range(300))
