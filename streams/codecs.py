"""Serialisation of the worker's internal records: entity updates and entity states.

Both stay inside shopstream (an internal topic and a changelog topic). An updates record
is MessagePack in columns (each field of every update in one array; a source partition
written once, then referred to by its index), because decoding it is on every event's
path. A state is plain data in MessagePack, compressed with LZ4 (``encode_state``).
"""

from __future__ import annotations

import struct

import lz4.block
import msgpack
import orjson

from scorers import states
from scorers.routing import Update

UPDATES_FORMAT = 1
"""The layout of an updates record; a record of another layout is refused, not misread."""


def encode_updates(ingested_ms: int, updates: list[Update]) -> bytes:
    """One internal record: the oldest input record time (ms) and a list of updates, as
    ``[format, ingested_ms, sources, kinds, entity ids, ops, times, source indexes, seqs,
    data]``.

    >>> raw = encode_updates(5, [Update("user", "u1", "click", 60.0, "shop.clicks:0", (17, 0), ("d1", None))])
    >>> decode_updates(raw)
    (5, [Update(kind='user', entity_id='u1', op='click', ts=60.0, source='shop.clicks:0', seq=(17, 0), data=('d1', None))])
    """
    sources: dict[str, int] = {}
    indexes = [sources.setdefault(u.source, len(sources)) for u in updates]
    return msgpack.packb([
        UPDATES_FORMAT, ingested_ms, list(sources),
        [u.kind for u in updates], [u.entity_id for u in updates], [u.op for u in updates],
        [float(u.ts) for u in updates], indexes, [u.seq for u in updates],
        [u.data for u in updates],
    ])


def encode_updates_chunked(ingested_ms: int, updates: list[Update], max_bytes: int) -> list[bytes]:
    """``encode_updates`` split into as few records as keep each under ``max_bytes``
    (one update that is larger on its own still gets a record of its own).

    >>> updates = [Update("user", str(i), "click", 0.0, "t:0", (i, 0), ()) for i in range(100)]
    >>> chunks = encode_updates_chunked(0, updates, 1000)
    >>> len(chunks) > 1, max(map(len, chunks)) <= 1000
    (True, True)
    >>> sum(len(decode_updates(c)[1]) for c in chunks)
    100
    """
    value = encode_updates(ingested_ms, updates)
    if len(value) <= max_bytes or len(updates) == 1:
        return [value]
    half = len(updates) // 2
    return (encode_updates_chunked(ingested_ms, updates[:half], max_bytes)
            + encode_updates_chunked(ingested_ms, updates[half:], max_bytes))


def decode_updates(raw: bytes) -> tuple[int, list[Update]]:
    """The inverse of ``encode_updates``. Arrays come back as tuples; whether the values
    make sense is ``scorers.update_checks``' business, whether the layout does is this
    function's (``ValueError``).

    >>> decode_updates(msgpack.packb([UPDATES_FORMAT, 0, [], ["user"], [], [], [], [], [], []]))
    Traceback (most recent call last):
    ...
    ValueError: an updates record whose columns differ in length
    """
    record = msgpack.unpackb(raw, use_list=False, strict_map_key=True)
    if not isinstance(record, tuple) or len(record) != 10 or record[0] != UPDATES_FORMAT:
        raise ValueError(f"not an updates record of format {UPDATES_FORMAT}")
    _, ingested_ms, sources, kinds, entities, ops, times, indexes, seqs, data = record
    columns = (kinds, entities, ops, times, indexes, seqs, data)
    if not all(isinstance(c, tuple) for c in (sources, *columns)) \
            or len({len(c) for c in columns}) != 1:
        raise ValueError("an updates record whose columns differ in length")
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(sources)
               for i in indexes):
        raise ValueError("an updates record that names a source it does not have")
    if not all(isinstance(q, tuple) for q in seqs) or not all(isinstance(d, tuple) for d in data):
        raise ValueError("an updates record whose seqs or data are not arrays")
    return ingested_ms, [Update(k, e, o, t, sources[i], q, d)
                         for k, e, o, t, i, q, d in zip(*columns, strict=True)]


_EXPIRY = struct.Struct("<d")
_BIG_INT = 1  # MessagePack extension code of an integer beyond 64 bits (sums of squares)


def _pack_default(value):
    if isinstance(value, int):
        return msgpack.ExtType(_BIG_INT, value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True))
    raise TypeError(f"cannot encode {type(value).__name__} in a state")


def _ext_hook(code: int, data: bytes):
    if code == _BIG_INT:
        return int.from_bytes(data, "little", signed=True)
    raise ValueError(f"unknown MessagePack extension {code} in a state")


def encode_state(kind: str, state: states.State, expires_at: float) -> bytes:
    """A changelog value: the event time the state expires at (8 bytes), then the state as
    plain data (``State.to_data``, with its kind) in MessagePack, compressed with LZ4. A
    worker finds expired states without decoding any, and no class name is stored, so a
    renamed class cannot break recovery (nor a forged record run code, as a pickle could).

    >>> state = states.new_state("user", "u1")
    >>> state.amounts.update(0, 1e9)  # doctest: +ELLIPSIS
    <scorers.windows.WindowedStats object at ...>
    >>> raw = encode_state("user", state, 1e9)
    >>> state_expiry(raw), decode_state(raw).entity_id, decode_state(raw).amounts.totals()["30d"]
    (1000000000.0, 'u1', (1, 1000000000.0, 1e+18))
    """
    return _encode(kind, state.to_data(), expires_at)


def encode_states(changed: list[tuple[str, states.State, float]]) -> list[bytes]:
    """``encode_state`` of many ``(kind, state, expires_at)``, for less (``to_data_many``)."""
    data = states.to_data_many([state for _, state, _ in changed])
    return [_encode(kind, fields, expires_at) for (kind, _, expires_at), fields in zip(changed, data, strict=True)]


def _encode(kind: str, fields: dict, expires_at: float) -> bytes:
    data = msgpack.packb([kind, fields], default=_pack_default)
    return _EXPIRY.pack(expires_at) + lz4.block.compress(data)


def decode_state(raw: bytes) -> states.State:
    """The state in a changelog value of ``encode_state``."""
    data = msgpack.unpackb(lz4.block.decompress(raw[_EXPIRY.size:]), strict_map_key=False,
                           ext_hook=_ext_hook)
    kind, fields = data
    return states.state_from_data(kind, fields)


def state_expiry(raw: bytes, offset: int = 0) -> float:
    """The event time at which the state in a changelog value (from ``offset`` on: past a
    signature) expires."""
    return _EXPIRY.unpack_from(raw, offset)[0]


PACK_BYTES = 512 * 1024
"""Most bytes of JSON objects packed into one Kafka record."""


def packed(records: list[bytes], limit: int = PACK_BYTES) -> list[bytes]:
    """``records`` (JSON objects) as JSON arrays of at most about ``limit`` bytes each: one
    Kafka record per micro-batch and partition, not one per drift input or session order.

    >>> packed([b'{"a":1}', b'{"b":2}', b'{"c":3}'], limit=16)
    [b'[{"a":1},{"b":2}]', b'[{"c":3}]']
    """
    values, chunk, size = [], [], 0
    for record in records:
        if chunk and size + len(record) > limit:
            values.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 0
        chunk.append(record)
        size += len(record) + 1
    if chunk:
        values.append(b"[" + b",".join(chunk) + b"]")
    return values


def unpacked(value: bytes) -> list[dict]:
    """The JSON objects in one record's value: an array of them (``packed``), or one alone
    (as workers before packing sent them)."""
    items = orjson.loads(value)
    return items if isinstance(items, list) else [items]
