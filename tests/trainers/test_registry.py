"""The model registry (MLflow, local sqlite) and the ``shopstream models`` commands."""

from __future__ import annotations

import time

import pytest
import torch
from typer.testing import CliRunner

from models.configs import FraudConfig
from models.fraud import Checkpoint, FraudNet
from scorers.fraud import FEATURES, SIGNALS
from shopstream.cli import app
from shopstream.settings import Settings
from trainers.promotion import fraud_champion as load_champion
from trainers.registry import Registry


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPSTREAM_HOME", str(tmp_path / "home"))
    from shopstream.settings import get_settings

    get_settings.cache_clear()
    yield Settings(home=tmp_path / "home")
    get_settings.cache_clear()


def register(registry: Registry, tmp_path, ap: float) -> str:
    torch.manual_seed(int(ap * 100))
    model = FraudNet(FraudConfig(signals=tuple((n, len(f)) for n, f in SIGNALS.items())))
    path = Checkpoint(model, list(FEATURES)).save(tmp_path / f"fraud-{ap}.pt")
    return registry.register(path, metrics={"ap": ap, "auc": 0.9}, params={"lr": 0.002},
                             tags={"feature_service": "fraud_v1", "train_start": "2026-01-01",
                                   "train_end": "2026-01-28"}).version


def test_promote_rollback_and_load(settings, tmp_path):
    registry = Registry(settings)
    assert registry.champion() is None and load_champion(settings) is None  # rules until then
    first, second = register(registry, tmp_path, 0.5), register(registry, tmp_path, 0.6)
    assert (first, second) == ("1", "2")
    registry.promote(first)
    registry.promote(second)
    assert registry.champion().version == "2"
    assert registry.get("2").metrics["ap"] == pytest.approx(0.6)
    predictor = load_champion(settings)
    assert predictor.version == "2" and list(predictor.features) == list(FEATURES)
    assert registry.rollback() == "1" and registry.champion().version == "1"
    with pytest.raises(LookupError):
        registry.rollback()  # nothing before version 1


def test_models_commands(settings, tmp_path):
    registry = Registry(settings)
    register(registry, tmp_path, 0.5)
    register(registry, tmp_path, 0.7)
    runner = CliRunner()
    unknown = runner.invoke(app, ["models", "promote", "9"])
    assert unknown.exit_code != 0 and "no version '9'" in unknown.output
    result = runner.invoke(app, ["models", "promote", "2"])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["models", "list"], terminal_width=200)
    assert listed.exit_code == 0 and "champion" in listed.output and "0.7000" in listed.output
    assert runner.invoke(app, ["models", "rollback"]).exit_code != 0  # no earlier champion
    assert runner.invoke(app, ["models", "promote", "1"]).exit_code == 0
    assert runner.invoke(app, ["models", "rollback"]).exit_code == 0
    assert registry.champion().version == "2"


def test_models_commands_for_the_recommender(settings, tmp_path):
    from scorers.neighbours import Popularity, Session
    from scorers.recommend import Recommender
    from trainers.promotion import recs_champion as load_recs
    from trainers.promotion import save_bundle

    registry = Registry(settings, settings.recs.model_name)
    bundle = save_bundle(Recommender(popular=Popularity().fit([Session(("a", "b"), 0.0)])), tmp_path / "recs.pt")
    for hr in (0.3, 0.4):
        registry.register(bundle, metrics={"hr@20": hr, "mrr@20": hr / 2}, params={}, tags={"n_views": "10"},
                          description="test")
    runner = CliRunner()
    assert runner.invoke(app, ["models", "promote", "2", "--model", "recs"]).exit_code == 0
    listed = runner.invoke(app, ["models", "list", "--model", "recs"], terminal_width=200)
    assert listed.exit_code == 0 and "0.4000" in listed.output and "HR@20" in listed.output
    assert load_recs(settings).version == "2"
    assert Registry(settings).champion() is None  # the fraud model is another registered model
    wrong = runner.invoke(app, ["models", "list", "--model", "churn"])
    assert wrong.exit_code != 0 and "unknown model" in wrong.output


