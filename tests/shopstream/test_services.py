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
