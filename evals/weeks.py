"""``shopstream eval fraud --weeks N``: rolling-origin evaluation on a labelled transaction log.

1. **One replay.** Every transaction from the history start to the end of the last test
   week is replayed once into Kafka (with its label ``delay_days`` later), and a worker
   builds the features and scores every order with the rules. The worker appends each
   order's served feature row to the offline log (``served_fraud``): the rows a model
   sees at training and at scoring come from the same stream, with the same windows and
   delays, whatever the pipeline's lag was.
2. **Weekly retraining.** For each test week, as the compose trainer would, every model
   trains on the ``train_days`` before ``test_start - delay_days`` with the labels known
   at the week's start, and scores the week's orders from their served rows through the
   scoring code the worker runs (``scorers.fraud.FraudScorer``). The net trains with
   several seeds; logistic regression and gradient boosting train on the same rows.
3. **Metrics** per week (AUC, AP, card precision@100, the published protocol: cards known
   to be compromised before a test day are left out of it), the mean and spread over the
   weeks, and a paired bootstrap interval of each model minus each baseline (the same
   resampled orders scored by both, within each week, averaged over the weeks).

The replay is kept in ``OUTPUT/home`` with ``OUTPUT/replay.json``; a later run with the
same output folder, history start, end and delay reuses it and only trains.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console

from shopstream.settings import Settings
from shopstream.topics import ensure_topics
from tools.replay import read


@dataclass(frozen=True)
class Replayed:
    """What one replay covered, and where its offline log is."""

    home: Path
    start: datetime
    end: datetime
    delay_days: float
    history_rate: float
    events: int
    seconds: float

    def to_json(self) -> str:
        return json.dumps({"home": str(self.home), "start": self.start.isoformat(), "end": self.end.isoformat(),
                           "delay_days": self.delay_days, "history_rate": self.history_rate,
                           "events": self.events, "seconds": self.seconds}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Replayed:
        data = json.loads(text)
        return cls(Path(data["home"]), datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"]),
                   float(data["delay_days"]), float(data["history_rate"]), int(data["events"]),
                   float(data["seconds"]))

    def covers(self, start: datetime, end: datetime, delay_days: float) -> bool:
        return self.start == start and self.end >= end and self.delay_days == delay_days


def replay_once(settings: Settings, transactions: Path, start: datetime, end: datetime, output: Path, *,
                delay_days: float = 7.0, history_rate: float = 0.0, redis_db: int = 15,
                console: Console | None = None) -> Replayed:
    """Replay ``[start, end)`` of ``transactions`` through a worker once; reuse an earlier
    replay in ``output`` that covers it."""
    import redis

    from evals.fraud import isolated, replay, running_worker

    console = console or Console()
    output.mkdir(parents=True, exist_ok=True)
    marker = output / "replay.json"
    if marker.exists():
        done = Replayed.from_json(marker.read_text())
        if done.covers(start, end, delay_days):
            console.print(f"reusing the replay in {done.home} ({done.events:,} events, "
                          f"{done.start:%Y-%m-%d}..{done.end:%Y-%m-%d})")
            return done
        raise ValueError(f"{output} holds a replay of {done.start:%Y-%m-%d}..{done.end:%Y-%m-%d} with a "
                         f"{done.delay_days:g}-day delay; choose another --output for this one")
    run_settings = isolated(settings, output, redis_db)
    with redis.Redis.from_url(run_settings.redis.url(reveal=True)) as client:
        client.flushdb()
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    events = [e for e in read(transactions, "transactions", label_delay_days=delay_days) if first <= e.ts < last]
    ensure_topics(run_settings)
    began = time.monotonic()
    with running_worker(run_settings, output):
        replay(events, run_settings, history_rate, console, "features of every week")
    done = Replayed(run_settings.home, start, end, delay_days, history_rate, len(events),
                    round(time.monotonic() - began, 1))
    marker.write_text(done.to_json())
    return done


def offline_settings(settings: Settings, replayed: Replayed) -> Settings:
    """Settings that read the replay's offline log."""
    return settings.model_copy(update={"home": replayed.home, "registry_uri": None})


