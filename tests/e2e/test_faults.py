"""Faults on the local stack over real HTTP.

Covered here: a tampered artifact promoted while serving (refused, the previous version keeps
serving, ``ModelLoadFailures`` in CloudWatch); S3 unreachable while warm (keeps serving) and at
cold start (a clear 503, then recovery) and capture delivery failing (predictions answer,
``CaptureFailures`` counted) through ``EmbeddedStack.aws_unreachable``; a retrain step
crashing midway is in test_retrain_loop.py. Covered at the integration level (moto over HTTP,
in-process handler): Firehose throttling and partial batch failure (tests/integration/test_capture.py), concurrent
promotions without a lost update (tests/integration/test_registry.py), retrain step failures
(tests/integration/test_retrain.py).
"""

from __future__ import annotations

import json
import time

import requests

from sklambda.lifecycle import training
from tests.support.helpers import ROOT, trained_demo
from tests.support.wait import wait_for

SAMPLE = json.loads((ROOT / "events/sample_request.json").read_text())


def _served_version(api: str) -> str:
    r = requests.post(api + "/predict", json=SAMPLE, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["model"]["version"]


def _metric_total(stack, name: str) -> float:
    """Sum of every datapoint of sklambda metric ``name`` (any dimensions) in the last hour and the next."""
    assert stack.flush_metrics(15)
    cloudwatch = stack.emulator.client("cloudwatch")  # moto itself: works while aws_unreachable()
    total = 0.0
    for metric in cloudwatch.list_metrics(Namespace="sklambda", MetricName=name)["Metrics"]:
        points = cloudwatch.get_metric_statistics(
            Namespace="sklambda",
            MetricName=name,
            Dimensions=metric["Dimensions"],
            StartTime=time.time() - 3600,
            EndTime=time.time() + 3600,
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        total += sum(p["Sum"] for p in points)
    return total


def test_tampered_artifact_promoted_while_serving_is_refused_and_counted(stack, api, registry):
    before = _served_version(api)
    failures_before = _metric_total(stack, "ModelLoadFailures")
    manifest = training.publish(registry, "demo", trained_demo(seed=7))
    s3, bucket = stack.client("s3"), stack.bucket("ModelBucket")
    served_file = manifest.lean.artifact if manifest.lean and manifest.lean.accepted else "model.joblib"
    key = f"models/demo/versions/{manifest.version}/{served_file}"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte: same size, wrong sha256
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    registry.promote("demo", manifest.version, reason="tampered")

    answers: list[str] = []

    def refused_and_rechecked() -> bool:
        answers.append(_served_version(api))
        # The failure counted proves the server tried the tampered version; then a few more answers
        # (AliasCheckSeconds=1) show the re-checks after the refusal keep serving the old one.
        return len(answers) >= 8 and _metric_total(stack, "ModelLoadFailures") > failures_before

    wait_for(refused_and_rechecked, timeout=90, interval=0.3, message="ModelLoadFailures for the tampered version")
    assert set(answers) == {before}, answers

    assert stack.flush_metrics(15)
    cloudwatch = stack.client("cloudwatch")
    found = cloudwatch.list_metrics(Namespace="sklambda", MetricName="ModelLoadFailures")["Metrics"]
    assert found, "ModelLoadFailures not in CloudWatch"
    registry.rollback("demo", reason="undo tampered promotion")


def test_s3_unreachable_while_warm_keeps_serving_the_cached_model(stack, api):
    before = _served_version(api)
    unavailable_before = _metric_total(stack, "RegistryUnavailable")
    answers: list[str] = []

    def rechecked_and_failed() -> bool:
        answers.append(_served_version(api))
        return _metric_total(stack, "RegistryUnavailable") > unavailable_before

    with stack.aws_unreachable():
        # Requests until one has re-checked the alias (AliasCheckSeconds=1) and could not reach S3.
        wait_for(
            rechecked_and_failed, timeout=90, interval=0.3, message="a failed alias re-check (RegistryUnavailable)"
        )
        answers += [_served_version(api) for _ in range(3)]
    assert answers[-3:] == [before] * 3
    assert set(answers) == {before}, answers
    assert _served_version(api) == before


def test_s3_unreachable_at_cold_start_is_a_clear_503_that_recovers(tmp_path):
    from sklambda.registry.store import ModelRegistry
    from sklambda_dev.local.stack import EmbeddedStack

    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-cold-outage",
        state_file=tmp_path / "s.json",
        schedule_interval=0,
        alarm_interval=0,
    ) as cold:
        registry = ModelRegistry(cold.client("s3"), cold.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo())
        registry.promote("demo", "1")
        with cold.aws_unreachable():
            first = requests.post(cold.api_url + "/predict", json=SAMPLE, timeout=120)
            ready = requests.get(cold.api_url + "/ready", timeout=120)
        assert first.status_code == 503, first.text
        assert first.json()["error"] == "model_unavailable" and "cannot be loaded right now" in first.json()["message"]
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"

        def recovered() -> requests.Response | None:
            answer = requests.post(cold.api_url + "/predict", json=SAMPLE, timeout=120)
            return answer if answer.status_code == 200 else None

        answer = wait_for(recovered, timeout=60, interval=0.5, message="a 200 once S3 is reachable again")
        assert answer.json()["model"]["version"] == "1"


def test_capture_delivery_failing_never_fails_a_prediction_and_is_counted(stack, api):
    """Firehose unreachable (throttled, down): predictions still answer, the sink retries, and the
    undelivered rows are logged in full and counted as CaptureFailures."""
    _served_version(api)  # warm: the model is cached, so only capture needs AWS below
    with stack.aws_unreachable():
        answers = [requests.post(api + "/predict", json=SAMPLE, timeout=60) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert stack.flush_metrics(15)
    cloudwatch = stack.client("cloudwatch")

    def capture_failures() -> list:
        return cloudwatch.get_metric_statistics(
            Namespace="sklambda",
            MetricName="CaptureFailures",
            Dimensions=[{"Name": "service", "Value": "predict"}],
            StartTime=time.time() - 600,
            EndTime=time.time() + 600,
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]

    points = wait_for(capture_failures, timeout=60, interval=0.5, message="CaptureFailures in CloudWatch")
    assert sum(p["Sum"] for p in points) >= 6, points  # 3 requests x 2 rows
