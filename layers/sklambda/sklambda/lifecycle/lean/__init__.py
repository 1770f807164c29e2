"""Publish time: turn a fitted scikit-learn pipeline into the lean ``sklambda-lean`` artifact, and check it.

The walk (:func:`build`) follows the fitted object: ``Pipeline`` (nested, ``"passthrough"`` and
``None`` steps skipped), ``ColumnTransformer`` (columns resolved through its fitted
``_transformer_to_input_indices``: names, positions, slices, masks and callables alike; ``remainder``;
``transformer_weights``), every step through ``STEP_CONVERTERS`` and the final estimator through
``ESTIMATOR_CONVERTERS`` (linear models here, trees in ``forests``). Sample rows are pushed through
scikit-learn along the way, so each converter knows what its step really receives (a sparse
matrix, float32) and the widths are checked, not inferred.

A pipeline fitted on a DataFrame takes the schema's columns by name (``feature_names_in_``): the
artifact starts by selecting them, and scikit-learn's side of the parity check gets a DataFrame.

Anything not implemented raises :class:`Unsupported`; :func:`convert` turns that into a refused
:class:`Conversion` with the reason, and the version is served by scikit-learn. A conversion is
accepted only if :func:`parity` finds the same answers on the given rows and on adversarial rows
(``checks``). This package imports scikit-learn; the serving path never imports it.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sklambda.lifecycle.lean import forests, linear, preprocessing
from sklambda.lifecycle.lean.base import (
    ESTIMATOR_CONVERTERS,
    STEP_CONVERTERS,
    StepContext,
    Unsupported,
    json_classes,
)
from sklambda.lifecycle.lean.checks import (
    MAX_PARITY_ROWS,
    MIN_PARITY_ROWS,
    TOLERANCE,
    adversarial_rows,
    matrix_for,
    parity,
    sklearn_input,
)
from sklambda.serving import lean as runtime

__all__ = [
    "ESTIMATOR_CONVERTERS",
    "MAX_PARITY_ROWS",
    "MIN_PARITY_ROWS",
    "STEP_CONVERTERS",
    "TOLERANCE",
    "Conversion",
    "Unsupported",
    "build",
    "convert",
    "forests",
    "linear",
    "parity",
    "preprocessing",
    "publish_parts",
]

SAMPLE_ROWS = 64


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
            "runtime": runtime.RUNTIME,
            "artifact": runtime.ARTIFACT if self.accepted else None,
            "accepted": self.accepted,
            "reason": self.reason,
            "parity": self.parity,
        }


def _name(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


def _skipped(step: Any) -> bool:
    return step is None or (isinstance(step, str) and step == "passthrough")


def _width(data: Any) -> int:
    return int(data.shape[1])


def _dtype(data: Any) -> np.dtype[Any]:
    if hasattr(data, "dtypes") and not hasattr(data, "dtype"):  # a DataFrame
        return np.result_type(*[np.dtype(str(d)) if str(d) != "object" else np.dtype(object) for d in data.dtypes])
    return np.dtype(data.dtype)


def _issparse(data: Any) -> bool:
    import scipy.sparse

    return bool(scipy.sparse.issparse(data))


def _transform(fitted: Any, data: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fitted.transform(data)


class _Walk:
    """One conversion: the parts, and for the parity check the input values worth testing."""

    def __init__(self, n_inputs: int) -> None:
        self.boundaries: dict[int, set[float]] = {i: set() for i in range(n_inputs)}
        self.estimator_inputs: list[int | None] = []

    # ------------------------------------------------------------ transformers
    def transformer(
        self, fitted: Any, data: Any, origins: list[int | None]
    ) -> tuple[list[tuple[dict[str, Any], dict[str, np.ndarray]]], Any, list[int | None]]:
        """Parts (spec without id, arrays relative to the part) for ``fitted``; its output; its columns' origins.

        ``origins[j]`` is the schema column that column ``j`` still carries unchanged (None when
        a step computed it), so boundaries read from a step map back to request values.
        """
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        if _skipped(fitted):
            return [], data, origins
        if isinstance(fitted, str):
            raise Unsupported(f"a step given as {fitted!r}")
        if type(fitted) is Pipeline:
            parts: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
            for _, step in fitted.steps:
                more, data, origins = self.transformer(step, data, origins)
                parts.extend(more)
            return parts, data, origins
        if type(fitted) is ColumnTransformer:
            return self.columns(fitted, data, origins)
        converter = STEP_CONVERTERS.get(_name(fitted))
        if converter is None:
            raise Unsupported(
                f"no lean converter for {_name(fitted)} (steps that convert: {', '.join(sorted(STEP_CONVERTERS))})"
            )
        context = StepContext(n_in=_width(data), sparse=_issparse(data))
        spec, arrays = converter(fitted, context)
        out = _transform(fitted, data)
        spec = {**spec, "n_in": _width(data), "n_out": _width(out)}
        for column, values in context.boundaries.items():
            if 0 <= column < len(origins) and origins[column] is not None:
                self.boundaries[origins[column]].update(values)  # type: ignore[index]
        return [(spec, arrays)], out, _origins_after(spec, origins)

    def columns(
        self, fitted: Any, data: Any, origins: list[int | None]
    ) -> tuple[list[tuple[dict[str, Any], dict[str, np.ndarray]]], Any, list[int | None]]:
        from sklearn.utils import _safe_indexing

        indices = fitted._transformer_to_input_indices
        weights = fitted.transformer_weights or {}
        branches: list[dict[str, Any]] = []
        arrays: dict[str, np.ndarray] = {}
        out_origins: list[int | None] = []
        for b, (name, part, columns) in enumerate(fitted.transformers_):
            if isinstance(part, str) and part == "drop":
                continue
            selected = [int(i) for i in indices[name]]
            if not selected:
                continue
            if np.isscalar(columns) or (isinstance(columns, np.ndarray) and columns.ndim == 0):
                raise Unsupported(f"ColumnTransformer {name!r} selects a single column as 1-D ({columns!r})")
            sub = _safe_indexing(data, selected, axis=1)
            parts, out, sub_origins = self.transformer(part, sub, [origins[i] for i in selected])
            steps = []
            for k, (spec, part_arrays) in enumerate(parts):
                step_id = f"b{b}.{k}"
                steps.append({**spec, "id": step_id})
                arrays.update({f"{step_id}/{key}": value for key, value in part_arrays.items()})
            weight = weights.get(name)
            branches.append(
                {
                    "name": str(name),
                    "columns": selected,
                    "steps": steps,
                    "weight": None if weight is None else float(weight),
                    "n_out": _width(out),
                }
            )
            out_origins.extend(sub_origins if weight is None else [None] * _width(out))
        out = _transform(fitted, data)
        spec = {
            "kind": "columns",
            "sparse": bool(fitted.sparse_output_),
            "branches": branches,
            "n_in": _width(data),
            "n_out": _width(out),
        }
        if sum(int(b["n_out"]) for b in branches) != _width(out):
            raise Unsupported("the ColumnTransformer's output is not its branches side by side")
        return [(spec, arrays)], out, out_origins

    # ------------------------------------------------------------ the model
    def model(
        self, fitted: Any, data: Any, origins: list[int | None]
    ) -> tuple[list[tuple[dict[str, Any], dict[str, np.ndarray]]], tuple[dict[str, Any], dict[str, np.ndarray]], Any]:
        """(preprocessing parts, estimator part, the estimator's fitted object)."""
        from sklearn.pipeline import Pipeline

        parts: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
        while type(fitted) is Pipeline:
            steps = [s for _, s in fitted.steps if not _skipped(s)]
            if not steps:
                raise Unsupported("a Pipeline with no estimator")
            for step in steps[:-1]:
                more, data, origins = self.transformer(step, data, origins)
                parts.extend(more)
            fitted = steps[-1]
        converter = ESTIMATOR_CONVERTERS.get(_name(fitted))
        if converter is None:
            raise Unsupported(
                f"no lean converter for {_name(fitted)} (estimators that convert: "
                f"{', '.join(sorted(ESTIMATOR_CONVERTERS))})"
            )
        if getattr(fitted, "n_features_in_", _width(data)) != _width(data):
            raise Unsupported(f"{_name(fitted)} takes {fitted.n_features_in_} columns, the steps yield {_width(data)}")
        spec, arrays = converter(fitted)
        dtype = _dtype(data)
        spec = {
            **spec,
            "input": {"dtype": "float32" if dtype == np.float32 else "float64", "sparse": _issparse(data)},
        }
        self.estimator_inputs = origins
        for feature, threshold in _tree_thresholds(fitted):
            if 0 <= feature < len(origins) and origins[feature] is not None:
                self.boundaries[origins[feature]].update((threshold, float(np.nextafter(threshold, np.inf))))  # type: ignore[index]
        return parts, (spec, arrays), fitted


def _origins_after(spec: dict[str, Any], origins: list[int | None]) -> list[int | None]:
    kind = spec["kind"]
    if kind == "identity":
        return list(origins)
    if kind == "select":
        return [origins[i] for i in spec["indices"]]
    if kind == "simple_imputer":  # non-missing values pass unchanged
        kept = origins if spec["valid"] is None else [origins[i] for i in spec["valid"]]
        return list(kept) + [None] * (spec["n_out"] - len(kept))
    return [None] * int(spec["n_out"])


def _tree_thresholds(fitted: Any) -> list[tuple[int, float]]:
    """(feature, threshold) of the splits of tree-based estimators, for boundary rows."""
    trees: list[Any] = []
    if hasattr(fitted, "tree_"):
        trees = [fitted]
    elif hasattr(fitted, "estimators_"):
        trees = [t for t in np.asarray(fitted.estimators_, dtype=object).ravel().tolist() if hasattr(t, "tree_")]
    out: list[tuple[int, float]] = []
    for tree in trees:
        inner = tree.tree_
        split = inner.children_left != -1
        out.extend(zip(inner.feature[split].tolist(), inner.threshold[split].tolist(), strict=True))
    for predictors in getattr(fitted, "_predictors", []) or []:
        for predictor in predictors:
            nodes = predictor.nodes
            split = ~nodes["is_leaf"].astype(bool)
            out.extend(zip(nodes["feature_idx"][split].tolist(), nodes["num_threshold"][split].tolist(), strict=True))
    return out


def _sample(estimator: Any, schema: Any, rows: np.ndarray | None) -> Any:
    """Rows scikit-learn accepts, as scikit-learn takes them, to push through the pipeline."""
    candidates = rows[:SAMPLE_ROWS] if rows is not None and len(rows) else _schema_row(schema)
    data = sklearn_input(estimator, candidates, schema)
    try:
        _transform_all(estimator, data)
        return data
    except Exception:
        pass
    accepted = []
    for i in range(len(candidates)):
        one = sklearn_input(estimator, candidates[i : i + 1], schema)
        try:
            _transform_all(estimator, one)
            accepted.append(i)
        except Exception:
            continue
    if not accepted:
        raise Unsupported("scikit-learn refuses every sample row, so the conversion cannot be checked")
    return sklearn_input(estimator, candidates[accepted], schema)


def _transform_all(estimator: Any, data: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.predict(data)


def _schema_row(schema: Any) -> np.ndarray:
    row = [(f.categories or [None])[0] if f.type == "category" else 0.0 for f in schema.features]
    return matrix_for(schema, [row])


def _walk(
    estimator: Any, schema: Any, task: str, rows: np.ndarray | None
) -> tuple[dict[str, Any], dict[str, np.ndarray], _Walk]:
    from sklearn.base import is_classifier

    names = [str(n) for n in schema.names]
    n_inputs = len(names)
    walk = _Walk(n_inputs)
    steps: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = []
    origins: list[int | None] = list(range(n_inputs))
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is not None:
        fitted_names = [str(n) for n in fitted_names]
        missing = [n for n in fitted_names if n not in names]
        if missing:
            raise Unsupported(f"the pipeline was fitted on columns the schema does not have: {missing}")
    elif getattr(estimator, "n_features_in_", n_inputs) != n_inputs:
        raise Unsupported(f"the pipeline takes {estimator.n_features_in_} columns, the schema has {n_inputs}")
    data = _sample(estimator, schema, rows)
    if fitted_names is not None and fitted_names != names:
        indices = [names.index(n) for n in fitted_names]
        steps.append(({"kind": "select", "indices": indices, "n_in": n_inputs, "n_out": len(indices)}, {}))
        origins = list(indices)
    parts, (estimator_spec, estimator_arrays), final = walk.model(estimator, data, origins)
    steps.extend(parts)
    if is_classifier(final) != (task == "classification"):
        raise Unsupported(f"{_name(final)} does not match the task {task!r}")
    header: dict[str, Any] = {"task": task, "n_inputs": n_inputs, "features": names, "steps": [], "estimator": None}
    arrays: dict[str, np.ndarray] = {}
    for k, (spec, part_arrays) in enumerate(steps):
        step_id = f"s{k}"
        header["steps"].append({**spec, "id": step_id})
        arrays.update({f"{step_id}/{key}": value for key, value in part_arrays.items()})
    header["estimator"] = {**estimator_spec, "id": "est"}
    arrays.update({f"est/{key}": value for key, value in estimator_arrays.items()})
    if task == "classification":
        header["classes"] = json_classes(estimator)
    return header, arrays, walk


def build(estimator: Any, schema: Any, task: str, rows: np.ndarray | None = None) -> bytes:
    """The artifact bytes for ``estimator``; raises Unsupported with the reason otherwise.

    ``rows`` (schema order) are pushed through scikit-learn to see what each step receives; without
    them one row made from the schema is.
    """
    header, arrays, _ = _walk(estimator, schema, task, None if rows is None else matrix_for(schema, rows))
    return runtime.dump(header, arrays)


def convert(estimator: Any, schema: Any, task: str, rows: np.ndarray | None, *, source: str = "holdout") -> Conversion:
    """Build the lean artifact and check it on ``rows`` (held-out rows in schema order) plus adversarial rows."""
    started = time.perf_counter()
    if rows is None or len(rows) < MIN_PARITY_ROWS:
        return Conversion(False, "no held-out rows to check the lean runtime against scikit-learn")
    rows = matrix_for(schema, rows[:MAX_PARITY_ROWS])
    try:
        header, arrays, walk = _walk(estimator, schema, task, rows)
        artifact = runtime.dump(header, arrays)
    except Unsupported as err:
        return Conversion(False, str(err), seconds=time.perf_counter() - started)
    model = runtime.load(artifact)
    extra = adversarial_rows(schema, rows, walk.boundaries)
    try:
        check = parity(estimator, model, rows, task, schema=schema, adversarial=extra)
    except Exception as err:
        return Conversion(False, f"the parity check failed: {err!r}", seconds=time.perf_counter() - started)
    check["source"] = source
    seconds = time.perf_counter() - started
    if not check["passed"]:
        reason = (
            f"the lean runtime disagrees with scikit-learn on {source} or adversarial rows ({check['failure']}; "
            f"labels equal: {check['labels_equal']}, max difference {check['max_abs_diff']:.3g}, "
            f"tolerance {TOLERANCE:g})"
        )
        return Conversion(False, reason, parity=check, seconds=seconds)
    return Conversion(True, None, artifact=artifact, parity=check, seconds=seconds)


def publish_parts(
    estimator: Any, schema: Any, task: str, rows: np.ndarray | None, *, source: str = "holdout"
) -> tuple[dict[str, bytes], dict[str, str], dict[str, Any]]:
    """For a publisher: (extra artifacts, their runtimes, the manifest's ``lean`` record)."""
    conversion = convert(estimator, schema, task, rows, source=source)
    if conversion.accepted and conversion.artifact is not None:
        return {runtime.ARTIFACT: conversion.artifact}, {runtime.ARTIFACT: runtime.RUNTIME}, conversion.record()
    return {}, {}, conversion.record()
