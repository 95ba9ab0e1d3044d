"""Following a model's champion and challenger in the registry, for the scoring agents.

A ``Follower`` holds what a scoring agent answers with: ``current`` (the champion's loaded
model, or the rules before there is one) and ``challenger`` (the registry's challenge and
its loaded model, or None). Both are replaced whole, never mutated, so a batch that took
them at its start answers with one pair even if a reload lands meanwhile. ``reload``
asks the registry; a new champion is loaded off the event loop by the agent's ``load``
and swapped in; one that fails to load keeps the model in use and is tried again in five
minutes (``FailedVersions``). The start-up load and the timer's checks never overlap.
``streams.fraud`` and ``streams.recs`` each follow their model with one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from shopstream.settings import redact
from streams import metrics
from streams.app import app, models, settings, survives

log = logging.getLogger(__name__)
Model = TypeVar("Model")


class FailedVersions:
    """Model versions that failed to load, so that a broken champion is tried again every
    ``retry_s`` seconds rather than on every registry check (each try downloads it)."""

    def __init__(self, retry_s: float = 300.0):
        self.retry_s = retry_s
        self._failed: dict[str, float] = {}

    def skip(self, version: str) -> bool:
        """Whether ``version`` failed less than ``retry_s`` seconds ago."""
        return time.monotonic() - self._failed.get(version, -math.inf) < self.retry_s

    def failed(self, version: str) -> None:
        self._failed[version] = time.monotonic()


class Follower(Generic[Model]):
    """The champion and challenger of ``model`` that a scoring agent answers with.

    ``load(registered version)`` loads one (blocking: it runs in a thread); None means
    there is nothing to swap in. ``what`` names the agent's work in its log lines
    ("scoring", "recommending"). The follower asks the registry at the worker's start and
    every ``interval_s`` seconds after, while ``enabled()``.
    """

    def __init__(self, model: str, current: Model, load: Callable[[object], Model | None], what: str,
                 interval_s: float, enabled: Callable[[], bool]):
        self.model, self.current, self.load, self.what = model, current, load, what
        self.challenger: tuple[object, Model] | None = None
        self.failed = FailedVersions()
        self._lock = asyncio.Lock()

        async def follow() -> None:
            if enabled():
                await self.reload()

        follow.__name__ = follow.__qualname__ = f"follow_{what}_model"  # Faust names timers by function
        app.task(survives(follow))
        app.timer(interval=interval_s, on_leader=False)(survives(follow))

    async def reload(self) -> None:
        """Swap in the registry's champion if it is not the model in use, and follow its
        challenger."""
        async with self._lock:
            registry = await self._reload_champion()
            if registry is not None:
                self.challenger = await follow_challenger(self.model, registry, self.challenger, self.load,
                                                          self.failed)

    async def _reload_champion(self):
        """The registry, once asked (None if it could not be)."""
        metrics.REGISTRY_CHECKS.labels(self.model).inc()
        try:
            from trainers.registry import Registry

            registry = await asyncio.to_thread(Registry, settings, self.model)
            champion = await asyncio.to_thread(registry.champion)
        except Exception as exc:  # noqa: BLE001 - asked again at the next check
            # The registry could not be read (away, or its database locked by a writer):
            # not a failure of any model, so no version is held back for it.
            metrics.MODEL_RELOADS.labels(self.model, "registry-unreadable").inc()
            error = redact(repr(exc), settings)  # an MLflow error quotes its URI, credentials and all
            models[self.model] = {"version": self.current.version, "error": error}
            log.warning("cannot read the %s registry (%s); still %s with %s", self.model, error, self.what,
                        self.current.version)
            return None
        if champion is None or champion.version == self.current.version or self.failed.skip(champion.version):
            return registry
        try:
            loaded = await asyncio.to_thread(self.load, champion)
        except Exception as exc:  # noqa: BLE001 - a broken model must not stop the answers
            metrics.MODEL_RELOADS.labels(self.model, "failed").inc()
            self.failed.failed(champion.version)
            error = redact(repr(exc), settings)
            models[self.model] = {"version": self.current.version, "error": error}
            log.warning("cannot load the %s champion (%s); still %s with %s", self.model, error, self.what,
                        self.current.version)
            return registry
        if loaded is None:
            return registry
        self.current = loaded
        metrics.MODEL_RELOADS.labels(self.model, "loaded").inc()
        models[self.model] = {"version": loaded.version, "error": None}
        metrics.MODEL_VERSION.labels(self.model).set(float(loaded.version))
        log.info("now %s with %s version %s", self.what, self.model, loaded.version)
        return registry


async def follow_challenger(model: str, registry, current: tuple | None, load: Callable, failed: FailedVersions):
    """The ``(Challenge, loaded model)`` a scoring agent uses next, from the registry's
    challenger (``scorers.challenge``): None when there is none; the one ``current`` holds
    with the registry's mode and weight when its version is the same; else the version
    loaded by ``load`` (blocking: off the event loop). A challenger that cannot be read
    keeps ``current``; one that cannot be loaded is skipped as a champion would be."""
    try:
        challenge = await asyncio.to_thread(registry.challenge)
    except Exception as exc:  # noqa: BLE001 - asked again at the next check
        log.warning("cannot read the challenger of %s (%s); keeping what is loaded", model,
                    redact(repr(exc), settings))
        return current
    if challenge is None or failed.skip(challenge.version):
        if current is not None:
            log.info("the challenge of %s version %s ended", model, current[0].version)
        metrics.follow_challenge(model, None)
        return None
    if current is not None and current[0].version == challenge.version:
        if current[0] != challenge:
            log.info("%s version %s now challenges %s, weight %.3f", model, challenge.version, challenge.mode,
                     challenge.weight)
        metrics.follow_challenge(model, challenge)
        return challenge, current[1]
    try:
        loaded = await asyncio.to_thread(load, await asyncio.to_thread(registry.get, challenge.version))
    except Exception as exc:  # noqa: BLE001 - a broken challenger must not stop the champion
        metrics.MODEL_RELOADS.labels(model, "challenger-failed").inc()
        failed.failed(challenge.version)
        metrics.follow_challenge(model, None)
        log.warning("cannot load the challenger %s of %s (%s); the champion answers alone", challenge.version,
                    model, redact(repr(exc), settings))
        return None
    metrics.follow_challenge(model, challenge)
    metrics.MODEL_RELOADS.labels(model, "challenger-loaded").inc()
    log.info("%s version %s challenges (%s, weight %.3f)", model, challenge.version, challenge.mode, challenge.weight)
    return challenge, loaded
