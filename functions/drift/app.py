"""Drift function: on a schedule, judge the inputs captured since the last run against each
served version's baseline, publish the verdicts as CloudWatch metrics and write the reports."""

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.core.aws import _client as aws_client
from sklambda.core.aws import s3_client
from sklambda.core.errors import SklambdaError
from sklambda.core.observability import MetricUnit, dimension_value, logger, metrics, tracer
from sklambda.core.settings import DriftSettings
from sklambda.monitoring.drift import DriftConfig
from sklambda.monitoring.drift_job import DriftJob, RunSummary
from sklambda.monitoring.fanout import Fanout, FanoutRun, FanoutSettings, FanoutStore, sfn_starter, sfn_status
from sklambda.monitoring.quality import VersionQuality, live_quality
from sklambda.monitoring.store import CaptureStore
from sklambda.monitoring.window import RegistryReferences
from sklambda.registry.store import ModelRegistry


@cache
def settings() -> DriftSettings:
    return DriftSettings()  # type: ignore[call-arg]  # values come from the environment


def _baseline_lookup(registry: ModelRegistry):
    def lookup(model: str, version: str) -> dict[str, Any] | None:
        try:
            manifest = registry.get_manifest(model, version)
            if "baseline.json" not in manifest.artifacts:
                logger.warning("version has no drift baseline", extra={"model": model, "version": version})
                return None
            return registry.get_json_artifact(manifest, "baseline.json")
        except SklambdaError as err:  # unknown model/version in a capture line, or unreadable baseline
            logger.warning(
                "no usable baseline", extra={"model": model[:64], "version": version[:16], "reason": err.message}
            )
            return None

    return lookup


def _references_lookup(registry: ModelRegistry) -> RegistryReferences:
    """A version's baseline with its calibration and PCA artifacts (each verified by get_artifact);
    a version published before they existed gets the reason it has none."""
    return RegistryReferences(registry, warn=lambda message, fields: logger.warning(message, extra=fields))


def publish_metrics(summary: RunSummary) -> None:
    """DriftScore, DriftedFeatures, RowsAnalysed per model (dims service, model) and FeatureDrift
    (PSI) per model and feature. Emitted only after the run's state committed."""
    by_model: dict[str, list] = {}
    for outcome in summary.outcomes:
        by_model.setdefault(outcome.model, []).append(outcome)
    for model, outcomes in by_model.items():
        rows = sum(o.rows for o in outcomes if o.status == "evaluated")
        evaluated = [o for o in outcomes if o.result is not None]
        with single_metric(name="RowsAnalysed", unit=MetricUnit.Count, value=rows, namespace=metrics.namespace) as m:
            m.add_dimension("model", model)
        if not evaluated:
            continue
        worst = max(evaluated, key=lambda o: o.result.drift_score)
        with single_metric(
            name="DriftScore", unit=MetricUnit.NoUnit, value=worst.result.drift_score, namespace=metrics.namespace
        ) as m:
            m.add_dimension("model", model)
        with single_metric(
            name="DriftedFeatures",
            unit=MetricUnit.Count,
            value=worst.result.drifted_features,
            namespace=metrics.namespace,
        ) as m:
            m.add_dimension("model", model)
        for feature in worst.result.features:
            if feature.psi is None:
                continue
            with single_metric(
                name="FeatureDrift", unit=MetricUnit.NoUnit, value=round(feature.psi, 6), namespace=metrics.namespace
            ) as m:
                m.add_dimension("model", model)
                m.add_dimension("feature", dimension_value(feature.name))
    publish_estimates(summary)
    bad = sum(summary.bad_lines.values()) + sum(summary.skipped_rows.values())
    metrics.add_metric(name="BadCaptureRecords", unit=MetricUnit.Count, value=bad)
    metrics.add_metric(name="CaptureObjectsRead", unit=MetricUnit.Count, value=summary.objects_read)


