"""Online writes and reads: feature rows to and from the Feast online store (Redis), a
micro-batch at a time."""

from __future__ import annotations

from datetime import UTC, datetime

from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from google.protobuf.timestamp_pb2 import Timestamp

from scorers.views import VIEWS, entity_ttl_days
from shopstream.rows import JOIN_KEYS, latest_per_entity


def _value(kind: str, value) -> ValueProto:
    if kind == "list":
        return ValueProto(string_list_val=StringList(val=value))
    if kind == "int":
        return ValueProto(int64_val=int(value))
    return ValueProto(double_val=float(value))


class OnlineWriter:
    """Writes micro-batches of feature rows to Feast's online store.

    On Redis it writes Feast's own layout (the entity key, the ``_ts:{view}`` field and
    a murmur3 field per feature, made by Feast's helpers) in one pipeline per batch,
    with the entity keys and field names computed once and cached, and gives every key
    a TTL (the longest of its views', ``entity_ttl_days``), so entities that stop appearing leave Redis. Other
    online stores get the provider's ``online_write_batch``, the call under
    ``FeatureStore.write_to_online_store``, whose DataFrame-to-Arrow-to-protobuf
    conversion was a fifth of a worker's time in a profile.
    """

    ENTITY_KEY_CACHE = 200_000  # entity keys kept serialised, about 100 bytes each

    def __init__(self, store: FeatureStore):
        self.store = store
        self._provider = store._get_provider()  # noqa: SLF001 - see the class docstring
        self._views = {name: store.get_feature_view(name) for name in VIEWS}
        self._kinds = {name: list(view.types.values()) for name, view in VIEWS.items()}
        online = self._provider.online_store
        self._redis = online if isinstance(online, RedisOnlineStore) else None
        config = store.config
        self._fields = {name: (f"_ts:{_versioned_fv_name(fv, config)}",
                               [_mmh3(f"{_versioned_fv_name(fv, config)}:{f}") for f in VIEWS[name].features])
                        for name, fv in self._views.items()}
        self._keys: dict[tuple[str, str], bytes] = {}

    def _redis_key(self, join_key: str, entity: str) -> bytes:
        key = self._keys.get((join_key, entity))
        if key is None:
            if len(self._keys) >= self.ENTITY_KEY_CACHE:
                self._keys.clear()
            proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
            key = self._keys[(join_key, entity)] = _redis_key(
                self.store.config.project, proto,
                entity_key_serialization_version=self.store.config.entity_key_serialization_version)
        return key

    def write(self, view_name: str, rows: list[tuple]) -> int:
        """Write the newest row per entity of ``rows``; return how many were written."""
        latest = latest_per_entity(rows)
        if not latest:
            return 0
        if self._redis is not None:
            self._write_redis(view_name, latest)
            return len(latest)
        view = VIEWS[view_name]
        join_key = JOIN_KEYS[view.entity]
        kinds = self._kinds[view_name]
        data = []
        for entity, ts, *values in latest:
            key = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
            features = {name: _value(kind, value)
                        for name, kind, value in zip(view.features, kinds, values, strict=True)}
            data.append((key, features, datetime.fromtimestamp(ts, UTC), None))
        self._provider.online_write_batch(self.store.config, self._views[view_name], data, None)
        return len(latest)

    def _write_redis(self, view_name: str, latest: list[tuple]) -> None:
        view = VIEWS[view_name]
        join_key, ttl = JOIN_KEYS[view.entity], entity_ttl_days(view.entity) * 86_400
        ts_field, fields = self._fields[view_name]
        kinds = self._kinds[view_name]
        client = self._redis._get_client(self.store.config.online_store)  # noqa: SLF001
        stamp = Timestamp()
        with client.pipeline(transaction=False) as pipe:
            for entity, ts, *values in latest:
                key = self._redis_key(join_key, entity)
                stamp.FromDatetime(datetime.fromtimestamp(ts, UTC))  # as Feast stamps it
                mapping = {ts_field: stamp.SerializeToString()}
                for field, kind, value in zip(fields, kinds, values, strict=True):
                    mapping[field] = _value(kind, value).SerializeToString()
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, ttl)
            pipe.execute()


