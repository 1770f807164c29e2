"""The retrain pipeline's steps (each a Lambda task in statemachine/retrain.asl.json).

guard → assemble → train → evaluate → (gate: a Choice state) → publish → canary start → wait →
canary check (promote or roll back) → release; every failure path releases the lock and notifies.
Production keeps serving the last good version throughout: the alias only moves in the canary
steps, atomically, and a candidate never replaces production without passing the gate and the
canary.

Each step takes its typed input and returns its typed output (``steps``); the handlers parse the
Step Functions events into them. Working files live in the capture bucket under
``retrain/<model>/<execution>/``; the lock is ``state/retrain/<model>.lock.json``, created with
``If-None-Match: *``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from sklambda.core.errors import RegistryError, SklambdaError
from sklambda.core.s3 import PRECONDITION_CODES, error_code
from sklambda.lifecycle import datasets
from sklambda.lifecycle.datasets import TRAINING_DATA, DatasetRow
from sklambda.lifecycle.steps import (
    AbortInput,
    AbortResult,
    AcquireInput,
    AssembleResult,
    CanaryCheckInput,
    CanaryOutcome,
    CanaryStarted,
    CanaryStartInput,
    EvaluateInput,
    Evaluation,
    GuardResult,
    ObjectRef,
    PublishInput,
    PublishResult,
    ReleaseInput,
    ReleaseResult,
    StepTarget,
    TrainInput,
    TrainResult,
    TriggerSummary,
)
from sklambda.monitoring.quality import LabelledRow, quality_by_version
from sklambda.monitoring.store import CaptureStore
from sklambda.registry.manifest import Manifest, utcnow
from sklambda.registry.store import ModelRegistry, sha256_hex

LOCK_PREFIX = "state/retrain/"
WORK_PREFIX = "retrain/"


class RetrainError(SklambdaError):
    code = "retrain_error"


@dataclass
class RetrainConfig:
    margin: float = 0.01  # the candidate may be at most this much worse than production
    floor: float = 0.6  # and must reach this absolute score
    holdout_fraction: float = 0.2
    min_labelled_rows: int = 200
    label_lookback_hours: int = 24 * 7
    lock_ttl_seconds: int = 6 * 3600
    canary_weight: float = 0.1
    canary_min_requests: int = 0
    canary_max_latency_ms: float = 250.0
    canary_wait_seconds: int = 600


class RetrainStore:
    """S3 access for the pipeline: the lock, working datasets, labelled captures."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.captures = CaptureStore(s3, bucket)

    # ------------------------------------------------------------------ lock
    def acquire(self, model: str, execution: str, trigger: TriggerSummary, ttl: int) -> tuple[bool, dict[str, Any]]:
        key = f"{LOCK_PREFIX}{model}.lock.json"
        body = json.dumps({"execution": execution, "acquired_at": utcnow(), "epoch": time.time()}).encode()
        for _ in range(3):
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                return True, {}
            except ClientError as err:
                if error_code(err) not in PRECONDITION_CODES:
                    raise RegistryError(f"could not take the retrain lock: {error_code(err)}") from err
            try:
                current = self.s3.get_object(Bucket=self.bucket, Key=key)
            except ClientError:
                continue  # released meanwhile: try again
            holder = json.loads(current["Body"].read())
            if holder.get("execution") == execution:
                return True, holder  # a retried guard step of the same execution
            if time.time() - float(holder.get("epoch", 0)) > ttl:  # a crashed run's stale lock
                try:
                    self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, IfMatch=current["ETag"])
                    return True, holder
                except ClientError:
                    continue
            skipped = {"trigger": trigger.model_dump(by_alias=True), "at": utcnow(), "running": holder.get("execution")}
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{LOCK_PREFIX}{model}/skipped/{time.time_ns()}.json",
                Body=json.dumps(skipped, default=str).encode(),
            )
            return False, holder
        raise RegistryError("the retrain lock kept changing")

    def release(self, model: str, execution: str) -> bool:
        key = f"{LOCK_PREFIX}{model}.lock.json"
        try:
            current = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return False
        if json.loads(current["Body"].read()).get("execution") != execution:
            return False  # never release someone else's lock
        self.s3.delete_object(Bucket=self.bucket, Key=key)
        return True

    # ------------------------------------------------------------- objects
    def put(self, key: str, data: bytes) -> ObjectRef:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as err:
            raise RegistryError(f"could not write s3://{self.bucket}/{key}") from err
        return ObjectRef(bucket=self.bucket, key=key, sha256=sha256_hex(data), bytes=len(data))

    def get(self, ref: ObjectRef) -> bytes:
        """A working file's bytes, only from this stack's ``retrain/`` prefix and only if they still
        hash to what was recorded when it was written (a candidate is unpickled from here)."""
        if ref.bucket != self.bucket or not ref.key.startswith(WORK_PREFIX):
            raise RetrainError("working files are only read from this stack's retrain/ prefix")
        try:
            data: bytes = self.s3.get_object(Bucket=self.bucket, Key=ref.key)["Body"].read()
        except (ClientError, BotoCoreError) as err:
            raise RegistryError(f"could not read s3://{self.bucket}/{ref.key}") from err
        if len(data) != ref.bytes or sha256_hex(data) != ref.sha256:
            raise RetrainError(f"{ref.key} does not match the sha256 recorded when it was written")
        return data

    # ------------------------------------------------------- labelled rows
    def labelled_captures(
        self, model: str, start: datetime, end: datetime, version: str | None = None
    ) -> list[LabelledRow]:
        """Captured rows of ``model`` that received a label, joined by prediction id (last label wins)."""
        from sklambda.monitoring.quality import labelled_rows

        return labelled_rows(self.captures, start, end, model=model, version=version)


