"""``eval fraud`` end to end on a slice of the shared card transactions: the pipeline
runs, every test-window transaction is scored by the trained model through Kafka, and
the metrics are computed (not that they reach the target: the slice is small)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from evals.fraud import EvalWindow, known_compromised, run

pytestmark = [pytest.mark.integration, pytest.mark.data]


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_eval_fraud_on_a_slice(settings, data_dir, tmp_path):
    frame = pd.read_parquet(data_dir / "fraud-transactions-2018q2.parquet")
    part = frame[(frame.CUSTOMER_ID < 300) & (frame.TX_DATETIME < "2018-04-23")]
    part.to_parquet(tmp_path / "slice.parquet")
    window = EvalWindow(day("2018-04-01"), day("2018-04-15"), day("2018-04-22"), day("2018-04-23"),
                        train_days=7)
    summary = run(settings, tmp_path / "slice.parquet", window, tmp_path / "out", rate=2000, epochs=2,
                  redis_db=settings.redis.db)

    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["models"] == summary["models"]
    for name in ("shopstream", "logreg", "gbm"):
        assert set(written["models"][name]) == {"auc", "ap", "cp100"}
        assert 0 <= written["models"][name]["auc"] <= 1
        assert written["models"][name]["cp100"] <= written["cp100_ceiling"]
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    test = part[part.TX_DATETIME >= "2018-04-22"]
    assert sorted(scores["transaction_id"]) == sorted(test["TRANSACTION_ID"])  # known-compromised kept
    assert scores["score"].notna().all()  # every order was scored, through scores.fraud
    assert set(scores["model_version"]) == {summary["model_version"]}
    known = known_compromised(part.assign(TX_DATETIME=pd.to_datetime(part.TX_DATETIME, utc=True)),
                              pd.Timestamp("2018-04-22", tz="UTC"), 7)
    assert written["n_test"] == len(test) - test.CUSTOMER_ID.astype(str).isin(known).sum()
    assert all((tmp_path / "out" / f"{name}.png").exists() for name in ("roc", "pr", "calibration"))


def test_eval_fraud_weeks_on_a_slice_replays_once_and_retrains_weekly(settings, data_dir, tmp_path):
    """Two test weeks from one replay: every model is trained per week and scored on that
    week's orders; a second run in the same folder reuses the replay."""
    from evals.weeks import Replayed, run_weeks
    from trainers.configs import FraudTrainConfig, LoopConfig

    frame = pd.read_parquet(data_dir / "fraud-transactions-2018q2.parquet")
    part = frame[(frame.CUSTOMER_ID < 300) & (frame.TX_DATETIME < "2018-04-29")]
    part.to_parquet(tmp_path / "slice.parquet")
    config = FraudTrainConfig(kind="ensemble", days=6, valid_days=2, loop=LoopConfig(epochs=2))
    result = run_weeks(settings, tmp_path / "slice.parquet", day("2018-04-01"), day("2018-04-15"), 2,
                       tmp_path / "out", config=config, seeds=2, variants={"trees": "kind=gbm"}, redis_db=settings.redis.db,
                       resamples=20)

    per_week = pd.read_csv(tmp_path / "out" / "weeks.csv")
    assert list(dict.fromkeys(per_week["week"])) == ["2018-04-15", "2018-04-22"]
    models = {"shopstream", "net alone", "lightgbm alone", "linear alone", "trees", "logistic regression",
              "gradient boosting"}
    assert set(per_week["model"]) == models
    assert per_week.groupby("model")["seed"].nunique().to_dict() == {
        m: 1 if m in ("logistic regression", "gradient boosting") else 2 for m in models}
    week = pd.read_parquet(tmp_path / "out" / "scores-20180415.parquet")
    test = part[(part.TX_DATETIME >= "2018-04-15") & (part.TX_DATETIME < "2018-04-22")]
    assert sorted(week["order_id"]) == sorted(test["TRANSACTION_ID"].astype(str))  # every order of the week
    assert week.filter(like="|").notna().all().all()
    for against in result["intervals"].values():
        for interval in against.values():
            assert interval["auc"][0] <= interval["auc"][1] and interval["ap"][0] <= interval["ap"][1]
    assert (tmp_path / "out" / "weeks.png").exists()

    replayed = Replayed.from_json((tmp_path / "out" / "replay.json").read_text())
    again = run_weeks(settings, tmp_path / "slice.parquet", day("2018-04-01"), day("2018-04-15"), 1,
                      tmp_path / "out", config=config, seeds=1, redis_db=settings.redis.db, resamples=10)
    assert again["replay"]["seconds"] == replayed.seconds  # the same replay, not a new one
