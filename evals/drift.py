"""``shopstream eval drift``: how soon each drift detector finds a planted change, and how
often it raises a false alarm on a stream that did not change.

Every scenario is a seeded stream with one change at ``CHANGE_AT`` (or none, for the null
run): abrupt and gradual mean shifts of 0.25, 0.5 and 1 standard deviation, a doubled
variance, a new category mix, an error rate rising from 0.15 to 0.22, a large error jump,
a concept change of River's SEA generator seen through a fixed classifier's errors, and
order amounts from the shop simulator with a planted rise (the one scenario with real
event times). Each detector sees every seed's stream from the start; an alarm before the
change is a false alarm, the first one at or after it is the detection.

Detectors: River's ADWIN and Page-Hinkley with their defaults (the anchor), the ADWIN of
the drift role (its delta shared by the 40 inputs it watches), the KS test calibrated to
``ert`` values between false alarms, the windowed PSI or Jensen-Shannon distance, and a
baseline that fires every ``BASELINE_EVERY`` values (it finds every change late, and
raises false alarms at a fixed rate: compare it on delay and false alarms, not recall).

Pure computation; ``shopstream eval drift`` prints the table and writes it with a plot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import pandas as pd
from river import drift as river_drift

from scorers.drift import Adwin, CalibratedKS, WindowedDistance, calibrate_ks
from scorers.profiles import CategoricalProfile, NumericProfile

CHANGE_AT = 3_000
"""Values before the change in every scenario with one."""
BASELINE_EVERY = 500
WATCHED = 40
"""Streams the drift role watches together for one fraud model (its inputs)."""
CATEGORIES = [f"c{i}" for i in range(8)]
REFERENCE_SHARES = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])
NEW_SHARES = np.array([0.2, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.12])


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # numeric, categorical or error
    change: str
    max_delay: int
    """Values after the change within which a detection counts as found."""
    length: int
    draw: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray | None]]
    """(values, event times in seconds or None) for a seed's generator."""


def _gaussian(rng: np.random.Generator, length: int, shift: float = 0.0, scale: float = 1.0, ramp: int = 0):
    x = rng.normal(0.0, 1.0, length)
    after = np.arange(length) - CHANGE_AT
    weight = np.clip((after + 1) / ramp, 0, 1) if ramp else (after >= 0).astype(float)
    return x * (1 + (scale - 1) * weight) + shift * weight, None


def _numeric(shift: float = 0.0, scale: float = 1.0, ramp: int = 0) -> Callable:
    return partial(_gaussian, shift=shift, scale=scale, ramp=ramp)  # a partial pickles to the workers


def _coin(rng: np.random.Generator, length: int, before: float, after: float):
    p = np.where(np.arange(length) >= CHANGE_AT, after, before)
    return (rng.random(length) < p).astype(float), None


def _bernoulli(before: float, after: float) -> Callable:
    return partial(_coin, before=before, after=after)


def _categories(rng: np.random.Generator, length: int):
    first = rng.choice(len(CATEGORIES), CHANGE_AT, p=REFERENCE_SHARES)
    then = rng.choice(len(CATEGORIES), length - CHANGE_AT, p=NEW_SHARES)
    return np.concatenate([first, then]), None


def _sea_errors(rng: np.random.Generator, length: int):
    """A classifier fitted to SEA's first concept, graded on a stream whose concept
    changes at ``CHANGE_AT`` (River's ``ConceptDriftStream``): its 0/1 errors."""
    from river.datasets import synth

    seed = int(rng.integers(2**31))
    stream = synth.ConceptDriftStream(synth.SEA(variant=0, seed=seed, noise=0.15),
                                      synth.SEA(variant=3, seed=seed + 1, noise=0.15),
                                      seed=seed, position=CHANGE_AT, width=20)  # narrower overflows River
    errors = [float((x[0] + x[1] > 8) != y) for x, y in stream.take(length)]
    return np.asarray(errors), None


SIMULATED_ORDERS = 6_000


