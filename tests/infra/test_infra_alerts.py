"""template.yaml: the alerts topic, its key, the alarms, and that each alarm can actually see data."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from .support import REPO_ROOT, as_list, evaluate, resources_of_type

pytestmark = pytest.mark.infra

TOPIC = {"Ref": "AlertsTopic"}


@pytest.fixture(scope="module")
def alarms(template) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in resources_of_type(template, "AWS::CloudWatch::Alarm").items()}


def dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}


# --- topic and key ------------------------------------------------------------------------------


def test_alerts_topic_is_encrypted_with_a_key_cloudwatch_may_use(template):
    resources = template["Resources"]
    topic = resources["AlertsTopic"]
    assert topic["Type"] == "AWS::SNS::Topic"
    # Not alias/aws/sns: the AWS managed key's policy cannot let CloudWatch publish alarm
    # notifications to the topic, which would drop every one of them.
    key_ref = topic["Properties"]["KmsMasterKeyId"]
    assert key_ref == {"Ref": "AlertsKey"}
    key = resources["AlertsKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (cloudwatch,) = [s for s in statements if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Effect"] == "Allow"
    assert set(as_list(cloudwatch["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert cloudwatch["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    others = [s for s in statements if s is not cloudwatch]
    # The only other grant is the account's own (so IAM policies can grant use of the key).
    assert [s["Principal"] for s in others] == [
        {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    ]


def test_email_subscription_only_when_an_address_is_given(template):
    subscription = template["Resources"]["AlertsEmailSubscription"]
    assert subscription["Type"] == "AWS::SNS::Subscription"
    assert subscription["Properties"] == {"TopicArn": TOPIC, "Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}
    condition = template["Conditions"][subscription["Condition"]]
    assert evaluate(condition, template) is False
    assert evaluate(condition, template, {"AlertEmail": "ops@example.com"}) is True


# --- alarms -------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_topic_on_alarm_and_on_ok(alarms):
    assert {
        "DriftAlarm",
        "PredictErrorsAlarm",
        "Api5xxAlarm",
        "PredictLatencyAlarm",
        "CaptureFailuresAlarm",
    } <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [TOPIC], name
        assert alarm["OKActions"] == [TOPIC], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm.get("ActionsEnabled", True) is True, name
        assert alarm.get("AlarmDescription"), name


def test_drift_alarm(alarms):
    alarm = alarms["DriftAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("sklambda", "DriftScore")
    # Exactly the dimensions the drift job emits with Powertools: an alarm needs an exact match.
    assert dimensions(alarm) == {"service": "drift", "model": {"Ref": "DefaultModelName"}}
    assert alarm["Statistic"] == "Maximum"
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (3600, 1)
    assert alarm["Threshold"] == {"Ref": "DriftAlarmThreshold"}
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_a_failing_drift_job_is_not_silent(alarms):
    # DriftAlarm treats missing data as OK, so a job that never completes needs its own alarm.
    alarm = alarms["DriftErrorsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert dimensions(alarm) == {"FunctionName": {"Ref": "DriftFunction"}}
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1


def test_predict_errors_alarm(alarms):
    alarm = alarms["PredictErrorsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert dimensions(alarm) == {"FunctionName": {"Ref": "PredictFunction"}}
    assert alarm["Statistic"] == "Sum"
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == (300, 1, 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_api_5xx_alarm(alarms):
    alarm = alarms["Api5xxAlarm"]
    # HTTP APIs publish "5xx" (REST APIs "5XXError") with the dimension ApiId.
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ApiGateway", "5xx")
    assert dimensions(alarm) == {"ApiId": {"Ref": "Api"}}
    assert alarm["Statistic"] == "Sum"
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == (300, 1, 5)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_predict_latency_alarm_is_lambda_duration_p99(alarms):
    alarm = alarms["PredictLatencyAlarm"]
    # sklambda/PredictLatency carries model_version, which changes with every promotion: an
    # alarm (exact dimension match, no SEARCH, no percentiles in Metrics Insights) cannot follow it.
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Duration")
    assert dimensions(alarm) == {"FunctionName": {"Ref": "PredictFunction"}}
    assert alarm["ExtendedStatistic"] == "p99" and "Statistic" not in alarm
    assert "Unit" not in alarm  # a unit that does not match the metric's leaves the alarm without data
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (300, 3)
    assert alarm["Threshold"] == {"Ref": "LatencyAlarmMs"}
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_no_alarm_watches_a_metric_whose_dimensions_change_with_the_version(alarms):
    for name, alarm in alarms.items():
        if alarm.get("Namespace") == "sklambda":
            assert "model_version" not in dimensions(alarm), name
            assert alarm["MetricName"] not in {"PredictLatency", "Predictions"}, name


def test_capture_failures_alarm(alarms):
    alarm = alarms["CaptureFailuresAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("sklambda", "CaptureFailures")
    assert dimensions(alarm) == {"service": "predict"}
    assert alarm["Statistic"] == "Sum"
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["Threshold"]) == (300, 1, 1)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_capture_failures_alarm_matches_what_the_predict_function_emits(alarms, monkeypatch, capsys):
    """The alarm's dimensions must be exactly those of the EMF document the handler prints."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "predict")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda")
    monkeypatch.setenv("MODEL_BUCKET", "unused-bucket")
    spec = importlib.util.spec_from_file_location("predict_app_for_alarms", REPO_ROOT / "functions/predict/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    module._record_event("CaptureFailures", {"rows": 3, "stream": "sklambda-CaptureStream"})
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    (doc,) = [d for d in docs if "CaptureFailures" in d]
    (directive,) = doc["_aws"]["CloudWatchMetrics"]
    alarm = alarms["CaptureFailuresAlarm"]
    assert directive["Namespace"] == alarm["Namespace"]
    assert [set(dims) for dims in directive["Dimensions"]] == [set(dimensions(alarm))]
    assert {name: doc[name] for name in dimensions(alarm)} == dimensions(alarm)


# --- outputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "value"),
    [
        ("CaptureBucketName", {"Ref": "CaptureBucket"}),
        ("CaptureStreamName", {"Ref": "CaptureStream"}),
        ("AlertsTopicArn", {"Ref": "AlertsTopic"}),
        ("DriftFunctionName", {"Ref": "DriftFunction"}),
    ],
)
def test_new_outputs(template, output, value):
    assert template["Outputs"][output]["Value"] == value
    assert template["Outputs"][output]["Description"]
