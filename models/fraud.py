"""The fraud detector: a multi-signal attention-fusion network.

Three signals are encoded separately, each by a linear feature embedding followed by
attention (``models.layers.SignalEncoder``):

- the transaction: amount, time of day and weekday, amount relative to the user's history;
- the customer's history: the user windows of the ``fraud_v1`` feature service;
- the network: instrument, device and IP velocities, and terminal risk.

The three representations attend to each other (cross-attention fusion), and two heads
read the fused vector: the fraud logit, and the fraud type when labels carry one. A
linear path from the inputs adds to the fraud logit (wide and deep).
Inputs are standardised with statistics kept in the module, and a checkpoint holds the
config and the feature names, so scoring needs nothing but the file.

>>> config = FraudConfig(signals=(("transaction", 3), ("history", 4), ("network", 2)))
>>> model = FraudNet(config)
>>> logits, loss = model(torch.zeros(5, 9), torch.tensor([0., 1., 0., 0., 1.]))
>>> tuple(logits.shape), loss.item() > 0
((5,), True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from models.configs import FraudConfig
from models.layers import SignalEncoder, Standardize, self_attention


class FraudNet(nn.Module):
    def __init__(self, config: FraudConfig):
        super().__init__()
        self.config = config
        n_features = sum(n for _, n in config.signals)
        self.standardize = Standardize(n_features)
        self.encoders = nn.ModuleList(
            SignalEncoder(n, config.d_model, config.n_heads, config.dropout) for _, n in config.signals)
        self.fusion = nn.MultiheadAttention(config.d_model, config.n_heads, dropout=config.dropout,
                                            batch_first=True)
        self.norm = nn.LayerNorm(config.d_model)
        fused = config.d_model * len(config.signals)
        self.trunk = nn.Sequential(nn.Linear(fused, 2 * config.d_model), nn.GELU(),
                                   nn.Dropout(config.dropout))
        self.fraud_head = nn.Linear(2 * config.d_model, 1)
        # A linear path straight from the inputs ("wide and deep"): simple evidence such as
        # a large amount is learnt at once, and the attention path learns the interactions.
        self.wide = nn.Linear(n_features, 1)
        self.type_head = nn.Linear(2 * config.d_model, config.n_types)

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The fused representation of a (B, F) batch of standardised features."""
        parts = torch.split(z, [n for _, n in self.config.signals], dim=1)
        signals = torch.stack([enc(part) for enc, part in zip(self.encoders, parts, strict=True)],
                              dim=1)  # (B, S, D)
        attended = self_attention(self.fusion, signals)  # (B, S, D): each signal reads the others
        fused = self.norm(signals + attended).flatten(1)  # (B, S * D)
        return self.trunk(fused)  # (B, 2D)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                types: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Fraud logits (B,), and the loss when ``targets`` (B,) are given.

        ``types`` (B,) holds fraud-type indices, with 0 ("unknown") where no type is known.
        """
        z = self.standardize(x)
        hidden = self.hidden(z)
        logits = (self.fraud_head(hidden) + self.wide(z)).squeeze(-1)  # (B,)
        if targets is None:
            return logits, None
        weight = torch.where(targets > 0, self.config.pos_weight, 1.0)
        loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="none")
        if self.config.focal_gamma > 0:  # focal loss: easy orders (most genuine ones) weigh less
            agree = torch.exp(-F.binary_cross_entropy_with_logits(logits, targets, reduction="none"))
            loss = loss * (1 - agree) ** self.config.focal_gamma
        loss = loss.mean()
        if types is not None and bool((types > 0).any()):
            type_logits = self.type_head(hidden)  # (B, T)
            loss = loss + self.config.type_weight * F.cross_entropy(type_logits, types, ignore_index=0)
        return logits, loss

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Fraud logits (B,) of raw features (B, F)."""
        self.eval()
        return self(x)[0]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Fraud probabilities (B,) of raw features (B, F)."""
        return torch.sigmoid(self.logits(x))

    def explain_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,) and each feature's push on the logit (B, F).

        The push is gradient times input in standardised units (the input's distance
        from an average order), so positive values are what raised the score.
        """
        self.eval()
        z = self.standardize(x).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = (self.fraud_head(self.hidden(z)) + self.wide(z)).squeeze(-1)
            logits.sum().backward()  # rows are independent: one pass gives every row's gradient
        return logits.detach(), (z.grad * z).detach()

    def explain(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probabilities (B,) and each feature's push on the logit (B, F)."""
        logits, pushes = self.explain_logits(x)
        return torch.sigmoid(logits), pushes


@dataclass
class Checkpoint:
    """Everything needed to score: the model (a ``FraudNet`` or a ``models.gbm.FraudGBM``,
    either reading some inputs (``models.inputs.Selected``) and calibrated
    (``models.calibration.Calibrated``), or a ``models.ensemble.FraudEnsemble`` of them; its
    kind saved with it), the feature names and what it was trained on."""

    model: FraudNet
    features: list[str]
    meta: dict = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        torch.save({**to_saved(self.model), "features": self.features, "meta": self.meta}, path)
        return path

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return cls(from_saved(saved), list(saved["features"]), dict(saved["meta"]))


def to_saved(model) -> dict:
    """A fraud model of any kind as plain tensors, lists and dicts (``weights_only`` loads it)."""
    from models.calibration import Calibrated
    from models.ensemble import FraudEnsemble
    from models.inputs import Selected

    if isinstance(model, Calibrated):
        return {**to_saved(model.model), "calibration": model.platt.to_data()}
    if isinstance(model, Selected):
        return {**to_saved(model.model), "columns": model.columns, "width": model.width}
    if isinstance(model, FraudEnsemble):
        return {"kind": "ensemble", "members": [to_saved(m) for m in model.members], "weights": model.weights}
    if getattr(model, "kind", "net") == "gbm":
        return {"kind": "gbm", "booster": model.to_string(), "config": model.config_dict()}
    if getattr(model, "kind", "net") == "linear":
        return {"kind": "linear", "width": len(model.weight), "state": model.state_dict()}
    return {"kind": "net", "config": asdict(model.config), "state": model.state_dict()}


def from_saved(saved: dict):
    """The model that ``to_saved`` wrote."""
    from models.calibration import Calibrated, Platt

    if saved.get("kind") == "ensemble":
        from models.ensemble import FraudEnsemble

        model = FraudEnsemble([from_saved(m) for m in saved["members"]], saved["weights"])
    elif saved.get("kind") == "gbm":
        from models.gbm import FraudGBM

        model = FraudGBM.from_string(saved["booster"], saved["config"])
    elif saved.get("kind") == "linear":
        from models.linear import FraudLinear

        model = FraudLinear(saved["width"])
        model.load_state_dict(saved["state"])
        model.eval()
    else:
        config = saved["config"]
        config["signals"] = tuple(tuple(s) for s in config["signals"])
        model = FraudNet(FraudConfig(**config))
        model.load_state_dict(saved["state"])
        model.eval()
    if saved.get("columns") is not None:
        from models.inputs import Selected

        model = Selected(model, saved["columns"], saved["width"])
    return Calibrated(model, Platt(*saved["calibration"])) if saved.get("calibration") else model
