"""The drift role: watches what the fraud model and the recommender see and get wrong, and
sends a ``DriftSignal`` on ``signals.drift`` when it moves away from the model's own
reference.

Scoring workers send each scored order (the model's inputs, score, decision and version)
to the internal topic ``{app_id}-drift-inputs``, recommending workers each answered click
or cart change (the clicked item, the list sent, its strategy); ``drift_labels`` forwards
the order labels there too. Every record of that topic is keyed by the stream it watches, so one
worker sees a model's whole traffic in order: a drift is a property of all the orders, not
of a partition's. The detectors are ``scorers.monitor.FraudMonitor``'s, built from the
profile saved with the serving version; a new champion brings a new profile and starts
them over. This agent only routes.

What it keeps is in memory, and rebuilt from that topic: before the first record a
starting worker takes from a partition, it reads the ``SHOPSTREAM_DRIFT__WARM_UP``
records before it (5,000) into the watches, without sending signals (``WarmUp``), so the
windows and detectors start where the last worker's stood. Labels of orders scored before
those records grade nothing (``shopstream_drift_inputs{outcome="unmatched"}``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import faust
import orjson

from scorers.monitor import FraudMonitor, PendingOrders, RecsMonitor, signal_of
from scorers.online import LiveGrades
from shopstream.events import OrderLabel
from shopstream.signing import Unsigned
from shopstream.topics import read_range
from streams import metrics
from streams.agents import dead_letter, decode_all, each_batch
from streams.app import app, delivered, drift_inputs_topic_name, send, settings, signer
from streams.codecs import packed, unpacked
from streams.reload import FailedVersions

log = logging.getLogger(__name__)
FRAUD, RECS = b"fraud", b"recs"
MODEL, RECS_MODEL = settings.scoring.model_name, settings.recs.model_name


inputs_topic = app.topic(drift_inputs_topic_name(settings), value_type=bytes, key_type=bytes)
labels_topic = app.topic(settings.topics.order_labels, value_type=bytes, key_type=bytes)
signals_topic = app.topic(settings.topics.drift, value_type=bytes, key_type=bytes)


def scored_record(version: str, order_id: str, ts: float, row, score: float, decision: str,
                  variant: str = "champion") -> bytes:
    """What a scoring worker sends the drift role for one scored order. The inputs only
    for the champion's: drift is watched on the champion, the others are graded only."""
    return orjson.dumps({"k": "scored", "m": MODEL, "v": version, "id": order_id, "t": ts, "a": variant,
                         "x": [float(v) for v in row] if variant == "champion" else [],
                         "s": score, "d": decision})


def answered_record(version: str, session: str, clicked: str | None, items: list[str], strategy: str,
                    ts: float, variant: str = "champion") -> bytes:
    """What a recommending worker sends the drift role for one answered click or cart change."""
    return orjson.dumps({"k": "recs", "v": version, "s": session, "c": clicked, "l": items, "g": strategy,
                         "t": ts, "a": variant})


async def send_watched(key: bytes, records: list[bytes]) -> None:
    """Send records to the drift role in as few Kafka records as fit (``packed``), waited
    for before their inputs are acknowledged."""
    await delivered([send(inputs_topic, signer.sign(key, value), key) for value in packed(records)], "drift inputs")


class Watch:
    """The drift watch of one model: the monitor of the version being served (built from
    its profile on first sight, off the event loop, by ``build``), and for fraud the
    scored orders waiting for labels."""

    def __init__(self, model: str, stream: str, build):
        self.model, self.stream, self.build = model, stream, build
        self.version: str | None = None
        self.monitor = None
        self.pending = PendingOrders(settings.drift.pending_orders)
        self.label_time = float("-inf")
        self.failed = FailedVersions()

    async def serving(self, version: str):
        """The monitor of ``version``; None when it has none (no profile, or a registry
        that cannot be read: tried again in five minutes)."""
        if version == self.version:
            return self.monitor
        if self.failed.skip(version):
            return None
        try:
            monitor = await asyncio.to_thread(self.build, version)
        except Exception as exc:  # noqa: BLE001 - a registry away must not stop the watch
            log.warning("no drift watch for %s version %s (%r)", self.model, version, exc)
            self.failed.failed(version)
            return None
        self.version, self.monitor = version, monitor
        log.info("watching %s version %s for drift%s", self.model, version, "" if monitor else " (no profile)")
        return monitor


