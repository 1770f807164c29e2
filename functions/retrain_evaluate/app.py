"""Retrain step 4: candidate and production on the same holdout (the gate is a Choice state)."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings
from sklambda.lifecycle.steps import EvaluateInput


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = pipeline().evaluate(EvaluateInput.model_validate(event)).model_dump(mode="json", by_alias=True)
    logger.info("retrain evaluate", extra={"result": result})
    return result
