"""Nearest items by inner product: a faiss index over item embeddings.

Below ``exact_below`` items the index is exact (``IndexFlatIP``); above it, HNSW
(``IndexHNSWFlat`` with inner product), whose recall against the exact search is
measured by ``bench/recs_latency.py``. An index travels as bytes (``to_bytes``), so it
is registered with the model it came from and needs no file of its own.

>>> import numpy as np
>>> index = ItemIndex.build(np.eye(3, dtype="float32"), ["a", "b", "c"])
>>> index.search(np.array([[0.1, 0.9, 0.5]], dtype="float32"), 2)
[[('b', 0.9), ('c', 0.5)]]
>>> ItemIndex.from_bytes(index.to_bytes(), ["a", "b", "c"]).search(np.eye(3, dtype="float32")[:1], 1)
[[('a', 1.0)]]
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

EXACT_BELOW = 50_000
"""Catalog size up to which the search is exact (see bench/recs_latency.py)."""


class ItemIndex:
    def __init__(self, index: faiss.Index, ids: Sequence[str]):
        if index.ntotal != len(ids):
            raise ValueError(f"the index holds {index.ntotal} vectors but {len(ids)} ids were given")
        self.index = index
        self.ids = list(ids)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], *, exact_below: int = EXACT_BELOW,
              hnsw_m: int = 32, ef_search: int = 128) -> ItemIndex:
        vectors = np.ascontiguousarray(vectors, dtype="float32")  # (N, C)
        if len(vectors) < exact_below:
            index = faiss.IndexFlatIP(vectors.shape[1])
        else:
            index = faiss.IndexHNSWFlat(vectors.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 64
            index.hnsw.efSearch = ef_search
        index.add(vectors)
        return cls(index, ids)

    @property
    def exact(self) -> bool:
        return isinstance(self.index, faiss.IndexFlat)

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[set[str]] = ()) -> list[list[tuple[str, float]]]:
        """The ``k`` best ``(item, score)`` per query (B, C), leaving out each query's
        ``exclude`` set (the search asks for enough extra to fill ``k`` after it)."""
        extra = max((len(e) for e in exclude), default=0)
        scores, found = self.index.search(np.ascontiguousarray(queries, dtype="float32"),
                                          min(k + extra, len(self.ids)))  # (B, k + extra)
        results = []
        for row in range(len(queries)):
            skip = exclude[row] if row < len(exclude) else set()
            hits = [(self.ids[i], round(float(s), 6)) for i, s in zip(found[row], scores[row], strict=True)
                    if i >= 0 and self.ids[i] not in skip]
            results.append(hits[:k])
        return results

    def to_bytes(self) -> np.ndarray:
        return faiss.serialize_index(self.index)  # uint8 array

    @classmethod
    def from_bytes(cls, data: np.ndarray, ids: Sequence[str], ef_search: int = 128) -> ItemIndex:
        index = faiss.deserialize_index(np.asarray(data, dtype="uint8"))
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = ef_search
        return cls(index, ids)
