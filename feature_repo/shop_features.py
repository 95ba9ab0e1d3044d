"""shopstream's features, as Feast sees them.

The workers compute every feature in stream (see ``scorers/views.py``, where the
columns of each view are defined once) and write them twice: to the Redis online store
for scoring, and to an append-only parquet log that the file sources below read for
training. Each view therefore has a push source, used for online writes, backed by a
file source over its log.

Run ``feast apply`` in this folder to register it, and ``python walkthrough.py`` for
the round trip: apply, push, online read, historical read.
"""

import logging
from datetime import timedelta

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Project,
    PushSource,
    ValueType,
)
from feast.data_format import ParquetFormat
from feast.types import Array, Float64, Int64, String

from scorers.views import VIEWS
from shopstream.featurestore import offline_root

OFFLINE = offline_root()
# Feast checks every file source's path when the repo is applied. Before a worker has
# written a view, its folder is empty, and Feast warned "Could not validate FileSource
# path" once per view: nothing to act on, as the log fills when workers run.
logging.getLogger("feast.infra.offline_stores.file_source").setLevel(logging.ERROR)

project = Project(name="shopstream", description="Streaming features and scores for an online shop.")


def _schema(view_name):
    """Feast fields of a view: counts are integers, lists hold item ids, the rest floats."""
    dtypes = {"list": Array(String), "int": Int64, "float": Float64}
    return [Field(name=name, dtype=dtypes[kind]) for name, kind in VIEWS[view_name].types.items()]


def _sources(view_name):
    """The file source over a view's offline log, and the push source for online writes."""
    batch = FileSource(
        name=f"{view_name}_source",
        path=str(OFFLINE / view_name / "*.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    return batch, PushSource(name=f"{view_name}_push_source", batch_source=batch)


# A shopper, signed in or known by a stable cookie id.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

# A browsing session of one user.
session = Entity(name="session", join_keys=["session_id"], value_type=ValueType.STRING)

# A product in the catalogue.
item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)

# A payment instrument, known only by its fingerprint (never the card number).
instrument = Entity(name="instrument", join_keys=["instrument_id"], value_type=ValueType.STRING)

# A device fingerprint.
device = Entity(name="device", join_keys=["device_id"], value_type=ValueType.STRING)

# A client IP address.
ip = Entity(name="ip", join_keys=["ip"], value_type=ValueType.STRING)

# A merchant or point-of-sale terminal.
terminal = Entity(name="terminal", join_keys=["terminal_id"], value_type=ValueType.STRING)


# How active a user is: clicks, cart changes and orders over 10 minutes to 7 days, how
# many devices and IPs they used in the last day, and how old the account is.
user_activity_source, user_activity_push_source = _sources("user_activity")
user_activity_fv = FeatureView(
    name="user_activity", entities=[user], ttl=timedelta(days=VIEWS["user_activity"].ttl_days),
    schema=_schema("user_activity"), source=user_activity_push_source, online=True,
)

# What a user usually spends: order amount count, sum, mean and std over 1, 7 and 30
# days, and the seconds since their previous order.
user_orders_source, user_orders_push_source = _sources("user_orders")
user_orders_fv = FeatureView(
    name="user_orders", entities=[user], ttl=timedelta(days=VIEWS["user_orders"].ttl_days),
    schema=_schema("user_orders"), source=user_orders_push_source, online=True,
)

# Velocity of a payment instrument: its orders over 10 minutes to a day, and how many
# users paid with it in the last day. Card testing shows up here first.
instrument_velocity_source, instrument_velocity_push_source = _sources("instrument_velocity")
instrument_velocity_fv = FeatureView(
    name="instrument_velocity", entities=[instrument],
    ttl=timedelta(days=VIEWS["instrument_velocity"].ttl_days),
    schema=_schema("instrument_velocity"), source=instrument_velocity_push_source, online=True,
)

# The same velocity for a device.
device_velocity_source, device_velocity_push_source = _sources("device_velocity")
device_velocity_fv = FeatureView(
    name="device_velocity", entities=[device], ttl=timedelta(days=VIEWS["device_velocity"].ttl_days),
    schema=_schema("device_velocity"), source=device_velocity_push_source, online=True,
)

# The same velocity for an IP address.
ip_velocity_source, ip_velocity_push_source = _sources("ip_velocity")
ip_velocity_fv = FeatureView(
    name="ip_velocity", entities=[ip], ttl=timedelta(days=VIEWS["ip_velocity"].ttl_days),
    schema=_schema("ip_velocity"), source=ip_velocity_push_source, online=True,
)

# A terminal's transactions over 1, 7 and 30 days, and its fraud risk: the share of
# fraud among the labels that have *arrived* in those windows, so label delay is
# respected and nothing from the future leaks in.
terminal_risk_source, terminal_risk_push_source = _sources("terminal_risk")
terminal_risk_fv = FeatureView(
    name="terminal_risk", entities=[terminal], ttl=timedelta(days=VIEWS["terminal_risk"].ttl_days),
    schema=_schema("terminal_risk"), source=terminal_risk_push_source, online=True,
)

# What the labels that have arrived say about a user and a payment instrument: how many
# of their orders were confirmed fraud in the last 7 and 30 days, and what share.
user_risk_source, user_risk_push_source = _sources("user_risk")
user_risk_fv = FeatureView(
    name="user_risk", entities=[user], ttl=timedelta(days=VIEWS["user_risk"].ttl_days),
    schema=_schema("user_risk"), source=user_risk_push_source, online=True,
)
instrument_risk_source, instrument_risk_push_source = _sources("instrument_risk")
instrument_risk_fv = FeatureView(
    name="instrument_risk", entities=[instrument], ttl=timedelta(days=VIEWS["instrument_risk"].ttl_days),
    schema=_schema("instrument_risk"), source=instrument_risk_push_source, online=True,
)

# How popular an item is right now: views, cart adds and purchases over 1 and 24 hours.
item_popularity_source, item_popularity_push_source = _sources("item_popularity")
item_popularity_fv = FeatureView(
    name="item_popularity", entities=[item], ttl=timedelta(days=VIEWS["item_popularity"].ttl_days),
    schema=_schema("item_popularity"), source=item_popularity_push_source, online=True,
)

# A session so far: clicks, start and length, the last 50 items viewed, the cart.
session_state_source, session_state_push_source = _sources("session_state")
session_state_fv = FeatureView(
    name="session_state", entities=[session], ttl=timedelta(days=VIEWS["session_state"].ttl_days),
    schema=_schema("session_state"), source=session_state_push_source, online=True,
)

# Everything the fraud scorer reads for an order.
fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[user_activity_fv, user_orders_fv, user_risk_fv, instrument_velocity_fv,
              instrument_risk_fv, device_velocity_fv, ip_velocity_fv, terminal_risk_fv],
)

# Everything the session recommender reads after a click or cart change.
recs_v1 = FeatureService(name="recs_v1", features=[session_state_fv, item_popularity_fv])
