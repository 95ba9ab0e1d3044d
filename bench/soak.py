"""The soak: half of the measured capacity for 30 minutes on the local cluster, two workers.

Run with ``make soak`` (it starts the cluster), or ``python -m bench.soak`` with
``SHOPSTREAM_PROFILE=cluster`` and the cluster running. It

1. starts ``--workers`` worker processes on topics of their own;
2. measures their capacity (``measure_capacity``): the events/s at which the group drains
   ``--capacity-events`` produced at once, then the events/s it sustains while the shop
   sends above that for ``--capacity-seconds``; the soak's rate is a share of the latter;
3. sends a simulated shop at ``--load`` times that rate for ``--minutes``, sampling every
   ``--every`` seconds: consumer lag, each worker's RSS, Redis memory and keys, the size
   of the table changelogs on the brokers' disks, feature freshness p99 over the last
   interval, dead letters, commit repairs;
4. writes ``bench/results/soak-<time>.json`` and a PNG with one panel per series, and
   fails (exit 1) if lag, a worker's RSS or Redis memory per key rises over the last
   ``--trend-minutes``: a least-squares slope whose p-value is under 0.01 and whose rise
   over the window exceeds ``TREND_FLOOR`` of the series (5 % of its mean, and at least
   the absolute floor named there).

Redis memory as a whole is reported, not judged: each new session is a new key that lives
for its feature view's TTL (one day of wall-clock time), so over 30 minutes Redis grows
with the sessions, by design; what must stay flat is the memory each key costs. The
shop's population is fixed and its simulated time runs four days during the soak, so the
workers' states (which expire by event time) reach their steady state within the first
third, before the judged window (``shop``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from rich.console import Console

from bench.throughput import isolated
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.services.kafka import KafkaPaths, nodes
from shopstream.settings import Settings, get_settings, to_env
from shopstream.topics import ensure_topics
from streams.app import updates_topic_name
from tools.simulator import Shop, SimConfig, default_start

RESULTS = Path(__file__).parent / "results"
console = Console()
TREND_FLOOR = {"lag": (0.05, 1_000), "rss_mb": (0.05, 25.0), "redis_bytes_per_key": (0.05, 32.0)}
"""Series judged for a rising trend: (share of the mean, absolute floor) that the rise over
the window must exceed, besides a slope significant at p < 0.01."""
SOAK_USERS, SOAK_DAYS = 1_000, 4
"""The soak's shop: a fixed population of users, and the days of event time it spans."""


@dataclass
class Sample:
    t: float
    sent: int
    lag: int
    rss_mb: list[float]
    redis_mb: float
    redis_keys: int
    changelog_mb: float
    freshness_p99_s: float | None
    freshness_p50_s: float | None
    dead_letters: float
    commit_repairs: float
    events_in: float


