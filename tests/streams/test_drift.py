"""The drift agent's routing: a record it cannot take is counted and skipped, never fatal."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import orjson
import pytest

from streams import drift, metrics
from streams.app import signer
from streams.codecs import packed, unpacked


@pytest.fixture(autouse=True)
def no_warm_up(monkeypatch):
    """These records have no topic behind them to warm up from."""
    monkeypatch.setattr(drift, "warm_up", drift.WarmUp(0, None))


def message(value: bytes, offset: int = 0, key: bytes = drift.FRAUD):
    """A drift input as a worker writes it: signed with the deployment's key."""
    return SimpleNamespace(key=key, value=signer.sign(key, value), topic="app-drift-inputs", partition=0,
                           offset=offset)


def count(kind: str, outcome: str) -> float:
    return metrics.DRIFT_INPUTS.labels(kind, outcome)._value.get()  # noqa: SLF001


def test_records_the_watch_cannot_take_are_counted_not_raised():
    """Seen failing before: any exception in a record ended the agent's loop (fatal)."""
    before = count("unknown", "unreadable")
    records = [message(b"{not json", 1), message(orjson.dumps({"k": "scored"}), 2),  # no version
               message(orjson.dumps({"k": "mystery"}), 3)]
    asyncio.run(drift.watch_records(records))
    assert count("unknown", "unreadable") == before + 3


def test_rules_have_no_reference_and_labels_of_unknown_orders_match_nothing():
    no_profile, unmatched = count("scored", "no_profile"), count("label", "unmatched")
    scored = {"k": "scored", "m": "m", "v": "rules", "id": "o1", "t": 1.0, "x": [1.0], "s": 0.1, "d": "allow"}
    label = {"k": "label", "id": "o-never-scored", "f": True, "t": 2.0}
    asyncio.run(drift.watch_records([message(orjson.dumps(scored)), message(orjson.dumps(label))]))
    assert count("scored", "no_profile") == no_profile + 1 and count("label", "unmatched") == unmatched + 1


def test_recommendations_are_watched_without_a_champion():
    watched = count("recs", "watched")
    record = drift.answered_record("rules", "s1", "i1", ["i1", "i2"], "popular", 5.0)
    asyncio.run(drift.watch_records([message(record)]))
    assert count("recs", "watched") == watched + 1 and drift.recs_watch.version == "rules"


def test_a_starting_worker_warms_its_watches_up_from_the_records_before_its_first():
    """Before it, a restarted drift role started its windows and detectors empty."""
    earlier = [drift.answered_record("rules", f"w{i}", f"i{i}", [f"i{i}", "i0"], "popular", float(i))
               for i in range(3)]
    reads = []

    def read(topic, partition, start, end):
        reads.append((topic, partition, start, end))
        return [(drift.RECS, signer.sign(drift.RECS, record)) for record in earlier[start:end]]

    warm_up, warmed = drift.WarmUp(2, read), count("recs", "warm_up")
    first = [message(drift.answered_record("rules", "s9", "i9", ["i9"], "popular", 9.0), offset=3, key=drift.RECS)]
    assert asyncio.run(warm_up.before(first)) == 2
    assert reads == [("app-drift-inputs", 0, 0, 3)]  # back 16 records or to the start; the last 2 kept
    assert count("recs", "warm_up") == warmed + 2
    assert {("w1", "champion"), ("w2", "champion")} <= set(drift.grades._lists)  # noqa: SLF001 - the sessions shown
    assert asyncio.run(warm_up.before([message(b"{}", offset=4)])) == 0 and len(reads) == 1  # once


def test_inputs_travel_packed_and_a_warm_up_reads_back_until_it_has_enough():
    answers = [drift.answered_record("rules", f"p{i}", "a", ["b"], "popular", float(i)) for i in range(10)]
    values = packed(answers, limit=(len(answers[0]) + 1) * 3)
    assert len(values) == 4 and [a for v in values for a in unpacked(v)] == [orjson.loads(a) for a in answers]
    log = [(drift.RECS, signer.sign(drift.RECS, v)) for v in values] * 10  # 40 records, 100 inputs
    reads = []

    def read(topic, partition, start, end):
        reads.append((start, end))
        return log[start:end]

    warmed = count("recs", "warm_up")
    assert asyncio.run(drift.WarmUp(70, read).before([message(b"[]", offset=40, key=drift.RECS)])) == 70
    assert reads == [(24, 40), (0, 24)]  # 16 records held 40 inputs: 32 more were read back
    assert count("recs", "warm_up") == warmed + 70
    before = count("recs", "watched")
    asyncio.run(drift.watch_records([message(values[0], offset=41, key=drift.RECS)]))
    assert count("recs", "watched") == before + 3  # one record, three inputs


def test_a_warm_up_that_cannot_read_starts_empty():
    def read(*span):
        raise RuntimeError("broker away")

    assert asyncio.run(drift.WarmUp(10, read).before([message(b"{}", offset=50)])) == 0


def graded(model: str, version: str, variant: str, outcome: str) -> float:
    return metrics.ONLINE_GRADED.labels(model, version, variant, outcome)._value.get()  # noqa: SLF001


def test_every_version_is_graded_by_what_followed_and_only_the_champion_watched():
    """``shopstream_online_graded``: the champion's and the shadow's scores of one order
    by its label, and recommendation lists by the session's next click, per variant."""
    before = {key: graded(*key) for key in [(drift.MODEL, "7", "champion", "tp"), (drift.MODEL, "8", "shadow", "fn"),
                                            (drift.RECS_MODEL, "3", "champion", "hit"),
                                            (drift.RECS_MODEL, "4", "shadow", "miss")]}
    shadow_seen = count("scored", "graded")
    records = [drift.scored_record("7", "o-graded", 1.0, [], 0.9, "block"),
               drift.scored_record("8", "o-graded", 1.0, [], 0.1, "allow", "shadow"),
               orjson.dumps({"k": "label", "id": "o-graded", "f": True, "t": 2.0}),
               orjson.dumps({"k": "label", "id": "o-graded", "f": True, "t": 2.0}),  # read again: graded once
               drift.answered_record("3", "s-graded", "a", ["b", "c"], "model", 1.0),
               drift.answered_record("4", "s-graded", "a", ["d"], "model", 1.0, "shadow"),
               drift.answered_record("3", "s-graded", "c", ["e"], "model", 2.0),
               drift.answered_record("4", "s-graded", "c", ["f"], "model", 2.0, "shadow")]
    asyncio.run(drift.watch_records([message(r, offset=i) for i, r in enumerate(records)]))
    assert {key: graded(*key) - n for key, n in before.items()} == dict.fromkeys(before, 1.0)
    assert count("scored", "graded") == shadow_seen + 1  # the shadow's inputs are not watched for drift
