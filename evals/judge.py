"""Online judgement from the streams themselves: what the champion and its challenger
answered since the challenge began, and what followed (``shopstream models report``,
``models promote --from-online``).

Fraud: the scores on ``scores.fraud`` (and ``scores.fraud.shadow``) joined with the labels
on ``shop.order-labels``; recommendations: the lists on ``recs.session`` (and
``recs.session.shadow``) joined with the session's next click or cart add on
``shop.clicks`` and ``shop.carts``. The measures and verdicts are ``scorers.online``'s.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from scorers.challenge import Challenge
from scorers.interleave import credit
from scorers.online import (
    Scored,
    Verdict,
    compare_credits,
    compare_fraud,
    compare_hits,
    fraud_metrics,
    rank_of,
    recs_metrics,
)
from shopstream.events import CartEvent, Click, FraudScore, OrderLabel, SessionRecs
from shopstream.settings import Settings
from shopstream.topics import read_since

log = logging.getLogger(__name__)
SIDES = ("champion", "challenger")


@dataclass
class Judgement:
    """One challenge judged: each side's measures, the verdicts, and how the measures
    moved as the evidence came in (``timeline``: side, time, graded, measures)."""

    model: str
    challenge: Challenge
    champion: str
    measures: dict[str, dict[str, float]]
    verdicts: dict[str, Verdict]
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def graded(self) -> int:
        """The evidence: labelled orders or graded lists on the thinner side; for
        interleaving, the credited clicks (each one a comparison of both sides)."""
        if self.challenge.mode == "interleave":
            return int(sum(self.measures.get(side, {}).get("credits", 0) for side in SIDES))
        return int(min(self.measures.get(side, {}).get("n", 0) for side in SIDES))


def _parse(model, messages) -> list:
    found = []
    for message in messages:
        try:
            found.append(model.model_validate_json(message.value()))
        except (ValidationError, TypeError):
            continue  # not ours to judge: dead letters are the input agents' business
    return found


def _first(answers: list, key: str) -> dict:
    """One answer per ``key`` (an order or an event answered again after a crash: the first)."""
    kept: dict = {}
    for answer in answers:
        kept.setdefault(getattr(answer, key), answer)
    return kept


def judge_fraud(settings: Settings, challenge: Challenge, champion: str, *, metric: str = "ap",
                confidence: float = 0.95, checkpoints: int = 20) -> Judgement:
    """The fraud challenge since it began: each side's labelled orders and the verdicts."""
    since = int(challenge.salt or 0)
    topics = settings.topics
    live = _parse(FraudScore, read_since(settings, topics.fraud_scores, since))
    if challenge.mode == "shadow":
        ours = [s for s in live if s.model_version == champion]
        theirs = [s for s in _parse(FraudScore, read_since(settings, topics.fraud_shadow, since))
                  if s.model_version == challenge.version]
    else:
        ours = [s for s in live if s.variant == "champion" and s.model_version == champion]
        theirs = [s for s in live if s.variant == "challenger" and s.model_version == challenge.version]
    labels = {label.order_id: label for label in _parse(OrderLabel, read_since(settings, topics.order_labels, since))}
    sides, rows = {}, []
    for side, answers in zip(SIDES, (ours, theirs), strict=True):
        graded = [(s, labels[s.order_id]) for s in _first(answers, "order_id").values() if s.order_id in labels]
        graded.sort(key=lambda pair: pair[1].ts)
        sides[side] = Scored([s.score for s, _ in graded], [label.is_fraud for _, label in graded],
                             [s.order_id for s, _ in graded])
        times = [label.ts for _, label in graded]
        for end in sorted({int(math.ceil(len(graded) * (i + 1) / checkpoints)) for i in range(checkpoints)}):
            if end:
                part = Scored(sides[side].scores[:end], sides[side].labels[:end])
                rows.append({"side": side, "time": times[end - 1], "graded": end,
                             **fraud_metrics(part, settings.thresholds.fraud_review, settings.thresholds.fraud_block)})
    measures = {side: fraud_metrics(sides[side], settings.thresholds.fraud_review, settings.thresholds.fraud_block)
                for side in SIDES}
    paired = challenge.mode == "shadow"
    verdicts = {m: compare_fraud(sides["champion"], sides["challenger"], paired=paired, metric=m,
                                 confidence=confidence)
                for m in dict.fromkeys((metric, "ap", "auc"))
                if len(sides["champion"].labels) and len(sides["challenger"].labels)}
    return Judgement(settings.scoring.model_name, challenge, champion, measures, verdicts, pd.DataFrame(rows))


