"""Retrain step 7: route a share of traffic to the candidate, then promote it or roll it back."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from sklambda.core.aws import cloudwatch_client
from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings, version_metrics
from sklambda.lifecycle.steps import CanaryCheckInput, CanaryInput

STEP: TypeAdapter[CanaryInput] = TypeAdapter(CanaryInput)


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = STEP.validate_python(event)
    if isinstance(step, CanaryCheckInput):
        outcome = pipeline().canary_check(step, version_metrics(cloudwatch_client(), metrics.namespace))
        name = "RetrainPromoted" if outcome.outcome == "promoted" else "RetrainRolledBack"
        metrics.add_metric(name=name, unit="Count", value=1)
        result = outcome.model_dump(mode="json", by_alias=True)
    else:
        result = pipeline().canary_start(step).model_dump(mode="json", by_alias=True)
    logger.info("retrain canary", extra={"result": result})
    return result
