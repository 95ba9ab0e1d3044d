"""The Feast feature store of shopstream, configured from settings.

``feature_repo/feature_store.yaml`` serves the ``feast`` CLI with the local defaults;
workers, trainers and tests call ``feature_store(settings)``, which builds the same
configuration from ``SHOPSTREAM_*`` settings (Redis address and password, where the
registry and the offline log live) and registers the definitions when asked.

Feast is imported by the functions that build its objects, not here: it takes seconds
to import, and a worker needs only the paths (``offline_root``) to start.
"""

from __future__ import annotations

import contextvars
import runpy
from pathlib import Path
from typing import TYPE_CHECKING

from shopstream.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore, RepoConfig

ROOT = Path(__file__).resolve().parent.parent
_offline_root: contextvars.ContextVar[Path | None] = contextvars.ContextVar("offline_root",
                                                                           default=None)


def home(settings: Settings) -> Path:
    """The settings' home; a relative one is taken from the project root."""
    return settings.home if settings.home.is_absolute() else (ROOT / settings.home).resolve()


def offline_root(settings: Settings | None = None) -> Path:
    """Where the append-only offline log lives."""
    override = _offline_root.get()
    if override is not None and settings is None:
        return override
    return home(settings or Settings()) / "offline"


def repo_path(settings: Settings) -> Path:
    """The feature repository folder."""
    path = settings.feature_repo
    return path if path.is_absolute() else ROOT / path


def repo_config(settings: Settings) -> RepoConfig:
    """Feast's configuration for ``settings``: Redis online; offline, DuckDB over the parquet log.

    Feast's dask file store took minutes for a join that DuckDB does in seconds, and
    it dropped entity rows that DuckDB keeps (see ``trainers/offline.py``).
    """
    redis = settings.redis
    nodes = ",".join(f"{host}:{port}" for host, port in redis.seed_nodes) if redis.cluster \
        else f"{redis.host}:{redis.port}"  # a cluster client finds every node from any seed
    connection = (f"{nodes},socket_timeout={redis.socket_timeout_s},"
                  f"socket_connect_timeout={redis.connect_timeout_s}")
    if not redis.cluster:
        connection += f",db={redis.db}"  # a cluster has only database 0
    if redis.password is not None:
        connection += f",password={redis.password.get_secret_value()}"
    if redis.username:
        connection += f",username={redis.username}"
    if redis.tls:
        connection += ",ssl=true"
    from feast import RepoConfig  # Feast takes seconds to import; paths above need none of it

    registry = home(settings) / "feast" / "registry.db"
    registry.parent.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project="shopstream",
        provider="local",
        registry=str(registry),
        # Each entity has one writer (the partition that owns it), writing in order, so the
        # read-before-write timestamp check is not needed; it also drops a late event's
        # row, which carries the same event time as the row it corrects.
        online_store={"type": "redis", "connection_string": connection, "skip_dedup": True,
                      "redis_type": "redis_cluster" if redis.cluster else "redis"},
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=repo_path(settings),
    )


def definitions(settings: Settings) -> list:
    """The entities, views and services of ``feature_repo``, with this settings' paths."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    token = _offline_root.set(offline_root(settings))
    try:
        namespace = runpy.run_path(str(repo_path(settings) / "shop_features.py"))
    finally:
        _offline_root.reset(token)
    kinds = (Entity, FeatureView, FeatureService, DataSource)
    return [value for value in namespace.values() if isinstance(value, kinds)]


def feature_store(settings: Settings, *, apply: bool = False) -> FeatureStore:
    """A ``FeatureStore`` for ``settings``; ``apply`` registers the definitions first."""
    from feast import FeatureStore
    from filelock import FileLock

    config = repo_config(settings)
    store = FeatureStore(config=config)
    if apply:
        # Feast rewrites its registry file in place (truncate, then write): two applies at
        # once, from two workers of a host or two threads of one, can leave a file that
        # no longer parses. The lock beside the file takes them in turn.
        with FileLock(f"{config.registry.path}.lock"):
            store.apply(definitions(settings))
    return store
