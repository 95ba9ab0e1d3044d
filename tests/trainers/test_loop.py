"""The generic training loop and the fraud metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from trainers.configs import LoopConfig
from trainers.loop import Callback, History, fit
from trainers.metrics import card_precision_at_k, card_precision_ceiling, evaluate, plot


class Logistic(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, targets=None):
        logits = self.linear(x).squeeze(-1)
        loss = None if targets is None else nn.functional.binary_cross_entropy_with_logits(logits, targets)
        return logits, loss


def toy(n=400, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=generator)
    return x, (x[:, 0] > 0).float()


def test_fit_learns_and_keeps_the_best_epoch():
    x, y = toy()
    model = Logistic()
    history = History()

    def validate(m):
        with torch.no_grad():
            accuracy = ((m(x)[0] > 0).float() == y).float().mean().item()
        return {"accuracy": accuracy}

    best = fit(model, [x, y], validate, LoopConfig(epochs=8, batch_size=64, lr=0.1), monitor="accuracy",
               callbacks=[history])
    assert best["accuracy"] > 0.9
    assert best["accuracy"] == max(e["accuracy"] for e in history.epochs)
    assert validate(model)["accuracy"] == best["accuracy"]  # the best weights were restored


def test_fit_stops_early_without_improvement():
    x, y = toy()
    epochs = []

    class Count(Callback):
        def on_epoch(self, epoch, train_loss, metrics):
            epochs.append(epoch)

    best = fit(Logistic(), [x, y], lambda m: {"constant": 1.0}, LoopConfig(epochs=20, patience=2),
               monitor="constant", callbacks=[Count()])
    assert epochs == [1, 2, 3] and best["best_epoch"] == 1


@pytest.mark.parametrize(("k", "expected"), [(1, 1.0), (2, 0.5), (3, 1 / 3)])
def test_card_precision_counts_cards_once_per_day(k, expected):
    frame = pd.DataFrame({"day": ["d1"] * 4 + ["d2"] * 2, "card": ["a", "a", "b", "c", "a", "b"],
                          "score": [0.9, 0.1, 0.8, 0.2, 0.7, 0.6], "label": [0, 1, 0, 0, 1, 0]})
    # d1: a (label 1) then b, c; d2: a (label 1) then b
    assert card_precision_at_k(frame, k) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_no_ranking_beats_the_card_precision_ceiling(seed):
    rng = np.random.default_rng(seed)
    n = 300
    frame = pd.DataFrame({"day": rng.integers(0, 3, n), "card": rng.integers(0, 40, n),
                          "score": rng.random(n), "label": (rng.random(n) < 0.1).astype(int)})
    ceiling = card_precision_ceiling(frame, k=10)
    fraud_cards = frame[frame["label"] == 1].groupby("day")["card"].nunique()
    assert ceiling == pytest.approx((fraud_cards.clip(upper=10) / 10).sum() / frame["day"].nunique())
    assert card_precision_at_k(frame, k=10) <= ceiling


def test_evaluate_and_plots(tmp_path):
    frame = pd.DataFrame({"day": ["d1"] * 6, "card": list("abcdef"),
                          "score": [0.9, 0.8, 0.3, 0.2, 0.1, 0.7], "label": [1, 1, 0, 0, 0, 0]})
    result = evaluate(frame, k=2)
    assert result["auc"] == pytest.approx(1.0) and result["ap"] == pytest.approx(1.0)
    assert result["cp2"] == pytest.approx(1.0) and result["n_fraud"] == 2
    paths = plot({"model": frame}, tmp_path, "test")
    assert [p.name for p in paths] == ["roc.png", "pr.png", "calibration.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
