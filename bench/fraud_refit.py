"""Does the refit on every day help? A held-out week inside an ``eval fraud`` history.

Not a speed bench: an experiment behind a trainer default. It reads the home folder that
``shopstream eval fraud --output DIR`` leaves (``DIR/home``: the offline log of the
replayed history), builds a 7-day training window with the labels known a week after it,
and scores the orders of a later week that neither the model nor the baselines saw:

a. the deep model trained on the window's first days, early-stopped on its last ones;
b. the same model refit on the whole window for the chosen epochs (the trainer's default);
c. logistic regression and gradient boosting on the whole window, as ``eval fraud`` does.

Test labels come from the transaction file; cards already known to be compromised before
a test day are left out of that day, as in the published protocol::

    python -m bench.fraud_refit --home eval-fraud/home \\
        --transactions ../shared/data/fraud-transactions-2018q2.parquet \\
        --train-end 2018-06-07 --test-start 2018-06-15 --test-end 2018-06-22 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from evals.fraud import metric_frame, without_known_compromised
from scorers.fraud import matrix
from shopstream.settings import Settings
from trainers import metrics as fraud_metrics
from trainers.configs import FraudTrainConfig, LoopConfig
from trainers.fraud import baseline_scores as baselines
from trainers.fraud import (
    build_dataset,
    refit_model,
    scores_of,
    train_model,
)
from trainers.offline import historical_features, order_events, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--transactions", type=Path, required=True)
    parser.add_argument("--train-end", required=True)
    parser.add_argument("--train-days", type=float, default=7.0)
    parser.add_argument("--valid-days", type=float, default=1.75)
    parser.add_argument("--delay-days", type=float, default=7.0)
    parser.add_argument("--test-start", required=True)
    parser.add_argument("--test-end", required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--negatives", type=float, default=1.0, help="share of genuine orders the deep model trains on")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    settings = Settings(home=args.home)
    end = pd.Timestamp(args.train_end, tz="UTC").to_pydatetime()
    start = end - timedelta(days=args.train_days)
    data = build_dataset(settings, start, end, labels_as_of=end + timedelta(days=args.delay_days))
    split = end - timedelta(days=args.valid_days)
    is_valid = (data.frame["event_timestamp"] >= split).to_numpy()
    train, valid = data.select(~is_valid), data.select(is_valid)

    orders = raw(settings, "raw_order").drop_duplicates("order_id")
    ts = pd.to_datetime(orders["event_timestamp"], utc=True)
    orders = orders[(ts >= args.test_start) & (ts < args.test_end)].reset_index(drop=True)
    test_x = matrix(order_events(orders), historical_features(settings, orders))
    frame = pd.read_parquet(args.transactions)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"], utc=True)
    truth = frame.assign(order_id=frame["TRANSACTION_ID"].astype(str)).set_index("order_id")
    table = pd.DataFrame({"customer_id": truth.loc[orders["order_id"], "CUSTOMER_ID"].astype(str).to_numpy(),
                          "ts": pd.to_datetime(orders["event_timestamp"], utc=True),
                          "label": truth.loc[orders["order_id"], "TX_FRAUD"].astype(int).to_numpy()})
    kept = without_known_compromised(table, frame, args.delay_days)
    print(f"train {len(train.x):,} ({int(train.frame['label'].sum())} fraud), valid {len(valid.x):,}, "
          f"test {len(kept):,} ({int(kept['label'].sum())} fraud, known-compromised cards removed)")

    def test(scores: np.ndarray) -> dict[str, float]:
        curve = metric_frame(kept, scores[kept.index.to_numpy()])
        result = fraud_metrics.evaluate(curve)
        return {k: round(float(result[k]), 3) for k in ("auc", "ap", "cp100")}

    rows = {name: test(scores) for name, scores in baselines(data.x, data.frame["label"].to_numpy(),
                                                              test_x).items()}
    for seed in (int(s) for s in args.seeds.split(",") if s):  # --seeds "" runs the baselines only
        config = FraudTrainConfig(negatives=args.negatives, loop=LoopConfig(epochs=args.epochs, seed=seed))
        model, best = train_model(train, valid, config)
        rows[f"held out, seed {seed} ({best['best_epoch']} epochs)"] = test(scores_of(model, test_x))
        rows[f"refit, seed {seed}"] = test(scores_of(refit_model(data, int(best["best_epoch"]), config), test_x))
        print(json.dumps(rows, indent=1), flush=True)
    for name, m in rows.items():
        print(f"{name:32} AUC {m['auc']:.3f}  AP {m['ap']:.3f}  CP@100 {m['cp100']:.3f}")


if __name__ == "__main__":
    main()
