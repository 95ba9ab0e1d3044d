"""``shopstream eval challenge``: how much traffic each way of judging a challenger needs
to reach a verdict, and whether the verdict is right.

The simulator's shop (``tools.simulator``) runs with a planted change at a known
time: from then on, the favourite items of a share ``changed`` of the themes change
(their items move ``shift`` places down the theme's popularity ranks). The champion is fitted on the sessions
before the change; the **better** challenger on the first ``train_hours`` after it; the
**worse** challenger on those same sessions, but popularity alone (no co-visitation: it
knows the new favourites, not what goes with what). Both recommenders are the served
``scorers.recommend.Recommender`` (co-visitation and popularity: the neighbours and the
sequence model would only slow the run).

Over the rest of the stream every click is answered, as the workers would, in each mode:

- ``shadow``: both answer every click; the verdict compares their hit rates;
- ``ab``: each session is answered by one side (``scorers.challenge``, weight 0.5);
- ``interleave``: every list is drafted from both (``scorers.interleave``), and the
  session's next click credits a side.

After every ``step`` graded clicks the verdict is taken (``scorers.online``), and the
traffic to a verdict is the number of clicks seen when it first names a winner. A
hit-rate bootstrap is believed only from ``min_graded`` lists on the thinner side (on ten
lists a side it names winners at random); interleaving's exact binomial test needs no
such floor. Looking
again and again at a growing sample raises the chance of a wrong verdict above what one
look at the same confidence would (the peeking problem); the run reports how often that
happened across seeds rather than correcting for it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scorers.challenge import assigned
from scorers.interleave import credit, seeded_coin, team_draft
from scorers.neighbours import CoVisitation, Popularity, Session
from scorers.online import compare_credits, compare_hits, rank_of
from scorers.recommend import Recommender, SessionView
from shopstream.events import Click
from tools.simulator import Shop, SimConfig

MODES = ("shadow", "ab", "interleave")


@dataclass(frozen=True)
class ChallengeConfig:
    seed: int = 1
    hours_before: float = 24.0  # the champion's sessions
    train_hours: float = 24.0  # the challenger's, after the change
    serve_hours: float = 24.0  # judged traffic
    shift: int = 5  # places a changed theme's items move down its popularity ranks
    changed: float = 0.5  # share of the themes that change
    items: int = 2_000
    sessions_per_hour: float = 300.0
    k: int = 20
    step: int = 20  # graded clicks between two looks at the verdict
    min_graded: int = 100  # graded lists on the thinner side before a hit-rate bootstrap is believed
    confidence: float = 0.95


def sessions_of(clicks: list[Click]) -> list[Session]:
    by_session: dict[str, list[Click]] = {}
    for click in clicks:
        by_session.setdefault(click.session_id, []).append(click)
    return [Session(tuple(c.item_id for c in cs), cs[-1].ts.timestamp(), sid) for sid, cs in by_session.items()]


def planted_clicks(config: ChallengeConfig) -> tuple[list[Click], float]:
    """The shop's clicks, and the time of the change after which items move ranks."""
    sim = SimConfig(seed=config.seed, items=config.items, sessions_per_hour=config.sessions_per_hour,
                    buy_probability=0.0, card_testing_per_day=1e-9, takeover_share=0.0)
    hours = config.hours_before + config.train_hours + config.serve_hours
    start = 1_767_225_600.0  # 2026-01-01
    change = start + config.hours_before * 3600
    clicks = []
    for event in Shop(sim).events(start):
        if event.ts.timestamp() >= start + hours * 3600:
            break
        if isinstance(event, Click):
            if event.ts.timestamp() >= change:
                index = int(event.item_id.rsplit("-", 1)[1])
                theme, rank = divmod(index, sim.theme_size)
                shift = config.shift if random.Random(f"{config.seed}:{theme}").random() < config.changed else 0
                moved = theme * sim.theme_size + (rank + shift) % sim.theme_size
                event = event.model_copy(update={"item_id": f"{event.item_id.rsplit('-', 1)[0]}-{moved}"})
            clicks.append(event)
    return clicks, change


def recommender(sessions: list[Session], k: int, version: str) -> Recommender:
    return Recommender(covisit=CoVisitation().fit(sessions), popular=Popularity().fit(sessions), k=k,
                       version=version)