def test_train_recs_says_clearly_when_the_offline_log_is_empty(settings):
    result = CliRunner().invoke(app, ["train", "recs"])
    assert result.exit_code != 0 and "no clicks yet" in result.output


def test_eval_recs_refuses_an_unknown_format(tmp_path):
    log = tmp_path / "s.csv"
    log.write_text("session_id,item_id,timestamp\n")
    result = CliRunner().invoke(app, ["eval", "recs", "--sessions", str(log), "--format", "parquet"])
    assert result.exit_code != 0 and "unknown format" in result.output


def test_first_opening_from_many_threads_at_once_makes_one_whole_registry(settings):
    from concurrent.futures import ThreadPoolExecutor

    # Workers check for a champion from several threads as they start; each opening of a
    # registry that does not exist yet used to run MLflow's migrations, and they raced.
    with ThreadPoolExecutor(6) as pool:
        champions = list(pool.map(lambda _: Registry(settings).champion(), range(6)))
    assert champions == [None] * 6
    assert (settings.home / "mlflow.db").exists()
    assert not list(settings.home.glob(".*.partial"))  # only the whole file is left


def test_a_process_killed_while_it_makes_the_registry_leaves_none_behind(settings):
    import subprocess
    import sys

    # The creator dies just before the finished file would take its place, as a worker
    # killed during MLflow's migrations would: nothing is left at the registry's path.
    code = ("import os, signal, sys; from pathlib import Path; import trainers.registry as r; "
            "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
            "r.create_sqlite_registry(Path(sys.argv[1]))")
    died = subprocess.run([sys.executable, "-c", code, str(settings.home / "mlflow.db")])
    assert died.returncode == -9
    assert not (settings.home / "mlflow.db").exists()
    assert Registry(settings).champion() is None  # the next opening makes it whole
    assert (settings.home / "mlflow.db").exists()


def test_a_corrupted_checkpoint_is_refused_before_torch_reads_it(settings, tmp_path, monkeypatch):
    registry = Registry(settings)
    version = registry.get(register(registry, tmp_path, 0.5))
    assert len(version.tags["sha256"]) == 64  # recorded at registration
    (stored,) = (settings.home / "mlartifacts").rglob("*.pt")
    stored.write_bytes(stored.read_bytes()[:1000])  # truncated in the store
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch parsed a corrupt file"))
    from trainers.registry import CorruptModel

    with pytest.raises(CorruptModel, match="SHA-256"):
        registry.download(version)


def test_a_version_without_a_digest_is_refused_unless_allowed(settings, tmp_path, monkeypatch):
    """Issue 32: a version registered without a SHA-256 (by hand, or with its tag removed)
    was loaded unchecked, so a file swapped in the artifact store reached torch's parser."""
    from trainers.registry import CorruptModel

    registry = Registry(settings)
    number = register(registry, tmp_path, 0.5)
    registry.client.delete_model_version_tag(registry.name, number, "sha256")
    version = registry.get(number)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch parsed an unchecked file"))
    with pytest.raises(CorruptModel, match="without a digest"):
        registry.download(version)
    allowed = Registry(settings.model_copy(update={"allow_undigested_models": True}))
    assert allowed.download(version).suffix == ".pt"


def test_downloads_reuse_one_folder_per_version_and_keep_two(settings, tmp_path):
    registry = Registry(settings)
    versions = [registry.get(register(registry, tmp_path, ap)) for ap in (0.5, 0.6, 0.7)]
    for _ in range(5):  # a worker retrying the same champion
        first = registry.download(versions[0])
    assert registry.download(versions[0]) == first
    root = settings.home / "models" / registry.name
    assert [p.name for p in root.iterdir()] == ["v1"]
    registry.download(versions[1])
    registry.download(versions[2])
    assert sorted(p.name for p in root.iterdir()) == ["v2", "v3"]
    assert load_champion(settings) is None  # no champion promoted: nothing downloaded


