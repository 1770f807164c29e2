"""The pre-traffic check (sklambda.deploy_check) and the hook (functions/pretraffic): the real
predict handler answering the hook's event, the registry in moto's S3, and a tiny fake CodeDeploy
client capturing the status call. tests/e2e/test_pretraffic.py runs it against the local stack."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sklambda.lifecycle import training
from sklambda.lifecycle.deploy_check import CheckResult, PreTrafficCheck, load_sample_rows, predict_event, report
from tests.support.helpers import ROOT, FakeLambdaContext, trained_demo

SAMPLES = ROOT / "functions" / "pretraffic" / "samples"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-PredictFunction:7"
HOOK_EVENT = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": "hook-execution-1"}


class FakeCodeDeploy:
    """Records PutLifecycleEventHookExecutionStatus calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"lifecycleEventHookExecutionId": kwargs["lifecycleEventHookExecutionId"]}


class InProcessLambda:
    """A Lambda client whose invoke runs the real predict handler in this process."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.invocations: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.invocations.append(kwargs)
        answer = self.handler(json.loads(kwargs["Payload"]), FakeLambdaContext())
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}


class ScriptedLambda:
    """A Lambda client answering one canned response (or raising)."""

    def __init__(self, answer: Any = None, *, error: str | None = None, raises: Exception | None = None) -> None:
        self.answer, self.error, self.raises = answer, error, raises

    def invoke(self, **_kwargs: Any) -> dict[str, Any]:
        if self.raises is not None:
            raise self.raises
        response = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.answer).encode())}
        if self.error:
            response["FunctionError"] = self.error
        return response


@pytest.fixture
def predict_handler(monkeypatch, moto_server, bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("DEFAULT_MODEL", "demo")
    monkeypatch.setenv("ALIAS_CHECK_SECONDS", "0")
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("predict_app_for_pretraffic", Path(ROOT, "functions/predict/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.lambda_handler
    aws.s3_client.cache_clear()


@pytest.fixture
def published(registry):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    return registry


def _check(lambda_client: Any, registry: Any) -> CheckResult:
    rows = load_sample_rows(SAMPLES, "demo")
    return PreTrafficCheck(
        lambda_client, registry, target=TARGET, model="demo", alias="production", instances=rows
    ).run()


def _good_body(rows: int = 2, version: str = "1") -> dict[str, Any]:
    return {
        "model": {"name": "demo", "version": version},
        "predictions": [1, 0][:rows],
        "probabilities": [[0.2, 0.8], [0.9, 0.1]][:rows],
        "classes": [0, 1],
        "prediction_ids": ["a-0", "a-1"][:rows],
    }


def _http(body: Any, status: int = 200) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(body), "headers": {"Content-Type": "application/json"}}


# ------------------------------------------------------------------- the real predict handler
def test_the_real_handler_passes_and_success_is_reported(predict_handler, published):
    client, codedeploy = InProcessLambda(predict_handler), FakeCodeDeploy()
    result = _check(client, published)
    assert result.ok, result
    assert result.details["served_version"] == "1" and result.details["status"] == 200
    (call,) = client.invocations
    assert call["FunctionName"] == TARGET and call["InvocationType"] == "RequestResponse"
    event = json.loads(call["Payload"])
    assert event["version"] == "2.0" and event["routeKey"] == "POST /predict"
    assert json.loads(event["body"]) == json.loads((ROOT / "events" / "sample_request.json").read_text())
    report(codedeploy, HOOK_EVENT, result)
    assert codedeploy.calls == [
        {"deploymentId": "d-ABCDEF123", "lifecycleEventHookExecutionId": "hook-execution-1", "status": "Succeeded"}
    ]


def test_a_model_canary_version_is_an_accepted_answer(predict_handler, published):
    training.publish(published, "demo", trained_demo(seed=1))
    published.set_canary("demo", "2", 0.5)
    result = _check(InProcessLambda(predict_handler), published)
    assert result.ok, result
    assert result.details["expected_versions"] == ["1", "2"]


def test_serving_a_version_the_alias_does_not_route_to_fails(predict_handler, published):
    # New code that serves v1 while the registry says v2 (e.g. a stale or wrong alias lookup).
    training.publish(published, "demo", trained_demo(seed=1))
    published.promote("demo", "2")
    result = _check(ScriptedLambda(_http(_good_body(version="1"))), published)
    assert not result.ok
    assert "model.version is '1'" in result.reason


def test_no_alias_passes_if_the_code_answers_a_clean_error(predict_handler, registry):
    result = _check(InProcessLambda(predict_handler), registry)
    assert result.ok, result
    assert result.details["status"] in (404, 503)


# ------------------------------------------------------------------------- wrong answers
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_http({"error": "internal_error", "message": "boom"}, 500), "HTTP 500"),
        (_http({**_good_body(), "predictions": [1]}), "1 predictions for 2 rows"),
        (_http({**_good_body(), "prediction_ids": ["a-0", "a-0"]}), "not distinct"),
        (_http({**_good_body(), "prediction_ids": ["a-0"]}), "1 prediction ids for 2 rows"),
        (_http({**_good_body(), "probabilities": [[0.2, 0.7], [0.9, 0.1]]}), "sums to 0.9"),
        (_http({**_good_body(), "probabilities": None}), "no probability rows"),
        (_http({**_good_body(), "probabilities": [[1.0], [1.0]]}), "1 columns for 2 classes"),
        (_http({**_good_body(), "model": {"name": "other", "version": "1"}}), "model.name is 'other'"),
        ({"statusCode": 200, "body": "not json"}, "not an HTTP API answer"),
        ("just a string", "not an HTTP API answer"),
    ],
)
def test_a_wrong_answer_fails_the_deployment(published, answer, expected):
    codedeploy = FakeCodeDeploy()
    result = _check(ScriptedLambda(answer), published)
    assert not result.ok and expected in result.reason, result.reason
    report(codedeploy, HOOK_EVENT, result)
    assert [c["status"] for c in codedeploy.calls] == ["Failed"]


def test_a_good_answer_passes(published):
    assert _check(ScriptedLambda(_http(_good_body())), published).ok


def test_a_function_error_fails_the_deployment(published):
    crash = {"errorMessage": "No module named 'sklambda'", "errorType": "Runtime.ImportModuleError"}
    result = _check(ScriptedLambda(crash, error="Unhandled"), published)
    assert not result.ok and "the function raised (Unhandled)" in result.reason


def test_an_invoke_error_fails_the_deployment(published):
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Invoke")
    codedeploy = FakeCodeDeploy()
    result = _check(ScriptedLambda(raises=denied), published)
    assert not result.ok and "AccessDeniedException" in result.reason
    report(codedeploy, HOOK_EVENT, result)
    assert codedeploy.calls[0]["status"] == "Failed"


def test_an_unreadable_registry_fails_the_deployment(published):
    published.bucket = "no-such-bucket-anywhere"
    result = _check(ScriptedLambda(_http(_good_body())), published)
    assert not result.ok


def test_predict_event_is_a_payload_2_event():
    event = predict_event([[1, 2]], request_id="r-1")
    assert event["requestContext"]["http"] == {**event["requestContext"]["http"], "method": "POST", "path": "/predict"}
    assert event["headers"]["content-type"] == "application/json"
    assert event["requestContext"]["requestId"] == "r-1" and event["isBase64Encoded"] is False


# ---------------------------------------------------------------------------------- the hook
@pytest.fixture
def hook(monkeypatch, moto_server, bucket):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("DEFAULT_MODEL", "demo")
    monkeypatch.setenv("MODEL_ALIAS", "production")
    monkeypatch.setenv("TARGET_FUNCTION", TARGET)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "pretraffic")
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location(
        "pretraffic_app_under_test", Path(ROOT, "functions/pretraffic/app.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    aws.s3_client.cache_clear()


def test_the_hook_reports_what_the_check_decides(hook, predict_handler, published, monkeypatch):
    codedeploy, client = FakeCodeDeploy(), InProcessLambda(predict_handler)
    monkeypatch.setattr(hook, "codedeploy_client", lambda: codedeploy)
    monkeypatch.setattr(hook, "lambda_client", lambda: client)
    answer = hook.lambda_handler(HOOK_EVENT, FakeLambdaContext(function_name="CodeDeployHook_sklambda-pretraffic"))
    assert answer["status"] == "Succeeded", answer
    assert codedeploy.calls == [
        {"deploymentId": "d-ABCDEF123", "lifecycleEventHookExecutionId": "hook-execution-1", "status": "Succeeded"}
    ]
    assert client.invocations[0]["FunctionName"] == TARGET


def test_the_hook_fails_a_model_without_sample_rows(hook, monkeypatch):
    monkeypatch.setenv("DEFAULT_MODEL", "iris")
    codedeploy = FakeCodeDeploy()
    monkeypatch.setattr(hook, "codedeploy_client", lambda: codedeploy)
    answer = hook.lambda_handler(HOOK_EVENT, FakeLambdaContext())
    assert answer["status"] == "Failed" and "iris.json" in answer["reason"]
    assert codedeploy.calls[0]["status"] == "Failed"
