"""Runtime settings for every shopstream process, read from ``SHOPSTREAM_*`` variables.

One pydantic-settings model covers brokers, Redis, topics, paths and thresholds. Nested
groups use ``__`` in variable names, for example ``SHOPSTREAM_TOPICS__ORDERS=acme.orders``
or ``SHOPSTREAM_KAFKA__SASL_PASSWORD=...``. An optional ``.env`` file in the working
directory is read too. Secrets are ``SecretStr``: they print as ``**********``.

Run ``python -m shopstream.settings`` to print the settings in effect.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024


class KafkaSettings(BaseModel):
    """How to reach Kafka, and how the local single-node broker is run."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    brokers: str = "127.0.0.1:9092"
    """Comma-separated bootstrap servers."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """Protocol to talk to the brokers; production clusters use SASL_SSL."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism, when the protocol is SASL_*."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password; never logged."""
    ssl_cafile: Path | None = None
    """CA bundle that signed the brokers' certificates."""
    ssl_certfile: Path | None = None
    """Client certificate, for mutual TLS."""
    ssl_keyfile: Path | None = None
    """Client private key, for mutual TLS."""
    max_message_bytes: int = 16 * MiB
    """Largest record the broker, producers and the dead-letter topic accept. It is larger
    than ``limits.max_event_bytes`` so that an oversized event still fits, whole, in its
    dead letter."""
    linger_ms: float = Field(2.0, ge=0)
    """How long a worker's producer waits for more records before it sends a batch. An
    agent sends a micro-batch's records at once and waits for them, so this adds to each
    micro-batch's time and lets one request carry them all."""
    batch_bytes: int = Field(1024 * 1024, ge=1024)
    """Most bytes of records a worker's producer sends to one partition in one request."""

    # The local broker started by `shopstream services up`.
    version: str = "4.1.1"
    """Apache Kafka version whose jars Maven resolves for the local broker."""
    controller_port: int = 9093
    """Port of the local KRaft controller listener. With several local brokers (``brokers``
    lists one address per node, ``shopstream services up --cluster``), node ``i`` (from 0)
    listens for the controller quorum on ``controller_port + i``."""
    heap: str = "512m"
    """Maximum Java heap of the local broker."""

    def client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) settings for these brokers, secrets included."""
        config = {"bootstrap.servers": self.brokers, "security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        config.update({key: str(value) for key, value in optional.items() if value is not None})
        return config

    @property
    def port(self) -> int:
        """Port of the first bootstrap server, used by the local broker."""
        return self.ports[0]

    @property
    def ports(self) -> list[int]:
        """Port of each bootstrap server: one local broker per address."""
        return [int(address.strip().rsplit(":", 1)[1]) for address in self.brokers.split(",")]


class RedisSettings(BaseModel):
    """How to reach Redis, the Feast online store."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Redis host."""
    port: int = 6379
    """Redis port; the local server listens here too."""
    db: int = 0
    """Database number."""
    password: SecretStr | None = None
    """Password (``requirepass`` or an ACL user's); never logged."""
    username: str | None = None
    """ACL user name, for Redis 6+ ACLs."""
    tls: bool = False
    """Connect with TLS (``rediss://``)."""
    socket_timeout_s: float = Field(5.0, gt=0)
    """A read or write that Redis does not answer within this many seconds fails (and is
    retried), instead of blocking the worker on a hung server."""
    connect_timeout_s: float = Field(2.0, gt=0)
    """A connection that Redis does not accept within this many seconds fails."""
    cluster: bool = False
    """Redis Cluster: ``host:port`` is one of its nodes (any serves to discover the rest),
    and Feast uses ``redis_type: redis_cluster``. The local cluster of ``shopstream
    services up --cluster`` runs ``cluster_nodes`` servers on ``port``, ``port + 1``, ..."""
    cluster_nodes: int = Field(6, ge=3)
    """Servers of the local Redis Cluster: masters and their replicas."""
    seeds: str = ""
    """Comma-separated ``host:port`` of cluster nodes that clients discover the cluster
    from (any one that answers will do); default: ``host:port`` and the other local nodes."""
    cluster_replicas: int = Field(1, ge=0)
    """Replicas per master in the local Redis Cluster (6 nodes, 1 replica: 3 masters)."""
    cluster_node_timeout_ms: int = Field(5000, ge=100)
    """How long a cluster node may not answer before its replica takes over (Redis's
    ``cluster-node-timeout``; its default is 15 s)."""

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """The addresses of the local servers: one, or each node of the local cluster."""
        count = self.cluster_nodes if self.cluster else 1
        return [(self.host, self.port + i) for i in range(count)]

    @property
    def seed_nodes(self) -> list[tuple[str, int]]:
        """Where clients of a cluster start: ``seeds``, or every local node."""
        if not self.seeds:
            return self.nodes
        return [(address.rsplit(":", 1)[0].strip(), int(address.rsplit(":", 1)[1]))
                for address in self.seeds.split(",")]

    def client(self, **options):
        """A redis-py client: ``RedisCluster`` for a cluster (it follows slots, redirects and
        failovers), else ``Redis`` on ``db``. ``options`` go to the client."""
        import redis

        common = {"password": self.password.get_secret_value() if self.password else None,
                  "username": self.username, "ssl": self.tls, "socket_timeout": self.socket_timeout_s,
                  "socket_connect_timeout": self.connect_timeout_s, **options}
        if self.cluster:
            from redis.cluster import ClusterNode

            return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.seed_nodes], **common)
        return redis.Redis(host=self.host, port=self.port, db=self.db, **common)

    def url(self, *, reveal: bool = False) -> str:
        """The connection URL; the password is masked unless ``reveal`` is set."""
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            secret = self.password.get_secret_value() if reveal else "**********"
            auth = f"{self.username or ''}:{secret}@"
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"


