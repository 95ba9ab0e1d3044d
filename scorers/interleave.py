"""Team-draft interleaving (Radlinski, Kurup and Joachims, 2008). Pure.

Two rankers' lists are merged into one: in each round the team with fewer picks so far
(a coin decides ties) adds its highest item not already in the merged list, and the item
remembers its team. The session's next click or cart add credits the team of the item
it lands on; a click on neither team's item credits nobody. Every user sees a list that
is good by both rankers, and each event is a paired comparison, which is why
interleaving needs far less traffic than an A/B split to tell two rankers apart.

>>> merged, teams = team_draft(["a", "b", "c"], ["b", "d", "e"], 4, coin=lambda: True)
>>> merged, teams
(['a', 'b', 'c', 'd'], ['champion', 'challenger', 'champion', 'challenger'])
>>> credit(merged, teams, "d"), credit(merged, teams, "a"), credit(merged, teams, "zzz")
('challenger', 'champion', None)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

CHAMPION, CHALLENGER = "champion", "challenger"


def team_draft(champion: Sequence[str], challenger: Sequence[str], k: int,
               coin: Callable[[], bool] | None = None) -> tuple[list[str], list[str]]:
    """The interleaved list of at most ``k`` items, and the team of each. ``coin`` says
    whether the champion picks first when both teams have picked as often (random by
    default; give a seeded one for a list that can be drawn again)."""
    coin = coin or (lambda: random.random() < 0.5)  # noqa: S311 - a draft, not a secret
    merged: list[str] = []
    teams: list[str] = []
    taken: set[str] = set()
    picks = {CHAMPION: 0, CHALLENGER: 0}
    lists = {CHAMPION: list(champion), CHALLENGER: list(challenger)}
    heads = {CHAMPION: 0, CHALLENGER: 0}

    def next_of(team: str) -> str | None:
        items = lists[team]
        while heads[team] < len(items) and items[heads[team]] in taken:
            heads[team] += 1
        return items[heads[team]] if heads[team] < len(items) else None

    while len(merged) < k:
        left = {team: next_of(team) for team in lists}
        if left[CHAMPION] is None and left[CHALLENGER] is None:
            break
        if picks[CHAMPION] != picks[CHALLENGER]:
            team = CHAMPION if picks[CHAMPION] < picks[CHALLENGER] else CHALLENGER
        else:
            team = CHAMPION if coin() else CHALLENGER
        if left[team] is None:  # that team has nothing new: the other picks
            team = CHALLENGER if team == CHAMPION else CHAMPION
        item = left[team]
        merged.append(item)
        teams.append(team)
        taken.add(item)
        picks[team] += 1
    return merged, teams


def credit(merged: Sequence[str], teams: Sequence[str], clicked: str) -> str | None:
    """The team that ``clicked`` (the session's next click or cart add) credits, or None
    when it is in neither team's part of the list."""
    for item, team in zip(merged, teams, strict=True):
        if item == clicked:
            return team
    return None


def seeded_coin(key: str) -> Callable[[], bool]:
    """A coin that flips the same way for the same ``key`` (a session and its event), so
    a redelivered event is answered with the same list."""
    rng = random.Random(key)
    return lambda: rng.random() < 0.5