def fraud_monitor(version: str) -> FraudMonitor | None:
    """The rules have no reference to drift from; a model saved without a profile neither."""
    if version == "rules":
        return None
    # torch and MLflow load only where drift is watched
    from trainers.promotion import fraud_profile

    profile = fraud_profile(settings, version)
    if profile is None:
        return None
    return FraudMonitor(profile, ert=settings.drift.ert_events, window=settings.drift.window,
                        delta=settings.drift.delta, review=settings.thresholds.fraud_review,
                        skip=settings.drift.skip_inputs)


def recs_monitor(version: str) -> RecsMonitor:
    """Hit rate and strategies are watched for any recommender; popularity and unseen
    items need the champion's profile."""
    profile = None
    if version != "rules":
        from trainers.promotion import recs_profile

        profile = recs_profile(settings, version)
    return RecsMonitor(profile, window=settings.drift.window, delta=settings.drift.delta)


watch = Watch(MODEL, "fraud", fraud_monitor)
recs_watch = Watch(RECS_MODEL, "recs", recs_monitor)
grades = LiveGrades(settings.drift.pending_orders, settings.drift.list_wait_s)
"""Every served version's answers waiting for their truth (``shopstream_online_graded``)."""


def count_grades(model: str, graded: list, live: bool) -> None:
    if live:  # a warm-up rebuilds what waits; the worker before counted its grades
        for version, variant, outcome in graded:
            metrics.ONLINE_GRADED.labels(model, version, variant, outcome).inc()


@app.agent(labels_topic, name="drift_labels")
async def drift_labels(stream: faust.StreamT) -> None:
    """Order labels, forwarded to the drift role's topic (invalid ones are the feature
    role's to dead-letter)."""
    await each_batch(stream, 1_000, 200, forward_labels, "the drift label agent")


async def forward_labels(records: list[faust.types.Message]) -> None:
    labels = decode_all(["order_label"] * len(records), records, datetime.now(UTC))
    await send_watched(FRAUD, [orjson.dumps(
        {"k": "label", "id": label.order_id, "f": label.is_fraud, "t": label.ts.timestamp()})
        for label in labels if isinstance(label, OrderLabel)])  # an InvalidEvent is the feature role's


@app.agent(inputs_topic, name="drift_agent")
async def drift_agent(stream: faust.StreamT) -> None:
    """Scored orders and labels in, drift signals out."""
    await each_batch(stream, 1_000, 200, watch_records, "the drift agent")


class WarmUp:
    """Rebuilds the watches of a starting worker from the records before where it starts.

    The watches are windows and detectors over the most recent traffic, so the last few
    windows of inputs rebuild them. ``before`` reads, for each partition first seen in a
    micro-batch, the last ``records`` inputs before its first record (the committed
    offset: agents take records in order) with ``read(topic, partition, start, end)``,
    and feeds them to
    the watches with no signal sent: the worker that read them first sent those. A
    partition is warmed up once per process, so a rebalance that hands it back does not
    count its records twice.
    """

    def __init__(self, records: int, read):
        self.records, self.read = records, read
        self._seen: set[tuple[str, int]] = set()

    async def before(self, messages) -> int:
        """Warm up for the partitions first seen in ``messages``; return the inputs read."""
        firsts: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (message.topic, message.partition)
            if key not in self._seen:
                firsts[key] = min(firsts.get(key, message.offset), message.offset)
        read = 0
        for (topic, partition), first in firsts.items():
            self._seen.add((topic, partition))
            try:
                inputs = await asyncio.to_thread(self._inputs_before, topic, partition, first)
            except Exception as exc:  # noqa: BLE001 - the watches start empty instead
                log.warning("drift: could not read %s:%s back to warm up (%r); starting empty",
                            topic, partition, exc)
                continue
            for item in inputs:
                try:
                    kind = item["k"]
                    await watch_one(kind, item, live=False)  # signalled and counted the first time
                except Exception:  # noqa: BLE001 - counted when it was first read
                    continue
                metrics.DRIFT_INPUTS.labels(kind, "warm_up").inc()
            read += len(inputs)
            log.info("drift: warmed up with %d inputs of %s:%s before offset %d",
                     len(inputs), topic, partition, first)
        return read

    def _inputs_before(self, topic: str, partition: int, first: int) -> list[dict]:
        """The last ``records`` inputs before offset ``first``, oldest first: records are
        read back in spans that double until they hold enough (one record packs a
        micro-batch's inputs, or holds one from a worker before packing)."""
        inputs: list[dict] = []
        end, span = first, 16
        while len(inputs) < self.records and end > 0:
            start = max(end - span, 0)
            earlier = []
            for key, value in self.read(topic, partition, start, end):
                try:
                    earlier += unpacked(signer.verify(key, value))
                except Exception:  # noqa: BLE001 - counted when it was first read
                    continue
            inputs = earlier + inputs
            end, span = start, span * 2
        return inputs[max(len(inputs) - self.records, 0):]