class Topics(BaseModel):
    """Topic names. Inputs come from shops, outputs go to downstream services."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    clicks: str = "shop.clicks"
    carts: str = "shop.carts"
    orders: str = "shop.orders"
    order_labels: str = "shop.order-labels"
    fraud_scores: str = "scores.fraud"
    session_recs: str = "recs.session"
    fraud_shadow: str = "scores.fraud.shadow"
    """A shadow challenger's fraud scores (``shopstream models challenge --mode shadow``)."""
    recs_shadow: str = "recs.session.shadow"
    """A shadow challenger's recommendations."""
    drift: str = "signals.drift"
    dlq: str = "shop.dlq"
    """Dead letters: every input record that could not be processed, with its origin."""
    partitions: int = 4
    """Partitions of each topic created on start-up; existing topics are left alone."""
    replication_factor: int = 1
    """Replication factor of created topics; 3 on a production cluster."""
    min_insync_replicas: int = Field(1, ge=1)
    """Replicas that must have a record before a producer with ``acks=all`` (every
    shopstream producer) is told it is written; 2 with a replication factor of 3, so that
    one broker can be lost without losing an acknowledged record or stopping writes."""

    def inputs(self) -> dict[str, str]:
        """Input topics by event kind."""
        return {
            "click": self.clicks,
            "cart": self.carts,
            "order": self.orders,
            "order_label": self.order_labels,
        }

    def outputs(self) -> dict[str, str]:
        """Output topics by output kind."""
        return {"fraud_score": self.fraud_scores, "session_recs": self.session_recs,
                "drift": self.drift, "fraud_shadow": self.fraud_shadow, "recs_shadow": self.recs_shadow}

    def all(self) -> list[str]:
        """Every topic shopstream reads or writes."""
        return [*self.inputs().values(), *self.outputs().values(), self.dlq]


class Limits(BaseModel):
    """What an input event may be before it is dead-lettered."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    max_event_bytes: int = 1 * MiB
    """Events larger than this are dead-lettered without being parsed."""
    max_future_skew_s: float = 300.0
    """Events stamped more than this many seconds after the worker's clock are
    dead-lettered: a clock that far ahead would corrupt event-time windows."""
    min_ts: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    """Events stamped before this are dead-lettered (replays of older history lower it)."""
    max_json_depth: int = Field(8, ge=2)
    """Events whose JSON nests deeper than this are dead-lettered (an order is 4 deep)."""
    max_string_chars: int = Field(4096, ge=256)
    """Events with a longer string, in any field or key, are dead-lettered."""

    def parse_options(self) -> dict:
        """Keyword arguments of ``shopstream.events.parse_event`` for these limits."""
        return {"max_bytes": self.max_event_bytes, "min_ts": self.min_ts,
                "max_future_skew": timedelta(seconds=self.max_future_skew_s),
                "max_depth": self.max_json_depth, "max_string": self.max_string_chars}

    def dead_letter_bytes(self, max_message_bytes: int) -> int:
        """The most bytes a dead letter's value and key take together, so that its record,
        with the batch's own overhead, fits under ``max_message_bytes``."""
        return max_message_bytes - 16 * 1024


