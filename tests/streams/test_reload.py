"""Champion reloads in the scoring agents: the start-up load and the timer's checks never
overlap, and a reload loads the version it checked, not whatever the registry says a
moment later."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

import trainers.registry
from streams import fraud, metrics, recs
from streams.reload import FailedVersions


def failed(model: str) -> float:
    return metrics.MODEL_RELOADS.labels(model, "failed")._value.get()  # noqa: SLF001


@pytest.mark.parametrize("agent", [fraud, recs], ids=["fraud", "recs"])
def test_a_broken_champion_is_tried_once_when_the_start_and_the_timer_meet(agent, monkeypatch):
    """Seen failing before (CI, ``test_registry_faults``): both loads ran, and one
    broken champion counted two failures."""
    registry = SimpleNamespace(champion=lambda: SimpleNamespace(version="2"), challenge=lambda: None)
    monkeypatch.setattr(trainers.registry, "Registry", lambda *args, **kwargs: registry)
    asked = []

    def broken(champion):
        asked.append(champion.version)
        time.sleep(0.2)
        raise ValueError("a truncated checkpoint")

    monkeypatch.setattr(agent.follower, "load", broken)
    monkeypatch.setattr(agent.follower, "failed", FailedVersions())
    monkeypatch.setattr(agent.follower, "_lock", asyncio.Lock())
    before = failed(agent.MODEL)

    async def start_and_timer():
        await asyncio.gather(agent.follower.reload(), agent.follower.reload())

    asyncio.run(start_and_timer())
    assert asked == ["2"]  # the second waited, then skipped the version that had just failed
    assert failed(agent.MODEL) == before + 1


@pytest.mark.parametrize("agent", [fraud, recs], ids=["fraud", "recs"])
def test_a_registry_that_cannot_be_read_is_not_a_failed_model(agent, monkeypatch):
    """A registry read that fails (MLflow's SQLite database locked while a trainer promotes)
    is counted apart from a champion that fails to load. Before, both counted as
    ``failed``: ``test_registry_faults`` saw one broken champion "refused twice" in CI."""
    answers = iter([OSError("database is locked"), SimpleNamespace(version="2")])

    def champion():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    registry = SimpleNamespace(champion=champion, challenge=lambda: None)
    monkeypatch.setattr(trainers.registry, "Registry", lambda *args, **kwargs: registry)

    def broken(champion):
        raise ValueError("a truncated checkpoint")

    monkeypatch.setattr(agent.follower, "load", broken)
    monkeypatch.setattr(agent.follower, "failed", FailedVersions())
    monkeypatch.setattr(agent.follower, "_lock", asyncio.Lock())
    unreadable = metrics.MODEL_RELOADS.labels(agent.MODEL, "registry-unreadable")
    before, before_unreadable = failed(agent.MODEL), unreadable._value.get()  # noqa: SLF001

    async def two_checks():
        await agent.follower.reload()
        await agent.follower.reload()

    asyncio.run(two_checks())
    assert failed(agent.MODEL) == before + 1
    assert unreadable._value.get() == before_unreadable + 1  # noqa: SLF001


def test_a_reload_loads_the_version_it_checked(monkeypatch, tmp_path):
    """The registry promoted version 3 while version 2 was being loaded: 2 is loaded (the
    next check picks 3 up); before, the loader asked the registry again and a failure
    was booked against the wrong version."""
    from trainers.promotion import fraud_champion as load_champion

    downloaded = []
    registry = SimpleNamespace(champion=lambda: SimpleNamespace(version="3"),
                               download=lambda version: downloaded.append(version.version) or tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError):
        load_champion(SimpleNamespace(), registry, champion=SimpleNamespace(version="2"))
    assert downloaded == ["2"]


@pytest.mark.parametrize("agent", [fraud, recs], ids=["fraud", "recs"])
def test_a_registry_outage_keeps_the_challenger_and_shows_no_credentials(agent, monkeypatch):
    """Issue 32: the error of an MLflow server that is away quotes its URI, and the URI
    carries the token; ``/health`` showed it. The worker is degraded, not unready, and the
    challenge in progress goes on."""
    from streams import web
    from streams.app import models

    uri = "https://ops:t0ken@mlflow.shop.example/api/2.0/mlflow"

    def away(*args, **kwargs):
        raise ConnectionError(f"API request to {uri}/registered-models/get failed: connection refused")

    monkeypatch.setattr(trainers.registry, "Registry", away)
    challenge = (SimpleNamespace(version="7", mode="shadow", weight=0.5), object())
    monkeypatch.setattr(agent.follower, "challenger", challenge)
    monkeypatch.setattr(agent.follower, "_lock", asyncio.Lock())
    asyncio.run(agent.follower.reload())
    assert agent.follower.challenger is challenge

    body, status = web.report({"kafka": None, "redis": None}, models, {}, None)
    assert status == 200 and body["status"] == "degraded"
    assert "t0ken" not in str(body) and "mlflow.shop.example" in body["models"][agent.MODEL]["error"]