def python_value(value: ValueProto):
    """``feast_value_type_to_python_type`` for the kinds shopstream's views hold (int64,
    double, string list), at a third of its cost: an order reads about 60 values.

    >>> [python_value(v) for v in (ValueProto(int64_val=3), ValueProto(double_val=0.5),
    ...                            ValueProto(string_list_val=StringList(val=["a"])), ValueProto())]
    [3, 0.5, ['a'], None]
    """
    kind = value.WhichOneof("val")
    if kind in ("int64_val", "double_val", "string_val", "int32_val", "float_val", "bool_val"):
        return getattr(value, kind)
    if kind == "string_list_val":
        return list(value.string_list_val.val)
    return feast_value_type_to_python_type(value)  # null, timestamps and the rarer kinds


class OnlineReader:
    """Reads the features of many entities from several views through Feast's provider.

    ``read`` takes rows of join keys (``{"user_id": ..., "terminal_id": ...}``) and returns,
    per row, ``{"view__feature": value}``, the names ``get_online_features`` gives with
    ``full_feature_names``; an entity the store has never seen reads as missing. It skips
    ``get_online_features``' per-call planning, which cost more than the read itself. On
    the Redis online store every view's HMGETs go in one pipeline (one round trip per
    batch instead of one per view), built and decoded by the store's own methods, so the
    keys and values stay Feast's; other online stores are read a view at a time.
    """

    def __init__(self, store: FeatureStore, views: tuple[str, ...]):
        self.store = store
        self._provider = store._get_provider()  # noqa: SLF001 - see OnlineWriter
        self._views = {name: store.get_feature_view(name) for name in views}
        online = self._provider.online_store
        self._redis = online if isinstance(online, RedisOnlineStore) else None

    def _ids(self, rows: list[dict[str, str | None]]) -> dict[str, list[str]]:
        """The distinct entity ids each view must read."""
        ids = {}
        for name in self._views:
            join_key = JOIN_KEYS[VIEWS[name].entity]
            found = sorted({row.get(join_key) for row in rows} - {None, ""})
            if found:
                ids[name] = found
        return ids

    @staticmethod
    def _keys(name: str, ids: list[str]) -> list[EntityKeyProto]:
        join_key = JOIN_KEYS[VIEWS[name].entity]
        return [EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=i)]) for i in ids]

    def _read_views(self, ids: dict[str, list[str]]) -> dict[str, list]:
        """Per view, ``(timestamp, {feature: ValueProto})`` for each of its ids."""
        config = self.store.config
        if self._redis is None:
            return {name: self._provider.online_read(config, self._views[name], self._keys(name, view_ids))
                    for name, view_ids in ids.items()}
        redis, commands, plans = self._redis, [], []
        for name, view_ids in ids.items():
            fv_name = _versioned_fv_name(self._views[name], config)
            features, fields = redis._generate_hset_keys_for_features(  # noqa: SLF001
                self._views[name], None, fv_name_override=fv_name)
            keys = redis._generate_redis_keys_for_entities(config, self._keys(name, view_ids))  # noqa: SLF001
            commands.extend((key, fields) for key in keys)
            plans.append((name, fv_name, features, len(keys)))
        replies = redis._read_hash_fields(config, commands)  # noqa: SLF001 - one round trip
        out, at = {}, 0
        for name, fv_name, features, n in plans:
            out[name] = redis._convert_redis_values_to_protobuf(  # noqa: SLF001
                replies[at:at + n], fv_name, features)
            at += n
        return out

    def read(self, rows: list[dict[str, str | None]]) -> list[dict[str, object]]:
        result: list[dict[str, object]] = [{} for _ in rows]
        ids = self._ids(rows)
        read = self._read_views(ids)
        for name in self._views:
            join_key, features = JOIN_KEYS[VIEWS[name].entity], VIEWS[name].features
            found = dict(zip(ids.get(name, ()), read.get(name, ()), strict=True))
            for row, out in zip(rows, result, strict=True):
                _, values = found.get(row.get(join_key), (None, None))
                for feature in features:
                    value = values.get(feature) if values else None
                    out[f"{name}__{feature}"] = None if value is None else python_value(value)
        return result
