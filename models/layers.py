"""Layers shared by shopstream's models.

``Standardize`` keeps input statistics inside the module (so a checkpoint needs nothing
else to score), and ``SignalEncoder`` turns a group of numeric features into one vector:
each feature becomes a token (a linear embedding of its value, as in FT-Transformer),
the tokens attend to each other, and a learned summary token reads them out.
"""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """``(x - mean) / std`` with statistics fitted once and saved in the state dict."""

    def __init__(self, n_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: torch.Tensor) -> Standardize:
        """Set the statistics from a (N, F) training matrix."""
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))  # a constant column stays finite
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-10, 10)  # (B, F); outliers cannot blow up


class SignalEncoder(nn.Module):
    """A group of F numeric features in, one D-dimensional representation out."""

    def __init__(self, n_features: int, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_features, d_model) * 0.1)  # value -> token
        self.bias = nn.Parameter(torch.zeros(n_features, d_model))  # which feature it is
        self.summary = nn.Parameter(torch.zeros(1, 1, d_model))
        self.attention = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout,
            batch_first=True, norm_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias  # (B, F, D)
        summary = self.summary.expand(x.shape[0], -1, -1)  # (B, 1, D)
        out = self.attention(torch.cat([summary, tokens], dim=1))  # (B, 1 + F, D)
        return out[:, 0]  # (B, D)
