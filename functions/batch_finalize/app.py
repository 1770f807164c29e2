"""Batch step 3: verify every part from S3 (never the map's status), write the manifest, emit the job's metrics."""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import s3_client
from sklambda.core.observability import logger, metrics, tracer
from sklambda.lifecycle.batch.finalizer import Finalizer
from sklambda.lifecycle.batch.models import BatchSettings, FinalizeInput
from sklambda.lifecycle.batch.store import BatchStore


@cache
def finalizer() -> Finalizer:
    cfg = BatchSettings()  # type: ignore[call-arg]  # values come from the environment
    return Finalizer(BatchStore(s3_client(), cfg.batch_bucket))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = FinalizeInput.model_validate(event)
    result = finalizer().finalize(step)
    metrics.add_dimension(name="model", value=step.job.model)
    if result.complete and result.rows is not None:
        metrics.add_metric(name="BatchJobsCompleted", unit="Count", value=1)
        metrics.add_metric(name="BatchRowsIn", unit="Count", value=result.rows.input)
        metrics.add_metric(name="BatchJobRowsScored", unit="Count", value=result.rows.scored)
        metrics.add_metric(name="BatchJobRowsRejected", unit="Count", value=result.rows.rejected)
        metrics.add_metric(name="BatchJobSeconds", unit="Seconds", value=result.duration_seconds or 0.0)
        logger.info("batch job complete", extra={"result": result.model_dump(mode="json")})
    else:
        metrics.add_metric(name="BatchJobsIncomplete", unit="Count", value=1)
        metrics.add_metric(name="BatchPartsMissing", unit="Count", value=len(result.missing))
        logger.error("batch job incomplete", extra={"problem": result.problem})
    return result.model_dump(mode="json")
