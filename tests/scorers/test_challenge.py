"""Champion and challenger splits (``scorers.challenge``) and team-draft interleaving
(``scorers.interleave``), on hand-made inputs."""

from __future__ import annotations

import math

import pytest

from scorers.challenge import Challenge, assigned
from scorers.interleave import credit, seeded_coin, team_draft


def test_the_ab_split_is_deterministic_sticky_and_honours_the_weight():
    users = [f"user-{i}" for i in range(20_000)]
    ab = Challenge("3", "ab", 0.1, "1764633600000")
    first = [ab.variant(u) for u in users]
    assert first == [ab.variant(u) for u in users]  # the same user, the same side, every time
    n, p = len(users), 0.1
    challengers = first.count("challenger")
    assert abs(challengers - n * p) < 4 * math.sqrt(n * p * (1 - p))  # binomial, 4 sd
    assert set(first) == {"champion", "challenger"}
    again = Challenge("3", "ab", 0.1, "1764720000000")  # a new challenge draws the sides afresh
    moved = sum(a != b for a, b in zip(first, (again.variant(u) for u in users), strict=True))
    assert moved > 0.1 * n  # about 2 p (1 - p) n = 3,600 change side


def test_a_larger_weight_keeps_everyone_the_smaller_one_had():
    users = [f"u{i}" for i in range(5_000)]
    small = {u for u in users if assigned(u, 0.05, "s")}
    large = {u for u in users if assigned(u, 0.2, "s")}
    assert small < large  # raising the weight adds users, never moves the first ones back


def test_a_shadow_never_answers_and_the_modes_are_checked():
    assert {Challenge("2", "shadow").variant(f"u{i}") for i in range(100)} == {"champion"}
    assert {Challenge("2", "interleave", 0.999, "x").variant(f"s{i}") for i in range(100)} <= {
        "interleaved", "champion"}
    with pytest.raises(ValueError, match="weight"):
        Challenge("2", "ab", 0.0)
    with pytest.raises(ValueError, match="weight"):
        Challenge("2", "ab", 1.0)
    with pytest.raises(ValueError, match="unknown mode"):
        Challenge("2", "canary", 0.1)


def test_team_draft_takes_turns_and_skips_what_is_already_in():
    merged, teams = team_draft(["a", "b", "c", "d"], ["a", "b", "e", "f"], 6, coin=lambda: False)
    # challenger first (the coin), then champion's best not taken, in turns
    assert merged == ["a", "b", "e", "c", "f", "d"]
    assert teams == ["challenger", "champion", "challenger", "champion", "challenger", "champion"]
    assert teams.count("champion") == teams.count("challenger")


def test_team_draft_fills_from_one_team_when_the_other_runs_out():
    merged, teams = team_draft(["a"], ["b", "c", "d"], 4, coin=lambda: True)
    assert merged == ["a", "b", "c", "d"]
    assert teams == ["champion", "challenger", "challenger", "challenger"]
    assert team_draft([], [], 5) == ([], [])


def test_the_next_click_credits_the_team_of_its_item():
    merged, teams = team_draft(["x1", "x2", "x3"], ["y1", "y2", "y3"], 6, coin=lambda: True)
    assert [credit(merged, teams, item) for item in ("x2", "y3", "elsewhere")] == [
        "champion", "challenger", None]


def test_a_seeded_coin_draws_the_same_list_again():
    a, b = [f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)]
    first = team_draft(a, b, 10, coin=seeded_coin("session-1:shop.clicks:0:42"))
    assert first == team_draft(a, b, 10, coin=seeded_coin("session-1:shop.clicks:0:42"))
    lists = {tuple(team_draft(a, b, 10, coin=seeded_coin(f"s{i}"))[1]) for i in range(50)}
    assert len(lists) > 1  # but the coin does flip both ways across sessions
