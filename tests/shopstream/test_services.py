"""The local broker's configuration, without starting anything."""

from __future__ import annotations

import base64
from pathlib import Path

from shopstream.services.kafka import _cluster_id, server_properties
from shopstream.settings import Settings


def test_server_properties_follow_settings():
    settings = Settings(kafka={"brokers": "127.0.0.1:19092", "controller_port": 19093},
                        topics={"partitions": 6})
    props = dict(line.split("=", 1) for line in server_properties(settings, Path("/d")).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == "/d"
    assert props["num.partitions"] == "6"
    assert int(props["message.max.bytes"]) == settings.kafka.max_message_bytes


def test_cluster_ids_are_16_random_bytes_in_base64url():
    ids = {_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cluster_id in ids:
        assert len(cluster_id) == 22 and len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    """One random id in 64 starts with ``-``, which the storage tool reads as an option."""
    import uuid

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    assert not _cluster_id().startswith("-")


def test_each_node_of_a_local_cluster_is_a_voter_with_replicated_internal_topics():
    settings = Settings(profile="cluster")
    props = dict(line.split("=", 1) for line in server_properties(settings, Path("/d"), node=2).splitlines()
                 if line)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19192,2@127.0.0.1:19193,3@127.0.0.1:19194"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19093,CONTROLLER://127.0.0.1:19193"
    assert props["offsets.topic.replication.factor"] == props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["unclean.leader.election.enable"] == "false"
    single = dict(line.split("=", 1) for line in server_properties(Settings(), Path("/d")).splitlines() if line)
    assert single["offsets.topic.replication.factor"] == single["min.insync.replicas"] == "1"


def test_each_broker_and_redis_node_has_a_folder_of_its_own(tmp_path):
    from shopstream.services import redis
    from shopstream.services.kafka import KafkaPaths, nodes

    cluster = Settings(profile="cluster", home=tmp_path)
    assert nodes(cluster) == [1, 2, 3]
    assert len({KafkaPaths.of(cluster, n).data for n in nodes(cluster)}) == 3
    assert KafkaPaths.of(Settings(home=tmp_path), 1).data == tmp_path / "kafka" / "data"  # as before
    assert len({redis._node_root(cluster, port) for _, port in cluster.redis.nodes}) == 6
    assert redis._node_root(Settings(home=tmp_path), 6379) == tmp_path / "redis"


def test_feast_talks_to_a_redis_cluster_through_its_seeds():
    from shopstream.featurestore import repo_config

    cluster = repo_config(Settings(profile="cluster")).online_store
    assert cluster.redis_type == "redis_cluster"
    assert cluster.connection_string.startswith("127.0.0.1:17000,127.0.0.1:17001,")
    assert "db=" not in cluster.connection_string  # a cluster has database 0 only
    seeded = repo_config(Settings(redis={"cluster": True, "seeds": "r1:6379,r2:6379"})).online_store
    assert seeded.connection_string.startswith("r1:6379,r2:6379,socket_timeout=")
    single = repo_config(Settings()).online_store
    assert single.redis_type == "redis" and single.connection_string.startswith("127.0.0.1:6379,")
    assert ",db=0" in single.connection_string
