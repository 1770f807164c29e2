"""Issue 11 point 5 end to end on the local stack: a window of more capture objects than
DriftMaxObjectsPerRun becomes DriftStateMachine's Distributed Map, run by moto's interpreter with
its Lambda tasks in the real handlers (drift function → batch children → drift function's reduce).
Served rows over HTTP → Firehose objects → fan-out → one commit, the answer an in-process reading of
the same objects gives; a failing child fails the run without committing (moto's map says
SUCCEEDED anyway: the reduce checks the partials itself)."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import requests

from sklambda.lifecycle import training
from sklambda.monitoring.drift import DriftConfig, evaluate
from sklambda.monitoring.drift_job import DriftJob, RunSummary
from sklambda.monitoring.store import STATE_KEY, CaptureStore
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT, demo_rows, trained_demo

MAX_OBJECTS = 2


@pytest.fixture(scope="module")
def fan_stack(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("fanout") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-fanout-e2e",
        parameter_overrides={"DriftMinRows": "300", "DriftMaxObjectsPerRun": str(MAX_OBJECTS)},
        state_file=state,
        schedule_interval=0,
    ) as stack:
        s3 = boto3.client("s3", endpoint_url=stack.endpoint_url, region_name="us-east-1")
        registry = ModelRegistry(s3, stack.bucket("ModelBucket"))
        training.publish(registry, "demo", trained_demo())
        registry.promote("demo", "1")
        yield stack


def _send(api: str, rows: list[dict], batch: int = 50) -> None:
    for i in range(0, len(rows), batch):
        r = requests.post(f"{api}/predict", json={"instances": rows[i : i + batch]}, timeout=60)
        assert r.status_code == 200, r.text


def _state(stack: EmbeddedStack) -> dict:
    body = stack.client("s3").get_object(Bucket=stack.bucket("CaptureBucket"), Key=STATE_KEY)["Body"].read()
    return json.loads(body)


def _unread_keys(stack: EmbeddedStack) -> list[str]:
    store = CaptureStore(stack.client("s3"), stack.bucket("CaptureBucket"))
    now = datetime.now(UTC)
    processed = _state(stack).get("processed", {}) if _has_state(stack) else {}
    return sorted(k for k in store.list_capture_keys(now - timedelta(hours=48), now) if k not in processed)


def _has_state(stack: EmbeddedStack) -> bool:
    found = stack.client("s3").list_objects_v2(Bucket=stack.bucket("CaptureBucket"), Prefix=STATE_KEY)
    return bool(found.get("Contents"))


def _fan_out(stack: EmbeddedStack) -> tuple[dict, dict, float]:
    began = time.perf_counter()
    planned = stack.run_schedule("DriftFunction")
    assert planned.ok, planned
    fanout = planned.payload["fanout"]
    assert fanout and fanout["status"] == "started", planned.payload
    described = stack.wait_execution(fanout["execution"], timeout=300)
    return planned.payload, described, time.perf_counter() - began


def test_a_big_window_fans_out_over_moto_and_commits_the_answer_of_one_reading(fan_stack):
    _send(fan_stack.api_url, demo_rows(500, seed=61, drift=1.0))
    keys = _unread_keys(fan_stack)
    assert len(keys) > MAX_OBJECTS, "Firehose wrote more objects than one invocation may read"

    # What one invocation would count, read in-process from the same objects.
    s3 = fan_stack.client("s3")
    registry = ModelRegistry(s3, fan_stack.bucket("ModelBucket"))
    baseline = registry.get_json_artifact(registry.get_manifest("demo", "1"), "baseline.json")
    expected: dict = {}
    local = DriftJob(CaptureStore(s3, fan_stack.bucket("CaptureBucket")), lambda m, v: baseline, DriftConfig())
    counted = RunSummary(run_id="x", started_at="", window_start="", window_end="")
    local.read_keys(keys, expected, counted)

    planned, described, seconds = _fan_out(fan_stack)
    assert planned["objects_read"] == 0 and planned["fanout"]["batches"] == -(-len(keys) // MAX_OBJECTS)
    assert described["status"] == "SUCCEEDED", described
    reduced = json.loads(described["output"])
    assert reduced["fanout"]["status"] == "reduced" and reduced["run_id"] == planned["run_id"]
    assert reduced["objects_read"] == len(keys) and reduced["rows_counted"] == counted.rows_counted == 500
    (outcome,) = [m for m in reduced["models"] if m["model"] == "demo"]
    result = evaluate(baseline, expected[("demo", "1")].drift, DriftConfig(min_rows=300))
    assert outcome["verdict"] == result.verdict == "drift" and outcome["drift_score"] == result.drift_score
    report = json.loads(
        s3.get_object(Bucket=fan_stack.bucket("CaptureBucket"), Key=outcome["report"] + "report.json")["Body"].read()
    )
    assert report["run_id"] == planned["run_id"]

    state = _state(fan_stack)
    assert "fanout" not in state and state["last_run"] == planned["run_id"]
    assert set(keys) <= set(state["processed"]), "the watermark covers every object, committed once"
    again = fan_stack.run_schedule("DriftFunction").payload
    assert again["rows_counted"] == 0 and again["fanout"] is None, "nothing is read twice"
    print(f"\nfan-out of {len(keys)} objects ({planned['fanout']['batches']} batches): {seconds:.1f} s")


def test_a_failing_child_fails_the_run_and_commits_nothing(fan_stack):
    _send(fan_stack.api_url, demo_rows(200, seed=62))
    store_bucket = fan_stack.bucket("CaptureBucket")
    hour = datetime.now(UTC)
    corrupt = f"captures/{hour:%Y/%m/%d/%H}/zz-corrupt"
    fan_stack.client("s3").put_object(Bucket=store_bucket, Key=corrupt, Body=gzip.compress(b"{}\n" * 10)[:-12])
    keys = _unread_keys(fan_stack)
    before = _state(fan_stack)
    pointer_before = CaptureStore(fan_stack.client("s3"), store_bucket).latest_report("demo")

    planned, described, _ = _fan_out(fan_stack)
    assert described["status"] == "FAILED", described
    assert "MissingPartials" in (described.get("error") or "") + (described.get("cause") or "")
    state = _state(fan_stack)
    assert "fanout" not in state, "the lease was released"
    assert state["processed"] == before["processed"] and state.get("last_run") == before.get("last_run")
    assert CaptureStore(fan_stack.client("s3"), store_bucket).latest_report("demo") == pointer_before

    # Nothing was lost: without the corrupt object the next run counts every row.
    fan_stack.client("s3").delete_object(Bucket=store_bucket, Key=corrupt)
    planned, described, _ = _fan_out(fan_stack)
    assert described["status"] == "SUCCEEDED", described
    reduced = json.loads(described["output"])
    assert reduced["rows_counted"] == 200 and reduced["objects_read"] == len(keys) - 1
