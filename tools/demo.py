"""The demo: a simulated shop streaming into a worker, watched live, features read back.

Run with ``make demo`` (which also installs and starts Kafka and Redis and registers the
Feast repo) or ``shopstream demo --events 20000 --rate 1000``. It has three acts:

1. history: three weeks of a small shop's past, with fraud and its late labels, sent as
   fast as possible; the worker builds features, scores every order with the rules and
   recommends popular items after every click;
2. training: the fraud model is trained from the offline store, the session recommender
   from the offline click log, both registered as champions, and the worker switches to
   them without a restart; gradient-boosted trees are trained on the same rows and
   challenge the fraud net in shadow;
3. live: the shop's present at ``rate`` events per second, scored and recommended by
   the models, the challenger scoring every order beside the champion. Halfway through,
   order amounts jump fourfold (a planted change): the drift role's signals show as they
   fire, and the trainer job that reads them (``shopstream train fraud --on-signal``)
   retrains when the policy calls for it. At the end the two fraud models are compared
   on the labels that have come (``shopstream models report``).

The screen shows events per second by topic, dead letters (the stream carries a few
broken records on purpose), consumer lag, online micro-batches (their size and write
time), feature freshness, late events, fraud scores by model version with the latest
flagged orders and their reasons, session recommendations by strategy, and drift signals
with the retrain they trigger; at the end a few feature vectors are read back through
Feast.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from shopstream import workers
from shopstream.client import OutputConsumer, ShopProducer
from shopstream.events import Click, DriftSignal, FraudScore, Order, SessionRecs
from shopstream.featurestore import feature_store
from shopstream.settings import Settings
from shopstream.topics import ensure_topics
from tools.burst import SMALL_BAD_KINDS, bad_record
from tools.simulator import DAY, Shop, SimConfig

BROKEN_EVERY = 400  # one broken record in this many, to show the dead-letter path
HISTORY_DAYS = 21  # the past the first model trains on, with the labels that had arrived
LIVE_DAYS = 7  # then the last week, streamed at the demo's rate


@dataclass
class Rates:
    """Events per second per topic, from successive counter readings."""

    _last: tuple[float, dict[str, float]] | None = None
    value: dict[str, float] = field(default_factory=dict)

    def update(self, counts: dict[str, float]) -> dict[str, float]:
        now = time.monotonic()
        if self._last is not None and now - self._last[0] >= 0.5:
            elapsed = now - self._last[0]
            self.value = {t: (n - self._last[1].get(t, 0)) / elapsed for t, n in counts.items()}
            self._last = (now, dict(counts))
        elif self._last is None:
            self._last = (now, dict(counts))
        return self.value


@dataclass
class Sent:
    """What the sender thread has sent so far."""

    records: int = 0
    users: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)


def shop_config(seed: int) -> SimConfig:
    """The demo's shop: small enough that three weeks of it stream in a minute or two."""
    return SimConfig(seed=seed, users=600, items=800, terminals=60, sessions_per_hour=20,
                     card_testing_per_day=0.7, compromised_terminal_share=0.1)


def timeline(seed: int, live_events: int) -> tuple[list, list]:
    """One shop, two stretches of time: ``HISTORY_DAYS`` days up to a week ago, with the
    labels that had arrived by then, and the week since (at most ``live_events``)."""
    start = time.time() - (HISTORY_DAYS + LIVE_DAYS) * DAY
    cut, history, live = start + HISTORY_DAYS * DAY, [], []
    for event in Shop(shop_config(seed)).events(start=start):
        ts = event.ts.timestamp()
        if ts > time.time() or len(live) >= live_events:  # labels still to come stay unsent
            break
        (history if ts <= cut else live).append(event)
    return history, live


PLANTED_AMOUNTS = 4.0
"""Act three's planted change: order amounts this many times larger from halfway on."""


def plant(live: list) -> list:
    """``live`` with order amounts ``PLANTED_AMOUNTS`` times larger in its second half."""
    half = len(live) // 2
    return live[:half] + [e.model_copy(update={"amount": e.amount * PLANTED_AMOUNTS}) if isinstance(e, Order)
                          else e for e in live[half:]]


