"""The fraud trainer's refit on every day, and the champion gate that stays fair after it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from models.fraud import Checkpoint
from scorers.fraud import FEATURES
from shopstream.settings import Settings
from trainers.configs import FraudTrainConfig, LoopConfig
from trainers.fraud import (
    Dataset,
    beats_champion,
    new_model,
    refit_model,
    unseen_by,
)
from trainers.loop import History
from trainers.registry import Registry

START = datetime(2026, 1, 1, tzinfo=UTC)
SPLIT = START + timedelta(days=2)  # the validation days: [SPLIT, SPLIT + 2 days)


def dataset(n: int, days: float, start: datetime, seed: int = 0) -> Dataset:
    """Orders spread over ``days``; fraud is whatever has a high first feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    label = (x[:, 0] > 1.2).astype(int)
    frame = pd.DataFrame({
        "order_id": [f"o{seed}-{i}" for i in range(n)],
        "event_timestamp": pd.to_datetime([start + timedelta(days=days * i / n) for i in range(n)], utc=True),
        "label": label, "fraud_type": np.where(label == 1, "card_testing", ""),
        "payment_fingerprint": [f"card-{i % 40}" for i in range(n)]})
    return Dataset(frame, x)


CONFIG = FraudTrainConfig(loop=LoopConfig(epochs=2, batch_size=64))


def test_refit_trains_on_every_row_for_exactly_the_chosen_epochs():
    train, valid = dataset(300, 2, START), dataset(200, 2, SPLIT, seed=1)
    everything = Dataset(pd.concat([train.frame, valid.frame], ignore_index=True),
                         np.concatenate([train.x, valid.x]))
    history = History()
    model = refit_model(everything, 3, CONFIG, [history])
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]  # no early stop, nothing held out
    # Its input statistics are those of all the rows, validation days included.
    assert torch.allclose(model.standardize.mean, torch.from_numpy(everything.x.mean(0)), atol=1e-5)
    assert not torch.allclose(model.standardize.mean, torch.from_numpy(train.x.mean(0)), atol=1e-3)
    assert not model.training


@pytest.mark.parametrize(("fit_end", "expected"), [
    (None, 200),  # an older model stopped before its own validation days
    (SPLIT + timedelta(days=1), 100),  # trained through the first validation day
    (SPLIT + timedelta(days=2), 0),  # refit on the whole window
])
def test_only_validation_orders_the_champion_never_saw_judge_it(fit_end, expected):
    valid = dataset(200, 2, SPLIT, seed=1)
    model, _ = new_model(valid, CONFIG)
    meta = {} if fit_end is None else {"fit_end": fit_end.isoformat()}
    assert len(unseen_by(Checkpoint(model, list(FEATURES), meta), valid, SPLIT).x) == expected


def champion(registry: Registry, tmp_path, fit_end: datetime | None) -> None:
    model, _ = new_model(dataset(100, 1, START, seed=3), CONFIG)
    meta = {} if fit_end is None else {"fit_end": fit_end.isoformat()}
    path = Checkpoint(model, list(FEATURES), meta).save(tmp_path / "champion.pt")
    registry.promote(registry.register(path, metrics={"ap": 0.5}, params={}, tags={}).version)


def test_the_gate_compares_on_unseen_orders_and_keeps_a_champion_it_cannot_judge(tmp_path):
    registry = Registry(Settings(home=tmp_path / "home"))
    valid = dataset(400, 2, SPLIT, seed=1)
    assert valid.frame["label"].sum() > 0
    new, _ = new_model(valid, CONFIG)
    assert beats_champion(registry, new, valid, SPLIT) == (True, None)  # no champion yet

    champion(registry, tmp_path, SPLIT + timedelta(days=1))
    _, theirs = beats_champion(registry, new, valid, SPLIT)
    assert theirs["n_valid"] == 200 and 0 <= theirs["ap"] <= 1 and 0 <= theirs["new_ap"] <= 1

    champion(registry, tmp_path, SPLIT + timedelta(days=2))  # it has seen every validation order
    wins, theirs = beats_champion(registry, new, valid, SPLIT)
    assert not wins and theirs["n_valid"] == 0 and math.isnan(theirs["ap"])


@pytest.mark.parametrize("negatives", [1.0, 0.5, 0.2])
def test_subsampled_genuine_orders_are_weighted_back(negatives):
    """Keeping a share of genuine orders must not change the loss the model minimises:
    each kept one stands for 1 / negatives of them, so the fraud rows' relative weight
    falls by the same share."""
    data = dataset(4000, 4, START)
    n_fraud = int(data.frame["label"].sum())
    model, (x, labels, _) = new_model(data, FraudTrainConfig(negatives=negatives))
    full_weight = math.sqrt((len(data.x) - n_fraud) / n_fraud)
    assert model.config.pos_weight == pytest.approx(full_weight * negatives)
    assert int(labels.sum()) == n_fraud  # every fraud is kept
    assert len(x) - n_fraud == pytest.approx((len(data.x) - n_fraud) * negatives, rel=0.1)
