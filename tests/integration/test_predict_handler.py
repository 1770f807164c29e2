"""The predict handler in-process, driven by the recorded events in events/, against moto's server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from sklambda.lifecycle import training
from tests.support.helpers import ROOT, FakeLambdaContext, demo_rows, event_with_body, load_event, trained_demo


@pytest.fixture
def handler(monkeypatch, moto_server, registry, bucket):
    """Fresh handler module per test (a cold start), configured by environment like on Lambda."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("DEFAULT_MODEL", "demo")
    monkeypatch.setenv("MAX_BATCH_ROWS", "25")
    monkeypatch.setenv("ALIAS_CHECK_SECONDS", "0")
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("predict_app_under_test", Path(ROOT, "functions/predict/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def invoke(event: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        response = module.lambda_handler(event, FakeLambdaContext())
        body = response.get("body") or ""
        headers = response.get("headers", {})
        parsed = json.loads(body) if headers.get("Content-Type", "").startswith("application/json") else body
        return response["statusCode"], parsed, headers

    invoke.module = module  # type: ignore[attr-defined]
    yield invoke
    aws.s3_client.cache_clear()


@pytest.fixture
def published(registry):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    return registry


def test_predict_default_answers_predictions_probabilities_and_ids(handler, published):
    status, body, _ = handler(load_event("predict_default.json"))
    assert status == 200
    assert body["model"] == {"name": "demo", "version": "1"}
    assert body["predictions"][0] in (0, 1)
    assert body["classes"] == [0, 1]
    assert len(body["probabilities"][0]) == 2 and abs(sum(body["probabilities"][0]) - 1) < 1e-9
    assert len(body["prediction_ids"]) == 1 and len(set(body["prediction_ids"])) == 1


def test_predict_named_accepts_objects_and_lists_in_schema_order(handler, published):
    status, body, _ = handler(load_event("predict_named.json"))
    assert status == 200
    assert len(body["predictions"]) == 2 and len(set(body["prediction_ids"])) == 2


def test_object_and_list_forms_give_the_same_answer(handler, published):
    row = demo_rows(1)[0]
    _, as_object, _ = handler(event_with_body("predict_default.json", {"instances": [row]}))
    _, as_list, _ = handler(event_with_body("predict_default.json", {"instances": [list(row.values())]}))
    assert as_object["probabilities"] == as_list["probabilities"]


def test_describe_list_health_ready(handler, published):
    status, body, _ = handler(load_event("describe_model.json"))
    assert status == 200 and body["version"] == "1" and body["task"] == "classification"
    assert {"name", "created_at", "features", "classes", "metrics", "libraries"} <= set(body)
    assert "artifacts" not in body, "bucket internals stay private"

    status, body, _ = handler(load_event("list_models.json"))
    assert status == 200 and body["models"][0]["aliases"]["production"]["version"] == "1"

    status, body, _ = handler(load_event("health.json"))
    assert status == 200 and body["status"] == "ok" and body["model"]["name"] == "demo"
    status, body, _ = handler(load_event("ready.json"))
    assert (status, body["status"], body["model"]) == (200, "ready", {"name": "demo", "version": "1"})


def test_ready_is_503_until_a_model_is_served(handler, registry):
    status, body, _ = handler(load_event("ready.json"))
    assert status == 503 and body["status"] == "unavailable" and body["model"]["version"] is None
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    status, body, _ = handler(load_event("ready.json"))
    assert status == 200 and body["model"]["version"] == "1"


def test_openapi_and_swagger_ui_are_generated_from_the_code(handler, published):
    status, spec, _ = handler(load_event("openapi.json"))
    assert status == 200 and spec["openapi"].startswith("3.")
    assert {"/predict", "/models/{name}/predict", "/models/{name}", "/models", "/health", "/ready"} <= set(
        spec["paths"]
    )
    status, html, headers = handler(load_event("docs.json"))
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "swagger" in html.lower()


BAD_INPUTS = [
    pytest.param("{not json", True, 400, "body", "malformed JSON", id="malformed-json"),
    pytest.param({"rows": []}, False, 422, "instances", "Field required", id="missing-instances"),
    pytest.param({"instances": "x"}, False, 422, "instances", "valid list", id="instances-not-a-list"),
    pytest.param({"instances": []}, False, 422, "instances", "at least one", id="empty-batch"),
    pytest.param({"instances": [{}] * 26}, False, 413, "instances", "at most 25", id="over-limit"),
    pytest.param({"instances": [7]}, False, 422, "instances[0]", "expected an object", id="row-not-object"),
    pytest.param({"instances": [[1, 2]]}, False, 422, "instances[0]", "expected 12 values", id="short-list"),
]


@pytest.mark.parametrize(("body", "raw", "status", "field", "text"), BAD_INPUTS)
def test_bad_requests_get_4xx_naming_the_field(handler, published, body, raw, status, field, text):
    got, answer, _ = handler(event_with_body("predict_default.json", body, raw=raw))
    assert got == status
    assert any(d["field"] == field and text in d["message"] for d in answer["details"]), answer


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"age": "thirty"}, "instances[0].age", "expected a number, got string"),
        ({"age": 37.5}, "instances[0].age", "expected an integer"),
        ({"age": None}, "instances[0].age", "cannot be null"),
        ({"income": True}, "instances[0].income", "expected a number, got boolean"),
        ({"plan": "gold"}, "instances[0].plan", "unknown category 'gold'"),
        ({"plan": 3}, "instances[0].plan", "expected a string category"),
        ({"favourite_colour": "red"}, "instances[0].favourite_colour", "unknown feature"),
    ],
)
def test_bad_feature_values_are_422_naming_the_feature(handler, published, change, field, text):
    row = {**demo_rows(1)[0], **change}
    status, answer, _ = handler(event_with_body("predict_default.json", {"instances": [row]}))
    assert status == 422
    assert any(d["field"] == field and text in d["message"] for d in answer["details"]), answer