def produce(settings: Settings, stream: list, rate: float, seed: int, sent: Sent) -> None:
    """Send ``stream`` at ``rate`` per second (0: as fast as possible), with some broken
    records among them."""
    rng = random.Random(seed)
    topics = settings.topics.inputs()
    started = time.monotonic()
    with ShopProducer(settings) as producer:
        for i, event in enumerate(stream):
            if i % BROKEN_EVERY == BROKEN_EVERY - 1:
                broken = bad_record(SMALL_BAD_KINDS[i // BROKEN_EVERY % len(SMALL_BAD_KINDS)],
                                    event.ts, rng)
                producer.send_raw(topics[broken.kind], broken.raw)
            else:
                producer.send(event)
                if isinstance(event, Order) and len(sent.users) < 200:
                    sent.users.append(event.user_id)
                if isinstance(event, Click) and len(sent.sessions) < 200:
                    sent.sessions.append(event.session_id)
            sent.records = i + 1
            if rate > 0 and (ahead := (i + 1) / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)


def watch_scores(settings: Settings, flagged: deque, recs: deque, stop: threading.Event,
                 drifts: deque | None = None) -> None:
    """Keep the latest flagged orders (review or block) from ``scores.fraud``, the latest
    recommendations from ``recs.session`` and the latest drift signals."""
    kinds = ["fraud_score", "session_recs"] + (["drift"] if drifts is not None else [])
    with OutputConsumer(f"demo-{uuid.uuid4().hex[:6]}", kinds, settings) as consumer:
        while not stop.is_set():
            output = consumer.poll(0.5)
            if isinstance(output, FraudScore) and output.decision != "allow":
                flagged.append(output)
            elif isinstance(output, SessionRecs):
                recs.append(output)
            elif isinstance(output, DriftSignal) and drifts is not None:
                drifts.append(output)


@dataclass
class Retrains:
    """What the demo's trainer job did: the reason and result of each triggered retrain."""

    done: list[str] = field(default_factory=list)


def retrain_on_drift(settings: Settings, retrains: Retrains) -> None:
    """The trainer job of act three (a daemon thread): reads ``signals.drift`` and
    retrains once when the policy calls for it (``trainers.triggers``)."""
    from trainers.configs import FraudTrainConfig, LoopConfig
    from trainers.fraud import train_and_register
    from trainers.triggers import retrain_on_signals

    config = FraudTrainConfig(days=12, valid_days=3, refit=False, loop=LoopConfig(epochs=8, batch_size=256))

    def train(tags: dict[str, str]) -> None:
        retrains.done.append(f"retraining: {tags['trigger.reason']} ...")
        try:
            result = train_and_register(settings, config, tags=tags, progress=False)
            retrains.done[-1] = (f"retrained ({tags['trigger.reason']}): version {result.version.version}, "
                                 f"{'promoted' if result.promoted else 'not promoted: it did not beat the champion'}")
        except ValueError as exc:
            retrains.done[-1] = f"retrain called for ({tags['trigger.reason']}) but not possible: {exc}"

    # No cooldown: a demo run an hour after the last would otherwise wait a day.
    demo = settings.model_copy(update={"drift": settings.drift.model_copy(update={"cooldown_h": 0.0})})
    retrain_on_signals(demo, train, once=True, group=f"demo-retrain-{uuid.uuid4().hex[:6]}")


def drift_view(drifts: deque, retrains: Retrains) -> Group:
    """The latest drift signals, and what the trainer job did about them."""
    table = Table(title=f"drift signals ({sum(s.drifted for s in drifts)} drift, "
                        f"{sum(not s.drifted for s in drifts)} warn, latest first)", expand=True)
    for column in ("stream", "subject", "detector", "statistic", "value", "threshold", "severity", "window end"):
        table.add_column(column)
    for s in list(drifts)[::-1][:6]:
        table.add_row(s.stream, s.subject, s.detector, s.statistic, f"{s.value:.3g}", f"{s.threshold:.3g}",
                      "[red]drift[/]" if s.drifted else "[yellow]warn[/]", f"{s.window_end:%m-%d %H:%M}")
    return Group(table, *(f"[bold]{line}[/]" for line in retrains.done or ["no retrain triggered yet"]))


def recs_view(m: workers.WorkerMetrics | None, recs: deque) -> Group:
    """Recommendations by model version and strategy, and the latest few."""
    counts = Table(title="session recommendations by model version and strategy", expand=True)
    strategies = sorted({s for _, s in (m.recommendations if m else {})})
    counts.add_column("model")
    for strategy in strategies:
        counts.add_column(strategy, justify="right")
    for version in sorted({v for v, _ in (m.recommendations if m else {})}):
        counts.add_row("popularity (no model yet)" if version == "rules" else f"version {version}",
                       *(f"{m.recommendations.get((version, s), 0):,.0f}" for s in strategies))
    latest = Table(title="latest recommendations", expand=True)
    for column in ("session", "after", "viewed", "strategy", "model", "top items"):
        latest.add_column(column)
    for r in list(recs)[-4:]:
        latest.add_row(r.session_id[-12:], r.trigger, str(r.session_length), r.strategy, r.model_version,
                       ", ".join(i.item_id for i in r.items[:5]))
    return Group(counts, latest)


def fraud_view(m: workers.WorkerMetrics | None, flagged: deque) -> Group:
    """Scores by model version and decision, and the latest flagged orders with reasons."""
    counts = Table(title="fraud scores by model version", expand=True)
    for column in ("model", "allow", "review", "block"):
        counts.add_column(column, justify="left" if column == "model" else "right")
    for version in sorted({v for v, _ in (m.predictions if m else {})}):
        counts.add_row("rules" if version == "rules" else f"version {version}",
                       *(f"{m.predictions.get((version, d), 0):,.0f}" for d in ("allow", "review", "block")))
    for (model, version, variant), n in sorted((m.answers if m else {}).items()):
        if variant == "shadow" and not model.endswith("recs"):
            counts.add_row(f"version {version} (shadow)", f"{n:,.0f} scored beside", "", "")
    latest = Table(title="latest flagged orders", expand=True)
    for column in ("order", "score", "decision", "model", "reasons"):
        latest.add_column(column)
    for score in list(flagged)[-5:]:
        reasons = "; ".join(f"{r.feature}={r.value:g}" if isinstance(r.value, float) else r.feature
                            for r in score.reasons) or "-"
        latest.add_row(score.order_id, f"{score.score:.2f}", score.decision, score.model_version, reasons)
    return Group(counts, latest)


def view(m: workers.WorkerMetrics | None, rates: dict[str, float], progress: Progress,
         flagged: deque | None = None, recs: deque | None = None, drift: Group | None = None,
         since: workers.WorkerMetrics | None = None) -> Group:
    """The live screen; freshness of the batches written after ``since`` (this act's)."""
    table = Table(expand=True, title="worker, by input topic")
    for column in ("topic", "events/s", "consumed", "processed"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    if m is not None:
        for topic in sorted(m.events_in):
            table.add_row(topic, f"{rates.get(topic, 0):,.0f}", f"{m.events_in[topic]:,.0f}",
                          f"{m.events_out.get(topic, 0):,.0f}")
    summary = Table.grid(padding=(0, 3))
    if m is not None:
        dead = ", ".join(f"{r} {n:,.0f}" for r, n in sorted(m.dead_letters.items())) or "none"
        batch = m.online_rows / m.online_batches if m.online_batches else 0
        write_ms = 1000 * m.online_write_s / m.online_batches if m.online_batches else 0
        p50, p99 = m.freshness_quantile(0.5, since), m.freshness_quantile(0.99, since)
        summary.add_row(f"[bold]{sum(rates.values()):,.0f}[/] events/s",
                        f"lag [bold]{m.lag:,.0f}[/]", f"late events [bold]{m.late:,.0f}[/]")
        summary.add_row(f"online batches [bold]{m.online_batches:,.0f}[/]",
                        f"avg [bold]{batch:,.0f}[/] rows, [bold]{write_ms:,.0f}[/] ms each",
                        "freshness p50 " + (f"[bold]≤{p50 * 1000:,.0f}[/] ms" if p50 else "-")
                        + ", p99 " + (f"[bold]≤{p99 * 1000:,.0f}[/] ms" if p99 else "-"))
        summary.add_row(f"dead letters [bold red]{m.total_dead:,.0f}[/]", dead, "")
    parts = [progress, Panel(summary, title="shopstream"), table]
    if flagged is not None:
        parts.append(fraud_view(m, flagged))
    if recs is not None:
        parts.append(recs_view(m, recs))
    if drift is not None:
        parts.append(drift)
    return Group(*parts)


def read_back(settings: Settings, sent: Sent, console: Console) -> None:
    """Print a few feature vectors read through Feast."""
    store = feature_store(settings)
    users = list(dict.fromkeys(sent.users))[:3]
    sessions = list(dict.fromkeys(sent.sessions))[:3]
    if users:
        names = ["user_activity__clicks_count_1h", "user_activity__orders_count_24h",
                 "user_activity__devices_distinct_24h", "user_orders__order_amount_mean_30d",
                 "user_orders__seconds_since_last_order", "user_activity__account_age_days"]
        # Views share feature names (orders_count_24h), so read them by their full names.
        features = store.get_online_features(
            features=[name.replace("__", ":") for name in names], full_feature_names=True,
            entity_rows=[{"user_id": u} for u in users]).to_dict()
        _print_vectors(console, "the user views of fraud_v1", "user_id", features, names)
    if sessions:
        features = store.get_online_features(
            features=["session_state:clicks_count", "session_state:session_length_s",
                      "session_state:last_items", "session_state:cart_items"],
            entity_rows=[{"session_id": s} for s in sessions]).to_dict()
        _print_vectors(console, "session_state (recs_v1)", "session_id", features,
                       ["clicks_count", "session_length_s", "last_items", "cart_items"])


def _print_vectors(console: Console, title: str, key: str, features: dict, names: list[str]) -> None:
    table = Table(key, *(name.split("__")[-1] for name in names),
                  title=f"read back through Feast: {title}")
    for i, entity in enumerate(features[key]):
        cells = []
        for name in names:
            value = features.get(name, [None] * (i + 1))[i]
            if isinstance(value, list):
                cells.append(", ".join(value[-3:]) + (" …" if len(value) > 3 else ""))
            elif isinstance(value, float):
                cells.append(f"{value:,.2f}")
            else:
                cells.append("-" if value is None else str(value))
        table.add_row(entity, *cells)
    console.print(table)


def stream(settings: Settings, title: str, total: int, sender: threading.Thread, sent: Sent,
           flagged: deque, recs: deque, console: Console, log_file,
           drift=None) -> workers.WorkerMetrics | None:
    """Show the live screen until ``sender`` is done and the worker has caught up."""
    before = workers.scrape(settings.web_port) or workers.WorkerMetrics()
    progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn())
    task = progress.add_task(title, total=total)
    rates = Rates()
    last_change, last_seen = time.monotonic(), -1.0
    sender.start()
    m = None
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            m = workers.scrape(settings.web_port) or m  # a busy worker may not answer every time
            handled = (m.total_in - before.total_in) if m else 0
            progress.update(task, completed=sent.records)
            live.update(view(m, rates.update(m.events_in if m else {}), progress, flagged, recs,
                             drift() if drift else None, since=before))
            if not sender.is_alive() and handled >= total and m is not None and m.lag == 0:
                return m
            if handled != last_seen:
                last_change, last_seen = time.monotonic(), handled
            # A restarted worker first restores its tables from their changelogs, which
            # takes minutes after several runs: give that more time than a stall.
            elif time.monotonic() - last_change > (120 if handled else 900):
                state = (f"it has consumed {handled:,.0f} of {total:,} records, lag {m.lag:,.0f}" if m
                         else "its /metrics page does not answer")
                raise RuntimeError(f"the worker made no progress for 2 minutes ({state}); see {log_file}")
            time.sleep(0.5)


def train(settings: Settings, console: Console) -> str | None:
    """Act two: train on the history, register, promote; wait for the worker to switch."""
    from trainers.configs import FraudTrainConfig, LoopConfig
    from trainers.fraud import train_and_register

    console.rule("act 2: training the fraud model from the offline store")
    # A quick model: fewer epochs and no refit on the validation days (``train fraud`` does both).
    config = FraudTrainConfig(days=12, valid_days=3, refit=False, loop=LoopConfig(epochs=8, batch_size=256))
    result = train_and_register(settings, config, force=True)
    m = result.metrics
    console.print(f"version {result.version.version}: validation AUC {m['auc']:.3f}, AP {m['ap']:.3f} "
                  f"on {result.n_valid:,} orders (trained on {result.n_train:,}); promoted to champion")
    if picked_up(settings, console, settings.scoring.model_name, result.version.version, "champion"):
        console.print(f"the worker switched to version {result.version.version} without a restart")
        return result.version.version
    console.print("[yellow]the worker has not switched yet; it checks every "
                  f"{settings.scoring.reload_s:.0f}s[/]")
    return result.version.version


def challenge(settings: Settings, console: Console) -> str | None:
    """Act two, part three: boosted trees on the same rows challenge the net in shadow."""
    from trainers.configs import FraudTrainConfig
    from trainers.fraud import train_and_register
    from trainers.registry import Registry

    console.rule("act 2: a challenger, gradient-boosted trees, scoring in shadow")
    registry = Registry(settings)
    net = registry.champion()
    config = FraudTrainConfig(days=12, valid_days=3, refit=False, kind="gbm")
    result = train_and_register(settings, config)
    m = result.metrics
    trees = result.version.version
    console.print(f"version {trees} (trees): validation AUC {m['auc']:.3f}, AP {m['ap']:.3f}")
    if result.promoted and net is not None:  # the trees won on validation: the net challenges them live
        registry.challenge_with(net.version, "shadow")
        console.print(f"the trees beat the net on validation and are the champion; the net (version "
                      f"{net.version}) now scores every order beside them, on {settings.topics.fraud_shadow}")
        return net.version
    registry.challenge_with(trees, "shadow")
    console.print(f"the trees now score every order beside the champion, on {settings.topics.fraud_shadow}")
    return trees


def cell(value) -> str:
    """A table cell: counts as integers, measures to three places, n/a for none.

    >>> cell(7.0), cell(0.12345), cell(None), cell("champion")
    ('7', '0.123', 'n/a', 'champion')
    """
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.3f}"
    return str(value)