def test_weeks(first: datetime, weeks: int) -> list[tuple[datetime, datetime]]:
    """``weeks`` consecutive 7-day test windows from ``first``.

    >>> [f"{a:%m-%d}..{b:%m-%d}" for a, b in test_weeks(datetime(2018, 6, 1), 2)]
    ['06-01..06-08', '06-08..06-15']
    """
    return [(first + timedelta(days=7 * k), first + timedelta(days=7 * (k + 1))) for k in range(weeks)]


@dataclass(frozen=True)
class WeekData:
    """One test week: the training window's rows (labels as known at the week's start) and
    the week's orders with their served rows and true labels."""

    start: datetime
    end: datetime
    data: object  # trainers.fraud.Dataset of the training window
    split: datetime  # where its validation days begin
    test: pd.DataFrame  # order_id, customer_id, ts, label (the truth, known later)
    test_x: object  # (N, F) served rows of the week's orders


def week_data(settings: Settings, truth: pd.DataFrame, start: datetime, end: datetime, config) -> WeekData:
    """The rows of the week ``[start, end)``: training on the ``config.days`` that end
    ``config.delay_days`` before it, with the labels known at its start."""
    from scorers.fraud import matrix
    from trainers.fraud import build_dataset
    from trainers.offline import features_as_served, order_events, orders_between

    train_end = start - timedelta(days=config.delay_days)
    data = build_dataset(settings, train_end - timedelta(days=config.days), train_end, labels_as_of=start)
    orders = orders_between(settings, start, end)
    rows, served = features_as_served(settings, orders)
    known = truth.reindex(orders["order_id"].astype(str).to_numpy())
    test = pd.DataFrame({"order_id": orders["order_id"].astype(str).to_numpy(),
                         "customer_id": known["CUSTOMER_ID"].astype(str).to_numpy(),
                         "ts": pd.to_datetime(orders["event_timestamp"], utc=True).to_numpy(),
                         "label": known["TX_FRAUD"].astype(int).to_numpy(), "served": served})
    return WeekData(start, end, data, train_end - timedelta(days=config.valid_days), test,
                    matrix(order_events(orders), rows))


def overridden(config, overrides: str):
    """``config`` (a dataclass) with ``overrides`` applied: ``"loop.lr=1e-3,model.focal_gamma=2"``;
    a tuple's items are separated by ``/``.

    >>> from trainers.configs import FraudTrainConfig
    >>> c = overridden(FraudTrainConfig(), "kind=net,loop.lr=1e-3,model.focal_gamma=2,lrs=1e-3/4e-3")
    >>> c.kind, c.loop.lr, c.model.focal_gamma, c.loop.epochs, c.lrs
    ('net', 0.001, 2.0, 20, (0.001, 0.004))
    """
    from dataclasses import fields, replace

    for item in filter(None, (part.strip() for part in overrides.split(","))):
        key, _, value = item.partition("=")
        path = key.strip().split(".")
        chain = [config]
        for name in path[:-1]:
            chain.append(getattr(chain[-1], name))
        kinds = {f.name: f.type for f in fields(chain[-1])}
        if path[-1] not in kinds:
            raise ValueError(f"{type(chain[-1]).__name__} has no setting {path[-1]!r} (in {item!r})")
        old = getattr(chain[-1], path[-1])
        if isinstance(old, bool):
            new = value.strip().lower() in ("1", "true", "yes")
        elif isinstance(old, tuple):  # "lrs=0.001/0.002"
            new = tuple(float(v) for v in value.split("/") if v.strip())
        else:
            new = type(old)(value.strip())
        for parent, name in zip(reversed(chain), reversed(path), strict=True):
            new = replace(parent, **{name: new})
        config = new
    return config


