"""Retrain step 1 and every exit: take the per-model lock, release it, or abort safely."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings
from sklambda.lifecycle.steps import AbortInput, AcquireInput, GuardInput

# The acquire step's `trigger` is the execution's input: the alarm's EventBridge event, or a manual
# start's {"model": ...}; the step models parse it, so the pipeline never sees the raw event.
STEP: TypeAdapter[GuardInput] = TypeAdapter(GuardInput)


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = STEP.validate_python(event)
    if isinstance(step, AcquireInput):
        guard = pipeline().guard(step)
        metrics.add_metric(name="RetrainStarted" if guard.proceed else "RetrainSkipped", unit="Count", value=1)
        result = guard.model_dump(mode="json", by_alias=True)
    elif isinstance(step, AbortInput):
        result = pipeline().abort(step).model_dump(mode="json", by_alias=True)
        metrics.add_metric(name="RetrainFailed", unit="Count", value=1)
    else:
        result = pipeline().release(step).model_dump(mode="json", by_alias=True)
    logger.info(f"retrain guard: {step.action}", extra=result)
    return result
