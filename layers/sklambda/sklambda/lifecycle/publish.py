"""Publishing a version: the one path from a fitted estimator to an immutable registry version.

Training (``training.publish``), the CLI's ``sklambda publish`` and the retrain pipeline's publish
step all come here, so every version gets the same artifacts and manifest:

- ``model.joblib``, the canonical scikit-learn artifact;
- the lean serving artifact when the pipeline converts, parity-checked on the holdout rows (or the
  training rows when there is no holdout), and the manifest's ``lean`` record either way;
- ``baseline.json``, the drift reference profile of the training rows, when they are given;
- ``multivariate.json``, the PCA whose reconstruction error watches the relations between features
  (``monitoring.multivariate``), from the training rows;
- ``calibration.json``, a classifier's calibrated probabilities on the held-out rows, for the
  label-free performance estimate (``monitoring.performance``), when they have labels;
- ``training.jsonl.gz``, the training rows and labels, when both are given (what a retrain starts from);
- the manifest: task, schema, classes, library versions, metrics, recipe, lineage and status.
"""

from __future__ import annotations

import io
import json
import platform
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from sklambda.lifecycle.datasets import TRAINING_DATA, dataset_bytes
from sklambda.registry.features import FeatureSchema
from sklambda.registry.manifest import Manifest
from sklambda.registry.store import ModelRegistry

Progress = Callable[[str], None]
Task = Literal["classification", "regression"]

MODEL_ARTIFACT = "model.joblib"
SKLEARN_RUNTIME = "sklearn-joblib"
BASELINE = "baseline.json"
CALIBRATION = "calibration.json"
MULTIVARIATE = "multivariate.json"


