"""A walk through shopstream's feature store: apply, push, read online, read history.

Run it from this folder with Redis up (``make up``): ``python walkthrough.py``. It writes
to a throw-away user, ``walkthrough-user``, the way a worker does, and reads it back.
"""

from datetime import UTC, datetime, timedelta

import pandas as pd

from shopstream.featurestore import feature_store, offline_root
from shopstream.offline import OfflineLog
from shopstream.online import OnlineWriter
from shopstream.rows import feature_table
from shopstream.settings import get_settings


def main() -> None:
    settings = get_settings()

    print("1. apply: register the entities, views and services of shop_features.py")
    store = feature_store(settings, apply=True)
    print("   views:", ", ".join(sorted(v.name for v in store.list_feature_views())))

    print("2. push: two user_orders rows, an hour apart, online and to the offline log")
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        ("walkthrough-user", (now - timedelta(hours=1)).timestamp(),
         1, 1, 1, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 0.0, 0.0, 0.0, -1.0),
        ("walkthrough-user", now.timestamp(),
         2, 2, 2, 100.0, 100.0, 100.0, 50.0, 50.0, 50.0, 10.0, 10.0, 10.0, 3600.0),
    ]
    OnlineWriter(store).write("user_orders", rows)
    OfflineLog(offline_root(settings)).append("user_orders", feature_table("user_orders", rows))

    print("3. online read: the newest values, as a scorer sees them")
    online = store.get_online_features(
        features=["user_orders:order_amount_count_30d", "user_orders:order_amount_mean_1d"],
        entity_rows=[{"user_id": "walkthrough-user"}]).to_dict()
    print("  ", online)

    print("4. historical read: the values as they were at each time (point in time)")
    entities = pd.DataFrame({"user_id": ["walkthrough-user"] * 2,
                             "event_timestamp": [now - timedelta(minutes=30), now]})
    history = store.get_historical_features(
        entity_df=entities, features=["user_orders:order_amount_count_30d",
                                      "user_orders:order_amount_mean_1d"]).to_df()
    print(history.to_string(index=False))


if __name__ == "__main__":
    main()