def score_week(week: WeekData, config, seeds: list[int], variants: dict[str, str], folder: Path,
               console: Console) -> dict[tuple[str, int], object]:
    """Test scores of every model on ``week``, by (model, seed): the served kind
    (``config``, saved and loaded back and scored as a worker scores), its members when it
    is an ensemble, each variant, and the baselines (seed 0: they have none)."""
    from dataclasses import replace

    import numpy as np

    from models.fraud import Checkpoint
    from scorers.fraud import FEATURES, ModelPredictor
    from trainers.fraud import baseline_scores, fit_kind, scores_of

    data = week.data
    is_valid = (data.frame["event_timestamp"] >= week.split).to_numpy()
    train, valid = data.select(~is_valid), data.select(is_valid)
    scores: dict[tuple[str, int], np.ndarray] = {}
    for name, overrides in {"shopstream": "", **variants}.items():
        for seed in seeds:
            run = overridden(config, overrides)
            run = replace(run, loop=replace(run.loop, seed=seed), gbm=replace(run.gbm, seed=seed))
            began = time.monotonic()
            fitted = fit_kind(data, train, valid, run)
            path = Checkpoint(fitted.model, list(FEATURES), {"best": fitted.best}).save(
                folder / f"{week.start:%Y%m%d}-{name.replace(' ', '_')}-{seed}.pt")
            scores[(name, seed)] = ModelPredictor(Checkpoint.load(path), name).predict(week.test_x)
            if name == "shopstream" and run.kind == "ensemble":
                for model in fitted.model.members:
                    scores[(MEMBERS[model.kind], seed)] = scores_of(model, week.test_x)
            console.print(f"  {week.start:%Y-%m-%d} {name} seed {seed}: {fitted.best} "
                          f"({time.monotonic() - began:.0f}s)")
    labels = data.frame["label"].to_numpy()
    for name, values in baseline_scores(data.x, labels, week.test_x).items():
        scores[({"logreg": "logistic regression", "gbm": "gradient boosting"}[name], 0)] = values
    return scores


BASELINES = ("logistic regression", "gradient boosting")
MEMBERS = {"net": "net alone", "gbm": "lightgbm alone", "linear": "linear alone"}
"""What an ensemble's members are called when each is scored alone."""


def week_metrics(test: pd.DataFrame, scores: dict) -> pd.DataFrame:
    """AUC, AP and card precision@100 of every (model, seed) on the kept test rows."""
    from evals.fraud import metric_frame
    from trainers import metrics as fraud_metrics

    rows = []
    for (model, seed), values in scores.items():
        result = fraud_metrics.evaluate(metric_frame(test, values[test.index.to_numpy()]))
        rows.append({"model": model, "seed": seed, **{k: result[k] for k in ("auc", "ap", "cp100")}})
    return pd.DataFrame(rows)


