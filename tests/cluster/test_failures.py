"""Faults on the cluster under a steady load (issue 18): a Kafka partition leader killed, the
active controller killed, a Redis master killed, workers restarted one by one. In each,
nothing is lost or applied twice in effect: the raw log holds every event exactly once
(by topic, partition and offset: an idempotent producer never writes one twice), the
online features equal those of an uninterrupted run, every order has a score.

Each test prints its figures (``pytest -s tests/cluster``): events sent, lost, duplicated
in effect, and how long the cluster took to recover.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from shopstream import workers
from shopstream.featurestore import offline_root
from shopstream.offline import OfflineLog
from shopstream.services import kafka, redis
from tests.cluster.conftest import Load, drain, orders_of, shop_events
from tests.conftest import free_port
from tests.integration.conftest import metrics, read_all, settled, start_worker, wait_until


def raw_offsets(settings) -> Counter:
    """How many raw rows the offline log holds for each (topic, partition, offset)."""
    log = OfflineLog(offline_root(settings))
    rows: Counter = Counter()
    for name in [t for t in log.tables() if t.startswith("raw_")]:
        for r in log.read(name, columns=["topic", "partition", "offset"]).to_pylist():
            rows[r["topic"], r["partition"], r["offset"]] += 1
    return rows


def check_nothing_lost(settings, events, reference, figures: dict) -> None:
    """The effect of ``events`` is whole and once: raw rows, features, scores."""
    drain(settings)
    rows = raw_offsets(settings)
    figures |= {"events_sent": len(events), "raw_events": len(rows),
                "raw_rows_written_twice": sum(count - 1 for count in rows.values())}
    scores = read_all(settings, settings.topics.fraud_scores, expect=len(orders_of(events)), timeout=120)
    ids = Counter(json.loads(m.value())["order_id"] for m in scores)
    figures |= {"orders": len(orders_of(events)), "scored": len(ids),
                "scores_sent_twice": sum(count - 1 for count in ids.values())}
    online = settled(settings, events)
    figures["online_values_differing"] = off = differing(online, reference)
    figures["late_updates"] = sum(s.value for s in workers.samples(settings.web_port, "shopstream_late_updates_total"))
    print("figures:", json.dumps(figures))
    assert len(rows) == len(events), "events lost or written twice on Kafka"
    assert set(ids) == orders_of(events), "orders without a score"
    assert not off, "online features differ from the uninterrupted run"


def differing(online: dict, reference: dict) -> dict[str, int]:
    """How many entities' values differ from the reference, per feature. Decayed features
    are sums of floats whose order follows the order records arrive in from different
    partitions, so they agree to rounding (1e-6 relative), not to the last bit."""
    counts: Counter = Counter()
    for key, columns in reference.items():
        for name, values in columns.items():
            got = online.get(key, {}).get(name, [])
            counts[name] += sum(not same(a, b) for a, b in zip(got, values, strict=False))
            for entity, a, b in zip(columns[key], got, values, strict=False):
                if not same(a, b) and counts[name] <= 3:
                    print(f"differs: {key}={entity} {name}: {a!r} against {b!r} in the reference")
            counts[name] += abs(len(got) - len(values))
    return {name: n for name, n in counts.items() if n}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def timed(check, timeout: float, what: str) -> float:
    started = time.monotonic()
    wait_until(check, timeout, what=what)
    return round(time.monotonic() - started, 1)


def input_topics(settings) -> list[str]:
    return list(settings.topics.inputs().values())


def in_sync(cluster, settings) -> bool:
    return all(set(p.in_sync) == set(p.replicas) for p in kafka.placements(cluster, input_topics(settings)).values())


@contextmanager
def under_load(settings, tmp_path) -> Iterator[Load]:
    """A worker on ``settings`` and the shop sending to it, a quarter of the way in; the
    worker is stopped after, and its log's tail printed."""
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        load = Load(settings, shop_events()).start()
        wait_until(lambda: load.sent >= len(load.events) // 4, 60, what="a quarter of the events")
        yield load
    finally:
        print(f"--- worker exited with {workers.stop(process)}; log tail:\n"
              + (tmp_path / "worker.log").read_text()[-3000:])


def test_status_shows_each_node_its_role_and_the_active_controller(cluster):
    from shopstream import services

    rows = services.status(cluster)
    assert [row["service"] for row in rows] == ["kafka-1", "kafka-2", "kafka-3",
                                                *(f"redis-{port}" for _, port in cluster.redis.nodes)]
    assert all(row["answers"] for row in rows)
    assert sum("(active)" in row["role"] for row in rows) == 1
    roles = [row["role"].split()[0] for row in rows if row["service"].startswith("redis")]
    assert sorted(roles) == ["master"] * 3 + ["replica"] * 3


def test_leader_broker_killed(on_cluster, cluster, reference, tmp_path):
    settings, events = on_cluster, shop_events()
    with under_load(settings, tmp_path) as load:
        leaders = Counter(p.leader for p in kafka.placements(cluster, input_topics(settings)).values())
        victim = leaders.most_common(1)[0][0]
        kafka.stop_node(cluster, victim, kill=True)
        figures = {"killed_broker": victim, "partitions_it_led": leaders[victim], "sent_at_kill": load.sent}
        figures["election_s"] = timed(lambda: all(
            p.leader not in (victim, -1) for p in kafka.placements(cluster, input_topics(settings)).values()),
            60, "new leaders for its partitions")
        time.sleep(10)  # traffic on two brokers
        kafka.start_node(cluster, victim)
        figures["back_in_sync_s"] = timed(lambda: in_sync(cluster, settings), 120,
                                          "the restarted broker to rejoin every ISR")
        load.wait()
        assert workers.ready(settings.web_port), "the worker did not survive"
        check_nothing_lost(settings, events, reference, figures)


def test_active_controller_killed(on_cluster, cluster, reference, tmp_path):
    settings, events = on_cluster, shop_events()
    with under_load(settings, tmp_path) as load:
        controller = kafka.quorum_leader(cluster)
        assert controller is not None, "no active controller found"
        kafka.stop_node(cluster, controller, kill=True)
        figures = {"killed_controller": controller, "sent_at_kill": load.sent}
        figures["election_s"] = timed(lambda: kafka.quorum_leader(cluster) not in (None, controller), 60,
                                      "a new active controller")
        before = metrics(settings.web_port).total_in
        figures["events_in_10s_after"] = timed(
            lambda: metrics(settings.web_port).total_in > before + 100, 60, "traffic to go on")
        kafka.start_node(cluster, controller)
        figures["back_in_sync_s"] = timed(lambda: in_sync(cluster, settings), 120,
                                          "the restarted node to rejoin every ISR")
        load.wait()
        check_nothing_lost(settings, events, reference, figures)


def test_redis_master_killed(on_cluster, cluster, reference, tmp_path):
    settings, events = on_cluster, shop_events()
    with under_load(settings, tmp_path) as load:
        nodes = redis.cluster_nodes(cluster)
        victim = next(port for port, info in sorted(nodes.items()) if "master" in info["flags"])
        replicas = {port for port, info in nodes.items() if info["master_id"] == nodes[victim]["node_id"]}
        redis.stop_node(cluster, victim, kill=True)
        figures = {"killed_master": victim, "its_replicas": sorted(replicas), "sent_at_kill": load.sent}

        def taken_over() -> bool:
            view = redis.cluster_nodes(cluster)
            return any("master" in view.get(port, {}).get("flags", "") for port in replicas)

        figures["failover_s"] = timed(taken_over, 60, "a replica to take over the slots")
        load.wait()
        check_nothing_lost(settings, events, reference, figures)
        print("online writes retried:", sum(
            s.value for s in workers.samples(settings.web_port, "shopstream_write_retries_total")
            if s.labels["sink"] == "online"))
        redis.start_node(cluster, victim)  # it rejoins as a replica of its successor
        wait_until(lambda: redis.answers(cluster), 60, what="the old master to rejoin")


def test_rolling_restart_of_workers(on_cluster, reference, tmp_path):
    settings, events = on_cluster, shop_events()
    ports = [settings.web_port, free_port()]
    group = [start_worker(settings.model_copy(update={"web_port": port}), tmp_path / f"w{i}.log")
             for i, port in enumerate(ports)]
    figures: dict = {"restarts": []}
    try:
        state, owned = workers.group_view(settings)  # what `shopstream workers` shows
        owners = {row.owner for row in owned if row.topic in input_topics(settings)}
        assert state == "stable" and len(owners) == 2, (state, owned)
        assert len(owned) == len({(row.topic, row.partition) for row in owned})  # one owner each
        load = Load(settings, events).start()
        for i, port in enumerate(ports):
            wait_until(lambda i=i: load.sent >= (i + 1) * len(events) // 4, 90, what="more events")
            started = time.monotonic()
            workers.stop(group[i])
            group[i] = start_worker(settings.model_copy(update={"web_port": port}), tmp_path / f"w{i}-again.log")
            figures["restarts"].append(round(time.monotonic() - started, 1))
        load.wait()
        check_nothing_lost(settings, events, reference, figures)
    finally:
        for process in group:
            workers.stop(process)


def test_a_partition_added_is_refused_clearly(on_cluster, tmp_path):
    """Keys move when a topic gains a partition, and state would split: the worker says so
    and exits with status 78, acknowledging nothing more; a new one refuses to start."""
    from confluent_kafka.admin import AdminClient, NewPartitions

    from shopstream.settings import to_env
    from streams.app import EXIT_PARTITIONS

    settings, events = on_cluster.model_copy(update={"partition_check_s": 3.0}), shop_events()
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        load = Load(settings, events[:1000]).start()
        wait_until(lambda: load.sent >= 300, 60, what="some events")
        admin = AdminClient(settings.kafka.client_config())
        grown = settings.topics.partitions + 1
        admin.create_partitions([NewPartitions(settings.topics.clicks, grown)])[settings.topics.clicks].result(30)
        figures = {"refused_after_s": timed(lambda: process.poll() is not None, 60, "the worker to refuse")}
        assert process.returncode == EXIT_PARTITIONS
        log = (tmp_path / "worker.log").read_text()
        assert f"{settings.topics.clicks} has {grown} partitions, not {settings.topics.partitions}" in log
        assert "refusing to run" in log

        again = workers.start(to_env(settings), tmp_path / "again.log")
        assert again.wait(120) == EXIT_PARTITIONS
        assert "refusing to run" in (tmp_path / "again.log").read_text()
        load.wait()
        print("figures:", figures)
    finally:
        workers.stop(process)