def compare(settings: Settings, console: Console) -> None:
    """The end of act three: the champion and the challenger on the labels that came."""
    from evals.judge import as_table, judge, promotion

    try:
        judged = judge(settings, "fraud")
    except LookupError:
        return
    table = Table(title=f"champion (v{judged.champion}) and shadow challenger (v{judged.challenge.version}), "
                        "on the labels that came during the live days")
    frame = as_table(judged)[["side", "version", "n", "fraud", "auc", "ap", "precision@review", "recall@review"]]
    for column in frame.columns:
        table.add_column(column)
    for row in frame.itertuples(index=False):
        table.add_row(*(cell(v) for v in row))
    console.print(table)
    if judged.graded < 500:
        console.print("Labels come days after the orders (the shop confirms genuine ones after a week, "
                      "chargebacks within two to ten days), so a week of live orders grades few of "
                      "them yet: the verdict waits for the evidence, as it would in a shop.")
    _, why = promotion(judged, "ap", min_graded=500)
    console.print(f"shopstream models promote --from-online would say: {why}")


def train_recs(settings: Settings, console: Console) -> str | None:
    """Act two, part two: the session recommender from the offline click log."""
    from trainers.configs import LoopConfig, RecsTrainConfig
    from trainers.recs import train_and_register

    console.rule("act 2: training the session recommender from the offline click log")
    # A quick model: fewer epochs and no refit on the validation days (``train recs`` does both).
    config = RecsTrainConfig(days=HISTORY_DAYS, valid_days=2, blend_step=0.5, refit=False, max_valid_cases=2000,
                             loop=LoopConfig(epochs=8, batch_size=128, lr=2e-3, weight_decay=0.1, patience=4))
    result = train_and_register(settings, config, force=True)
    m = result.metrics
    console.print(f"version {result.version.version}: validation HR@20 {m['hr@20']:.3f}, MRR@20 "
                  f"{m['mrr@20']:.3f} on {result.n_valid:,} next-item cases (trained on {result.n_train:,} "
                  "sessions); promoted to champion")
    if picked_up(settings, console, settings.recs.model_name, result.version.version, "recommender"):
        console.print(f"the worker switched to recommender version {result.version.version}")
    return result.version.version


