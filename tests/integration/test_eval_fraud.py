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
                  redis_db=14)

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
