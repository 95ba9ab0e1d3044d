"""The trainers' configurations, as plain dataclasses that import no torch: the CLI
(``shopstream train``) takes its defaults from them instead of copying the numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.configs import FraudConfig, GBMConfig


@dataclass
class LoopConfig:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 3  # epochs without a better validation metric before stopping
    grad_clip: float = 1.0
    seed: int = 0


@dataclass
class FraudTrainConfig:
    days: float = 28.0  # length of the training window, validation included
    valid_days: float = 4.0  # the window's last days validate and decide promotion
    delay_days: float = 7.0  # labels are complete only for orders older than this
    negatives: float = 1.0  # share of genuine orders kept (weighted back), to train on more days
    refit: bool = True  # train again on the whole window for the epochs validation chose
    served: bool = True  # the rows workers served where they exist, else the point-in-time join
    model: FraudConfig = field(default_factory=FraudConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    kind: str = "net"  # net: the attention-fusion net; gbm: gradient-boosted trees; linear: logistic
    # regression; ensemble: the three, weighed on validation
    gbm: GBMConfig = field(default_factory=GBMConfig)
    calibrate: bool = False  # serve a net or trees calibrated (an ensemble's members always are)
    net_features: int = 0  # the net reads only this many inputs, those boosted trees rank highest; 0: all
    lrs: tuple[float, ...] = ()  # learning rates the net chooses from by validation AP; (): loop.lr
    gate_baselines: bool = True  # promote only a model that beats LR and GBM on the validation days too


KINDS = ("net", "gbm", "linear", "ensemble")


@dataclass
class RecsTrainConfig:
    days: float = 28.0  # the training window, ending at the newest view logged
    valid_days: float = 1.0  # its last days validate the model and pick the blend
    min_support: int = 1  # items seen fewer times are dropped (Ludewig et al. use 5 on full data)
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.3
    full_softmax_below: int = 200_000  # larger catalogs train with sampled softmax
    neighbour_sessions: int = 200_000  # the most recent sessions that V-SKNN keeps
    blend_step: float = 0.25  # grid step of the blend weights
    refit: bool = True  # retrain on the validation days too, for the epochs validation chose
    max_valid_cases: int = 5000  # a fixed random sample of the validation cases, when there are more
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=40, batch_size=128, lr=2e-3,
                                                                 weight_decay=0.1, patience=8))
    # patience: the one-cycle schedule warms up for the first 30 % of the epochs
