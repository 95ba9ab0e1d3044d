"""The model registry (MLflow, local sqlite) and the ``shopstream models`` commands."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from models.fraud import Checkpoint, FraudConfig, FraudNet
from scorers.fraud import FEATURES, SIGNALS
from shopstream.cli import app
from shopstream.settings import Settings
from trainers.fraud import load_champion
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
