"""What ``shopstream train fraud`` prints about promotion: the baselines' metrics beside
the new model's, and which of the champion and the baselines it did not beat."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shopstream import modelcli


def result(promoted: bool, lost_to: list[str], champion=None) -> SimpleNamespace:
    return SimpleNamespace(version=SimpleNamespace(version="4"), promoted=promoted, lost_to=lost_to,
                           metrics={"auc": 0.9, "ap": 0.6, "cp100": 0.2, "ece": 0.01}, champion_metrics=champion,
                           baselines={"logreg": {"auc": 0.91, "ap": 0.65}, "gbm": {"auc": 0.88, "ap": 0.55}},
                           n_train=1000, n_valid=200, plots=[])


@pytest.mark.parametrize(("promoted", "lost_to", "says"), [
    (False, ["logreg"], "not promoted: on the validation days its AP did not beat logistic regression"),
    (False, ["champion", "gbm"], "did not beat the champion, gradient boosting"),
    (True, ["logreg"], "promoted to champion (forced: it lost to logistic regression)"),
    (True, [], "promoted to champion"),
])
def test_the_report_names_what_the_new_model_lost_to(promoted, lost_to, says):
    with modelcli.console.capture() as captured:
        modelcli._print_result(result(promoted, lost_to))
    text = " ".join(captured.get().split())
    assert says in text
    assert "0.6500" in text and "0.5500" in text  # the baselines' AP, beside the new model's
