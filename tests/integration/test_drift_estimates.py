"""The label-free estimate and multivariate drift through the registry and the drift job, against
moto's S3: publish writes calibration.json and multivariate.json (listed in the manifest, verified
on read), the job counts served scores and reconstruction errors per version, a fan-out run gives
the same answer as one invocation, the handler emits the metrics, and a version published before
these artifacts existed keeps working and its report says what it lacks."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from sklambda.core.errors import IntegrityError
from sklambda.lifecycle import demo, training
from sklambda.monitoring.drift import DriftConfig
from sklambda.monitoring.drift_job import DriftJob, read_batch
from sklambda.monitoring.fanout import BatchRequest, Fanout, FanoutRun, FanoutStore
from sklambda.monitoring.store import CaptureStore
from sklambda.monitoring.window import NO_CALIBRATION, RegistryReferences
from sklambda.registry.store import ModelRegistry
from tests.support.helpers import ROOT, FakeLambdaContext, load_event, trained_demo

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


@pytest.fixture
def world(s3, bucket):
    registry = ModelRegistry(s3, bucket)
    trained = trained_demo()
    manifest = training.publish(registry, "demo", trained)
    captures = f"{bucket}-cap-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=captures)
    s3.put_bucket_versioning(Bucket=captures, VersioningConfiguration={"Status": "Enabled"})
    return {"s3": s3, "registry": registry, "trained": trained, "manifest": manifest, "captures": captures}


def served_lines(model, n: int, *, seed: int, drift: float, version: str = "1") -> tuple[list[bytes], float]:
    """Capture lines as the predict function writes them (probabilities included), and the realised
    accuracy of those predictions against the rows' true labels."""
    columns, y = demo.generate(n, seed=seed, drift=drift)
    proba = model.predict_proba(demo.to_matrix(columns))
    predicted = model.classes_[np.argmax(proba, axis=1)]
    lines = [
        json.dumps(
            {
                "captured_at": "2026-11-23T11:00:00.000Z",
                "prediction_id": f"{seed}-{i}",
                "model": "demo",
                "version": version,
                "features": row,
                "prediction": int(predicted[i]),
                "probabilities": proba[i].tolist(),
            }
        ).encode()
        for i, row in enumerate(demo.to_instances(columns))
    ]
    return lines, float(np.mean(predicted == y))


def put(world, lines: list[bytes], hour: datetime, name: str | None = None) -> None:
    key = f"captures/{hour:%Y/%m/%d/%H}/{name or uuid.uuid4().hex}"
    world["s3"].put_object(Bucket=world["captures"], Key=key, Body=b"\n".join(lines) + b"\n")


def job(world, *, references: bool = True, fanout: Fanout | None = None, bucket: str | None = None) -> DriftJob:
    refs = RegistryReferences(world["registry"])
    return DriftJob(
        CaptureStore(world["s3"], bucket or world["captures"]),
        refs.baseline,
        DriftConfig(),
        references=refs if references else None,
        clock=lambda: NOW,
        fanout=fanout,
    )


def report(world, prefix: str, bucket: str | None = None) -> tuple[dict, str]:
    s3, bucket = world["s3"], bucket or world["captures"]
    data = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "report.json")["Body"].read())
    html = s3.get_object(Bucket=bucket, Key=prefix + "report.html")["Body"].read().decode()
    return data, html


def test_publish_lists_the_artifacts_and_reads_verify_them(world):
    manifest, registry = world["manifest"], world["registry"]
    assert {"baseline.json", "calibration.json", "multivariate.json"} <= set(manifest.artifacts)
    calibration = registry.get_json_artifact(manifest, "calibration.json")
    assert calibration["mode"] == "binary" and calibration["rows"] == manifest.metrics["holdout_rows"]
    assert calibration["reference"]["realised"]["accuracy"] == pytest.approx(manifest.metrics["holdout"]["accuracy"])
    assert (
        manifest.artifacts["calibration.json"].bytes < 20_000 and manifest.artifacts["multivariate.json"].bytes < 40_000
    )
    # Tampered after publishing: refused on read, and the drift job gets a reason, never a wrong estimate.
    world["s3"].put_object(Bucket=registry.bucket, Key="models/demo/versions/1/calibration.json", Body=b'{"kind": 1}')
    with pytest.raises(IntegrityError):
        registry.get_json_artifact(manifest, "calibration.json")
    refs = RegistryReferences(registry)("demo", "1")
    assert refs.calibration is None and refs.multivariate is not None
    assert refs.missing["performance"].startswith("calibration.json could not be used")


def test_the_job_estimates_accuracy_from_served_probabilities(world):
    model = world["trained"].estimator
    lines, realised = served_lines(model, 4_000, seed=1, drift=0.0)
    put(world, lines, NOW - timedelta(hours=1))
    (outcome,) = job(world).run().outcomes
    performance = outcome.performance
    assert performance.status == "estimated" and performance.rows == 4_000
    # A small forest on 2,400 rows, calibrated on 600 held-out rows: within a few points.
    assert performance.estimated["accuracy"] == pytest.approx(realised, abs=0.04)
    assert outcome.multivariate.status == "evaluated" and outcome.multivariate.verdict == "ok"
    data, html = report(world, outcome.report_prefix)
    assert data["performance"]["estimated"] == performance.estimated
    assert "Estimated performance (no labels)" in html and "Multivariate drift" in html


