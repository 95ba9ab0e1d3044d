"""The recommender trainer: ``shopstream train recs``.

Reads the session views and orders that the workers logged offline, keeps the last
``valid_days`` for validation (``trainers.sessions``), and builds everything the served
recommender (``scorers.recommend``) needs:

- the sequence model (``models.sequence``), trained next-item with the generic loop,
  early-stopped on validation MRR@20, and a faiss index of its item embeddings;
- co-visitation, session neighbours (V-SKNN), bought-together and popularity, fitted on
  the whole window;
- the blend weights, picked on the validation cases from a grid.

The bundle (one ``recs.pt`` file) is registered in MLflow under ``settings.recs.model_name``
with its metrics, and becomes the champion only if its validation MRR@20 beats the
champion's on the same cases (``--force`` overrides). Workers pick the new champion up
without a restart (``streams.recs``).
"""

from __future__ import annotations

import itertools
import logging
import random
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import torch

from models.configs import SequenceConfig
from models.sequence import SequenceCheckpoint, SequenceRecommender, left_pad
from scorers.neighbours import BoughtTogether, CoVisitation, Popularity, Session, SessionKNN
from scorers.profiles import RecsProfile
from scorers.recommend import Blend, Recommender, SequenceScorer, SessionView
from scorers.retrieval import ItemIndex
from shopstream.settings import Settings
from trainers import ranking
from trainers.configs import RecsTrainConfig
from trainers.loop import Callback, History, RichProgress, fit, fit_epochs
from trainers.promotion import TrainResult, load_bundle, recs_registry, register, save_bundle
from trainers.sessions import Case, cases, clean, sessions, split

log = logging.getLogger(__name__)
K = 20


# --- the sequence model ------------------------------------------------------------------


def training_tensors(train: list[Session], position: dict[str, int], max_len: int) -> tuple[torch.Tensor, ...]:
    """Inputs and next-item targets (N, max_len), left-padded, one row per window."""
    inputs, targets = [], []
    for session in train:
        seq = [position[i] for i in session.items if i in position]
        for end in range(len(seq), 1, -max_len):  # long sessions: windows from the end
            window = seq[max(0, end - max_len - 1):end]
            inputs.append(window[:-1])
            targets.append(window[1:])
    return left_pad(inputs, max_len), left_pad(targets, max_len)


def model_lists(model: SequenceRecommender, prefixes: list[tuple[str, ...]], position: dict[str, int],
                vocab: list[str], k: int = K, batch: int = 1024) -> list[list[str]]:
    """The model's top ``k`` by full softmax for each prefix (validation during training)."""
    out: list[list[str]] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prefixes), batch):
            chunk = [[position[i] for i in p if i in position] for p in prefixes[start:start + batch]]
            logits, _ = model(left_pad(chunk, model.config.max_len))  # (B, n_items + 1)
            logits[:, 0] = float("-inf")
            best = logits.topk(min(k, logits.shape[1] - 1)).indices.tolist()
            out += [[vocab[i - 1] for i in row] if seq else [] for row, seq in zip(best, chunk, strict=True)]
    return out


def new_model(train: list[Session], config: RecsTrainConfig) -> tuple[list[str], dict[str, int], SequenceRecommender]:
    """The vocabulary of ``train``, each item's index (0 is padding), and a fresh model."""
    vocab = sorted({i for s in train for i in s.items})
    position = {item: i + 1 for i, item in enumerate(vocab)}
    torch.manual_seed(config.loop.seed)  # the initial weights too, so a run can be repeated
    model = SequenceRecommender(SequenceConfig(
        n_items=len(vocab), max_len=config.max_len, d_model=config.d_model, n_heads=config.n_heads,
        n_layers=config.n_layers, dropout=config.dropout,
        sampled=0 if len(vocab) < config.full_softmax_below else 8192))
    return vocab, position, model


def train_sequence(train: list[Session], valid: list[Case], config: RecsTrainConfig,
                   callbacks: list[Callback]) -> tuple[SequenceCheckpoint, dict[str, float]]:
    vocab, position, model = new_model(train, config)
    inputs, targets = training_tensors(train, position, config.max_len)
    if len(inputs) == 0:
        raise ValueError("no training session has two views of known items: log more sessions first")
    prefixes, answers = [c.prefix for c in valid], [c.target for c in valid]

    def validate(m: SequenceRecommender) -> dict[str, float]:
        return ranking.evaluate(model_lists(m, prefixes, position, vocab), answers, k=K, digits=5)

    best = fit(model, [inputs, targets], validate, config.loop, monitor=f"mrr@{K}", callbacks=callbacks)
    return SequenceCheckpoint(model, vocab, {"n_train_windows": len(inputs)}), best


def refit_sequence(train: list[Session], epochs: int, config: RecsTrainConfig,
                   callbacks: list[Callback]) -> SequenceCheckpoint:
    """The model again, on every session, for the number of epochs validation chose:
    the newest days, held out to choose it, are the most like tomorrow's sessions."""
    vocab, position, model = new_model(train, config)
    inputs, targets = training_tensors(train, position, config.max_len)
    fit_epochs(model, [inputs, targets], config.loop, epochs, callbacks)
    return SequenceCheckpoint(model, vocab, {"n_train_windows": len(inputs), "epochs": epochs})