def paired_bootstrap(weeks: list[tuple[pd.DataFrame, dict]], reference: str, against: str, *,
                     resamples: int = 200, seed: int = 0) -> dict[str, list[float]]:
    """The 95 % interval of ``reference`` minus ``against`` in AUC and AP, averaged over
    the weeks (and over the reference's seeds): each resample draws every week's test
    orders with replacement and scores both models on the same draw.

    ``weeks``: per week, the kept test rows (``label``) and the scores by (model, seed)."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(seed)
    weeks = [(test, scores) for test, scores in weeks if test["label"].nunique() == 2]  # else undefined
    if not weeks:
        return {"auc": [math.nan, math.nan], "ap": [math.nan, math.nan]}
    differences = {"auc": [], "ap": []}
    for _ in range(resamples):
        per_week = {"auc": [], "ap": []}
        for test, scores in weeks:
            rows = test.index.to_numpy()
            draw = rows[rng.integers(len(rows), size=len(rows))]
            labels = test.loc[draw, "label"].to_numpy()
            if labels.min() == labels.max():
                continue
            ours = [values for (model, _), values in scores.items() if model == reference]
            theirs = [values for (model, _), values in scores.items() if model == against]
            for name, metric in (("auc", roc_auc_score), ("ap", average_precision_score)):
                per_week[name].append(np.mean([metric(labels, v[draw]) for v in ours])
                                      - np.mean([metric(labels, v[draw]) for v in theirs]))
        for name in differences:
            differences[name].append(float(np.mean(per_week[name])))
    return {name: [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] for name, d in differences.items()}


def summarise(per_week: pd.DataFrame) -> pd.DataFrame:
    """Per model: the mean over weeks of its (seed-averaged) metrics, their spread over the
    weeks (standard deviation), the spread over seeds (the standard deviation over seeds
    of the weeks' mean), and on how many weeks it led both baselines."""
    by_week = per_week.groupby(["model", "week"])[["auc", "ap", "cp100"]].mean().reset_index()
    by_seed = per_week.groupby(["model", "seed"])[["auc", "ap", "cp100"]].mean().reset_index()
    rows = []
    best = by_week[by_week["model"].isin(BASELINES)].groupby("week")[["auc", "ap"]].max()
    for model, weeks in by_week.groupby("model", sort=False):
        seeds = by_seed[by_seed["model"] == model]
        led = weeks.set_index("week")[["auc", "ap"]] > best.reindex(weeks["week"])
        rows.append({"model": model, "weeks": len(weeks),
                     **{f"{k}_mean": weeks[k].mean() for k in ("auc", "ap", "cp100")},
                     **{f"{k}_weeks_sd": weeks[k].std(ddof=0) for k in ("auc", "ap")},
                     **{f"{k}_seeds_sd": seeds[k].std(ddof=0) for k in ("auc", "ap")},
                     "seeds": len(seeds), "weeks_led_auc": int(led["auc"].sum()), "weeks_led_ap": int(led["ap"].sum())})
    return pd.DataFrame(rows)


def run_weeks(settings: Settings, transactions: Path, history_start: datetime, first_week: datetime, weeks: int,
              output: Path, *, config=None, seeds: int = 3, variants: dict[str, str] | None = None,
              history_rate: float = 0.0, redis_db: int = 15, resamples: int = 200,
              console: Console | None = None) -> dict:
    """The whole rolling-origin evaluation; returns what ``weeks.json`` holds."""
    from evals.fraud import without_known_compromised
    from trainers.configs import FraudTrainConfig

    console = console or Console()
    config = config or FraudTrainConfig(kind="ensemble")
    windows = test_weeks(first_week, weeks)
    if first_week - timedelta(days=config.delay_days + config.days) < history_start:
        raise ValueError(f"the first training window starts before the history does: start the history by "
                         f"{first_week - timedelta(days=config.delay_days + config.days):%Y-%m-%d}")
    replayed = replay_once(settings, transactions, history_start, windows[-1][1], output,
                           delay_days=config.delay_days, history_rate=history_rate, redis_db=redis_db,
                           console=console)
    local = offline_settings(settings, replayed)
    frame = pd.read_parquet(transactions) if transactions.suffix == ".parquet" else pd.read_csv(transactions)
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"], utc=True)
    truth = frame.set_index(frame["TRANSACTION_ID"].astype(str))
    models = output / "models"
    models.mkdir(exist_ok=True)
    scored, tables = [], []
    for k, (start, end) in enumerate(windows):
        week = week_data(local, truth, start, end, config)
        kept = without_known_compromised(week.test, frame, config.delay_days)
        console.print(f"week {k + 1} of {weeks}, {start:%Y-%m-%d}..{end:%Y-%m-%d}: training on "
                      f"{len(week.data.x):,} orders ({int(week.data.frame['label'].sum()):,} fraud); testing on "
                      f"{len(kept):,} ({int(kept['label'].sum()):,} fraud), "
                      f"{week.test['served'].mean():.1%} with the rows the worker served")
        scores = score_week(week, config, list(range(seeds)), variants or {}, models, console)
        scored.append((kept, scores))
        tables.append(week_metrics(kept, scores).assign(week=f"{start:%Y-%m-%d}"))
        pd.DataFrame({"order_id": week.test["order_id"], "label": week.test["label"],
                      **{f"{m}|{s}": v for (m, s), v in scores.items()}}).to_parquet(
            output / f"scores-{start:%Y%m%d}.parquet", index=False)
    per_week = pd.concat(tables, ignore_index=True)
    per_week.to_csv(output / "weeks.csv", index=False)
    summary = summarise(per_week)
    compared = [m for m in summary["model"] if m not in BASELINES]
    intervals = {m: {b: paired_bootstrap(scored, m, b, resamples=resamples) for b in BASELINES} for m in compared}
    result = {"weeks": [f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for a, b in windows], "seeds": seeds,
              "variants": variants or {}, "config": {"kind": config.kind, "days": config.days,
                                                     "valid_days": config.valid_days, "delay_days": config.delay_days,
                                                     "negatives": config.negatives},
              "replay": json.loads(replayed.to_json()), "summary": summary.to_dict("records"),
              "per_week": per_week.to_dict("records"), "intervals": intervals, "resamples": resamples}
    (output / "weeks.json").write_text(json.dumps(result, indent=2, default=str))
    plot_weeks(per_week, output / "weeks.png")
    print_weeks(per_week, summary, intervals, console)
    return result


def plot_weeks(per_week: pd.DataFrame, path: Path) -> Path:
    """AUC and AP per week and model (seed mean, with the seeds' range as a band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = list(dict.fromkeys(per_week["week"]))
    at = {week: i for i, week in enumerate(weeks)}  # positions: date strings as x make matplotlib log per call
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, metric, label in zip(axes, ("auc", "ap"), ("AUC ROC", "average precision"), strict=True):
        for model, rows in per_week.groupby("model", sort=False):
            stats = rows.groupby("week")[metric].agg(["mean", "min", "max"])
            x = [at[week] for week in stats.index]
            line, = ax.plot(x, stats["mean"], marker="o", label=model, linestyle=":" if model in BASELINES else "-")
            if (stats["max"] > stats["min"]).any():
                ax.fill_between(x, stats["min"], stats["max"], alpha=0.15, color=line.get_color())
        ax.set(title=f"{label} per test week", xlabel="test week starting", ylabel=label)
        ax.set_xticks(range(len(weeks)), weeks, rotation=20)
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_weeks(per_week: pd.DataFrame, summary: pd.DataFrame, intervals: dict, console: Console) -> None:
    from rich.table import Table

    table = Table(title="fraud, per test week (mean over seeds; known-compromised cards removed)")
    weeks = list(dict.fromkeys(per_week["week"]))
    table.add_column("model")
    for week in weeks:
        table.add_column(f"{week}\nAUC / AP / CP@100")
    means = per_week.groupby(["model", "week"], sort=False)[["auc", "ap", "cp100"]].mean()
    for model in dict.fromkeys(per_week["model"]):
        table.add_row(model, *(" / ".join(f"{v:.3f}" for v in means.loc[(model, w)]) for w in weeks))
    console.print(table)
    table = Table(title=f"over the {len(weeks)} weeks: mean (sd over weeks; sd over seeds), and paired 95 % "
                        "intervals of the difference to each baseline")
    for column in ("model", "AUC", "AP", "CP@100", "- logistic regression (AUC; AP)",
                   "- gradient boosting (AUC; AP)"):
        table.add_column(column)
    for row in summary.to_dict("records"):
        cells = [f"{row[f'{k}_mean']:.3f} ({row[f'{k}_weeks_sd']:.3f}; {row[f'{k}_seeds_sd']:.3f})" for k in ("auc", "ap")]
        diffs = [("; ".join(f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in (intervals[row["model"]][b]["auc"],
                                                                    intervals[row["model"]][b]["ap"])))
                 if row["model"] in intervals else "" for b in BASELINES]
        table.add_row(row["model"], *cells, f"{row['cp100_mean']:.3f}", *diffs)
    console.print(table)