def test_the_estimate_survives_the_pending_state_and_a_fan_out(world):
    """Rows below the minimum wait in the state (as a window, with their scores); a fan-out run over
    several objects gives the same window as one invocation."""
    model = world["trained"].estimator
    small, _ = served_lines(model, 300, seed=2, drift=0.5)
    put(world, small, NOW - timedelta(hours=3), "a")
    first = job(world).run()
    assert first.outcomes[0].status == "pending"
    objects = [served_lines(model, 400, seed=10 + i, drift=0.5)[0] for i in range(4)]
    for i, lines in enumerate(objects):
        put(world, lines, NOW - timedelta(hours=2), f"b{i}")
    single = job(world).run()
    (outcome,) = single.outcomes
    assert outcome.performance.rows == 1_900

    # The same objects, fanned out over children that each read one object, then reduced.
    other = f"{world['captures']}-fan"
    world["s3"].create_bucket(Bucket=other)
    world["s3"].put_bucket_versioning(Bucket=other, VersioningConfiguration={"Status": "Enabled"})
    for name, lines, hour in [("a", small, 3)] + [(f"b{i}", lines, 2) for i, lines in enumerate(objects)]:
        key = f"captures/{NOW - timedelta(hours=hour):%Y/%m/%d/%H}/{name}"
        world["s3"].put_object(Bucket=other, Key=key, Body=b"\n".join(lines) + b"\n")
    started: list[FanoutRun] = []
    fanout = Fanout(
        FanoutStore(world["s3"], other),
        max_objects=1,
        start=lambda name, run: started.append(FanoutRun.model_validate_json(run.model_dump_json())) or name,
        status=lambda name: "RUNNING",
    )
    assert job(world, fanout=fanout, bucket=other).run().fanout["status"] == "started"
    (run,) = started
    items = json.loads(world["s3"].get_object(Bucket=other, Key=run.batches_key)["Body"].read())
    for item in items:
        child = job(world, bucket=other)  # a fresh process: its own reader and caches
        fanout.store.write_partial(
            read_batch(child, BatchRequest.model_validate({"run_id": run.run_id, "batch": item}))
        )
    (reduced,) = job(world, fanout=fanout, bucket=other).run(resume=run).outcomes
    assert reduced.rows == outcome.rows == 1_900
    assert reduced.performance == outcome.performance
    assert reduced.multivariate == outcome.multivariate
    assert reduced.result == outcome.result


def test_a_version_published_before_the_artifacts_existed_keeps_working(world):
    registry, manifest = world["registry"], world["manifest"]
    old = {
        f: registry.get_artifact(manifest, f)
        for f in manifest.artifacts
        if f not in ("calibration.json", "multivariate.json")
    }
    fields = manifest.model_dump(exclude={"name", "version", "created_at", "artifacts"})
    runtimes = {f: ref.runtime for f, ref in manifest.artifacts.items() if ref.runtime}
    legacy = registry.publish_version(name="demo", artifacts=old, manifest_fields=fields, runtimes=runtimes)
    assert legacy.version == "2" and "calibration.json" not in legacy.artifacts
    lines, _ = served_lines(world["trained"].estimator, 1_000, seed=3, drift=1.0, version="2")
    put(world, lines, NOW - timedelta(hours=1))
    (outcome,) = job(world).run().outcomes
    assert outcome.result.verdict == "drift"
    assert outcome.performance.status == "unavailable" and outcome.performance.reason == NO_CALIBRATION
    assert outcome.multivariate.status == "unavailable"
    data, html = report(world, outcome.report_prefix)
    assert data["performance"]["status"] == "unavailable"
    assert "No estimate." in html and "no calibration.json" in html


def test_the_handler_emits_the_estimates_beside_the_drift_metrics(world, monkeypatch, moto_server, capsys):
    lines, _ = served_lines(world["trained"].estimator, 1_500, seed=4, drift=1.0)
    put(world, lines, datetime.now(UTC))
    for key, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "CAPTURE_BUCKET": world["captures"],
        "MODEL_BUCKET": world["registry"].bucket,
        "POWERTOOLS_SERVICE_NAME": "drift",
        "DRIFT_MIN_ROWS": "500",
        "DRIFT_WASSERSTEIN_THRESHOLD": "0.15",
    }.items():
        monkeypatch.setenv(key, value)
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("drift_app_estimates", Path(ROOT, "functions/drift/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        result = module.lambda_handler(load_event("drift_schedule.json"), FakeLambdaContext(function_name="drift"))
    finally:
        aws.s3_client.cache_clear()
    assert module.job().config.wasserstein_threshold == 0.15
    (model,) = result["models"]
    assert set(model["estimated"]) == {"accuracy", "f1", "roc_auc"} and model["multivariate"] == "drift"
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"]: doc for doc in docs for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    for name in ("EstimatedAccuracy", "EstimatedF1", "EstimatedRocAuc"):
        assert names[name]["model_version"] == "1"
    assert names["EstimatedAccuracy"]["EstimatedAccuracy"] == [model["estimated"]["accuracy"]]
    assert "model_version" not in names["EstimatedAccuracyDrop"] and names["MultivariateDrift"][
        "MultivariateDrift"
    ] == [1.0]
