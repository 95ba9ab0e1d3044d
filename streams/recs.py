"""The recommendation agent: every click and cart change gets recommendations on
``recs.session``.

It reads ``shop.clicks`` and ``shop.carts`` (both keyed by session, so one session's
events arrive in order on one partition) beside the input agents, in small micro-batches:
update each session's state (``scorers.recommend.RecsSession``, kept in a
changelog-backed table so a restarted worker carries on), ask the recommender for all the
batch's sessions at once, and send one ``SessionRecs`` per event.

Orders are keyed by user, so a session's orders arrive elsewhere: ``order_items_agent``
sends what each order bought to ``{app_id}-session-orders``, keyed by its session, and the
recommendation agent reads that topic too, so that bought items leave the session's
lists (``exclude_bought``). An order answers nothing itself.

Hot reload works as for fraud (``streams.fraud``): a timer asks the registry for the
champion bundle, loads it off the event loop, and swaps the whole recommender between two
batches. Until there is a champion, recommendations come from popularity counted in this
worker (strategy ``popular``).

A challenger is followed the same way (``scorers.challenge``): a ``shadow`` answers every
event onto ``recs.session.shadow``; an ``ab`` split answers its share of sessions instead
of the champion; ``interleave`` answers its share of sessions with one list drafted from
both (``scorers.interleave``), each item's team in ``teams``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import NamedTuple

import faust
import orjson

from scorers.challenge import Challenge
from scorers.interleave import seeded_coin, team_draft
from scorers.neighbours import Popularity, RecentPopularity, Session
from scorers.recommend import Recommender, RecsSession
from shopstream.events import CartEvent, InvalidEvent, Order, RecommendedItem, SessionRecs
from shopstream.signing import MAC_BYTES, Unsigned
from streams import metrics
from streams.agents import dead_letter, decode_all, each_batch
from streams.app import (
    app,
    delivered,
    owner_partition,
    save,
    saved,
    send,
    session_orders_topic_name,
    settings,
    signer,
    state_table,
    table_expiry,
)
from streams.codecs import packed, unpacked
from streams.reload import Follower

log = logging.getLogger(__name__)
MODEL = settings.recs.model_name
BOUGHT = session_orders_topic_name(settings)
KIND = {settings.topics.clicks: "click", settings.topics.carts: "cart", BOUGHT: "bought"}
inputs = app.topic(settings.topics.clicks, settings.topics.carts, BOUGHT, value_type=bytes, key_type=bytes)
orders_topic = app.topic(settings.topics.orders, value_type=bytes, key_type=bytes)
bought_topic = app.topic(BOUGHT, value_type=bytes, key_type=bytes)
recs_topic = app.topic(settings.topics.session_recs, value_type=bytes, key_type=bytes)
shadow_topic = app.topic(settings.topics.recs_shadow, value_type=bytes, key_type=bytes)
# Keyed by session id. use_partitioner: the changelog partition is the key's partition under
# the app's partitioner, the CRC32 one that shop clients (librdkafka) use for the inputs.
session_table = state_table("session-recs-v1")
OPTIONS = {"k": settings.recs.k, "exclude_cart": settings.recs.exclude_cart,
           "exclude_bought": settings.recs.exclude_bought, "exclude_viewed": settings.recs.exclude_viewed}
recent = RecentPopularity(settings.recs.rules_clicks, settings.recs.rules_refit_s, 2 * settings.recs.k)
"""This worker's newest clicks, for popularity before there is a champion."""


def load_state(key: bytes) -> RecsSession:
    if session_table.get(key):
        try:
            return RecsSession.from_json(saved(session_table, key), settings.recs.session_items)
        except ValueError as exc:  # a damaged or forged changelog record (Unsigned is one)
            log.warning("session %r: unreadable saved state (%r); starting it afresh", key, exc)
    return RecsSession(max_items=settings.recs.session_items)


def session_expiry(raw: bytes) -> float:
    """The event time at which a saved session expires."""
    last_ts = json.loads(raw[MAC_BYTES:]).get("last_ts")  # past its signature
    return float("inf") if last_ts is None else last_ts + settings.recs.session_ttl_s


