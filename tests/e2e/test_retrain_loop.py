"""Issue 4 end to end, locally and over HTTP: drifted traffic and labels → drift run → DriftAlarm
(evaluated by the local stack) → EventBridge rule → the real retrain ASL in moto's Step Functions,
its Lambda tasks reaching the real handlers → gate → canary → the promoted version answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import boto3
import pytest
import requests

from sklambda.lifecycle import demo, training
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT, trained_demo
from tests.support.wait import wait_for

LOOP_PARAMETERS = {
    "DriftMinRows": "300",
    "AliasCheckSeconds": "1",
    "CanaryWaitSeconds": "3",
    "CanaryWeight": "0.5",
    "RetrainMinLabelledRows": "100",
    "RetrainFloor": "0.5",
    "RetrainMargin": "0.05",
}


@pytest.fixture(scope="module")
def loop(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("loop") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-loop-e2e",
        parameter_overrides=LOOP_PARAMETERS,
        state_file=state,
        schedule_interval=0,
        alarm_interval=0,
    ) as stack:
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo())
        registry.promote("demo", "1")
        yield stack


def _served_version(api: str, row: dict) -> str:
    return requests.post(f"{api}/predict", json={"instances": [row]}, timeout=60).json()["model"]["version"]


def test_drift_alarm_retrains_gates_canaries_and_promotes(loop):
    api = loop.api_url
    started = time.monotonic()
    columns, truth = demo.generate(800, seed=41, drift=1.0)
    rows = demo.to_instances(columns)
    labels = []
    for i in range(0, len(rows), 50):
        answer = requests.post(f"{api}/predict", json={"instances": rows[i : i + 50]}, timeout=60)
        assert answer.status_code == 200, answer.text
        labels += [
            {"prediction_id": pid, "label": int(truth[i + j])} for j, pid in enumerate(answer.json()["prediction_ids"])
        ]
    for i in range(0, len(labels), 200):
        stored = requests.post(f"{api}/feedback", json={"feedback": labels[i : i + 200]}, timeout=60)
        assert stored.status_code == 202, stored.text

    drift = loop.run_schedule("DriftFunction")
    assert drift.ok and drift.payload["models"][0]["verdict"] == "drift", drift
    assert loop.flush_metrics()
    transitions = loop.evaluate_alarms()
    assert any(t["alarm"].endswith("DriftAlarm") and t["state"] == "ALARM" for t in transitions), transitions

    sfn = loop.client("stepfunctions")
    arn = loop.state_machine_arn("RetrainStateMachine")
    executions = wait_for(
        lambda: sfn.list_executions(stateMachineArn=arn)["executions"],
        timeout=120,
        interval=0.5,
        message="the retrain the alarm starts",
    )
    assert len(executions) == 1, "the alarm started exactly one retrain"
    described = loop.wait_execution(executions[0]["executionArn"], timeout=600)
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["guard"]["model"] == "demo" and output["assembled"]["labelled_rows"] >= 700
    assert output["published"]["status"] == "candidate", output["evaluation"]
    assert output["outcome"]["outcome"] == "promoted", output["outcome"]
    new_version = output["published"]["version"]

    wait_for(
        lambda: _served_version(api, rows[0]) == new_version,
        timeout=60,
        interval=0.5,
        message=f"v{new_version} served after the retrain",
    )
    assert _served_version(api, rows[0]) == new_version
    elapsed = time.monotonic() - started
    print(f"\nlocal loop: first drifted request → v{new_version} serving in {elapsed:.1f} s")

    registry = ModelRegistry(loop.client("s3"), loop.bucket("ModelBucket"))
    manifest = registry.get_manifest("demo", new_version)
    assert manifest.parent_version == "1" and "baseline.json" in manifest.artifacts
    history = registry.get_alias("demo").record.history
    assert [e.action for e in history[-2:]] == ["canary", "promote"]


def test_a_manual_retrain_while_one_runs_is_recorded_not_started(loop):
    sfn = loop.client("stepfunctions")
    arn = loop.state_machine_arn("RetrainStateMachine")
    store = loop.client("s3")
    bucket = loop.bucket("CaptureBucket")
    store.put_object(
        Bucket=bucket,
        Key="state/retrain/demo.lock.json",
        Body=json.dumps({"execution": "someone-else", "epoch": time.time()}).encode(),
    )
    try:
        started = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"model": "demo"}))
        described = loop.wait_execution(started["executionArn"], timeout=120)
        output = json.loads(described["output"])
        assert described["status"] == "SUCCEEDED" and output["guard"]["proceed"] is False
        assert "someone-else" in output["guard"]["reason"]
        skipped = store.list_objects_v2(Bucket=bucket, Prefix="state/retrain/demo/skipped/").get("Contents", [])
        assert skipped
    finally:
        store.delete_object(Bucket=bucket, Key="state/retrain/demo.lock.json")


def test_a_retrain_step_crashing_midway_leaves_production_untouched(loop):
    """Assemble fails (the production version's training rows are gone): the execution fails
    through the abort step, production still answers with the same version, the lock is free."""
    s3 = loop.client("s3")
    registry = ModelRegistry(s3, loop.bucket("ModelBucket"))
    before = registry.get_alias("demo").record.version
    key = f"models/demo/versions/{before}/training.jsonl.gz"
    saved = s3.get_object(Bucket=loop.bucket("ModelBucket"), Key=key)["Body"].read()
    s3.delete_object(Bucket=loop.bucket("ModelBucket"), Key=key)
    try:
        arn = loop.start_execution("RetrainStateMachine", {"model": "demo", "source": "test"})
        described = loop.wait_execution(arn, timeout=300)
    finally:
        s3.put_object(Bucket=loop.bucket("ModelBucket"), Key=key, Body=saved)
    assert described["status"] == "FAILED", described
    history = loop.client("stepfunctions").get_execution_history(executionArn=arn)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert entered[:3] == ["Guard", "AlreadyRunning?", "Assemble"]
    assert "Abort" in entered and "NotifyFailure" in entered and "Train" not in entered
    record = registry.get_alias("demo").record
    assert record.version == before and record.canary is None
    locks = s3.list_objects_v2(Bucket=loop.bucket("CaptureBucket"), Prefix="state/retrain/demo.lock").get("Contents")
    assert not locks, "the abort step released the lock"
    row = demo.to_instances(demo.generate(1, seed=1)[0])[0]
    assert _served_version(loop.api_url, row) == before
