"""The alert rules, the dashboard and the scrape configuration of ops/ (issue 19)."""

from __future__ import annotations

import json
import re

import yaml

from shopstream.services import prometheus
from tests.conftest import ROOT

OPS = ROOT / "ops"
METRIC = re.compile(r"\b((?:shopstream|ml)_[a-z_]+)\b")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((OPS / "prometheus" / "rules.yml").read_text())["groups"]
            for rule in group["rules"]]


def exported() -> set[str]:
    """Every series name a worker exports (``streams.metrics``)."""
    from prometheus_client import REGISTRY

    import streams.metrics  # noqa: F401 - registers the worker's metrics

    names = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_alert_rules_pass_their_unit_tests():
    code, output = prometheus.test_rules()
    assert code == 0, output
    assert "SUCCESS" in output


def test_a_rule_that_no_longer_fires_fails_its_test(tmp_path):
    """The rule tests can fail: the dead-letter threshold raised to 10 % misses the 5 %
    that its test expects to fire on."""
    for name in ("rules.yml", "rules_test.yml"):
        text = (OPS / "prometheus" / name).read_text()
        (tmp_path / name).write_text(text.replace("> 0.01", "> 0.10"))
    code, output = prometheus.test_rules(tmp_path / "rules_test.yml")
    assert code != 0 and "ShopstreamDeadLetters" in output


def test_every_alert_is_tested_and_has_a_runbook():
    tested = set(re.findall(r"alertname: (\w+)", (OPS / "prometheus" / "rules_test.yml").read_text()))
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for rule in rules():
        assert rule["alert"] in tested, f"{rule['alert']} has no test"
        assert f"`{rule['alert']}`" in runbook, f"{rule['alert']} is not in docs/operations.md"
    names = {rule["alert"] for rule in rules()}
    for wanted in ("ConsumerLag", "FeaturesStale", "DeadLetters", "CommitRepairs", "ScoringWithRules",
                   "ModelLoadFailed", "Drift"):
        assert f"Shopstream{wanted}" in names


def test_every_metric_the_rules_and_the_dashboard_query_is_exported():
    dashboard = json.loads((OPS / "grafana" / "shopstream.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [rule["expr"] for rule in rules()]
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named and not named - exported(), f"not exported: {sorted(named - exported())}"


def test_the_dashboard_shows_what_an_operator_reads_first():
    dashboard = json.loads((OPS / "grafana" / "shopstream.json").read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in ("events in", "lag", "freshness", "by decision and version", "by strategy",
                   "dead letters", "drift"):
        assert wanted in titles
    assert all(target["datasource"]["uid"] == "prometheus" for panel in dashboard["panels"]
               for target in panel["targets"])  # the uid the provisioned data source has
    provisioned = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == "prometheus"


def test_the_local_configuration_scrapes_the_given_workers():
    conf = prometheus.config(["127.0.0.1:7001", "127.0.0.1:7002"], interval_s=2)
    assert conf["rule_files"] == ["rules.yml"]
    assert conf["global"]["scrape_interval"] == "2s"
    assert conf["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:7001", "127.0.0.1:7002"]}]
