"""Challengers end to end on the real Kafka and Redis: a worker follows the registry's
challenger without a restart. Fraud: in shadow mode ``scores.fraud`` carries what it
carried without one, and ``scores.fraud.shadow`` the challenger's score of every order;
an A/B split answers its users with the challenger, the same users every time.
Recommendations: a shadow's lists on ``recs.session.shadow``, then interleaved lists
with each item's team."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from evals.judge import judge, promotion
from scorers.neighbours import Popularity, Session
from scorers.online import Scored, fraud_metrics
from scorers.recommend import Recommender
from shopstream import workers
from shopstream.cli import app as cli
from shopstream.client import ShopProducer
from shopstream.events import Click, FraudScore, Order, OrderItem, OrderLabel, SessionRecs
from shopstream.settings import RecsSettings, ScoringSettings, get_settings, to_env
from tests.integration.conftest import read_all, start_worker, wait_until
from tests.trainers.test_registry import register
from trainers.promotion import save_bundle
from trainers.registry import Registry

pytestmark = pytest.mark.integration
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def orders(batch: str, n: int = 40) -> list[Order]:
    """``n`` orders, each of a user and card never seen before, so that the features read
    for them are the same in every batch: only the order's own amount and time differ."""
    return [Order(order_id=f"{batch}-{i}", user_id=f"{batch}-user-{i}", payment_fingerprint=f"{batch}-card-{i}",
                  amount=5.0 + 37.0 * i, items=[OrderItem(item_id="tent", price=5.0 + 37.0 * i)],
                  ts=START + timedelta(minutes=i)) for i in range(n)]


def scores(settings, topic: str, expect: int) -> dict[str, FraudScore]:
    found = [FraudScore.model_validate_json(m.value()) for m in read_all(settings, topic, expect=expect, timeout=60)]
    return {s.order_id: s for s in found}


def loaded(settings, outcome: str) -> float:
    return sum(s.value for s in workers.samples(settings.web_port, "shopstream_model_reloads_total")
               if s.labels["outcome"] == outcome)


def test_a_shadow_changes_nothing_live_and_an_ab_split_answers_its_users(settings, tmp_path):
    settings = settings.model_copy(update={"scoring": ScoringSettings(model_name=f"{settings.app_id}-fraud",
                                                                      reload_s=1.0)})
    registry = Registry(settings)
    champion, rival = register(registry, tmp_path, 0.5), register(registry, tmp_path, 0.6)
    registry.promote(champion)
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        wait_until(lambda: loaded(settings, "loaded") >= 1, 60, what="the worker to load the champion")
        with ShopProducer(settings) as producer:
            for order in orders("alone"):
                producer.send(order)
        alone = scores(settings, settings.topics.fraud_scores, 40)

        registry.challenge_with(rival, "shadow")
        wait_until(lambda: loaded(settings, "challenger-loaded") >= 1, 60, what="the worker to load the shadow")
        with ShopProducer(settings) as producer:
            for order in orders("shadowed"):
                producer.send(order)
        live = scores(settings, settings.topics.fraud_scores, 80)
        shadow = scores(settings, settings.topics.fraud_shadow, 40)
        for i in range(40):
            before, after = alone[f"alone-{i}"], live[f"shadowed-{i}"]
            same = {"order_id", "user_id", "latency_ms", "ts"}
            assert before.model_dump(exclude=same) == after.model_dump(exclude=same)  # the shadow changed nothing
            assert (after.variant, after.model_version) == ("champion", champion)
        assert sorted(shadow) == sorted(f"shadowed-{i}" for i in range(40))
        assert {(s.variant, s.model_version) for s in shadow.values()} == {("shadow", rival)}

        # Judged online from the topics, once the labels come: the measures are those
        # computed offline on the same rows, and 40 labelled orders promote nobody.
        fraud = [i % 4 == 0 for i in range(40)]
        with ShopProducer(settings) as producer:
            for i in range(40):
                producer.send(OrderLabel(order_id=f"shadowed-{i}", is_fraud=fraud[i], ts=datetime.now(UTC)))
        read_all(settings, settings.topics.order_labels, expect=40)
        judged = judge(settings, "fraud")
        for side, got in (("champion", live), ("challenger", shadow)):
            offline = fraud_metrics(Scored([got[f"shadowed-{i}"].score for i in range(40)], fraud),
                                    settings.thresholds.fraud_review, settings.thresholds.fraud_block)
            assert judged.measures[side] == pytest.approx(offline, nan_ok=True)
        assert judged.verdicts["ap"].n == {"champion": 40, "challenger": 40} and judged.graded == 40
        promote, why = promotion(judged, "ap", 500)
        assert not promote and "not enough evidence: 40 graded" in why

        challenge = registry.challenge_with(rival, "ab", 0.5)
        wait_until(lambda: [(s.labels["mode"], s.value) for s in workers.samples(
            settings.web_port, "shopstream_challenger_share")] == [("ab", 0.5)], 60, what="the worker to split")
        split = orders("split")
        with ShopProducer(settings) as producer:
            for order in split:
                producer.send(order)
        live = scores(settings, settings.topics.fraud_scores, 120)
        answered = {o.order_id: (live[o.order_id].variant, live[o.order_id].model_version) for o in split}
        expected = {o.order_id: ("challenger", rival) if challenge.variant(o.user_id) == "challenger"
                    else ("champion", champion) for o in split}
        assert answered == expected and len(set(answered.values())) == 2
        assert len(scores(settings, settings.topics.fraud_shadow, 40)) == 40  # no shadow scores in A/B mode
    finally:
        workers.stop(process)


