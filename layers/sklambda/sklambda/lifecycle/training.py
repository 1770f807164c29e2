"""Training and packaging: schema → scikit-learn pipeline → verified registry version.

The pipeline takes the same matrix the predict path builds (columns in schema order, object dtype
when there are categories), so serving needs no pandas. Its recipe (estimator and
hyperparameters) is recorded in the manifest so a retrain can rebuild it exactly.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.registry.manifest import Manifest
from sklambda.registry.store import ModelRegistry

Progress = Callable[[str], None]

DEFAULT_PARAMS: dict[str, Any] = {
    "estimator": "random_forest",
    "n_estimators": 100,
    "max_depth": 12,
    "min_samples_leaf": 2,
    "random_state": 0,
}
MAX_CATEGORIES = 200


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


def build_pipeline(schema: FeatureSchema, task: str, params: dict[str, Any]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    numeric = [i for i, f in enumerate(schema.features) if f.type != "category"]
    categorical = [i for i, f in enumerate(schema.features) if f.type == "category"]
    parts = []
    if numeric:
        needs_imputer = any(schema.features[i].nullable for i in numeric)
        parts.append(("numeric", SimpleImputer(strategy="median") if needs_imputer else "passthrough", numeric))
    if categorical:
        encoder = OneHotEncoder(
            categories=[list(schema.features[i].categories or []) for i in categorical],
            handle_unknown="ignore",  # the API refuses unknown categories unless the schema allows them
            sparse_output=False,
            dtype=np.float32,
        )
        steps: list[tuple[str, Any]] = []
        if any(schema.features[i].nullable for i in categorical):
            steps.append(("impute", SimpleImputer(strategy="constant", fill_value="__missing__")))
        steps.append(("onehot", encoder))
        parts.append(("categorical", Pipeline(steps) if len(steps) > 1 else encoder, categorical))
    if params.get("estimator", "random_forest") != "random_forest":
        raise ValueError(f"unknown estimator {params.get('estimator')!r}; supported: random_forest")
    kwargs = {k: params[k] for k in ("n_estimators", "max_depth", "min_samples_leaf", "random_state") if k in params}
    model = (
        RandomForestClassifier(n_jobs=1, **kwargs)
        if task == "classification"
        else RandomForestRegressor(n_jobs=1, **kwargs)
    )
    return Pipeline([("features", ColumnTransformer(parts, remainder="drop")), ("model", model)])


def holdout_metrics(task: str, estimator: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    if task == "classification":
        proba = estimator.predict_proba(x)
        pred = estimator.classes_[np.argmax(proba, axis=1)]
        out = {
            "accuracy": float(skm.accuracy_score(y, pred)),
            "f1_macro": float(skm.f1_score(y, pred, average="macro")),
            "log_loss": float(skm.log_loss(y, proba, labels=estimator.classes_)),
        }
        if len(estimator.classes_) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1]))
        return {k: round(v, 6) for k, v in out.items()}
    pred = estimator.predict(x)
    return {
        "rmse": round(float(np.sqrt(skm.mean_squared_error(y, pred))), 6),
        "mae": round(float(skm.mean_absolute_error(y, pred)), 6),
        "r2": round(float(skm.r2_score(y, pred)), 6),
    }


@dataclass
class TrainedModel:
    estimator: Any
    schema: FeatureSchema
    task: str
    target: str
    classes: list[Any] | None
    metrics: dict[str, Any]
    params: dict[str, Any]
    training_data: dict[str, Any]
    # The rows the model was fitted on: the drift baseline is profiled from them at publish time.
    reference: np.ndarray | None = None
    # Held-out rows (never fitted on): the lean runtime's parity check runs on them at publish time.
    holdout: np.ndarray | None = None
    reference_labels: np.ndarray | None = None


def train(
    x: np.ndarray,
    y: np.ndarray,
    schema: FeatureSchema,
    *,
    task: str,
    target: str,
    params: dict[str, Any] | None = None,
    holdout_fraction: float = 0.2,
    training_data: dict[str, Any] | None = None,
    progress: Progress = _noop,
) -> TrainedModel:
    """Fit the schema's pipeline and measure it on a held-out split."""
    from sklearn.model_selection import train_test_split

    params = {**DEFAULT_PARAMS, **(params or {})}
    stratify = y if task == "classification" and len(np.unique(y)) > 1 else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=holdout_fraction, random_state=params.get("random_state", 0), stratify=stratify
    )
    progress(f"fitting {params['estimator']} on {len(x_train):,} rows x {x.shape[1]} features")
    started = time.perf_counter()
    pipeline = build_pipeline(schema, task, params)
    pipeline.fit(x_train, y_train)
    progress(f"fitted in {time.perf_counter() - started:.1f}s; evaluating on {len(x_test):,} held-out rows")
    metrics = holdout_metrics(task, pipeline, x_test, y_test)
    classes = np.asarray(pipeline.classes_).tolist() if task == "classification" else None
    return TrainedModel(
        estimator=pipeline,
        schema=schema,
        task=task,
        target=target,
        classes=classes,
        metrics={"holdout": metrics, "holdout_rows": int(len(x_test)), "train_rows": int(len(x_train))},
        params=params,
        training_data=training_data or {"rows": int(len(x))},
        reference=x_train,
        holdout=x_test,
        reference_labels=y_train,
    )


