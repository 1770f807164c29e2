"""The retrain steps against moto's S3 and CloudWatch: guard, assemble, train, evaluate, gate
inputs, publish (accepted and rejected), canary promote and rollback, abort."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from sklambda.core.errors import RegistryError
from sklambda.lifecycle import demo, training
from sklambda.lifecycle.retrain import (
    RetrainConfig,
    RetrainError,
    RetrainPipeline,
    RetrainStore,
    model_from_trigger,
    version_metrics,
)
from sklambda.registry.store import ModelRegistry
from sklambda.serving.ids import PredictionIds
from tests.support.helpers import trained_demo

NOW = datetime.now(UTC)
IDS = PredictionIds("k")


@pytest.fixture
def world(s3, bucket):
    registry = ModelRegistry(s3, bucket)
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    captures = f"{bucket}-cap"
    s3.create_bucket(Bucket=captures)
    store = RetrainStore(s3, captures)

    def pipeline(**overrides) -> RetrainPipeline:
        config = RetrainConfig(**{"min_labelled_rows": 100, "floor": 0.5, **overrides})
        return RetrainPipeline(registry, store, config, alias="production", clock=lambda: NOW)

    return {"registry": registry, "store": store, "pipeline": pipeline, "bucket": captures, "s3": s3}


def add_labelled_traffic(world, n: int, *, drift: float, version: str = "1", seed: int = 5) -> None:
    """Captured rows plus feedback labels, as Firehose would write them (hour partitions)."""
    columns, y = demo.generate(n, seed=seed, drift=drift)
    rows = demo.to_instances(columns)
    base = uuid.uuid4().hex
    ids = IDS.issue("demo", version, base, n)
    hour = NOW - timedelta(hours=1)
    captured = [
        json.dumps(
            {
                "captured_at": (hour + timedelta(seconds=i)).isoformat(),
                "prediction_id": ids[i],
                "model": "demo",
                "version": version,
                "features": rows[i],
                "prediction": int(y[i] if i % 3 else 1 - y[i]),
            }
        )
        for i in range(n)
    ]
    labels = [
        json.dumps({"prediction_id": ids[i], "model": "demo", "version": version, "label": int(y[i])}) for i in range(n)
    ]
    partition = f"{hour:%Y/%m/%d/%H}"
    world["s3"].put_object(Bucket=world["bucket"], Key=f"captures/{partition}/c-{base}", Body="\n".join(captured))
    world["s3"].put_object(Bucket=world["bucket"], Key=f"feedback/{partition}/f-{base}", Body="\n".join(labels))


def test_the_trigger_names_the_model():
    alarm = {
        "source": "aws.cloudwatch",
        "detail": {
            "configuration": {
                "metrics": [{"metricStat": {"metric": {"dimensions": {"service": "drift", "model": "churn"}}}}]
            }
        },
    }
    assert model_from_trigger(alarm, "demo") == "churn"
    assert model_from_trigger({"model": "x"}, "demo") == "x"
    assert model_from_trigger({}, "demo") == "demo"


def test_one_retrain_per_model_at_a_time(world, s3):
    first = world["pipeline"]().guard({"source": "aws.cloudwatch"}, "exec-1", "demo")
    second = world["pipeline"]().guard({"source": "manual"}, "exec-2", "demo")
    assert first["proceed"] is True and second["proceed"] is False and "exec-1" in second["reason"]
    skipped = s3.list_objects_v2(Bucket=world["bucket"], Prefix="state/retrain/demo/skipped/")["Contents"]
    assert len(skipped) == 1, "a second trigger is recorded, not started"
    assert world["pipeline"]().guard({}, "exec-1", "demo")["proceed"] is True, "a retried guard of the same run"
    assert world["pipeline"]().release("demo", "exec-2") == {"released": False}, "never another run's lock"
    assert world["pipeline"]().release("demo", "exec-1") == {"released": True}
    assert world["pipeline"]().guard({}, "exec-3", "demo")["proceed"] is True


def test_a_stale_lock_from_a_crashed_run_is_taken_over(world):
    world["pipeline"]().guard({}, "crashed", "demo")
    assert world["pipeline"](lock_ttl_seconds=0).guard({}, "next", "demo")["proceed"] is True


def test_the_full_path_to_an_accepted_candidate(world):
    add_labelled_traffic(world, 400, drift=0.6)
    pipeline = world["pipeline"]()
    assembled = pipeline.assemble("demo", "exec-a")
    assert assembled["labelled_rows"] == 400 and assembled["holdout_source"] == "newest labelled captures"
    assert assembled["holdout_rows"] == 80 and assembled["train_labelled_rows"] == 320
    trained = pipeline.train("demo", "exec-a", assembled)
    assert trained["train_rows"] == assembled["reference_rows"] + 320
    evaluation = pipeline.evaluate("demo", assembled, trained)
    assert evaluation["metric"] == "accuracy" and evaluation["holdout_rows"] == 80
    assert 0 <= evaluation["candidate_score"] <= 1 and evaluation["required_score"] == pytest.approx(
        evaluation["production_score"] - 0.01
    )

    published = pipeline.publish("demo", "exec-a", assembled, trained, evaluation, accepted=True)
    manifest = world["registry"].get_manifest("demo", published["version"])
    assert manifest.status == "candidate" and manifest.parent_version == "1"
    assert {"model.joblib", "baseline.json", "training.jsonl.gz"} <= set(manifest.artifacts)
    assert world["registry"].get_alias("demo").record.version == "1", "publishing never moves production"


def test_a_rejected_candidate_is_kept_marked_rejected_with_the_reason(world):
    pipeline = world["pipeline"](floor=0.99)
    assembled = pipeline.assemble("demo", "exec-r")
    assert "reference data" in assembled["holdout_source"], "too few labels: holdout from the reference data"
    trained = pipeline.train("demo", "exec-r", assembled)
    evaluation = pipeline.evaluate("demo", assembled, trained)
    published = pipeline.publish("demo", "exec-r", assembled, trained, evaluation, accepted=False)
    manifest = world["registry"].get_manifest("demo", published["version"])
    assert manifest.status == "rejected" and "below the floor 0.99" in manifest.status_reason
    assert world["registry"].get_alias("demo").record.version == "1"


def _canary(world, errors: float):
    registry = world["registry"]
    training.publish(registry, "demo", trained_demo(seed=3))
    pipeline = world["pipeline"]()
    canary = pipeline.canary_start("demo", "2")
    assert registry.get_alias("demo").record.canary.version == "2"
    cloudwatch = boto3.client("cloudwatch", endpoint_url=world["s3"].meta.endpoint_url, region_name="us-east-1")
    dims = [
        {"Name": "model", "Value": "demo"},
        {"Name": "model_version", "Value": "2"},
        {"Name": "service", "Value": "predict"},
    ]
    data = [
        {"MetricName": "Predictions", "Dimensions": dims, "Value": 5, "Unit": "Count"},
        {"MetricName": "PredictLatency", "Dimensions": dims, "Value": 12.5, "Unit": "Milliseconds"},
    ]
    if errors:
        data.append({"MetricName": "PredictErrors", "Dimensions": dims, "Value": errors, "Unit": "Count"})
    namespace = f"sk-{uuid.uuid4().hex[:6]}"  # isolated from other tests' metrics
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    return pipeline.canary_check("demo", canary, version_metrics(cloudwatch, namespace))


def test_a_healthy_canary_is_promoted(world):
    outcome = _canary(world, errors=0)
    assert outcome["outcome"] == "promoted" and outcome["observed"]["requests"] >= 1
    record = world["registry"].get_alias("demo").record
    assert record.version == "2" and record.canary is None


def test_a_canary_with_errors_is_rolled_back_and_production_keeps_serving(world):
    outcome = _canary(world, errors=3)
    assert outcome["outcome"] == "rolled_back" and "3 errors" in outcome["problems"][0]
    record = world["registry"].get_alias("demo").record
    assert record.version == "1" and record.canary is None


def test_abort_removes_the_canary_and_releases_the_lock(world):
    registry = world["registry"]
    training.publish(registry, "demo", trained_demo(seed=4))
    pipeline = world["pipeline"]()
    pipeline.guard({}, "exec-x", "demo")
    pipeline.canary_start("demo", "2")
    result = pipeline.abort("demo", "exec-x", "2")
    assert result == {"serving": "1", "released": True}
    assert registry.get_alias("demo").record.canary is None


def test_a_failing_step_leaves_production_untouched(world, s3, bucket):
    s3.delete_object(Bucket=bucket, Key="models/demo/versions/1/training.jsonl.gz")
    pipeline = world["pipeline"]()
    with pytest.raises(RegistryError, match="training.jsonl.gz"):
        pipeline.assemble("demo", "exec-f")
    assert world["registry"].get_alias("demo").record.version == "1"
    with pytest.raises(RetrainError, match="retrain/ prefix"):
        world["store"].get({"bucket": world["bucket"], "key": "models/x", "sha256": "0" * 64})
