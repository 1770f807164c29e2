"""Batch step 2, one Distributed Map child per part: validate and score its rows, write its outputs."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import s3_client
from sklambda.core.observability import logger, metrics, tracer
from sklambda.lifecycle.batch.models import BatchSettings, ScoreInput
from sklambda.lifecycle.batch.scorer import ModelCache, PartScorer
from sklambda.lifecycle.batch.store import BatchStore
from sklambda.registry.store import ModelRegistry


def _record_event(event: str, fields: dict[str, Any]) -> None:
    logger.info(event, extra=fields)


@cache
def scorer() -> PartScorer:
    """One per execution environment: the pinned version is loaded (and verified) once, then reused."""
    cfg = BatchSettings()  # type: ignore[call-arg]  # values come from the environment
    models = ModelCache(ModelRegistry(s3_client(), cfg.model_bucket), on_event=_record_event)
    return PartScorer(BatchStore(s3_client(), cfg.batch_bucket), models, on_event=_record_event)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = ScoreInput.model_validate(event)
    metrics.add_dimension(name="model", value=step.job.model)
    try:
        result = scorer().score(step)
    except Exception:
        metrics.add_metric(name="BatchPartFailures", unit="Count", value=1)
        raise
    if not result.skipped:
        metrics.add_metric(name="BatchRowsScored", unit="Count", value=result.scored)
        metrics.add_metric(name="BatchRowsRejected", unit="Count", value=result.rejected)
    return result.model_dump(mode="json")