answering = asyncio.Lock()
"""Held while a batch is answered, and by expiry sweeps that come between batches."""
expiry = table_expiry(session_table, settings.topics.clicks, session_expiry, answering)


@app.on_partitions_revoked.connect
async def forget_expiry(app, revoked, **kwargs) -> None:
    expiry.forget()


def _champion(champion) -> Recommender | None:
    """The registered bundle ``champion``, loaded (blocking: runs in a thread)."""
    import torch

    from trainers.promotion import recs_champion

    torch.set_num_threads(settings.scoring.torch_threads)
    return recs_champion(settings, champion=champion, **OPTIONS)


follower: Follower[Recommender] = Follower(MODEL, Recommender(popular=Popularity(), **OPTIONS), _champion,
                                           "recommending", settings.recs.reload_s, lambda: settings.recs.enabled)
"""The recommender in use (popularity from this worker's clicks before a champion) and the
challenger's, each replaced whole; the rules' popularity is refitted in place
(``refresh_popularity``)."""


def refresh_popularity() -> None:
    """Before there is a champion: popularity from this worker's newest clicks, when
    ``recent`` says one is due. The rules recommender is this module's own, so it is
    refitted in place."""
    recommender = follower.current
    if recommender.version == "rules" and (
            popular := recent.refit(len(recommender.popular.scores(())), time.monotonic())) is not None:
        recommender.popular = popular


def recommend(current: Recommender, views: list) -> list[tuple[list, str]]:
    """``current``'s recommendations for ``views``; when it fails, popularity alone
    (``strategy="fallback"``), as fraud falls back to the rules: a broken model must not
    leave a click unanswered."""
    try:
        return current.recommend_batch(views)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.exception("%s version %s failed; answering this batch from popularity",
                      MODEL, current.version)
        metrics.MODEL_RELOADS.labels(MODEL, f"inference-failed:{type(exc).__name__}").inc()
    try:
        popular = Recommender(popular=current.popular or Popularity(), **OPTIONS)
        return [(ranked, "fallback") for ranked, _ in popular.recommend_batch(views)]
    except Exception:  # noqa: BLE001 - even popularity failed: an empty answer, still sent
        log.exception("popularity failed too; answering with no items")
        return [([], "fallback") for _ in views]


class Answered(NamedTuple):
    """One list sent for one view."""

    ranked: list  # [(item, score)], best first
    strategy: str
    version: str  # the model version, "a+b" for an interleaved list
    variant: str  # champion, challenger, shadow or interleaved
    teams: list | None  # an interleaved list's team of each item


def challenged(current: Recommender, rival: tuple[Challenge, Recommender] | None, views: list,
               sessions: list[str], origins: list[str]) -> tuple[list[Answered], list[Answered]]:
    """The lists sent on ``recs.session``, one per view, and the shadow's. ``sessions``
    split an A/B test or interleaving; ``origins`` seed each interleaving's coin, so a
    redelivered event gets the same list."""
    def mine(recommender: Recommender, picked: list[int], variant: str) -> dict[int, Answered]:
        got = recommend(recommender, [views[i] for i in picked]) if picked else []
        return {i: Answered(ranked, strategy, recommender.version, variant, None)
                for i, (ranked, strategy) in zip(picked, got, strict=True)}

    everyone = list(range(len(views)))
    if rival is None:
        live = mine(current, everyone, "champion")  # once: not once per view (seen: a batch of n
        return [live[i] for i in everyone], []  # views recommended n times, the worker frozen)
    challenge, other = rival
    if challenge.mode == "shadow":
        live, shadow = mine(current, everyone, "champion"), mine(other, everyone, "shadow")
        return [live[i] for i in everyone], [shadow[i] for i in everyone]
    variants = [challenge.variant(session) for session in sessions]
    split = [i for i in everyone if variants[i] != "champion"]
    answers = mine(current, [i for i in everyone if variants[i] == "champion"], "champion")
    if challenge.mode == "ab":
        answers |= mine(other, split, "challenger")
    else:  # interleave: both lists, drafted into one
        ours, theirs = mine(current, split, "champion"), mine(other, split, "challenger")
        for i in split:
            scores = {**dict(theirs[i].ranked), **dict(ours[i].ranked)}
            merged, teams = team_draft([item for item, _ in ours[i].ranked], [item for item, _ in theirs[i].ranked],
                                       current.k, coin=seeded_coin(origins[i]))
            answers[i] = Answered([(item, scores[item]) for item in merged], "interleave",
                                  f"{current.version}+{other.version}", "interleaved", teams)
    return [answers[i] for i in everyone], []


