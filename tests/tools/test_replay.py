"""Replay readers: the three formats, column mapping, event-time order, clear errors."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pandas as pd
import pytest

from shopstream.events import CartEvent, Click, Order, OrderLabel
from tools.replay import parse_mapping, read


def in_time_order(events):
    return all(a.ts <= b.ts for a, b in zip(events, events[1:], strict=False))


def test_diginetica_sessions(data_dir):
    events = list(read(data_dir / "sessions-diginetica-sample.csv", "sessions"))
    assert len(events) == 12_391 and all(isinstance(e, Click) for e in events)
    assert len({e.session_id for e in events}) == 2_986
    assert len({e.item_id for e in events}) == 7_139
    assert in_time_order(events)
    assert events[0].ts.year == 2016 and events[-1].ts.month == 6
    assert all(e.user_id.startswith("anon-") for e in events if e.user_id.startswith("anon"))


def test_rees46_shop_log(data_dir):
    events = list(read(data_dir / "shop-events-rees46-sample.csv", "shop"))
    kinds = Counter(type(e).__name__ for e in events)
    raw = pd.read_csv(data_dir / "shop-events-rees46-sample.csv")
    expected = raw["event_type"].value_counts()
    assert kinds["Click"] == expected.get("view", 0)
    assert kinds["CartEvent"] == expected.get("cart", 0) + expected.get("remove_from_cart", 0)
    assert kinds["Order"] == expected.get("purchase", 0)
    assert in_time_order(events)
    order = next(e for e in events if isinstance(e, Order))
    assert order.amount == order.items[0].price > 0


def test_fraud_transactions_become_orders_and_delayed_labels(data_dir, tmp_path):
    frame = pd.read_parquet(data_dir / "fraud-transactions-2018q2.parquet").head(3_000)
    frame.to_parquet(tmp_path / "tx.parquet")
    events = list(read(tmp_path / "tx.parquet", "transactions", label_delay_days=7))
    orders = {e.order_id: e for e in events if isinstance(e, Order)}
    labels = {e.order_id: e for e in events if isinstance(e, OrderLabel)}
    assert len(orders) == len(labels) == 3_000
    assert in_time_order(events)
    for row in frame.head(50).itertuples():
        order, label = orders[str(row.TRANSACTION_ID)], labels[str(row.TRANSACTION_ID)]
        assert order.user_id == str(row.CUSTOMER_ID) and order.terminal_id == str(row.TERMINAL_ID)
        assert order.amount == pytest.approx(row.TX_AMOUNT)
        assert label.is_fraud == bool(row.TX_FRAUD)
        assert label.ts - order.ts == timedelta(days=7)


def test_column_mapping_lets_a_shop_replay_its_own_export(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("visit,sku,time\nv1,a,1700000100\nv1,b,1700000000\nv2,c,1700000050\n")
    events = list(read(path, "sessions", parse_mapping(["session_id=visit", "item_id=sku",
                                                          "timestamp=time"])))
    assert [(e.session_id, e.item_id) for e in events] == [("v1", "b"), ("v2", "c"), ("v1", "a")]


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("a,b\n1,2\n", "sessions", "lacks column"),
        ("a,b\n1,2\n", "shop", "Use --map"),
        ("x\n", "nope", "unknown format"),
    ],
)
def test_clear_errors(tmp_path, content, fmt, message):
    path = tmp_path / "log.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        list(read(path, fmt))


def test_bad_mapping_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="CONTRACT=COLUMN"):
        parse_mapping(["timestamp"])
    with pytest.raises(FileNotFoundError):
        list(read(tmp_path / "missing.csv", "sessions"))


def test_cart_removals_are_replayed(tmp_path):
    path = tmp_path / "shop.csv"
    path.write_text("event_time,event_type,product_id,price,user_id,user_session\n"
                    "2019-10-01 00:00:00 UTC,cart,p1,9.5,u1,s1\n"
                    "2019-10-01 00:01:00 UTC,remove_from_cart,p1,9.5,u1,s1\n")
    actions = [e.action for e in read(path, "shop") if isinstance(e, CartEvent)]
    assert actions == ["add", "remove"]
