"""The drift role end to end on the real Kafka and Redis: a trained champion serves, a
stretch of unchanged traffic raises no drift of any input nor of the error, a planted
change (order amounts ten times larger, every order's card, device and IP used again
the next day by another account) raises a
``DriftSignal`` within its bound, and the trainer job that reads the signals retrains
exactly once.

Every day is replayed the same way, to a running worker, as fast as it goes; the model
trains on the feature rows the worker served (``trainers.offline.features_as_served``),
so the lag of a fast replay is in its reference too (docs/drift.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import DriftSignal, Order
from shopstream.settings import DriftSettings, ScoringSettings
from shopstream.topics import ensure_topics
from streams.app import drift_inputs_topic_name, updates_topic_name
from tests.integration.conftest import drained, read_all, start_worker, wait_until
from tests.integration.test_fraud import history
from tools.simulator import SimConfig
from trainers.configs import FraudTrainConfig, LoopConfig
from trainers.fraud import train_and_register
from trainers.promotion import fraud_profile
from trainers.registry import Registry
from trainers.triggers import SignalWatch, policy_of, retrain_on_signals

pytestmark = pytest.mark.integration
TRAIN_DAYS, NULL_DAYS, PLANTED_DAYS = 45, 5, 5
"""The training days are many for a model trained on ten: the 30-day windows fill up, and
the 7-day-late labels reach the terminals' risk, only after 37 days of history. Before
that the features grow day by day, and an unchanged shop would look like drift."""
STEADY = SimConfig(seed=12, users=200, items=300, terminals=200, sessions_per_hour=6,
                   card_testing_per_day=6, compromised_terminal_share=0.0)
"""A small shop whose traffic does not change: fraud comes from card testing and account
takeovers, not from terminals compromised for weeks, which change the terminals' risk by
design (with 20 terminals, as in ``test_fraud``, their counts move by half from one week
to the next, and the detectors rightly say so).

