"""Train the fraud model from the offline store, register it, and promote it if it wins.

Run it as a batch job::

    shopstream train fraud                      # the last 28 days with complete labels
    shopstream train fraud --every 24h          # and again every day
    shopstream train fraud --force              # promote even if it does not win

Labels arrive late (a chargeback takes days), so the training window ends ``delay_days``
before the newest label: every order in it has had the time to get its label. The
window is split by time; the last ``valid_days`` choose the number of epochs and measure the new
model. Then the model is trained again on the whole window for that many epochs, so the
newest days, the most like tomorrow's orders, are learned too (``refit``). On a later,
unseen week of the Q2 transactions it raised average precision from 0.641 to 0.686 and
from 0.647 to 0.691 (two seeds; ``python -m bench.fraud_refit``).

The new version becomes the champion only if its average precision beats the current
champion's on validation days that neither has trained on: the held-out model against
the champion, on the orders after the champion's own training data ended.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.calibration import Calibrated, Platt
from models.configs import FRAUD_TYPES, FraudConfig, GBMConfig
from models.ensemble import FraudEnsemble
from models.fraud import Checkpoint, FraudNet
from models.gbm import FraudGBM
from models.inputs import Selected
from models.linear import FraudLinear
from scorers.drift import calendar_strata
from scorers.fraud import FEATURES, SIGNALS, matrix
from scorers.profiles import ModelProfile
from shopstream.settings import Settings
from trainers import metrics as fraud_metrics
from trainers.configs import KINDS, FraudTrainConfig
from trainers.loop import Callback, History, RichProgress, fit, fit_epochs
from trainers.offline import (
    compact,
    features_as_served,
    historical_features,
    labelled_orders,
    order_events,
    orders_between,
    raw,
)
from trainers.promotion import TrainResult, fraud_registry, register
from trainers.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    frame: pd.DataFrame  # one row per order: order_id, user_id, event_timestamp, label, served, ...
    x: np.ndarray  # (N, F) in scorers.fraud.FEATURES order

    def select(self, mask) -> Dataset:
        mask = np.asarray(mask)
        return Dataset(self.frame[mask].reset_index(drop=True), self.x[mask])

    @property
    def served(self) -> int:
        """Rows with the features a worker served; the others are point in time."""
        return int(self.frame["served"].sum()) if "served" in self.frame else 0


def order_features(settings: Settings, frame: pd.DataFrame, *, served: bool = True,
                   progress=None) -> tuple[list[dict], list[bool]]:
    """The orders' feature rows: as served where a worker logged them (``served``), else
    point in time; and which were served."""
    if served:
        return features_as_served(settings, frame, progress=progress)
    return historical_features(settings, frame, progress=progress), [False] * len(frame)


def build_dataset(settings: Settings, start: datetime, end: datetime, *,
                  labels_as_of: datetime, served: bool = True, progress=None) -> Dataset:
    """Orders in ``[start, end)`` labelled by ``labels_as_of``, with their features as
    served (``order_features``)."""
    compact(settings)
    frame = labelled_orders(settings, start, end, labels_as_of=labels_as_of)
    if frame.empty:
        return Dataset(frame, np.zeros((0, len(FEATURES)), np.float32))
    rows, was_served = order_features(settings, frame, served=served, progress=progress)
    return Dataset(frame.assign(served=was_served), matrix(order_events(frame), rows))


def training_window(settings: Settings, config: FraudTrainConfig,
                    labels_as_of: datetime | None = None) -> tuple[datetime, datetime, datetime]:
    """``(start, end, labels_as_of)``: by default the newest label time in the log."""
    if labels_as_of is None:
        labels_as_of = raw(settings, "raw_order_label")["event_timestamp"].max().to_pydatetime()
    end = labels_as_of - timedelta(days=config.delay_days)
    return end - timedelta(days=config.days), end, labels_as_of


def _types(frame: pd.DataFrame) -> np.ndarray:
    index = {name: i for i, name in enumerate(FRAUD_TYPES)}
    return np.array([index.get(t, 0) if label else 0
                     for t, label in zip(frame["fraud_type"].fillna(""), frame["label"], strict=True)])


def scores_of(model: FraudNet, x: np.ndarray, batch: int = 8192, logits: bool = False) -> np.ndarray:
    """Fraud probabilities (or, with ``logits``, log-odds) of an (N, F) matrix."""
    score = model.logits if logits else model.predict
    return np.concatenate([score(torch.from_numpy(x[i:i + batch])).numpy()
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros(0)


def evaluation_frame(data: Dataset, scores: np.ndarray) -> pd.DataFrame:
    """What ``trainers.metrics.evaluate`` reads: day, card, score, label."""
    return pd.DataFrame({"day": data.frame["event_timestamp"].dt.date.to_numpy(),
                         "card": data.frame["payment_fingerprint"].to_numpy(),
                         "score": scores, "label": data.frame["label"].to_numpy()})


def signals_of(columns: list[int]) -> tuple[tuple[str, int], ...]:
    """The net's signals (name, inputs) when it reads the ``columns`` of ``FEATURES``, in order.

    >>> signals_of([0, 1, len(FEATURES) - 1])
    (('transaction', 2), ('network', 1))
    """
    group = [name for name, names in SIGNALS.items() for _ in names]
    counts = {name: sum(group[c] == name for c in columns) for name in SIGNALS}
    return tuple((name, n) for name, n in counts.items() if n)


def new_model(train: Dataset, config: FraudTrainConfig,
              columns: list[int] | None = None) -> tuple[FraudNet, list[torch.Tensor]]:
    """An untrained ``FraudNet`` fitted to ``train``'s statistics, and its training tensors;
    it reads the ``columns`` of ``FEATURES`` (sorted), or all of them."""
    columns = sorted(columns) if columns is not None else list(range(len(FEATURES)))
    rng = np.random.default_rng(config.loop.seed)
    n_fraud = max(int(train.frame["label"].sum()), 1)
    # Balance the classes' total weight, but not fully: calibrated-ish probabilities. The
    # weight is that of the whole window; times ``negatives``, it weighs each kept genuine
    # order back as 1 / negatives of them, so subsampling does not move the scores.
    pos_weight = math.sqrt((len(train.x) - n_fraud) / n_fraud) * config.negatives
    keep = (train.frame["label"].to_numpy() == 1) | (rng.random(len(train.x)) < config.negatives)
    train = train.select(keep)
    labels = train.frame["label"].to_numpy().astype(np.float32)
    model_config = FraudConfig(**{**asdict(config.model), "pos_weight": pos_weight,
                                  "signals": signals_of(columns)})
    torch.manual_seed(config.loop.seed)  # the same data and config give the same model
    model = FraudNet(model_config)
    x = torch.from_numpy(np.ascontiguousarray(train.x[:, columns]))
    model.standardize.fit(x)
    return model, [x, torch.from_numpy(labels), torch.from_numpy(_types(train.frame))]


def train_model(train: Dataset, valid: Dataset, config: FraudTrainConfig, callbacks: list[Callback] = (),
                columns: list[int] | None = None) -> tuple[FraudNet, dict[str, float]]:
    """Fit a ``FraudNet`` on ``train`` (its ``columns``, sorted, or all); keep the epoch with
    the best validation AP."""
    model, tensors = new_model(train, config, columns)
    valid_x = np.ascontiguousarray(valid.x[:, sorted(columns)]) if columns is not None else valid.x

    def validate(m: FraudNet) -> dict[str, float]:
        result = fraud_metrics.evaluate(evaluation_frame(valid, scores_of(m, valid_x)))
        return {"val_ap": result["ap"] if not math.isnan(result["ap"]) else 0.0,
                "val_auc": result["auc"] if not math.isnan(result["auc"]) else 0.0}

    best = fit(model, tensors, validate, config.loop, monitor="val_ap", callbacks=callbacks)
    return model, best


def train_net(train: Dataset, valid: Dataset, config: FraudTrainConfig, callbacks: list[Callback] = (),
              columns: list[int] | None = None) -> tuple[FraudNet, dict[str, float], FraudTrainConfig]:
    """``train_model`` with each of ``config.lrs`` (or ``config.loop.lr``): the net with the best
    validation AP, its metrics (with ``lr`` when there was a choice) and the config it trained with."""
    tried = []
    for lr in config.lrs or (config.loop.lr,):
        run = replace(config, loop=replace(config.loop, lr=lr))
        net, best = train_model(train, valid, run, callbacks, columns)
        tried.append((best.get("val_ap", 0.0), -len(tried), net, best, run))
    _, _, net, best, run = max(tried, key=lambda t: t[:2])  # the first of equals
    if len(tried) > 1:
        best["lr"] = run.loop.lr
    return net, best, run


def refit_model(data: Dataset, epochs: int, config: FraudTrainConfig, callbacks: list[Callback] = (),
                columns: list[int] | None = None) -> FraudNet:
    """A ``FraudNet`` trained on all of ``data`` for ``epochs`` epochs (chosen on held-out days)."""
    model, tensors = new_model(data, config, columns)
    fit_epochs(model, tensors, config.loop, epochs, callbacks)
    model.eval()
    return model


def gbm_config(train: Dataset, config: FraudTrainConfig) -> GBMConfig:
    """``config.gbm`` with the classes' weights balanced as the net's are (not fully)."""
    n_fraud = max(int(train.frame["label"].sum()), 1)
    return GBMConfig(**{**asdict(config.gbm), "pos_weight": math.sqrt((len(train.x) - n_fraud) / n_fraud),
                        "seed": config.loop.seed})


def train_gbm(train: Dataset, valid: Dataset, config: FraudTrainConfig) -> tuple[FraudGBM, dict[str, float]]:
    """Boosted trees on ``train``, stopped at the round of the best validation AP."""
    model = FraudGBM.fit(train.x, train.frame["label"].to_numpy(), gbm_config(train, config),
                         valid=(valid.x, valid.frame["label"].to_numpy()))
    result = fraud_metrics.evaluate(evaluation_frame(valid, scores_of(model, valid.x)))
    return model, {"best_epoch": model.best_rounds, "val_ap": result["ap"], "val_auc": result["auc"]}


@dataclass
class Fitted:
    """A trained fraud model of one kind, calibrated on the validation days."""

    model: object  # what is served: refit on every day of the window when the config says so
    held_out: object  # trained before the validation days: what validation and promotion measure
    best: dict  # best_epoch (epochs or rounds), and the ensemble's weight of the net
    valid_scores: np.ndarray  # the held-out model's (calibrated) scores on the validation days


def fit_kind(data: Dataset, train: Dataset, valid: Dataset, config: FraudTrainConfig,
             callbacks: list[Callback] = (), progress: bool = False) -> Fitted:
    """Train ``config.kind`` on ``train``, choosing epochs (rounds) on ``valid``; calibrate it
    there (Platt scaling, ``models.calibration``: applied when ``config.calibrate`` and to an
    ensemble's members, else only recorded in ``best``); then, with ``config.refit``, train it again
    on all of ``data`` for as long, with the same calibration. An ensemble trains the net, the
    trees and logistic regression, and weighs their calibrated logits by validation AUC + AP
    (``ENSEMBLE_WEIGHTS``)."""
    if config.kind not in KINDS:
        raise ValueError(f"unknown model kind {config.kind!r}; choose from {', '.join(KINDS)}")
    labels = valid.frame["label"].to_numpy()
    members = {}

    def calibrated(name: str, held, refit, best: dict) -> None:
        platt = Platt.fit(held.logits(torch.from_numpy(valid.x)).numpy(), labels)
        served = Calibrated(held, platt)
        members[name] = (served, served if refit is held else Calibrated(refit, platt), best)

    if config.kind in ("gbm", "ensemble"):
        trees, best = train_gbm(train, valid, config)
        calibrated("gbm", trees, FraudGBM.fit(data.x, data.frame["label"].to_numpy(), gbm_config(data, config),
                                              rounds=int(best["best_epoch"])) if config.refit else trees, best)
    if config.kind in ("linear", "ensemble"):
        line = FraudLinear.fit(train.x, train.frame["label"].to_numpy())
        calibrated("linear", line, FraudLinear.fit(data.x, data.frame["label"].to_numpy()) if config.refit else line,
                   {"best_epoch": 0})
    if config.kind in ("net", "ensemble"):
        columns = None
        if 0 < config.net_features < len(FEATURES):
            ranker = trees if config.kind == "ensemble" else FraudGBM.fit(
                train.x, train.frame["label"].to_numpy(), replace(gbm_config(train, config), rounds=100))
            columns = sorted(ranker.ranking()[:config.net_features])
        net, best, config = train_net(train, valid, config, callbacks, columns)
        refit = refit_model(data, int(best["best_epoch"]), config,
                            [RichProgress("refitting on every day")] if progress else [],
                            columns) if config.refit else net
        if columns is not None:
            net, refit = (Selected(m, columns, len(FEATURES)) for m in (net, refit))
            best["inputs"] = len(columns)
        calibrated("net", net, refit, best)
    if config.kind != "ensemble":
        held_out, model, best = members[config.kind]
        if not config.calibrate:  # served on its own scale; the scaling is recorded, not applied
            best["calibration"] = held_out.platt.to_data()
            held_out, model = held_out.model, model.model
        return Fitted(model, held_out, best, scores_of(held_out, valid.x))
    names = list(members)
    valid_logits = {name: scores_of(members[name][0], valid.x, logits=True) for name in names}

    def merit(weights: tuple[float, ...]) -> float:
        blend = sum(w * valid_logits[name] for name, w in zip(names, weights, strict=True))
        return _auc(labels, blend) + _ap(labels, blend)

    weights = max(ENSEMBLE_WEIGHTS, key=merit)
    held_out = FraudEnsemble([members[n][0] for n in names], weights)
    model = FraudEnsemble([members[n][1] for n in names], weights) if config.refit else held_out
    best = {"best_epoch": members["net"][2]["best_epoch"], "rounds": members["gbm"][2]["best_epoch"],
            "weights": dict(zip(names, weights, strict=True))}
    return Fitted(model, held_out, best, scores_of(held_out, valid.x))


ENSEMBLE_WEIGHTS = tuple((a / 4, b / 4, (4 - a - b) / 4) for a in range(5) for b in range(5 - a))
"""The weights an ensemble chooses from on validation, of its trees, logistic regression and
net in that order: every split of 1 into quarters, each member alone among them."""


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if labels.min() != labels.max() else 0.0


def _ap(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores)) if labels.min() != labels.max() else 0.0


def baseline_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> dict[str, np.ndarray]:
    """What a shop would try first, trained on the same rows: logistic regression on
    standardised inputs, and scikit-learn's gradient boosting; their scores on ``test_x``."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train_x, train_y)
    gbm = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(train_x, train_y)
    return {"logreg": logreg.predict_proba(test_x)[:, 1], "gbm": gbm.predict_proba(test_x)[:, 1]}


def baselines_on(train: Dataset, valid: Dataset) -> dict[str, dict[str, float]]:
    """The baselines' validation metrics, trained on what the new model trained on before
    the validation days: the bar a new model must clear to be promoted."""
    labels = train.frame["label"].to_numpy()
    if labels.min() == labels.max():
        return {}
    scores = baseline_scores(train.x, labels, valid.x)
    return {name: fraud_metrics.evaluate(evaluation_frame(valid, values)) for name, values in scores.items()}


def lost_to(beats_the_champion: bool, ap: float, baselines: dict[str, dict[str, float]]) -> list[str]:
    """What a new model did not beat on the validation days: ``champion`` and the baselines
    whose AP was at least its own (``baselines_on``). It is promoted only if none.

    >>> lost_to(True, 0.6, {"logreg": {"ap": 0.65}, "gbm": {"ap": 0.55}})
    ['logreg']
    """
    return ([] if beats_the_champion else ["champion"]) + [
        name for name, theirs in baselines.items() if not ap > theirs["ap"]]


def unseen_by(checkpoint: Checkpoint, valid: Dataset, split: datetime) -> Dataset:
    """The validation orders that ``checkpoint``'s model did not train on.

    Models record where their training data ended (``fit_end``). Older ones stopped before
    their own validation days, so a later window's validation days are unseen by them."""
    fit_end = pd.Timestamp(checkpoint.meta.get("fit_end", split.isoformat()))
    return valid.select((valid.frame["event_timestamp"] >= fit_end).to_numpy())


def train_and_register(settings: Settings, config: FraudTrainConfig | None = None, *,
                       labels_as_of: datetime | None = None, window: tuple[datetime, datetime] | None = None,
                       force: bool = False, output: Path | None = None,
                       progress: bool = True, tags: dict[str, str] | None = None) -> TrainResult:
    """The whole batch job: dataset, training, evaluation, registry, promotion.

    ``window`` overrides the training window that ``labels_as_of`` and the config imply;
    ``tags`` go on the registered version (``trainers.triggers`` records the drift signals
    that caused a retrain there).
    """
    config = config or FraudTrainConfig()
    start, end, labels_as_of = training_window(settings, config, labels_as_of)
    if window is not None:
        start, end = window
    data = build_dataset(settings, start, end, labels_as_of=labels_as_of, served=config.served)
    if len(data.x) == 0 or data.frame["label"].sum() == 0:
        raise ValueError(f"no labelled fraud between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}: "
                         "replay or simulate more history before training")
    split = end - timedelta(days=config.valid_days)
    is_valid = (data.frame["event_timestamp"] >= split).to_numpy()
    train, valid = data.select(~is_valid), data.select(is_valid)
    if len(train.x) == 0 or len(valid.x) == 0:
        raise ValueError(f"the window {start:%Y-%m-%d}..{end:%Y-%m-%d} leaves no training or no "
                         "validation orders; widen --days or shorten --valid-days")
    log.info("training on %d orders (%d fraud), validating on %d; %d of them with the features "
             "a worker served, the rest point in time", len(train.x), int(train.frame["label"].sum()),
             len(valid.x), data.served)
    callbacks = [History()] + ([RichProgress("training fraud model")] if progress else [])
    fitted = fit_kind(data, train, valid, config, callbacks, progress)
    model, valid_scores, best = fitted.model, fitted.valid_scores, fitted.best
    result = fraud_metrics.evaluate(evaluation_frame(valid, valid_scores))

    registry = fraud_registry(settings)
    wins, champion_metrics = beats_champion(registry, fitted.held_out, valid, split)
    baseline_metrics = baselines_on(train, valid) if config.gate_baselines else {}
    lost = lost_to(wins, result["ap"], baseline_metrics)

    folder = Path(output or tempfile.mkdtemp(prefix="shopstream-train-"))
    folder.mkdir(parents=True, exist_ok=True)
    plots = fraud_metrics.plot({"new": evaluation_frame(valid, valid_scores)}, folder, "validation")
    fit_end = end if config.refit else split
    checkpoint = Checkpoint(model, list(FEATURES), {
        "train_start": start.isoformat(), "train_end": end.isoformat(), "fit_end": fit_end.isoformat(),
        "labels_as_of": labels_as_of.isoformat(), "n_train": len(train.x), "refit": config.refit,
        "calibration": best.get("calibration"),
        "profile": reference_profile(reference_inputs(settings, split, end, labels_as_of, config.served), model,
                                     valid, valid_scores, settings.thresholds.fraud_review).to_data()})
    path = checkpoint.save(folder / "fraud.pt")
    # The metrics are the held-out model's: the refit one has seen the validation days.
    metrics = {**{k: v for k, v in result.items() if isinstance(v, float) and not math.isnan(v)},
               "n_train": len(train.x), "n_valid": len(valid.x), "best_epoch": best["best_epoch"],
               **{f"{name}_{k}": v for name, theirs in baseline_metrics.items() for k, v in theirs.items()
                  if k in ("ap", "auc")}}
    version, promoted = register(registry, path, wins=not lost, force=force, metrics=metrics, params={
        **({f"model.{k}": v for k, v in asdict(config.model).items()} if config.kind != "gbm" else {}),
        **({f"gbm.{k}": v for k, v in asdict(config.gbm).items()} if config.kind != "net" else {}),
        **{f"loop.{k}": v for k, v in asdict(config.loop).items()},
        **{f"best.{k}": v for k, v in best.items()},
        "days": config.days, "valid_days": config.valid_days, "delay_days": config.delay_days,
        "negatives": config.negatives, "refit": config.refit, "served": config.served, "kind": config.kind},
        tags={"feature_service": "fraud_v1", "kind": config.kind, "train_start": start.isoformat(),
              "train_end": end.isoformat(), "labels_as_of": labels_as_of.isoformat(),
              "n_rows": str(len(data.x)), "n_fraud": str(int(data.frame["label"].sum())),
              "served_rows": str(data.served),
              "labelled_orders": str(labelled_total(settings)), **(tags or {})},
        description="shopstream fraud scorer", plots=plots)
    return TrainResult(version, promoted, result, champion_metrics, len(train.x), len(valid.x), plots, train, valid,
                       lost_to=lost, baselines=baseline_metrics)


def served_inputs(settings: Settings, start: datetime, end: datetime, served: bool = True) -> np.ndarray:
    """The inputs of every order placed in ``[start, end)``, labelled or not, as a worker
    served them (``order_features``)."""
    frame = orders_between(settings, start, end)
    if frame.empty:
        return np.zeros((0, len(FEATURES)), np.float32)
    return matrix(order_events(frame), order_features(settings, frame, served=served)[0])


REFERENCE_ORDERS = 200
"""Fewest orders a reference profile is drawn from before it reaches back into the
validation days (the window of ``CalibratedKS``, so that its test has a full reference)."""


def reference_inputs(settings: Settings, split: datetime, end: datetime, labels_as_of: datetime,
                     served: bool = True) -> np.ndarray:
    """The orders drift is measured against: those placed after the training window
    (``[end, labels_as_of)``, whose labels were not complete), which no model of this run
    has trained on, and which are the newest traffic; with fewer than
    ``REFERENCE_ORDERS`` of them, the validation days' too."""
    newest = served_inputs(settings, end, labels_as_of, served)
    return newest if len(newest) >= REFERENCE_ORDERS else served_inputs(settings, split, labels_as_of, served)


def reference_profile(served: np.ndarray, model: FraudNet, valid: Dataset, valid_scores: np.ndarray,
                      review: float) -> ModelProfile:
    """What drift is measured against (``scorers.drift``): the ``served`` inputs
    (``reference_inputs``: every order, labelled or not, as labels come mostly for fraud
    and labelled orders alone would make a reference that live traffic never looks like)
    and the served ``model``'s scores on them; the held-out model's error rate on the
    labelled validation orders at the review threshold (an order is an error when flagging
    it and its label disagree); and the inputs ranked by how closely its scores follow them.

    The scores must be the served model's own, on orders it has not trained on. Its scores
    on the validation days are in-sample once it is refit on them, more certain than any
    it gives live (the calibrated KS test alarmed on unchanged traffic); the held-out
    model's are another model's, on another scale (docs/drift.md has the figures). The
    orders after the training window are neither."""
    if len(served) < 50:  # too few to profile: the labelled orders are better than nothing
        served = valid.x
    errors = (valid_scores >= review) != (valid.frame["label"].to_numpy() == 1)
    profile = ModelProfile.of(FEATURES, served, scores=scores_of(model, np.asarray(served, np.float32)),
                              error_rate=float(errors.mean()), strata=calendar_strata(FEATURES, served))
    profile.important = importance(valid.x, valid_scores)
    return profile


def importance(x: np.ndarray, scores: np.ndarray) -> list[str]:
    """The inputs, the ones the scores follow most closely first (absolute rank correlation
    on validation): cheap, and enough to tell which inputs' drift moves the score.

    >>> x = np.array([[0.0, 3.0], [1.0, 1.0], [2.0, 2.0], [3.0, 0.5]])
    >>> importance(x, np.array([0.1, 0.2, 0.3, 0.4]))[:1] == [FEATURES[0]]
    True
    """
    from scipy.stats import spearmanr

    rho = []
    for j in range(x.shape[1]):
        r = spearmanr(x[:, j], scores).statistic if np.ptp(x[:, j]) > 0 and np.ptp(scores) > 0 else 0.0
        rho.append(0.0 if np.isnan(r) else abs(float(r)))
    return [FEATURES[j] for j in np.argsort(rho, kind="stable")[::-1]]


def beats_champion(registry: Registry, model: FraudNet, valid: Dataset,
                    split: datetime) -> tuple[bool, dict[str, float] | None]:
    """Whether the held-out ``model`` beats the champion on the validation orders that
    neither trained on; and the champion's metrics there. No champion: it wins."""
    champion = registry.champion()
    if champion is None:
        return True, None
    try:
        old = Checkpoint.load(registry.download(champion))
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as exc:
        log.warning("cannot load the champion %s (%s): it loses", champion.version, exc)
        return True, {"ap": -1.0, "auc": -1.0}
    fresh = unseen_by(old, valid, split)
    if fresh.frame["label"].sum() == 0:
        log.warning("the champion %s has trained on every validation order with fraud: no fair "
                    "comparison, so it stays (--force promotes anyway)", champion.version)
        return False, {"ap": math.nan, "auc": math.nan, "n_valid": len(fresh.x)}
    try:
        theirs = fraud_metrics.evaluate(evaluation_frame(fresh, scores_of(old.model, fresh.x)))
    except (ValueError, RuntimeError, KeyError) as exc:
        log.warning("cannot score the champion %s on the new window (%s): it loses", champion.version, exc)
        return True, {"ap": -1.0, "auc": -1.0}
    ours = fraud_metrics.evaluate(evaluation_frame(fresh, scores_of(model, fresh.x)))
    return ours["ap"] > theirs["ap"], {**theirs, "n_valid": len(fresh.x), "new_ap": ours["ap"]}


def labelled_total(settings: Settings) -> int:
    """Orders with a label in the offline store: how much there is to learn from (a
    triggered retrain needs it to have grown since the champion's training)."""
    try:
        return int(raw(settings, "raw_order_label")["order_id"].nunique())
    except FileNotFoundError:
        return 0
