"""Faults on the local stack over real HTTP.

Covered here: a tampered artifact promoted while serving (refused, the previous version keeps
serving, ``ModelLoadFailures`` in CloudWatch). Covered at the integration level (moto over HTTP,
in-process handler): S3 down while warm and at cold start (tests/integration/test_serving.py),
Firehose throttling and partial batch failure (tests/integration/test_capture.py), concurrent
promotions without a lost update (tests/integration/test_registry.py), retrain step failures
(tests/integration/test_retrain.py).
"""

from __future__ import annotations

import json
import time

import requests

from sklambda import training
from tests.support.helpers import ROOT, trained_demo

SAMPLE = json.loads((ROOT / "events/sample_request.json").read_text())


def _served_version(api: str) -> str:
    r = requests.post(api + "/predict", json=SAMPLE, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["model"]["version"]


def test_tampered_artifact_promoted_while_serving_is_refused_and_counted(stack, api, registry):
    before = _served_version(api)
    manifest = training.publish(registry, "demo", trained_demo(seed=7))
    s3, bucket = stack.client("s3"), stack.bucket("ModelBucket")
    served_file = manifest.lean.artifact if manifest.lean and manifest.lean.accepted else "model.joblib"
    key = f"models/demo/versions/{manifest.version}/{served_file}"
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte: same size, wrong sha256
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    registry.promote("demo", manifest.version, reason="tampered")

    deadline = time.monotonic() + 8  # AliasCheckSeconds=1: several re-checks happen in this window
    answers = []
    while time.monotonic() < deadline:
        answers.append(_served_version(api))
        time.sleep(0.3)
    assert set(answers) == {before}, answers

    assert stack.flush_metrics(15)
    cloudwatch = stack.client("cloudwatch")
    found = cloudwatch.list_metrics(Namespace="sklambda", MetricName="ModelLoadFailures")["Metrics"]
    assert found, "ModelLoadFailures not in CloudWatch"
    registry.rollback("demo", reason="undo tampered promotion")