@lru_cache(maxsize=1)
def _simulated_month() -> tuple[np.ndarray, np.ndarray]:
    """log(1 + amount) and event times of ``SIMULATED_ORDERS`` orders of the shop
    simulator, made once per process (the simulator is the slow part)."""
    from shopstream.events import Order
    from tools.simulator import Shop, SimConfig

    config = SimConfig(seed=2026, users=2_000, items=500, sessions_per_hour=400)
    orders = []
    for event in Shop(config).events(start=1_700_000_000.0):
        if isinstance(event, Order):
            orders.append((event.ts.timestamp(), math.log1p(float(event.amount))))
            if len(orders) == SIMULATED_ORDERS:
                break
    ts, amount = np.array(orders).T
    return amount, ts


def _simulated_amounts(rng: np.random.Generator, length: int):
    """The shop simulator's order amounts (log), in event time, seen from a seeded starting
    point of one simulated stretch (a rotation: its gaps between orders are kept); amounts
    60 % higher from ``CHANGE_AT`` on (about half a standard deviation)."""
    amount, ts = _simulated_month()
    start = int(rng.integers(len(amount)))
    order = (np.arange(length) + start) % len(amount)
    gaps = np.diff(ts, prepend=ts[0])[order]
    gaps[0] = 0.0
    values = amount[order].copy()
    values[CHANGE_AT:] = np.log1p(np.expm1(values[CHANGE_AT:]) * 1.6)
    return values, np.cumsum(gaps)


SCENARIOS = [
    *[Scenario(f"mean +{d} sd", "numeric", "abrupt", delay, CHANGE_AT + 3 * delay, _numeric(shift=d))
      for d, delay in ((0.25, 450), (0.5, 150), (1.0, 60))],
    *[Scenario(f"mean +{d} sd, gradual", "numeric", "gradual over 500", 500 + delay, CHANGE_AT + 3 * (500 + delay),
               _numeric(shift=d, ramp=500)) for d, delay in ((0.25, 450), (0.5, 150), (1.0, 60))],
    Scenario("variance x2", "numeric", "abrupt", 300, CHANGE_AT + 900, _numeric(scale=math.sqrt(2))),
    Scenario("category mix", "categorical", "abrupt", 2_000, CHANGE_AT + 4_000, _categories),
    Scenario("error 0.15 -> 0.22", "error", "abrupt", 600, CHANGE_AT + 1_800, _bernoulli(0.15, 0.22)),
    Scenario("error 0.15 -> 0.5", "error", "abrupt", 40, CHANGE_AT + 400, _bernoulli(0.15, 0.5)),
    Scenario("SEA concept change (errors)", "error", "abrupt", 600, CHANGE_AT + 1_800, _sea_errors),
    Scenario("simulator amounts x1.6", "numeric", "abrupt", 450, CHANGE_AT + 1_350, _simulated_amounts),
]


def null_scenario(length: int, kind: str = "numeric") -> Scenario:
    draw = {"numeric": _numeric(), "error": _bernoulli(0.15, 0.15)}[kind]
    return Scenario(f"null ({kind})", kind, "none", 0, length, draw)


class _River:
    """A River detector as a step function: True on an alarm."""

    def __init__(self, detector):
        self.detector = detector

    def __call__(self, x: float) -> bool:
        self.detector.update(x)
        return self.detector.drift_detected


class _Ours:
    def __init__(self, detector, drift_only: bool = True):
        self.detector, self.drift_only = detector, drift_only

    def __call__(self, x) -> bool:
        finding = self.detector.update(x).finding
        return finding is not None and (finding.severity == "drift" or not self.drift_only)


class _Every:
    def __init__(self, every: int):
        self.every, self.n = every, 0

    def __call__(self, x) -> bool:
        self.n += 1
        return self.n % self.every == 0


@dataclass
class References:
    """What the detectors of one kind compare with: the reference sample a trainer would
    profile, and a KS threshold calibrated once per ``ert`` (every seed shares them, as
    every future shares one model's profile)."""

    numeric: np.ndarray
    ks_threshold: dict[float, float]