def serialise(estimator: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    return buffer.getvalue()


def publish(
    registry: ModelRegistry,
    name: str,
    trained: TrainedModel,
    *,
    description: str | None = None,
    parent_version: str | None = None,
    extra_artifacts: dict[str, bytes] | None = None,
    lean: bool = True,
    progress: Progress = _noop,
) -> Manifest:
    progress("serialising the pipeline")
    artifacts = {"model.joblib": serialise(trained.estimator)}
    runtimes = {"model.joblib": "sklearn-joblib"}
    lean_record = None
    if lean:
        from sklambda.lifecycle.lean import convert
        from sklambda.serving import trees

        rows, source = (trained.holdout, "holdout") if trained.holdout is not None else (trained.reference, "training")
        progress("converting the pipeline for the lean runtime (sklambda-trees) and checking it on held-out rows")
        conversion = convert(trained.estimator, trained.schema, trained.task, rows, source=source)
        lean_record = conversion.record()
        if conversion.accepted and conversion.artifact is not None:
            artifacts[trees.ARTIFACT] = conversion.artifact
            runtimes[trees.ARTIFACT] = trees.RUNTIME
            check = conversion.parity
            progress(
                f"lean runtime accepted: {check['rows']:,} {source} rows, labels equal {check['labels_equal']}, "
                f"max difference {check['max_abs_diff']:.3g}"
            )
        else:
            progress(f"lean runtime not used, scikit-learn will serve: {conversion.reason}")
    if trained.reference is not None:
        from sklambda.monitoring.drift import baseline_profile

        progress(f"profiling {len(trained.reference):,} training rows for the drift baseline")
        artifacts["baseline.json"] = json.dumps(
            baseline_profile(trained.reference, trained.schema), separators=(",", ":")
        ).encode()
        if trained.reference_labels is not None:
            progress("storing the training rows for future retrains")
            artifacts["training.jsonl.gz"] = dataset_bytes(trained.reference, trained.reference_labels, trained.schema)
    artifacts.update(extra_artifacts or {})
    fields = {
        "task": trained.task,
        "features": [f.model_dump() for f in trained.schema.features],
        "target": trained.target,
        "classes": trained.classes,
        "libraries": library_versions(),
        "metrics": trained.metrics,
        "params": trained.params,
        "training_data": trained.training_data,
        "parent_version": parent_version,
        "description": description,
        "lean": lean_record,
    }
    return registry.publish_version(
        name=name,
        artifacts=artifacts,
        manifest_fields=fields,
        runtimes=runtimes,
        progress=progress,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def dataset_bytes(x: np.ndarray, y: np.ndarray, schema: FeatureSchema) -> bytes:
    """Rows as gzipped JSON lines ``{"features": {...}, "label": ...}`` (the retrain input format)."""
    import gzip

    names = schema.names
    lines = [
        json.dumps(
            {"features": {n: _plain(v) for n, v in zip(names, row, strict=True)}, "label": _plain(label)},
            separators=(",", ":"),
        )
        for row, label in zip(x.tolist(), y.tolist(), strict=True)
    ]
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)


def read_dataset(data: bytes, schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of ``dataset_bytes``: (matrix in schema order, labels)."""
    import gzip

    from sklambda.serving.validation import InstanceValidator

    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rows, labels = [], []
    for line in data.splitlines():
        if line.strip():
            doc = json.loads(line)
            rows.append(doc["features"])
            labels.append(doc["label"])
    if not rows:
        return np.empty((0, len(schema.features))), np.array([])
    return InstanceValidator(schema).to_matrix(rows), np.array(labels)


def describe_estimator(estimator: Any, schema: FeatureSchema | None) -> tuple[str, list[Any] | None, FeatureSchema]:
    """Task, classes and schema of a user-supplied fitted estimator (for ``sklambda publish``)."""
    classes = getattr(estimator, "classes_", None)
    task = "classification" if classes is not None else "regression"
    if schema is None:
        names = getattr(estimator, "feature_names_in_", None)
        count = getattr(estimator, "n_features_in_", None)
        if names is None and count is None:
            raise ValueError("the estimator does not say how many features it takes; pass a schema file")
        labels = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(int(count or 0))]
        schema = FeatureSchema(features=[FeatureSpec(name=n, type="number") for n in labels])
    return task, (np.asarray(classes).tolist() if classes is not None else None), schema


# ----------------------------------------------------------------------------- CSV
def read_csv(text: str, target: str, *, task: str | None = None) -> tuple[np.ndarray, np.ndarray, FeatureSchema, str]:
    """Parse a CSV with a header row; infer each feature's type and the task.

    Numeric columns become number/integer features; other columns become categories (at most
    MAX_CATEGORIES distinct values). Empty cells make a feature nullable.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ValueError("the CSV is empty") from None
    if target not in header:
        raise ValueError(f"target column {target!r} not in the CSV header ({', '.join(header)})")
    rows = [r for r in reader if any(cell.strip() for cell in r)]
    if len(rows) < 10:
        raise ValueError(f"the CSV has {len(rows)} data rows; at least 10 are needed")
    for i, r in enumerate(rows, start=2):
        if len(r) != len(header):
            raise ValueError(f"line {i}: {len(r)} cells, header has {len(header)}")
    columns = {h: [r[j].strip() for r in rows] for j, h in enumerate(header)}
    specs: list[FeatureSpec] = []
    matrix_cols: list[np.ndarray] = []
    for name in header:
        if name == target:
            continue
        values = columns[name]
        present = [v for v in values if v != ""]
        nullable = len(present) < len(values)
        numbers = _as_floats(present)
        if numbers is not None:
            kind = "integer" if all(float(v).is_integer() for v in numbers) else "number"
            specs.append(FeatureSpec(name=name, type=kind, nullable=nullable))
            matrix_cols.append(np.array([float(v) if v != "" else np.nan for v in values], dtype=object))
        else:
            cats = sorted(set(present))
            if len(cats) > MAX_CATEGORIES:
                raise ValueError(f"column {name!r} has {len(cats)} distinct text values; at most {MAX_CATEGORIES}")
            specs.append(FeatureSpec(name=name, type="category", categories=cats, nullable=nullable))
            matrix_cols.append(np.array([v if v != "" else None for v in values], dtype=object))
    schema = FeatureSchema(features=specs)
    raw_y = columns[target]
    if any(v == "" for v in raw_y):
        raise ValueError(f"target column {target!r} has empty cells")
    y_numbers = _as_floats(raw_y)
    if task is None:
        distinct = set(raw_y)
        task = (
            "classification"
            if y_numbers is None or (len(distinct) <= 20 and all(float(v).is_integer() for v in y_numbers))
            else "regression"
        )
    if task == "regression":
        if y_numbers is None:
            raise ValueError(f"target {target!r} is not numeric; regression needs numbers")
        y = np.array(y_numbers, dtype=float)
    elif y_numbers is not None and all(float(v).is_integer() for v in y_numbers):
        y = np.array([int(float(v)) for v in raw_y])
    else:
        y = np.array(raw_y, dtype=object)
    dtype = np.float64 if schema.all_numeric else object
    x = np.column_stack(matrix_cols).astype(dtype)
    return x, y, schema, task


def _as_floats(values: list[str]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except ValueError:
        return None
    if any(not np.isfinite(v) for v in out):
        return None
    return out