async def answer(records: list[faust.types.Message]) -> None:
    """Recommendations for one micro-batch of clicks and cart changes. A session's state
    is saved only after its recommendations are sent: a worker killed in between reads
    the events again and answers them again (at-least-once), rather than never."""
    consumed = time.time()
    current, rival = follower.current, follower.challenger  # one of each for the whole batch
    now = datetime.now(UTC)
    started = time.perf_counter()
    states: dict[bytes, RecsSession] = {}
    answers = []  # [(event, SessionView, origin)]
    for message in records:  # what the session's orders bought, before the clicks after them
        if KIND[message.topic] != "bought":
            continue
        try:
            bought = decode_bought(message)
        except Unsigned as exc:  # forged: nothing applied
            await dead_letter(message, "unsigned", repr(exc), exc)
            continue
        for session_id, (items, ts) in bought.items():
            key = session_id.encode()
            state = states.get(key) or load_state(key)
            if state.buy(items, f"{message.topic}:{message.partition}", message.offset):
                state.last_ts = max(state.last_ts or ts, ts)
                states[key] = state
    records = [message for message in records if KIND[message.topic] != "bought"]
    kinds = [KIND[message.topic] for message in records]
    for message, kind, event in zip(records, kinds, decode_all(kinds, records, now), strict=True):
        if isinstance(event, InvalidEvent):
            continue  # the input agents dead-letter it
        if not event.session_id:
            continue
        key = event.session_id.encode()
        state = states.get(key) or load_state(key)
        op = event.action if isinstance(event, CartEvent) else "click"
        if not state.update(op, event.item_id, f"{message.topic}:{message.partition}", message.offset):
            continue  # redelivered: its recommendations were sent before
        ts = event.ts.timestamp()
        state.last_ts = ts if state.last_ts is None else max(state.last_ts, ts)
        states[key] = state
        answers.append((event, state.view(kind), f"{message.topic}:{message.partition}:{message.offset}"))
        if kind == "click" and current.version == "rules":
            recent.add(Session((event.item_id,), event.ts.timestamp()))
    metrics.SCORING_STAGE_SECONDS.labels("recs_state").observe(time.perf_counter() - started)
    if answers:
        refresh_popularity()
        results, shadow = challenged(current, rival, [view for _, view, _ in answers],
                                     [event.session_id for event, _, _ in answers], [o for _, _, o in answers])
        for stage, spent in current.timings.items():  # model, retrieval, blend
            metrics.SCORING_STAGE_SECONDS.labels(f"recs_{stage}").observe(spent)
        done, sent = time.time(), []
        for topic, lists in ((recs_topic, results), (shadow_topic, shadow)):  # no shadow: an empty list
            for (event, view, origin), (ranked, strategy, version, variant, teams) in zip(
                    answers if lists else [], lists, strict=True):
                recs = SessionRecs(session_id=event.session_id, user_id=event.user_id, strategy=strategy,
                                   items=[RecommendedItem(item_id=i, score=s) for i, s in ranked],
                                   trigger=view.trigger, session_length=len(view.items), origin=origin,
                                   model_version=version, variant=variant, teams=teams,
                                   latency_ms=max(done - consumed, 0.0) * 1000, ts=datetime.now(UTC))
                sent.append(send(topic, recs.model_dump_json().encode(), event.session_id.encode()))
                metrics.MODEL_PREDICTIONS.labels(MODEL, version, variant).inc()
                if topic is recs_topic:
                    metrics.PREDICTIONS.labels(MODEL, version, strategy.split("+")[0]).inc()
                    metrics.SCORE_LATENCY.labels(MODEL).observe(recs.latency_ms / 1000)
        await delivered(sent, "recommendations")  # before the events can be acknowledged (streams.app.save)
        metrics.OUTPUTS.labels(settings.topics.session_recs).inc(len(answers))
        if shadow:
            metrics.OUTPUTS.labels(settings.topics.recs_shadow).inc(len(shadow))
        if settings.drift.enabled:
            from streams.drift import RECS, answered_record, send_watched

            await send_watched(RECS, [answered_record(  # the drift of the champion; every version graded
                version, event.session_id, event.item_id if view.trigger == "click" else None,
                [i for i, _ in ranked], strategy, event.ts.timestamp(), variant)
                for lists in (results, shadow) if lists
                for (event, view, _), (ranked, strategy, version, variant, _) in zip(answers, lists, strict=True)])
    for key, state in states.items():
        expiry.saved(key, state.last_ts, state.last_ts + settings.recs.session_ttl_s)
    await save(session_table, {key: state.to_json() for key, state in states.items()})
    await expiry.sweep()


