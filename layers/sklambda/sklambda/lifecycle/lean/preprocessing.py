"""Publish time: fitted scikit-learn preprocessing steps to lean runtime steps (``serving.lean.preprocessing``).

Scalers and the imputer are read from their fitted attributes. Encoders are read off by asking the
fitted encoder itself: every category of every column (and NaN, and a value it never saw) is passed
through its ``transform``, and the answer is what the lean table records, so ``drop``, infrequent
groups, missing-value categories and ``handle_unknown`` come out as scikit-learn implements them
rather than as this module might re-derive them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from sklambda.lifecycle.lean.base import Part, StepContext, Unsupported, converts_step, json_value

UNKNOWN_TEXT = "\x00sklambda: a value this encoder never saw"


def _name(fitted: Any) -> str:
    return type(fitted).__name__


def _check_width(fitted: Any, context: StepContext) -> None:
    n = getattr(fitted, "n_features_in_", None)
    if n is not None and int(n) != context.n_in:
        raise Unsupported(f"{_name(fitted)} was fitted on {n} columns but receives {context.n_in}")


def _floats(values: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(values), dtype=np.asarray(values).dtype)


# ----------------------------------------------------------------------------- passthrough
@converts_step("FunctionTransformer")
def function_transformer(fitted: Any, context: StepContext) -> Part:
    """The identity (``func=None``: what a ColumnTransformer's ``"passthrough"`` becomes once fitted), and
    sklambda's own input adapter (``serving.adapters.missing_as_nan``, put first by the fallback's copy)."""
    from sklambda.serving.adapters import missing_as_nan

    if fitted.func is missing_as_nan:
        columns = [int(c) for c in (fitted.kw_args or {}).get("columns", ())]
        return {"kind": "missing_as_nan", "columns": columns}, {}
    if fitted.func is not None:
        func = getattr(fitted.func, "__qualname__", repr(fitted.func))
        raise Unsupported(
            f"FunctionTransformer(func={func}) runs arbitrary Python code; the lean runtime only runs the "
            "steps it implements (served by scikit-learn instead)"
        )
    if fitted.validate and context.sparse:
        raise Unsupported("FunctionTransformer(validate=True) on a sparse matrix")
    return {"kind": "identity", "validate": bool(fitted.validate)}, {}


# ----------------------------------------------------------------------------- scalers
@converts_step("StandardScaler")
def standard_scaler(fitted: Any, context: StepContext) -> Part:
    _check_width(fitted, context)
    arrays: dict[str, np.ndarray] = {}
    if context.sparse:
        if fitted.with_mean:
            raise Unsupported("StandardScaler(with_mean=True) on a sparse matrix (scikit-learn refuses it)")
        if fitted.scale_ is not None:
            arrays["scale"] = _floats(fitted.scale_)
    else:
        if fitted.with_mean:
            arrays["mean"] = _floats(fitted.mean_)
        if fitted.with_std:
            arrays["scale"] = _floats(fitted.scale_)
    if fitted.mean_ is not None:
        for j, mean in enumerate(np.asarray(fitted.mean_).tolist()):
            context.boundary(j, mean)
    return {"kind": "standard_scaler", "sparse": context.sparse}, arrays


@converts_step("MinMaxScaler")
def minmax_scaler(fitted: Any, context: StepContext) -> Part:
    _check_width(fitted, context)
    if context.sparse:
        raise Unsupported("MinMaxScaler on a sparse matrix (scikit-learn refuses it)")
    clip = [float(fitted.feature_range[0]), float(fitted.feature_range[1])] if fitted.clip else None
    for j, (low, high) in enumerate(zip(fitted.data_min_.tolist(), fitted.data_max_.tolist(), strict=True)):
        context.boundary(j, low, high)
    return {"kind": "minmax_scaler", "clip": clip}, {"scale": _floats(fitted.scale_), "min": _floats(fitted.min_)}


@converts_step("MaxAbsScaler")
def maxabs_scaler(fitted: Any, context: StepContext) -> Part:
    _check_width(fitted, context)
    for j, high in enumerate(fitted.max_abs_.tolist()):
        context.boundary(j, high, -high)
    spec = {"kind": "maxabs_scaler", "clip": bool(getattr(fitted, "clip", False)), "sparse": context.sparse}
    return spec, {"scale": _floats(fitted.scale_)}


@converts_step("RobustScaler")
def robust_scaler(fitted: Any, context: StepContext) -> Part:
    _check_width(fitted, context)
    arrays: dict[str, np.ndarray] = {}
    if fitted.with_centering and not context.sparse:
        arrays["center"] = _floats(fitted.center_)
        for j, center in enumerate(fitted.center_.tolist()):
            context.boundary(j, center)
    if fitted.with_scaling:
        arrays["scale"] = _floats(fitted.scale_)
    return {"kind": "robust_scaler", "sparse": context.sparse}, arrays


# ----------------------------------------------------------------------------- imputation
def _missing_values(value: Any) -> dict[str, Any]:
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return {"nan": True}
    if value is None or isinstance(value, (str, bool, int, float, np.generic)):
        return {"nan": False, "value": json_value(value, "SimpleImputer missing_values")}
    raise Unsupported(f"SimpleImputer(missing_values={value!r}) is not supported (NaN, None, a number or a string)")


@converts_step("SimpleImputer")
def simple_imputer(fitted: Any, context: StepContext) -> Part:
    _check_width(fitted, context)
    if context.sparse:
        raise Unsupported("SimpleImputer on a sparse matrix is not supported")
    strategy = fitted.strategy if isinstance(fitted.strategy, str) else "callable"
    statistics = np.asarray(fitted.statistics_)
    fill_dtype = np.dtype(fitted._fill_dtype)
    if fitted.keep_empty_features:
        valid = np.arange(len(statistics))
    else:
        empty = statistics != statistics  # NaN statistics (also in object arrays): columns dropped
        valid = np.flatnonzero(~np.asarray(empty, dtype=bool))
    values = statistics[valid].astype(fill_dtype, copy=False)
    spec: dict[str, Any] = {
        "kind": "simple_imputer",
        "strategy": strategy,
        "missing": _missing_values(fitted.missing_values),
        "object_fit": fill_dtype.kind == "O",
        "valid": None if len(valid) == len(statistics) else valid.tolist(),
        "indicator": None,
    }
    arrays: dict[str, np.ndarray] = {}
    if fill_dtype.kind == "O":
        spec["statistics"] = [json_value(v, "SimpleImputer fill value") for v in values.tolist()]
    elif fill_dtype.kind in "fiu":
        arrays["statistics"] = np.ascontiguousarray(values)
    else:
        raise Unsupported(f"SimpleImputer fitted on {fill_dtype} data")
    if fitted.add_indicator:
        indicator = fitted.indicator_
        if indicator.sparse is True:
            raise Unsupported("SimpleImputer(add_indicator=True) with a sparse indicator")
        spec["indicator"] = [int(i) for i in indicator.features_]
    for k, j in enumerate(valid.tolist()):
        if fill_dtype.kind != "O":
            context.boundary(j, values[k])
    return spec, arrays


# ----------------------------------------------------------------------------- encoders
def _quietly(fn: Any, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _dense(out: Any) -> np.ndarray:
    return np.asarray(out.toarray() if hasattr(out, "toarray") else out, dtype=np.float64)


def _categories(fitted: Any) -> list[list[Any]]:
    out = []
    for column in fitted.categories_:
        values = np.asarray(column).tolist()
        out.append([json_value(v, f"{_name(fitted)} category") for v in values])
    return out


def _unknown_probe(categories: list[Any]) -> Any:
    """A value of the categories' kind that is none of them."""
    numbers = [c for c in categories if isinstance(c, (int, float)) and not isinstance(c, bool)]
    if numbers and len(numbers) == len([c for c in categories if c is not None]):
        finite = [float(c) for c in numbers if math.isfinite(float(c))]
        top = max(finite) if finite else 0.0
        return float(np.nextafter(abs(top) + 1.0, np.inf))
    return UNKNOWN_TEXT


