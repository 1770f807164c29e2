"""Publish time: turn a fitted scikit-learn pipeline into the lean ``sklambda-trees`` artifact.

Supported, exactly (see ``sklambda.trees`` for why the arithmetic is scikit-learn's own):

- a ``RandomForestClassifier``/``Regressor`` or ``ExtraTreesClassifier``/``Regressor`` (one output),
- alone, or as the last step of a ``Pipeline`` whose only other step is a ``ColumnTransformer`` of
  ``"passthrough"``, ``"drop"``, a numeric ``SimpleImputer``, a ``OneHotEncoder`` (no ``drop``, no
  infrequent categories, string categories) or a ``Pipeline`` of a constant ``SimpleImputer`` and
  a ``OneHotEncoder`` — what ``training.build_pipeline`` produces.

Anything else (another estimator, a custom transformer, a scaler, ...) is reported with the reason
and the version is served by the scikit-learn runtime. A converted ensemble is accepted only if it
reproduces scikit-learn's answers on held-out rows: every label equal and every probability (or
regression value) within ``TOLERANCE``. This module imports scikit-learn; the serving path never
imports it (``sklambda.trees`` needs numpy only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sklambda.serving import trees

# Largest accepted |sklearn - lean| for a probability or a regression value (relative to
# max(1, |value|) for regressions). The runtime is exact by construction; measured differences are 0.
TOLERANCE = 1e-9
MIN_PARITY_ROWS = 1
MAX_PARITY_ROWS = 5000


class Unsupported(Exception):
    """The estimator has a part the lean runtime does not implement."""


@dataclass
class Conversion:
    """The outcome recorded in the manifest's ``lean`` field (and the artifact when accepted)."""

    accepted: bool
    reason: str | None = None
    artifact: bytes | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "runtime": trees.RUNTIME,
            "artifact": trees.ARTIFACT if self.accepted else None,
            "accepted": self.accepted,
            "reason": self.reason,
            "parity": self.parity,
        }


