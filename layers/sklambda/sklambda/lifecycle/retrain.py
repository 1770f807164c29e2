"""The retrain pipeline's steps (each a Lambda task in statemachine/retrain.asl.json).

guard → assemble → train → evaluate → (gate: a Choice state) → publish → canary start → wait →
canary check (promote or roll back) → release; every failure path releases the lock and notifies.
Production keeps serving the last good version throughout: the alias only moves in the canary
steps, atomically, and a candidate never replaces production without passing the gate and the
canary.

Working files live in the capture bucket under ``retrain/<model>/<execution>/``; the lock is
``state/retrain/<model>.lock.json``, created with ``If-None-Match: *``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from sklambda.core.errors import RegistryError, SklambdaError
from sklambda.core.s3 import PRECONDITION_CODES, error_code
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


def model_from_trigger(event: dict[str, Any], default: str) -> str:
    """The model a trigger is about: the alarm's `model` dimension, an explicit `model`, or the default."""
    if isinstance(event.get("model"), str):
        return event["model"]
    metrics = (event.get("detail") or {}).get("configuration", {}).get("metrics", [])
    for metric in metrics:
        dims = metric.get("metricStat", {}).get("metric", {}).get("dimensions", {})
        if isinstance(dims.get("model"), str):
            return dims["model"]
    return default


def score_of(task: str, metrics: dict[str, float]) -> tuple[str, float]:
    """The gate's metric, as a higher-is-better score."""
    if task == "classification":
        return "accuracy", float(metrics["accuracy"])
    return "r2", float(metrics["r2"])


