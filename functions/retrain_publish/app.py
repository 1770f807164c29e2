"""Retrain step 6: publish the candidate as a version (with a fresh baseline), marked rejected if it failed the gate."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings
from sklambda.lifecycle.steps import PublishInput


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = pipeline().publish(PublishInput.model_validate(event)).model_dump(mode="json", by_alias=True)
    logger.info("retrain publish", extra={"result": result})
    return result
