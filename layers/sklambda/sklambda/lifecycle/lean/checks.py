"""The parity gate: the lean model against the scikit-learn pipeline, on given and adversarial rows.

Both sides get the rows the predict path would build (``matrix_for``: the validator's dtypes, NaN
for a missing number, None for a missing category); scikit-learn gets them as it was fitted (a
DataFrame with ``feature_names_in_`` when it was fitted on one). Rows scikit-learn refuses (it
raises) are set aside, and the lean model must refuse each of them too. On the rest every label
must be equal (``predict`` and the arg-max of the probabilities, which is what the service
answers) and every probability, or regression value relative to ``max(1, |y|)``, within
``TOLERANCE``.

Adversarial rows are the given rows with one value changed at a time: NaN in every nullable
numeric column, None in every nullable category, an unknown category where the schema allows one,
every known category, zeros, +-1e300 (+-2**53 for integers), and every boundary the parts expose
(scaler centres and ranges, imputer fills, tree thresholds and the next float above them).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

# Largest accepted |sklearn - lean| for a probability or a regression value (relative to
# max(1, |value|) for regressions). The runtime repeats scikit-learn's arithmetic; measured differences are 0.
TOLERANCE = 1e-9
MIN_PARITY_ROWS = 1
MAX_PARITY_ROWS = 5000
MAX_BOUNDARIES_PER_COLUMN = 48
MAX_ADVERSARIAL_ROWS = 3000
UNKNOWN_CATEGORY = "__sklambda_unknown_category__"
EXTREME = 1e300
CHUNK = 256


def matrix_for(schema: Any, rows: Any) -> np.ndarray:
    """``rows`` as ``InstanceValidator.to_matrix`` builds them: float64, or object with floats and str/None."""
    features = schema.features
    if schema.all_numeric:
        matrix = np.asarray(rows, dtype=object).reshape(len(rows), len(features))
        return np.array(
            [[np.nan if v is None else float(v) for v in row] for row in matrix.tolist()], dtype=np.float64
        ).reshape(len(rows), len(features))
    source = np.asarray(rows, dtype=object).reshape(len(rows), len(features))
    out = np.empty(source.shape, dtype=object)
    for j, spec in enumerate(features):
        values = source[:, j].tolist()
        if spec.type == "category":
            out[:, j] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        else:
            out[:, j] = [np.nan if v is None else float(v) for v in values]
    return out


def sklearn_input(estimator: Any, matrix: np.ndarray, schema: Any | None) -> Any:
    """The rows as the fitted object takes them: the matrix, or a DataFrame for a DataFrame-fitted pipeline."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return matrix
    import pandas as pd

    names = [str(n) for n in names]
    positions = list(range(len(names))) if schema is None else [schema.names.index(n) for n in names]
    columns = {}
    for name, j in zip(names, positions, strict=True):
        column = matrix[:, j]
        numeric = (
            schema is None and column.dtype != object or (schema is not None and schema.features[j].type != "category")
        )
        # object columns stay object (pandas would otherwise infer a string dtype and turn None into NaN)
        columns[name] = pd.Series(column.astype(np.float64)) if numeric else pd.Series(column, dtype=object)
    return pd.DataFrame(columns, columns=names)


# ----------------------------------------------------------------------------- adversarial rows
def _spread(values: list[float], limit: int) -> list[float]:
    values = sorted(values)
    if len(values) <= limit:
        return values
    picks = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in sorted(set(picks.tolist()))]


def adversarial_rows(schema: Any, rows: np.ndarray, boundaries: dict[int, set[float]]) -> np.ndarray:
    """Rows that probe the edges: each a given row with one (or every nullable) value changed."""
    base = [list(r) for r in rows[: max(1, min(len(rows), 8))].tolist()]
    out: list[list[Any]] = []

    def vary(j: int, value: Any) -> None:
        row = list(base[len(out) % len(base)])
        row[j] = value
        out.append(row)

    for j, spec in enumerate(schema.features):
        if spec.type == "category":
            for category in spec.categories or []:
                vary(j, category)
            if spec.nullable:
                vary(j, None)
            if spec.unknown_category == "allow":
                vary(j, UNKNOWN_CATEGORY)
            continue
        if spec.nullable:
            vary(j, np.nan)
        if spec.type == "boolean":
            candidates = [0.0, 1.0]
        else:
            limit = float(2**53) if spec.type == "integer" else EXTREME
            candidates = [0.0, limit, -limit]
            for value in _spread(list(boundaries.get(j, ())), MAX_BOUNDARIES_PER_COLUMN):
                if spec.type == "integer":
                    candidates.extend({float(math.floor(value)), float(math.ceil(value))})
                else:
                    candidates.append(value)
        for value in candidates:
            vary(j, value)
    every_null = list(base[0])
    for j, spec in enumerate(schema.features):
        if spec.nullable:
            every_null[j] = None
    out.append(every_null)
    zeros = list(base[0])
    for j, spec in enumerate(schema.features):
        if spec.type != "category":
            zeros[j] = 0.0
    out.append(zeros)
    return matrix_for(schema, out[:MAX_ADVERSARIAL_ROWS])


