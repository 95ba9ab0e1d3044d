"""Next-item ranking metrics: HR@k, MRR@k, NDCG@k, catalog coverage@k, popularity bias.

One prediction is a ranked list of items and the item that actually came next.

>>> evaluate([["a", "b"], ["c", "a"], ["b", "c"]], ["b", "a", "x"], k=2, popularity={"a": 4, "b": 2}, catalog=4)
{'hr@2': 0.667, 'mrr@2': 0.333, 'ndcg@2': 0.421, 'coverage@2': 0.75, 'popularity@2': 0.5, 'n': 3}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def evaluate(lists: Sequence[Sequence[str]], targets: Sequence[str], *, k: int = 20,
             popularity: Mapping[str, float] | None = None, catalog: int | None = None,
             digits: int = 3) -> dict[str, float]:
    """Metrics of ranked ``lists`` against the ``targets`` that came next.

    ``coverage@k`` is the share of the ``catalog`` (its size) that appears in any list;
    ``popularity@k`` the mean, over lists, of their items' training popularity relative
    to the most popular item (Ludewig et al.'s POP@k: higher means a bias to bestsellers).
    """
    if len(lists) != len(targets):
        raise ValueError(f"{len(lists)} lists for {len(targets)} targets")
    hits = rr = gain = 0.0
    shown: set[str] = set()
    bias = []
    most = max(popularity.values(), default=0) if popularity else 0
    for ranked, target in zip(lists, targets, strict=True):
        ranked = list(ranked)[:k]
        shown.update(ranked)
        if target in ranked:
            rank = ranked.index(target) + 1
            hits += 1
            rr += 1 / rank
            gain += 1 / math.log2(rank + 1)
        if most and ranked:
            bias.append(sum(popularity.get(i, 0) for i in ranked) / len(ranked) / most)
    n = max(len(targets), 1)
    result = {f"hr@{k}": hits / n, f"mrr@{k}": rr / n, f"ndcg@{k}": gain / n}
    if catalog:
        result[f"coverage@{k}"] = len(shown) / catalog
    if bias:
        result[f"popularity@{k}"] = sum(bias) / len(bias)
    return {**{name: round(value, digits) for name, value in result.items()}, "n": len(targets)}