def _probe(fitted: Any, column: int, values: list[Any], base: list[Any]) -> list[np.ndarray | None]:
    """The encoder's output row for each value in ``column`` (None where transform raised ValueError)."""
    rows = np.array([base] * len(values), dtype=object).reshape(len(values), len(base))
    for r, value in enumerate(values):
        rows[r, column] = value
    try:
        out = _dense(_quietly(fitted.transform, rows))
        return [out[r] for r in range(len(values))]
    except ValueError:
        answers: list[np.ndarray | None] = []
        for r in range(len(values)):
            try:
                answers.append(_dense(_quietly(fitted.transform, rows[r : r + 1]))[0])
            except ValueError:
                answers.append(None)
        return answers


def _tables(fitted: Any, context: StepContext, read: Any) -> list[dict[str, Any]]:
    """Per column: ``values`` -> ``codes``, the ``nan`` code and the ``unknown`` code ("error" if it raises)."""
    _check_width(fitted, context)
    if context.sparse:
        raise Unsupported(f"{_name(fitted)} on a sparse matrix")
    categories = _categories(fitted)
    base = [column[0] for column in categories]
    tables = []
    for i, column in enumerate(categories):
        known = [c for c in column if not (isinstance(c, float) and math.isnan(c))]
        has_nan = len(known) != len(column)
        probes = [*known, float("nan"), _unknown_probe(known)]
        answers = _probe(fitted, i, probes, base)
        if any(a is None for a in answers[: len(known)]):
            raise Unsupported(f"{_name(fitted)} refuses one of its own categories in column {i}")
        codes = [read(i, a) for a in answers[: len(known)]]
        nan_answer, unknown_answer = answers[len(known)], answers[len(known) + 1]
        unknown: Any = "error" if unknown_answer is None else read(i, unknown_answer)
        nan_code = None
        if has_nan:
            if nan_answer is None:
                raise Unsupported(f"{_name(fitted)} refuses its own NaN category in column {i}")
            nan_code = read(i, nan_answer)
        elif (nan_answer is None) != (unknown == "error") or (
            nan_answer is not None and read(i, nan_answer) != unknown
        ):
            raise Unsupported(f"{_name(fitted)} treats NaN differently from an unknown value in column {i}")
        tables.append({"values": known, "codes": codes, "nan": nan_code, "unknown": unknown})
    return tables


