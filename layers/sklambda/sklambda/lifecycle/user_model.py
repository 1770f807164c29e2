"""Bring your own model: a pipeline a user fitted (on a DataFrame or arrays) becomes a servable version.

``publish_user_model`` is what ``sklambda.publish(...)`` and ``sklambda publish MODEL_FILE`` run:

1. **Refuse what cannot run on Lambda** — classes or functions defined in a notebook or a user's
   module (``fallback.foreign_code``).
2. **The schema** from the data (``schemas.schema_from_data``, refined by the fitted encoders) or,
   without data, from the pipeline itself (``schemas.schema_from_pipeline``) — never a guess.
3. **What serves** — the scikit-learn copy that takes the predict path's matrix
   (``fallback.servable_copy``) and, when the pipeline converts, the lean artifact (the publish path's
   parity gate against that copy, on the user's rows plus adversarial ones).
4. **Never a broken promotion** — before anything is written, a clean process (no notebook code, no
   pandas) loads the runtime that will serve the version and scores the user's own rows through the
   API's validator; labels must equal the user's estimator's and probabilities/values be within 1e-9
   (``serving_check``). Otherwise :class:`PublishRefused` with the reason, and nothing is written.
5. **The loop** — with ``X`` and ``y``: the drift baseline, the stored training set (retrain refits
   a clone of this pipeline on it plus labelled captures) and holdout metrics (on ``X_holdout`` /
   ``y_holdout``, or a split drawn from the rows given). Without them the manifest's ``lacks`` says
   what the version cannot do and how to add it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sklambda.lifecycle import fallback, schemas
from sklambda.lifecycle.publish import Task, publish_version
from sklambda.lifecycle.serving_check import ServingCheckFailed, check
from sklambda.registry.features import FeatureSchema
from sklambda.registry.manifest import Manifest
from sklambda.registry.store import ModelRegistry

SAMPLE_ROWS = 400
HOLDOUT_SHARE = 0.2
RECIPE = "clone"  # a retrain refits sklearn.base.clone(the served pipeline): same steps, same hyperparameters

NO_DATA_LACKS = [
    "no drift baseline: the drift job skips this version",
    "no training data: retrain refuses this version",
]
HOW_TO_ADD = (
    "publish again with the training data: sklambda.publish(model, X, y, name=...) in Python, or "
    "`sklambda publish MODEL_FILE --name NAME --data train.csv --target COLUMN`"
)


class PublishRefused(ValueError):
    """The pipeline cannot be served correctly; nothing was published. The message says why."""


@dataclass
class Published:
    """What publishing did: the manifest, the runtime that serves it, and what it lacks."""

    manifest: Manifest
    runtime: str
    serving_check: dict[str, Any]
    lacks: list[str] = field(default_factory=list)

    def summary(self) -> str:
        m = self.manifest
        lean = m.lean
        lines = [f"published {m.name} v{m.version} ({m.task}, {len(m.features)} features)"]
        if lean is not None and lean.accepted:
            lines.append(f"  served by the lean runtime ({self.runtime}): no scikit-learn import on the request path")
        else:
            reason = lean.reason if lean is not None else "lean conversion not attempted"
            lines.append(f"  served by scikit-learn: {reason}")
        lines.append(
            f"  checked before writing: {self.serving_check['rows']} of your rows scored by that runtime in a clean "
            f"process, max difference {self.serving_check['max_abs_diff']:.3g}"
        )
        holdout = m.metrics.get("holdout") or {}
        if holdout:
            lines.append("  holdout: " + ", ".join(f"{k}={v}" for k, v in holdout.items()))
        for item in self.lacks:
            lines.append(f"  lacks {item}")
        if self.lacks:
            lines.append(f"  to add them, {HOW_TO_ADD}")
        return "\n".join(lines)


def _noop(_: str) -> None:
    return None


def task_of(estimator: Any) -> Task:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator) or (not is_regressor(estimator) and getattr(estimator, "classes_", None) is not None):
        return "classification"
    if not hasattr(estimator, "predict"):
        raise PublishRefused(f"{type(estimator).__name__} has no predict(): publish a fitted estimator or pipeline")
    return "regression"


def _rows(x: Any, index: np.ndarray) -> Any:
    return x.iloc[index] if hasattr(x, "iloc") else np.asarray(x)[index]


def _labels(y: Any) -> np.ndarray:
    values = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    return values.reshape(-1)


def _instances(matrix: np.ndarray, schema: FeatureSchema) -> list[dict[str, Any]]:
    """The JSON instances a client would send for these rows (objects keyed by feature name)."""
    out = []
    for row in matrix.tolist():
        instance: dict[str, Any] = {}
        for spec, value in zip(schema.features, row, strict=True):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                instance[spec.name] = None
            elif spec.type == "boolean":
                instance[spec.name] = bool(value)
            elif spec.type == "integer":
                instance[spec.name] = int(value)
            elif spec.type == "number":
                instance[spec.name] = float(value)
            else:
                instance[spec.name] = value
        out.append(instance)
    return out


def _sample_frame(schema: FeatureSchema, estimator: Any) -> tuple[Any, np.ndarray]:
    """Without data: rows built from the schema (every category, zeros) in the form the pipeline was fitted on."""
    n = max(2, max((len(f.categories or []) for f in schema.features), default=1))
    columns: dict[str, list[Any]] = {}
    for spec in schema.features:
        if spec.type == "category":
            cats = spec.categories or []
            columns[spec.name] = [cats[i % len(cats)] for i in range(n)]
        elif spec.type == "boolean":
            columns[spec.name] = [bool(i % 2) for i in range(n)]
        else:
            columns[spec.name] = [float(i % 3) for i in range(n)]
    if hasattr(estimator, "feature_names_in_"):
        import pandas as pd

        frame = pd.DataFrame(columns)
        return frame, schemas.matrix_of(frame, schema)
    matrix = np.column_stack(
        [
            np.asarray(v, dtype=object if s.type == "category" else np.float64)
            for s, v in zip(schema.features, columns.values(), strict=True)
        ]
    )
    return matrix, matrix


def _expected(estimator: Any, x: Any, task: Task) -> tuple[list[Any], list[list[float]] | None]:
    if task == "classification" and hasattr(estimator, "predict_proba"):
        proba = np.asarray(estimator.predict_proba(x), dtype=np.float64)
        labels = np.asarray(estimator.classes_)[np.argmax(proba, axis=1)]
        return labels.tolist(), proba.tolist()
    return np.asarray(estimator.predict(x)).tolist(), None


def publish_user_model(
    registry: ModelRegistry,
    name: str,
    estimator: Any,
    x: Any = None,
    y: Any = None,
    *,
    x_holdout: Any = None,
    y_holdout: Any = None,
    schema: FeatureSchema | None = None,
    feature_names: list[str] | None = None,
    target: str | None = None,
    description: str | None = None,
    source: dict[str, Any] | None = None,
    random_state: int = 0,
    progress: Callable[[str], None] = _noop,
) -> Published:
    """Publish a user's fitted estimator as the next version of ``name`` (see the module docstring)."""
    foreign = fallback.foreign_code(estimator)
    if foreign:
        raise PublishRefused(
            "the pipeline uses code the Lambda cannot import: " + ", ".join(foreign) + ". The layers ship "
            "scikit-learn, numpy, scipy and sklambda: use their transformers, or put your code in a package "
            "and add it to a layer"
        )
    task = task_of(estimator)
    if (x is None) != (y is None) and x_holdout is None:
        raise PublishRefused("pass both X and y (the training data), or neither")
    try:
        if schema is None:
            if x is not None:
                schema = schemas.schema_from_data(x, estimator, names=feature_names)
            else:
                schema = schemas.schema_from_pipeline(estimator)
    except schemas.SchemaError as err:
        raise PublishRefused(str(err)) from err
    progress(
        f"{len(schema.features)} features: "
        + ", ".join(f"{f.name} ({f.type})" for f in schema.features[:8])
        + (" …" if len(schema.features) > 8 else "")
    )

    training_x = training_y = holdout_x = holdout_y = None
    sample_x: Any
    notes: dict[str, Any] = {}
    if x is not None and y is not None:
        labels = _labels(y)
        if len(labels) != (len(x) if hasattr(x, "iloc") else np.asarray(x).shape[0]):
            raise PublishRefused("X and y have different numbers of rows")
        training_x, training_y = schemas.matrix_of(x, schema), labels
        if x_holdout is not None and y_holdout is not None:
            hx, hy = x_holdout, _labels(y_holdout)
            notes["holdout"] = "given"
        else:
            rng = np.random.default_rng(random_state)
            order = rng.permutation(len(labels))
            cut = max(1, int(round(len(labels) * HOLDOUT_SHARE)))
            hx, hy = _rows(x, order[:cut]), labels[order[:cut]]
            notes["holdout"] = (
                f"a random {HOLDOUT_SHARE:.0%} of the rows given (seed {random_state}); if the pipeline was fitted on "
                "them these scores are optimistic: pass X_holdout/y_holdout for an honest estimate"
            )
        holdout_x, holdout_y = schemas.matrix_of(hx, schema), hy
        sample_x, sample_matrix = hx, holdout_x
    elif x_holdout is not None:
        sample_x, sample_matrix = x_holdout, schemas.matrix_of(x_holdout, schema)
    else:
        sample_x, sample_matrix = _sample_frame(schema, estimator)
    take = min(SAMPLE_ROWS, len(sample_matrix))
    sample_x, sample_matrix = _rows(sample_x, np.arange(take)), sample_matrix[:take]
    expected_predictions, expected_probabilities = _expected(estimator, sample_x, task)
    instances = _instances(sample_matrix, schema)

    served = fallback.servable_copy(estimator, schema)
    lacks = [] if training_x is not None else list(NO_DATA_LACKS)
    measured: dict[str, Any] = {}

    def verify(artifacts: dict[str, bytes], runtimes: dict[str, str], fields: dict[str, Any]) -> None:
        progress(f"checking {len(instances)} of your rows through the serving runtime in a clean process")
        try:
            measured.update(check(artifacts, runtimes, fields, instances, expected_predictions, expected_probabilities))
        except ServingCheckFailed as err:
            raise PublishRefused(f"not published: {err}") from err

    manifest = publish_version(
        registry,
        name,
        served,
        schema,
        task,
        holdout_x=holdout_x if holdout_x is not None else sample_matrix,
        holdout_y=holdout_y,
        training_x=training_x,
        training_y=training_y,
        target=target,
        params={"recipe": RECIPE, "estimator": type(estimator).__name__, **({"notes": notes} if notes else {})},
        training_data={
            **(source or {"source": "sklambda.publish"}),
            "rows": None if training_y is None else len(training_y),
        },
        description=description,
        lacks=lacks,
        verify=verify,
        progress=progress,
    )
    return Published(manifest=manifest, runtime=str(measured.get("runtime")), serving_check=measured, lacks=lacks)