def decode_bought(message: faust.types.Message) -> dict[str, tuple[list[str], float]]:
    """What the orders of one record of ``{app_id}-session-orders`` bought, by session:
    the items and the newest event time (one record holds the orders of a batch for one
    partition, ``forward_bought``); a warning and nothing for an entry of another layout;
    ``Unsigned`` for a record without this deployment's signature."""
    data = signer.verify(message.key, message.value)  # Unsigned: the caller dead-letters it
    bought: dict[str, tuple[list[str], float]] = {}
    try:
        entries = unpacked(data)
    except ValueError as exc:
        log.warning("%s:%d@%d is no session order (%r); skipped", message.topic, message.partition,
                    message.offset, exc)
        return bought
    for entry in entries:
        try:
            session, items, ts = str(entry["session_id"]), [str(i) for i in entry["items"]], float(entry["ts"])
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s:%d@%d holds no session order (%r); skipped", message.topic, message.partition,
                        message.offset, exc)
            continue
        before, newest = bought.get(session, ([], ts))
        bought[session] = ([*before, *items], max(newest, ts))
    return bought


async def forward_bought(records: list[faust.types.Message]) -> None:
    """Send what the batch's valid orders bought to the partitions of their sessions in the
    session-orders topic, one record per partition (``packed``), waited for before the
    orders are acknowledged. Orders without a session, and invalid ones (the input
    agents dead-letter those), send nothing."""
    orders = decode_all(["order"] * len(records), records, datetime.now(UTC))
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for order in orders:
        if isinstance(order, Order) and order.session_id:
            by_partition[owner_partition(order.session_id.encode(), settings.topics.partitions)].append(
                orjson.dumps({"session_id": order.session_id, "items": [line.item_id for line in order.items],
                              "ts": order.ts.timestamp()}))
    await delivered([send(bought_topic, signer.sign(None, value), None, partition)
                     for partition, bought in by_partition.items() for value in packed(bought)], "bought items")


@app.agent(orders_topic, name="order_items_agent")
async def order_items_agent(stream: faust.StreamT) -> None:
    """Orders in, what each bought out, keyed by session (``exclude_bought``)."""
    await each_batch(stream, settings.recs.batch_rows, settings.recs.batch_ms, forward_bought,
                     "the order items agent", lambda: settings.recs.enabled and settings.recs.exclude_bought)


@app.agent(inputs, name="recs_agent")
async def recs_agent(stream: faust.StreamT) -> None:
    """Clicks and cart changes in, session recommendations out."""
    async def locked(records: list[faust.types.Message]) -> None:
        async with answering:
            await answer(records)

    await each_batch(stream, settings.recs.batch_rows, settings.recs.batch_ms, locked,
                     "the recs agent", lambda: settings.recs.enabled, arrival=True)
