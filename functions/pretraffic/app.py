"""Pre-traffic hook of the predict function's `live` alias (CodeDeploy, `sam deploy`).

CodeDeploy invokes this before shifting any traffic to a new predict version. It scores the fixed
sample rows shipped here (samples/<model>.json) with that version (TARGET_FUNCTION, the version ARN)
and reports Succeeded or Failed; the checks live in sklambda.deploy_check.
"""

import os
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import codedeploy_client, lambda_client, s3_client
from sklambda.core.observability import logger, tracer
from sklambda.lifecycle.deploy_check import CheckResult, PreTrafficCheck, load_sample_rows, report
from sklambda.registry.store import ModelRegistry

SAMPLES = Path(__file__).parent / "samples"


@cache
def registry() -> ModelRegistry:
    return ModelRegistry(s3_client(), os.environ["MODEL_BUCKET"])


def check() -> CheckResult:
    model = os.environ["DEFAULT_MODEL"]
    try:
        rows = load_sample_rows(SAMPLES, model)
    except (OSError, ValueError) as err:
        return CheckResult(False, str(err))
    return PreTrafficCheck(
        lambda_client(),
        registry(),
        target=os.environ["TARGET_FUNCTION"],
        model=model,
        alias=os.environ["MODEL_ALIAS"],
        instances=rows,
    ).run()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = check()
    log = logger.info if result.ok else logger.error
    log(
        "pre-traffic check",
        extra={
            "deployment": event.get("DeploymentId"),
            "status": result.status,
            "reason": result.reason,
            **result.details,
        },
    )
    report(codedeploy_client(), event, result)
    return {"status": result.status, "reason": result.reason}
