"""The retrain steps against moto's S3 and CloudWatch: guard, assemble, train, evaluate, gate
inputs, publish (accepted and rejected), canary promote and rollback, abort."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from sklambda.core.errors import IntegrityError, RegistryError
from sklambda.lifecycle import demo, training
from sklambda.lifecycle.retrain import (
    RetrainConfig,
    RetrainError,
    RetrainPipeline,
    RetrainStore,
    version_metrics,
)
from sklambda.lifecycle.steps import (
    AbortInput,
    AcquireInput,
    CanaryCheckInput,
    CanaryStartInput,
    EvaluateInput,
    ObjectRef,
    PublishInput,
    ReleaseInput,
    StepTarget,
    TrainInput,
)
from sklambda.registry.store import ModelRegistry
from sklambda.serving.ids import PredictionIds
from tests.support.helpers import load_event, trained_demo

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


def acquire(execution: str, trigger: dict | None = None) -> AcquireInput:
    """The Guard task's input, as the ASL builds it (the execution's input is the trigger)."""
    return AcquireInput.model_validate({"action": "acquire", "execution": execution, "trigger": trigger or {}})


def target(execution: str) -> StepTarget:
    return StepTarget(model="demo", execution=execution)


def test_the_trigger_names_the_model():
    alarm = acquire("exec-t", load_event("drift_alarm.json")).trigger
    assert alarm.model == "churn" and alarm.detail.alarm_name == "sklambda-DriftAlarm"
    assert acquire("m", {"model": "x", "source": "sklambda retrain"}).trigger.model == "x"
    assert acquire("d", {}).trigger.model is None, "no model named: the guard retrains the default model"
    assert acquire("s", {"source": "aws.cloudwatch"}).trigger.model is None, "not an alarm event: a manual start"


def test_an_alarm_for_the_default_model_starts_its_retrain_and_records_the_trigger(world):
    event = load_event("drift_alarm.json")
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]["dimensions"]["model"] = "demo"
    guard = world["pipeline"]().guard(acquire("exec-alarm", event))
    assert guard.model == "demo" and guard.proceed
    assert guard.trigger.source == "aws.cloudwatch" and guard.trigger.alarm == "sklambda-DriftAlarm"
    dumped = guard.model_dump(mode="json", by_alias=True)
    assert dumped["trigger"]["detail-type"] == "CloudWatch Alarm State Change", "the ASL state keeps its shape"


def test_one_retrain_per_model_at_a_time(world, s3):
    first = world["pipeline"]().guard(acquire("exec-1", {"source": "aws.cloudwatch"}))
    second = world["pipeline"]().guard(acquire("exec-2", {"source": "manual"}))
    assert first.proceed is True and second.proceed is False and "exec-1" in second.reason
    skipped = s3.list_objects_v2(Bucket=world["bucket"], Prefix="state/retrain/demo/skipped/")["Contents"]
    assert len(skipped) == 1, "a second trigger is recorded, not started"
    assert world["pipeline"]().guard(acquire("exec-1")).proceed is True, "a retried guard of the same run"
    release = world["pipeline"]().release
    assert release(ReleaseInput(model="demo", execution="exec-2", action="release")).released is False, (
        "never another run's lock"
    )
    assert release(ReleaseInput(model="demo", execution="exec-1", action="release")).released is True
    assert world["pipeline"]().guard(acquire("exec-3")).proceed is True


def test_an_execution_without_a_name_gets_one_from_the_guard_for_every_later_step(world):
    """moto's interpreter passes a null $$.Execution.Name for an execution started without a name."""
    guard = world["pipeline"]().guard(
        AcquireInput.model_validate({"action": "acquire", "execution": None, "trigger": {}})
    )
    assert guard.proceed and guard.execution.startswith("unnamed-")
    assert world["pipeline"]().release(ReleaseInput(model="demo", execution=guard.execution, action="release")).released


def test_a_stale_lock_from_a_crashed_run_is_taken_over(world):
    world["pipeline"]().guard(acquire("crashed"))
    assert world["pipeline"](lock_ttl_seconds=0).guard(acquire("next")).proceed is True


