"""Issue 3 end to end on the local stack: drifted traffic over HTTP → Firehose → S3 captures →
the drift function (run by the local schedule and on demand) → metrics in CloudWatch and a report."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest
import requests

from sklambda.lifecycle import training
from sklambda.monitoring.store import CaptureStore
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT, demo_rows, trained_demo
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def loop_stack(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("drift") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-drift-e2e",
        parameter_overrides={"DriftMinRows": "300"},
        state_file=state,
        schedule_interval=0,
    ) as stack:
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo())
        registry.promote("demo", "1")
        yield stack


def _send(api: str, rows: list[dict], batch: int = 50) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(rows), batch):
        r = requests.post(f"{api}/predict", json={"instances": rows[i : i + batch]}, timeout=60)
        assert r.status_code == 200, r.text
        ids += r.json()["prediction_ids"]
    return ids


def _captured_ids(stack: EmbeddedStack) -> set[str]:
    store = CaptureStore(stack.client("s3"), stack.bucket("CaptureBucket"))
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    ids = set()
    for key in store.list_capture_keys(now - timedelta(hours=2), now + timedelta(hours=1)):
        ids |= {json.loads(line)["prediction_id"] for line in store.read_lines(key)}
    return ids


def test_every_served_row_is_captured(loop_stack):
    ids = _send(loop_stack.api_url, demo_rows(120, seed=31))
    assert set(ids) <= _captured_ids(loop_stack)


def test_drifted_traffic_raises_the_drift_score_and_writes_a_report(loop_stack):
    _send(loop_stack.api_url, demo_rows(600, seed=32, drift=1.0))
    result = loop_stack.run_schedule("DriftFunction")
    assert result.ok, result
    summary = result.payload
    demo_outcome = next(m for m in summary["models"] if m["model"] == "demo")
    assert demo_outcome["verdict"] == "drift" and demo_outcome["drift_score"] >= 0.3
    assert "support_calls" in demo_outcome["drifted"]

    assert loop_stack.flush_metrics()
    cloudwatch = loop_stack.client("cloudwatch")

    def drift_scores() -> list:
        return cloudwatch.get_metric_statistics(
            Namespace="sklambda",
            MetricName="DriftScore",
            Dimensions=[{"Name": "service", "Value": "drift"}, {"Name": "model", "Value": "demo"}],
            StartTime=time.time() - 3600,
            EndTime=time.time() + 3600,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]

    points = wait_for(drift_scores, timeout=60, interval=0.5, message="DriftScore in CloudWatch")
    assert max(p["Maximum"] for p in points) >= 0.3

    store = CaptureStore(loop_stack.client("s3"), loop_stack.bucket("CaptureBucket"))
    pointer, html = store.latest_report("demo", "html")
    assert pointer["verdict"] == "drift" and b"support_calls" in html

    again = loop_stack.run_schedule("DriftFunction").payload
    assert again["rows_counted"] == 0, "a re-run counts nothing twice"
