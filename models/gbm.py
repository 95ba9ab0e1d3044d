"""Gradient-boosted trees for fraud: LightGBM behind the interface of ``models.fraud.FraudNet``.

The second fraud model kind (``shopstream train fraud --kind gbm``). It trains on the
same point-in-time rows as the net, and serves through the same ``predict`` and
``explain``: the probabilities, and each feature's push on the log-odds, here its exact
SHAP value (LightGBM's TreeSHAP, ``pred_contrib``), so that reasons read the same
whichever kind scores.

>>> import numpy as np, torch
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2_000, 3)).astype(np.float32)
>>> y = (x[:, 0] + 0.3 * rng.normal(size=2_000) > 1.2).astype(np.float32)
>>> model = FraudGBM.fit(x, y, GBMConfig(rounds=60))
>>> probs, pushes = model.explain(torch.from_numpy(x[:5]))
>>> tuple(pushes.shape), bool((pushes[:, 0].abs() > pushes[:, 2].abs()).all())
((5, 3), True)
>>> again = FraudGBM.from_string(model.to_string())
>>> bool(torch.allclose(again.predict(torch.from_numpy(x[:5])), probs))
True
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from models.configs import GBMConfig


class FraudGBM:
    """A trained LightGBM booster with the net's ``predict`` and ``explain``."""

    kind = "gbm"

    def __init__(self, booster, config: GBMConfig | None = None):
        self.booster = booster
        self.config = config or GBMConfig()

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, config: GBMConfig, valid: tuple[np.ndarray, np.ndarray] | None = None,
            rounds: int | None = None) -> FraudGBM:
        """Train on ``x``, ``y``; with ``valid``, stop when its AP stops improving; with
        ``rounds``, train exactly that many."""
        import lightgbm as lgb

        train = lgb.Dataset(x, y, free_raw_data=False)
        callbacks, sets = [], []
        if valid is not None:
            sets = [lgb.Dataset(valid[0], valid[1], reference=train)]
            callbacks = [lgb.early_stopping(config.early_stopping, verbose=False)]
        booster = lgb.train(config.params(), train, num_boost_round=rounds or config.rounds, valid_sets=sets,
                            callbacks=callbacks)
        return cls(booster, config)

    @property
    def best_rounds(self) -> int:
        return int(self.booster.best_iteration or self.booster.current_iteration())

    def _x(self, x) -> np.ndarray:
        return (x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)

    def predict(self, x) -> torch.Tensor:
        """Fraud probabilities (B,) of raw features (B, F)."""
        return torch.from_numpy(self.booster.predict(self._x(x), num_iteration=self.best_rounds).astype(np.float32))

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,) and each feature's SHAP value on the log-odds (B, F)."""
        contributions = self.booster.predict(self._x(x), num_iteration=self.best_rounds, pred_contrib=True)
        logits = contributions.sum(axis=1)
        probs = 1.0 / (1.0 + np.exp(-logits))
        return torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(contributions[:, :-1].astype(np.float32))

    def eval(self) -> FraudGBM:  # as a torch module's, for callers that switch modes
        return self

    def to_string(self) -> str:
        return self.booster.model_to_string(num_iteration=self.best_rounds)

    @classmethod
    def from_string(cls, text: str, config: dict | None = None) -> FraudGBM:
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=text), GBMConfig(**(config or {})))

    def config_dict(self) -> dict:
        return asdict(self.config)
