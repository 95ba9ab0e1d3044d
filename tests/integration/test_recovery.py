"""A worker killed mid-stream and restarted ends with the same features as a run with no
interruption: redelivered records are ignored by the entity states (at-least-once
delivery, exactly-once effect), and nothing is lost."""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from scorers.states import STATE_VERSION
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.settings import Topics
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tests.conftest import free_port, spare_db
from tests.integration.conftest import (
    committed_and_end_offsets,
    drained,
    read_all,
    settled,
    start_worker,
    wait_until,
)
from tools.simulator import Shop, SimConfig, default_start

pytestmark = pytest.mark.integration
N = 8_000


def drain(settings, timeout=180):
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    try:
        wait_until(lambda: drained(settings, topics), timeout, what="every record to be committed")
    finally:
        print(committed_and_end_offsets(settings, topics))


def first_crash(log: str, size: int = 3000) -> str:
    """The log from its first crash or traceback on (Faust's "Crashed reason=" line), or ""."""
    starts = [i for i in (log.find("Crashed reason="), log.find("Traceback (most recent")) if i >= 0]
    return log[min(starts):min(starts) + size] if starts else ""


def report(settings, tmp_path) -> None:
    """Why the restarted worker did not drain, most telling part last (CI keeps the tail):
    both logs, the await chains of its tasks that are in shopstream or Faust code, its
    counters, its commit bookkeeping for every partition it consumes, and its first crash."""
    for name, size in (("first.log", 1500), ("second.log", 4000)):
        print(f"--- {name} tail:\n" + (tmp_path / name).read_text()[-size:])
    crash = first_crash((tmp_path / "second.log").read_text())
    tasks = workers.debug_page(settings.web_port, "tasks").split("\n\n")
    print("--- the restarted worker's tasks in streams/ or faust/:\n" + "\n\n".join(
        block for block in tasks if "/streams/" in block or "/faust/" in block))
    if (m := workers.scrape(settings.web_port)) is not None:
        print(f"--- its counters: in={m.events_in} out={m.events_out} dead={m.dead_letters} "
              f"online batches={m.online_batches:.0f} rows={m.online_rows:.0f}")
    try:
        state = json.loads(workers.debug_page(settings.web_port, "consumer"))
    except ValueError:
        print("--- no /debug/consumer")
        state = {"partitions": {}}
    else:
        print(f"--- its consumer: flow_active={state['flow_active']} unacked={state['unacked']} "
              f"first unacked={state['unacked_first'][:5]}")
    for tp, row in state["partitions"].items():  # the ones not drained: CI keeps only the tail
        if "changelog" not in tp and "__assignor" not in tp and row["committed"] != row["highwater"]:
            print(f"{tp} {row}")
    if crash:
        print(f"--- the restarted worker's first crash:\n{crash}")


def test_kill_and_restart_gives_the_features_of_an_uninterrupted_run(settings, tmp_path):
    settings = settings.model_copy(update={"debug_pages": True})  # for report()
    config = SimConfig(seed=5, users=150, items=400, sessions_per_hour=20_000)
    events = list(Shop(config).events(start=default_start(N, config), n=N))
    prefix = f"r{uuid.uuid4().hex[:8]}"
    reference = settings.model_copy(update={
        "topics": Topics(**{k: f"{prefix}.{v}" for k, v in Topics().model_dump().items()
                            if isinstance(v, str)}, partitions=2),
        "app_id": f"{prefix}-app", "web_port": free_port(),
        "redis": settings.redis.model_copy(update={"db": spare_db(settings)}),  # a separate online store
    })
    for target in (settings, reference):
        ensure_topics(target)  # with the partitions of ``target``, not the broker's default
        with ShopProducer(target) as producer:
            for event in events:
                producer.send(event)

    # The run under test: killed once it is part-way through.
    process = start_worker(settings, tmp_path / "first.log")
    wait_until(lambda: (m := workers.scrape(settings.web_port)) is not None and m.total_in >= N // 3,
               120, what="a third of the events to be consumed")
    process.send_signal(signal.SIGKILL)
    process.wait()
    changelog = f"{settings.app_id}-entity-state-v{STATE_VERSION}-changelog"
    print("at the kill, (committed, end):", committed_and_end_offsets(
        settings, [*settings.topics.inputs().values(), updates_topic_name(settings), changelog]))
    restarted = start_worker(settings, tmp_path / "second.log")
    try:
        drain(settings)
        interrupted = settled(settings, events)
    except BaseException:
        report(settings, tmp_path)
        raise
    finally:
        workers.stop(restarted)

    process = start_worker(reference, tmp_path / "reference.log")
    try:
        drain(reference)
        expected = settled(reference, events)
    finally:
        workers.stop(process)

    written = sum(end for _, end in committed_and_end_offsets(settings, [settings.topics.dlq]).values())
    letters = read_all(settings, settings.topics.dlq, expect=written, timeout=30)
    assert not written and not letters, \
        f"{written} dead letters from good events: {[m.value()[:600] for m in letters[:3]]!r}"
    differences = {}  # feature -> (entities that differ, of how many, the first few)
    for key in expected:
        ids = expected[key][key]
        for name, values in expected[key].items():
            got = interrupted[key][name]
            same = ((lambda a, b: a == pytest.approx(b, abs=1e-9)) if name == "account_age_days"
                    else (lambda a, b: a == b))  # account age is stamped to the microsecond
            wrong = [(i, g, v) for i, g, v in zip(ids, got, values, strict=True) if not same(g, v)]
            if wrong:
                differences[f"{key}: {name}"] = (len(wrong), len(ids), wrong[:3])
    # One short line per feature, (entity, after the restart, uninterrupted): CI keeps the tail.
    assert not differences, "features differ after the restart:\n" + "\n".join(
        f"{name}: {n} of {total}, e.g. {sample}" for name, (n, total, sample) in differences.items())
    assert any(v for v in expected["user_id"]["clicks_count_7d"])  # the comparison saw data
