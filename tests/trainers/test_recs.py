"""The recommender trainer on a small log, and its bundle."""

import random

import pandas as pd
import pytest

from scorers.recommend import SessionView
from trainers.configs import LoopConfig, RecsTrainConfig
from trainers.promotion import load_bundle, save_bundle
from trainers.recs import fit_recommender
from trainers.sessions import Case, cases, frame_of, sessions, split


def small_log(n_sessions: int = 300, seed: int = 0) -> pd.DataFrame:
    """Sessions that walk along one of three item chains: the next item is predictable."""
    rng = random.Random(seed)
    chains = [[f"{theme}{i}" for i in range(8)] for theme in "abc"]
    rows = []
    for s in range(n_sessions):
        chain = rng.choice(chains)
        start = rng.randrange(0, 5)
        for step, item in enumerate(chain[start:start + rng.randint(2, 4)]):
            rows.append((f"s{s}", item, pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=s, minutes=step)))
    return frame_of(rows)


CONFIG = RecsTrainConfig(valid_days=2, d_model=16, n_layers=1, max_len=8, dropout=0.0,
                         loop=LoopConfig(epochs=8, batch_size=32, lr=1e-2, patience=8))


@pytest.fixture(scope="module")
def fitted():
    return fit_recommender(small_log(), [], CONFIG, progress=False)


def test_trainer_learns_the_chains(fitted):
    assert fitted.sequence["hr@20"] > 0.9
    assert fitted.blend["mrr@20"] > 0.5
    ranked, strategy = fitted.recommender.recommend(SessionView(items=("a2", "a3")))
    assert ranked[0][0] == "a4"
    assert "sequence" in strategy or "covisit" in strategy or "neighbours" in strategy


def test_bundle_round_trip_gives_the_same_recommendations(fitted, tmp_path):
    loaded = load_bundle(save_bundle(fitted.recommender, tmp_path / "recs.pt"), version="7")
    views = [SessionView(items=("b1",)), SessionView(items=("c5", "c6")), SessionView()]
    assert loaded.recommend_batch(views) == fitted.recommender.recommend_batch(views)
    assert loaded.version == "7" and loaded.blend == fitted.recommender.blend


def test_split_keeps_test_items_seen_in_training_and_cuts_every_prefix():
    frame = small_log(50)
    train, test = split(frame, test_days=0.5)
    assert set(test["item_id"]) <= set(train["item_id"])
    assert train["ts"].max() < test.groupby("session_id")["ts"].min().min() + pd.Timedelta(hours=1)
    test_cases = cases(sessions(test))
    assert all(isinstance(c, Case) and len(c.prefix) >= 1 for c in test_cases)
    assert len(test_cases) == sum(len(s.items) - 1 for s in sessions(test))


def test_trainer_says_clearly_when_there_is_nothing_to_validate():
    with pytest.raises(ValueError, match="no session of two views"):
        fit_recommender(small_log(3), [], RecsTrainConfig(valid_days=0.0001), progress=False)


def test_train_and_register_from_the_offline_log_with_the_champion_gate(tmp_path):
    from shopstream.events import Click
    from shopstream.featurestore import offline_root
    from shopstream.offline import OfflineLog, events_table
    from shopstream.settings import Settings
    from trainers.promotion import recs_champion as load_champion
    from trainers.recs import train_and_register

    settings = Settings(home=tmp_path / "home")
    frame = small_log(200)
    clicks = [Click(user_id="u", session_id=s, item_id=i, ts=t.to_pydatetime())
              for s, i, t in frame.itertuples(index=False)]
    OfflineLog(offline_root(settings)).append(
        "raw_click", events_table(clicks, [("shop.clicks", 0, n) for n in range(len(clicks))]))
    config = RecsTrainConfig(valid_days=2, d_model=16, n_layers=1, max_len=8, dropout=0.0, blend_step=0.5,
                             loop=LoopConfig(epochs=3, batch_size=32, lr=1e-2, patience=3))
    first = train_and_register(settings, config, progress=False)
    assert first.promoted and first.version.version == "1"
    assert first.version.metrics["hr_at_20"] == pytest.approx(first.metrics["hr@20"])
    again = train_and_register(settings, config, progress=False)  # the same data: a tie does not win
    assert not again.promoted and again.champion_metrics["mrr@20"] == pytest.approx(again.metrics["mrr@20"])
    forced = train_and_register(settings, config, force=True, progress=False)
    assert forced.promoted
    champion = load_champion(settings)
    assert champion.version == "3"
    assert champion.recommend(SessionView(items=("b2", "b3")))[0][0][0] == "b4"
