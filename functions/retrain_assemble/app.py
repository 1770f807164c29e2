"""Retrain step 2: the reference training data plus recent labelled captures; holdout from the newest."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings
from sklambda.lifecycle.steps import StepTarget


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = pipeline().assemble(StepTarget.model_validate(event)).model_dump(mode="json", by_alias=True)
    logger.info("retrain assemble", extra={"result": result})
    return result