def test_missing_feature_and_non_finite_values(handler, published):
    row = demo_rows(1)[0]
    row.pop("income")
    status, answer, _ = handler(event_with_body("predict_default.json", {"instances": [row]}))
    assert status == 422 and answer["details"][0] == {"field": "instances[0].income", "message": "is missing"}

    raw = json.dumps({"instances": [demo_rows(1)[0]]}).replace('"income": ', '"income": NaN, "x": ', 1)
    status, answer, _ = handler(event_with_body("predict_default.json", raw, raw=True))
    assert status == 422 and any("finite" in d["message"] for d in answer["details"])


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ('{"instances": [' + "[" * 5000 + "]" * 5000 + "]}", 413, "body_too_large"),
        ('{"instances": [{"age": ' + "9" * 5000 + "}]}", 422, "invalid_input"),
        ('{"instances": [{"plan": "\\ud800"}]}', 400, "malformed_request"),
        ('"' + "x" * (7 << 20) + '"', 413, "body_too_large"),
        ("{nope", 400, "malformed_request"),
    ],
    ids=["nesting", "digits", "surrogate", "size", "malformed"],
)
def test_both_ways_in_answer_an_unreadable_body_alike(handler, published, body, status, error):
    """The fast path and the resolver share one parse (the resolver's JSON deserializer is the same parser)."""
    app = handler.module
    event = event_with_body("predict_default.json", body, raw=True)
    fast = app.lambda_handler(event, FakeLambdaContext())
    assert (fast["statusCode"], json.loads(fast["body"])["error"]) == (status, error)
    assert app._resolver().resolve(event, FakeLambdaContext()) == fast
    feedback = load_event("feedback.json", body=body)
    assert app.lambda_handler(feedback, FakeLambdaContext()) == fast


def test_unknown_model_is_404_and_bad_content_type_is_415(handler, published):
    event = load_event("predict_named.json", rawPath="/models/ghost/predict", pathParameters={"name": "ghost"})
    status, answer, _ = handler(event)
    assert status == 404 and answer["error"] == "model_not_found"

    event = load_event("predict_default.json")
    event["headers"]["content-type"] = "text/plain"
    status, answer, _ = handler(event)
    assert status == 415 and answer["details"][0]["field"] == "content-type"

    event["headers"]["content-type"] = "application/x-www-form-urlencoded"  # curl -d without -H
    status, answer, _ = handler(event)
    assert status == 415 and "send application/json" in answer["message"]


def test_model_unavailable_is_503_with_a_reason(handler, published, s3, bucket):
    served = published.get_manifest("demo", "1").lean.artifact  # the lean artifact the loader serves
    s3.put_object(Bucket=bucket, Key=f"models/demo/versions/1/{served}", Body=b"corrupt")
    status, answer, _ = handler(load_event("predict_default.json"))
    assert status == 503 and answer["error"] == "model_unavailable" and "sha256" in answer["message"]