class RetrainPipeline:
    """The steps. Collaborators injected; each step takes its typed input and returns its typed output."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: RetrainStore,
        config: RetrainConfig,
        *,
        alias: str,
        default_model: str = "demo",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.store = store
        self.config = config
        self.alias = alias
        self.default_model = default_model
        self.clock = clock

    def _production(self, model: str) -> Manifest:
        found = self.registry.get_alias(model, self.alias)
        if found is None:
            raise RetrainError(f"model {model!r} has no {self.alias!r} version to retrain from")
        return self.registry.get_manifest(model, found.record.version)

    def _dataset(self, ref: ObjectRef, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
        return datasets.read_dataset(self.store.get(ref), manifest.schema)

    def _candidate(self, ref: ObjectRef) -> Any:
        import joblib

        return joblib.load(io.BytesIO(self.store.get(ref)))

    # 1 ------------------------------------------------------------------ guard
    def guard(self, step: AcquireInput) -> GuardResult:
        """Take the model's lock, or record the trigger as skipped while another retrain runs."""
        model = step.trigger.model or self.default_model
        self._production(model)  # fail early on unknown models and models never promoted
        execution = step.execution or f"unnamed-{uuid.uuid4().hex[:16]}"
        trigger = TriggerSummary.of(step.trigger)
        acquired, holder = self.store.acquire(model, execution, trigger, self.config.lock_ttl_seconds)
        reason = "lock acquired" if acquired else f"a retrain of {model} is already running ({holder.get('execution')})"
        return GuardResult(
            model=model,
            execution=execution,
            proceed=acquired,
            reason=reason,
            trigger=trigger,
            canary_wait_seconds=self.config.canary_wait_seconds,
        )

    def release(self, step: ReleaseInput) -> ReleaseResult:
        return ReleaseResult(released=self.store.release(step.model, step.execution))

    # 2 --------------------------------------------------------------- assemble
    def assemble(self, step: StepTarget) -> AssembleResult:
        """Production's training rows plus recent labelled captures; the holdout is the newest
        labelled rows, or a seeded sample of the reference rows while labels are too few."""
        model, execution = step.model, step.execution
        production = self._production(model)
        if TRAINING_DATA not in production.artifacts:
            raise RetrainError(f"{model} v{production.version} has no stored training data to retrain from")
        reference = datasets.decode(self.registry.get_artifact(production, TRAINING_DATA))
        now = self.clock()
        labelled = [
            DatasetRow(features=r.features, label=r.label)
            for r in self.store.labelled_captures(model, now - timedelta(hours=self.config.label_lookback_hours), now)
        ]
        if len(labelled) >= self.config.min_labelled_rows:
            cut = int(len(labelled) * (1 - self.config.holdout_fraction))
            train_labelled, holdout = labelled[:cut], labelled[cut:]  # the newest labelled rows are the holdout
            holdout_source = "newest labelled captures"
        else:
            rng = np.random.default_rng(int(hashlib.sha256(execution.encode()).hexdigest()[:8], 16))
            picks = rng.random(len(reference)) < self.config.holdout_fraction
            holdout = [reference[i] for i in np.flatnonzero(picks)] + labelled
            reference = [reference[i] for i in np.flatnonzero(~picks)]
            train_labelled = []
            holdout_source = f"reference data ({len(labelled)} labelled captures < {self.config.min_labelled_rows})"
        base = f"{WORK_PREFIX}{model}/{execution}/"
        return AssembleResult(
            production_version=production.version,
            train=self.store.put(base + "train.jsonl.gz", datasets.encode(reference + train_labelled)),
            holdout=self.store.put(base + "holdout.jsonl.gz", datasets.encode(holdout)),
            reference_rows=len(reference),
            labelled_rows=len(labelled),
            train_labelled_rows=len(train_labelled),
            holdout_rows=len(holdout),
            holdout_source=holdout_source,
        )

    # 3 ------------------------------------------------------------------ train
    def train(self, step: TrainInput) -> TrainResult:
        """Fit production's recipe (pipeline and hyperparameters) on the assembled rows."""
        from sklambda.lifecycle.publish import serialise
        from sklambda.lifecycle.training import build_pipeline

        production = self.registry.get_manifest(step.model, step.assembled.production_version)
        x, y = self._dataset(step.assembled.train, production)
        started = time.perf_counter()
        if production.params.get("recipe") == "clone":
            # A user's own pipeline: a clone of the served one (same steps, same hyperparameters), refitted.
            from sklearn.base import clone

            from sklambda.serving.loader import deserialise_sklearn

            served, _ = deserialise_sklearn(self.registry.get_artifact(production, production.primary_artifact))
            pipeline = clone(served)
        else:
            pipeline = build_pipeline(production.schema, production.task, production.params)
        pipeline.fit(x, y)
        return TrainResult(
            candidate=self.store.put(
                f"{WORK_PREFIX}{step.model}/{step.execution}/candidate.joblib", serialise(pipeline)
            ),
            train_rows=int(len(x)),
            fit_seconds=round(time.perf_counter() - started, 2),
            params=production.params,
        )

    # 4 --------------------------------------------------------------- evaluate
    def evaluate(self, step: EvaluateInput) -> Evaluation:
        from sklambda.lifecycle.evaluation import gate_score, holdout_metrics
        from sklambda.serving.loader import load_version

        production = self.registry.get_manifest(step.model, step.assembled.production_version)
        x, y = self._dataset(step.assembled.holdout, production)
        if len(x) == 0:
            raise RetrainError("the holdout is empty")
        candidate = self._candidate(step.trained.candidate)
        current = load_version(self.registry, production).estimator
        cand_metrics = holdout_metrics(production.task, candidate, x, y)
        prod_metrics = holdout_metrics(production.task, current, x, y)
        metric, cand_score = gate_score(production.task, cand_metrics)
        _, prod_score = gate_score(production.task, prod_metrics)
        return Evaluation(
            metric=metric,
            candidate_score=cand_score,
            production_score=prod_score,
            required_score=round(prod_score - self.config.margin, 6),
            floor=self.config.floor,
            margin=self.config.margin,
            candidate_metrics=cand_metrics,
            production_metrics=prod_metrics,
            holdout_rows=int(len(x)),
        )

    # 6 ---------------------------------------------------------------- publish
    def publish(self, step: PublishInput) -> PublishResult:
        """Publish the candidate as a new version, marked rejected with the reason if the gate failed."""
        from sklambda.lifecycle.publish import publish_version

        assembled, trained, evaluation = step.assembled, step.trained, step.evaluation
        production = self.registry.get_manifest(step.model, assembled.production_version)
        x, y = self._dataset(assembled.train, production)
        holdout_x, holdout_y = self._dataset(assembled.holdout, production)
        reason = None if step.accepted else evaluation.shortfall()
        manifest = publish_version(
            self.registry,
            step.model,
            self._candidate(trained.candidate),
            production.schema,
            production.task,
            holdout_x=holdout_x,
            holdout_y=holdout_y,
            training_x=x,
            training_y=y,
            target=production.target,
            metrics={
                "holdout": evaluation.candidate_metrics,
                "holdout_rows": evaluation.holdout_rows,
                "production_on_same_holdout": evaluation.production_metrics,
                "train_rows": trained.train_rows,
            },
            params=production.params,
            training_data={
                "source": f"retrain {step.execution}",
                "rows": trained.train_rows,
                "labelled_rows": assembled.labelled_rows,
                "holdout": assembled.holdout_source,
            },
            parent_version=production.version,
            description=f"retrained from v{production.version} by {step.execution}",
            status="candidate" if step.accepted else "rejected",
            status_reason=reason,
        )
        return PublishResult(version=manifest.version, status=manifest.status, reason=reason)

    # 7 ----------------------------------------------------------------- canary
    def canary_start(self, step: CanaryStartInput) -> CanaryStarted:
        record = self.registry.set_canary(
            step.model, step.version, self.config.canary_weight, self.alias, reason="retrain canary"
        )
        return CanaryStarted(
            version=step.version,
            weight=self.config.canary_weight,
            production=record.version,
            started_at=utcnow(),
            started_epoch=time.time(),
        )

    def canary_check(self, step: CanaryCheckInput, metrics: Callable[..., dict[str, float]]) -> CanaryOutcome:
        """Promote when the candidate's errors, latency and (if labels arrived) live quality are healthy."""
        model, canary = step.model, step.canary
        version = canary.version
        seen = metrics(model=model, version=version, since=canary.started_epoch)
        problems = []
        if seen.get("errors", 0) > 0:
            problems.append(f"{seen['errors']:.0f} errors")
        if seen.get("requests", 0) < self.config.canary_min_requests:
            problems.append(f"only {seen.get('requests', 0):.0f} requests (< {self.config.canary_min_requests})")
        if seen.get("max_latency_ms") is not None and seen["max_latency_ms"] > self.config.canary_max_latency_ms:
            problems.append(f"latency {seen['max_latency_ms']:.0f} ms > {self.config.canary_max_latency_ms:.0f} ms")
        now = self.clock()
        labelled = self.store.labelled_captures(model, now - timedelta(hours=2), now)
        task = self.registry.get_manifest(model, canary.production).task
        quality = quality_by_version(labelled, task, {"candidate": version, "production": canary.production})
        candidate, production = quality.get("candidate"), quality.get("production")
        if candidate and production and candidate.worse_than(production, self.config.margin):
            problems.append(
                f"live {candidate.metric} {candidate.value:.3f} is worse than production's {production.value:.3f}"
            )
        if problems:
            self.registry.promote(
                model, canary.production, self.alias, reason=f"canary v{version} rolled back: {'; '.join(problems)}"
            )
            return CanaryOutcome(
                outcome="rolled_back",
                version=version,
                serving=canary.production,
                problems=problems,
                observed=seen,
                live_quality=quality,
            )
        self.registry.promote(model, version, self.alias, reason="canary passed")
        return CanaryOutcome(
            outcome="promoted", version=version, serving=version, problems=[], observed=seen, live_quality=quality
        )

    def abort(self, step: AbortInput) -> AbortResult:
        """Failure path: make sure production serves the last good version, then release the lock."""
        state = step.state
        model, execution = state.guard.model, state.guard.execution
        canary_version = state.published.version if state.published else None
        found = self.registry.get_alias(model, self.alias)
        restored = None
        if (
            found
            and found.record.canary is not None
            and (canary_version is None or found.record.canary.version == canary_version)
        ):
            restored = self.registry.promote(
                model, found.record.version, self.alias, reason=f"retrain {execution} failed: canary removed"
            ).version
        return AbortResult(
            serving=restored or (found.record.version if found else None),
            released=self.store.release(model, execution),
            error=state.error,
        )