class Shopper:
    """Sends ``events`` at ``rate`` a second from a thread; ``rate`` 0: as fast as possible."""

    def __init__(self, settings: Settings, events, rate: float, count: int):
        self.settings, self.events, self.rate, self.count = settings, events, rate, count
        self.sent, self.done = 0, threading.Event()

    def start(self) -> Shopper:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        producer = ShopProducer(self.settings)
        started = time.monotonic()
        for i, event in enumerate(itertools.islice(self.events, self.count)):
            producer.send(event)
            self.sent = i + 1
            if self.rate and (ahead := self.sent / self.rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        producer.flush(120)
        self.done.set()


def redis_memory(settings: Settings) -> tuple[float, int]:
    """Used memory (MiB) and keys, summed over the masters."""
    from redis.cluster import RedisCluster

    with settings.redis.client() as client:
        if not settings.redis.cluster:
            return client.info("memory")["used_memory"] / 2**20, client.dbsize()
        memory = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        keys = client.dbsize(target_nodes=RedisCluster.PRIMARIES)
    used = sum(node["used_memory"] for node in memory.values()) if isinstance(memory, dict) and all(
        isinstance(v, dict) for v in memory.values()) else memory["used_memory"]
    return used / 2**20, keys if isinstance(keys, int) else sum(keys.values())


def changelog_mb(settings: Settings, app_id: str) -> float:
    """Record bytes of the app's table changelogs on the local brokers' disks, every replica
    (the ``.log`` segments: the index files are preallocated, mostly empty)."""
    total = 0
    for node in nodes(settings):
        for folder in KafkaPaths.of(settings, node).data.glob(f"{app_id}-*-changelog-*"):
            total += sum(f.stat().st_size for f in folder.glob("*.log"))
    return total / 2**20


def freshness_p99(now: list[tuple[float, float]], before: list[tuple[float, float]],
                  q: float = 0.99) -> float | None:
    """The ``q`` quantile's bucket bound of the freshness observed between two scrapes."""
    counts = [(le, count - dict(before).get(le, 0.0)) for le, count in now]
    if not counts or counts[-1][1] <= 0:
        return None
    return next(le for le, count in counts if count >= q * counts[-1][1])


def trend(ts: list[float], ys: list[float], share: float, floor: float) -> dict:
    """Least-squares slope of ``ys`` on ``ts``; rising if significant and large enough."""
    from scipy.stats import linregress

    if len(ys) < 3 or len(set(ys)) == 1:
        return {"slope_per_min": 0.0, "p": 1.0, "rise": 0.0, "threshold": floor, "rising": False}
    fit = linregress(ts, ys)
    rise = fit.slope * (ts[-1] - ts[0])
    threshold = max(share * abs(sum(ys) / len(ys)), floor)
    return {"slope_per_min": fit.slope * 60, "p": fit.pvalue, "rise": rise, "threshold": threshold,
            "rising": bool(fit.pvalue < 0.01 and rise > threshold)}


def plot(samples: list[Sample], path: Path, minutes: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [(s.t - samples[0].t) / 60 for s in samples]
    series = [("consumer lag (records)", [s.lag for s in samples]),
              ("worker RSS (MiB)", None),
              ("Redis used memory (MiB)", [s.redis_mb for s in samples]),
              ("Redis bytes per key", [s.redis_mb * 2**20 / max(s.redis_keys, 1) for s in samples]),
              ("changelogs on disk (MiB)", [s.changelog_mb for s in samples]),
              ("freshness (s, bucket bound; inf: over 30 s)", {
                  "p50": [s.freshness_p50_s for s in samples], "p99": [s.freshness_p99_s for s in samples]}),
              ("dead letters", [s.dead_letters for s in samples]),
              ("commit repairs", [s.commit_repairs for s in samples])]
    fig, axes = plt.subplots(4, 2, figsize=(12, 12), sharex=True)
    for ax, (title, ys) in zip(axes.flat, series, strict=True):
        if ys is None:
            for i in range(len(samples[0].rss_mb)):
                ax.plot(t, [s.rss_mb[i] for s in samples], label=f"worker {i}")
            ax.legend()
        elif isinstance(ys, dict):
            for name, values in ys.items():
                ax.plot(t, [min(y, 60.0) if y is not None else float("nan") for y in values], label=name)
            ax.legend()
        else:
            ax.plot(t, [y if y is not None else float("nan") for y in ys])
        ax.axvspan(max(t[-1] - minutes, 0), t[-1], color="0.9", zorder=0)
        ax.set_title(title)
    for ax in axes[-1]:
        ax.set_xlabel("minutes (shaded: the window of the trend test)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--load", type=float, default=0.5, help="share of the measured capacity")
    parser.add_argument("--capacity-events", type=int, default=30_000)
    parser.add_argument("--capacity-seconds", type=float, default=120.0,
                        help="seconds of sending above capacity to measure the sustained rate")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--trend-minutes", type=float, default=20)
    args = parser.parse_args()

    base = get_settings()
    if base.profile != "cluster":
        console.print("[yellow]SHOPSTREAM_PROFILE is not 'cluster': soaking the single-node services[/]")
    settings = isolated(base, "soak")
    ensure_topics(settings)
    ports = [settings.web_port + 100 + i for i in range(args.workers)]
    logs = settings.home.resolve() / "soak-logs"
    processes = [workers.start(to_env(settings.model_copy(update={"web_port": p})), logs / f"worker-{i}.log")
                 for i, p in enumerate(ports)]
    try:
        for process, port, i in zip(processes, ports, range(len(ports)), strict=True):
            workers.wait_ready(process, port, logs / f"worker-{i}.log", timeout=180)
        run(args, settings, processes, ports)
    finally:
        for process in processes:
            workers.stop(process)


def shop(count: int, seed: int, days_ago: float = 0.0):
    """``count`` events of a simulated shop that reaches its steady state in the soak's first
    third, so that memory still rising in the judged window is a leak, not a shop still
    growing: its users (with their devices, IPs and cards, kept 60 days of event time) are a
    fixed population that the first third of the sessions nearly all visit, and its event
    times span four days ending now, so sessions (kept a day of event time) expire at the
    rate they start from the first quarter on. Orders wait 120 days for their labels and
    so grow all along, by a few MiB in 30 minutes. The capacity phases' shops end
    ``days_ago``, before the soak's begins, so that no phase sends event times earlier than
    the last one (the same users' states would count them late)."""
    config = SimConfig(seed=seed, users=SOAK_USERS, items=5_000, sessions_per_hour=count / (SOAK_DAYS * 24 * 7))
    # Labels come days after their orders; those of the last orders would be stamped
    # after now, which workers rightly dead-letter: a shop cannot send them yet.
    end = datetime.now(UTC) - timedelta(days=days_ago)
    start = default_start(count, config, now=end)
    return (e for e in Shop(config).events(start=start, n=count) if e.ts.timestamp() <= time.time())


def rss_mb(process) -> float:
    """A worker's resident memory; 0 once it has exited (the plot shows the drop)."""
    try:
        return psutil.Process(process.pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def run(args, settings: Settings, processes, ports) -> None:
    topics = [*settings.topics.inputs().values(), updates_topic_name(settings)]
    burst, capacity = measure_capacity(args, settings, topics)
    rate = args.load * capacity
    console.print(f"capacity {capacity:,.0f} events/s sustained ({burst:,.0f} draining a burst); "
                  f"soaking at {rate:,.0f} events/s for {args.minutes:g} min")

    count = int(rate * args.minutes * 60)
    events = shop(count, seed=17)
    sender = Shopper(settings, events, rate, count).start()
    samples: list[Sample] = []
    previous = {port: workers.scrape(port) for port in ports}
    end = time.monotonic() + args.minutes * 60
    while time.monotonic() < end:
        time.sleep(args.every)
        now = {port: workers.scrape(port) for port in ports}
        bounds = next((m.freshness for m in now.values() if m and m.freshness), [])
        fresh = [(le, sum(c for m in now.values() if m for l2, c in m.freshness if l2 == le))
                 for le, _ in bounds]
        before = [(le, sum(c for m in previous.values() if m for l2, c in m.freshness if l2 == le))
                  for le, _ in fresh]
        redis_mb, redis_keys = redis_memory(settings)
        repairs = sum(s.value for p in ports if now[p] for s in workers.samples(p, "shopstream_commit_repairs_total"))
        sample = Sample(
            t=time.time(), sent=sender.sent, lag=workers.backlog(settings, topics),
            rss_mb=[rss_mb(p) for p in processes],
            redis_mb=redis_mb, redis_keys=redis_keys, changelog_mb=changelog_mb(settings, settings.app_id),
            freshness_p99_s=freshness_p99(fresh, before), freshness_p50_s=freshness_p99(fresh, before, 0.5),
            dead_letters=sum(m.total_dead for m in now.values() if m), commit_repairs=repairs,
            events_in=sum(m.total_in for m in now.values() if m))
        samples.append(sample)
        previous = now
        console.print(f"{(sample.t - samples[0].t) / 60:5.1f} min  sent {sample.sent:,}  lag {sample.lag:,}  "
                      f"RSS {', '.join(f'{r:.0f}' for r in sample.rss_mb)} MiB  Redis {redis_mb:.1f} MiB "
                      f"{redis_keys:,} keys  changelogs {sample.changelog_mb:.1f} MiB  "
                      f"freshness p50 {sample.freshness_p50_s} s, p99 {sample.freshness_p99_s} s")
    report(args, settings, samples, capacity, rate, burst)


def measure_capacity(args, settings: Settings, topics: list[str]) -> tuple[float, float]:
    """(burst, sustained) events/s of the group. Burst: ``--capacity-events`` produced at
    once, drained in full batches. Sustained: the events processed per second (sent less
    the backlog) while the shop sends at 1.5 times the burst rate for
    ``--capacity-seconds``, measured after its first quarter: the brokers then take many
    small requests, as in the soak, and on a machine they share with the workers that
    costs the workers CPU (the first soak ran at half the burst rate, the second's lag
    rose at that rate). The soak's rate is a share of the sustained figure."""
    console.print(f"measuring capacity: {args.capacity_events:,} events at once, {args.workers} workers")
    started = time.monotonic()
    Shopper(settings, shop(args.capacity_events, seed=16, days_ago=2.25 * SOAK_DAYS), 0, args.capacity_events).start().done.wait()
    while workers.backlog(settings, topics) > 0:
        time.sleep(1)
    burst = args.capacity_events / (time.monotonic() - started)
    count = int(1.5 * burst * args.capacity_seconds)
    console.print(f"burst {burst:,.0f} events/s; now {1.5 * burst:,.0f} events/s for {args.capacity_seconds:g} s")
    sender = Shopper(settings, shop(count, seed=15, days_ago=1.125 * SOAK_DAYS), 1.5 * burst, count).start()
    time.sleep(args.capacity_seconds / 4)
    t0, done0 = time.monotonic(), sender.sent - workers.backlog(settings, topics)
    sender.done.wait()
    t1, done1 = time.monotonic(), sender.sent - workers.backlog(settings, topics)
    while workers.backlog(settings, topics) > 0:
        time.sleep(1)
    return burst, (done1 - done0) / (t1 - t0)


def report(args, settings: Settings, samples: list[Sample], capacity: float, rate: float,
           burst: float) -> None:
    window = [s for s in samples if s.t >= samples[-1].t - args.trend_minutes * 60]
    ts = [s.t for s in window]
    trends = {"lag": trend(ts, [s.lag for s in window], *TREND_FLOOR["lag"])}
    for i in range(len(window[0].rss_mb)):
        trends[f"rss_mb_worker_{i}"] = trend(ts, [s.rss_mb[i] for s in window], *TREND_FLOOR["rss_mb"])
    trends["redis_bytes_per_key"] = trend(ts, [s.redis_mb * 2**20 / max(s.redis_keys, 1) for s in window],
                                          *TREND_FLOOR["redis_bytes_per_key"])
    trends["redis_mb (reported, not judged)"] = trend(ts, [s.redis_mb for s in window], 0.05, 1.0)
    judged = {name: t for name, t in trends.items() if "not judged" not in name}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps({
        "profile": settings.profile, "workers": len(samples[0].rss_mb), "minutes": args.minutes,
        "capacity_events_per_s": capacity, "burst_events_per_s": burst, "rate_events_per_s": rate, "load": args.load,
        "events_sent": samples[-1].sent, "trend_minutes": args.trend_minutes, "trend_floor": TREND_FLOOR,
        "trends": trends, "passed": not any(t["rising"] for t in judged.values()),
        "samples": [s.__dict__ for s in samples]}, indent=1))
    plot(samples, out.with_suffix(".png"), args.trend_minutes)
    for name, t in trends.items():
        console.print(f"{name}: slope {t['slope_per_min']:+.3g}/min, p={t['p']:.3g}, rise {t['rise']:+.3g} "
                      f"(threshold {t['threshold']:.3g})" + ("  [red]RISING[/]" if t["rising"] else ""))
    console.print(f"wrote {out} and {out.with_suffix('.png')}")
    if any(t["rising"] for t in judged.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
