"""Retraining on drift: the trainer job that reads ``signals.drift`` and trains the fraud
model again when the signals call for it (``shopstream train fraud --on-signal``).

``SignalWatch`` keeps the signals about the serving champion and asks
``scorers.drift.RetrainPolicy`` whether they call for a retrain: a confirmed drift of the
labelled error, an estimated metric drifting in two windows running, or the score drifting
with a share of the most important inputs; never on warnings alone, only when the
labelled data has grown since the champion's training, and at most once per cooldown of
event time and of wall-clock time. A retrain goes through the same champion gate as a scheduled one, and the
new version carries the reason and the signals it rests on as MLflow tags
(``trigger.reason``, ``trigger.signals``, ``trigger.window_end``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from scorers.drift import RetrainPolicy, Seen
from shopstream.events import DriftSignal
from shopstream.settings import Settings

log = logging.getLogger(__name__)
LAST_RETRAIN_TAG = "drift.last_retrain"
"""Registered-model tag: ``event,wall``, the event time and the wall-clock time (epoch
seconds) of the last retrain that drift triggered. The cooldown holds on both clocks: on
event time, as the policy reasons; on the wall clock too, so that a replay, whose signals
span days of event time in minutes, triggers one retrain, not one per day replayed."""


def last_retrain(registry) -> tuple[float | None, float | None]:
    """(event time, wall-clock time) of the last triggered retrain, if any."""
    value = registry.client.get_registered_model(registry.name).tags.get(LAST_RETRAIN_TAG, "")
    try:
        event, wall = (float(part) for part in value.split(","))
    except ValueError:
        return None, None
    return event, wall


def policy_of(settings: Settings) -> RetrainPolicy:
    return RetrainPolicy(cooldown_s=settings.drift.cooldown_h * 3600, data_growth=settings.drift.data_growth,
                         input_share=settings.drift.input_share, recent_s=settings.drift.recent_h * 3600)


@dataclass
class SignalWatch:
    """The drift signals about one model's champion, and the retrain they call for.

    >>> watch = SignalWatch("m", RetrainPolicy())
    >>> signal = DriftSignal(signal_id="s", model="m", model_version="1", stream="fraud", subject="error",
    ...                      detector="adwin", statistic="mean_change", value=0.1, threshold=0, n=500,
    ...                      severity="drift", window_start=0, window_end=100, ts=100, latency_ms=0)
    >>> watch.add(signal, champion="2")       # about another version: not this champion's drift
    False
    >>> watch.add(signal, champion="1"), watch.due(rows=1_200, champion_rows=1_000, last_retrain=None, important=[])
    (True, 'the labelled error drifted')
    """

    model: str
    policy: RetrainPolicy
    signals: list[DriftSignal] = field(default_factory=list)

    def add(self, signal: DriftSignal, champion: str) -> bool:
        """Keep ``signal`` if it is about ``champion`` (signals of an older version are
        dropped with it, and those too old to count with the newest, ``recent_s``)."""
        self.signals = [s for s in self.signals if s.model_version == champion]
        if signal.model != self.model or signal.model_version != champion:
            return False
        self.signals.append(signal)
        self.signals = [s for s in self.signals if self.now - s.window_end.timestamp() <= self.policy.recent_s]
        return True

    @property
    def now(self) -> float:
        """Event time: the end of the newest signal's window."""
        return max((s.window_end.timestamp() for s in self.signals), default=0.0)

    def _seen(self) -> list[Seen]:
        return [Seen(s.stream, s.subject, s.severity, s.window_end.timestamp(), s.signal_id) for s in self.signals]

    def due(self, rows: int, champion_rows: int, last_retrain: float | None, important: list[str]) -> str | None:
        return self.policy.decide(self._seen(), self.now, last_retrain, rows, champion_rows, important)

    def grounds(self, important: list[str]) -> list[DriftSignal]:
        """The signals that the policy's reason rests on (none if it gives none)."""
        found = self.policy.grounds(self._seen(), self.now, important)
        ids = {s.signal_id for s in found[1]} if found else set()
        return [s for s in self.signals if s.signal_id in ids]


def retrain_on_signals(settings: Settings, train: Callable[[dict[str, str]], object], *, once: bool = False,
                       timeout: float | None = None, group: str | None = None) -> list:
    """Read ``signals.drift`` and call ``train(tags)`` whenever the signals call for a
    retrain; return what each call returned. With ``once``, stop after the first retrain;
    with ``timeout``, after that many seconds."""
    from confluent_kafka import Consumer

    from trainers.fraud import labelled_total
    from trainers.promotion import fraud_profile
    from trainers.registry import Registry

    registry = Registry(settings)
    watch = SignalWatch(settings.scoring.model_name, policy_of(settings))
    consumer = Consumer({**settings.kafka.client_config(), "auto.offset.reset": "earliest",
                         "group.id": group or f"{settings.app_id}-retrain-fraud"})
    consumer.subscribe([settings.topics.drift])
    results, important, started = [], {}, time.monotonic()
    try:
        while timeout is None or time.monotonic() - started < timeout:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            try:
                signal = DriftSignal.model_validate_json(message.value())
            except ValidationError as exc:
                log.warning("skipping a record on %s that is no drift signal: %s", settings.topics.drift, exc)
                continue
            champion = registry.champion()
            if champion is None or not watch.add(signal, champion.version) or not signal.drifted:
                continue
            if champion.version not in important:
                profile = fraud_profile(settings, champion.version, registry)
                important[champion.version] = profile.important if profile else []
                log.info("the inputs %s ranks highest: %s", registry.name, important[champion.version][:10])
            last_event, last_wall = last_retrain(registry)
            if last_wall is not None and time.time() - last_wall < watch.policy.cooldown_s:
                continue  # a replay's backlog of signals spans days of event time in minutes
            champion_rows = int(champion.tags.get("labelled_orders", champion.tags.get("n_rows", "0")))
            reason = watch.due(labelled_total(settings), champion_rows, last_event, important[champion.version])
            if reason is None:
                continue
            log.info("retraining %s: %s", registry.name, reason)
            grounds = watch.grounds(important[champion.version])
            registry.client.set_registered_model_tag(registry.name, LAST_RETRAIN_TAG,
                                                     f"{watch.now:.0f},{time.time():.0f}")
            results.append(train({"trigger.reason": reason, "trigger.id": uuid.uuid4().hex,
                                  "trigger.window_end": f"{watch.now:.0f}",
                                  "trigger.signals": ",".join(s.signal_id for s in grounds)[:4_000]}))
            watch.signals.clear()
            if once:
                break
    finally:
        consumer.close()
    return results