# ----------------------------------------------------------------------------- answers
def _answers(model: Any, data: Any, task: str) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        answers = {"predict": np.asarray(model.predict(data))}
        if task == "classification" and hasattr(model, "predict_proba"):
            answers["proba"] = np.asarray(model.predict_proba(data), dtype=np.float64)
    return answers


def _split_accepted(estimator: Any, rows: np.ndarray, schema: Any, task: str) -> tuple[list[int], list[int]]:
    """Indices of the rows scikit-learn answers and of those it refuses (raises on)."""
    accepted, refused = [], []
    for start in range(0, len(rows), CHUNK):
        block = list(range(start, min(start + CHUNK, len(rows))))
        try:
            _answers(estimator, sklearn_input(estimator, rows[block], schema), task)
            accepted.extend(block)
            continue
        except Exception:
            pass
        for i in block:
            try:
                _answers(estimator, sklearn_input(estimator, rows[i : i + 1], schema), task)
                accepted.append(i)
            except Exception:
                refused.append(i)
    return accepted, refused


def _difference(expected: np.ndarray, got: np.ndarray, relative: bool) -> float:
    if expected.shape != got.shape:
        return math.inf
    same = (expected == got) | (np.isnan(expected) & np.isnan(got))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(expected - got)
        if relative:
            diff = diff / np.maximum(1.0, np.abs(expected))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    return float(diff.max()) if diff.size else 0.0


def _compare(estimator: Any, model: Any, rows: np.ndarray, task: str, schema: Any) -> dict[str, Any]:
    accepted, refused = _split_accepted(estimator, rows, schema, task) if len(rows) else ([], [])
    result: dict[str, Any] = {
        "rows": int(len(rows)),
        "refused": len(refused),
        "answered": len(accepted),
        "labels_equal": True if task == "classification" else None,
        "max_abs_diff": 0.0,
        "bit_identical": True,
        "failure": None,
    }
    answered = [i for i in refused if _lean_answers(model, rows[i : i + 1], task)]
    if answered:
        result["failure"] = f"the lean runtime answers {len(answered)} rows scikit-learn refuses"
        result["bit_identical"] = False
    if not accepted:
        return result
    expected = _answers(estimator, sklearn_input(estimator, rows[accepted], schema), task)
    try:
        got = _answers(model, rows[accepted], task)
    except Exception as err:
        result.update(failure=f"the lean runtime raised on rows scikit-learn answers: {err!r}", bit_identical=False)
        result["labels_equal"] = False if task == "classification" else None
        result["max_abs_diff"] = math.inf
        return result
    if set(expected) != set(got):
        result.update(failure="predict_proba is available on one side only", bit_identical=False)
        result["labels_equal"] = False if task == "classification" else None
        return result
    if task == "classification":
        labels = expected["predict"].tolist() == got["predict"].tolist()
        if "proba" in expected:
            classes = np.asarray(estimator.classes_)
            argmax_labels = classes.take(np.argmax(expected["proba"], axis=1)).tolist()
            labels = labels and argmax_labels == model.classes_.take(np.argmax(got["proba"], axis=1)).tolist()
            result["max_abs_diff"] = _difference(expected["proba"], got["proba"], relative=False)
            result["bit_identical"] = result["bit_identical"] and np.array_equal(
                expected["proba"], got["proba"], equal_nan=True
            )
        result["labels_equal"] = bool(labels)
        result["bit_identical"] = bool(result["bit_identical"] and labels)
    else:
        want = np.asarray(expected["predict"], dtype=np.float64).reshape(-1)
        have = np.asarray(got["predict"], dtype=np.float64).reshape(-1)
        result["max_abs_diff"] = _difference(want, have, relative=True)
        result["bit_identical"] = bool(result["bit_identical"] and np.array_equal(want, have, equal_nan=True))
    return result


def _lean_answers(model: Any, row: np.ndarray, task: str) -> bool:
    try:
        _answers(model, row, task)
    except Exception:
        return False
    return True


def parity(
    estimator: Any,
    model: Any,
    rows: np.ndarray,
    task: str,
    *,
    schema: Any | None = None,
    adversarial: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compare scikit-learn and the lean model on ``rows`` (and ``adversarial`` rows); the manifest's record."""
    given = _compare(estimator, model, rows, task, schema)
    extra = _compare(estimator, model, adversarial, task, schema) if adversarial is not None else None
    parts = [given] if extra is None else [given, extra]
    labels = None if task != "classification" else all(p["labels_equal"] for p in parts)
    diff = max(p["max_abs_diff"] for p in parts)
    failure = next((p["failure"] for p in parts if p["failure"]), None)
    if failure is None and given["rows"] and not given["answered"]:
        failure = "scikit-learn refuses every given row, so nothing was compared"
    if failure is None and labels is False:
        failure = "labels differ"
    if failure is None and not diff <= TOLERANCE:
        failure = "values differ"
    bit_identical = all(p["bit_identical"] for p in parts)
    return {
        "rows": given["rows"],
        "adversarial_rows": 0 if extra is None else extra["rows"],
        "refused_rows": given["refused"] + (0 if extra is None else extra["refused"]),
        "labels_equal": labels,
        "max_abs_diff": diff,
        "bit_identical": bit_identical,
        "exact": bit_identical,
        "tolerance": TOLERANCE,
        "passed": failure is None,
        "failure": failure,
    }
