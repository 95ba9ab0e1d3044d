"""The ``feast`` CLI works from ``feature_repo/``: apply, list, materialize-incremental.

The CLI gets a copy of ``feature_store.yaml`` that points at this test's Redis and home,
as a data team would point it at theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scorers.views import VIEWS
from shopstream.featurestore import feature_store, offline_root, repo_path
from shopstream.offline import OfflineLog
from shopstream.rows import feature_table
from shopstream.settings import to_env

pytestmark = [pytest.mark.integration, pytest.mark.contract]  # contract: in `make test-fast`
FEAST = Path(sys.executable).with_name("feast")


def feast(settings, yaml: Path, *args: str) -> str:
    env = {**os.environ, **to_env(settings)}
    done = subprocess.run([str(FEAST), "-c", str(repo_path(settings)), "-f", str(yaml), *args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_apply_list_and_materialize_from_the_feature_repo(settings, tmp_path):
    yaml = (repo_path(settings) / "feature_store.yaml").read_text()
    home = Path(settings.home)
    yaml = yaml.replace("../.shopstream/feast/registry.db", str(home / "feast" / "registry.db"))
    yaml = yaml.replace('"127.0.0.1:6379"', f'"{settings.redis.host}:{settings.redis.port},db={settings.redis.db}"')
    config = tmp_path / "feature_store.yaml"
    config.write_text(yaml)
    (home / "feast").mkdir(parents=True, exist_ok=True)

    feast(settings, config, "apply")
    listed = feast(settings, config, "feature-views", "list")
    for view in ("user_activity", "user_orders", "terminal_risk", "item_popularity"):
        assert view in listed

    # A feature row in the offline log, then materialize it into the online store.
    ts = datetime.now(UTC) - timedelta(hours=1)
    features = VIEWS["terminal_risk"].features
    row = ("t-cli", ts.timestamp(), *[7 if "_count_" in f else 0.25 for f in features])
    OfflineLog(offline_root(settings)).append("terminal_risk", feature_table("terminal_risk", [row]))
    feast(settings, config, "materialize-incremental", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
          "--views", "terminal_risk")
    online = feature_store(settings).get_online_features(
        features=["terminal_risk:tx_count_1d", "terminal_risk:fraud_risk_30d"],
        entity_rows=[{"terminal_id": "t-cli"}]).to_dict()
    assert online["tx_count_1d"] == [7]
    assert online["fraud_risk_30d"] == [0.25]
