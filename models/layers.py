"""Layers shared by shopstream's models.

``Standardize`` keeps input statistics inside the module (so a checkpoint needs nothing
else to score), and ``SignalEncoder`` turns a group of numeric features into one vector:
each feature becomes a token (a linear embedding of its value, as in FT-Transformer),
the tokens attend to each other, and a learned summary token reads them out.

``EncoderBlock`` and ``self_attention`` compute what ``nn.TransformerEncoderLayer`` and
``nn.MultiheadAttention`` compute, with the same parameters (checkpoints of either load
into the other), through ``F.scaled_dot_product_attention``. PyTorch's fused fast path
serves only inference without gradients, and every fraud score carries reasons, which
are a backward pass: there the generic path cost a third more.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def self_attention(attention: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    """``attention(x, x, x)[0]`` for a batch-first (B, T, D) input."""
    (b, t, d), h = x.shape, attention.num_heads
    qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)  # (B, T, 3D)
    q, k, v = qkv.view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D/H)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=attention.dropout if attention.training else 0.0)
    return attention.out_proj(out.transpose(1, 2).reshape(b, t, d))


class EncoderBlock(nn.Module):
    """``nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout,
    batch_first=True, norm_first=True)``: pre-norm self-attention, then a ReLU MLP."""

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()  # the same modules in the same order: the same names and initial values
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout1(self_attention(self.self_attn, self.norm1(x)))
        return x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(self.norm2(x))))))


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
        self.attention = EncoderBlock(d_model, n_heads, dim_feedforward=2 * d_model, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.unsqueeze(-1) * self.weight + self.bias  # (B, F, D)
        summary = self.summary.expand(x.shape[0], -1, -1)  # (B, 1, D)
        out = self.attention(torch.cat([summary, tokens], dim=1))  # (B, 1 + F, D)
        return out[:, 0]  # (B, D)
