"""Reference profiles: what a model was trained on, kept with its checkpoint as plain
data, for drift to be measured against (``scorers.drift``). Pure code, no I/O.

A ``ModelProfile`` holds a ``NumericProfile`` per model input (quantile bins, summary
statistics and a sample), the inputs' joint structure as a PCA whose reconstruction
error on live rows grows when their relations change, the score distribution on
validation, and the validation error rate.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

OTHER = "__other__"
"""The category that stands for every value outside a categorical profile's top ones."""


@dataclass
class NumericProfile:
    """A numeric input as the model saw it in training: quantile bins (the inner edges and
    the share of values in each bin), summary statistics and a sample for two-sample tests.

    >>> profile = NumericProfile.of(range(100), bins=4)
    >>> profile.edges, profile.shares
    ([24.75, 49.5, 74.25], [0.25, 0.25, 0.25, 0.25])
    >>> profile.counts([0, 30, 30, 99]).tolist()
    [1, 2, 0, 1]
    """

    edges: list[float]
    shares: list[float]
    mean: float
    std: float
    n: int
    sample: list[float]

    @classmethod
    def of(cls, values: Iterable[float], bins: int = 10, sample: int = 2_000, seed: int = 0) -> NumericProfile:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
        if not len(x):
            raise ValueError("a numeric profile needs at least one finite value")
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
        shares = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1) / len(x)
        kept = x if len(x) <= sample else np.random.default_rng(seed).choice(x, sample, replace=False)
        return cls(edges.tolist(), shares.tolist(), float(x.mean()), float(x.std()), len(x), sorted(kept.tolist()))

    def rank(self, value: float) -> float:
        """The share of the sample below ``value``, ties counted half: for values from the
        profiled distribution, spread evenly over [0, 1] however heavy its tail.

        >>> profile = NumericProfile.of(range(100))
        >>> profile.rank(-5.0), profile.rank(49.0), profile.rank(1e9)
        (0.0, 0.495, 1.0)
        """
        sample = self._sorted
        below = np.searchsorted(sample, value, side="left")
        return float((below + np.searchsorted(sample, value, side="right")) / (2 * len(sample)))

    @functools.cached_property
    def _sorted(self) -> np.ndarray:
        return np.asarray(self.sample, np.float64)

    def counts(self, values: Sequence[float]) -> np.ndarray:
        """How many of ``values`` fall in each of the profile's bins."""
        return np.bincount(np.searchsorted(self.edges, np.asarray(values, np.float64), side="right"),
                           minlength=len(self.shares))

    def to_data(self) -> dict:
        return {"kind": "numeric", **asdict(self)}


@dataclass
class CategoricalProfile:
    """A categorical input in training: the shares of its ``top`` values, the rest as one.

    >>> profile = CategoricalProfile.of(["a"] * 6 + ["b"] * 3 + ["c"], top=2)
    >>> profile.shares
    {'a': 0.6, 'b': 0.3, '__other__': 0.1}
    >>> profile.counts(["a", "z", "z"]).tolist()
    [1, 0, 2]
    """

    shares: dict[str, float]
    n: int

    @classmethod
    def of(cls, values: Iterable[str], top: int = 50) -> CategoricalProfile:
        seen: dict[str, int] = {}
        for value in values:
            seen[value] = seen.get(value, 0) + 1
        n = sum(seen.values())
        if not n:
            raise ValueError("a categorical profile needs at least one value")
        kept = sorted(seen, key=lambda v: (-seen[v], v))[:top]
        shares = {v: seen[v] / n for v in kept}
        shares[OTHER] = (n - sum(seen[v] for v in kept)) / n
        return cls(shares, n)

    def counts(self, values: Sequence[str]) -> np.ndarray:
        """How many of ``values`` are each of the profile's categories (the rest as one)."""
        index = {v: i for i, v in enumerate(self.shares)}
        other = index[OTHER]
        return np.bincount([index.get(v, other) for v in values], minlength=len(index))

    def to_data(self) -> dict:
        return {"kind": "categorical", **asdict(self)}


def profile_from_data(data: dict) -> NumericProfile | CategoricalProfile:
    """The profile that ``to_data`` gave ``data``."""
    data = dict(data)
    kind = data.pop("kind")
    return NumericProfile(**data) if kind == "numeric" else CategoricalProfile(**data)


def reservoir(values: Iterable[float], size: int, seed: int = 0) -> list[float]:
    """A uniform sample of at most ``size`` of ``values`` (Algorithm R)."""
    rng, kept = random.Random(seed), []
    for i, value in enumerate(values):
        if i < size:
            kept.append(value)
        elif (j := rng.randrange(i + 1)) < size:
            kept[j] = value
    return kept


