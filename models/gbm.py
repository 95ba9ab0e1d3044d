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


def _stop_early(patience: int, min_rounds: int):
    """LightGBM's early stopping on the validation metric, but choosing among rounds from
    ``min_rounds`` on: with few frauds in the validation days, AP after one or three trees
    can beat every later round by chance (it did on the first fortnight of the Q2
    transactions), and a three-tree model generalises worse than its score there says."""
    import lightgbm as lgb

    best = {"score": -np.inf, "round": 0}

    def callback(env) -> None:
        round_ = env.iteration + 1
        score = env.evaluation_result_list[0][2]
        if round_ >= min_rounds and score > best["score"]:
            best.update(score=score, round=round_, results=env.evaluation_result_list)
        if round_ >= min_rounds and round_ - best["round"] >= patience:
            raise lgb.callback.EarlyStopException(best["round"] - 1, best["results"])

    callback.order = 30
    return callback


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
            callbacks = [_stop_early(config.early_stopping, config.min_rounds)]
        booster = lgb.train(config.params(), train, num_boost_round=rounds or config.rounds, valid_sets=sets,
                            callbacks=callbacks)
        return cls(booster, config)

    @property
    def best_rounds(self) -> int:
        return int(self.booster.best_iteration or self.booster.current_iteration())

    def ranking(self) -> list[int]:
        """The input columns, the one whose splits gained the most first."""
        gain = self.booster.feature_importance(importance_type="gain", iteration=self.best_rounds)
        return [int(j) for j in np.argsort(-gain, kind="stable")]

    def _x(self, x) -> np.ndarray:
        return (x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)

    def logits(self, x) -> torch.Tensor:
        """Fraud log-odds (B,) of raw features (B, F)."""
        raw = self.booster.predict(self._x(x), num_iteration=self.best_rounds, raw_score=True)
        return torch.from_numpy(raw.astype(np.float32))

    def predict(self, x) -> torch.Tensor:
        """Fraud probabilities (B,) of raw features (B, F)."""
        return torch.from_numpy(self.booster.predict(self._x(x), num_iteration=self.best_rounds).astype(np.float32))

    def explain_logits(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-odds (B,) and each feature's SHAP value on them (B, F)."""
        contributions = self.booster.predict(self._x(x), num_iteration=self.best_rounds, pred_contrib=True)
        return (torch.from_numpy(contributions.sum(axis=1).astype(np.float32)),
                torch.from_numpy(contributions[:, :-1].astype(np.float32)))

    def explain(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,) and each feature's SHAP value on the log-odds (B, F)."""
        logits, pushes = self.explain_logits(x)
        return torch.sigmoid(logits), pushes

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
