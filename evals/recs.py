"""``shopstream eval recs``: next-item recommendation on a session log, against the
baselines of session-based recommendation research, and through the live system.

1. The log (DIGINETICA, a ``session_id,item_id,timestamp`` CSV, or REES46) is split by
   time with the protocol of Ludewig et al. (UMUAI 2021, see ``trainers.sessions``).
2. The trainer builds the served recommender on the training days (``trainers.recs``);
   POP, item-kNN and V-SKNN are fitted on the same days.
3. Every prefix of every test session is a case; each recommender ranks 20 items for it,
   and HR@20, MRR@20, NDCG@20, coverage@20 and popularity bias are computed.
4. Parity: the recommender is registered as the champion of a private registry, a real
   worker loads it, the test sessions' clicks are replayed into Kafka, and the metrics
   are computed again from what ``recs.session`` carried.

Everything runs in its own topics, consumer group, home folder and Redis database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from evals.fraud import isolated, wait_processed
from scorers.neighbours import ItemKNN, Popularity, SessionKNN, top
from scorers.recommend import Blend, Recommender
from shopstream import workers
from shopstream.events import Click, SessionRecs
from shopstream.settings import RecsSettings, Settings, to_env
from shopstream.topics import ensure_topics
from tools.replay import read
from tools.send import send
from trainers import ranking
from trainers.configs import RecsTrainConfig
from trainers.promotion import save_bundle
from trainers.recs import K, fit_recommender, served_lists
from trainers.registry import Registry
from trainers.sessions import Case, cases, from_events, sessions, split

FORMATS = {"diginetica": "sessions", "csv": "sessions", "rees46": "shop"}
PUBLISHED = {  # Ludewig et al., UMUAI 2021, full DIGINETICA: HR@20, MRR@20
    "V-SKNN, published (full DIGINETICA)": (0.473, 0.178), "STAN, published": (0.480, 0.183),
    "GRU4Rec, published": (0.464, 0.164), "SR-GNN, published": (0.364, 0.156)}


def baseline_lists(train: list, test_cases: list[Case]) -> dict[str, list[list[str]]]:
    lists = {}
    for name, model in (("vsknn", SessionKNN()), ("itemknn", ItemKNN()), ("pop", Popularity())):
        model.fit(train)
        lists[name] = [[i for i, _ in top(model.scores(c.prefix), K)] for c in test_cases]
    return lists


def sequence_only(recommender: Recommender) -> Recommender:
    return Recommender(sequence=recommender.sequence, blend=Blend(1.0, 0.0, 0.0), k=K)


def parity(settings: Settings, recommender: Recommender, test: pd.DataFrame, test_cases: list[Case],
           output: Path, *, rate: float, redis_db: int, console: Console) -> dict:
    """Replay the test sessions through a real worker; compare what it emitted."""
    import redis

    settings = isolated(settings, output, redis_db)
    settings = settings.model_copy(update={"recs": RecsSettings(**{**settings.recs.model_dump(), "reload_s": 2.0,
                                                                    "k": K})})
    with redis.Redis.from_url(settings.redis.url(reveal=True)) as client:
        client.flushdb()
    registry = Registry(settings, settings.recs.model_name)
    path = save_bundle(recommender, Path(output / "recs.pt"))
    version = registry.register(path, metrics={}, params={}, tags={"purpose": "eval recs parity"},
                                description="shopstream session recommender").version
    registry.promote(version)
    clicks = [Click(user_id=f"anon-{s}", session_id=s, item_id=i, ts=t)
              for s, i, t in test.sort_values("ts", kind="stable")[["session_id", "item_id", "ts"]].itertuples(
                  index=False)]
    ensure_topics(settings)
    log_file = output / "worker.log"
    process = workers.start(to_env(settings), log_file)
    try:
        workers.wait_ready(process, settings.web_port, log_file, timeout=180)
        deadline = time.monotonic() + 120
        while (m := workers.scrape(settings.web_port)) is None or \
                m.model_versions.get(settings.recs.model_name) != float(version):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not load recommender version {version}")
            time.sleep(1)
        console.print(f"parity: replaying {len(clicks):,} test clicks at {rate:,.0f}/s through a worker")
        send(clicks, settings, rate=rate, total=len(clicks), console=console)
        wait_processed(settings, console, "recommending the test sessions")
        emitted = collect_recs(settings, len(clicks), timeout=120)
    finally:
        workers.stop(process)
    lists = [[i.item_id for i in emitted[(c.session_id, len(c.prefix))].items]
             if (c.session_id, len(c.prefix)) in emitted else [] for c in test_cases]
    return {"lists": lists, "n_emitted": len(emitted), "n_clicks": len(clicks), "version": version,
            "latency_ms_p50": float(pd.Series([r.latency_ms for r in emitted.values()]).median())
            if emitted else None}


def collect_recs(settings: Settings, expected: int, timeout: float) -> dict[tuple[str, int], SessionRecs]:
    """The recommendations on ``recs.session``, by (session, items viewed so far)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"{settings.app_id}-eval",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([settings.topics.session_recs])
    found: dict[tuple[str, int], SessionRecs] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < expected and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            recs = SessionRecs.model_validate_json(message.value())
            found.setdefault((recs.session_id, recs.session_length), recs)
    finally:
        consumer.close()
    return found