def test_a_recommender_challenger_in_shadow_then_interleaved_judged_and_promoted(settings, tmp_path, monkeypatch):
    settings = settings.model_copy(update={"recs": RecsSettings(model_name=f"{settings.app_id}-recs", reload_s=1.0,
                                                                k=4)})
    registry = Registry(settings, settings.recs.model_name)
    for team in "ab":  # version 1 knows the a items, version 2 the b items
        bundle = save_bundle(Recommender(popular=Popularity().fit(
            [Session((f"{team}{i}",) * (9 - i), 0.0) for i in range(9)])), tmp_path / f"recs-{team}.pt")
        registry.register(bundle, metrics={"hr@20": 0.3}, params={}, tags={"n_views": "9"}, description="test")
    registry.promote("1")
    registry.challenge_with("2", "shadow")
    process = start_worker(settings, tmp_path / "worker.log")

    def follows(mode: str) -> None:
        wait_until(lambda: [s.labels["mode"] for s in workers.samples(
            settings.web_port, "shopstream_challenger_share")] == [mode], 60, what=f"the worker to follow {mode}")

    def clicks(prefix: str, n: int, item: str = "x", ts: datetime = START) -> None:
        with ShopProducer(settings) as producer:
            for i in range(n):
                producer.send(Click(user_id="u", session_id=f"{prefix}{i}", item_id=item, ts=ts))

    def lists(topic: str, n: int) -> list[SessionRecs]:
        return [SessionRecs.model_validate_json(m.value()) for m in read_all(settings, topic, expect=n, timeout=60)]

    try:
        follows("shadow")
        clicks("s", 20)
        live, shadow = lists(settings.topics.session_recs, 20), lists(settings.topics.recs_shadow, 20)
        assert {(r.variant, r.model_version, r.items[0].item_id) for r in live} == {("champion", "1", "a0")}
        assert {(r.variant, r.model_version, r.items[0].item_id) for r in shadow} == {("shadow", "2", "b0")}

        challenge = registry.challenge_with("2", "interleave", 0.5)
        follows("interleave")
        clicks("t", 40)
        for r in (r for r in lists(settings.topics.session_recs, 60) if r.session_id.startswith("t")):
            if challenge.variant(r.session_id) == "interleaved":
                assert r.variant == "interleaved" and r.model_version == "1+2" and len(r.teams) == 4
                assert all((i.item_id[0] == "a") == (t == "champion") for i, t in zip(r.items, r.teams, strict=True))
            else:
                assert (r.variant, r.model_version, r.teams) == ("champion", "1", None)

        # Every session then clicks the challenger's best item, which each interleaved
        # list holds: each credits the challenger, and the champion's lists all miss.
        clicks("t", 40, item="b0", ts=START + timedelta(minutes=1))
        lists(settings.topics.session_recs, 100)
        mixed = sum(challenge.variant(f"t{i}") == "interleaved" for i in range(40))
        judged = judge(settings, "recs")
        assert judged.measures["challenger"]["credits"] == mixed and judged.measures["champion"]["credits"] == 0
        assert judged.measures["champion"]["hr"] == 0.0 and judged.verdicts["credit"].better == "challenger"
        for key, value in to_env(settings).items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        runner = CliRunner()
        report = runner.invoke(cli, ["models", "report", "--model", "recs", "--output", str(tmp_path / "report")],
                               terminal_width=200)
        assert report.exit_code == 0 and "the challenger is better" in report.output, report.output
        assert (tmp_path / "report" / f"online-{settings.recs.model_name}.png").exists()
        refused = runner.invoke(cli, ["models", "promote", "--from-online", "--model", "recs",
                                      "--min-graded", str(mixed + 1)])
        assert refused.exit_code == 1 and "not enough evidence" in refused.output
        promoted = runner.invoke(cli, ["models", "promote", "--from-online", "--model", "recs",
                                       "--min-graded", str(mixed)])
        assert promoted.exit_code == 0 and "version 2 is the champion" in promoted.output, promoted.output
        assert registry.champion().version == "2" and registry.challenge() is None
    finally:
        workers.stop(process)
