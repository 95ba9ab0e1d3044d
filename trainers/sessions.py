"""Session logs for the recommender: read, split by time, and cut into next-item cases.

A session log is a frame of ``session_id, item_id, ts`` (one row per view). It comes
from the offline log that the workers write (``from_offline``) or from a replayed file
(``from_events``), and both the trainer and ``shopstream eval recs`` use the protocol of
Ludewig et al. (UMUAI 2021):

- sessions of one view are dropped, and items seen fewer than ``min_support`` times;
- the sessions that start in the last ``test_days`` days are the test set;
- test views of items never seen in training are dropped, and then test sessions
  shorter than two views;
- every prefix of every test session predicts the view that follows it.

>>> import pandas as pd
>>> frame = pd.DataFrame({"session_id": ["s1", "s1", "s2", "s2", "s2"],
...                       "item_id": ["a", "b", "a", "b", "c"],
...                       "ts": pd.to_datetime([0, 60, 86400 * 2, 86400 * 2 + 5, 86400 * 2 + 9], unit="s", utc=True)})
>>> train, test = split(frame, test_days=1)
>>> [s.items for s in sessions(train)], [s.items for s in sessions(test)]
([('a', 'b')], [('a', 'b')])
>>> cases(sessions(test))
[Case(session_id='s2', prefix=('a',), target='b')]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import NamedTuple

import pandas as pd

from scorers.neighbours import Session
from shopstream.events import CartEvent, Click, Event, Order


class Case(NamedTuple):
    """One next-item prediction: the session so far and the item that came next."""

    session_id: str
    prefix: tuple[str, ...]
    target: str


def frame_of(rows: Iterable[tuple[str, str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=["session_id", "item_id", "ts"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def from_events(events: Iterable[Event]) -> tuple[pd.DataFrame, list[Session]]:
    """Views (clicks) as a session log, and the orders as baskets for bought-together."""
    views, baskets = [], []
    for event in events:
        if isinstance(event, Click) and event.session_id:
            views.append((event.session_id, event.item_id, event.ts))
        elif isinstance(event, Order) and event.items:
            baskets.append(Session(tuple(i.item_id for i in event.items), event.ts.timestamp()))
        elif isinstance(event, CartEvent):
            continue  # carts are state, not views: the cart agent reads them live
    return frame_of(views), baskets


def clean(frame: pd.DataFrame, min_support: int = 1) -> pd.DataFrame:
    """Items seen at least ``min_support`` times, in sessions of two views or more."""
    frame = frame.sort_values(["session_id", "ts"], kind="stable")
    if min_support > 1:
        counts = frame["item_id"].value_counts()
        frame = frame[frame["item_id"].map(counts) >= min_support]
    lengths = frame.groupby("session_id")["item_id"].transform("size")
    return frame[lengths >= 2].reset_index(drop=True)


def split(frame: pd.DataFrame, test_days: float, min_support: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test logs: test sessions start within ``test_days`` of the last view."""
    frame = clean(frame, min_support)
    starts = frame.groupby("session_id")["ts"].transform("min")
    cut = frame["ts"].max() - timedelta(days=test_days)
    train, test = frame[starts < cut], frame[starts >= cut]
    test = test[test["item_id"].isin(set(train["item_id"]))]
    return train.reset_index(drop=True), clean(test)


def sessions(frame: pd.DataFrame) -> list[Session]:
    """The sessions of a log, in the order they ended, each with its session id."""
    out = []
    for session_id, group in frame.sort_values("ts", kind="stable").groupby("session_id", sort=False):
        out.append(Session(tuple(group["item_id"]), group["ts"].iloc[-1].timestamp(), str(session_id)))
    return sorted(out, key=lambda s: (s.ts, s.session_id))


def cases(test: Sequence[Session]) -> list[Case]:
    """Every prefix of every test session, with the item that followed it."""
    return [Case(s.session_id, s.items[:n], s.items[n]) for s in test for n in range(1, len(s.items))]
