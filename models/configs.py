"""The models' configurations, as plain dataclasses that import no torch: the CLI takes
its defaults from them (through ``trainers.configs``) and starts in under a second.
Each model module imports its own from here."""

from __future__ import annotations

from dataclasses import dataclass

FRAUD_TYPES = ("unknown", "card_testing", "account_takeover", "compromised_terminal",
               "compromised_card", "large_amount")
"""Fraud-type classes; a label without a known type is "unknown" and trains no type head."""


@dataclass
class FraudConfig:
    signals: tuple[tuple[str, int], ...] = ()  # (signal name, number of features), in input order
    d_model: int = 32
    n_heads: int = 4
    dropout: float = 0.1
    n_types: int = len(FRAUD_TYPES)
    pos_weight: float = 1.0  # weight of a fraud row in the loss: class imbalance
    type_weight: float = 0.2  # the fraud-type loss is an auxiliary task
    focal_gamma: float = 0.0  # > 0: focal loss (Lin et al.), which weighs easy orders down


@dataclass
class SequenceConfig:
    n_items: int  # catalog size, without the padding index 0
    max_len: int = 50  # the newest items of a session that the model sees
    d_model: int = 64
    n_heads: int = 2
    n_layers: int = 2
    dropout: float = 0.2  # sessions are short and catalogs sparse: regularise hard
    sampled: int = 0  # negatives per batch for sampled softmax; 0 means full softmax

    RENAMED = {"dim": "d_model", "heads": "n_heads", "layers": "n_layers"}  # in checkpoints before 2026-12-03

    @classmethod
    def from_saved(cls, saved: dict) -> SequenceConfig:
        """The config a checkpoint saved, under the names of any version."""
        return cls(**{cls.RENAMED.get(name, name): value for name, value in saved.items()})


@dataclass(frozen=True)
class GBMConfig:
    """LightGBM's knobs; the defaults suit tens of thousands of orders with few frauds."""

    rounds: int = 600
    """Most boosting rounds (early stopping on validation AP usually stops sooner)."""
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    pos_weight: float = 1.0
    """Weight of a fraud relative to a genuine order."""
    early_stopping: int = 50
    """Rounds without a better validation AP before training stops."""
    min_rounds: int = 100
    """The fewest rounds early stopping may choose."""
    seed: int = 0

    def params(self) -> dict:
        return {"objective": "binary", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
                "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
                "bagging_fraction": self.bagging_fraction, "bagging_freq": 1, "scale_pos_weight": self.pos_weight,
                "metric": "average_precision", "seed": self.seed, "deterministic": True, "num_threads": 1,
                "verbosity": -1}