class Thresholds(BaseModel):
    """Decision thresholds on the fraud probability."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    fraud_review: float = Field(0.5, ge=0, le=1)
    """At or above this probability an order goes to manual review."""
    fraud_block: float = Field(0.9, ge=0, le=1)
    """At or above this probability an order is blocked."""


class ScoringSettings(BaseModel):
    """How workers score orders and pick up new models."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    enabled: bool = True
    """Score every order on ``scores.fraud``."""
    batch_rows: int = Field(256, ge=1)
    """A scoring micro-batch holds at most this many orders. Batches are sized by arrival:
    one is handed over as soon as no more orders wait, so a lone order is scored at once
    and a backlog is scored in batches as large as this ..."""
    batch_ms: float = Field(5.0, gt=0)
    """... and a batch waits at most this many milliseconds for its queue to run dry."""
    model_name: str = "shopstream-fraud"
    """Registered model name in the MLflow registry."""
    reload_s: float = Field(10.0, gt=0)
    """How often a worker checks the registry for a new champion."""
    top_reasons: int = Field(3, ge=0)
    """How many reasons a score carries."""
    reasons_for: Literal["flagged", "all"] = "flagged"
    """Which scores carry their reasons: ``flagged`` (review and block) or ``all``. A
    reason costs a backward pass through the model, two thirds of its time; an allowed
    order's reasons have no reader."""
    read_first_s: float = Field(5.0, ge=0)
    """In a worker that scores and computes features, an order's own feature updates wait
    at most this long for the order to be scored, so that it is scored on the features
    from just before it whatever the scorer's lag (``streams.agents.ReadFirst``). 0
    switches the wait off: the updates go at once, and a scorer behind them reads them."""
    torch_threads: int = Field(1, ge=1)
    """Intra-op threads for inference in a worker. Micro-batches are small, and more
    threads spin against the event loop for the same cores (set once per process)."""
    decision_days: float = Field(7.0, gt=0)
    """How long an order id keeps its first decision: the same order sent again within it
    gets that decision again, not a new score (``shopstream.decisions``). Redis holds about
    0.5 KB per order decided in this time."""


class RecsSettings(BaseModel):
    """How workers recommend after clicks and cart changes."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    enabled: bool = True
    """Send recommendations on ``recs.session`` after every click and cart change."""
    batch_rows: int = Field(256, ge=1)
    """A micro-batch holds at most this many events; batches are sized by arrival, as
    scoring's are ..."""
    batch_ms: float = Field(5.0, gt=0)
    """... and a batch waits at most this many milliseconds for its queue to run dry."""
    k: int = Field(20, ge=1, le=200)
    """How many items a recommendation carries."""
    model_name: str = "shopstream-recs"
    """Registered model name of the recommender bundle in the MLflow registry."""
    reload_s: float = Field(10.0, gt=0)
    """How often a worker checks the registry for a new champion."""
    session_items: int = Field(100, ge=1)
    """The newest items of a session that its state keeps."""
    rules_clicks: int = Field(50_000, ge=1)
    """Before there is a champion, a worker recommends popular items among this many of
    its newest clicks (``scorers.neighbours.RecentPopularity``) ..."""
    rules_refit_s: float = Field(10.0, gt=0)
    """... refitted this often once it knows ``2 k`` items (at every batch before)."""
    session_ttl_s: float = Field(86_400.0, gt=0)
    """A session's state is deleted this many seconds of event time after its last click
    or cart change."""
    exclude_cart: bool = True
    """Leave out items that are in the cart."""
    exclude_bought: bool = True
    """Leave out items the session has bought."""
    exclude_viewed: bool = False
    """Leave out items the session has viewed (off: shoppers come back to items)."""