def version_metrics(cloudwatch: Any, namespace: str = "sklambda") -> Callable[..., dict[str, float]]:
    """Reads the predict function's per-version metrics since a moment (for the canary check)."""

    def read(*, model: str, version: str, since: float) -> dict[str, float]:
        dims = [
            {"Name": "model", "Value": model},
            {"Name": "model_version", "Value": version},
            {"Name": "service", "Value": "predict"},
        ]
        start = datetime.fromtimestamp(since - 60, UTC)
        end = datetime.now(UTC) + timedelta(minutes=1)
        out: dict[str, float] = {}
        for name, stat, key in (
            ("Predictions", "SampleCount", "requests"),
            ("PredictLatency", "Maximum", "max_latency_ms"),
            ("PredictErrors", "Sum", "errors"),
        ):
            points = cloudwatch.get_metric_statistics(
                Namespace=namespace,
                MetricName=name,
                Dimensions=dims,
                StartTime=start,
                EndTime=end,
                Period=60,
                Statistics=[stat],
            )["Datapoints"]
            if points:
                values = [p[stat] for p in points]
                out[key] = max(values) if stat == "Maximum" else sum(values)
        return out

    return read


def pipeline_from_settings(settings: Any) -> RetrainPipeline:
    from sklambda.core.aws import s3_client

    config = RetrainConfig(
        margin=settings.retrain_margin,
        floor=settings.retrain_floor,
        min_labelled_rows=settings.retrain_min_labelled_rows,
        label_lookback_hours=settings.retrain_label_lookback_hours,
        canary_weight=settings.canary_weight,
        canary_max_latency_ms=settings.canary_max_latency_ms,
        canary_min_requests=settings.canary_min_requests,
        canary_wait_seconds=settings.canary_wait_seconds,
    )
    return RetrainPipeline(
        ModelRegistry(s3_client(), settings.model_bucket),
        RetrainStore(s3_client(), settings.capture_bucket),
        config,
        alias=settings.model_alias,
        default_model=settings.default_model,
    )