def test_served_rows_are_captured_with_their_prediction_ids(
    handler, published, monkeypatch, delivery_stream, s3, bucket
):
    delivery_stream(f"cap-{bucket}", bucket, "captures/")
    monkeypatch.setenv("CAPTURE_STREAM", f"cap-{bucket}")
    from sklambda.core import aws

    aws.firehose_client.cache_clear()
    status, body, _ = handler(load_event("predict_named.json"))
    assert status == 200
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="captures/")["Contents"]]
    lines = [json.loads(x) for k in keys for x in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]
    assert [r["prediction_id"] for r in lines] == body["prediction_ids"]
    assert lines[1]["features"]["plan"] == "premium" and lines[1]["features"]["age"] == 52.0
    assert [r["prediction"] for r in lines] == body["predictions"]
    aws.firehose_client.cache_clear()


@pytest.fixture
def feedback_ready(handler, published, monkeypatch, delivery_stream, bucket):
    delivery_stream(f"fb-{bucket}", bucket, "feedback/")
    monkeypatch.setenv("FEEDBACK_STREAM", f"fb-{bucket}")
    monkeypatch.setenv("PREDICTION_ID_KEY", "test-signing-key")
    from sklambda.core import aws

    aws.firehose_client.cache_clear()
    yield handler
    aws.firehose_client.cache_clear()


def _feedback_lines(s3, bucket) -> list[dict]:
    contents = s3.list_objects_v2(Bucket=bucket, Prefix="feedback/").get("Contents", [])
    return [
        json.loads(x) for o in contents for x in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().splitlines()
    ]


def test_feedback_for_issued_predictions_is_stored(feedback_ready, s3, bucket):
    status, body, _ = feedback_ready(load_event("predict_named.json"))
    first, second = body["prediction_ids"]
    assert first.startswith("demo.v1.")

    status, answer, _ = feedback_ready(event_with_body("feedback.json", {"prediction_id": first, "label": 1}))
    assert (status, answer) == (202, {"accepted": 1})
    status, answer, _ = feedback_ready(
        event_with_body(
            "feedback.json", {"feedback": [{"prediction_id": first, "label": 0}, {"prediction_id": second, "label": 1}]}
        )
    )
    assert (status, answer) == (202, {"accepted": 2})
    stored = _feedback_lines(s3, bucket)
    # objects written in the same second list in any order: compare as multisets
    assert sorted((r["prediction_id"], r["label"], r["model"], r["version"]) for r in stored) == sorted(
        [(first, 1, "demo", "1"), (first, 0, "demo", "1"), (second, 1, "demo", "1")]
    )


@pytest.mark.parametrize(
    ("body", "status", "field", "text"),
    [
        (
            {"prediction_id": "demo.v1.0123456789abcdef0123456789abcdef-0.0000000000000000", "label": 1},
            404,
            "prediction_id",
            "not issued by this API",
        ),
        ({"prediction_id": "made-up", "label": 1}, 422, "prediction_id", "is not a prediction id"),
        ({"label": 1}, 422, "body", "send prediction_id and label"),
        ({"feedback": []}, 422, "feedback", "at least one"),
        ({"feedback": [{"prediction_id": "x"}]}, 422, "feedback.0.label", "Field required"),
    ],
)
def test_bad_feedback_is_a_4xx_naming_the_field(feedback_ready, body, status, field, text):
    got, answer, _ = feedback_ready(event_with_body("feedback.json", body))
    assert got == status, answer
    assert any(d["field"] == field and text in d["message"] for d in answer["details"]), answer


def test_labels_must_be_classes_of_the_version_that_predicted(feedback_ready, s3, bucket):
    _, body, _ = feedback_ready(load_event("predict_named.json"))
    pid = body["prediction_ids"][0]
    for label, text in [(7, "7 is not a class of demo v1"), ("1", "'1' is not a class"), (True, "True is not a class")]:
        status, answer, _ = feedback_ready(event_with_body("feedback.json", {"prediction_id": pid, "label": label}))
        assert status == 422 and text in answer["details"][0]["message"], answer
        assert answer["details"][0]["field"] == "label"
    status, answer, _ = feedback_ready(
        event_with_body(
            "feedback.json",
            {
                "feedback": [
                    {"prediction_id": pid, "label": 1},
                    {"prediction_id": pid[:-1] + ("0" if pid[-1] != "0" else "1"), "label": 1},
                ]
            },
        )
    )
    assert status == 404 and answer["details"][0]["field"] == "feedback[1].prediction_id"
    assert _feedback_lines(s3, bucket) == [], "all or nothing"
