"""The pure recommenders on tiny sessions where the right answer is known."""

import numpy as np
import pytest

from scorers.neighbours import (
    BoughtTogether,
    CoVisitation,
    ItemKNN,
    Popularity,
    Session,
    SessionKNN,
    top,
)
from scorers.recommend import Blend, Recommender, SessionView, normalised
from scorers.retrieval import ItemIndex

LOG = [Session(("tent", "pegs", "lamp"), 10.0), Session(("tent", "pegs"), 20.0),
       Session(("mug", "tea", "biscuits"), 30.0), Session(("mug", "tea"), 40.0), Session(("lamp",), 50.0)]


@pytest.mark.parametrize(("strategy", "items", "expected"), [
    (CoVisitation(), ["tent"], ["pegs", "lamp"]),
    (CoVisitation(), ["mug"], ["tea", "biscuits"]),
    (CoVisitation(), ["tent", "mug"], ["tea", "pegs", "biscuits"]),  # the newest item weighs most
    (CoVisitation(window=1), ["tent"], ["pegs"]),  # lamp is two steps away
    (CoVisitation(), ["unknown"], []),
    (ItemKNN(), ["mug"], ["tea", "biscuits"]),
    (ItemKNN(), ["pegs", "mug"], ["tea", "biscuits"]),  # the last item only
    (SessionKNN(), ["tea"], ["mug", "tea", "biscuits"]),
    (Popularity(), [], ["lamp", "mug", "pegs"]),  # 2 each; ties by id
    (Popularity(half_life_days=1 / 86400), [], ["lamp", "mug", "tea"]),  # recent sessions count more
])
def test_strategies_rank_the_known_answer(strategy, items, expected):
    assert [i for i, _ in top(strategy.fit(LOG).scores(items), 3)] == expected


def test_vsknn_matches_a_hand_computed_example():
    # Session being served: a, b, c -> weights 1/3, 2/3, 1.
    past = [Session(("a", "x"), 1), Session(("b", "c", "y"), 2), Session(("c", "z"), 3), Session(("q",), 4)]
    knn = SessionKNN(k=2).fit(past)
    # Similarities: s0 = 1/3 (a); s1 = 2/3 + 1 = 5/3 (b, c); s2 = 1 (c); s3 shares nothing.
    assert [(i, round(s, 6)) for i, s in knn.neighbours(["a", "b", "c"])] == [(1, round(5 / 3, 6)), (2, 1.0)]
    scores = knn.scores(["a", "b", "c"])
    # The two neighbours vote with their similarity: c is in both, z only in s2.
    assert scores == pytest.approx({"b": 5 / 3, "c": 8 / 3, "y": 5 / 3, "z": 1.0})


def test_vsknn_samples_the_most_recent_sessions():
    past = [Session(("a", f"old{i}"), i) for i in range(5)] + [Session(("a", "new"), 100)]
    assert set(SessionKNN(k=10, sample_size=1).fit(past).scores(["a"])) == {"a", "new"}


def test_bought_together_counts_each_pair_once_per_basket():
    bt = BoughtTogether().fit([Session(("tent", "tent", "pegs"), 0.0)])
    assert bt.scores(["tent"]) == {"pegs": 1.0}


@pytest.mark.parametrize(("view", "expected_items", "strategy"), [
    (SessionView(), ["lamp", "mug", "pegs"], "popular"),
    (SessionView(items=("tent",)), ["pegs", "lamp", "mug"], "covisit+popular"),
    (SessionView(items=("tent",), cart=("pegs",)), ["lamp", "mug", "tea"], "covisit+popular"),  # cart excluded
    (SessionView(items=("tent",), cart=("tent",), trigger="cart"), ["pegs", "lamp", "mug"],
     "bought_together+covisit+popular"),
    (SessionView(items=("tent",), bought=("pegs", "lamp")), ["mug", "tea", "tent"], "popular"),
    (SessionView(items=("nobody-knows",)), ["lamp", "mug", "pegs"], "popular"),
])
def test_the_served_recommender_follows_its_rules(view, expected_items, strategy):
    rec = Recommender(covisit=CoVisitation().fit(LOG), popular=Popularity().fit(LOG),
                      bought_together=BoughtTogether().fit([Session(("tent", "pegs"), 0.0)]), k=3)
    ranked, used = rec.recommend(view)
    assert [i for i, _ in ranked] == expected_items
    assert used == strategy
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)


def test_exclusions_are_configurable():
    view = SessionView(items=("tent", "pegs"), cart=("lamp",))
    keep = Recommender(covisit=CoVisitation().fit(LOG), k=5, exclude_cart=False, exclude_viewed=False)
    drop = Recommender(covisit=CoVisitation().fit(LOG), k=5, exclude_viewed=True)
    assert "lamp" in [i for i, _ in keep.recommend(view)[0]]
    assert [i for i, _ in drop.recommend(view)[0]] == []


def test_blend_weights_move_the_ranking():
    covisit, knn = CoVisitation().fit(LOG), SessionKNN().fit(LOG)
    only_knn = Recommender(covisit=covisit, neighbours=knn, blend=Blend(0, 0, 1), k=2)
    assert only_knn.recommend(SessionView(items=("pegs",)))[1] == "neighbours"
    both = Recommender(covisit=covisit, neighbours=knn, blend=Blend(0, 0.5, 0.5), k=2)
    assert both.recommend(SessionView(items=("pegs",)))[1] == "covisit+neighbours"


def test_normalised_sums_to_one_and_drops_non_positive():
    assert normalised({"a": 3.0, "b": 1.0, "c": 0.0}) == {"a": 0.75, "b": 0.25}
    assert normalised({}) == {}


@pytest.mark.parametrize("n", [50, 3000])
def test_faiss_index_round_trip(n):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 16)).astype("float32")
    ids = [f"item-{i}" for i in range(n)]
    index = ItemIndex.build(vectors, ids, exact_below=1000)
    assert index.exact == (n < 1000)
    queries = rng.normal(size=(5, 16)).astype("float32")
    again = ItemIndex.from_bytes(index.to_bytes(), ids)
    assert again.search(queries, 10) == index.search(queries, 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    found = [[ids.index(i) for i, _ in row] for row in index.search(queries, 10)]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9


def test_index_search_leaves_out_excluded_items_and_still_fills_k():
    index = ItemIndex.build(np.eye(4, dtype="float32"), ["a", "b", "c", "d"])
    hits = index.search(np.array([[4, 3, 2, 1]], dtype="float32"), 2, exclude=[{"a"}])
    assert [i for i, _ in hits[0]] == ["b", "c"]


def test_index_refuses_ids_that_do_not_match():
    with pytest.raises(ValueError, match="holds 2 vectors"):
        ItemIndex(ItemIndex.build(np.eye(2, dtype="float32"), ["a", "b"]).index, ["a"])
