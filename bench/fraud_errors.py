"""Which test frauds could a model have caught? An error analysis of an ``eval fraud`` run.

Not a speed bench: it reads ``DIR/scores.parquet`` that ``shopstream eval fraud --output
DIR`` leaves and the transaction file, keeps the rows the metrics keep (cards known to be
compromised before the day are left out), and puts every test fraud in the first group
whose signal was visible when it happened:

- ``terminal``: a fraud at the same terminal had been confirmed (its label arrived) in
  the last 30 days;
- ``amount``: the amount is at least 3 times the card's mean of the previous 30 days;
- ``neither``: nothing the features describe set it apart.

For each group and model it prints the share of frauds ranked in the top 1% (above the
99th percentile of the genuine transactions' scores), and the card precision@100 of a
perfect ranking::

    python -m bench.fraud_errors --scores eval-fraud/scores.parquet \\
        --transactions ../shared/data/fraud-transactions-2018q2.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from evals.fraud import metric_frame, without_known_compromised
from trainers.metrics import card_precision_ceiling

WINDOW = pd.Timedelta(days=30)
AMOUNT_RATIO = 3.0


def groups(test: pd.DataFrame, frame: pd.DataFrame, delay: pd.Timedelta) -> pd.Series:
    """The group of each fraud in ``test`` (rows of ``frame``); genuine rows get ``genuine``."""
    frauds = frame[frame["TX_FRAUD"] == 1]
    arrived = {terminal: np.sort((g["TX_DATETIME"] + delay).to_numpy("datetime64[ns]"))
               for terminal, g in frauds.groupby("TERMINAL_ID")}
    history = {c: g.sort_values("TX_DATETIME") for c, g in frame.groupby("CUSTOMER_ID")}

    def group(row) -> str:
        if not row["TX_FRAUD"]:
            return "genuine"
        t = row["TX_DATETIME"].to_datetime64()
        known = arrived.get(row["TERMINAL_ID"], np.array([], dtype="datetime64[ns]"))
        if ((known <= t) & (known > t - WINDOW.to_timedelta64())).any():
            return "terminal"
        card = history[row["CUSTOMER_ID"]]
        before = card[(card["TX_DATETIME"] < row["TX_DATETIME"])
                      & (card["TX_DATETIME"] >= row["TX_DATETIME"] - WINDOW)]
        if len(before) and row["TX_AMOUNT"] >= AMOUNT_RATIO * before["TX_AMOUNT"].mean():
            return "amount"
        return "neither"

    return test.apply(group, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, required=True)
    parser.add_argument("--transactions", type=Path, required=True)
    parser.add_argument("--delay-days", type=float, default=7.0)
    args = parser.parse_args()

    frame = pd.read_parquet(args.transactions)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"], utc=True)
    scores = pd.read_parquet(args.scores)
    scores["customer_id"] = scores["customer_id"].astype(str)
    kept = without_known_compromised(scores, frame, args.delay_days)
    test = frame.set_index("TRANSACTION_ID").loc[kept["transaction_id"]].reset_index()
    kept = kept.assign(group=groups(test, frame, pd.Timedelta(days=args.delay_days)).to_numpy())

    models = [c for c in ("score", "score_logreg", "score_gbm") if c in kept]
    genuine = kept[kept["group"] == "genuine"]
    print(f"{len(kept):,} test transactions, {int(kept['label'].sum())} frauds "
          f"(known-compromised cards removed)")
    print(f"{'group':10} {'frauds':>6}  " + "  ".join(f"{m:>12}" for m in models) + "   (share in the top 1%)")
    for name in ("terminal", "amount", "neither"):
        rows = kept[kept["group"] == name]
        shares = [(rows[m] > genuine[m].quantile(0.99)).mean() if len(rows) else float("nan") for m in models]
        print(f"{name:10} {len(rows):6}  " + "  ".join(f"{s:12.2f}" for s in shares))
    ceiling = card_precision_ceiling(metric_frame(kept, kept["label"]))
    print(f"card precision@100 of a perfect ranking: {ceiling:.3f}")


if __name__ == "__main__":
    main()