def publish_estimates(summary: RunSummary) -> None:
    """The label-free estimates beside ModelAccuracy: EstimatedAccuracy (EstimatedF1, EstimatedRocAuc
    for binary models) per model version (dims service, model, model_version); per model (dims
    service, model, what EstimatedAccuracyAlarm watches) EstimatedAccuracyDrop, the largest drop of
    a version's estimate below its held-out rows' estimate, and MultivariateDrift (1: drift, 0: ok)."""
    estimated_names = {"accuracy": "EstimatedAccuracy", "f1": "EstimatedF1", "roc_auc": "EstimatedRocAuc"}
    drops: dict[str, float] = {}
    relations: dict[str, float] = {}
    for outcome in summary.outcomes:
        performance = outcome.performance
        if performance is not None and performance.status == "estimated":
            for key, name in estimated_names.items():
                if key in performance.estimated:
                    with single_metric(
                        name=name, unit=MetricUnit.NoUnit, value=performance.estimated[key], namespace=metrics.namespace
                    ) as m:
                        m.add_dimension("model", outcome.model)
                        m.add_dimension("model_version", outcome.version)
            if "accuracy" in performance.drop:
                drops[outcome.model] = max(drops.get(outcome.model, -1.0), performance.drop["accuracy"])
        multivariate = outcome.multivariate
        if multivariate is not None and multivariate.verdict in ("drift", "ok"):
            flag = 1.0 if multivariate.verdict == "drift" else 0.0
            relations[outcome.model] = max(relations.get(outcome.model, 0.0), flag)
    for name, values in (("EstimatedAccuracyDrop", drops), ("MultivariateDrift", relations)):
        for model, value in values.items():
            with single_metric(
                name=name, unit=MetricUnit.NoUnit, value=round(value, 6), namespace=metrics.namespace
            ) as m:
                m.add_dimension("model", model)


def publish_quality(results: list[VersionQuality]) -> None:
    """ModelAccuracy or ModelRMSE and LabelledRows per model version (dims service, model, model_version)."""
    for result in results:
        name = "ModelAccuracy" if result.metric == "accuracy" else "ModelRMSE"
        for metric, value, unit in (
            (name, round(result.value, 6), MetricUnit.NoUnit),
            ("LabelledRows", result.rows, MetricUnit.Count),
        ):
            with single_metric(name=metric, unit=unit, value=value, namespace=metrics.namespace) as m:
                m.add_dimension("model", result.model)
                m.add_dimension("model_version", result.version)


def _fanout() -> Fanout | None:
    """Big windows fan out over DriftStateMachine (monitoring/fanout.py); None when it is not configured."""
    cfg = FanoutSettings()  # type: ignore[call-arg]  # values come from the environment
    if not cfg.drift_state_machine_arn:
        return None
    sfn = aws_client("stepfunctions")
    return Fanout(
        FanoutStore(s3_client(), cfg.capture_bucket),
        max_objects=cfg.drift_max_objects_per_run,
        start=sfn_starter(sfn, cfg.drift_state_machine_arn),
        status=sfn_status(sfn, cfg.drift_state_machine_arn),
        concurrency=cfg.drift_fanout_concurrency,
    )


@cache
def job() -> DriftJob:
    cfg = settings()
    return DriftJob(
        CaptureStore(s3_client(), cfg.capture_bucket),
        _baseline_lookup(ModelRegistry(s3_client(), cfg.model_bucket)),
        DriftConfig(
            min_rows=cfg.drift_min_rows,
            psi_threshold=cfg.drift_psi_threshold,
            ks_threshold=cfg.drift_distance_threshold,
            js_threshold=cfg.drift_distance_threshold,
            wasserstein_threshold=cfg.drift_wasserstein_threshold,
        ),
        references=_references_lookup(ModelRegistry(s3_client(), cfg.model_bucket)),
        lookback_hours=cfg.drift_lookback_hours,
        fanout=_fanout(),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("drift_fanout") == "reduce":  # DriftStateMachine's last step: merge, judge, commit once
        reduced = job().run(publish=publish_metrics, resume=FanoutRun.model_validate(event.get("run")))
        logger.info("drift fan-out run reduced", extra=reduced.to_dict())
        return reduced.to_dict()
    summary = job().run(publish=publish_metrics)
    result = summary.to_dict()
    cfg = settings()
    end = datetime.now(UTC)
    registry = ModelRegistry(s3_client(), cfg.model_bucket)

    def task_of(model: str, version: str) -> str | None:
        try:
            return registry.get_manifest(model, version).task
        except SklambdaError:
            return None

    quality = live_quality(job().store, end - timedelta(hours=cfg.quality_lookback_hours), end, task_of)
    publish_quality(quality)
    result["quality"] = [q.model_dump(mode="json") for q in quality]
    logger.info("drift run complete", extra=result)
    return result
