"""What reasons cost: scoring micro-batches of orders with reasons for every score, and
with reasons only for flagged ones (``SHOPSTREAM_SCORING__REASONS_FOR``), in one run.

Run with ``python -m bench.fraud_reasons [--batch 64] [--flagged 0.02]``. The model is an
untrained ``FraudNet`` of the serving size (time does not depend on the weights); the
review threshold is set so that the given share of orders is flagged. Prints the time per
order of each mode and writes ``bench/results/fraud-reasons-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from models.configs import FraudConfig
from models.fraud import Checkpoint, FraudNet
from scorers.fraud import FEATURES, SIGNALS, FraudScorer, ModelPredictor, matrix
from tools.simulator import Shop, SimConfig, default_start

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="orders per micro-batch")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--flagged", type=float, default=0.02, help="share of orders flagged")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # as a worker runs it (SHOPSTREAM_SCORING__TORCH_THREADS)
    config = FraudConfig(signals=tuple((name, len(names)) for name, names in SIGNALS.items()))
    predictor = ModelPredictor(Checkpoint(FraudNet(config), list(FEATURES), {}), "bench")
    sim = SimConfig(seed=3)
    events = Shop(sim).events(start=default_start(args.batch * 40, sim), n=args.batch * 40)
    orders = [e for e in events if type(e).__name__ == "Order"][: args.batch]
    online = [{} for _ in orders]
    probs = predictor.predict(matrix(orders, online))
    review = float(np.quantile(probs, 1 - args.flagged)) if args.flagged > 0 else 1.1
    result = {"time": datetime.now(UTC).isoformat(), "batch": len(orders), "flagged_share": args.flagged}
    for mode in ("all", "flagged"):
        scorer = FraudScorer(predictor, review=review, block=max(review, 0.999), reasons_for=mode)
        scorer.score(orders, online)  # warm-up
        started = time.perf_counter()
        for _ in range(args.batches):
            scorer.score(orders, online)
        per_order = (time.perf_counter() - started) / (args.batches * len(orders))
        result[f"us_per_order_{mode}"] = per_order * 1e6
        print(f"reasons for {mode:>7}: {per_order * 1e6:7.1f} µs per order "
              f"(batches of {len(orders)}, {args.flagged:.0%} flagged)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"fraud-reasons-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