class FeatureSettings(BaseModel):
    """How workers compute features and write them out."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_rows: int = Field(2000, ge=1)
    """A micro-batch closes after this many records ..."""
    batch_ms: float = Field(100.0, gt=0)
    """... or after this many milliseconds, whichever comes first. Online writes and
    offline log files happen once per micro-batch, which bounds feature freshness."""
    lateness_s: float = Field(300.0, ge=0)
    """Events up to this many seconds older than the newest event of their entity still
    count in their window; older ones are counted as late and ignored."""
    online: bool = True
    """Write features to the online store."""
    offline: bool = True
    """Append features and raw events to the offline log."""
    offline_fsync: bool = True
    """Make each offline file durable (fsync) before the offsets it holds are committed.
    Off trades a power cut's worth of offline rows for write speed."""
    offline_keep_days: float = Field(31.0, gt=0)
    """Days the offline log keeps a file, by the day it was written: older files are
    removed by the workers' upkeep (``offline_maintain_s``). Trainers read at most this far back."""
    offline_maintain_s: float = Field(3600.0, ge=0)
    """How often one worker of a group removes expired offline files and merges each
    earlier day's files into one (``shopstream.offline.OfflineLog.maintain``); 0: never
    (run ``shopstream offline compact`` by hand instead)."""
    order_state_days: float = Field(120.0, gt=0)
    """How long, in event time after its last update, an order's state waits for its
    label (card networks allow chargebacks up to 120 days after a payment). Other
    entities' states expire after the longest TTL of their feature views plus the
    allowed lateness, when their features would have expired anyway."""
    expiry_sweep_s: float = Field(30.0, gt=0)
    """How often, in wall-clock seconds, a worker deletes the states that have expired
    (one tombstone each on the changelog, so compaction drops them too)."""
    batch_update_bytes: int = Field(256 * 1024, ge=1024)
    """Bytes of entity updates (about 50 each) the feature agent applies at once: their
    entities' states are decoded together, so this bounds the states held during a batch,
    over ``live_states``. A batch of update records larger than this is applied in runs."""
    state_store: Literal["rocksdb", "memory"] = "rocksdb"
    """Where a worker keeps the entity states it owns: ``rocksdb`` on disk under ``home``
    (one RocksDB database per partition, through rocksdict, memory bounded by
    ``rocksdb_memory_mb``), or ``memory`` (every state in the heap; rebuilt from the whole
    changelog at each start)."""
    rocksdb_memory_mb: int = Field(64, ge=4)
    """Block cache and write buffers of one state table on RocksDB, over all its partitions."""
    live_states: int = Field(100_000, ge=100)
    """Entity states a worker holds decoded in memory (about 6 KB each): past it, the one
    used longest ago is dropped, and decoded again from the table when its entity comes
    back. With ``state_store = "rocksdb"`` this and ``rocksdb_memory_mb`` are the worker's
    state memory budget, whatever the number of entities (docs/capacity.md, "Memory")."""
    max_distinct: int = Field(1_000, ge=1, le=100_000)
    """Distinct values that one entity keeps per distinct-count feature (a user's devices
    and IPs in 24 hours, the users of an instrument, device or IP): past it the value seen
    longest ago is forgotten and the count stays at this number. Bounds the cost of an
    update and the size of a state (docs/operations.md, "What is bounded")."""
    max_cart_items: int = Field(200, ge=1, le=100_000)
    """Items that one session's cart keeps: past it, the item changed longest ago leaves
    the cart."""
    state_flush_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Bytes of encoded states (a few hundred each, with their keys and the cache's own
    cost) the feature agent holds unwritten: a
    micro-batch's changed states are written once, after all its runs, or as soon as they
    reach this size, which bounds the memory they hold whatever a batch holds."""
    state_flush_s: float = Field(0.0, ge=0)
    """0 (the default) writes the states a micro-batch changed before it is acknowledged.
    More holds them in a write-back cache for up to this many seconds, so that an entity
    changed by many batches is written to the changelog once, and acknowledges their
    records only once they are written. It saves changelog records where entities change
    many times a second, and costs feature freshness (docs/operations.md, "The write-back
    cache")."""


def _comma_list(value: object) -> object:
    return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value


class DriftSettings(BaseModel):
    """How the ``drift`` role watches the serving models (docs/drift.md)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    enabled: bool = True
    """Scoring workers send what they scored (inputs, score, decision) to the drift role's
    internal topic, ``{app_id}-drift-inputs``."""
    ert_events: float = Field(10_000.0, gt=0)
    """Expected scored orders between two false alarms of the calibrated score test on an
    unchanged stream."""
    window: int = Field(1_000, ge=50)
    """Values per window of the windowed distances (PSI, Jensen-Shannon) and estimates."""
    delta: float = Field(0.002, gt=0, lt=1)
    """ADWIN's confidence, shared by the inputs watched together (Bonferroni)."""
    skip_inputs: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)] = (
        "hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "is_weekend", "is_night")
    """Model inputs not watched one by one (comma-separated): the calendar's. A window of
    orders spans hours or days, so their mix follows the clock, not the traffic, and
    watching them would alarm every night and every weekend. They still count in the
    inputs-together (PCA) error."""
    label_wait_h: float = Field(72.0, ge=0)
    """Labels reach the error detector in the order their orders happened, once the labels'
    event time is this far past the order: the wait lets later labels of earlier orders in."""
    pending_orders: int = Field(200_000, ge=1)
    """Scored orders remembered for their labels to grade, and sessions' recommendation lists
    for their next click; the oldest are forgotten first."""
    list_wait_s: float = Field(3_600.0, gt=0)
    """Seconds of event time a session's recommendation list waits for the session's next
    click to grade it; a session quiet that long has ended, and its list is forgotten."""
    warm_up: int = Field(5_000, ge=0)
    """Inputs of the drift role's topic (scored orders, labels, answered lists) read again,
    without signals, before the first record a starting worker takes from a partition:
    its watches then start where the last worker's stood instead of empty (0: start
    empty)."""
    cooldown_h: float = Field(24.0, ge=0)
    """At most one retrain triggered by drift per model in this many hours of event time."""
    data_growth: float = Field(0.10, ge=0)
    """A triggered retrain needs this much more offline data than the champion trained on."""
    input_share: float = Field(0.3, gt=0, le=1)
    """Score drift triggers a retrain together with drift in this share of the most
    important inputs."""
    recent_h: float = Field(24.0, gt=0)
    """Drift signals call for a retrain together only while their windows end within this
    many hours of event time of the newest."""


Role = Literal["features", "fraud", "recs", "drift"]
ROLES: tuple[Role, ...] = ("features", "fraud", "recs", "drift")
"""What a worker can do: ``features`` (the input agents, entity state, online and offline
feature writes), ``fraud`` (score orders), ``recs`` (session recommendations) and
``drift`` (watch what the models see and get wrong, ``signals.drift``)."""


class ChallengeSettings(BaseModel):
    """When the online evidence promotes a challenger (``shopstream models promote
    --from-online``, once or ``--every`` so often: docs/challengers.md)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    confidence: float = Field(0.95, ge=0.5, lt=1)
    """Confidence of the interval that must exclude no difference."""
    min_graded: int = Field(500, ge=1)
    """Labelled orders or graded lists on the thinner side (credited clicks when
    interleaving) before a verdict can promote."""
    fraud_metric: Literal["ap", "auc"] = "ap"
    """The measure that decides a fraud challenge."""


CLUSTER_PROFILE = {
    "kafka": {"brokers": "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094", "controller_port": 19192},
    "redis": {"port": 17000, "cluster": True},
    "topics": {"replication_factor": 3, "min_insync_replicas": 2},
    "home": ".shopstream/cluster",
}
"""What ``SHOPSTREAM_PROFILE=cluster`` (``shopstream services up --cluster``) changes:
three local Kafka brokers with replicated topics, a Redis Cluster of six nodes, and a home
of its own. Anything set explicitly wins over the profile."""


def _with_profile(data: dict, profile: dict) -> dict:
    """``data`` with ``profile``'s values where ``data`` leaves them unset."""
    data = dict(data)
    for key, value in profile.items():
        given = data.get(key)
        if not isinstance(value, dict):
            data.setdefault(key, value)
        elif given is None:
            data[key] = dict(value)
        elif isinstance(given, BaseModel):
            unset = {name: v for name, v in value.items() if name not in given.model_fields_set}
            data[key] = given.model_copy(update=unset)
        else:
            data[key] = {**value, **given}
    return data


class Settings(BaseSettings):
    """Everything a shopstream process needs to know about its surroundings."""

    model_config = SettingsConfigDict(
        env_prefix="SHOPSTREAM_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        use_attribute_docstrings=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: Topics = Topics()
    limits: Limits = Limits()
    thresholds: Thresholds = Thresholds()
    features: FeatureSettings = FeatureSettings()
    scoring: ScoringSettings = ScoringSettings()
    recs: RecsSettings = RecsSettings()
    drift: DriftSettings = DriftSettings()
    challenge: ChallengeSettings = ChallengeSettings()

    profile: Literal["single", "cluster"] = "single"
    """``single``: one local broker and one Redis (the default). ``cluster``: three local
    brokers and a Redis Cluster (``CLUSTER_PROFILE``), for ``services up --cluster``."""

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data):
        if isinstance(data, dict) and data.get("profile") == "cluster":
            return _with_profile(data, CLUSTER_PROFILE)
        return data

    app_id: str = "shopstream"
    """Faust application id: the consumer group and the prefix of changelog topics."""
    roles: Annotated[tuple[Role, ...], NoDecode, BeforeValidator(_comma_list)] = ROLES
    """What this worker does, comma-separated (``SHOPSTREAM_ROLES=fraud``). A worker with
    fewer than all roles joins its own consumer group, ``{app_id}-{roles}``, so scoring can
    run in processes of its own, apart from the feature workers it shares the store with."""
    web_port: int = 6066
    """Port of the worker's web server (``/health`` and ``/metrics``)."""
    prometheus_port: int = 9090
    """Port of the local Prometheus that ``shopstream services monitor`` starts (loopback)."""
    web_host: str = "127.0.0.1"
    """Address the worker's web server binds: loopback by default; ``0.0.0.0`` in a
    container whose port is published, behind the network's own controls."""
    debug_pages: bool = False
    """Serve ``/debug/tasks`` and ``/debug/consumer`` (await chains and commit books, for
    a stalled worker). Off by default: they reveal internals to whoever reaches the port."""
    sink_retry_s: float = Field(300.0, gt=0)
    """How long a worker retries a sink (Redis, the offline log) that keeps failing with
    errors that can pass (connection lost, timeout, full disk) before it exits with
    status 75 so that its partitions are read again elsewhere. Nothing is acknowledged
    meanwhile, and readiness (``/health``) fails."""
    commit_check_s: float = Field(10.0, gt=0)
    """How often a worker checks for a partition whose commits are held back by records
    read but never acknowledged; one held back for two checks in a row is read again."""
    partition_check_s: float = Field(30.0, gt=0)
    """How often a worker checks that no keyed topic has gained partitions; one that has
    makes it exit with status 78 (docs/cluster.md, "Adding partitions")."""
    home: Path = Path(".shopstream")
    """Folder for local state: broker and Redis data, logs, worker tables, caches."""
    cache: Path = Path(".cache")
    """Folder for downloads that can be rebuilt, such as the Kafka broker jars."""
    feature_repo: Path = Path("feature_repo")
    """The Feast feature repository."""
    internal_key: SecretStr | None = None
    """The secret that signs every record workers write for themselves (entity updates,
    drift inputs, session orders, state changelogs; ``shopstream.signing``): at least 16
    characters, the same in every worker of a deployment. Required on a secured cluster
    (``kafka.security_protocol`` other than PLAINTEXT); on a plaintext development broker a
    fixed development key is used instead, and the worker says so."""
    allow_undigested_models: bool = False
    """Load registered model versions that carry no SHA-256 tag (registered by hand, not by
    shopstream). Off: such a version is refused, because nothing then shows that the file
    torch, LightGBM or faiss would parse is the file that was registered."""
    registry_uri: SecretStr | None = None
    """MLflow tracking and model-registry URI; by default a sqlite file in ``home``, with
    artifacts in ``home/mlartifacts``. Set an ``http(s)://`` tracking server in production.
    A secret: such URIs often carry credentials (``https://user:token@...``)."""
    log_level: str = "INFO"
    """Log level of workers and commands."""
    gc_threshold: int = Field(50_000, ge=0)
    """Allocations between two young-generation collections of Python's cycle collector in
    a worker (Python's default is 700). A worker holds hundreds of thousands of long-lived
    entity states, and with the default every few hundred new objects trigger a
    collection that, as they pile up, scans more and more of them (docs/benchmarks.md,
    ``bench/profile_core.py --gc``). 0 keeps Python's default."""
    allow_untested_faust: bool = False
    """Run a worker on a faust-streaming release that shopstream's consumer is not tested
    with (``streams.commits.TESTED_FAUST``). It overrides Faust's commit bookkeeping, which
    a release may change; without this a worker on another release refuses to start."""


def registry_uri(settings: Settings) -> str:
    """The MLflow tracking URI of ``settings``."""
    if settings.registry_uri is not None:
        return settings.registry_uri.get_secret_value()
    return f"sqlite:///{settings.home.resolve() / 'mlflow.db'}"


DEVELOPMENT_KEY = "shopstream-development-key-not-secret"


def internal_key(settings: Settings) -> bytes:
    """The key that signs internal records: ``internal_key``, or on a plaintext broker the
    development key. A secured cluster without one is refused (``ValueError``): a key
    known to all is no signature.

    >>> internal_key(Settings(kafka={"security_protocol": "SASL_SSL"}))
    Traceback (most recent call last):
    ...
    ValueError: SHOPSTREAM_INTERNAL_KEY is not set: a cluster reached over SASL_SSL needs a secret of its own to sign internal records (docs/operations.md, "Trust boundary")
    """
    if settings.internal_key is not None:
        return settings.internal_key.get_secret_value().encode()
    if settings.kafka.security_protocol != "PLAINTEXT":
        raise ValueError(f"SHOPSTREAM_INTERNAL_KEY is not set: a cluster reached over "
                         f"{settings.kafka.security_protocol} needs a secret of its own to sign internal "
                         f"records (docs/operations.md, \"Trust boundary\")")
    return DEVELOPMENT_KEY.encode()


def group_id(settings: Settings) -> str:
    """The worker's Faust app id and consumer group: ``app_id``, or ``app_id-roles`` for a
    worker that does not do everything.

    >>> group_id(Settings(roles="fraud")), group_id(Settings())
    ('shopstream-fraud', 'shopstream')
    """
    if set(settings.roles) == set(ROLES):
        return settings.app_id
    return "-".join([settings.app_id, *sorted(set(settings.roles))])


def to_env(settings: Settings) -> dict[str, str]:
    """``SHOPSTREAM_*`` variables that recreate ``settings`` in a child process.

    Secrets are revealed, so the result must only be passed to a process's environment.
    """
    env: dict[str, str] = {}

    def flatten(prefix: str, value: object) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                flatten(f"{prefix}__{name.upper()}" if prefix else name.upper(), getattr(value, name))
        elif value is not None:
            secret = value.get_secret_value() if isinstance(value, SecretStr) else value
            env[f"SHOPSTREAM_{prefix}"] = ",".join(secret) if isinstance(secret, tuple) else str(secret)

    flatten("", settings)
    return env


_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")


def redact(text: str, settings: Settings | None = None) -> str:
    """``text`` without credentials, for pages and logs that others read: the user and
    password of every URL in it, and the value of every secret of ``settings`` (an MLflow
    error quotes the tracking URI whole, ``https://user:token@host``).

    >>> redact("cannot reach https://ops:s3cr3t@mlflow.shop:5000/api (refused)")
    'cannot reach https://***@mlflow.shop:5000/api (refused)'
    >>> redact("auth failed for s3cr3t", Settings(kafka={"sasl_password": "s3cr3t"}))
    'auth failed for ***'
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in _secrets(settings) if settings is not None else ():
        text = text.replace(secret, "***")
    return text


def _secrets(value: object) -> list[str]:
    """The values of every ``SecretStr`` in a settings model, longest first."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found += _secrets(getattr(value, name))
    elif isinstance(value, SecretStr) and value.get_secret_value():
        found.append(value.get_secret_value())
    return sorted(found, key=len, reverse=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()


def main() -> None:
    """Print the settings in effect, secrets masked."""
    print(Settings().model_dump_json(indent=2))


if __name__ == "__main__":
    main()
