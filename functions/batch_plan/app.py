"""Batch step 1: pin the model version and split the input into row-aligned parts (the map's items)."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import s3_client
from sklambda.core.observability import logger, metrics, tracer
from sklambda.lifecycle.batch.models import BatchSettings, PlanInput
from sklambda.lifecycle.batch.planner import Planner
from sklambda.lifecycle.batch.store import BatchStore
from sklambda.registry.store import ModelRegistry


@cache
def planner() -> Planner:
    cfg = BatchSettings()  # type: ignore[call-arg]  # values come from the environment
    return Planner(
        BatchStore(s3_client(), cfg.batch_bucket),
        ModelRegistry(s3_client(), cfg.model_bucket),
        cfg,
        progress=logger.info,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    plan = planner().plan(PlanInput.model_validate(event))
    metrics.add_dimension(name="model", value=plan.job.model)
    metrics.add_metric(name="BatchJobsPlanned", unit="Count", value=1)
    metrics.add_metric(name="BatchParts", unit="Count", value=plan.part_count)
    result = plan.model_dump(mode="json")
    logger.info("batch plan", extra={"result": result})
    return result
