"""The model commands of the ``shopstream`` CLI: train, models and eval.

Kept apart from ``shopstream.cli`` so that the event-side commands start without
importing torch or MLflow.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shopstream.settings import get_settings
from trainers.configs import FraudTrainConfig, RecsTrainConfig

console = Console()
train_app = typer.Typer(help="Train models from the offline store (batch jobs).", no_args_is_help=True)
models_app = typer.Typer(help="The model registry: list, promote, roll back.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the whole system on a labelled log.", no_args_is_help=True)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
FRAUD, RECS = FraudTrainConfig(), RecsTrainConfig()  # the options' defaults


def seconds(duration: str) -> float:
    """``"24h"`` -> 86400.0; plain numbers are seconds.

    >>> seconds("24h"), seconds("90s"), seconds("1.5d"), seconds("30")
    (86400.0, 90.0, 129600.0, 30.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", duration)
    if not match:
        raise typer.BadParameter(f"expected a duration such as 30m, 24h or 7d, got {duration!r}")
    return float(match[1]) * UNITS[match[2] or "s"]


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"expected a date such as 2018-06-14, got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


Negatives = Annotated[float, typer.Option(min=0.01, max=1.0,
                                          help="Share of genuine orders the deep model trains on "
                                               "(weighted back).")]
NetFeatures = Annotated[int, typer.Option(min=0, help="The net reads only this many inputs, those gradient "
                                                     "boosting ranks highest on the training days (0: all).")]
LearningRates = Annotated[str, typer.Option(
    "--lrs", help="The net's learning rates to choose from by validation AP, e.g. 0.001,0.002,0.004 "
                  "(each trains once; default: the configured one).")]
HistoryRate = Annotated[float | None, typer.Option(
    help="Events/s at which the history is replayed (default: --rate, so that the model trains on "
         "feature rows served as the test's are; 0: as fast as the worker goes, its rows staler).")]


@train_app.command("fraud")
def train_fraud(
    days: Annotated[float, typer.Option(help="Training window in days, validation included.")] = FRAUD.days,
    valid_days: Annotated[float, typer.Option(help="Last days of the window that validate.")] = FRAUD.valid_days,
    delay_days: Annotated[float, typer.Option(help="Label delay: the window ends this long before "
                                                   "the newest label.")] = FRAUD.delay_days,
    labels_as_of: Annotated[str | None, typer.Option(help="Use labels known at this time "
                                                          "(default: the newest).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = FRAUD.loop.epochs,
    negatives: Negatives = FRAUD.negatives,
    kind: Annotated[str, typer.Option(help="net: the attention-fusion net; gbm: gradient-boosted trees "
                                           "(LightGBM, reasons from SHAP values) on the same rows; linear: logistic "
                                           "regression on standardised inputs; ensemble: the three, their "
                                           "calibrated logits weighed on validation.")] = FRAUD.kind,
    refit: Annotated[bool, typer.Option(help="Train again on the whole window, validation days "
                                             "included, for the chosen epochs.")] = FRAUD.refit,
    served: Annotated[bool, typer.Option("--served/--point-in-time",
                                         help="Learn from the feature rows workers served (the point-in-time "
                                              "join for orders none scored), or from the join alone.")] = (
        FRAUD.served),
    net_features: NetFeatures = FRAUD.net_features,
    lrs: LearningRates = "",
    calibrate: Annotated[bool, typer.Option(help="Serve a net or trees with the Platt scaling fitted on the "
                                                 "validation days (an ensemble always is).")] = FRAUD.calibrate,
    gate_baselines: Annotated[bool, typer.Option(help="Promote only a model that also beats logistic "
                                                      "regression and gradient boosting trained on the same "
                                                      "days, on the validation days.")] = FRAUD.gate_baselines,
    force: Annotated[bool, typer.Option(help="Promote to champion even if it does not win.")] = False,
    every: Annotated[str | None, typer.Option(help="Retrain on this schedule, e.g. 24h.")] = None,
    on_signal: Annotated[bool, typer.Option(help="Keep reading signals.drift and retrain when they call "
                                                 "for it (docs/drift.md, \"Retraining\").")] = False,
    output: Annotated[Path | None, typer.Option(help="Folder for the checkpoint and plots.")] = None,
) -> None:
    """Train the fraud model, register it, and promote it if it beats the champion."""
    from trainers.configs import KINDS
    from trainers.fraud import train_and_register

    if kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    config = replace(FRAUD, days=days, valid_days=valid_days, delay_days=delay_days, negatives=negatives,
                     refit=refit, served=served, loop=replace(FRAUD.loop, epochs=epochs), kind=kind,
                     gate_baselines=gate_baselines, net_features=net_features, calibrate=calibrate,
                     lrs=learning_rates(lrs))
    if on_signal:
        from trainers.triggers import retrain_on_signals

        def triggered(tags: dict[str, str]) -> None:
            console.print(f"[bold]drift:[/] {tags['trigger.reason']}; retraining")
            try:
                _print_result(train_and_register(get_settings(), config, force=force, output=output, tags=tags))
            except (ValueError, FileNotFoundError) as exc:
                console.print(f"[yellow]not trained this time:[/] {exc}")

        console.print(f"reading {get_settings().topics.drift} for drift that calls for a retrain")
        retrain_on_signals(get_settings(), triggered)
        return
    _repeat(lambda: _print_result(train_and_register(get_settings(), config, labels_as_of=_date(labels_as_of),
                                                     force=force, output=output)), every)


@train_app.command("recs")
def train_recs(
    days: Annotated[float, typer.Option(help="Training window in days, ending at the newest click.")] = RECS.days,
    valid_days: Annotated[float, typer.Option(help="Last days of the window that validate.")] = RECS.valid_days,
    min_support: Annotated[int, typer.Option(help="Drop items seen fewer times.")] = RECS.min_support,
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping may end sooner).")] = RECS.loop.epochs,
    force: Annotated[bool, typer.Option(help="Promote to champion even if it does not win.")] = False,
    every: Annotated[str | None, typer.Option(help="Retrain on this schedule, e.g. 7d.")] = None,
) -> None:
    """Train the session recommender, register it, and promote it if it beats the champion."""
    from trainers.recs import describe, train_and_register

    config = replace(RECS, days=days, valid_days=valid_days, min_support=min_support,
                     loop=replace(RECS.loop, epochs=epochs))
    _repeat(lambda: console.print(describe(train_and_register(get_settings(), config, force=force))), every)


def _repeat(job, every: str | None) -> None:
    """Run ``job`` once, or on a schedule; a schedule survives a run with too little data."""
    interval = seconds(every) if every else None
    while True:
        started = time.monotonic()
        try:
            job()
        except (ValueError, FileNotFoundError) as exc:
            if interval is None:
                raise typer.BadParameter(str(exc)) from exc
            console.print(f"[yellow]not trained this time:[/] {exc}")
        if interval is None:
            return
        wait = max(interval - (time.monotonic() - started), 0)
        console.print(f"next training in {wait / 3600:.1f} h")
        time.sleep(wait)


def learning_rates(text: str) -> tuple[float, ...]:
    """``--lrs``: "0.001,0.002" as a tuple of positive floats.

    >>> learning_rates("0.001, 0.002"), learning_rates("")
    ((0.001, 0.002), ())
    >>> try:
    ...     learning_rates("fast")
    ... except typer.BadParameter as error:
    ...     print(error)
    --lrs takes numbers separated by commas, not 'fast'
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"--lrs takes numbers separated by commas, not {text!r}") from None
    if any(v <= 0 for v in values):
        raise typer.BadParameter(f"learning rates must be positive: {text!r}")
    return values


BASELINES = {"logreg": "logistic regression", "gbm": "gradient boosting"}
"""The fraud gate's baselines (``trainers.fraud.baselines_on``), as the report names them."""


def _print_result(result) -> None:
    table = Table(title=f"fraud model version {result.version.version}")
    for column in ("", "AUC", "AP", "card precision@100", "calibration error"):
        table.add_column(column)
    rows = [("new (held out)", result.metrics)]
    champion = result.champion_metrics
    if champion:
        rows.append((f"champion, on the {champion.get('n_valid', result.n_valid):,} orders it has not trained on",
                     champion))
    rows += [(f"{BASELINES.get(name, name)} on the same days (the gate)", m) for name, m in result.baselines.items()]
    for name, m in rows:
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in ("auc", "ap", "cp100", "ece")))
    console.print(table)
    if champion and "new_ap" in champion:
        console.print(f"the new model's AP on those orders: {champion['new_ap']:.4f}")
    console.print(f"trained on {result.n_train:,} orders, validated on {result.n_valid:,}; "
                  f"plots: {', '.join(str(p) for p in result.plots)}")
    lost_to = ", ".join(BASELINES.get(name, f"the {name}") for name in result.lost_to)
    if result.promoted:
        console.print("[green]promoted to champion[/]" + (f" (forced: it lost to {lost_to})" if lost_to else ""))
    elif champion and math.isnan(champion.get("ap", 0.0)) and result.lost_to == ["champion"]:
        console.print("[yellow]kept the current champion: it has trained on every validation order with "
                      "a fraud, so there is no fair comparison (--force promotes)[/]")
    else:
        console.print(f"[yellow]not promoted: on the validation days its AP did not beat {lost_to}[/]")


