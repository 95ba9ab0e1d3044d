"""Several fraud models together: a weighted sum of their calibrated logits.

The attention-fusion net, gradient-boosted trees and logistic regression rank different
frauds first: on the rolling-origin evaluation of the Q2 transactions (docs/evaluation.md)
logistic regression led on AUC (the whole week's ranking) and the net and the trees on
average precision (its top), so their blend ranks better than any of them. Each member
is ``models.calibration.Calibrated`` first, so that the logits are on one scale; the
weights are chosen on the trainer's validation days (``trainers.fraud.fit_kind``).
Reasons are the weighted sums of the members' pushes on the logit (the net's gradient
times input, the trees' SHAP values, the linear model's weight times input), so they
still add up to the logit.

>>> import torch
>>> class Constant:
...     def __init__(self, value): self.value = value
...     def logits(self, x): return torch.full((len(x),), self.value)
...     def explain_logits(self, x): return self.logits(x), torch.full(x.shape, self.value / x.shape[1])
>>> blend = FraudEnsemble([Constant(2.0), Constant(-2.0)], [0.75, 0.25])
>>> blend.logits(torch.zeros(1, 4)).tolist(), blend.explain(torch.zeros(1, 4))[1].sum().item()
([1.0], 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FraudEnsemble:
    kind = "ensemble"

    def __init__(self, members: Sequence, weights: Sequence[float]):
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member, and a member")
        self.members, self.weights = list(members), [float(w) for w in weights]

    def logits(self, x) -> torch.Tensor:
        return sum(w * m.logits(x) for m, w in zip(self.members, self.weights, strict=True) if w)

    def predict(self, x) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def explain_logits(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [(w, m.explain_logits(x)) for m, w in zip(self.members, self.weights, strict=True) if w]
        return sum(w * logits for w, (logits, _) in parts), sum(w * pushes for w, (_, pushes) in parts)

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.explain_logits(x)
        return torch.sigmoid(logits), pushes

    def eval(self) -> FraudEnsemble:
        for member in self.members:
            member.eval()
        return self
