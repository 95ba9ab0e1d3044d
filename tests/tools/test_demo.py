"""The demo's last words: where to look next."""

from __future__ import annotations

from rich.console import Console

from shopstream.settings import Settings
from tests.conftest import free_port
from tools.demo import where_next


def told(settings: Settings, kept: bool = False) -> str:
    console = Console(record=True, width=200)
    where_next(settings, console, kept=kept)
    return console.export_text()


def test_the_demo_ends_with_the_metrics_prometheus_and_the_mlflow_ui(tmp_path):
    settings = Settings(home=tmp_path, web_port=6066, prometheus_port=free_port())  # no Prometheus there
    text = told(settings)
    assert "worker metrics: http://127.0.0.1:6066/metrics (the demo's worker has stopped" in text
    assert "`make monitor` starts it" in text
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlflow.db" in text


def test_a_registry_uri_that_may_hold_credentials_is_not_printed(tmp_path):
    settings = Settings(home=tmp_path, prometheus_port=free_port(), registry_uri="https://user:secret@mlflow:5000")
    text = told(settings, kept=True)
    assert "secret" not in text and "mlflow ui" not in text and "has stopped" not in text
