"""Fault 4, registry and model faults: a truncated fraud checkpoint, a recommender bundle
whose faiss bytes were damaged in the store, a fraud model whose forward raises, and a
registry that cannot be read. The worker keeps answering every order and click, on the
previous model or the fallback, and keeps at most two model folders per model.

Seen failing before issue 14's fixes: every check of a broken champion downloaded it
into a new temporary folder that was never removed (one folder every reload interval),
and damaged bundle bytes reached faiss, which parses them in native code.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from models.configs import FraudConfig
from models.fraud import Checkpoint, FraudNet
from scorers.fraud import FEATURES, SIGNALS
from shopstream import workers
from shopstream.client import ShopProducer
from shopstream.events import Click, Order, OrderItem
from tests.integration.conftest import read_all, start_worker, wait_until
from trainers.registry import Registry


def fraud_checkpoint(path: Path, *, broken_forward: bool = False) -> Path:
    """An untrained fraud model; ``broken_forward`` gives it inputs of the wrong widths,
    so that it loads but its forward raises."""
    torch.manual_seed(0)
    signals = tuple((name, len(fields) + broken_forward) for name, fields in SIGNALS.items())
    return Checkpoint(FraudNet(FraudConfig(signals=signals)), list(FEATURES)).save(path)


def stored(version) -> Path:
    """The registered file in the local artifact store."""
    (path,) = Path(urlparse(version.source).path).glob("*.pt")
    return path


def promote(registry: Registry, path: Path) -> str:
    version = registry.register(path, metrics={}, params={}, tags={}, description="fault test")
    registry.promote(version.version)
    return version.version


def versions(settings) -> dict[str, float]:
    return (workers.scrape(settings.web_port) or workers.WorkerMetrics()).model_versions


def failures(settings, model: str) -> float:
    return workers.reload_failures(settings.web_port, model)


def answered(settings, tag: str) -> tuple[list[dict], list[dict]]:
    """Send 5 orders and 5 clicks; return the scores and recommendations they got."""
    now = datetime.now(UTC)
    with ShopProducer(settings) as producer:
        for i in range(5):
            producer.send(Order(order_id=f"{tag}-o{i}", user_id=f"{tag}-u", amount=5,
                                items=[OrderItem(item_id="a1", price=5)], payment_fingerprint="p", ts=now))
            producer.send(Click(user_id=f"{tag}-u", session_id=f"{tag}-s{i}", item_id="a1", ts=now))
    scores = [json.loads(m.value()) for m in read_all(settings, settings.topics.fraud_scores, expect=10**9, timeout=8)]
    recs = [json.loads(m.value()) for m in read_all(settings, settings.topics.session_recs, expect=10**9, timeout=8)]
    return ([s for s in scores if s["order_id"].startswith(f"{tag}-")],
            [r for r in recs if r["session_id"].startswith(f"{tag}-")])


@pytest.fixture
def fast_reload(settings):
    return settings.model_copy(update={
        "scoring": settings.scoring.model_copy(update={"reload_s": 1.0}),
        "recs": settings.recs.model_copy(update={"reload_s": 1.0})})


def test_broken_models_and_registry_never_stop_answers(fast_reload, tmp_path):
    from tests.trainers.test_recs import CONFIG, small_log
    from trainers.promotion import save_bundle
    from trainers.recs import fit_recommender

    settings = fast_reload
    temp_before = set(Path(tempfile.gettempdir()).glob("shopstream-model-*"))
    fraud, recs = Registry(settings), Registry(settings, settings.recs.model_name)
    promote(fraud, fraud_checkpoint(tmp_path / "good.pt"))
    bundle = save_bundle(fit_recommender(small_log(), [], CONFIG, progress=False).recommender,
                         tmp_path / "recs.pt")
    promote(recs, bundle)
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        wait_until(lambda: versions(settings).get(fraud.name) == 1.0
                   and versions(settings).get(recs.name) == 1.0, what="both champions to load")

        # 1. a truncated checkpoint and damaged faiss bytes, found by their digests
        bad = fraud.register(fraud_checkpoint(tmp_path / "v2.pt"), metrics={}, params={}, tags={})
        stored(bad).write_bytes(stored(bad).read_bytes()[:2000])
        fraud.promote(bad.version)
        damaged = recs.register(bundle, metrics={}, params={}, tags={})
        saved = torch.load(stored(damaged), weights_only=True)
        saved["index"] = torch.flip(saved["index"], [0])  # same size, scrambled
        torch.save(saved, stored(damaged))
        recs.promote(damaged.version)
        wait_until(lambda: failures(settings, fraud.name) >= 1 and failures(settings, recs.name) >= 1,
                   what="both broken champions to be refused")
        # Three more registry checks: the broken versions are not tried again at each.
        checks = workers.registry_checks(settings.web_port, fraud.name)
        wait_until(lambda: workers.registry_checks(settings.web_port, fraud.name) >= checks + 3,
                   60, what="three more registry checks")
        scores, answers = answered(settings, "a")
        assert {s["model_version"] for s in scores} == {"1"} and len(scores) == 5
        assert {r["model_version"] for r in answers} == {"1"} and len(answers) == 5
        assert failures(settings, fraud.name) == 1  # tried again only after 5 minutes

        # 2. a model that loads but whose forward raises: the rules answer
        promote(fraud, fraud_checkpoint(tmp_path / "v3.pt", broken_forward=True))
        wait_until(lambda: versions(settings).get(fraud.name) == 3.0, what="version 3 to load")
        scores, _ = answered(settings, "b")
        assert {s["model_version"] for s in scores} == {"rules"} and len(scores) == 5

        # 3. a registry that cannot be read: answers go on
        database = settings.home / "mlflow.db"
        kept = database.read_bytes()
        database.write_bytes(b"this is not a database" * 100)
        try:
            # Three registry checks with the damaged file in place: answers go on.
            checks = workers.registry_checks(settings.web_port, fraud.name)
            wait_until(lambda: workers.registry_checks(settings.web_port, fraud.name) >= checks + 3,
                       60, what="three registry checks with the damaged database")
            scores, answers = answered(settings, "c")
            assert len(scores) == 5 and len(answers) == 5
        finally:
            database.write_bytes(kept)
        assert workers.ready(settings.web_port)
    finally:
        code = workers.stop(process)
        print(f"--- worker exited with {code}:\n" + (tmp_path / "worker.log").read_text()[-4000:])

    for name in (fraud.name, recs.name):
        assert len(list((settings.home / "models" / name).iterdir())) <= 2
    assert set(Path(tempfile.gettempdir()).glob("shopstream-model-*")) == temp_before