def _noop(_: str) -> None:
    return None


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("scikit-learn", "numpy", "scipy", "joblib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def serialise(estimator: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def _classes(estimator: Any, task: Task) -> list[Any] | None:
    classes = getattr(estimator, "classes_", None)
    if task == "regression":
        return None
    if classes is None:
        raise ValueError(f"a classifier must have classes_; {type(estimator).__name__} has none")
    return np.asarray(classes).tolist()


def _calibration(
    estimator: Any, x: np.ndarray, y: np.ndarray, classes: list[Any] | None, source: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The held-out rows' calibration of a classifier's probabilities (``monitoring.performance``)."""
    if not hasattr(estimator, "predict_proba"):
        return None, f"{type(estimator).__name__} has no predict_proba"
    from sklambda.monitoring.performance import fit_calibration

    try:
        probabilities = estimator.predict_proba(x)
        predictions = estimator.predict(x)
    except Exception as err:  # an estimator whose predict_proba is unavailable (e.g. SVC without probability)
        return None, f"predict_proba failed on the held-out rows: {type(err).__name__}"
    return fit_calibration(
        classes or [], probabilities, np.asarray(predictions).tolist(), np.asarray(y).tolist(), source=source
    )


def publish_version(
    registry: ModelRegistry,
    name: str,
    estimator: Any,
    schema: FeatureSchema,
    task: Task,
    *,
    holdout_x: np.ndarray | None = None,
    holdout_y: np.ndarray | None = None,
    training_x: np.ndarray | None = None,
    training_y: np.ndarray | None = None,
    target: str | None = None,
    metrics: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    training_data: dict[str, Any] | None = None,
    parent_version: str | None = None,
    description: str | None = None,
    status: Literal["candidate", "rejected"] = "candidate",
    status_reason: str | None = None,
    lean: bool = True,
    lacks: list[str] | None = None,
    verify: Callable[[dict[str, bytes], dict[str, str], dict[str, Any]], None] | None = None,
    progress: Progress = _noop,
) -> Manifest:
    """Publish a fitted ``estimator`` (taking the schema's columns in order) as the next version of
    ``name`` and return its manifest.

    Rows are matrices in schema order. ``holdout_x`` decides the lean conversion (its parity check);
    with ``holdout_y`` and no ``metrics``, the holdout metrics are measured here. ``training_x``
    gives the drift baseline, with ``training_y`` the stored training data. ``params`` is the recipe
    a retrain rebuilds (``training.build_pipeline``); ``status`` marks a retrain's rejected candidate.
    ``lacks`` says in plain words what the version cannot do; ``verify(artifacts, runtimes, fields)``
    runs before anything is written and refuses the version by raising.
    """
    classes = _classes(estimator, task)
    if metrics is None:
        metrics = {}
        if holdout_x is not None and holdout_y is not None and len(holdout_x):
            from sklambda.lifecycle.evaluation import holdout_metrics

            metrics = {
                "holdout": holdout_metrics(task, estimator, holdout_x, holdout_y),
                "holdout_rows": len(holdout_x),
            }
    progress("serialising the pipeline")
    artifacts = {MODEL_ARTIFACT: serialise(estimator)}
    runtimes = {MODEL_ARTIFACT: SKLEARN_RUNTIME}
    lean_record = None
    if lean:
        from sklambda.lifecycle.lean import publish_parts

        rows, source = (holdout_x, "holdout") if holdout_x is not None else (training_x, "training")
        progress(f"converting the pipeline for the lean runtime and checking it on {source} rows")
        lean_artifacts, lean_runtimes, lean_record = publish_parts(estimator, schema, task, rows, source=source)
        artifacts.update(lean_artifacts)
        runtimes.update(lean_runtimes)
        parity = lean_record.get("parity") or {}
        if lean_record.get("accepted"):
            progress(
                f"lean runtime accepted: {parity.get('rows', 0):,} {source} rows, labels equal "
                f"{parity.get('labels_equal')}, max difference {parity.get('max_abs_diff', 0.0):.3g}"
            )
        else:
            progress(f"lean runtime not used, scikit-learn will serve: {lean_record.get('reason')}")
    if training_x is not None:
        from sklambda.monitoring.drift import baseline_profile

        progress(f"profiling {len(training_x):,} training rows for the drift baseline")
        artifacts[BASELINE] = json.dumps(baseline_profile(training_x, schema), separators=(",", ":")).encode()
        if training_y is not None:
            progress("storing the training rows for future retrains")
            artifacts[TRAINING_DATA] = dataset_bytes(training_x, training_y, schema)
        from sklambda.monitoring.multivariate import fit_multivariate

        multivariate, why = fit_multivariate(training_x, schema)
        if multivariate is not None:
            artifacts[MULTIVARIATE] = json.dumps(multivariate, separators=(",", ":")).encode()
            width, kept = len(multivariate["centre"]), len(multivariate["components"])
            progress(f"multivariate drift: PCA of {width} encoded columns, {kept} components kept")
        else:
            progress(f"no multivariate drift reference: {why}")
    if task == "classification" and holdout_x is not None and holdout_y is not None and len(holdout_x):
        # sklambda.publish without X_holdout draws the holdout from the rows given, which the pipeline may
        # have been fitted on: the report then warns that the estimate may be optimistic.
        drawn = ((params or {}).get("notes") or {}).get("holdout") not in (None, "given")
        source = "rows drawn from the training data (the estimate may be optimistic)" if drawn else "held-out"
        calibration, why = _calibration(estimator, holdout_x, holdout_y, classes, source)
        if calibration is not None:
            artifacts[CALIBRATION] = json.dumps(calibration, separators=(",", ":")).encode()
            progress(f"calibrated the probabilities on {calibration['rows']:,} held-out rows (label-free estimate)")
        else:
            progress(f"no label-free performance estimate: {why}")
    fields = {
        "task": task,
        "features": [f.model_dump() for f in schema.features],
        "target": target,
        "classes": classes,
        "libraries": library_versions(),
        "metrics": metrics,
        "params": params or {},
        "training_data": training_data,
        "parent_version": parent_version,
        "description": description,
        "status": status,
        "status_reason": status_reason,
        "lean": lean_record,
    }
    if lacks:
        fields["lacks"] = list(lacks)
    if verify is not None:
        # Before anything is written: the caller scores sample rows with the runtime that will serve these
        # artifacts and raises if it does not answer exactly like the estimator it was given.
        verify(artifacts, runtimes, fields)
    return registry.publish_version(
        name=name, artifacts=artifacts, manifest_fields=fields, runtimes=runtimes, progress=progress
    )
