"""Logistic regression on standardised inputs, as a fraud model an ensemble can hold.

The rolling-origin evaluation (docs/evaluation.md) found that logistic regression ranks
the whole test week best (AUC) while the net and the trees rank its top best (AP): the
linear model keeps growing its score with the amount and the spending ratios where trees
flatten out, so it still places the rare fraud that looks unlike the training frauds above
most genuine orders. ``FraudLinear`` is that model as a small torch module (the scaling
and the weights are buffers of its ``state_dict``), fitted by scikit-learn, so that an
ensemble can add its logit to the others' and explain it: a feature's push on the logit is
its weight times its standardised value, and the pushes plus the bias are the logit.

>>> import numpy as np, torch
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2_000, 3)) * [1.0, 10.0, 0.1]
>>> y = (x[:, 0] + x[:, 1] / 10 + rng.normal(size=2_000) > 1.5).astype(int)
>>> model = FraudLinear.fit(x, y)
>>> logits, pushes = model.explain_logits(torch.from_numpy(x[:4]).float())
>>> bool(torch.allclose(pushes.sum(1) + model.bias, logits, atol=1e-5))
True
>>> [round(float(w)) for w in model.weight / model.weight[0]]  # per standard deviation
[1, 1, 0]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class FraudLinear(nn.Module):
    kind = "linear"

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("weight", torch.zeros(width))
        self.register_buffer("bias", torch.zeros(()))

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, max_iter: int = 2000) -> FraudLinear:
        """scikit-learn's ``StandardScaler`` and ``LogisticRegression`` (L2, C=1) on ``x``."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        fitted = LogisticRegression(max_iter=max_iter).fit(scaler.transform(x), labels)
        model = cls(x.shape[1])
        for name, value in (("mean", scaler.mean_), ("scale", scaler.scale_), ("weight", fitted.coef_[0]),
                            ("bias", fitted.intercept_[0])):
            getattr(model, name).copy_(torch.as_tensor(value, dtype=torch.float32))
        return model.eval()

    def pushes(self, x) -> torch.Tensor:
        """Each feature's push on the logit (B, F)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        return (x - self.mean) / self.scale * self.weight

    def logits(self, x) -> torch.Tensor:
        """Fraud log-odds (B,) of raw features (B, F)."""
        return self.pushes(x).sum(dim=1) + self.bias

    def forward(self, x) -> torch.Tensor:
        return self.logits(x)

    def predict(self, x) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def explain_logits(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        pushes = self.pushes(x)
        return pushes.sum(dim=1) + self.bias, pushes

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.explain_logits(x)
        return torch.sigmoid(logits), pushes
