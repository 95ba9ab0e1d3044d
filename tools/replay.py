"""Replay of real logs as shop events, in event-time order.

Three formats, each with default column names that ``--map CONTRACT=COLUMN`` overrides,
so that a shop can replay its own export:

- ``sessions``: session click logs. The DIGINETICA sample
  (``session_id;user_id;item_id;timeframe;eventdate``, ``timeframe`` in ms since the
  session started) is recognised; any CSV with ``session_id,item_id,timestamp``
  (epoch seconds or ISO time) works too. Every row is a ``Click``.
- ``shop``: view/cart/purchase logs such as REES46 (``event_time,event_type,product_id,
  price,user_id,user_session``). Views become clicks, carts cart adds (and
  ``remove_from_cart`` removals), purchases orders.
- ``transactions``: card transactions with fraud labels (``TRANSACTION_ID,TX_DATETIME,
  CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD``), CSV or parquet. Each row becomes an
  order, and a label follows ``label_delay_days`` later.

Reading is pure (``read`` returns events); ``shopstream replay`` sends them through the
client at a speed factor or as fast as possible.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd

from shopstream.events import CartEvent, Click, Event, Order, OrderItem, OrderLabel

FORMATS = ("sessions", "shop", "transactions")
DEFAULT_COLUMNS = {
    "sessions": {"session_id": "session_id", "user_id": "user_id", "item_id": "item_id",
                 "timestamp": "timestamp"},
    "shop": {"timestamp": "event_time", "event_type": "event_type", "item_id": "product_id",
             "price": "price", "user_id": "user_id", "session_id": "user_session"},
    "transactions": {"order_id": "TRANSACTION_ID", "timestamp": "TX_DATETIME",
                     "user_id": "CUSTOMER_ID", "terminal_id": "TERMINAL_ID",
                     "amount": "TX_AMOUNT", "is_fraud": "TX_FRAUD"},
}


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["timestamp=ts", ...]`` as a dict, with a clear error for a malformed pair."""
    mapping = {}
    for pair in pairs:
        name, sep, column = pair.partition("=")
        if not sep or not name or not column:
            raise ValueError(f"--map expects CONTRACT=COLUMN, got {pair!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def load(path: Path) -> pd.DataFrame:
    """A CSV (comma or semicolon separated) or parquet file as a frame."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)


def _columns(frame: pd.DataFrame, fmt: str, mapping: dict[str, str], required: list[str]) -> dict:
    columns = {**DEFAULT_COLUMNS[fmt], **mapping}
    if fmt == "sessions" and "timestamp" not in frame.columns and {"timeframe", "eventdate"} <= set(frame.columns):
        columns.setdefault("timestamp", "timestamp")  # DIGINETICA: derived below
    missing = [name for name in required if columns[name] not in frame.columns
               and not (fmt == "sessions" and name == "timestamp")]
    if missing:
        raise ValueError(f"{fmt} log lacks column(s) {[columns[m] for m in missing]} for "
                         f"{missing}; it has {list(frame.columns)}. Use --map NAME=COLUMN.")
    return columns


def _timestamps(values: pd.Series) -> pd.Series:
    """Epoch seconds or date strings as UTC timestamps."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return pd.to_datetime(numeric, unit="s", utc=True)
    return pd.to_datetime(values, utc=True, format="mixed")


def read(path: Path, fmt: str, mapping: dict[str, str] | None = None, *,
         label_delay_days: float = 7.0) -> Iterator[Event]:
    """Every event of the log, lazily, in event-time order (ties keep the file's order).

    Rows are sorted once; events are made one at a time, so a log of millions of rows
    needs memory for the table only.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    frame = load(path)
    reader = {"sessions": _sessions, "shop": _shop, "transactions": _transactions}[fmt]
    return reader(frame, mapping or {}, label_delay_days)


def _sorted(frame: pd.DataFrame, ts: pd.Series) -> tuple[pd.DataFrame, list]:
    """The frame in time order, and its timestamps as Python datetimes."""
    order = ts.reset_index(drop=True).argsort(kind="stable")
    return frame.iloc[order].reset_index(drop=True), [t.to_pydatetime() for t in ts.iloc[order]]


def _sessions(frame: pd.DataFrame, mapping: dict, _delay: float) -> Iterator[Event]:
    c = _columns(frame, "sessions", mapping, ["session_id", "item_id", "timestamp"])
    if c["timestamp"] in frame.columns:
        ts = _timestamps(frame[c["timestamp"]])
    else:  # DIGINETICA: the day, plus milliseconds since the session started
        ts = (pd.to_datetime(frame["eventdate"], utc=True)
              + pd.to_timedelta(pd.to_numeric(frame["timeframe"]), unit="ms"))
    frame, ts = _sorted(frame, ts)
    users = frame[c["user_id"]] if c["user_id"] in frame.columns else frame[c["session_id"]]
    for session, user, item, when in zip(frame[c["session_id"]], users, frame[c["item_id"]], ts,
                                         strict=True):
        anonymous = user in ("", "NA", "nan", "None")  # DIGINETICA writes NA for guests
        yield Click(user_id=f"anon-{session}" if anonymous else user, session_id=session,
                    item_id=item, ts=when)


def _shop(frame: pd.DataFrame, mapping: dict, _delay: float) -> Iterator[Event]:
    c = _columns(frame, "shop", mapping, ["timestamp", "event_type", "item_id", "user_id", "session_id"])
    frame, ts = _sorted(frame, _timestamps(frame[c["timestamp"]]))
    prices = pd.to_numeric(frame[c["price"]], errors="coerce").fillna(0.0) if c["price"] in frame else 0.0
    for i, (kind, item, user, session, when) in enumerate(zip(
            frame[c["event_type"]], frame[c["item_id"]], frame[c["user_id"]],
            frame[c["session_id"]], ts, strict=True)):
        price = float(prices.iloc[i]) if isinstance(prices, pd.Series) else 0.0
        common = {"user_id": user, "session_id": session, "ts": when}
        if kind == "view":
            yield Click(item_id=item, **common)
        elif kind in ("cart", "remove_from_cart"):
            yield CartEvent(action="add" if kind == "cart" else "remove", item_id=item,
                            price=price, **common)
        elif kind == "purchase":
            yield Order(order_id=f"{session}-{item}-{int(when.timestamp())}", items=[OrderItem(
                item_id=item, price=price, qty=1)], amount=price,
                payment_fingerprint=f"user-{user}", **common)


def _transactions(frame: pd.DataFrame, mapping: dict, delay_days: float) -> Iterator[Event]:
    c = _columns(frame, "transactions", mapping,
                 ["order_id", "timestamp", "user_id", "terminal_id", "amount", "is_fraud"])
    frame, ts = _sorted(frame, pd.to_datetime(frame[c["timestamp"]], utc=True))
    delay = timedelta(days=delay_days)
    rows = list(zip(frame[c["order_id"]].astype(str), frame[c["user_id"]].astype(str),
                    frame[c["terminal_id"]].astype(str), pd.to_numeric(frame[c["amount"]]),
                    pd.to_numeric(frame[c["is_fraud"]]).astype(bool), ts, strict=True))

    def orders() -> Iterator[Event]:
        for order_id, user, terminal, amount, _, when in rows:
            # The customer is the card holder: one card per customer in this data.
            yield Order(order_id=order_id, user_id=user, amount=amount, terminal_id=terminal,
                        items=[OrderItem(item_id="tx", price=amount)],
                        payment_fingerprint=f"card-{user}", ts=when)

    def labels() -> Iterator[Event]:
        for order_id, _, _, _, fraud, when in rows:
            yield OrderLabel(order_id=order_id, is_fraud=fraud, chargeback=fraud, ts=when + delay)

    yield from heapq.merge(orders(), labels(), key=lambda event: event.ts)