def run(settings: Settings, sessions_file: Path, fmt: str, test_days: float, output: Path, *,
        mapping: dict[str, str] | None = None, valid_days: float | None = None, min_support: int = 1,
        epochs: int = 40, check_parity: bool = True, rate: float = 500.0, redis_db: int = 14,
        console: Console | None = None) -> dict:
    """The whole evaluation; returns what ``metrics.json`` holds."""
    from trainers.configs import LoopConfig

    console = console or Console()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {sorted(FORMATS)}")
    output.mkdir(parents=True, exist_ok=True)
    frame, baskets = from_events(read(sessions_file, FORMATS[fmt], mapping or {}))
    train, test = split(frame, test_days, min_support)
    test_cases = cases(sessions(test))
    if not test_cases:
        raise ValueError(f"the last {test_days} day(s) hold no test session of two views of known items")
    console.print(f"{len(train):,} training views in {train['session_id'].nunique():,} sessions, "
                  f"{train['item_id'].nunique():,} items; {len(test_cases):,} test cases "
                  f"from {test['session_id'].nunique():,} sessions")
    config = RecsTrainConfig(valid_days=valid_days or test_days, min_support=min_support,
                             loop=LoopConfig(epochs=epochs, batch_size=128, lr=2e-3, weight_decay=0.1, patience=8))
    fitted = fit_recommender(train, baskets, config)
    recommender = fitted.recommender
    train_sessions = sessions(train)
    lists = {"shopstream": served_lists(recommender, [c.prefix for c in test_cases]),
             "sequence": served_lists(sequence_only(recommender), [c.prefix for c in test_cases]),
             **baseline_lists(train_sessions, test_cases)}
    targets = [c.target for c in test_cases]
    popularity = train["item_id"].value_counts().to_dict()
    catalog = train["item_id"].nunique()
    results = {name: ranking.evaluate(ranked, targets, k=K, popularity=popularity, catalog=catalog)
               for name, ranked in lists.items()}
    summary = {"models": {name: {k: v for k, v in m.items() if k != "n"} for name, m in results.items()},
               "n_predictions": len(test_cases), "n_train_views": int(len(train)),
               "n_train_sessions": len(train_sessions), "n_items": int(catalog), "test_days": test_days,
               "blend": recommender.blend.__dict__, "format": fmt}
    pd.DataFrame({"session_id": [c.session_id for c in test_cases],
                  "prefix_len": [len(c.prefix) for c in test_cases],
                  "target_item": targets, "items": lists["shopstream"]}).to_parquet(
        output / "predictions.parquet", index=False)
    if check_parity:
        live = parity(settings, recommender, test, test_cases, output, rate=rate, redis_db=redis_db,
                      console=console)
        live_metrics = ranking.evaluate(live["lists"], targets, k=K, popularity=popularity, catalog=catalog)
        same = sum(a == b for a, b in zip(live["lists"], lists["shopstream"], strict=True))
        summary["parity"] = {"live": {k: v for k, v in live_metrics.items() if k != "n"},
                             "identical_lists": same / len(test_cases), "n_emitted": live["n_emitted"],
                             "n_clicks": live["n_clicks"], "latency_ms_p50": live["latency_ms_p50"]}
    (output / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot(summary, output)
    _print(summary, console)
    return summary


def plot(summary: dict, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["models"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.4
    for offset, metric in ((-width / 2, f"hr@{K}"), (width / 2, f"mrr@{K}")):
        ax.bar([i + offset for i in range(len(names))], [summary["models"][n][metric] for n in names],
               width, label=metric.upper())
    ax.set_xticks(range(len(names)), names)
    ax.set_title(f"next item, {summary['n_predictions']:,} test cases")
    ax.legend()
    fig.tight_layout()
    path = output / "recs.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _print(summary: dict, console: Console) -> None:
    table = Table(title=f"next-item recommendation: {summary['n_predictions']:,} test cases")
    metrics = (f"hr@{K}", f"mrr@{K}", f"ndcg@{K}", f"coverage@{K}", f"popularity@{K}")
    for column in ("model", *(m.upper() for m in metrics)):
        table.add_column(column)
    for name, m in summary["models"].items():
        table.add_row(name, *(f"{m.get(k, float('nan')):.3f}" for k in metrics))
    if "parity" in summary:
        m = summary["parity"]["live"]
        table.add_row("shopstream, live (from recs.session)", *(f"{m.get(k, float('nan')):.3f}" for k in metrics))
    if summary["format"] == "diginetica":  # references for that data set only
        for name, (hr, mrr) in PUBLISHED.items():
            table.add_row(name, f"{hr:.3f}", f"{mrr:.3f}", "", "", "")
    console.print(table)
    if "parity" in summary:
        p = summary["parity"]
        console.print(f"parity: {p['identical_lists']:.1%} of the live lists are identical to the offline ones; "
                      f"{p['n_emitted']:,} recommendations for {p['n_clicks']:,} clicks")