warm_up = WarmUp(settings.drift.warm_up, lambda *span: read_range(settings, *span, keys=True))


async def watch_records(records: list[faust.types.Message]) -> None:
    await warm_up.before(records)
    sent = []
    for message in records:
        try:
            value = signer.verify(message.key, message.value)
        except Unsigned as exc:  # forged: watched by nobody
            await dead_letter(message, "unsigned", repr(exc), exc)
            metrics.DRIFT_INPUTS.labels("unknown", "unsigned").inc()
            continue
        try:
            items = unpacked(value)
        except Exception as exc:  # noqa: BLE001 - a record the watch cannot take must not stop it
            items = [exc]
        for item in items:
            try:
                if isinstance(item, Exception):
                    raise item
                kind = item["k"]
                source, found = await watch_one(kind, item)
            except Exception as exc:  # noqa: BLE001 - an input the watch cannot take must not stop it
                log.warning("drift: skipping an input of %s:%s:%s (%r)", message.topic, message.partition,
                            message.offset, exc)
                metrics.DRIFT_INPUTS.labels("unknown", "unreadable").inc()
                continue  # written by shopstream itself: counted, as a bug to look into
            metrics.DRIFT_INPUTS.labels(kind, "watched" if source is not None else found).inc()
            if source is not None:
                sent += [send_signal(f, source) for f in found]
    await delivered(sent, "drift signals")
    if sent:
        metrics.OUTPUTS.labels(settings.topics.drift).inc(len(sent))


async def watch_one(kind: str, item: dict, live: bool = True):
    """Route one record to its watch: (the watch, its findings), or (None, why not). Every
    answer waits in ``grades`` for its truth; drift is watched on the champion's."""
    variant = item.get("a", "champion")
    if kind == "scored":
        grades.scored(item["id"], item["v"], variant, item["d"] != "allow")
        if variant != "champion":
            return None, "graded"
        monitor = await watch.serving(item["v"])
        if monitor is None:
            return None, "no_profile"
        watch.pending.add(item["id"], item["t"], item["d"] != "allow")
        return watch, monitor.scored(item["x"], item["s"], item["d"], item["t"])
    if kind == "recs":
        graded = grades.answered(item["s"], item["c"], item["v"], variant, item["l"], item["t"])
        count_grades(RECS_MODEL, graded, live)
        if variant != "champion":
            return None, "graded"
        monitor = await recs_watch.serving(item["v"])
        if monitor is None:
            return None, "no_profile"
        hit = next((outcome == "hit" for version, _, outcome in graded if version == item["v"]), None)
        return recs_watch, monitor.answered(item["c"], hit, item["g"], item["t"])
    if kind == "label":
        count_grades(MODEL, grades.labelled(item["id"], item["f"]), live)
        watch.label_time = max(watch.label_time, item["t"])
        scored = watch.pending.pop(item["id"])
        if scored is None or watch.monitor is None:
            return None, "unmatched"
        ts, flagged = scored
        return watch, watch.monitor.labelled(ts, flagged != item["f"],
                                             watch.label_time - settings.drift.label_wait_h * 3600)
    raise ValueError(f"unknown kind {kind!r}")


def send_signal(found, source: Watch):
    """Send the signal of a finding; return the send's future."""
    signal = signal_of(found, source.model, source.version, source.stream)
    if found.finding.threshold:
        metrics.DRIFT_SCORE.labels(source.model, source.stream, found.subject).set(
            found.finding.value / found.finding.threshold)
    metrics.DRIFT_SIGNALS.labels(source.model, source.stream, signal.severity).inc()
    return send(signals_topic, signal.model_dump_json().encode(), signal.key().encode())