def judged_clicks(champion: Recommender, challenger: Recommender, clicks: list[Click], config: ChallengeConfig,
                  salt: str) -> dict[str, dict]:
    """Each mode's traffic to a verdict over ``clicks`` (in time order)."""
    history: dict[str, list[str]] = {}
    by_session: dict[str, list[int]] = {}
    for i, click in enumerate(clicks):
        by_session.setdefault(click.session_id, []).append(i)
    following = {}
    for positions in by_session.values():
        for a, b in zip(positions, positions[1:], strict=False):
            following[a] = clicks[b].item_id
    hits = {mode: {"champion": [], "challenger": []} for mode in ("shadow", "ab")}
    credits = {"champion": 0, "challenger": 0}
    seen = {mode: 0 for mode in MODES}
    found: dict[str, dict] = {}

    def look(mode: str, verdict) -> None:
        if mode not in found and verdict.better is not None:
            found[mode] = {"clicks": seen[mode], "verdict": verdict.better, "diff": verdict.diff}

    for i, click in enumerate(clicks):
        items = history.setdefault(click.session_id, [])
        items.append(click.item_id)
        if i not in following:
            continue  # no next click: nothing grades this list
        view = SessionView(items=tuple(items))
        nxt = following[i]
        ours = [item for item, _ in champion.recommend(view)[0]]
        theirs = [item for item, _ in challenger.recommend(view)[0]]
        # shadow: both lists, every click
        hits["shadow"]["champion"].append(rank_of(ours, nxt, config.k) is not None)
        hits["shadow"]["challenger"].append(rank_of(theirs, nxt, config.k) is not None)
        seen["shadow"] += 1
        # A/B: the session's side answers
        side = "challenger" if assigned(click.session_id, 0.5, salt) else "champion"
        hits["ab"][side].append(rank_of(theirs if side == "challenger" else ours, nxt, config.k) is not None)
        seen["ab"] += 1
        # interleaving: one drafted list, credited by the next click
        merged, teams = team_draft(ours, theirs, config.k, coin=seeded_coin(f"{click.session_id}:{i}"))
        if (team := credit(merged, teams, nxt)) is not None:
            credits[team] += 1
        seen["interleave"] += 1
        if seen["shadow"] % config.step == 0:
            for mode in ("shadow", "ab"):
                if min(len(hits[mode]["champion"]), len(hits[mode]["challenger"])) >= config.min_graded:
                    look(mode, compare_hits(hits[mode]["champion"], hits[mode]["challenger"], config.confidence,
                                            paired=mode == "shadow"))
            look("interleave", compare_credits(credits["champion"], credits["challenger"], config.confidence))
            if len(found) == len(MODES) and seen["shadow"] >= 2 * max(f["clicks"] for f in found.values()):
                break  # every mode has its verdict, and twice its traffic has confirmed it
    final = {"shadow": compare_hits(hits["shadow"]["champion"], hits["shadow"]["challenger"], config.confidence,
                                    paired=True),
             "ab": compare_hits(hits["ab"]["champion"], hits["ab"]["challenger"], config.confidence),
             "interleave": compare_credits(credits["champion"], credits["challenger"], config.confidence)}
    return {mode: {**found.get(mode, {"clicks": None, "verdict": None, "diff": None}),
                   "graded": seen[mode], "final_diff": final[mode].diff, "final_verdict": final[mode].better}
            for mode in MODES}


def run(output: Path, seeds: int = 3, config: ChallengeConfig | None = None, console=None) -> pd.DataFrame:
    """Both scenarios (a better and a worse challenger) over ``seeds`` shops; writes
    ``challenge.csv`` and ``summary.json`` to ``output``."""
    config = config or ChallengeConfig()
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(config.seed, config.seed + seeds):
        cfg = ChallengeConfig(**{**config.__dict__, "seed": seed})
        clicks, change = planted_clicks(cfg)
        before = sessions_of([c for c in clicks if c.ts.timestamp() < change])
        cut = change + cfg.train_hours * 3600
        after = sessions_of([c for c in clicks if change <= c.ts.timestamp() < cut])
        served = [c for c in clicks if c.ts.timestamp() >= cut]
        champion = recommender(before, cfg.k, "1")
        worse = Recommender(popular=Popularity().fit(after), k=cfg.k, version="2")
        for scenario, challenger in (("better", recommender(after, cfg.k, "2")), ("worse", worse)):
            for mode, result in judged_clicks(champion, challenger, served, cfg, salt=str(seed)).items():
                right = result["verdict"] == "challenger" if scenario == "better" else result["verdict"] != "challenger"
                rows.append({"seed": seed, "scenario": scenario, "mode": mode, **result, "right": right})
                if console is not None:
                    console.print(f"seed {seed} {scenario:6} {mode:10} verdict {result['verdict']} after "
                                  f"{result['clicks']} clicks (of {result['graded']})")
    frame = pd.DataFrame(rows)
    frame.to_csv(output / "challenge.csv", index=False)
    plot(frame, output)
    summary = summarise(frame)
    (output / "summary.json").write_text(json.dumps({"config": config.__dict__, "seeds": seeds, **summary},
                                                    indent=2, default=str))
    return frame


def summarise(frame: pd.DataFrame) -> dict:
    """Per scenario and mode: the median clicks to a verdict, how many runs reached one,
    how many verdicts were right; and interleaving's ratio to A/B for the better one."""
    out: dict = {}
    for (scenario, mode), part in frame.groupby(["scenario", "mode"]):
        reached = part["clicks"].dropna()
        out[f"{scenario}/{mode}"] = {"runs": len(part), "reached": len(reached),
                                     "median_clicks": float(np.median(reached)) if len(reached) else None,
                                     "right": int(part["right"].sum())}
    better = {mode: out.get(f"better/{mode}", {}).get("median_clicks") for mode in MODES}
    out["ab_over_interleave"] = (better["ab"] / better["interleave"]
                                 if better["ab"] and better["interleave"] else None)
    return out


def plot(frame: pd.DataFrame, output: Path) -> Path:
    """``traffic.png``: the clicks each mode took to its verdict, a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, (scenario, part) in zip(axes, frame.groupby("scenario"), strict=False):
        for x, mode in enumerate(MODES):
            rows = part[part["mode"] == mode]
            ax.scatter([x] * len(rows), rows["clicks"], c=["tab:green" if r else "tab:red" for r in rows["right"]],
                       alpha=0.7)
            if rows["clicks"].notna().any():
                ax.hlines(rows["clicks"].median(), x - 0.3, x + 0.3, color="black")
        ax.set_xticks(range(len(MODES)), MODES)
        ax.set_yscale("log")
        ax.set_title(f"{scenario} challenger (red: wrong verdict)")
    axes[0].set_ylabel("clicks to a verdict")
    fig.tight_layout()
    path = output / "traffic.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