def references(erts: Iterable[float], seed: int = 10_000) -> References:
    rng = np.random.default_rng(seed)
    sample = rng.normal(0, 1, 10_000)
    ref, pool = np.sort(sample[::2]), sample[1::2]
    return References(ref, {ert: calibrate_ks(ref, 200, 10, ert, pool) for ert in erts})


def detectors(kind: str, refs: References, ert: float, reference: np.ndarray | None = None) -> dict[str, Callable]:
    """Fresh detectors for one stream of ``kind``."""
    made: dict[str, Callable] = {"adwin (River defaults)": _River(river_drift.ADWIN())}
    if kind != "categorical":
        made["page_hinkley (River defaults)"] = _River(river_drift.PageHinkley())
        made[f"adwin (delta/{WATCHED}, drift role)"] = _Ours(Adwin(0.002, watched=WATCHED))
    if kind == "numeric":
        ref = refs.numeric if reference is None else reference
        threshold = refs.ks_threshold[ert] if reference is None else None
        made[f"calibrated_ks (ERT {ert:,.0f})"] = _Ours(CalibratedKS(ref, 200, 10, ert, threshold=threshold,
                                                                     pool=ref))
        made["psi window 1000"] = _Ours(WindowedDistance(NumericProfile.of(ref), window=1_000))
    if kind == "categorical":
        del made["adwin (River defaults)"]
        profile = CategoricalProfile.of(np.random.default_rng(1).choice(CATEGORIES, 20_000, p=REFERENCE_SHARES))
        made["jensen_shannon window 1000"] = _Ours(WindowedDistance(profile, window=1_000))
    made[f"every {BASELINE_EVERY} (baseline)"] = _Every(BASELINE_EVERY)
    return made


