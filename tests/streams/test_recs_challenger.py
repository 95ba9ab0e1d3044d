"""A recommender challenger in the recommendation agent (``streams.recs.challenged``): a
shadow changes no live list, an A/B split answers its sessions, and interleaving drafts
one list from both, the same list for the same event."""

from __future__ import annotations

from scorers.challenge import Challenge
from scorers.interleave import credit
from scorers.neighbours import Popularity, Session
from scorers.recommend import Recommender, SessionView
from streams.recs import challenged

CHAMPION = Recommender(popular=Popularity().fit([Session((f"a{i}",) * (10 - i), 0.0) for i in range(10)]), k=5,
                       version="1")
RIVAL = Recommender(popular=Popularity().fit([Session((f"b{i}",) * (10 - i), 0.0) for i in range(10)]), k=5,
                    version="2")
VIEWS = [SessionView(items=("x",)) for _ in range(300)]
SESSIONS = [f"session-{i}" for i in range(300)]
ORIGINS = [f"shop.clicks:0:{i}" for i in range(300)]


def items(answer) -> list[str]:
    return [item for item, _ in answer[0]]


def test_a_shadow_changes_no_live_list_and_answers_every_event_beside_it():
    alone, none = challenged(CHAMPION, None, VIEWS, SESSIONS, ORIGINS)
    live, shadow = challenged(CHAMPION, (Challenge("2", "shadow"), RIVAL), VIEWS, SESSIONS, ORIGINS)
    assert none == [] and live == alone and {a[3] for a in live} == {"champion"}
    assert len(shadow) == len(VIEWS) and {(a[2], a[3]) for a in shadow} == {("2", "shadow")}
    assert items(shadow[0]) == ["b0", "b1", "b2", "b3", "b4"]


def test_an_ab_split_answers_its_sessions_with_the_challenger():
    challenge = Challenge("2", "ab", 0.3, "salt")
    lists, shadow = challenged(CHAMPION, (challenge, RIVAL), VIEWS, SESSIONS, ORIGINS)
    assert shadow == []
    for session, answer in zip(SESSIONS, lists, strict=True):
        side = challenge.variant(session)
        assert answer[3] == side and answer[2] == ("2" if side == "challenger" else "1")
        assert items(answer)[0] == ("b0" if side == "challenger" else "a0")


def test_interleaving_drafts_one_list_from_both_with_each_items_team():
    challenge = Challenge("2", "interleave", 0.5, "salt")
    lists, _ = challenged(CHAMPION, (challenge, RIVAL), VIEWS, SESSIONS, ORIGINS)
    mixed = [a for a in lists if a[3] == "interleaved"]
    assert 0 < len(mixed) < len(lists)
    for answer in mixed:
        merged, teams = items(answer), answer[4]
        assert len(merged) == 5 and answer[2] == "1+2" and answer[1] == "interleave"
        assert all((item[0] == "a") == (team == "champion") for item, team in zip(merged, teams, strict=True))
        assert abs(teams.count("champion") - teams.count("challenger")) == 1
        assert credit(merged, teams, merged[0]) == teams[0]
    again, _ = challenged(CHAMPION, (challenge, RIVAL), VIEWS, SESSIONS, ORIGINS)
    assert again == lists  # the same event, the same draft (a redelivered click)
    assert len({tuple(a[4]) for a in mixed}) > 1  # the coin picks who drafts first in each round


def test_each_recommender_answers_a_batch_at_once(monkeypatch):
    """Seen: with no challenger the champion recommended the whole batch once per view, a
    batch of n views n times over, on the event loop; a backlog after a broker restart
    then froze the worker (tests/faults/test_broker_restart.py)."""
    from streams import recs

    calls = []
    real = recs.recommend

    def counted(current, views):
        calls.append(len(views))
        return real(current, views)

    monkeypatch.setattr(recs, "recommend", counted)
    challenged(CHAMPION, None, VIEWS, SESSIONS, ORIGINS)
    assert calls == [len(VIEWS)]
    calls.clear()
    challenged(CHAMPION, (Challenge("2", "shadow"), RIVAL), VIEWS, SESSIONS, ORIGINS)
    assert calls == [len(VIEWS), len(VIEWS)]
