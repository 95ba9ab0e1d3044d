"""Settings come from SHOPSTREAM_* variables, and secrets never show."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from shopstream.settings import Settings, Topics, registry_uri, to_env


def test_nested_environment_variables(monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_KAFKA__BROKERS", "k1:9092,k2:9092")
    monkeypatch.setenv("SHOPSTREAM_TOPICS__ORDERS", "acme.orders")
    monkeypatch.setenv("SHOPSTREAM_TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("SHOPSTREAM_THRESHOLDS__FRAUD_BLOCK", "0.95")
    settings = Settings()
    assert settings.kafka.brokers == "k1:9092,k2:9092"
    assert settings.topics.orders == "acme.orders"
    assert settings.topics.partitions == 12
    assert settings.thresholds.fraud_block == 0.95
    assert settings.topics.clicks == "shop.clicks"  # untouched defaults stay


def test_invalid_values_are_refused(monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_THRESHOLDS__FRAUD_BLOCK", "1.5")
    with pytest.raises(ValueError, match="fraud_block"):
        Settings()


def test_secrets_never_show_in_repr_json_or_logs(monkeypatch, caplog):
    monkeypatch.setenv("SHOPSTREAM_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SHOPSTREAM_REDIS__PASSWORD", "sesame")
    monkeypatch.setenv("SHOPSTREAM_REGISTRY_URI", "https://ml:token42@mlflow.example")
    settings = Settings()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
    for text in (repr(settings), str(settings), settings.model_dump_json(), caplog.text,
                 settings.redis.url()):
        assert "hunter2" not in text and "sesame" not in text and "token42" not in text
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"
    assert registry_uri(settings) == "https://ml:token42@mlflow.example"
    assert "sesame" in settings.redis.url(reveal=True)


def test_client_config_for_a_production_cluster():
    settings = Settings(kafka={"brokers": "b:9093", "security_protocol": "SASL_SSL",
                               "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "shop",
                               "sasl_password": SecretStr("pw"), "ssl_cafile": "/etc/ca.pem"})
    assert settings.kafka.client_config() == {
        "bootstrap.servers": "b:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "shop", "sasl.password": "pw",
        "ssl.ca.location": "/etc/ca.pem",
    }


@pytest.mark.parametrize(
    ("redis", "url"),
    [
        ({}, "redis://127.0.0.1:6379/0"),
        ({"tls": True, "host": "r", "port": 6380, "db": 2}, "rediss://r:6380/2"),
        ({"password": "pw"}, "redis://:**********@127.0.0.1:6379/0"),
        ({"password": "pw", "username": "app"}, "redis://app:**********@127.0.0.1:6379/0"),
    ],
)
def test_redis_url(redis, url):
    assert Settings(redis=redis).redis.url() == url


def test_to_env_recreates_the_settings(monkeypatch):
    settings = Settings(kafka={"sasl_password": SecretStr("pw")}, topics={"orders": "x.orders"})
    for name, value in to_env(settings).items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_every_field_is_documented():
    def undocumented(model, prefix=""):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                yield from undocumented(annotation, f"{prefix}{name}.")
            elif not field.description and name not in {"clicks", "carts", "orders", "order_labels",
                                                        "fraud_scores", "session_recs", "drift"}:
                yield prefix + name

    assert list(undocumented(Settings)) == []


def test_roles_come_comma_separated_and_name_the_consumer_group(monkeypatch):
    from shopstream.settings import ROLES, Settings, group_id, to_env

    assert Settings().roles == ROLES and group_id(Settings()) == "shopstream"
    monkeypatch.setenv("SHOPSTREAM_ROLES", "recs, fraud")
    settings = Settings()
    assert settings.roles == ("recs", "fraud")
    assert group_id(settings) == "shopstream-fraud-recs"  # sorted: the same group either way
    assert to_env(settings)["SHOPSTREAM_ROLES"] == "recs,fraud"
    monkeypatch.setenv("SHOPSTREAM_ROLES", "fraud,scoring")
    with pytest.raises(ValueError, match="features"):
        Settings()


def test_worker_web_server_is_loopback_and_debug_pages_are_off_by_default():
    settings = Settings()
    assert settings.web_host == "127.0.0.1" and settings.debug_pages is False


def test_the_cluster_profile_fills_in_what_is_not_set(monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_PROFILE", "cluster")
    monkeypatch.setenv("SHOPSTREAM_REDIS__PORT", "7000")
    settings = Settings()
    assert settings.kafka.ports == [19092, 19093, 19094]
    assert settings.redis.cluster and settings.redis.port == 7000  # the variable wins
    assert [port for _, port in settings.redis.nodes] == list(range(7000, 7006))
    assert (settings.topics.replication_factor, settings.topics.min_insync_replicas) == (3, 2)
    assert settings.home == Path(".shopstream/cluster")
    given = Settings(profile="cluster", kafka={"brokers": "h:1,h:2,h:3"}, topics=Topics(partitions=8))
    assert given.kafka.brokers == "h:1,h:2,h:3" and given.kafka.controller_port == 19192
    assert given.topics.partitions == 8 and given.topics.replication_factor == 3
    monkeypatch.delenv("SHOPSTREAM_PROFILE")
    assert Settings().kafka.ports == [9092] and not Settings().redis.cluster
    for name, value in to_env(settings).items():  # a child process gets the same cluster
        monkeypatch.setenv(name, value)
    assert Settings() == settings