def test_the_full_path_to_an_accepted_candidate(world):
    add_labelled_traffic(world, 400, drift=0.6)
    pipeline = world["pipeline"]()
    assembled = pipeline.assemble(target("exec-a"))
    assert assembled.labelled_rows == 400 and assembled.holdout_source == "newest labelled captures"
    assert assembled.holdout_rows == 80 and assembled.train_labelled_rows == 320
    trained = pipeline.train(TrainInput(model="demo", execution="exec-a", assembled=assembled))
    assert trained.train_rows == assembled.reference_rows + 320
    evaluation = pipeline.evaluate(
        EvaluateInput(model="demo", execution="exec-a", assembled=assembled, trained=trained)
    )
    assert evaluation.metric == "accuracy" and evaluation.holdout_rows == 80
    assert 0 <= evaluation.candidate_score <= 1 and evaluation.required_score == pytest.approx(
        evaluation.production_score - 0.01
    )

    published = pipeline.publish(
        PublishInput(
            model="demo", execution="exec-a", assembled=assembled, trained=trained, evaluation=evaluation, accepted=True
        )
    )
    manifest = world["registry"].get_manifest("demo", published.version)
    assert manifest.status == "candidate" and manifest.parent_version == "1"
    assert {"model.joblib", "baseline.json", "training.jsonl.gz"} <= set(manifest.artifacts)
    assert manifest.lean is not None and manifest.lean.accepted, "the one publish path converts retrained versions"
    assert manifest.lean.parity["rows"] == 80, "parity-checked on the retrain's holdout"
    assert manifest.metrics["production_on_same_holdout"] == evaluation.production_metrics
    assert world["registry"].get_alias("demo").record.version == "1", "publishing never moves production"


def test_a_rejected_candidate_is_kept_marked_rejected_with_the_reason(world):
    pipeline = world["pipeline"](floor=0.99)
    assembled = pipeline.assemble(target("exec-r"))
    assert "reference data" in assembled.holdout_source, "too few labels: holdout from the reference data"
    trained = pipeline.train(TrainInput(model="demo", execution="exec-r", assembled=assembled))
    evaluation = pipeline.evaluate(
        EvaluateInput(model="demo", execution="exec-r", assembled=assembled, trained=trained)
    )
    published = pipeline.publish(
        PublishInput(
            model="demo",
            execution="exec-r",
            assembled=assembled,
            trained=trained,
            evaluation=evaluation,
            accepted=False,
        )
    )
    manifest = world["registry"].get_manifest("demo", published.version)
    assert manifest.status == "rejected" and "below the floor 0.99" in manifest.status_reason
    assert published.status == "rejected" and published.reason == manifest.status_reason
    assert world["registry"].get_alias("demo").record.version == "1"


def _canary(world, errors: float):
    registry = world["registry"]
    training.publish(registry, "demo", trained_demo(seed=3))
    pipeline = world["pipeline"]()
    canary = pipeline.canary_start(CanaryStartInput(model="demo", execution="exec-c", action="start", version="2"))
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
    step = CanaryCheckInput(model="demo", execution="exec-c", action="check", canary=canary)
    return pipeline.canary_check(step, version_metrics(cloudwatch, namespace))


def test_a_healthy_canary_is_promoted(world):
    outcome = _canary(world, errors=0)
    assert outcome.outcome == "promoted" and outcome.observed["requests"] >= 1
    record = world["registry"].get_alias("demo").record
    assert record.version == "2" and record.canary is None


def test_a_canary_with_errors_is_rolled_back_and_production_keeps_serving(world):
    outcome = _canary(world, errors=3)
    assert outcome.outcome == "rolled_back" and "3 errors" in outcome.problems[0]
    record = world["registry"].get_alias("demo").record
    assert record.version == "1" and record.canary is None


def test_abort_removes_the_canary_and_releases_the_lock(world):
    registry = world["registry"]
    training.publish(registry, "demo", trained_demo(seed=4))
    pipeline = world["pipeline"]()
    guard = pipeline.guard(acquire("exec-x"))
    pipeline.canary_start(CanaryStartInput(model="demo", execution="exec-x", action="start", version="2"))
    # The Abort task gets the whole execution state: the trigger's own fields, each step's output, the error.
    state = {
        "model": "demo",
        "guard": guard.model_dump(mode="json", by_alias=True),
        "published": {"version": "2", "status": "candidate", "reason": None},
        "error": {"Error": "States.TaskFailed", "Cause": "boom"},
    }
    result = pipeline.abort(AbortInput.model_validate({"action": "abort", "state": state}))
    assert (result.serving, result.released, result.error.error) == ("1", True, "States.TaskFailed")
    assert registry.get_alias("demo").record.canary is None