@dataclass
class ModelProfile:
    """What a model was trained on: a profile per input, a PCA of the standardised inputs
    (components, and the reconstruction errors of the training rows), the profile of its
    scores on validation and the validation error rate.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(0, 1, (2_000, 3))
    >>> x[:, 2] = x[:, 0] + 0.1 * rng.normal(0, 1, 2_000)   # the third input follows the first
    >>> profile = ModelProfile.of(["a", "b", "c"], x)
    >>> len(profile.components), profile.inputs["b"].n
    (2, 2000)
    >>> broken = x.copy()
    >>> broken[:, 2] = -broken[:, 0]   # the relation breaks, each input alone looks the same
    >>> bool(profile.reconstruction_error(broken).mean() > 10 * profile.reconstruction_error(x).mean())
    True
    """

    inputs: dict[str, NumericProfile]
    means: list[float]
    scales: list[float]
    components: list[list[float]]
    errors: NumericProfile
    scores: NumericProfile | None = None
    error_rate: float | None = None
    important: list[str] = field(default_factory=list)
    """The inputs, most important first (what the retrain policy weighs score drift with)."""
    score_series: list[float] | None = None
    """The last ``sample`` scores in the order the rows came (event time, as trainers give
    them): neighbouring orders are alike (a card-testing burst, a user's basket), and the
    score test's calibration draws runs of them (``scorers.drift.calibrate_ks``'s ``block``)."""
    series_strata: list[str] | None = None
    """The stratum of each of ``score_series`` (``strata`` in ``of``: the calendar,
    ``scorers.drift.calendar_strata``), for comparing like with like."""

    @classmethod
    def of(cls, names: Sequence[str], x: np.ndarray, scores: Sequence[float] | None = None,
           error_rate: float | None = None, variance: float = 0.9, sample: int = 2_000,
           strata: Sequence[str] | None = None) -> ModelProfile:
        from sklearn.decomposition import PCA  # only trainers build profiles

        x = np.asarray(x, np.float64)
        inputs = {name: NumericProfile.of(x[:, i], sample=sample) for i, name in enumerate(names)}
        means, scales = x.mean(axis=0), x.std(axis=0)
        scales[scales == 0] = 1.0
        pca = PCA(n_components=variance, svd_solver="full").fit((x - means) / scales)
        profile = cls(inputs, means.tolist(), scales.tolist(), pca.components_.tolist(),
                      NumericProfile.of([0.0]), None if scores is None else NumericProfile.of(scores, sample=sample),
                      error_rate)
        profile.errors = NumericProfile.of(profile.reconstruction_error(x), sample=sample)
        if scores is not None:
            profile.score_series = [float(v) for v in list(scores)[-sample:]]
            if strata is not None:
                profile.series_strata = [str(k) for k in list(strata)[-sample:]]
        return profile

    def reconstruction_error(self, x: np.ndarray) -> np.ndarray:
        """Per row: the squared distance between the standardised row and its projection
        on the components (the inputs' joint structure in training). The PCA's own centre
        is zero: the inputs are centred by their training means first."""
        z = (np.asarray(x, np.float64) - self.means) / self.scales
        c = np.asarray(self.components)
        return np.sum((z - z @ c.T @ c) ** 2, axis=1)

    def to_data(self) -> dict:
        return {"inputs": {k: v.to_data() for k, v in self.inputs.items()}, "means": self.means,
                "scales": self.scales, "components": self.components, "errors": self.errors.to_data(),
                "scores": None if self.scores is None else self.scores.to_data(), "error_rate": self.error_rate,
                "important": self.important, "score_series": self.score_series,
                "series_strata": self.series_strata}

    @classmethod
    def from_data(cls, data: dict) -> ModelProfile:
        return cls({k: profile_from_data(v) for k, v in data["inputs"].items()}, data["means"], data["scales"],
                   data["components"], profile_from_data(data["errors"]),
                   None if data["scores"] is None else profile_from_data(data["scores"]), data["error_rate"],
                   list(data.get("important", [])), data.get("score_series"), data.get("series_strata"))


@dataclass
class RecsProfile:
    """What a session recommender was trained on: the popularity of the clicked items (the
    ``top`` most clicked, the rest as one), the items it knows, and its hit rate on
    validation.

    >>> profile = RecsProfile.of(["a", "a", "b", "c"], hit_rate=0.4, top=2)
    >>> profile.popularity.shares, sorted(profile.items)
    ({'a': 0.5, 'b': 0.25, '__other__': 0.25}, ['a', 'b', 'c'])
    """

    popularity: CategoricalProfile
    items: set[str]
    hit_rate: float | None = None

    @classmethod
    def of(cls, clicked: Iterable[str], hit_rate: float | None = None, top: int = 200) -> RecsProfile:
        clicked = [str(i) for i in clicked]
        return cls(CategoricalProfile.of(clicked, top=top), set(clicked), hit_rate)

    def to_data(self) -> dict:
        return {"popularity": self.popularity.to_data(), "items": sorted(self.items), "hit_rate": self.hit_rate}

    @classmethod
    def from_data(cls, data: dict) -> RecsProfile:
        return cls(profile_from_data(data["popularity"]), set(data["items"]), data.get("hit_rate"))