def next_actions(settings: Settings, since: int) -> dict[str, str | None]:
    """For each click or cart change since ``since`` (by its ``topic:partition:offset``),
    the item of the session's next click or cart add, or None when none came yet."""
    events = []
    for model, topic in ((Click, settings.topics.clicks), (CartEvent, settings.topics.carts)):
        for message in read_since(settings, topic, since):
            try:
                event = model.model_validate_json(message.value())
            except (ValidationError, TypeError):
                continue
            if event.session_id:
                origin = f"{message.topic()}:{message.partition()}:{message.offset()}"
                acts = isinstance(event, Click) or event.action == "add"
                events.append((event.session_id, event.ts, origin, event.item_id, acts))
    by_session = defaultdict(list)
    for event in sorted(events, key=lambda e: (e[0], e[1], e[2])):
        by_session[event[0]].append(event)
    following: dict[str, str | None] = {}
    for session_events in by_session.values():
        upcoming = None
        for _, _, origin, item, acts in reversed(session_events):
            following[origin] = upcoming
            if acts:
                upcoming = item
    return following


def judge_recs(settings: Settings, challenge: Challenge, champion: str, *, k: int | None = None,
               confidence: float = 0.95, checkpoints: int = 20) -> Judgement:
    """The recommendation challenge since it began: HR and MRR of each side's graded
    lists, the interleaving credits, and the verdict (hit rate; credits when interleaved)."""
    since = int(challenge.salt or 0)
    k = k or settings.recs.k
    following = next_actions(settings, since)
    live = list(_first(_parse(SessionRecs, read_since(settings, settings.topics.session_recs, since)),
                       "origin").values())
    if challenge.mode == "shadow":
        theirs = [r for r in _first(_parse(SessionRecs, read_since(settings, settings.topics.recs_shadow, since)),
                                    "origin").values() if r.model_version == challenge.version]
    else:
        theirs = [r for r in live if r.variant == "challenger" and r.model_version == challenge.version]
    ours = [r for r in live if r.variant == "champion" and r.model_version == champion]
    mixed = [r for r in live if r.variant == "interleaved" and r.teams]
    ranks, rows = {}, []
    for side, lists in zip(SIDES, (ours, theirs), strict=True):
        graded = sorted((r for r in lists if following.get(r.origin)), key=lambda r: r.ts)
        ranks[side] = [rank_of([i.item_id for i in r.items], following[r.origin], k) for r in graded]
        for end in sorted({int(math.ceil(len(graded) * (i + 1) / checkpoints)) for i in range(checkpoints)}):
            if end:
                rows.append({"side": side, "time": graded[end - 1].ts, "graded": end, **recs_metrics(ranks[side][:end])})
    credits = {side: 0 for side in SIDES}
    for r in sorted(mixed, key=lambda r: r.ts):
        if following.get(r.origin) and (team := credit([i.item_id for i in r.items], r.teams, following[r.origin])):
            credits[team] += 1
            total = sum(credits.values())
            rows.append({"side": "interleaved", "time": r.ts, "graded": total,
                         "challenger share of credits": credits["challenger"] / total})
    measures = {side: recs_metrics(ranks[side]) for side in SIDES}
    if challenge.mode == "interleave":
        for side in SIDES:
            measures[side] = {**measures[side], "credits": float(credits[side])}
        verdicts = {"credit": compare_credits(credits["champion"], credits["challenger"], confidence)}
    elif challenge.mode == "shadow":  # the same events answered by both: paired
        hit = {side: {r.origin: rank_of([i.item_id for i in r.items], following[r.origin], k) is not None
                      for r in lists if following.get(r.origin)} for side, lists in zip(SIDES, (ours, theirs),
                                                                                       strict=True)}
        both = [origin for origin in hit["champion"] if origin in hit["challenger"]]
        verdicts = {"hr": compare_hits([hit["champion"][o] for o in both], [hit["challenger"][o] for o in both],
                                       confidence, paired=True)}
    else:
        verdicts = {"hr": compare_hits([r is not None for r in ranks["champion"]],
                                       [r is not None for r in ranks["challenger"]], confidence)}
    return Judgement(settings.recs.model_name, challenge, champion, measures, verdicts, pd.DataFrame(rows))