# --- the strategies and the blend -----------------------------------------------------------


def fit_strategies(train: list[Session], baskets: list[Session], config: RecsTrainConfig) -> dict:
    return {"covisit": CoVisitation().fit(train),
            "neighbours": SessionKNN().fit(train[-config.neighbour_sessions:]),
            "bought_together": BoughtTogether().fit(baskets),
            "popular": Popularity(half_life_days=7).fit(train)}


def sequence_scorer(checkpoint: SequenceCheckpoint) -> SequenceScorer:
    vectors = checkpoint.model.item_vectors().numpy()
    return SequenceScorer(checkpoint.model, checkpoint.vocab, ItemIndex.build(vectors, checkpoint.vocab))


def served_lists(recommender: Recommender, prefixes: list[tuple[str, ...]], batch: int = 256) -> list[list[str]]:
    """What the served recommender returns after each prefix (no cart, nothing bought)."""
    out: list[list[str]] = []
    for start in range(0, len(prefixes), batch):
        views = [SessionView(items=p) for p in prefixes[start:start + batch]]
        out += [[i for i, _ in ranked] for ranked, _ in recommender.recommend_batch(views)]
    return out


def tune_blend(recommender: Recommender, valid: list[Case], step: float) -> tuple[Blend, dict[str, float]]:
    """The grid point of weights (summing to one) with the best validation MRR@20."""
    answers = [c.target for c in valid]
    views = [SessionView(items=c.prefix) for c in valid]
    sequences = []  # the strategies' scores do not depend on the weights: compute them once
    for start in range(0, len(views), 256):
        sequences += recommender.sequence.scores_batch([v.items for v in views[start:start + 256]])
    parts = [recommender.parts(v, seq) for v, seq in zip(views, sequences, strict=True)]
    steps = int(round(1 / step))
    best, best_metrics = recommender.blend, None
    for a, b in itertools.product(range(steps + 1), repeat=2):
        if a + b > steps:
            continue
        recommender.blend = Blend(sequence=a * step, covisit=b * step, neighbours=(steps - a - b) * step)
        lists = [[i for i, _ in recommender.recommend(v, seq, p)[0]]
                 for v, seq, p in zip(views, sequences, parts, strict=True)]
        result = ranking.evaluate(lists, answers, k=K, digits=5)
        if best_metrics is None or (result[f"mrr@{K}"], result[f"hr@{K}"]) > \
                (best_metrics[f"mrr@{K}"], best_metrics[f"hr@{K}"]):
            best, best_metrics = recommender.blend, result
    recommender.blend = best
    return best, best_metrics


def validation_cases(valid_part: pd.DataFrame, config: RecsTrainConfig) -> list[Case]:
    """The next-item cases of the validation days; a fixed sample when there are many,
    because every epoch and every blend weight is scored on all of them."""
    every = cases(sessions(valid_part))
    if len(every) <= config.max_valid_cases:
        return every
    return sorted(random.Random(0).sample(every, config.max_valid_cases))


@dataclass
class Fitted:
    recommender: Recommender
    sequence: dict[str, float]
    blend: dict[str, float]
    n_train: int
    n_valid: int


def fit_recommender(frame: pd.DataFrame, baskets: list[Session], config: RecsTrainConfig, *,
                    progress: bool = True, callbacks: list[Callback] = ()) -> Fitted:
    """Train on a session log (``session_id, item_id, ts``): the whole recommender."""
    fit_part, valid_part = split(frame, config.valid_days, config.min_support)
    train_sessions, valid_cases = sessions(fit_part), validation_cases(valid_part, config)
    if not valid_cases:
        raise ValueError(f"the last {config.valid_days} day(s) hold no session of two views of known "
                         "items to validate on: log more sessions or widen --valid-days")
    progress_bar = [RichProgress("training sequence model")] if progress else []
    checkpoint, seq_metrics = train_sequence(train_sessions, valid_cases, config, [*callbacks, *progress_bar])
    recommender = Recommender(sequence=sequence_scorer(checkpoint), k=K,
                              **fit_strategies(train_sessions, baskets, config))
    blend, blend_metrics = tune_blend(recommender, valid_cases, config.blend_step)
    log.info("blend %s: validation %s", blend, blend_metrics)
    # Everything again with the validation days too, keeping the chosen epochs and blend.
    everything = sessions(clean(frame, config.min_support))
    for name, strategy in fit_strategies(everything, baskets, config).items():
        setattr(recommender, name, strategy)
    if config.refit:
        progress_bar = [RichProgress("refitting on every day")] if progress else []
        recommender.sequence = sequence_scorer(refit_sequence(
            everything, int(seq_metrics["best_epoch"]), config, progress_bar))
    return Fitted(recommender, seq_metrics, blend_metrics, len(train_sessions), len(valid_cases))


