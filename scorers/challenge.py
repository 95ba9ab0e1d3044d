"""Champion and challenger: which model answers which traffic. Pure.

A registered model has one champion and at most one challenger, in one of three modes:

- ``shadow``: the challenger answers all traffic beside the champion, on topics of its own
  (``scores.fraud.shadow``, ``recs.session.shadow``); what downstream reads never changes.
- ``ab``: a share ``weight`` of the users (fraud) or sessions (recs) get the challenger's
  answers instead of the champion's, the same ones every time (``assigned``).
- ``interleave`` (recs only): the share ``weight`` of sessions gets one list drafted from
  both models' lists (``scorers.interleave``).

The split hashes the key with the challenge's ``salt`` (its start time), so a user stays
on one side for the whole challenge and a new challenge draws the sides afresh.

>>> ab = Challenge("7", "ab", 0.5, "1700000000000")
>>> [ab.variant(user) for user in ("u1", "u2", "u3", "u4")]
['champion', 'champion', 'challenger', 'champion']
>>> Challenge("7", "shadow").variant("u1")
'champion'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Mode = Literal["shadow", "ab", "interleave"]
MODES: tuple[str, ...] = ("shadow", "ab", "interleave")
Variant = Literal["champion", "challenger", "shadow", "interleaved"]


def share(key: str, salt: str) -> float:
    """Where ``key`` falls in [0, 1) for the challenge salted ``salt``: uniform, stable."""
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assigned(key: str, weight: float, salt: str) -> bool:
    """Whether ``key`` (a user or session id) is in the challenger's share ``weight``."""
    return share(key, salt) < weight


@dataclass(frozen=True)
class Challenge:
    """The challenger of a registered model: its version, mode, share and salt."""

    version: str
    mode: Mode
    weight: float = 0.0
    salt: str = ""

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.mode != "shadow" and not 0.0 < self.weight < 1.0:
            raise ValueError(f"a {self.mode} challenge needs a weight between 0 and 1, not {self.weight}")

    def variant(self, key: str) -> Variant:
        """Who answers ``key``: the ``challenger`` (A/B), ``interleaved`` lists, or the
        ``champion`` (a shadow answers beside it, never instead)."""
        if self.mode == "shadow" or not assigned(key, self.weight, self.salt):
            return "champion"
        return "challenger" if self.mode == "ab" else "interleaved"
