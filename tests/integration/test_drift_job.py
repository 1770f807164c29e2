"""The drift job against moto's S3: verdicts, exactly-once watermark, late objects, bad records."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from sklambda.lifecycle import demo, training
from sklambda.monitoring.drift import DriftConfig
from sklambda.monitoring.drift_job import ConcurrentRun, DriftJob
from sklambda.monitoring.store import STATE_KEY, CaptureStore
from sklambda.registry.store import ModelRegistry
from tests.support.helpers import trained_demo

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


def capture_lines(n: int, *, drift: float, seed: int, model: str = "demo", version: str = "1") -> list[bytes]:
    columns, _ = demo.generate(n, seed=seed, drift=drift)
    rows = demo.to_instances(columns)
    return [
        json.dumps(
            {
                "captured_at": "x",
                "prediction_id": f"{seed}-{i}",
                "model": model,
                "version": version,
                "features": r,
                "prediction": 0,
            }
        ).encode()
        for i, r in enumerate(rows)
    ]


def put_capture(s3, bucket: str, hour: datetime, lines: list[bytes], *, gz: bool = False) -> str:
    key = f"captures/{hour:%Y/%m/%d/%H}/sklambda-capture-1-{hour:%Y-%m-%d-%H}-{uuid.uuid4()}"
    body = b"\n".join(lines) + b"\n"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if gz else body)
    return key


@pytest.fixture
def setup(s3, bucket):
    """Models in `bucket`; captures in a second bucket (as in the template)."""
    registry = ModelRegistry(s3, bucket)
    training.publish(registry, "demo", trained_demo())
    capture_bucket = f"{bucket}-cap"
    s3.create_bucket(Bucket=capture_bucket)
    s3.put_bucket_versioning(Bucket=capture_bucket, VersioningConfiguration={"Status": "Enabled"})
    store = CaptureStore(s3, capture_bucket)

    def lookup(model, version):
        try:
            m = registry.get_manifest(model, version)
        except Exception:
            return None
        return registry.get_json_artifact(m, "baseline.json")

    clock = {"now": NOW}

    def make_job(min_rows: int = 500) -> DriftJob:
        return DriftJob(store, lookup, DriftConfig(min_rows=min_rows), lookback_hours=48, clock=lambda: clock["now"])

    return {"store": store, "bucket": capture_bucket, "job": make_job, "clock": clock, "registry": registry}


def test_publish_writes_a_small_baseline_with_the_version(setup):
    manifest = setup["registry"].get_manifest("demo", "1")
    assert "baseline.json" in manifest.artifacts
    assert manifest.artifacts["baseline.json"].bytes < 40_000


def test_drifted_traffic_is_flagged_and_reported(setup, s3):
    put_capture(s3, setup["bucket"], NOW - timedelta(hours=1), capture_lines(3000, drift=1.0, seed=1), gz=True)
    summary = setup["job"]().run()

    (outcome,) = summary.outcomes
    assert outcome.status == "evaluated" and outcome.rows == 3000
    assert outcome.result.verdict == "drift" and outcome.result.drift_score >= 0.3
    assert {"support_calls", "channel", "satisfaction"} <= set(outcome.result.drifted)
    assert "region" not in outcome.result.drifted and "payment_method" not in outcome.result.drifted
    report = json.loads(s3.get_object(Bucket=setup["bucket"], Key=outcome.report_prefix + "report.json")["Body"].read())
    assert report["model"] == "demo" and report["version"] == "1"
    html = s3.get_object(Bucket=setup["bucket"], Key=outcome.report_prefix + "report.html")["Body"].read().decode()
    assert "support_calls" in html and "<svg" in html
    pointer, _ = setup["store"].latest_report("demo")
    assert pointer["run_id"] == summary.run_id and pointer["verdict"] == "drift"


def test_undrifted_traffic_is_not_flagged(setup, s3):
    put_capture(s3, setup["bucket"], NOW - timedelta(hours=2), capture_lines(3000, drift=0.0, seed=2))
    (outcome,) = setup["job"]().run().outcomes
    assert outcome.result.verdict == "ok" and outcome.result.drifted == []


def test_reruns_never_count_a_record_twice_and_late_objects_are_read_once(setup, s3):
    hour = NOW - timedelta(hours=3)
    put_capture(s3, setup["bucket"], hour, capture_lines(600, drift=0.0, seed=3))
    first = setup["job"]().run()
    assert first.rows_counted == 600 and first.objects_read == 1

    again = setup["job"]().run()
    assert again.rows_counted == 0 and again.objects_read == 0 and again.outcomes == []

    # A late delivery lands in the hour already processed, and a new hour appears.
    put_capture(s3, setup["bucket"], hour, capture_lines(300, drift=0.0, seed=4))
    put_capture(s3, setup["bucket"], NOW, capture_lines(250, drift=0.0, seed=5))
    late = setup["job"]().run()
    assert late.objects_read == 2 and late.rows_counted == 550
    assert setup["job"]().run().rows_counted == 0


def test_rows_below_the_minimum_wait_for_more_data_then_are_judged_together(setup, s3):
    put_capture(s3, setup["bucket"], NOW - timedelta(hours=1), capture_lines(300, drift=1.0, seed=6))
    (pending,) = setup["job"]().run().outcomes
    assert pending.status == "pending" and pending.result is None

    put_capture(s3, setup["bucket"], NOW, capture_lines(300, drift=1.0, seed=7))
    (judged,) = setup["job"]().run().outcomes
    assert judged.status == "evaluated" and judged.rows == 600 and judged.result.verdict == "drift"


def test_bad_capture_records_are_skipped_and_counted(setup, s3):
    good = capture_lines(600, drift=0.0, seed=8)
    bad = [
        b"{not json",
        b"[1,2]",
        json.dumps({"model": "demo", "features": {}}).encode(),
        json.dumps({"model": "demo", "version": "1", "features": "x"}).encode(),
        json.dumps({"model": "ghost", "version": "1", "features": {"a": 1}}).encode(),
        json.dumps({"model": "../../x", "version": "1", "features": {"a": 1}}).encode(),
        json.dumps(
            {"model": "demo", "version": "1", "features": {**json.loads(good[0])["features"], "age": "old", "extra": 1}}
        ).encode(),
    ]
    put_capture(s3, setup["bucket"], NOW, good + bad)
    summary = setup["job"]().run()
    assert summary.bad_lines == {
        "malformed_json": 1,
        "not_an_object": 1,
        "missing_model_or_version": 1,
        "missing_features": 1,
    }
    assert sum(summary.skipped_rows.values()) == 2
    (outcome,) = summary.outcomes
    assert outcome.rows == 601
    age = next(f for f in outcome.result.features if f.name == "age")
    assert age.current_invalid == 1 and outcome.result.unknown_fields_total == 1


def test_objects_older_than_the_lookback_are_out_of_the_window(setup, s3):
    put_capture(s3, setup["bucket"], NOW - timedelta(hours=60), capture_lines(600, drift=0.0, seed=9))
    assert setup["job"]().run().objects_read == 0


def test_processed_keys_are_pruned_after_the_window(setup, s3):
    put_capture(s3, setup["bucket"], NOW - timedelta(hours=1), capture_lines(10, drift=0.0, seed=10))
    setup["job"]().run()
    setup["clock"]["now"] = NOW + timedelta(hours=72)
    setup["job"]().run()
    state = json.loads(s3.get_object(Bucket=setup["bucket"], Key=STATE_KEY)["Body"].read())
    assert state["processed"] == {}


def test_overlapping_runs_commit_once_and_the_loser_publishes_nothing(setup, s3):
    put_capture(s3, setup["bucket"], NOW, capture_lines(800, drift=1.0, seed=11))
    published: list[str] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(2)
    original_save = setup["store"].save_state

    def slow_save(state, etag):
        barrier.wait(timeout=30)  # both runs have read the same state before either commits
        return original_save(state, etag)

    setup["store"].save_state = slow_save

    def run() -> None:
        try:
            setup["job"]().run(publish=lambda s: published.append(s.run_id))
        except ConcurrentRun as err:
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(published) == 1 and len(errors) == 1
    setup["store"].save_state = original_save
    assert setup["job"]().run().rows_counted == 0