def _name(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


# ----------------------------------------------------------------------------- the forest
def _forest(estimator: Any, task: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    classifiers = (RandomForestClassifier, ExtraTreesClassifier)
    regressors = (RandomForestRegressor, ExtraTreesRegressor)
    if type(estimator) not in classifiers + regressors:
        raise Unsupported(f"no lean converter for {_name(estimator)} (supported: random forest and extra trees)")
    is_classifier = type(estimator) in classifiers
    if is_classifier != (task == "classification"):
        raise Unsupported(f"{_name(estimator)} does not match the task {task!r}")
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise Unsupported(f"{_name(estimator)} has {estimator.n_outputs_} outputs; only single-output models convert")
    features, thresholds, children, values, missing, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    for tree_estimator in estimator.estimators_:
        tree = tree_estimator.tree_
        n = tree.node_count
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left == -1
        own = np.arange(n, dtype=np.int64)
        features.append(np.where(leaf, 0, tree.feature).astype(np.int32))
        threshold = trees.float32_floor(np.where(leaf, 0.0, tree.threshold))
        thresholds.append(threshold)
        pair = np.empty((n, 2), dtype=np.int32)
        pair[:, 0] = np.where(leaf, own, right) + offset  # decision False (x > t): right
        pair[:, 1] = np.where(leaf, own, left) + offset  # decision True (x <= t): left
        children.append(pair)
        value = tree.value[:, 0, :]
        if is_classifier:
            value = value[:, : len(estimator.classes_)]
        values.append(np.asarray(value, dtype=np.float64))
        mgl = getattr(tree, "missing_go_to_left", None)
        missing.append(np.zeros(n, dtype=bool) if mgl is None else np.asarray(mgl).astype(bool) & ~leaf)
        roots.append(offset)
        offset += n
        depth = max(depth, int(tree.max_depth))
    arrays = {
        "feature": np.concatenate(features),
        "threshold": np.concatenate(thresholds),
        "children": np.concatenate(children),
        "values": np.ascontiguousarray(np.concatenate(values)),
        "roots": np.asarray(roots, dtype=np.int32),
        "missing_left": np.concatenate(missing),
    }
    header = {
        "estimator": _name(estimator),
        "n_trees": len(estimator.estimators_),
        "depth": depth,
        "n_features": int(estimator.n_features_in_),
    }
    if is_classifier:
        classes = np.asarray(estimator.classes_).tolist()
        if not all(isinstance(c, (str, int, float, bool)) for c in classes):
            raise Unsupported("class labels must be strings, numbers or booleans")
        header["classes"] = classes
    return header, arrays


# ----------------------------------------------------------------------------- preprocessing
def _columns(cols: Any, n_inputs: int) -> list[int]:
    if isinstance(cols, slice):
        return list(range(n_inputs))[cols]
    array = np.asarray(cols)
    if array.dtype == bool:
        return [int(i) for i in np.flatnonzero(array)]
    if array.dtype.kind not in "iu":
        raise Unsupported("ColumnTransformer columns must be given by position (the pipeline takes arrays)")
    return [int(i) for i in array.ravel()]


def _probe_missing(imputer: Any, width: int) -> list[Any]:
    """What a fitted categorical SimpleImputer turns None into, per column (None: left alone)."""
    if imputer.add_indicator:
        raise Unsupported("SimpleImputer(add_indicator=True) is not supported")
    try:
        out = imputer.transform(np.array([[None] * width], dtype=object))
    except Exception as err:
        raise Unsupported(f"SimpleImputer on category columns cannot take missing values: {err}") from err
    if out.shape != (1, width):
        raise Unsupported("SimpleImputer dropped a column")
    values = list(out[0])
    if not all(v is None or isinstance(v, str) for v in values):
        raise Unsupported("a categorical SimpleImputer fills with a non-string value")
    return values


def _onehot(encoder: Any, cols: list[int], offset: int, missing: list[Any]) -> tuple[list[dict[str, Any]], int]:
    from sklearn.preprocessing import OneHotEncoder

    if type(encoder) is not OneHotEncoder:
        raise Unsupported(f"no lean converter for {_name(encoder)}")
    if getattr(encoder, "drop_idx_", None) is not None:
        raise Unsupported("OneHotEncoder(drop=...) is not supported")
    if getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories is not supported")
    if encoder.handle_unknown not in ("ignore", "error", "infrequent_if_exist"):
        raise Unsupported(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r}) is not supported")
    blocks = []
    for src, categories, fill in zip(cols, encoder.categories_, missing, strict=True):
        listed = list(categories)
        if not all(isinstance(c, str) for c in listed):
            raise Unsupported("OneHotEncoder categories must be strings")
        blocks.append(
            {
                "src": src,
                "offset": offset,
                "categories": listed,
                "missing": fill,
                "unknown_error": encoder.handle_unknown == "error",
            }
        )
        offset += len(listed)
    return blocks, offset


def _numeric_imputer(imputer: Any, cols: list[int]) -> list[float]:
    from sklearn.impute import SimpleImputer

    if type(imputer) is not SimpleImputer:
        raise Unsupported(f"no lean converter for {_name(imputer)}")
    if imputer.add_indicator:
        raise Unsupported("SimpleImputer(add_indicator=True) is not supported")
    missing = imputer.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise Unsupported("SimpleImputer must impute NaN (missing_values=np.nan)")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if len(fill) != len(cols) or np.isnan(fill).any():
        raise Unsupported("SimpleImputer dropped an all-missing column")
    return fill.tolist()


def _preprocessing(transformer: Any, n_inputs: int, schema: Any) -> dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if transformer is None:  # the forest takes the schema's columns as they are
        return {
            "numeric": [{"src": list(range(n_inputs)), "dst": list(range(n_inputs)), "fill": None}],
            "onehot": [],
            "n_out": n_inputs,
        }
    if type(transformer) is not ColumnTransformer:
        raise Unsupported(f"no lean converter for {_name(transformer)} before the model")
    numeric: list[dict[str, Any]] = []
    onehot: list[dict[str, Any]] = []
    offset = 0
    for name, part, cols in transformer.transformers_:
        positions = _columns(cols, n_inputs)
        if part == "drop" or not positions:
            continue
        if type(part) is FunctionTransformer and part.func is None:
            part = "passthrough"  # a fitted ColumnTransformer stores "passthrough" as an identity transformer
        if part == "passthrough":
            numeric.append({"src": positions, "dst": list(range(offset, offset + len(positions))), "fill": None})
            offset += len(positions)
            continue
        if type(part) is SimpleImputer:
            fill = _numeric_imputer(part, positions)
            numeric.append({"src": positions, "dst": list(range(offset, offset + len(positions))), "fill": fill})
            offset += len(positions)
            continue
        steps = [s for _, s in part.steps] if type(part) is Pipeline else [part]
        missing: list[Any] = [None] * len(positions)
        if len(steps) == 2 and type(steps[0]) is SimpleImputer:
            missing = _probe_missing(steps[0], len(positions))
            steps = steps[1:]
        if len(steps) != 1:
            raise Unsupported(f"no lean converter for the {name!r} step ({' -> '.join(_name(s) for s in steps)})")
        blocks, offset = _onehot(steps[0], positions, offset, missing)
        onehot.extend(blocks)
    categorical_inputs = {b["src"] for b in onehot}
    if schema is not None:
        for block in numeric:
            for src in block["src"]:
                if schema.features[src].type == "category":
                    raise Unsupported(f"category feature {schema.features[src].name!r} reaches the model unencoded")
        for src in categorical_inputs:
            if schema.features[src].type != "category":
                raise Unsupported(f"feature {schema.features[src].name!r} is one-hot encoded but not a category")
    return {"numeric": numeric, "onehot": onehot, "n_out": offset}


def build(estimator: Any, schema: Any, task: str) -> bytes:
    """The artifact bytes for ``estimator``; raises Unsupported with the reason otherwise."""
    from sklearn.pipeline import Pipeline

    n_inputs = len(schema.features)
    transformer, model = None, estimator
    if type(estimator) is Pipeline:
        steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
        if not steps:
            raise Unsupported("an empty Pipeline")
        *before, model = steps
        if len(before) > 1:
            raise Unsupported(
                "no lean converter for a pipeline of " + " -> ".join(_name(s) for s in steps) + " (at most one "
                "ColumnTransformer before the model)"
            )
        transformer = before[0] if before else None
    header, arrays = _forest(model, task)
    prep = _preprocessing(transformer, n_inputs, schema)
    if prep["n_out"] != header["n_features"]:
        raise Unsupported(f"the preprocessing yields {prep['n_out']} columns, the model takes {header['n_features']}")
    nan_possible = any(
        b["fill"] is None and any(schema.features[s].nullable for s in b["src"]) for b in prep["numeric"]
    )
    header.update(
        {
            "format": trees.FORMAT,
            "task": task,
            "n_inputs": n_inputs,
            "numeric": prep["numeric"],
            "onehot": prep["onehot"],
            "nan_possible": nan_possible,
        }
    )
    return trees.dump(header, arrays)


# ----------------------------------------------------------------------------- parity
def parity(estimator: Any, ensemble: trees.TreeEnsemble, rows: np.ndarray, task: str) -> dict[str, Any]:
    """Compare scikit-learn and the lean runtime on ``rows``; the manifest's parity record."""
    if task == "classification":
        expected = np.asarray(estimator.predict_proba(rows), dtype=np.float64)
        got = ensemble.predict_proba(rows)
        classes = np.asarray(estimator.classes_)
        labels_equal = bool(np.array_equal(classes[expected.argmax(axis=1)], ensemble.predict(rows)))
        diff = float(np.max(np.abs(expected - got))) if expected.size else 0.0
        ok = labels_equal and diff <= TOLERANCE
    else:
        expected = np.asarray(estimator.predict(rows), dtype=np.float64).reshape(-1)
        got = ensemble.predict(rows)
        scale = np.maximum(1.0, np.abs(expected))
        diff = float(np.max(np.abs(expected - got) / scale)) if expected.size else 0.0
        labels_equal = None
        ok = diff <= TOLERANCE
    return {
        "rows": int(len(rows)),
        "labels_equal": labels_equal,
        "max_abs_diff": diff,
        "exact": bool(np.array_equal(expected, got)),
        "tolerance": TOLERANCE,
        "passed": bool(ok),
    }


def convert(estimator: Any, schema: Any, task: str, rows: np.ndarray | None, *, source: str = "holdout") -> Conversion:
    """Build the lean artifact and check it on ``rows`` (held-out rows in schema order)."""
    started = time.perf_counter()
    if rows is None or len(rows) < MIN_PARITY_ROWS:
        return Conversion(False, "no held-out rows to check the lean runtime against scikit-learn")
    rows = rows[:MAX_PARITY_ROWS]
    try:
        artifact = build(estimator, schema, task)
    except Unsupported as err:
        return Conversion(False, str(err), seconds=time.perf_counter() - started)
    ensemble = trees.load(artifact)
    try:
        check = parity(estimator, ensemble, rows, task)
    except Exception as err:
        return Conversion(False, f"the lean runtime failed on the held-out rows: {err!r}")
    check["source"] = source
    if not check["passed"]:
        reason = (
            f"the lean runtime disagrees with scikit-learn on {source} rows (labels equal: "
            f"{check['labels_equal']}, max difference {check['max_abs_diff']:.3g} > {TOLERANCE:g})"
        )
        return Conversion(False, reason, parity=check, seconds=time.perf_counter() - started)
    return Conversion(True, None, artifact=artifact, parity=check, seconds=time.perf_counter() - started)


def publish_parts(
    estimator: Any, schema: Any, task: str, rows: np.ndarray | None, *, source: str = "holdout"
) -> tuple[dict[str, bytes], dict[str, str], dict[str, Any]]:
    """For a publisher: (extra artifacts, their runtimes, the manifest's ``lean`` record)."""
    conversion = convert(estimator, schema, task, rows, source=source)
    if conversion.accepted and conversion.artifact is not None:
        return {trees.ARTIFACT: conversion.artifact}, {trees.ARTIFACT: trees.RUNTIME}, conversion.record()
    return {}, {}, conversion.record()