def judge(settings: Settings, model: str, **options) -> Judgement:
    """The registry's current challenge of ``model`` (fraud or recs), judged; LookupError
    when there is none."""
    from trainers.registry import Registry

    registry = Registry(settings, settings.scoring.model_name if model == "fraud" else settings.recs.model_name)
    challenge, champion = registry.challenge(), registry.champion()
    if challenge is None:
        raise LookupError(f"{registry.name} has no challenger: start one with shopstream models challenge")
    champion_version = champion.version if champion else "rules"
    if model == "fraud":
        return judge_fraud(settings, challenge, champion_version, **options)
    return judge_recs(settings, challenge, champion_version, **options)


def plot(judgement: Judgement, output: Path) -> list[Path]:
    """One PNG per measure over time (as labels or clicks came in), a line per side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    frame = judgement.timeline
    if frame.empty:
        return []
    measures = [m for m in ("ap", "auc", "precision@review", "recall@review", "hr", "mrr",
                            "challenger share of credits") if m in frame]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.5 * len(measures), 3.6), squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        for side, part in frame.dropna(subset=[measure]).groupby("side"):
            version = {"champion": judgement.champion, "challenger": judgement.challenge.version}.get(
                side, f"{judgement.champion}+{judgement.challenge.version}")
            ax.plot(pd.to_datetime(part["time"], utc=True), part[measure], marker=".", label=f"{side} (v{version})")
        if measure == "challenger share of credits":
            ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)  # no preference
        ax.set_title(measure)
        ax.set_xlabel("as the evidence arrived")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize=8)
    fig.suptitle(f"{judgement.model}: {judgement.challenge.mode} challenge of version {judgement.challenge.version}")
    fig.tight_layout()
    path = output / f"online-{judgement.model}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def promotion(judgement: Judgement, metric: str, min_graded: int) -> tuple[bool, str]:
    """Whether the evidence promotes the challenger, and why or why not."""
    verdict = judgement.verdicts.get(metric)
    if verdict is None:
        return False, f"no {metric} to compare yet: no graded answers on one side"
    level = f"at {verdict.confidence:.0%} confidence"
    interval = f"{verdict.diff:+.4f} [{verdict.lo:+.4f}, {verdict.hi:+.4f}]"
    if judgement.graded < min_graded:
        where = "credited clicks" if judgement.challenge.mode == "interleave" else "graded on the thinner side"
        return False, (f"not enough evidence: {judgement.graded} {where}, "
                       f"{min_graded} needed (challenger minus champion, {metric}: {interval})")
    if verdict.better == "challenger":
        return True, f"the challenger is better on {metric} {level}: {interval}"
    if verdict.better == "champion":
        return False, f"the champion is better on {metric} {level}: {interval}"
    return False, f"no significant difference on {metric} {level}: {interval}"


def as_table(judgement: Judgement) -> pd.DataFrame:
    """The measures, a row per side."""
    rows = []
    for side in SIDES:
        version = judgement.champion if side == "champion" else judgement.challenge.version
        rows.append({"side": side, "version": version, **judgement.measures.get(side, {})})
    return pd.DataFrame(rows).replace({np.nan: None})
