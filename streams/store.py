"""Entity states on disk: Faust's RocksDB table store (through ``rocksdict``), keyed by owner.

A worker's states are its largest memory: every entity it has seen in 120 days. With
``features.state_store = "rocksdb"`` the state tables keep their values in one RocksDB
database per partition under the worker's data folder, with a bounded block cache and
write buffers (``features.rocksdb_memory_mb`` per table), and only the states in use are
decoded in memory (``streams.features``' bounded ``_live``). A restart reads the
changelog from the offset its database had reached, not from the start.

Faust's store puts a key in the partition of the event in hand (``current_event``), which
a batch of many partitions' records, a timer's expiry sweep or a flush after the batch do
not have. Here a key always goes to the partition that owns it (``owner_partition``),
which is also the partition of its changelog records (``streams.app.save``), so a
recovered partition's database holds exactly that partition's keys.
"""

from __future__ import annotations

import faust.stores
from faust.stores.rocksdb import Store as RocksStore

from streams.app import owner_partition

SCHEME = "shopstream-rocksdb"


class OwnedStore(RocksStore):
    """Faust's RocksDB store with every key in the database of its owner partition."""

    def _db_of(self, key: bytes):
        return self._db_for_partition(owner_partition(key, self.table.partitions))

    def _set(self, key: bytes, value: bytes | None) -> None:
        self._db_of(key).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        return self._db_of(key).get(key)

    def _del(self, key: bytes) -> None:
        self._db_of(key).delete(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None


def url(table: str) -> str:
    """The store URL of ``table`` on ``OwnedStore``, made known to Faust. The table's name
    is its path: a URL with nothing after the scheme is false to yarl, and Faust then
    falls back to the app's store without a word."""
    faust.stores.STORES.aliases[SCHEME] = f"{__name__}:OwnedStore"
    return f"{SCHEME}:{table}"


def options(memory_mb: int, partitions: int) -> dict:
    """RocksDB options that keep one table's memory near ``memory_mb`` over ``partitions``
    databases: half for the block cache, a quarter for each of two write buffers."""
    share = max(memory_mb * 1024 * 1024 // partitions, 1024 * 1024)
    return {"driver": "rocksdict", "block_cache_size": share // 2, "write_buffer_size": share // 4,
            "max_write_buffer_number": 2, "max_open_files": 64}