def picked_up(settings: Settings, console: Console, model_name: str, version: str, what: str,
              timeout_s: float = 60.0) -> bool:
    """Whether the demo's worker serves ``version`` of ``model_name`` within ``timeout_s``."""
    with console.status(f"waiting for the worker to pick up the new {what} ..."):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            scraped = workers.scrape(settings.web_port)
            if scraped and scraped.model_versions.get(model_name) == float(version):
                return True
            time.sleep(0.5)
    return False


def run(settings: Settings, *, events: int = 20_000, rate: float = 1000, seed: int = 7,
        console: Console | None = None, with_model: bool = True) -> workers.WorkerMetrics | None:
    """Start a worker unless one answers, stream the shop through it, show it live."""
    console = console or Console()
    ensure_topics(settings)
    with console.status("registering the Feast feature repo ..."):
        feature_store(settings, apply=True)
    log_file = settings.home.resolve() / "logs" / "worker.log"
    worker = None
    if not workers.ready(settings.web_port):
        console.print(f"starting a worker (log: {log_file}) ...")
        worker = workers.start({}, log_file)
        ready_s = workers.wait_ready(worker, settings.web_port, log_file)
        console.print(f"worker ready in {ready_s:.1f}s")
        prepared_s = workers.wait_ready(worker, settings.web_port, log_file, until=workers.prepared)
        console.print(f"Feast clients built in the background {ready_s + prepared_s:.1f}s after the start")
    flagged: deque = deque(maxlen=50)
    recs: deque = deque(maxlen=50)
    drifts: deque = deque(maxlen=200)
    retrains = Retrains()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_scores, args=(settings, flagged, recs, stop, drifts), daemon=True)
    watcher.start()
    started = time.monotonic()
    m = None
    try:
        past, live = timeline(seed, events)
        if with_model:
            console.rule(f"act 1: {HISTORY_DAYS} days of history, scored by the rules (or the current champion)")
            sent = Sent()
            sender = threading.Thread(target=produce, args=(settings, past, 0, seed, sent), daemon=True)
            stream(settings, "history", len(past), sender, sent, flagged, recs, console, log_file)
            time.sleep(1.5)
            train(settings, console)
            train_recs(settings, console)
            challenge(settings, console)
        console.rule(f"{'act 3: ' if with_model else ''}the last {LIVE_DAYS} days of the shop, "
                     f"{rate:,.0f} events/s" + (f"; order amounts x{PLANTED_AMOUNTS:g} from halfway on"
                                                if with_model else ""))
        drift = None
        if with_model:
            live = plant(live)
            drifts.clear()  # act 3's signals only
            threading.Thread(target=retrain_on_drift, args=(settings, retrains), daemon=True).start()
            drift = lambda: drift_view(drifts, retrains)  # noqa: E731 - rebuilt at each refresh
        sent = Sent()
        sender = threading.Thread(target=produce, args=(settings, live, rate, seed, sent), daemon=True)
        m = stream(settings, "live", len(live), sender, sent, flagged, recs, console, log_file, drift)
        if with_model:
            console.print(drift_view(drifts, retrains))
        time.sleep(1.5)  # the last micro-batch reaches the online store
        elapsed = time.monotonic() - started
        console.print(
            f"[green]done[/] in {elapsed:.1f}s: {m.total_out:,.0f} events processed, "
            f"{m.total_dead:,.0f} dead-lettered, "
            f"{sum(m.predictions.values()):,.0f} orders scored, "
            f"{sum(m.recommendations.values()):,.0f} recommendations sent.")
        read_back(settings, sent, console)
        if with_model:
            compare(settings, console)
    finally:
        stop.set()
        if worker is not None:
            workers.stop(worker)
    where_next(settings, console, kept=worker is None)
    return m


def where_next(settings: Settings, console: Console, kept: bool) -> None:
    """Where to look after the demo: a worker's metrics, Prometheus, the MLflow UI."""
    from shopstream.services import prometheus
    from shopstream.settings import registry_uri

    metrics = f"http://{settings.web_host}:{settings.web_port}/metrics"
    console.rule("where to look next")
    console.print(f"worker metrics: {metrics}" + ("" if kept else " (the demo's worker has stopped: "
                                                                     "`shopstream worker` starts one)"))
    if prometheus.ready(settings):
        console.print(f"Prometheus: {prometheus.url(settings)}/alerts")
    else:
        console.print("Prometheus: `make monitor` starts it with the alert rules, scraping local workers")
    if settings.registry_uri is None:  # a server's URI may hold credentials: not printed
        console.print(f"models: `.venv/bin/mlflow ui --backend-store-uri {registry_uri(settings)}`, "
                      "then http://127.0.0.1:5000")