Five of six of its orders come in card-testing bursts (5 to 25 orders on one card), so a
window of 200 scores is set by a dozen bursts, and the score's reference holds 8 days.
Seed 12, not 11: with 11 the unchanged days themselves hold a share of burst orders
further from those 8 days (0.113 in a 200-order window) than any window inside them
(0.078), whatever the system does, and the score test said so in 3 of 4 runs (KS 0.30
against a calibrated 0.25). With 12 the largest gap is 0.02 (0.07 inside the reference);
docs/drift.md."""


BOUND = 400
"""Planted orders by which a drift of the amount must have been signalled."""


def signals(settings, expect: int = 1, timeout: float = 5.0) -> list[DriftSignal]:
    return [DriftSignal.model_validate_json(m.value())
            for m in read_all(settings, settings.topics.drift, expect=expect, timeout=timeout)]


def send(settings, events, topics: list[str]) -> None:
    """Replay ``events`` a day at a time, each as fast as it goes, and wait until the
    worker has processed it: every stretch then meets the same lag, whatever its length."""
    day = timedelta(days=1)
    start = events[0].ts
    while events:
        chunk = [e for e in events if e.ts < start + day]
        events = events[len(chunk):]
        start += day
        with ShopProducer(settings) as producer:
            for event in chunk:
                producer.send(event)
        wait_until(lambda: drained(settings, topics), 120, what="a replayed day to be processed")


@pytest.mark.timeout(1500)  # 55 replayed days and two trainings: 7 minutes alone, more beside other tests
def test_planted_change_signals_drift_and_triggers_one_retrain(settings, tmp_path):
    settings = settings.model_copy(update={
        "scoring": ScoringSettings(model_name=f"{settings.app_id}-fraud", reload_s=1.0),
        # Windows of 500 orders: PSI's fixed thresholds (0.1, 0.25) assume windows large
        # enough that chance alone stays below them; at 200, an unchanged terminal count
        # reached 0.26 here (docs/drift.md).
        # An expected 100,000 orders between false alarms of the score test: its 31 tests on
        # the 513 unchanged orders then alarm by chance about once in 200 runs, where 20,000
        # would in one of 40 or, with the calibration's own error, more; CI saw 0.297
        # against 0.294 (docs/drift.md). The plant moves the score far beyond either.
        "drift": DriftSettings(window=500, ert_events=100_000)})
    events = history(TRAIN_DAYS + NULL_DAYS + PLANTED_DAYS, STEADY)
    start = events[0].ts
    null_from, planted_from = start + timedelta(days=TRAIN_DAYS), start + timedelta(days=TRAIN_DAYS + NULL_DAYS)
    trained = [e for e in events if e.ts < null_from]
    unchanged = [e for e in events if null_from <= e.ts < planted_from]
    # The plant: order amounts ten times larger, and every order's card, device and IP
    # used again 23 hours later by another account (an unlabelled order), which moves the
    # 24-hour velocity counts this shop's model ranks highest, and so its score. Not a
    # minute later: a day is replayed in seconds, and an order that close behind would be
    # scored before the features of the first reach the online store (CI saw no drift of
    # them that way), where a day later they are there whatever the pace.
    # Two quiet days, more than the retrain policy's RECENT_H, separate the unchanged days
    # from the plant: no signal of the unchanged days can then count with the plant's.
    planted, gap = [], timedelta(days=2)
    for e in (e.model_copy(update={"ts": e.ts + gap}) for e in events if e.ts >= planted_from):
        if isinstance(e, Order):
            e = e.model_copy(update={"amount": e.amount * 10})
            planted += [e, e.model_copy(update={"order_id": f"{e.order_id}-again", "user_id": f"{e.user_id}-ring",
                                                 "session_id": None, "ts": e.ts + timedelta(hours=23)})]
        else:
            planted.append(e)
    planted.sort(key=lambda e: e.ts)
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings), drift_inputs_topic_name(settings)]
    ensure_topics(settings)
    log_file = tmp_path / "worker.log"
    process = start_worker(settings, log_file)
    try:
        send(settings, trained, topics)
        config = FraudTrainConfig(days=10, valid_days=3, gate_baselines=False,  # the gate is test_fraud's
                                  loop=LoopConfig(epochs=3, batch_size=128))
        first = train_and_register(settings, config, output=tmp_path / "v1", progress=False)
        assert first.promoted
        assert first.train.served == len(first.train.x)  # every order was scored, and logged
        wait_until(lambda: [s.value for s in workers.samples(settings.web_port, "shopstream_model_version")] == [1.0],
                   60, what="the worker to serve version 1")

        send(settings, unchanged, topics)
        null = [s for s in signals(settings, expect=10**6, timeout=3) if s.window_end >= null_from]
        print("unchanged:", "\n".join(sorted(f"{s.model} v{s.model_version} {s.subject} {s.detector} {s.severity} "
                                              f"{s.value:.3f}/{s.threshold:.3f} n={s.n} {s.window_start:%m-%d %H:%M}"
                                              f"..{s.window_end:%m-%d %H:%M} {s.signal_id}" for s in null)))
        # The fraud model's: this test trains no recommender, and the popularity rules that
        # answer clicks meanwhile have no reference (their hit rate is watched in unit tests).
        # All but the score's calibrated KS: on this shop, whose windows of 200 orders are set
        # by a dozen card-testing bursts, its 31 tests alarmed on the unchanged days in about
        # one run of three at thresholds calibrated from 8 days of bursts (KS 0.288 and 0.294
        # against 0.283; docs/drift.md, "What eight days cannot show"). Its false-alarm rate is
        # measured on synthetic streams in tests/scorers; here it must not call for a retrain.
        fraud = [s for s in null if s.drifted and s.model == settings.scoring.model_name]
        assert not [s for s in fraud if (s.subject, s.detector) != ("score", "calibrated_ks")], \
            "a drift of the fraud model's inputs or error on the unchanged days"
        watch = SignalWatch(settings.scoring.model_name, policy_of(settings))
        important = fraud_profile(settings, "1", Registry(settings)).important
        for signal in sorted(fraud, key=lambda s: s.window_end):
            watch.add(signal, champion=signal.model_version)
            assert watch.due(rows=10**9, champion_rows=1, last_retrain=None, important=important) is None, \
                f"the unchanged days call for a retrain at {signal.window_end}"

        send(settings, planted, topics)
        found = [s for s in signals(settings, expect=10**6, timeout=3) if s.window_end >= planted_from]
        print("planted:", "\n".join(sorted(f"{s.subject} {s.detector} {s.severity} {s.value:.3f}/{s.threshold:.3f} "
                                             f"{s.window_end:%m-%d %H:%M}" for s in found)))
        placed = sorted(e.ts for e in planted if isinstance(e, Order))
        bound = placed[min(BOUND, len(placed) - 1)]
        amount = [s for s in found if s.drifted and s.subject == "amount_log" and s.window_end <= bound]
        assert amount, "no drift of the order amount within the bound"

        registry = Registry(settings)
        retrains = retrain_on_signals(settings, lambda tags: train_and_register(
            settings, config, output=tmp_path / "v2", progress=False, tags=tags), timeout=30)
        assert len(retrains) == 1
        tags = registry.get(retrains[0].version.version).tags
        assert tags["trigger.reason"] and tags["trigger.signals"]
        by_id = {s.signal_id: s for s in found + null}
        assert all(by_id[i].window_end >= planted_from for i in tags["trigger.signals"].split(",") if i in by_id), \
            "a signal of the unchanged days triggered the retrain"
    finally:
        code = workers.stop(process)
        print(f"--- worker exited with {code}; log tail:\n" + log_file.read_text()[-4000:])