class RetrainStore:
    """S3 access for the pipeline: the lock, working datasets, labelled captures."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.captures = CaptureStore(s3, bucket)

    # ------------------------------------------------------------------ lock
    def acquire(self, model: str, execution: str, trigger: dict[str, Any], ttl: int) -> tuple[bool, dict[str, Any]]:
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
            skipped = {"trigger": trigger, "at": utcnow(), "running": holder.get("execution")}
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
    def put(self, key: str, data: bytes) -> dict[str, Any]:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as err:
            raise RegistryError(f"could not write s3://{self.bucket}/{key}") from err
        return {"bucket": self.bucket, "key": key, "sha256": sha256_hex(data), "bytes": len(data)}

    def get(self, ref: dict[str, Any]) -> bytes:
        if ref.get("bucket") != self.bucket or not str(ref.get("key", "")).startswith(WORK_PREFIX):
            raise RetrainError("working files are only read from this stack's retrain/ prefix")
        data = self.s3.get_object(Bucket=self.bucket, Key=ref["key"])["Body"].read()
        if sha256_hex(data) != ref["sha256"]:
            raise RetrainError(f"{ref['key']} does not match the sha256 recorded when it was written")
        return data

    # ------------------------------------------------------- labelled rows
    def labelled_captures(
        self, model: str, start: datetime, end: datetime, version: str | None = None
    ) -> list[dict[str, Any]]:
        """Captured rows of ``model`` that received a label, joined by prediction id (last label wins)."""
        from sklambda.monitoring.quality import labelled_rows

        return labelled_rows(self.captures, start, end, model=model, version=version)


def _dataset(rows: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps({"features": r["features"], "label": r["label"]}, separators=(",", ":")) for r in rows]
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _matrix(data: bytes, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    from sklambda.lifecycle.training import read_dataset

    return read_dataset(data, manifest.schema)


class RetrainPipeline:
    """The steps. Collaborators injected; each step takes and returns plain JSON."""

    def __init__(
        self,
        registry: ModelRegistry,
        store: RetrainStore,
        config: RetrainConfig,
        *,
        alias: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.store = store
        self.config = config
        self.alias = alias
        self.clock = clock

    def _production(self, model: str) -> Manifest:
        found = self.registry.get_alias(model, self.alias)
        if found is None:
            raise RetrainError(f"model {model!r} has no {self.alias!r} version to retrain from")
        return self.registry.get_manifest(model, found.record.version)

    # 1 ------------------------------------------------------------------ guard
    def guard(self, event: dict[str, Any], execution: str, default_model: str) -> dict[str, Any]:
        trigger = event.get("trigger", event)
        model = model_from_trigger(trigger, default_model)
        self.registry.get_manifest(model, self._production(model).version)  # fail early on unknown models
        acquired, holder = self.store.acquire(model, execution, trigger, self.config.lock_ttl_seconds)
        reason = "lock acquired" if acquired else f"a retrain of {model} is already running ({holder.get('execution')})"
        return {
            "model": model,
            "execution": execution,
            "proceed": acquired,
            "reason": reason,
            "trigger": {"source": trigger.get("source", "manual"), "detail-type": trigger.get("detail-type")},
        }

    def release(self, model: str, execution: str) -> dict[str, Any]:
        return {"released": self.store.release(model, execution)}

    # 2 --------------------------------------------------------------- assemble
    def assemble(self, model: str, execution: str) -> dict[str, Any]:
        production = self._production(model)
        if "training.jsonl.gz" not in production.artifacts:
            raise RetrainError(f"{model} v{production.version} has no stored training data to retrain from")
        reference = self.registry.get_artifact(production, "training.jsonl.gz")
        if sha256_hex(reference) != production.artifacts["training.jsonl.gz"].sha256:
            raise RetrainError(f"{model} v{production.version}: training data does not match its manifest")
        now = self.clock()
        labelled = self.store.labelled_captures(model, now - timedelta(hours=self.config.label_lookback_hours), now)
        base = f"{WORK_PREFIX}{model}/{execution}/"
        ref_lines = gzip.decompress(reference).splitlines()
        if len(labelled) >= self.config.min_labelled_rows:
            cut = int(len(labelled) * (1 - self.config.holdout_fraction))
            train_rows, holdout_rows = labelled[:cut], labelled[cut:]  # the newest labelled rows are the holdout
            holdout_source = "newest labelled captures"
        else:
            rng = np.random.default_rng(int(hashlib.sha256(execution.encode()).hexdigest()[:8], 16))
            picks = rng.random(len(ref_lines)) < self.config.holdout_fraction
            holdout_rows = [json.loads(ref_lines[i]) for i in np.flatnonzero(picks)] + labelled
            ref_lines = [ref_lines[i] for i in np.flatnonzero(~picks)]
            train_rows = []
            holdout_source = f"reference data ({len(labelled)} labelled captures < {self.config.min_labelled_rows})"
        train = (
            b"\n".join(ref_lines) + b"\n" + gzip.decompress(_dataset(train_rows))
            if train_rows
            else b"\n".join(ref_lines) + b"\n"
        )
        return {
            "production_version": production.version,
            "train": self.store.put(base + "train.jsonl.gz", gzip.compress(train)),
            "holdout": self.store.put(base + "holdout.jsonl.gz", _dataset(holdout_rows)),
            "reference_rows": len(ref_lines),
            "labelled_rows": len(labelled),
            "train_labelled_rows": len(train_rows),
            "holdout_rows": len(holdout_rows),
            "holdout_source": holdout_source,
        }

    # 3 ------------------------------------------------------------------ train
    def train(self, model: str, execution: str, assembled: dict[str, Any]) -> dict[str, Any]:
        from sklambda.lifecycle.training import build_pipeline, serialise

        production = self.registry.get_manifest(model, assembled["production_version"])
        x, y = _matrix(self.store.get(assembled["train"]), production)
        started = time.perf_counter()
        pipeline = build_pipeline(production.schema, production.task, production.params)
        pipeline.fit(x, y)
        data = serialise(pipeline)
        return {
            "candidate": self.store.put(f"{WORK_PREFIX}{model}/{execution}/candidate.joblib", data),
            "train_rows": int(len(x)),
            "fit_seconds": round(time.perf_counter() - started, 2),
            "params": production.params,
        }

    # 4 --------------------------------------------------------------- evaluate
    def evaluate(self, model: str, assembled: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        import joblib

        from sklambda.lifecycle.training import holdout_metrics
        from sklambda.serving.loader import load_version

        production = self.registry.get_manifest(model, assembled["production_version"])
        x, y = _matrix(self.store.get(assembled["holdout"]), production)
        if len(x) == 0:
            raise RetrainError("the holdout is empty")
        candidate = joblib.load(io.BytesIO(self.store.get(trained["candidate"])))
        current = load_version(self.registry, production).estimator
        cand_metrics = holdout_metrics(production.task, candidate, x, y)
        prod_metrics = holdout_metrics(production.task, current, x, y)
        metric, cand_score = score_of(production.task, cand_metrics)
        _, prod_score = score_of(production.task, prod_metrics)
        return {
            "metric": metric,
            "candidate_score": cand_score,
            "production_score": prod_score,
            "required_score": round(prod_score - self.config.margin, 6),
            "floor": self.config.floor,
            "margin": self.config.margin,
            "candidate_metrics": cand_metrics,
            "production_metrics": prod_metrics,
            "holdout_rows": int(len(x)),
        }

    # 6 ---------------------------------------------------------------- publish
    def publish(
        self,
        model: str,
        execution: str,
        assembled: dict[str, Any],
        trained: dict[str, Any],
        evaluation: dict[str, Any],
        accepted: bool,
    ) -> dict[str, Any]:
        from sklambda.lifecycle.training import dataset_bytes, library_versions
        from sklambda.monitoring.drift import baseline_profile

        production = self.registry.get_manifest(model, assembled["production_version"])
        train_data = self.store.get(assembled["train"])
        x, y = _matrix(train_data, production)
        if accepted:
            reason = None
        elif evaluation["candidate_score"] < evaluation["floor"]:
            reason = (
                f"{evaluation['metric']} {evaluation['candidate_score']:.4f} is below the floor {evaluation['floor']}"
            )
        else:
            reason = (
                f"{evaluation['metric']} {evaluation['candidate_score']:.4f} is worse than production's "
                f"{evaluation['production_score']:.4f} by more than the margin {evaluation['margin']}"
            )
        artifacts = {
            "model.joblib": self.store.get(trained["candidate"]),
            "baseline.json": json.dumps(baseline_profile(x, production.schema), separators=(",", ":")).encode(),
            "training.jsonl.gz": dataset_bytes(x, y, production.schema),
        }
        # The lean serving artifact (sklambda.lean), parity-checked on the retrain's holdout.
        import joblib

        from sklambda.lifecycle.lean import publish_parts

        holdout_x, _ = _matrix(self.store.get(assembled["holdout"]), production)
        candidate = joblib.load(io.BytesIO(artifacts["model.joblib"]))
        lean_artifacts, lean_runtimes, lean_record = publish_parts(
            candidate, production.schema, production.task, holdout_x
        )
        artifacts.update(lean_artifacts)
        manifest = self.registry.publish_version(
            name=model,
            artifacts=artifacts,
            runtimes={"model.joblib": "sklearn-joblib", **lean_runtimes},
            manifest_fields={
                "task": production.task,
                "features": [f.model_dump() for f in production.features],
                "target": production.target,
                "classes": production.classes,
                "libraries": library_versions(),
                "metrics": {
                    "holdout": evaluation["candidate_metrics"],
                    "holdout_rows": evaluation["holdout_rows"],
                    "production_on_same_holdout": evaluation["production_metrics"],
                    "train_rows": trained["train_rows"],
                },
                "params": production.params,
                "parent_version": production.version,
                "training_data": {
                    "source": f"retrain {execution}",
                    "rows": trained["train_rows"],
                    "labelled_rows": assembled["labelled_rows"],
                    "holdout": assembled["holdout_source"],
                },
                "description": f"retrained from v{production.version} by {execution}",
                "status": "candidate" if accepted else "rejected",
                "status_reason": reason,
                "lean": lean_record,
            },
        )
        return {"version": manifest.version, "status": manifest.status, "reason": reason}

    # 7 ----------------------------------------------------------------- canary
    def canary_start(self, model: str, version: str) -> dict[str, Any]:
        record = self.registry.set_canary(
            model, version, self.config.canary_weight, self.alias, reason="retrain canary"
        )
        return {
            "version": version,
            "weight": self.config.canary_weight,
            "production": record.version,
            "started_at": utcnow(),
            "started_epoch": time.time(),
        }

    def canary_check(
        self, model: str, canary: dict[str, Any], metrics: Callable[..., dict[str, float]]
    ) -> dict[str, Any]:
        """Promote when the candidate's errors, latency and (if labels arrived) quality are healthy."""
        version = canary["version"]
        seen = metrics(model=model, version=version, since=float(canary["started_epoch"]))
        problems = []
        if seen.get("errors", 0) > 0:
            problems.append(f"{seen['errors']:.0f} errors")
        if seen.get("requests", 0) < self.config.canary_min_requests:
            problems.append(f"only {seen.get('requests', 0):.0f} requests (< {self.config.canary_min_requests})")
        if seen.get("max_latency_ms") is not None and seen["max_latency_ms"] > self.config.canary_max_latency_ms:
            problems.append(f"latency {seen['max_latency_ms']:.0f} ms > {self.config.canary_max_latency_ms:.0f} ms")
        now = self.clock()
        labelled = self.store.labelled_captures(model, now - timedelta(hours=2), now)
        quality = {}
        for role, v in (("candidate", version), ("production", canary["production"])):
            rows = [r for r in labelled if r["version"] == v]
            if rows:
                quality[role] = sum(r["prediction"] == r["label"] for r in rows) / len(rows)
        if (
            "candidate" in quality
            and "production" in quality
            and quality["candidate"] < quality["production"] - self.config.margin
        ):
            problems.append(f"live accuracy {quality['candidate']:.3f} < production {quality['production']:.3f}")
        if problems:
            self.registry.promote(
                model, canary["production"], self.alias, reason=f"canary v{version} rolled back: {'; '.join(problems)}"
            )
            return {
                "outcome": "rolled_back",
                "version": version,
                "serving": canary["production"],
                "problems": problems,
                "observed": seen,
                "live_quality": quality,
            }
        self.registry.promote(model, version, self.alias, reason="canary passed")
        return {
            "outcome": "promoted",
            "version": version,
            "serving": version,
            "problems": [],
            "observed": seen,
            "live_quality": quality,
        }

    def abort(self, model: str, execution: str, canary_version: str | None) -> dict[str, Any]:
        """Failure path: make sure production serves the last good version, then release the lock."""
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
        return {
            "serving": restored or (found.record.version if found else None),
            "released": self.store.release(model, execution),
        }


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
    )
    return RetrainPipeline(
        ModelRegistry(s3_client(), settings.model_bucket),
        RetrainStore(s3_client(), settings.capture_bucket),
        config,
        alias=settings.model_alias,
    )