def test_a_challenger_is_set_read_ended_and_ends_when_promoted(settings, tmp_path):
    registry = Registry(settings)
    assert registry.challenge() is None and registry.end_challenge() is None  # no registry yet
    first, second, third = (register(registry, tmp_path, ap) for ap in (0.5, 0.6, 0.7))
    registry.promote(first)
    with pytest.raises(ValueError, match="cannot challenge itself"):
        registry.challenge_with(first, "shadow")
    with pytest.raises(ValueError, match="weight"):
        registry.challenge_with(second, "ab")  # an A/B split needs its share
    set_ = registry.challenge_with(second, "ab", 0.1)
    read = registry.challenge()
    assert read == set_ and (read.version, read.mode, read.weight) == ("2", "ab", 0.1) and read.salt
    assert "challenger" in registry.get(second).aliases and registry.champion().version == first
    registry.challenge_with(third, "shadow", 0.3)  # replaces the challenger; a shadow has no share
    assert (registry.challenge().version, registry.challenge().weight) == ("3", 0.0)
    assert registry.end_challenge() == "3" and registry.challenge() is None
    registry.challenge_with(second, "ab", 0.2)
    registry.promote(second)  # the challenger won: it is the champion, and the challenge is over
    assert registry.champion().version == second and registry.challenge() is None
    assert registry.rollback() == first  # and a rollback is still one step


def test_a_worker_reading_while_a_challenge_changes_sees_the_old_one_or_the_new_one(settings, tmp_path):
    registry, reader = Registry(settings), Registry(settings)  # the reader: a worker's
    first, second, third = (register(registry, tmp_path, ap) for ap in (0.5, 0.6, 0.7))
    registry.promote(first)
    old = registry.challenge_with(second, "shadow")
    seen = []

    def then_read(write):
        def written(*args, **kwargs):
            write(*args, **kwargs)
            seen.append(reader.challenge())  # a worker's check landing between two writes
        return written

    for name in ("set_registered_model_tag", "set_registered_model_alias", "delete_registered_model_tag",
                 "delete_registered_model_alias"):
        setattr(registry.client, name, then_read(getattr(registry.client, name)))
    time.sleep(0.002)  # a new salt
    new = registry.challenge_with(third, "interleave", 0.5)
    assert new.salt != old.salt and seen and set(seen) <= {old, new}
    registry.end_challenge()
    assert seen[-1] is None and set(seen) <= {old, new, None}


def test_models_challenge_status_and_end_challenge_commands(settings, tmp_path):
    registry = Registry(settings)
    for ap in (0.5, 0.6):
        register(registry, tmp_path, ap)
    registry.promote("1")
    runner = CliRunner()
    wrong = runner.invoke(app, ["models", "challenge", "--version", "2", "--mode", "interleave"])
    assert wrong.exit_code != 0 and "recs only" in wrong.output
    unknown = runner.invoke(app, ["models", "challenge", "--version", "9"])
    assert unknown.exit_code != 0 and "no version '9'" in unknown.output
    done = runner.invoke(app, ["models", "challenge", "--version", "2", "--mode", "ab", "--weight", "0.25"])
    assert done.exit_code == 0 and "25% of the traffic" in done.output, done.output
    status = runner.invoke(app, ["models", "status"], terminal_width=200)
    assert status.exit_code == 0 and "challenger" in status.output and "25.0%" in status.output
    ended = runner.invoke(app, ["models", "end-challenge"])
    assert ended.exit_code == 0 and "version 2 no longer challenges" in ended.output
    assert "challenger" not in runner.invoke(app, ["models", "status"], terminal_width=200).output


def test_promote_from_online_without_a_challenge_says_so_and_takes_its_defaults_from_settings(settings,
                                                                                               monkeypatch):
    from shopstream.settings import get_settings

    monkeypatch.setenv("SHOPSTREAM_CHALLENGE__MIN_GRADED", "7")
    get_settings.cache_clear()
    assert get_settings().challenge.min_graded == 7 and get_settings().challenge.fraud_metric == "ap"
    result = CliRunner().invoke(app, ["models", "promote", "--from-online"])
    assert result.exit_code == 1 and "has no challenger" in result.output
    missing = CliRunner().invoke(app, ["models", "promote"])
    assert missing.exit_code != 0 and "--from-online" in missing.output