# --- the batch job ------------------------------------------------------------------------------


def offline_log(settings: Settings, days: float, end: datetime | None = None) -> tuple[pd.DataFrame, list[Session]]:
    """Views and baskets of the last ``days`` of the offline log."""
    from trainers.offline import compact, raw

    try:
        compact(settings)
        clicks = raw(settings, "raw_click")
    except FileNotFoundError:
        clicks = pd.DataFrame()
    if clicks.empty:
        raise ValueError("the offline log holds no clicks yet: run workers and replay or simulate a shop")
    end = end or clicks["event_timestamp"].max().to_pydatetime()
    start = end - timedelta(days=days)
    clicks = clicks[(clicks["event_timestamp"] > start) & (clicks["event_timestamp"] <= end)]
    frame = pd.DataFrame({"session_id": clicks["session_id"].astype(str), "item_id": clicks["item_id"].astype(str),
                          "ts": clicks["event_timestamp"]})
    try:
        orders = raw(settings, "raw_order")
    except FileNotFoundError:
        orders = pd.DataFrame()
    baskets = []
    if not orders.empty:
        import json

        orders = orders[(orders["event_timestamp"] > start) & (orders["event_timestamp"] <= end)]
        for payload, ts in zip(orders["payload"], orders["event_timestamp"], strict=True):
            items = tuple(i["item_id"] for i in json.loads(payload).get("items", []))
            if items:
                baskets.append(Session(items, ts.timestamp()))
    return frame.drop_duplicates(), baskets


def evaluate_on(recommender: Recommender, valid: list[Case], popularity: dict[str, float], catalog: int) -> dict:
    return ranking.evaluate(served_lists(recommender, [c.prefix for c in valid]), [c.target for c in valid],
                            k=K, popularity=popularity, catalog=catalog, digits=5)


def train_and_register(settings: Settings, config: RecsTrainConfig | None = None, *,
                       end: datetime | None = None, force: bool = False, progress: bool = True) -> TrainResult:
    """The whole batch job: sessions, training, evaluation, registry, promotion."""
    config = config or RecsTrainConfig()
    frame, baskets = offline_log(settings, config.days, end)
    history = History()
    fitted = fit_recommender(frame, baskets, config, progress=progress, callbacks=[history])
    _, valid_part = split(frame, config.valid_days, config.min_support)
    valid = validation_cases(valid_part, config)
    popularity = frame["item_id"].value_counts().to_dict()
    catalog = frame["item_id"].nunique()
    result = evaluate_on(fitted.recommender, valid, popularity, catalog)

    registry = recs_registry(settings)
    champion = registry.champion()
    champion_metrics = None
    if champion is not None:
        try:  # the champion on the same validation cases
            champion_metrics = evaluate_on(load_bundle(registry.download(champion)), valid, popularity, catalog)
        except (ValueError, RuntimeError, FileNotFoundError, KeyError) as exc:
            log.warning("cannot run the champion %s on the new cases (%s): it loses", champion.version, exc)
            champion_metrics = {f"mrr@{K}": -1.0}
    wins = champion_metrics is None or result[f"mrr@{K}"] > champion_metrics[f"mrr@{K}"]
    folder = Path(tempfile.mkdtemp(prefix="shopstream-recs-"))
    window = (frame["ts"].min().isoformat(), frame["ts"].max().isoformat())
    profile = RecsProfile.of(frame["item_id"].astype(str), hit_rate=result.get(f"hr@{K}"))  # drift's reference
    path = save_bundle(fitted.recommender, folder / "recs.pt", {"train_start": window[0], "train_end": window[1],
                                                               "profile": profile.to_data()})
    metrics = {**{k: v for k, v in result.items() if isinstance(v, float)},
               **{f"sequence.{k}": v for k, v in fitted.sequence.items() if isinstance(v, float)},
               "n_train_sessions": fitted.n_train, "n_valid_cases": fitted.n_valid}
    version, promoted = register(registry, path, wins=wins, force=force, metrics=metrics, params={
        **{k: v for k, v in asdict(config).items() if k != "loop"},
        **{f"loop.{k}": v for k, v in asdict(config.loop).items()},
        **{f"blend.{k}": v for k, v in asdict(fitted.recommender.blend).items()}},
        tags={"feature_service": "recs_v1", "train_start": window[0], "train_end": window[1],
              "n_views": str(len(frame)), "n_items": str(catalog)},
        description="shopstream session recommender")
    return TrainResult(version, promoted, result, champion_metrics, fitted.n_train, fitted.n_valid)


def describe(result: TrainResult) -> str:
    lines = [f"version {result.version.version if result.version else '-'}: "
             + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if isinstance(v, float))]
    if result.champion_metrics:
        lines.append("champion on the same cases: " + ", ".join(
            f"{k} {v:.4f}" for k, v in result.champion_metrics.items() if isinstance(v, float)))
    lines.append("promoted to champion" if result.promoted else "not promoted: the champion is as good or better")
    return "\n".join(lines)

