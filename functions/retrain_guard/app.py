"""Retrain step 1 and every exit: take the per-model lock, release it, or abort safely."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings


@cache
def settings() -> RetrainSettings:
    return RetrainSettings()  # type: ignore[call-arg]


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(settings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action", "acquire")
    if action == "acquire":
        result = pipeline().guard(event, event["execution"], settings().default_model)
        result["canary_wait_seconds"] = settings().canary_wait_seconds
        metrics.add_metric(name="RetrainStarted" if result["proceed"] else "RetrainSkipped", unit="Count", value=1)
    elif action == "release":
        result = pipeline().release(event["model"], event["execution"])
    elif action == "abort":
        state = event["state"]  # the whole execution state: the failure may have come before any step's output
        published = state.get("published") or {}
        result = pipeline().abort(state["guard"]["model"], state["guard"]["execution"], published.get("version"))
        result["error"] = state.get("error")
        metrics.add_metric(name="RetrainFailed", unit="Count", value=1)
    else:
        raise ValueError(f"unknown action {action!r}")
    logger.info(f"retrain guard: {action}", extra=result)
    return result
