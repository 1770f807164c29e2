"""Training: schema → scikit-learn pipeline, fitted and measured on a held-out split.

The pipeline takes the same matrix the predict path builds (columns in schema order, object dtype
when there are categories), so serving needs no pandas. Its recipe (estimator and
hyperparameters) is recorded in the manifest so a retrain can rebuild it exactly. Publishing the
result is ``publish.publish_version`` (``publish`` here hands a ``TrainedModel`` to it).
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from sklambda.lifecycle.evaluation import holdout_metrics
from sklambda.lifecycle.publish import Progress, Task, publish_version
from sklambda.registry.features import FeatureSchema, FeatureSpec, FeatureType
from sklambda.registry.manifest import Manifest
from sklambda.registry.store import ModelRegistry

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


@dataclass
class TrainedModel:
    estimator: Any
    schema: FeatureSchema
    task: Task
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
    holdout_labels: np.ndarray | None = None


def train(
    x: np.ndarray,
    y: np.ndarray,
    schema: FeatureSchema,
    *,
    task: Task,
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
        holdout_labels=y_test,
    )


def publish(
    registry: ModelRegistry,
    name: str,
    trained: TrainedModel,
    *,
    description: str | None = None,
    parent_version: str | None = None,
    lean: bool = True,
    progress: Progress = _noop,
) -> Manifest:
    """Publish a trained model with its holdout (lean parity), training rows (baseline, retrain data)
    and recipe."""
    return publish_version(
        registry,
        name,
        trained.estimator,
        trained.schema,
        trained.task,
        holdout_x=trained.holdout,
        holdout_y=trained.holdout_labels,
        training_x=trained.reference,
        training_y=trained.reference_labels,
        target=trained.target,
        metrics=trained.metrics,
        params=trained.params,
        training_data=trained.training_data,
        parent_version=parent_version,
        description=description,
        lean=lean,
        progress=progress,
    )


# ----------------------------------------------------------------------------- CSV
def read_csv(text: str, target: str, *, task: Task | None = None) -> tuple[np.ndarray, np.ndarray, FeatureSchema, Task]:
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
            kind: FeatureType = "integer" if all(float(v).is_integer() for v in numbers) else "number"
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