@converts_step("OneHotEncoder")
def onehot_encoder(fitted: Any, context: StepContext) -> Part:
    widths = [int(w) for w in fitted._n_features_outs]
    offsets = np.cumsum([0, *widths]).tolist()

    def read(i: int, row: np.ndarray) -> int:
        block = row[offsets[i] : offsets[i + 1]]
        hot = np.flatnonzero(block)
        if len(hot) == 0:
            return -1
        if len(hot) > 1 or block[hot[0]] != 1:
            raise Unsupported(f"OneHotEncoder sets more than one indicator for one value in column {i}")
        return int(hot[0])

    tables = _tables(fitted, context, read)
    dtype = np.dtype(fitted.dtype).name
    return {"kind": "onehot_encoder", "dtype": dtype, "tables": tables, "widths": widths}, {}


@converts_step("OrdinalEncoder")
def ordinal_encoder(fitted: Any, context: StepContext) -> Part:
    outputs: list[list[float]] = [[] for _ in fitted.categories_]

    def read(i: int, row: np.ndarray) -> int:
        value = float(row[i])
        for k, seen in enumerate(outputs[i]):
            if seen == value or (math.isnan(seen) and math.isnan(value)):
                return k
        outputs[i].append(value)
        return len(outputs[i]) - 1

    tables = _tables(fitted, context, read)
    arrays = {f"out{i}": np.asarray(values, dtype=np.float64) for i, values in enumerate(outputs)}
    return {"kind": "ordinal_encoder", "dtype": np.dtype(fitted.dtype).name, "tables": tables}, arrays