MODELS = ("fraud", "recs")
ModelOption = Annotated[str, typer.Option("--model", help="Which model: fraud or recs.")]


def _registry(model: str):
    from trainers.registry import Registry

    if model not in MODELS:
        raise typer.BadParameter(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    settings = get_settings()
    return Registry(settings, settings.scoring.model_name if model == "fraud" else settings.recs.model_name)


@models_app.command("list")
def models_list(model: ModelOption = "fraud") -> None:
    """Every registered version with its metrics and aliases."""
    registry = _registry(model)
    table = Table(title=registry.name)
    shown = ("auc", "ap", "cp100") if model == "fraud" else ("hr_at_20", "mrr_at_20", "ndcg_at_20")
    for column in ("version", "aliases", *(k.upper().replace("_AT_", "@") for k in shown), "training window",
                   "rows", "created"):
        table.add_column(column)
    for v in registry.versions():
        table.add_row(v.version, ",".join(v.aliases), *(f"{v.metrics.get(k, float('nan')):.4f}"
                                                        for k in shown),
                      f"{v.tags.get('train_start', '')[:10]}..{v.tags.get('train_end', '')[:10]}",
                      v.tags.get("n_rows", v.tags.get("n_views", "")),
                      datetime.fromtimestamp(v.created_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@models_app.command("promote")
def models_promote(
    version: Annotated[str | None, typer.Argument(help="The version to make champion.")] = None,
    model: ModelOption = "fraud",
    from_online: Annotated[bool, typer.Option(help="Promote the challenger only if the online evidence says "
                                                   "it is better (models report); say why not otherwise.")] = False,
    metric: Annotated[str | None, typer.Option(help="With --from-online: the measure that decides (fraud: ap "
                                                    "or auc, SHOPSTREAM_CHALLENGE__FRAUD_METRIC; recs: hr, or "
                                                    "credit when interleaved).")] = None,
    confidence: Annotated[float | None, typer.Option(
        min=0.5, max=0.999, help="With --from-online (default: SHOPSTREAM_CHALLENGE__CONFIDENCE).")] = None,
    min_graded: Annotated[int | None, typer.Option(
        help="With --from-online: labelled orders, graded lists or credited clicks needed "
             "(default: SHOPSTREAM_CHALLENGE__MIN_GRADED).")] = None,
    every: Annotated[str | None, typer.Option(help="With --from-online: judge again on this schedule, e.g. 1h, "
                                                   "and promote when the evidence is there.")] = None,
) -> None:
    """Make a version the champion; workers switch to it within ``reload_s``."""
    from mlflow.exceptions import MlflowException

    registry = _registry(model)
    if from_online:
        policy = get_settings().challenge
        options = {"metric": metric, "confidence": confidence or policy.confidence,
                   "min_graded": min_graded or policy.min_graded}
        if every is None:
            if not _promote_from_online(model, **options):
                raise typer.Exit(1)
            return
        interval = seconds(every)
        while True:
            _promote_from_online(model, **options)
            console.print(f"judging again in {interval / 3600:.1f} h")
            time.sleep(interval)
    if version is None:
        raise typer.BadParameter("name the version to promote, or give --from-online")
    try:
        registry.promote(version)
    except MlflowException as exc:
        raise typer.BadParameter(f"{registry.name} has no version {version!r}") from exc
    console.print(f"version {version} is the champion")


def _promote_from_online(model: str, *, metric: str | None, confidence: float, min_graded: int) -> bool:
    """Judge the challenge and promote the challenger if the evidence says so; say why."""
    from evals.judge import judge, promotion

    settings = get_settings()
    metric = metric or (settings.challenge.fraud_metric if model == "fraud" else None)
    try:
        judged = judge(settings, model, confidence=confidence, **({"metric": metric} if model == "fraud" else {}))
    except LookupError as exc:
        console.print(f"[yellow]{exc}[/]")
        return False
    decisive = metric or ("credit" if judged.challenge.mode == "interleave" else "hr")
    promote, why = promotion(judged, decisive, min_graded)
    if not promote:
        console.print(f"[yellow]version {judged.challenge.version} stays the challenger: {why}[/]")
        return False
    _registry(model).promote(judged.challenge.version)
    console.print(f"[green]version {judged.challenge.version} is the champion: {why}[/]")
    return True


@models_app.command("rollback")
def models_rollback(model: ModelOption = "fraud") -> None:
    """Make the previous champion the champion again."""
    try:
        version = _registry(model).rollback()
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"rolled back: version {version} is the champion")


@models_app.command("challenge")
def models_challenge(
    version: Annotated[str, typer.Option(help="The version that challenges the champion.")],
    mode: Annotated[str, typer.Option(help="shadow: it answers beside the champion on the shadow topic; "
                                           "ab: it answers a share of the users (fraud) or sessions "
                                           "(recs); interleave (recs): lists drafted from both.")] = "shadow",
    weight: Annotated[float, typer.Option(help="With ab or interleave: the share of users or sessions.")] = 0.1,
    model: ModelOption = "fraud",
) -> None:
    """Make a version the challenger; workers pick it up within ``reload_s``."""
    from mlflow.exceptions import MlflowException

    from scorers.challenge import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "interleave" and model != "recs":
        raise typer.BadParameter("interleave merges ranked lists: it is for --model recs only")
    registry = _registry(model)
    try:
        challenge = registry.challenge_with(version, mode, weight)
    except MlflowException as exc:
        raise typer.BadParameter(f"{registry.name} has no version {version!r}") from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    share = "" if challenge.mode == "shadow" else f", {challenge.weight:.0%} of the traffic"
    console.print(f"version {challenge.version} challenges the champion ({challenge.mode}{share})")


@models_app.command("end-challenge")
def models_end_challenge(model: ModelOption = "fraud") -> None:
    """End the challenge: the champion answers everything again."""
    version = _registry(model).end_challenge()
    console.print("no challenge to end" if version is None else f"version {version} no longer challenges")


@models_app.command("report")
def models_report(
    model: ModelOption = "fraud",
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Of the intervals.")] = 0.95,
    output: Annotated[Path, typer.Option(help="Folder for the plot and report.json.")] = Path("model-report"),
) -> None:
    """Champion against challenger on live traffic: each side's measures since the
    challenge began, the difference with its bootstrap interval, and a plot over time."""
    import json

    from evals.judge import as_table, judge, plot

    try:
        judged = judge(get_settings(), model, confidence=confidence)
    except LookupError as exc:
        raise typer.BadParameter(str(exc)) from exc
    frame = as_table(judged)
    table = Table(title=f"{judged.model}: {judged.challenge.mode} challenge of version {judged.challenge.version}")
    for column in frame.columns:
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    for name, v in judged.verdicts.items():
        winner = {"challenger": "[green]the challenger is better[/]", "champion": "[red]the champion is better[/]",
                  None: "no significant difference"}[v.better]
        console.print(f"{name}: challenger minus champion {v.diff:+.4f}, {v.confidence:.0%} interval "
                      f"[{v.lo:+.4f}, {v.hi:+.4f}] on {v.n}: {winner}")
    paths = plot(judged, output)
    output.mkdir(parents=True, exist_ok=True)
    def finite(value):  # NaN (a measure the labels leave undefined) as null: strict JSON
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return None if isinstance(value, float) and math.isnan(value) else value

    (output / "report.json").write_text(json.dumps(finite({
        "model": judged.model, "champion": judged.champion, "challenge": judged.challenge.__dict__,
        "measures": judged.measures, "verdicts": {k: {**v.__dict__, "better": v.better}
                                                  for k, v in judged.verdicts.items()}}), indent=2, default=str))
    console.print(f"plot: {', '.join(map(str, paths)) or 'none yet (nothing graded)'}; {output / 'report.json'}")


@models_app.command("status")
def models_status(model: ModelOption = "fraud") -> None:
    """The champion and the challenger, with its mode and share."""
    registry = _registry(model)
    champion, challenge = registry.champion(), registry.challenge()
    table = Table(title=registry.name)
    for column in ("role", "version", "mode", "share", "since"):
        table.add_column(column)
    table.add_row("champion", champion.version if champion else "none (rules)", "", "", "")
    if challenge is not None:
        since = (datetime.fromtimestamp(int(challenge.salt) / 1000, UTC).strftime("%Y-%m-%d %H:%M")
                 if challenge.salt.isdigit() else "")
        table.add_row("challenger", challenge.version, challenge.mode,
                      "all, beside" if challenge.mode == "shadow" else f"{challenge.weight:.1%}", since)
    console.print(table)


@eval_app.command("fraud")
def eval_fraud(
    transactions: Annotated[Path, typer.Option(help="Labelled transactions (parquet or CSV) with "
                                                    "TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, "
                                                    "TERMINAL_ID, TX_AMOUNT, TX_FRAUD.")],
    history_start: Annotated[str, typer.Option(help="First day replayed.")],
    test_start: Annotated[str, typer.Option(help="First day scored (with --weeks, of the first week).")],
    train_end: Annotated[str | None, typer.Option(help="End of the training window (one test window).")] = None,
    test_end: Annotated[str | None, typer.Option(help="End of the test window, exclusive (one test "
                                                      "window).")] = None,
    weeks: Annotated[int | None, typer.Option(min=1, help="Rolling-origin evaluation: this many consecutive test "
                                                          "weeks, each model retrained weekly on the days before "
                                                          "(docs/evaluation.md).")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="With --weeks: seeds of the trained models.")] = 3,
    kind: Annotated[str, typer.Option(help="With --weeks: the kind evaluated as shopstream.")] = "ensemble",
    variant: Annotated[list[str] | None, typer.Option(
        help="With --weeks: another model to train beside it, NAME=SETTINGS with SETTINGS as "
             "'kind=net,model.focal_gamma=2,loop.lr=0.001' (repeat the option for more).")] = None,
    resamples: Annotated[int, typer.Option(min=10, help="With --weeks: bootstrap resamples.")] = 200,
    delay_days: Annotated[float, typer.Option(help="Label delay in days.")] = 7.0,
    train_days: Annotated[float, typer.Option(help="Training window length in days.")] = 21.0,
    rate: Annotated[float, typer.Option(help="Events/s at which the test window is replayed.")] = 500.0,
    history_rate: HistoryRate = None,
    epochs: Annotated[int, typer.Option(help="Most training epochs.")] = FRAUD.loop.epochs,
    negatives: Negatives = FRAUD.negatives,
    net_features: NetFeatures = FRAUD.net_features,
    lrs: LearningRates = "",
    redis_db: Annotated[int, typer.Option(help="Redis database for this run (emptied first).")] = 15,
    output: Annotated[Path, typer.Option(help="Folder for metrics.json, scores.parquet, plots.")] = Path(
        "eval-fraud"),
) -> None:
    """Run the whole system on a labelled log and compare with LR, GBM and published results."""
    if not transactions.exists():
        raise typer.BadParameter(f"{transactions} does not exist")
    if weeks is not None:
        from evals.weeks import overridden, run_weeks
        from trainers.configs import KINDS

        if kind not in KINDS:
            raise typer.BadParameter(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
        config = replace(FRAUD, kind=kind, days=train_days, valid_days=min(4.0, train_days / 4),
                         delay_days=delay_days, negatives=negatives, net_features=net_features,
                         lrs=learning_rates(lrs), loop=replace(FRAUD.loop, epochs=epochs))
        variants = {}
        for item in variant or []:
            name, _, settings_text = item.partition("=")
            try:
                overridden(config, settings_text)
            except (ValueError, TypeError, AttributeError) as exc:
                raise typer.BadParameter(f"--variant {item!r}: {exc}") from exc
            variants[name.strip()] = settings_text
        try:
            run_weeks(get_settings(), transactions, _date(history_start), _date(test_start), weeks, output,
                      config=config, seeds=seeds, variants=variants, history_rate=history_rate or 0.0,
                      redis_db=redis_db, resamples=resamples, console=console)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        return
    from evals.fraud import EvalWindow, run

    if train_end is None or test_end is None:
        raise typer.BadParameter("give --train-end and --test-end (one test window), or --weeks N")
    window = EvalWindow(_date(history_start), _date(train_end), _date(test_start), _date(test_end),
                        delay_days=delay_days, train_days=train_days)
    if not window.history_start < window.train_end < window.test_start < window.test_end:
        raise typer.BadParameter("expected history start < train end < test start < test end")
    run(get_settings(), transactions, window, output, rate=rate, history_rate=history_rate, epochs=epochs,
        negatives=negatives, redis_db=redis_db, console=console)


@eval_app.command("challenge")
def eval_challenge(
    seeds: Annotated[int, typer.Option(min=1, help="Simulated shops, each with a better and a worse challenger.")] = 10,
    output: Annotated[Path, typer.Option(help="Folder for challenge.csv, summary.json, traffic.png.")] = Path(
        "eval-challenge"),
) -> None:
    """How many clicks shadow scoring, an A/B split and interleaving each need to a
    verdict on a recommender challenger, after a planted change, and whether it is right."""
    from evals.challenge import MODES, run, summarise

    frame = run(output, seeds=seeds, console=console)
    summary = summarise(frame)
    table = Table(title=f"clicks to a verdict, median over {seeds} shops (right verdicts / runs)")
    for column in ("challenger", *MODES):
        table.add_column(column)
    for scenario in ("better", "worse"):
        cells = []
        for mode in MODES:
            got = summary.get(f"{scenario}/{mode}", {})
            median = got.get("median_clicks")
            cells.append(f"{median:,.0f} ({got.get('right', 0)}/{got.get('runs', 0)})" if median is not None
                         else f"none ({got.get('right', 0)}/{got.get('runs', 0)})")
        table.add_row(scenario, *cells)
    console.print(table)
    if summary.get("ab_over_interleave"):
        console.print(f"an A/B split needed {summary['ab_over_interleave']:.1f} times the clicks interleaving did "
                      "(the better challenger, medians)")
    console.print(f"written: {output / 'challenge.csv'}, {output / 'summary.json'}, {output / 'traffic.png'}")


@eval_app.command("drift")
def eval_drift(
    seeds: Annotated[int, typer.Option(min=1, help="Seeded streams per scenario.")] = 20,
    null_events: Annotated[int, typer.Option(min=0, help="Values per seed of the null runs (no change).")] = 1_000_000,
    ert: Annotated[float, typer.Option(help="Expected values between false alarms the KS test is "
                                            "calibrated to.")] = 100_000.0,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 2,
    transactions: Annotated[Path | None, typer.Option(help="Instead: replay this labelled transaction log "
                                                           "(the format of eval fraud) through the real "
                                                           "system.")] = None,
    reference_end: Annotated[str | None, typer.Option(help="With --transactions: train on what came "
                                                           "before, serve what follows.")] = None,
    test_days: Annotated[float, typer.Option(help="With --transactions: days served.")] = 7.0,
    plant_amounts: Annotated[float | None, typer.Option(help="With --transactions: order amounts this many "
                                                             "times larger from the middle of the served "
                                                             "days (none: a null run).")] = None,
    customers: Annotated[int | None, typer.Option(help="With --transactions: only customers with a "
                                                       "smaller CUSTOMER_ID (a slice).")] = None,
    rate: Annotated[float, typer.Option(help="With --transactions: events/s of the served days.")] = 500.0,
    history_rate: HistoryRate = None,
    history_days: Annotated[float, typer.Option(help="With --transactions: days replayed before "
                                                     "--reference-end.")] = 45.0,
    output: Annotated[Path, typer.Option(help="Folder for the results (summary.csv, bar.csv, metrics.json, "
                                              "delays.png; signals.parquet with --transactions).")] = Path(
        "eval-drift"),
) -> None:
    """Planted changes and null runs: each detector's recall, delay and false alarms; or,
    with --transactions, the drift role on a real log replayed through the system."""
    if transactions is not None:
        from evals.drift import run_real

        if not transactions.exists():
            raise typer.BadParameter(f"{transactions} does not exist")
        if reference_end is None:
            raise typer.BadParameter("--transactions needs --reference-end")
        run_real(get_settings(), transactions, _date(reference_end), output, test_days=test_days,
                 plant=plant_amounts, customers=customers, rate=rate, history_rate=history_rate,
                 history_days=history_days,
                 console=console)
        return
    from evals.drift import run

    run(output, seeds, null_events, ert, workers, console)


@eval_app.command("recs")
def eval_recs(
    sessions: Annotated[Path, typer.Option(help="Session log: DIGINETICA, a session_id,item_id,timestamp "
                                                "CSV (epoch seconds), or REES46.")],
    format: Annotated[str, typer.Option("--format", help="diginetica, csv or rees46.")] = "diginetica",  # noqa: A002
    test_days: Annotated[float, typer.Option(help="The last days are the test set.")] = 7.0,
    valid_days: Annotated[float | None, typer.Option(help="Validation days before the test "
                                                          "(default: as many as test days).")] = None,
    min_support: Annotated[int, typer.Option(help="Drop items seen fewer times.")] = RECS.min_support,
    epochs: Annotated[int, typer.Option(help="Most training epochs.")] = RECS.loop.epochs,
    parity: Annotated[bool, typer.Option(help="Also replay the test sessions through a live worker.")] = True,
    rate: Annotated[float, typer.Option(help="Clicks/s for the parity replay.")] = 500.0,
    map_: Annotated[list[str] | None, typer.Option("--map", help="CONTRACT=COLUMN, e.g. "
                                                                 "timestamp=ts (repeatable).")] = None,
    redis_db: Annotated[int, typer.Option(help="Redis database for the parity run (emptied first).")] = 14,
    output: Annotated[Path, typer.Option(help="Folder for metrics.json, predictions.parquet, plots.")] = Path(
        "eval-recs"),
) -> None:
    """Next-item HR/MRR/NDCG@20 against POP, item-kNN and V-SKNN, and a live parity check."""
    from evals.recs import FORMATS, run
    from tools.replay import parse_mapping

    if not sessions.exists():
        raise typer.BadParameter(f"{sessions} does not exist")
    if format not in FORMATS:
        raise typer.BadParameter(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
    try:
        mapping = parse_mapping(map_ or [])
        run(get_settings(), sessions, format, test_days, output, mapping=mapping, valid_days=valid_days,
            min_support=min_support, epochs=epochs, check_parity=parity, rate=rate, redis_db=redis_db,
            console=console)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
