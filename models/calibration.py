"""Platt scaling: a fraud model's logits rescaled so that its scores are probabilities.

A model trained with class weights or on a subsample of genuine orders ranks well but
over-states fraud: a score of 0.5 is not one fraud in two. ``Platt.fit`` learns
``sigmoid(a * logit + b)`` on held-out orders (the trainer's validation days, which the
model did not train on), and ``Calibrated`` wraps any fraud model (``predict``,
``explain`` and ``logits``) with it. The rescaling is monotone, so a single model's
ranking (AUC, AP) is unchanged; what changes is the meaning of the decision thresholds,
and that an ensemble can add its members' logits on one scale.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.normal(size=20_000)                      # the true log-odds
>>> labels = (rng.random(20_000) < 1 / (1 + np.exp(-truth))).astype(float)
>>> platt = Platt.fit(3 * truth + 2, labels)             # a model three times too sure, biased
>>> round(platt.a, 1), round(platt.b, 1)
(0.3, -0.7)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Platt:
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> Platt:
        """The scaling that best predicts ``labels`` from ``logits`` (log loss); the
        identity when the labels are all one class."""
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(labels)
        if labels.min() == labels.max():
            return cls()
        fitted = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(logits, np.float64).reshape(-1, 1), labels)
        a = float(fitted.coef_[0, 0])
        return cls(a, float(fitted.intercept_[0])) if a > 0 else cls()  # never turn the ranking around

    def to_data(self) -> list[float]:
        return [self.a, self.b]


class Calibrated:
    """``model`` with its logits rescaled by ``platt``; pushes on the logit scale are
    rescaled with them, so reasons still add up to the logit."""

    def __init__(self, model, platt: Platt):
        self.model, self.platt = model, platt

    @property
    def kind(self) -> str:
        return getattr(self.model, "kind", "net")

    def logits(self, x) -> torch.Tensor:
        return self.platt.a * self.model.logits(x) + self.platt.b

    def predict(self, x) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.model.explain_logits(x)
        return torch.sigmoid(self.platt.a * logits + self.platt.b), self.platt.a * pushes

    def explain_logits(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.model.explain_logits(x)
        return self.platt.a * logits + self.platt.b, self.platt.a * pushes

    def eval(self) -> Calibrated:
        self.model.eval()
        return self
