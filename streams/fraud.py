"""The fraud agent: every order on ``shop.orders`` gets a score on ``scores.fraud``.

In a worker with every role it reads the same records as the order agent (Faust commits
an offset once both have acknowledged it); a worker with ``SHOPSTREAM_ROLES=fraud`` reads
them in a consumer group of its own, so orders never queue behind feature updates. It
works in small micro-batches because a shop waits for the answer: read the orders'
features from the online store, score them (``scorers.fraud``), send one ``FraudScore``
per order. The order agent of the same worker routes the order's own updates only once
they are read (``streams.agents.ReadFirst``), so the features are those from just
before the order, as in training, however far behind the scorer is. The rows it read are
appended to the offline log (``served_fraud``) after the scores are sent: trainers learn
from what was served (``trainers.offline.features_as_served``).

Hot reload: a timer asks the registry for the champion; when it changed, the new model
is loaded off the event loop and swapped in between two batches, so a batch is scored
by exactly one model and no order is dropped or scored twice. Without a champion, or
when loading fails, the rules score (``model_version`` says ``rules``).

A challenger (``shopstream models challenge``) is followed the same way. In ``shadow``
mode it scores every order too, onto ``scores.fraud.shadow`` (``variant`` ``shadow``),
and ``scores.fraud`` is what it would be without it; in ``ab`` mode the orders of its
share of users (``scorers.challenge``) get its score instead, ``variant``
``challenger``. A challenger that fails leaves its orders to the champion.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime

import faust

from scorers.challenge import Challenge
from scorers.fraud import FRAUD_VIEWS, FraudScorer, matrix
from scorers.routing import scored_update
from shopstream.events import InvalidEvent, Order
from shopstream.offline import SERVED_FRAUD, served_table
from streams import metrics
from streams.agents import READ_FIRST, decode_all, each_batch, send_updates
from streams.app import (
    app,
    delivered,
    offline_log,
    prepare,
    registered_store,
    retrying,
    send,
    settings,
)
from streams.reload import Follower

log = logging.getLogger(__name__)
MODEL = settings.scoring.model_name
orders_topic = app.topic(settings.topics.orders, value_type=bytes, key_type=bytes)
scores_topic = app.topic(settings.topics.fraud_scores, value_type=bytes, key_type=bytes)
shadow_topic = app.topic(settings.topics.fraud_shadow, value_type=bytes, key_type=bytes)
_reader = None  # the OnlineReader, built by reader()
_reader_lock = threading.Lock()


def reader():
    """The ``OnlineReader`` of the fraud views, built once by whichever thread asks first
    (the worker's start-up, or the first batch, which waits for it)."""
    global _reader
    with _reader_lock:
        if _reader is None:
            # Feast takes seconds to import and apply; the worker is ready before that ends.
            from shopstream.online import OnlineReader

            _reader = OnlineReader(registered_store(), FRAUD_VIEWS)
    return _reader


prepare("online_reader", reader)
_decisions = None  # the Decisions, built by decisions()


def decisions():
    """The ``Decisions`` of this worker's orders, built once."""
    global _decisions
    with _reader_lock:
        if _decisions is None:
            from shopstream.decisions import Decisions

            _decisions = Decisions(settings.redis.client(), f"shopstream:{settings.app_id}:decision:",
                                   round(settings.scoring.decision_days * 86_400))
    return _decisions


def entity_keys(order: Order) -> dict[str, str | None]:
    """The join keys of the entities an order names."""
    return {"user_id": order.user_id, "instrument_id": order.payment_fingerprint,
            "device_id": order.device_id, "ip": None if order.ip is None else str(order.ip),
            "terminal_id": order.terminal_id}


def read_features(orders: list[Order]) -> list[dict]:
    return reader().read([entity_keys(o) for o in orders])


def _champion(champion):
    """The registered version ``champion``, loaded (blocking: runs in a thread)."""
    import torch

    # torch and MLflow load only in workers that score
    from trainers.promotion import fraud_champion

    torch.set_num_threads(settings.scoring.torch_threads)
    return fraud_champion(settings, champion=champion)


def _scorer(predictor) -> FraudScorer:
    return FraudScorer(predictor, review=settings.thresholds.fraud_review, block=settings.thresholds.fraud_block,
                       top_reasons=settings.scoring.top_reasons, reasons_for=settings.scoring.reasons_for)


def _load(champion) -> FraudScorer | None:
    predictor = _champion(champion)
    return None if predictor is None else _scorer(predictor)


follower: Follower[FraudScorer] = Follower(MODEL, _scorer(None), _load, "scoring", settings.scoring.reload_s,
                                           lambda: settings.scoring.enabled)
"""The scorer in use (the rules before a champion) and the challenger's, each replaced whole."""


READ_FIRST.enabled = lambda: settings.scoring.enabled


@app.agent(orders_topic, name="fraud_agent")
async def fraud_agent(stream: faust.StreamT) -> None:
    """Orders in, fraud scores out."""
    await each_batch(stream, settings.scoring.batch_rows, settings.scoring.batch_ms, score_orders,
                     "the fraud agent", lambda: settings.scoring.enabled, arrival=True)


def score_with(current: FraudScorer, orders: list[Order], features: list[dict], consumed: float) -> list:
    """``current``'s scores, or the rules' when it fails: a failing model must not leave
    an order unscored."""
    try:
        return current.score(orders, features, consumed_at=[consumed] * len(orders))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.exception("%s version %s failed; scoring this batch with the rules", MODEL, current.version)
        metrics.MODEL_RELOADS.labels(MODEL, f"inference-failed:{type(exc).__name__}").inc()
        return FraudScorer(review=current.review, block=current.block, top_reasons=current.top_reasons).score(
            orders, features, consumed_at=[consumed] * len(orders))


def challenged(current: FraudScorer, rival: tuple[Challenge, FraudScorer] | None, orders: list[Order],
               features: list[dict], consumed: float) -> tuple[list, list]:
    """The scores sent on ``scores.fraud``, one per order, and the shadow's. In an A/B
    split the challenger's users get its scores (``variant`` challenger); a challenger
    that fails leaves them to ``current``."""
    if rival is None:
        return score_with(current, orders, features, consumed), []
    challenge, other = rival
    if challenge.mode == "shadow":
        live = score_with(current, orders, features, consumed)
        try:
            shadow = [s.model_copy(update={"variant": "shadow"})
                      for s in other.score(orders, features, consumed_at=[consumed] * len(orders))]
        except Exception:  # noqa: BLE001 - the shadow's failure is its own
            log.exception("the shadow challenger %s failed on a batch; no shadow scores for it", other.version)
            metrics.MODEL_RELOADS.labels(MODEL, "challenger-inference-failed").inc()
            shadow = []
        return live, shadow
    mine = [i for i, o in enumerate(orders) if challenge.variant(o.user_id) == "challenger"]
    scores = [None] * len(orders)
    if mine:
        try:
            picked = other.score([orders[i] for i in mine], [features[i] for i in mine],
                                 consumed_at=[consumed] * len(mine))
            for i, s in zip(mine, picked, strict=True):
                scores[i] = s.model_copy(update={"variant": "challenger"})
        except Exception:  # noqa: BLE001 - the champion answers instead
            log.exception("the challenger %s failed on a batch; the champion scores its orders", other.version)
            metrics.MODEL_RELOADS.labels(MODEL, "challenger-inference-failed").inc()
    rest = [i for i, s in enumerate(scores) if s is None]
    if rest:
        for i, s in zip(rest, score_with(current, [orders[i] for i in rest], [features[i] for i in rest], consumed),
                        strict=True):
            scores[i] = s
    return scores, []


async def keep_served(table) -> None:
    """Append the rows a batch was served to the offline log, tried once: a full disk, or
    one out of inodes, must not stop scoring. Rows that cannot be written are counted
    (``shopstream_served_rows_dropped_total``, alert ``ShopstreamServedRowsDropped``) and
    the batch goes on; the trainers then lack them and fall back to the features the
    offline views hold for those orders."""
    try:
        await asyncio.to_thread(offline_log.append, SERVED_FRAUD, table)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        metrics.SERVED_ROWS_DROPPED.inc(table.num_rows)
        log.warning("could not keep %d served rows in the offline log (%r); scoring goes on",
                    table.num_rows, exc)


async def score_orders(records: list[faust.types.Message]) -> None:
    """Scores for one micro-batch of orders."""
    consumed = time.time()
    current, rival = follower.current, follower.challenger  # one of each for the whole batch, even if a reload lands
    orders: list[Order] = []
    messages: list[faust.types.Message] = []
    now = datetime.now(UTC)
    for message, order in zip(records, decode_all(["order"] * len(records), records, now), strict=True):
        if not isinstance(order, InvalidEvent):  # else the order agent dead-letters it
            orders.append(order)
            messages.append(message)
    if not orders:
        await READ_FIRST.read(records)
        return
    started = time.perf_counter()
    features = await retrying("online-read", read_features, orders)  # [{view__feature: value}]
    await READ_FIRST.read(records)  # the orders' own updates may go now
    read = time.perf_counter()
    scores, shadow = challenged(current, rival, orders, features, consumed)
    inferred = time.perf_counter()
    # An order id decided before gets that decision again, and counts nowhere else.
    decided = await retrying("online", decisions().decide, scores,
                             [f"{m.topic}:{m.partition}:{m.offset}" for m in messages])
    scores = [score for score, _ in decided]
    first = [i for i, (_, repeat) in enumerate(decided) if not repeat]
    if len(first) < len(scores):
        metrics.REPEATED_ORDERS.inc(len(scores) - len(first))
        shadow = [shadow[i] for i in first] if shadow else []
        orders, features, messages = ([items[i] for i in first] for items in (orders, features, messages))
    metrics.SCORING_BATCH.observe(len(orders))
    metrics.SCORING_STAGE_SECONDS.labels("feature_read").observe(read - started)
    metrics.SCORING_STAGE_SECONDS.labels("inference").observe(inferred - read)
    sent = []
    for topic, answers in ((scores_topic, scores), (shadow_topic, shadow)):
        for score in answers:  # [FraudScore]
            sent.append(send(topic, score.model_dump_json().encode(), score.order_id.encode()))
    await delivered(sent, "fraud scores")  # before the orders can be acknowledged (streams.app.save)
    metrics.OUTPUTS.labels(settings.topics.fraud_scores).inc(len(scores))
    if shadow:
        metrics.OUTPUTS.labels(settings.topics.fraud_shadow).inc(len(shadow))
    scores = [scores[i] for i in first]  # from here on, the first decisions only
    for score in [*scores, *shadow]:
        metrics.MODEL_PREDICTIONS.labels(MODEL, score.model_version, score.variant).inc()
    for score in scores:
        metrics.PREDICTIONS.labels(MODEL, score.model_version, score.decision).inc()
        metrics.SCORE_LATENCY.labels(MODEL).observe(score.latency_ms / 1000)
    if not scores:
        return
    if settings.features.offline:  # what was served, for training on it (trainers.offline)
        await keep_served(served_table([o.order_id for o in orders], [o.ts for o in orders], features,
                                       current.version, now))
    if settings.drift.enabled and current.version != "rules":  # the rules have no reference to drift from
        from streams.drift import FRAUD, scored_record, send_watched

        rows = matrix(orders, features)
        await send_watched(FRAUD, [  # the drift of the champion (docs/drift.md); every version graded
            scored_record(s.model_version, s.order_id, o.ts.timestamp(), row, s.score, s.decision, s.variant)
            for answers in (scores, shadow) if answers for s, o, row in zip(answers, orders, rows, strict=True)])
    # The decision goes to the order's state too: its label grades it later (/metrics).
    await send_updates([scored_update(s.order_id, s.decision != "allow", o.ts.timestamp(),
                                      f"{m.topic}:{m.partition}", m.offset)
                        for s, o, m in zip(scores, orders, messages, strict=True)],
                       int(consumed * 1000))
