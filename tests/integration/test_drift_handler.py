"""The drift function in-process, triggered by the recorded schedule event, against moto's S3."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

from sklambda.lifecycle import training
from sklambda.registry.store import ModelRegistry
from tests.integration.test_drift_job import capture_lines, put_capture
from tests.support.helpers import ROOT, FakeLambdaContext, load_event, trained_demo


def _emf(stdout: str) -> list[dict]:
    docs = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def test_a_scheduled_run_publishes_drift_metrics_and_a_report(monkeypatch, moto_server, s3, bucket, capsys):
    registry = ModelRegistry(s3, bucket)
    training.publish(registry, "demo", trained_demo())
    captures = f"{bucket}-cap"
    s3.create_bucket(Bucket=captures)
    put_capture(s3, captures, datetime.now(UTC), capture_lines(1500, drift=1.0, seed=21))

    for key, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "CAPTURE_BUCKET": captures,
        "MODEL_BUCKET": bucket,
        "POWERTOOLS_SERVICE_NAME": "drift",
        "DRIFT_MIN_ROWS": "500",
    }.items():
        monkeypatch.setenv(key, value)
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("drift_app_under_test", Path(ROOT, "functions/drift/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    result = module.lambda_handler(load_event("drift_schedule.json"), FakeLambdaContext(function_name="drift"))
    aws.s3_client.cache_clear()

    (model,) = result["models"]
    assert model["model"] == "demo" and model["verdict"] == "drift" and result["rows_counted"] == 1500
    metrics = _emf(capsys.readouterr().out)
    by_name = {}
    for doc in metrics:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                by_name.setdefault(metric["Name"], []).append((doc, directive["Dimensions"]))
    score_doc, dims = by_name["DriftScore"][0]
    assert dims == [["model", "service"]] or sorted(dims[0]) == ["model", "service"]
    assert score_doc["model"] == "demo" and score_doc["service"] == "drift" and score_doc["DriftScore"][0] >= 0.3
    features = {doc["feature"] for doc, _ in by_name["FeatureDrift"]}
    assert "support_calls" in features and len(features) == 12
    assert by_name["RowsAnalysed"][0][0]["RowsAnalysed"] == [1500.0]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=captures, Prefix="reports/demo/")["Contents"]]
    assert any(k.endswith("report.html") for k in keys) and "reports/demo/latest.json" in keys


def test_labelled_captures_give_live_quality_per_version(monkeypatch, moto_server, s3, bucket, capsys):
    registry = ModelRegistry(s3, bucket)
    training.publish(registry, "demo", trained_demo())
    captures = f"{bucket}-cap"
    s3.create_bucket(Bucket=captures)
    hour = datetime.now(UTC)
    lines = capture_lines(40, drift=0.0, seed=22)
    docs = [json.loads(line) for line in lines]
    put_capture(s3, captures, hour, lines)
    # labels: the first 30 agree with the captured prediction (0), the last 10 do not
    labels = [
        json.dumps({"prediction_id": d["prediction_id"], "model": "demo", "version": "1", "label": 0 if i < 30 else 1})
        for i, d in enumerate(docs)
    ]
    s3.put_object(Bucket=captures, Key=f"feedback/{hour:%Y/%m/%d/%H}/fb-1", Body="\n".join(labels).encode())

    for key, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "CAPTURE_BUCKET": captures,
        "MODEL_BUCKET": bucket,
        "POWERTOOLS_SERVICE_NAME": "drift",
    }.items():
        monkeypatch.setenv(key, value)
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("drift_app_quality", Path(ROOT, "functions/drift/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.lambda_handler(load_event("drift_schedule.json"), FakeLambdaContext(function_name="drift"))
    aws.s3_client.cache_clear()

    assert result["quality"] == [{"model": "demo", "version": "1", "rows": 40, "metric": "accuracy", "value": 0.75}]
    emitted = [doc for doc in _emf(capsys.readouterr().out) if "ModelAccuracy" in doc]
    assert emitted and emitted[0]["ModelAccuracy"] == [0.75] and emitted[0]["model_version"] == "1"


def test_a_regressor_gets_live_rmse_from_the_same_quality_definition(monkeypatch, moto_server, s3, bucket, capsys):
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    from sklambda.lifecycle.publish import publish_version
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(features=[FeatureSpec(name="rooms", type="number")])
    x = np.arange(40, dtype=float).reshape(-1, 1)
    regressor = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, 2 * x[:, 0])
    publish_version(ModelRegistry(s3, bucket), "houses", regressor, schema, "regression", training_x=x)
    captures = f"{bucket}-cap"
    s3.create_bucket(Bucket=captures)
    hour = datetime.now(UTC)
    lines = [
        json.dumps(
            {
                "prediction_id": f"h-{i}",
                "model": "houses",
                "version": "1",
                "features": {"rooms": 1.0},
                "prediction": 10.0 + (3 if i % 2 else -3),
            }
        )
        for i in range(20)
    ]
    labels = [json.dumps({"prediction_id": f"h-{i}", "model": "houses", "label": 10.0}) for i in range(20)]
    s3.put_object(Bucket=captures, Key=f"captures/{hour:%Y/%m/%d/%H}/c-1", Body="\n".join(lines).encode())
    s3.put_object(Bucket=captures, Key=f"feedback/{hour:%Y/%m/%d/%H}/fb-1", Body="\n".join(labels).encode())
    for key, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "CAPTURE_BUCKET": captures,
        "MODEL_BUCKET": bucket,
        "POWERTOOLS_SERVICE_NAME": "drift",
    }.items():
        monkeypatch.setenv(key, value)
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("drift_app_rmse", Path(ROOT, "functions/drift/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.lambda_handler(load_event("drift_schedule.json"), FakeLambdaContext(function_name="drift"))
    aws.s3_client.cache_clear()

    assert result["quality"] == [{"model": "houses", "version": "1", "rows": 20, "metric": "rmse", "value": 3.0}]
    emitted = [doc for doc in _emf(capsys.readouterr().out) if "ModelRMSE" in doc]
    assert emitted and emitted[0]["ModelRMSE"] == [3.0] and emitted[0]["model"] == "houses"
