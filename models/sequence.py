"""A self-attentive sequence recommender in the style of SASRec (Kang and McAuley, 2018).

The items a session has seen, oldest first, go through item and position embeddings and
a stack of causal self-attention blocks; the hidden state at each position, dotted with
the (shared) item embeddings, scores every item as the next one. Trained next-item at
every position at once, with full softmax over the catalog, or sampled softmax when the
catalog is too large for a full one.

Serving encodes a session to one vector (``encode``, the last position's state), and the
best next items are those whose embeddings have the largest dot product with it, so the
item embeddings go to a faiss index (``scorers.retrieval``) and a million-item catalog
costs one vector search per session.

Item index 0 is padding: sequences are left-padded to ``max_len``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.configs import SequenceConfig


class SequenceRecommender(nn.Module):
    def __init__(self, config: SequenceConfig):
        super().__init__()
        self.config = config
        self.items = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.positions = nn.Embedding(config.max_len, config.d_model)
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, dim_feedforward=config.d_model * 2,
                                           dropout=config.dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        causal = torch.triu(torch.ones(config.max_len, config.max_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)
        nn.init.normal_(self.items.weight, std=0.05)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def hidden(self, seq: torch.Tensor) -> torch.Tensor:
        """The state after every position (B, T, C) of left-padded item indices (B, T)."""
        T = seq.shape[1]
        positions = torch.arange(T, device=seq.device)
        x = self.items(seq) * self.config.d_model ** 0.5 + self.positions(positions)  # (B, T, C)
        # As in SASRec, padding is zeroed rather than masked out of attention: with left
        # padding and a causal mask, a key-padding mask leaves padded queries nothing to
        # attend to, and their NaNs would spread through the next block.
        x = self.dropout(x) * (seq > 0).unsqueeze(-1)
        x = self.blocks(x, mask=self.causal[:T, :T])  # (B, T, C)
        return self.norm(x)

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None):
        """Next-item logits at every position, and the loss when ``targets`` (B, T) are
        given (0 where there is no target)."""
        h = self.hidden(seq)  # (B, T, C)
        if targets is None:
            return h[:, -1] @ self.items.weight.T, None  # (B, n_items + 1)
        mask = targets > 0
        h, targets = h[mask], targets[mask]  # (N, C), (N,)
        if self.config.sampled and self.config.sampled < self.config.n_items:
            # Sampled softmax: the true item against shared uniform negatives, corrected
            # by log(n / sampled) so the logits stay calibrated to the full catalog.
            negatives = torch.randint(1, self.config.n_items + 1, (self.config.sampled,), device=h.device)
            candidates = torch.cat([targets, negatives])  # (N + S,)
            logits = h @ self.items.weight[candidates].T  # (N, N + S)
            logits[:, len(targets):] += torch.log(torch.tensor(self.config.n_items / self.config.sampled))
            labels = torch.arange(len(targets), device=h.device)
            logits = logits.masked_fill(candidates[None, :] == targets[:, None], float("-inf"))
            logits[labels, labels] = (h * self.items.weight[targets]).sum(-1)
            return logits, F.cross_entropy(logits, labels)
        logits = h @ self.items.weight.T  # (N, n_items + 1)
        logits[:, 0] = float("-inf")
        return logits, F.cross_entropy(logits, targets)

    @torch.no_grad()
    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """One query vector per session (B, C): its state after the newest item."""
        self.eval()
        return self.hidden(seq)[:, -1]

    def item_vectors(self) -> torch.Tensor:
        """The item embeddings that queries are matched against (n_items, C), without padding."""
        return self.items.weight[1:].detach()


def left_pad(sequences: list[list[int]], max_len: int) -> torch.Tensor:
    """Item-index sequences as a left-padded (B, max_len) tensor of their newest items.

    >>> left_pad([[1, 2], [3, 4, 5, 6]], 3).tolist()
    [[0, 1, 2], [4, 5, 6]]
    """
    out = torch.zeros(len(sequences), max_len, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tail = seq[-max_len:]
        if tail:
            out[row, max_len - len(tail):] = torch.tensor(tail)
    return out


@dataclass
class SequenceCheckpoint:
    """The model with its item vocabulary: index ``i`` is ``vocab[i - 1]``."""

    model: SequenceRecommender
    vocab: list[str]
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"config": asdict(self.model.config), "state": self.model.state_dict(),
                "vocab": self.vocab, "meta": self.meta}

    @classmethod
    def from_dict(cls, saved: dict) -> SequenceCheckpoint:
        model = SequenceRecommender(SequenceConfig.from_saved(saved["config"]))
        model.load_state_dict(saved["state"])
        model.eval()
        return cls(model, list(saved["vocab"]), dict(saved["meta"]))

    def save(self, path: Path) -> Path:
        torch.save(self.to_dict(), path)
        return path

    @classmethod
    def load(cls, path: Path) -> SequenceCheckpoint:
        return cls.from_dict(torch.load(path, map_location="cpu", weights_only=True))
