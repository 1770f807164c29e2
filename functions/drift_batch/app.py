"""Drift batch function: one child of a fan-out drift run's Distributed Map (statemachine/drift.asl.json).

Reads its batch of capture objects with the drift job's reader and writes the partial aggregate to
``state/fanout/<run>/partials/<index>.json``; the reduce step (the drift function) checks and merges
every partial. Deterministic: a retried child writes the same partial again.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import s3_client
from sklambda.core.errors import SklambdaError
from sklambda.core.observability import logger, tracer
from sklambda.core.settings import DriftSettings
from sklambda.monitoring.drift import DriftConfig
from sklambda.monitoring.drift_job import DriftJob, read_batch
from sklambda.monitoring.fanout import BatchRequest, FanoutStore
from sklambda.monitoring.store import CaptureStore
from sklambda.monitoring.window import RegistryReferences
from sklambda.registry.store import ModelRegistry


@cache
def settings() -> DriftSettings:
    return DriftSettings()  # type: ignore[call-arg]  # values come from the environment


def _baselines(registry: ModelRegistry):
    def lookup(model: str, version: str) -> dict[str, Any] | None:
        try:
            manifest = registry.get_manifest(model, version)
            if "baseline.json" not in manifest.artifacts:
                return None
            return registry.get_json_artifact(manifest, "baseline.json")
        except SklambdaError as err:  # unknown model/version in a capture line, or unreadable baseline
            logger.warning(
                "no usable baseline", extra={"model": model[:64], "version": version[:16], "reason": err.message}
            )
            return None

    return lookup


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = BatchRequest.model_validate(event)
    cfg = settings()
    registry = ModelRegistry(s3_client(), cfg.model_bucket)
    job = DriftJob(
        CaptureStore(s3_client(), cfg.capture_bucket),
        _baselines(registry),
        DriftConfig(),
        # the partial also counts served scores and reconstruction errors (calibration.json, multivariate.json)
        references=RegistryReferences(registry, warn=lambda message, fields: logger.warning(message, extra=fields)),
    )
    partial = read_batch(job, request)
    key = FanoutStore(s3_client(), cfg.capture_bucket).write_partial(partial)
    result = {
        "run_id": partial.run_id,
        "index": partial.index,
        "partial": key,
        "objects": partial.objects_read,
        "rows": partial.rows_counted,
        "lines": partial.lines_read,
    }
    logger.info("drift batch read", extra=result)
    return result
