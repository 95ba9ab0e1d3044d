"""The rolling-origin evaluation's pure parts: the replay record, settings overrides, the
per-week summary and the paired bootstrap."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evals.weeks import Replayed, overridden, paired_bootstrap, plot_weeks, summarise, week_metrics
from trainers.configs import FraudTrainConfig


def test_a_replay_is_reused_only_for_the_same_start_and_delay_and_no_later_end():
    done = Replayed(Path("/h"), datetime(2018, 4, 1, tzinfo=UTC), datetime(2018, 6, 30, tzinfo=UTC), 7.0, 0.0,
                    100, 12.5)
    assert Replayed.from_json(done.to_json()) == done
    assert done.covers(done.start, datetime(2018, 6, 2, tzinfo=UTC), 7.0)
    assert not done.covers(done.start, datetime(2018, 7, 2, tzinfo=UTC), 7.0)
    assert not done.covers(datetime(2018, 4, 2, tzinfo=UTC), done.end, 7.0)
    assert not done.covers(done.start, done.end, 3.0)


def test_overrides_name_the_setting_they_do_not_know():
    with pytest.raises(ValueError, match="no setting 'focal'"):
        overridden(FraudTrainConfig(), "model.focal=2")
    assert overridden(FraudTrainConfig(), "refit=false,negatives=0.5").refit is False


def frame(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2018-06-02", tz="UTC") + pd.to_timedelta(rng.integers(0, 7 * 86_400, n), unit="s")
    return pd.DataFrame({"customer_id": [f"c{i % 300}" for i in range(n)], "ts": ts,
                         "label": (rng.random(n) < 0.05).astype(int)})


def test_the_better_model_has_an_interval_above_zero_and_a_model_against_itself_around_it():
    weeks = []
    for seed in range(2):
        test = frame(seed=seed)
        rng = np.random.default_rng(seed + 10)
        good = test["label"].to_numpy() + rng.normal(0, 0.6, len(test))
        weeks.append((test, {("ours", 0): good, ("ours", 1): good + rng.normal(0, 0.1, len(test)),
                             ("base", 0): rng.random(len(test)), ("same", 0): good}))
    better = paired_bootstrap(weeks, "ours", "base", resamples=50)
    assert better["auc"][0] > 0.2 and better["ap"][0] > 0.2
    itself = paired_bootstrap(weeks, "same", "same", resamples=20)
    assert itself == {"auc": [0.0, 0.0], "ap": [0.0, 0.0]}


def test_the_summary_averages_seeds_then_weeks_and_counts_weeks_led():
    rows = pd.DataFrame([
        {"model": "ours", "seed": 0, "week": "w1", "auc": 0.90, "ap": 0.6, "cp100": 0.2},
        {"model": "ours", "seed": 1, "week": "w1", "auc": 0.80, "ap": 0.4, "cp100": 0.2},
        {"model": "ours", "seed": 0, "week": "w2", "auc": 0.70, "ap": 0.5, "cp100": 0.1},
        {"model": "ours", "seed": 1, "week": "w2", "auc": 0.70, "ap": 0.5, "cp100": 0.1},
        {"model": "logistic regression", "seed": 0, "week": "w1", "auc": 0.84, "ap": 0.45, "cp100": 0.2},
        {"model": "logistic regression", "seed": 0, "week": "w2", "auc": 0.75, "ap": 0.45, "cp100": 0.1},
        {"model": "gradient boosting", "seed": 0, "week": "w1", "auc": 0.80, "ap": 0.55, "cp100": 0.2},
        {"model": "gradient boosting", "seed": 0, "week": "w2", "auc": 0.60, "ap": 0.40, "cp100": 0.1}])
    ours = summarise(rows).set_index("model").loc["ours"]
    assert ours["auc_mean"] == pytest.approx(0.775) and ours["ap_mean"] == pytest.approx(0.5)
    assert ours["auc_weeks_sd"] == pytest.approx(0.075)
    assert ours["auc_seeds_sd"] == pytest.approx(0.025)  # seed means 0.80 and 0.75
    assert (ours["weeks_led_auc"], ours["weeks_led_ap"]) == (1, 1)  # w1 AUC 0.85 > 0.84; w2 AP 0.5 > 0.45


def test_week_metrics_read_the_kept_rows_only():
    test = frame()
    kept = test.iloc[::2]
    scores = {("ours", 0): test["label"].to_numpy().astype(float)}
    got = week_metrics(kept, scores)
    assert got.loc[0, "auc"] == 1.0 and got.loc[0, "ap"] == 1.0


def test_the_plot_draws_every_model_on_the_weeks_in_order(tmp_path, caplog):
    rows = pd.DataFrame([{"model": m, "seed": s, "week": w, "auc": 0.8 + s / 100, "ap": 0.6, "cp100": 0.2}
                         for m in ("ours", "logistic regression") for s in (0, 1) for w in ("2018-06-09", "2018-06-02")])
    with caplog.at_level("INFO"):
        path = plot_weeks(rows, tmp_path / "weeks.png")
    assert path.stat().st_size > 10_000
    assert not [r for r in caplog.records if r.name.startswith("matplotlib")]
