"""What becomes of a trained model, and how a registered one comes back.

Both trainers end the same way (``register``): the new version is registered with its
metrics, parameters, tags and plots, and promoted to champion when it beat the champion
on the same validation data (or when forced). Workers, the drift role and the next
trainer load a registered version back with ``fraud_champion`` / ``recs_champion`` and
read its reference profile with ``fraud_profile`` / ``recs_profile``; none of them
imports a trainer. The recommender's registered file is a bundle (``save_bundle``,
``load_bundle``): plain tensors, lists and dicts, loadable with ``weights_only``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from models.fraud import Checkpoint
from models.sequence import SequenceCheckpoint
from scorers.fraud import ModelPredictor
from scorers.neighbours import BoughtTogether, CoVisitation, Popularity, SessionKNN
from scorers.profiles import ModelProfile, RecsProfile
from scorers.recommend import Blend, Recommender, SequenceScorer
from scorers.retrieval import ItemIndex
from shopstream.settings import Settings
from trainers.registry import Registry, Version

Loaded = TypeVar("Loaded")


@dataclass
class TrainResult:
    """What a training run produced: the registered version, whether it was promoted, its
    validation metrics and the champion's on the same data."""

    version: Version | None
    promoted: bool
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    n_train: int
    n_valid: int
    plots: list[Path] = field(default_factory=list)
    train: object = field(repr=False, default=None)  # the fraud trainer's datasets, for evaluations
    valid: object = field(repr=False, default=None)
    lost_to: list[str] = field(default_factory=list)  # what it did not beat: champion, logreg, gbm
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # their validation metrics


def register(registry: Registry, path: Path, *, wins: bool, force: bool, metrics: dict[str, float],
             params: dict[str, object], tags: dict[str, str], description: str,
             plots: Sequence[Path] = ()) -> tuple[Version, bool]:
    """Register ``path`` as a new version with its plots; promote it if it ``wins`` (or
    ``force``). Returns the version and whether it was promoted."""
    version = registry.register(path, metrics=metrics, params=params, tags=tags, description=description)
    run_id = registry.client.get_model_version(registry.name, version.version).run_id if plots else None
    for plot in plots:
        registry.client.log_artifact(run_id, str(plot), artifact_path="plots")
    promoted = wins or force
    if promoted:
        registry.promote(version.version)
    return version, promoted


def load_champion(registry: Registry, load: Callable[[Path, str], Loaded], champion=None) -> Loaded | None:
    """``load(file, version)`` of the champion, or None when there is none. ``champion``:
    the registered version to load, when the caller has already asked the registry (it may
    have promoted another one since)."""
    champion = champion or registry.champion()
    if champion is None:
        return None
    return load(registry.download(champion), champion.version)


def fraud_registry(settings: Settings) -> Registry:
    return Registry(settings, settings.scoring.model_name)


def recs_registry(settings: Settings) -> Registry:
    return Registry(settings, settings.recs.model_name)


def fraud_champion(settings: Settings, registry: Registry | None = None, champion=None) -> ModelPredictor | None:
    """The fraud champion as a predictor, or None when there is none."""
    return load_champion(registry or fraud_registry(settings),
                         lambda path, version: ModelPredictor(Checkpoint.load(path), version), champion)


def fraud_profile(settings: Settings, version: str, registry: Registry | None = None) -> ModelProfile | None:
    """The reference profile saved with fraud model ``version``, or None for a model
    trained before profiles were saved."""
    registry = registry or fraud_registry(settings)
    meta = Checkpoint.load(registry.download(registry.get(version))).meta
    return ModelProfile.from_data(meta["profile"]) if meta.get("profile") else None


def recs_champion(settings: Settings, registry: Registry | None = None, champion=None,
                  **options) -> Recommender | None:
    """The recommender champion, or None when there is none; ``options`` are the
    recommender's serving options (``k``, the exclusions)."""
    return load_champion(registry or recs_registry(settings),
                         lambda path, version: load_bundle(path, version, **options), champion)


def recs_profile(settings: Settings, version: str, registry: Registry | None = None) -> RecsProfile | None:
    """The reference profile saved with recommender ``version``, or None for a bundle
    saved before profiles were."""
    registry = registry or recs_registry(settings)
    meta = torch.load(registry.download(registry.get(version)), map_location="cpu", weights_only=True)["meta"]
    return RecsProfile.from_data(meta["profile"]) if meta.get("profile") else None


def save_bundle(recommender: Recommender, path: Path, meta: dict | None = None) -> Path:
    """Everything the recommender needs in one file (plain tensors, lists and dicts)."""
    seq = recommender.sequence
    torch.save({
        "sequence": SequenceCheckpoint(seq.model, seq.vocab).to_dict() if seq else None,
        "index": torch.from_numpy(seq.index.to_bytes()) if seq else None,
        "covisit": recommender.covisit.state() if recommender.covisit else None,
        "bought_together": recommender.bought_together.state() if recommender.bought_together else None,
        "popular": recommender.popular.state() if recommender.popular else None,
        "neighbours": recommender.neighbours.state() if recommender.neighbours else None,
        "blend": asdict(recommender.blend), "meta": meta or {}}, path)
    return path


def load_bundle(path: Path, version: str = "local", **options) -> Recommender:
    """The recommender saved by ``save_bundle``, as ``version``."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    sequence = None
    if saved["sequence"] is not None:
        checkpoint = SequenceCheckpoint.from_dict(saved["sequence"])
        index = ItemIndex.from_bytes(saved["index"].numpy(), checkpoint.vocab)
        sequence = SequenceScorer(checkpoint.model, checkpoint.vocab, index)

    def restored(kind, key: str):
        return kind.from_state(saved[key]) if saved[key] is not None else None

    return Recommender(
        sequence=sequence, neighbours=restored(SessionKNN, "neighbours"), popular=restored(Popularity, "popular"),
        blend=Blend(**saved["blend"]), covisit=restored(CoVisitation, "covisit"),
        bought_together=restored(BoughtTogether, "bought_together"), version=version, **options)
