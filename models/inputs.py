"""A fraud model that reads some of the inputs: the columns it was trained on, picked out of
the full feature matrix the scorer builds, with its pushes put back in place (zero for
the inputs it does not read), so that reasons still name features by position.

The trainer gives the net only the inputs gradient boosting ranks highest
(``FraudTrainConfig.net_features``): fewer, stronger inputs train faster and overfit less.

>>> import torch
>>> class Sum:
...     def logits(self, x): return x.sum(1)
...     def explain_logits(self, x): return x.sum(1), x
>>> model = Selected(Sum(), [0, 2], width=4)
>>> x = torch.tensor([[1.0, 10.0, 2.0, 100.0]])
>>> model.logits(x).tolist(), model.explain_logits(x)[1].tolist()
([3.0], [[1.0, 0.0, 2.0, 0.0]])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Selected:
    def __init__(self, model, columns: Sequence[int], width: int):
        self.model, self.columns, self.width = model, [int(c) for c in columns], int(width)

    @property
    def kind(self) -> str:
        return getattr(self.model, "kind", "net")

    def _x(self, x) -> torch.Tensor:
        x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
        return x[:, self.columns]

    def logits(self, x) -> torch.Tensor:
        return self.model.logits(self._x(x))

    def predict(self, x) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def explain_logits(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.model.explain_logits(self._x(x))
        full = torch.zeros((len(pushes), self.width), dtype=pushes.dtype)
        full[:, self.columns] = pushes
        return logits, full

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pushes = self.explain_logits(x)
        return torch.sigmoid(logits), pushes

    def eval(self) -> Selected:
        self.model.eval()
        return self