def run_one(scenario: Scenario, seed: int, refs: References, ert: float) -> list[dict]:
    """Every detector on one seed of ``scenario``: its alarms before the change, and its
    first alarm after."""
    rng = np.random.default_rng(seed)
    values, ts = scenario.draw(rng, scenario.length)
    reference = None
    if scenario.name.startswith("simulator"):  # the reference: the same shop before the change
        reference = np.sort(values[:CHANGE_AT])
        values, ts = values[CHANGE_AT // 2:], ts[CHANGE_AT // 2:]  # live: the second half on
        change_at = CHANGE_AT - CHANGE_AT // 2
        reference = reference[: CHANGE_AT // 2]
    else:
        change_at = CHANGE_AT if scenario.change != "none" else len(values)
    if scenario.kind == "categorical":
        values = np.asarray(CATEGORIES)[values.astype(int)]
    rows = []
    for name, step in detectors(scenario.kind, refs, ert, reference).items():
        false_alarms, detected = 0, None
        for i, x in enumerate(values.tolist()):
            if step(x):
                if i < change_at:
                    false_alarms += 1
                elif detected is None:
                    detected = i - change_at
                    break
        delay_s = None
        if detected is not None and ts is not None:
            delay_s = float(ts[change_at + detected] - ts[change_at])
        rows.append({"scenario": scenario.name, "detector": name, "seed": seed, "false_alarms": false_alarms,
                     "watched": change_at, "delay": detected, "delay_s": delay_s,
                     "found": detected is not None and detected <= scenario.max_delay,
                     "max_delay": scenario.max_delay})
    return rows


def _run(args) -> list[dict]:
    return run_one(*args)


def evaluate(seeds: int = 20, null_length: int = 1_000_000, ert: float = 100_000.0, workers: int = 2,
             scenarios: list[Scenario] | None = None, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per scenario, seed and detector (``run_one``)."""
    scenarios = list(SCENARIOS if scenarios is None else scenarios)
    if null_length:
        scenarios += [null_scenario(null_length, "numeric"), null_scenario(null_length, "error")]
    refs = references([ert])
    jobs = [(s, seed, refs, ert) for s in scenarios for seed in range(seeds)]
    rows: list[dict] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, result in enumerate(pool.map(_run, jobs, chunksize=1), 1):
            rows += result
            if progress:
                progress(done, len(jobs))
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and detector: recall within the maximum delay, mean and median delay
    (events, and event time where the scenario has it), false alarms per 10,000 values
    and the mean run between false alarms."""
    def one(group: pd.DataFrame) -> pd.Series:
        delays = group["delay"].dropna()
        alarms, watched = group["false_alarms"].sum(), group["watched"].sum()
        return pd.Series({
            "seeds": len(group), "max_delay": int(group["max_delay"].iloc[0]),
            "recall": group["found"].mean() if group["max_delay"].iloc[0] else math.nan,
            "mean_delay": delays.mean() if len(delays) else math.nan,
            "median_delay": delays.median() if len(delays) else math.nan,
            "median_delay_min": group["delay_s"].dropna().median() / 60 if group["delay_s"].notna().any() else math.nan,
            "false_alarms_per_10k": 1e4 * alarms / watched,
            "mean_run_between_false_alarms": watched / alarms if alarms else math.inf})
    return runs.groupby(["scenario", "detector"], sort=False).apply(one, include_groups=False).reset_index()


BAR = [  # (criterion, scenario, kind of check, target)
    ("null run: at most 0.1 false alarms per 10,000 values", "null (numeric)", "false_alarms", 0.1),
    ("null run (0/1 errors): at most 0.1 false alarms per 10,000 values", "null (error)", "false_alarms", 0.1),
    ("mean +0.25 sd: 95 % of seeds, mean delay at most 450", "mean +0.25 sd", "found", (0.95, 450)),
    ("mean +0.5 sd: 95 % of seeds, mean delay at most 150", "mean +0.5 sd", "found", (0.95, 150)),
    ("mean +1 sd: 95 % of seeds, mean delay at most 60", "mean +1.0 sd", "found", (0.95, 60)),
    ("variance x2: 90 % of seeds within 300", "variance x2", "found", (0.90, 300)),
    ("error 0.15 -> 0.22: every seed within 600", "error 0.15 -> 0.22", "found", (1.0, 600)),
    ("error 0.15 -> 0.5: every seed within 40", "error 0.15 -> 0.5", "found", (1.0, 40)),
]


def bar_check(table: pd.DataFrame, ert: float) -> pd.DataFrame:
    """Each criterion of the bar, per detector: the measured value and whether it holds.
    Detection criteria are judged only for detectors that also hold the null run's
    false-alarm bound (a detector that alarms all the time finds every change)."""
    quiet = set(table[(table.scenario.str.startswith("null")) & (table.false_alarms_per_10k <= 0.1)].detector)
    rows = []
    for criterion, scenario, check, target in BAR:
        for _, r in table[table.scenario == scenario].iterrows():
            if check == "false_alarms":
                value, ok = f"{r.false_alarms_per_10k:.3f} per 10k", r.false_alarms_per_10k <= target
            else:
                share, delay = target
                value = f"recall {r.recall:.0%}, mean delay {r.mean_delay:.0f}"
                ok = r.recall >= share and r.mean_delay <= delay and r.detector in quiet
            rows.append({"criterion": criterion, "detector": r.detector, "measured": value, "holds": bool(ok)})
    for _, r in table[(table.scenario == "null (numeric)") & table.detector.str.startswith("calibrated_ks")].iterrows():
        run = r.mean_run_between_false_alarms
        rows.append({"criterion": f"calibrated KS: run between false alarms within 20 % of its ERT ({ert:,.0f})",
                     "detector": r.detector, "measured": f"{run:,.0f}", "holds": bool(abs(run / ert - 1) <= 0.2)})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path) -> None:
    """Delay against false alarms: each detector's mean delay on every change scenario,
    beside its false alarms per 10,000 values on the null run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    changes = [s for s in table.scenario.unique() if not s.startswith("null")]
    detectors_ = list(table.detector.unique())
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(detectors_)
    for i, name in enumerate(detectors_):
        rows = table[table.detector == name].set_index("scenario")
        delays = [rows.mean_delay.get(s, float("nan")) for s in changes]
        left.bar(np.arange(len(changes)) + i * width, delays, width, label=name)
        null = rows.false_alarms_per_10k.get("null (numeric)", rows.false_alarms_per_10k.get("null (error)", 0.0))
        right.barh(i, null)
    left.set_xticks(np.arange(len(changes)) + 0.4, changes, rotation=30, ha="right")
    left.set_ylabel("mean delay (values after the change)")
    left.legend(fontsize=8)
    right.set_yticks(range(len(detectors_)), detectors_, fontsize=8)
    right.set_xlabel("false alarms per 10,000 values (null run)")
    right.axvline(0.1, color="red", linestyle="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(output, seeds: int, null_length: int, ert: float, workers: int, console) -> pd.DataFrame:
    """The evaluation, with a progress bar; writes ``runs.parquet``, ``summary.csv``,
    ``bar.csv``, ``metrics.json`` and ``delays.png`` to ``output``."""
    import json
    from pathlib import Path

    from rich.table import Table

    from shopstream.progress import progress_bar

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    with progress_bar(console=console) as progress:
        task = progress.add_task(f"calibrating and running {seeds} seeds", total=None)
        runs = evaluate(seeds, null_length, ert, workers,
                        progress=lambda done, total: progress.update(task, completed=done, total=total))
    table = summary(runs)
    bar = bar_check(table, ert)
    runs.to_parquet(output / "runs.parquet")
    table.to_csv(output / "summary.csv", index=False)
    bar.to_csv(output / "bar.csv", index=False)
    plot(table, output / "delays.png")
    (output / "metrics.json").write_text(json.dumps({
        "seeds": seeds, "null_length": null_length, "ert": ert, "change_at": CHANGE_AT,
        "summary": table.replace([np.inf], None).to_dict("records"), "bar": bar.to_dict("records")},
        indent=2, default=float))
    shown = Table(title=f"drift detectors, {seeds} seeds per scenario")
    for column in ("scenario", "detector", "recall", "mean delay", "median delay", "FA/10k"):
        shown.add_column(column)
    for _, r in table.iterrows():
        shown.add_row(r.scenario, r.detector, f"{r.recall:.0%}" if r.recall == r.recall else "",
                      f"{r.mean_delay:.0f}" if r.mean_delay == r.mean_delay else "",
                      f"{r.median_delay:.0f}" if r.median_delay == r.median_delay else "",
                      f"{r.false_alarms_per_10k:.2f}")
    console.print(shown)
    console.print(f"written to {output}/ (summary.csv, bar.csv, runs.parquet, metrics.json, delays.png)")
    return table


# --- real data ----------------------------------------------------------------------------

def plant_amounts(factor: float) -> Callable[[list], list]:
    """A change to plant in a test window: order amounts ``factor`` times larger from the
    middle of the window (by event time) on."""
    def plant(events: list) -> list:
        from shopstream.events import Order

        if not events:
            return events
        middle = events[0].ts + (events[-1].ts - events[0].ts) / 2
        return [e.model_copy(update={"amount": e.amount * factor}) if isinstance(e, Order) and e.ts >= middle
                else e for e in events]
    return plant


def read_signals(settings, timeout: float = 10.0) -> list:
    """Every drift signal on the run's ``signals.drift``."""
    import time
    import uuid

    from confluent_kafka import Consumer

    from shopstream.events import DriftSignal

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"eval-drift-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([settings.topics.drift])
    signals, quiet_since = [], time.monotonic()
    try:
        while time.monotonic() - quiet_since < timeout:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                signals.append(DriftSignal.model_validate_json(message.value()))
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return signals


def signal_metrics(signals: list, orders: list, planted_at) -> dict:
    """What ``metrics.json`` says of the signals of a real-data run: drifts per 10,000
    scored orders before the planted change (or in the whole window, with none), and per
    subject the first drift after it, with its delay in orders and in event time."""
    from collections import Counter

    ts = sorted(o.ts for o in orders)
    before = [s for s in signals if planted_at is None or s.window_end < planted_at]
    n_before = sum(t < planted_at for t in ts) if planted_at is not None else len(ts)
    drifted = [s for s in before if s.drifted]
    result = {"signals": len(signals), "orders": len(ts), "orders_before_change": n_before,
              "drifts_before_change": len(drifted),
              "drifts_per_10k_orders_before_change": 1e4 * len(drifted) / max(n_before, 1),
              "subjects_drifted_before_change": dict(Counter(s.subject for s in drifted)),
              "planted_at": None if planted_at is None else planted_at.isoformat()}
    if planted_at is not None:
        first: dict[str, dict] = {}
        for s in sorted((s for s in signals if s.drifted and s.window_end >= planted_at), key=lambda s: s.window_end):
            if s.subject not in first:
                first[s.subject] = {"detector": s.detector, "window_end": s.window_end.isoformat(),
                                    "delay_orders": sum(planted_at <= t <= s.window_end for t in ts),
                                    "delay_hours": (s.window_end - planted_at).total_seconds() / 3600}
        result["first_drift_after_change"] = first
    return result


def run_real(settings, transactions, reference_end, output, *, test_days: float = 7.0, plant: float | None = None,
             customers: int | None = None, rate: float = 500.0, history_rate: float | None = None,
             epochs: int = 10, history_days: float = 45.0, console=None) -> dict:
    """Replay a labelled transaction log through the real system (``eval fraud``'s run):
    replay the ``history_days`` before ``reference_end``, train on 14 days ending 8 days
    before it (labels as known at ``reference_end``), serve the next ``test_days``, with order
    amounts ``plant`` times larger from the middle of them if given; write every drift
    signal the drift role sent to ``signals.parquet`` and ``metrics.json``."""
    import json
    import time
    from datetime import timedelta
    from pathlib import Path

    from evals.fraud import EvalWindow
    from evals.fraud import run as run_fraud
    from shopstream import workers
    from streams.app import drift_inputs_topic_name

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    frame = pd.read_parquet(transactions) if str(transactions).endswith(".parquet") else pd.read_csv(transactions)
    if customers is not None:  # a slice: minutes instead of an hour and a half
        frame = frame[frame["CUSTOMER_ID"] < customers]
        transactions = output / "transactions.parquet"
        frame.to_parquet(transactions)
    first = pd.to_datetime(frame["TX_DATETIME"], utc=True).min().floor("D").to_pydatetime()
    start = max(first, reference_end - timedelta(days=history_days))  # 14 training days, 30-day windows full
    window = EvalWindow(start, reference_end - timedelta(days=8), reference_end, reference_end + timedelta(days=test_days),
                        train_days=14.0)
    seen: dict = {}

    def collect(run_settings, test_events) -> None:
        topics = [drift_inputs_topic_name(run_settings)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and workers.backlog(run_settings, topics) > 0:
            time.sleep(2)  # the drift role has not read everything yet
        seen["signals"], seen["events"] = read_signals(run_settings), test_events

    fraud = run_fraud(settings, Path(transactions), window, output, rate=rate, history_rate=history_rate,
                      epochs=epochs, console=console,
                      plant=plant_amounts(plant) if plant else None, on_scored=collect)
    from shopstream.events import Order

    orders = [e for e in seen["events"] if isinstance(e, Order)]
    planted_at = None
    if plant and orders:
        planted_at = orders[0].ts + (seen["events"][-1].ts - seen["events"][0].ts) / 2
    signals = seen["signals"]
    pd.DataFrame([s.model_dump(mode="json") for s in signals]).to_parquet(output / "signals.parquet")
    summary = {"plant": {"amounts_times": plant} if plant else None, "fraud": fraud["models"]["shopstream"],
               **signal_metrics(signals, orders, planted_at)}
    (output / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    if console is not None:
        console.print_json(json.dumps(summary, default=str))
    return summary