def test_a_failing_step_leaves_production_untouched(world, s3, bucket):
    s3.delete_object(Bucket=bucket, Key="models/demo/versions/1/training.jsonl.gz")
    pipeline = world["pipeline"]()
    with pytest.raises(RegistryError, match="training.jsonl.gz"):
        pipeline.assemble(target("exec-f"))
    assert world["registry"].get_alias("demo").record.version == "1"
    with pytest.raises(RetrainError, match="retrain/ prefix"):
        world["store"].get(ObjectRef(bucket=world["bucket"], key="models/x", sha256="0" * 64, bytes=0))


def test_training_data_that_does_not_match_its_manifest_is_refused(world, s3, bucket):
    """The retrain reads production's training rows through the registry's one verified fetch."""
    s3.put_object(Bucket=bucket, Key="models/demo/versions/1/training.jsonl.gz", Body=b"tampered")
    with pytest.raises(IntegrityError, match="training.jsonl.gz does not match its manifest"):
        world["pipeline"]().assemble(target("exec-i"))


def _regression_world(world):
    """A regressor `houses` v1 in production and a candidate v2, both published through the one path."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    from sklambda.lifecycle.publish import publish_version
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(features=[FeatureSpec(name="rooms", type="number"), FeatureSpec(name="area", type="number")])
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 100, size=(300, 2))
    y = 3 * x[:, 0] + x[:, 1]
    for seed in (0, 1):
        model = RandomForestRegressor(n_estimators=5, random_state=seed).fit(x, y)
        publish_version(world["registry"], "houses", model, schema, "regression", holdout_x=x[:50], holdout_y=y[:50])
    world["registry"].promote("houses", "1")


def _labelled_regression_traffic(world, version: str, error: float, n: int = 60) -> None:
    hour = NOW - timedelta(minutes=30)
    base = uuid.uuid4().hex
    truth = [100.0 + 7.3 * i for i in range(n)]
    captures = [
        json.dumps(
            {
                "captured_at": (hour + timedelta(seconds=i)).isoformat(),
                "prediction_id": f"{base}-{i}",
                "model": "houses",
                "version": version,
                "features": {"rooms": 3.0, "area": 50.0},
                "prediction": truth[i] + (error if i % 2 else -error),
            }
        )
        for i in range(n)
    ]
    labels = [
        json.dumps({"prediction_id": f"{base}-{i}", "model": "houses", "version": version, "label": truth[i]})
        for i in range(n)
    ]
    partition = f"{hour:%Y/%m/%d/%H}"
    world["s3"].put_object(Bucket=world["bucket"], Key=f"captures/{partition}/c-{base}", Body="\n".join(captures))
    world["s3"].put_object(Bucket=world["bucket"], Key=f"feedback/{partition}/f-{base}", Body="\n".join(labels))


@pytest.mark.parametrize(
    ("candidate_error", "expected"),
    [(40.0, "rolled_back"), (1.0, "promoted")],
    ids=["worse-rmse-rolled-back", "better-rmse-promoted"],
)
def test_a_regressor_canary_is_judged_on_live_rmse_lower_is_better(world, candidate_error, expected):
    """Regression predictions never equal their labels exactly: the canary compares live RMSE (lower is
    better), not exact float equality (which scored both versions 0 and promoted any candidate)."""
    _regression_world(world)
    _labelled_regression_traffic(world, "1", error=2.0)
    _labelled_regression_traffic(world, "2", error=candidate_error)
    pipeline = world["pipeline"]()
    canary = pipeline.canary_start(CanaryStartInput(model="houses", execution="exec-h", action="start", version="2"))
    step = CanaryCheckInput(model="houses", execution="exec-h", action="check", canary=canary)
    healthy = {"requests": 10.0, "max_latency_ms": 5.0}
    outcome = pipeline.canary_check(step, lambda **_: healthy)

    quality = outcome.live_quality
    assert quality["production"].metric == "rmse" and quality["production"].value == pytest.approx(2.0)
    assert quality["candidate"].value == pytest.approx(candidate_error) and quality["candidate"].rows == 60
    assert outcome.outcome == expected, outcome.problems
    record = world["registry"].get_alias("houses").record
    assert record.canary is None and record.version == ("1" if expected == "rolled_back" else "2")
    if expected == "rolled_back":
        assert outcome.problems == [f"live rmse {candidate_error:.3f} is worse than production's 2.000"]
