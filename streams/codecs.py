"""Serialisation of the worker's internal records: entity updates and entity states.

Both stay inside shopstream (an internal topic and a changelog topic). Updates are JSON;
states are pickled, and unpickled only into the allowlisted state classes, so a forged
changelog record cannot run code.
"""

from __future__ import annotations

import io
import json
import struct

from faust.serializers import codecs
from faust.serializers.codecs import (
    RestrictedUnpickler,
    _restricted_pickle_validate_globals,
    restricted_pickle,
)

from scorers import features
from scorers.features import Update


def encode_updates(ingested_ms: int, updates: list[Update]) -> bytes:
    """One internal record: the oldest input record time (ms) and a list of updates."""
    return json.dumps([ingested_ms, updates], separators=(",", ":")).encode()


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
    """The inverse of ``encode_updates``."""
    ingested_ms, rows = json.loads(raw)
    return ingested_ms, [
        Update(kind, entity, op, ts, source, tuple(seq), tuple(data))
        for kind, entity, op, ts, source, seq, data in rows
    ]


class _StateUnpickler(RestrictedUnpickler):
    ALLOWED_CLASSES = {
        **RestrictedUnpickler.ALLOWED_CLASSES,
        "scorers.features": frozenset(cls.__name__ for cls in features.STATES.values()),
        "scorers.windows": frozenset({"WindowedStats", "WindowedDistinct", "LastN"}),
    }


class StateCodec(restricted_pickle):
    """Pickle restricted to entity states and the types they hold."""

    def _loads(self, s: bytes):
        _restricted_pickle_validate_globals(s, _StateUnpickler.ALLOWED_CLASSES)
        return _StateUnpickler(io.BytesIO(s)).load()


STATE_CODEC = "shopstream-state"
codecs.register(STATE_CODEC, StateCodec())
_EXPIRY = struct.Struct("<d")


def encode_state(state: features.State, expires_at: float) -> bytes:
    """A changelog value: the event time the state expires at (8 bytes), then the state,
    so that a worker can find expired states without unpickling any.

    >>> raw = encode_state(features.new_state("user", "u1"), 1e9)
    >>> state_expiry(raw), decode_state(raw).entity_id
    (1000000000.0, 'u1')
    """
    return _EXPIRY.pack(expires_at) + codecs.dumps(STATE_CODEC, state)


def decode_state(raw: bytes) -> features.State:
    """The state in a changelog value of ``encode_state``."""
    return codecs.loads(STATE_CODEC, raw[_EXPIRY.size:])


def state_expiry(raw: bytes) -> float:
    """The event time at which the state in a changelog value expires."""
    return _EXPIRY.unpack_from(raw)[0]
