"""``eval challenge`` on one small simulated shop: every mode reaches the right verdict on
a better and on a worse challenger, and the results are written."""

from __future__ import annotations

import json

from evals.challenge import MODES, ChallengeConfig, planted_clicks, run


def test_the_planted_change_moves_the_favourites_of_a_share_of_the_themes():
    config = ChallengeConfig(hours_before=2, train_hours=2, serve_hours=0, sessions_per_hour=200)
    clicks, change = planted_clicks(config)
    before = {c.item_id for c in clicks if c.ts.timestamp() < change}
    after = {c.item_id for c in clicks if c.ts.timestamp() >= change}
    assert before and after and after - before  # items that nobody viewed before are viewed now


def test_each_mode_judges_a_better_and_a_worse_challenger_rightly(tmp_path):
    frame = run(tmp_path, seeds=1, config=ChallengeConfig(seed=2, hours_before=12, train_hours=12, serve_hours=12))
    assert set(frame["mode"]) == set(MODES) and set(frame["scenario"]) == {"better", "worse"}
    verdicts = {(r.scenario, r.mode): r.verdict for r in frame.itertuples()}
    assert {verdicts["better", mode] for mode in MODES} == {"challenger"}
    assert "challenger" not in {verdicts["worse", mode] for mode in MODES}
    assert frame["right"].all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["better/interleave"]["right"] == 1 and (tmp_path / "traffic.png").exists()
