"""Checks on entity updates read from the internal updates topic, before any is applied.

Pure code, no I/O. The updates topic is internal, but anything that can write to the
brokers can write to it, and a state trusts what it applies: a forged ``seq`` of 10**18
would make an entity ignore its real source for good, and data of the wrong shape would
fail half-way through an update. So every update is checked against the shapes that
``scorers.routing.route`` and ``order_updates`` produce, and its ``seq`` against the
offsets its source can have (the caller looks up the source partition's end offset).

>>> from scorers.routing import Update
>>> check_update(Update("user", "u1", "click", 60.0, "shop.clicks:0", (17, 0), ("d1", None)),
...              {"shop.clicks"})
('shop.clicks', 0, 17)
>>> check_update(Update("user", "u1", "fly", 60.0, "shop.clicks:0", (17, 0), ()), {"shop.clicks"})
Traceback (most recent call last):
...
scorers.update_checks.BadUpdate: user updates have no op 'fly'
"""

from __future__ import annotations

import math

from scorers.routing import Update


class BadUpdate(ValueError):
    """An update that no shopstream worker could have produced."""


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 256


def _maybe_text(value: object) -> bool:
    return value is None or _text(value)


def _flag(value: object) -> bool:
    return isinstance(value, bool)


def _amount(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1e9


SHAPES = {  # kind -> op -> a check per data field
    "user": {"click": (_maybe_text, _maybe_text), "cart": (), "label": (_flag,),
             "order": (_amount, _maybe_text, _maybe_text)},
    "session": {"click": (_text,), "add": (_text,), "remove": (_text,), "order": ()},
    "item": {"view": (), "cart": (), "purchase": ()},
    "instrument": {"order": (_text,), "label": (_flag,)},
    "device": {"order": (_text,), "label": (_flag,)},
    "ip": {"order": (_text,), "label": (_flag,)},
    "terminal": {"order": (), "label": (_flag,)},
    "order": {"place": (_text, _amount, _text, _maybe_text, _maybe_text, _maybe_text, _maybe_text,
                        lambda items: isinstance(items, list | tuple) and len(items) <= MAX_INDEX
                        and all(map(_text, items))),
              "label": (_flag,), "scored": (_flag,)},
}
MIN_TS, MAX_TS = -62_135_596_800.0, 253_402_300_799.0  # the years 1 .. 9999, epoch seconds
MAX_INDEX = 10_000  # updates one record can cause (an order of 1,000 lines causes ~1,010)
MAX_UPDATES = 1 << 20  # updates in one internal record (they are split under 1 MiB)
MAX_PARTITION, MAX_OFFSET = 1 << 31, 1 << 63  # Kafka's partition ids are int32, its offsets int64


def check_update(update: Update, topics: set[str]) -> tuple[str, int, int]:
    """Raise ``BadUpdate`` unless ``update`` has a shape a worker produces and a source
    among ``topics``; return its source (topic, partition, offset), whose offset must be
    below the partition's end offset for the update to be real.
    """
    shapes = SHAPES.get(update.kind)
    if shapes is None:
        raise BadUpdate(f"no entity kind {update.kind!r}")
    if update.op not in shapes:
        raise BadUpdate(f"{update.kind} updates have no op {update.op!r}")
    if not _text(update.entity_id):
        raise BadUpdate(f"entity id {update.entity_id!r} is not 1 to 256 characters")
    if not isinstance(update.ts, int | float) or not math.isfinite(update.ts) \
            or not MIN_TS <= update.ts <= MAX_TS:
        raise BadUpdate(f"event time {update.ts!r} is not a time a datetime can hold")
    checks = shapes[update.op]
    if len(update.data) != len(checks) or not all(c(v) for c, v in zip(checks, update.data, strict=True)):
        raise BadUpdate(f"data {update.data!r} does not fit a {update.kind} {update.op} update")
    seq = update.seq
    via, caused, origin = update.source.partition("/")  # caused by an order's state: via/origin
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < MAX_OFFSET for n in seq) \
            or (caused and (len(seq) != 3 or seq[1] >= MAX_UPDATES or seq[2] >= MAX_INDEX)) \
            or (not caused and (len(seq) != 2 or seq[1] >= MAX_INDEX)):
        raise BadUpdate(f"seq {seq!r} is not (offset, index) of a record, or (offset, index, j) "
                        f"of an update caused by one")
    topic, partition = _partition(via.removesuffix(":scored"), topics)
    if caused and _partition(origin, topics)[0] == topic:
        raise BadUpdate(f"source {update.source!r} is not an input partition via another topic's")
    return topic, partition, seq[0]


def _partition(source: str, topics: set[str]) -> tuple[str, int]:
    """The topic and partition of ``topic:partition``, written as a worker writes it: one
    name per partition (``shop.clicks:00`` is not ``shop.clicks:0``, so it would count as a
    source apart), and a partition id that Kafka can have."""
    topic, _, partition = source.rpartition(":")
    if topic not in topics or not (partition.isascii() and partition.isdigit()) \
            or str(int(partition)) != partition or int(partition) >= MAX_PARTITION:
        raise BadUpdate(f"source {source!r} is not a partition of {sorted(topics)}")
    return topic, int(partition)
