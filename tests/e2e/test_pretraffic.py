"""The pre-traffic check against the local stack: the hook's TARGET_FUNCTION (resolved from
template.yaml) invoked through the local Lambda Invoke API, the registry in the emulator's S3."""

from __future__ import annotations

import boto3
import pytest

from sklambda.lifecycle.deploy_check import PreTrafficCheck, load_sample_rows, report
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT

SAMPLES = ROOT / "functions" / "pretraffic" / "samples"
HOOK_EVENT = {"DeploymentId": "d-LOCAL", "LifecycleEventHookExecutionId": "hook-1"}


class FakeCodeDeploy:
    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def put_lifecycle_event_hook_execution_status(self, **kwargs: str) -> dict[str, str]:
        self.calls.append(kwargs)
        return {}


@pytest.fixture(scope="module")
def lambda_client(stack: EmbeddedStack):
    return boto3.client("lambda", endpoint_url=stack.endpoint_url, region_name="us-east-1")


def _check(stack: EmbeddedStack, client, registry: ModelRegistry, target: str | None = None) -> tuple:
    env = stack.function("PreTrafficHookFunction").environment
    check = PreTrafficCheck(
        client,
        registry,
        target=target or env["TARGET_FUNCTION"],
        model=env["DEFAULT_MODEL"],
        alias=env["MODEL_ALIAS"],
        instances=load_sample_rows(SAMPLES, env["DEFAULT_MODEL"]),
    )
    codedeploy = FakeCodeDeploy()
    result = check.run()
    report(codedeploy, HOOK_EVENT, result)
    return result, codedeploy.calls


def test_the_new_version_passes_over_the_local_invoke_api(stack, lambda_client, registry):
    target = stack.function("PreTrafficHookFunction").environment["TARGET_FUNCTION"]
    assert target.endswith("PredictFunction:$LATEST")  # `!Ref PredictFunction.Version` resolved locally
    result, calls = _check(stack, lambda_client, registry)
    assert result.ok, result
    assert result.details["served_version"] == registry.get_alias("demo").record.version
    assert calls == [{"deploymentId": "d-LOCAL", "lifecycleEventHookExecutionId": "hook-1", "status": "Succeeded"}]


def test_an_invoke_error_fails_the_deployment(stack, lambda_client, registry):
    target = stack.function("PreTrafficHookFunction").environment["TARGET_FUNCTION"].replace("$LATEST", "no-such")
    result, calls = _check(stack, lambda_client, registry, target=target)
    assert not result.ok and "ResourceNotFoundException" in result.reason, result.reason
    assert calls[0]["status"] == "Failed"
