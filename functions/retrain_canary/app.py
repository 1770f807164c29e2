"""Retrain step 7: route a share of traffic to the candidate, then promote it or roll it back."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import cloudwatch_client
from sklambda.core.observability import logger, metrics, tracer
from sklambda.core.settings import RetrainSettings
from sklambda.lifecycle.retrain import RetrainPipeline, pipeline_from_settings, version_metrics


@cache
def pipeline() -> RetrainPipeline:
    return pipeline_from_settings(RetrainSettings())  # type: ignore[call-arg]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "start":
        result = pipeline().canary_start(event["model"], event["version"])
    else:
        result = pipeline().canary_check(
            event["model"], event["canary"], version_metrics(cloudwatch_client(), metrics.namespace)
        )
        metrics.add_metric(
            name="RetrainPromoted" if result["outcome"] == "promoted" else "RetrainRolledBack", unit="Count", value=1
        )
    logger.info("retrain canary", extra={"result": result})
    return result
