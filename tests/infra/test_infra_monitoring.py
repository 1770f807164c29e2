"""template.yaml: the scale-aware drift threshold, the label-free accuracy alarm (which starts a
retrain like DriftAlarm) and the metrics the drift function must emit for them."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace
from typing import Any

import pytest

from .support import REPO_ROOT, resources_of_type

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def alarms(template) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in resources_of_type(template, "AWS::CloudWatch::Alarm").items()}


def dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}


@pytest.mark.parametrize(
    ("name", "default", "maximum"),
    [("DriftWassersteinThreshold", 0.1, None), ("EstimatedAccuracyDropThreshold", 0.05, 1)],
)
def test_parameters(template, name, default, maximum):
    spec = template["Parameters"][name]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", default, 0)
    assert spec.get("MaxValue") == maximum and spec["Description"]


def test_the_drift_function_gets_the_wasserstein_threshold(template):
    variables = template["Resources"]["DriftFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DRIFT_WASSERSTEIN_THRESHOLD"] == {"Ref": "DriftWassersteinThreshold"}


def test_estimated_accuracy_alarm(alarms):
    alarm = alarms["EstimatedAccuracyAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("sklambda", "EstimatedAccuracyDrop")
    assert dimensions(alarm) == {"service": "drift", "model": {"Ref": "DefaultModelName"}}
    assert alarm["Statistic"] == "Maximum" and (alarm["Period"], alarm["EvaluationPeriods"]) == (3600, 1)
    assert alarm["Threshold"] == {"Ref": "EstimatedAccuracyDropThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"  # versions without a calibration emit nothing
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlertsTopic"}]


def test_the_retrain_rule_listens_to_both_alarms(template):
    machine = template["Resources"]["RetrainStateMachine"]["Properties"]
    (rule,) = [e for e in machine["Events"].values() if e["Type"] == "EventBridgeRule"]
    assert rule["Properties"]["Pattern"]["resources"] == [
        {"Fn::GetAtt": ["DriftAlarm", "Arn"]},
        {"Fn::GetAtt": ["EstimatedAccuracyAlarm", "Arn"]},
    ]


def test_the_alarm_matches_what_the_drift_function_emits(alarms, monkeypatch, capsys):
    """The alarm's dimensions must be exactly those of the EMF document the handler prints."""
    from sklambda.monitoring.performance import PerformanceEstimate

    for key, value in {
        "POWERTOOLS_SERVICE_NAME": "drift",
        "POWERTOOLS_METRICS_NAMESPACE": "sklambda",
        "CAPTURE_BUCKET": "unused-cap",
        "MODEL_BUCKET": "unused-models",
    }.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("drift_app_for_alarms", REPO_ROOT / "functions/drift/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    estimate = PerformanceEstimate(
        status="estimated", mode="binary", rows=900, estimated={"accuracy": 0.71}, drop={"accuracy": 0.09}
    )
    outcome = SimpleNamespace(model="demo", version="4", performance=estimate, multivariate=None)
    module.publish_estimates(SimpleNamespace(outcomes=[outcome]))
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    (doc,) = [d for d in docs if "EstimatedAccuracyDrop" in d]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    alarm = alarms["EstimatedAccuracyAlarm"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert [set(dims) for dims in directive["Dimensions"]] == [{"service", "model"}]
    assert (doc["service"], doc["model"], doc["EstimatedAccuracyDrop"]) == ("drift", "demo", [0.09])
    (per_version,) = [d for d in docs if "EstimatedAccuracy" in d]
    assert per_version["model_version"] == "4" and per_version["EstimatedAccuracy"] == [0.71]
