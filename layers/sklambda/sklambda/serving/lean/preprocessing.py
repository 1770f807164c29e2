"""Preprocessing steps of the lean runtime, each doing what its scikit-learn twin's ``transform`` does.

"The same" means the same numpy operations on the same dtypes in the same order, not a formula
that is equal on paper: ``StandardScaler`` subtracts a mean cast to the input's dtype and then
divides, ``RobustScaler`` subtracts and divides without the cast, ``MinMaxScaler`` multiplies and
adds, and after a sparse step the scalers multiply by the reciprocal of the scale (scikit-learn's
``inplace_column_scale``) instead of dividing. Float32 input stays float32 where scikit-learn keeps
it; anything else becomes float64 as ``check_array`` converts it. Values scikit-learn refuses (an
infinity where NaN is allowed, a NaN where nothing is) are refused here too, with ValueError.

Encoders map each value through a table the publisher read off the fitted encoder, category by
category (drop, infrequent groups, missing-value categories and unknown values included); values
are compared as scikit-learn compares them: Python equality, any NaN equal to a NaN category.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np

from sklambda.serving.lean.base import LeanFormatError, Step, build_step, require, step, vector

FLOATS = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))
UNKNOWN = object()  # a table miss


def as_float(x: np.ndarray) -> np.ndarray:
    """``check_array(X, dtype=FLOAT_DTYPES, copy=True)``: float arrays keep their dtype, the rest become float64."""
    if x.dtype in FLOATS:
        return np.array(x, copy=True)
    return x.astype(np.float64)


def is_nan_value(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def object_isnan(x: np.ndarray) -> np.ndarray:
    """scikit-learn's ``_object_dtype_isnan``: ``X != X`` (None is not NaN)."""
    return np.asarray(x != x, dtype=bool)


def refuse_infinity(x: np.ndarray) -> None:
    """The infinity half of ``assert_finite`` for a float matrix (``count_nonzero``: no ``any()`` reduction)."""
    if np.count_nonzero(np.isinf(x)):
        raise ValueError(f"Input contains infinity or a value too large for dtype({x.dtype.name!r}).")


def assert_finite(x: np.ndarray, *, allow_nan: bool) -> None:
    """``check_array``'s ``ensure_all_finite`` (True, or "allow-nan")."""
    if x.dtype.kind in "fc":
        refuse_infinity(x)
        if not allow_nan and np.count_nonzero(np.isnan(x)):
            raise ValueError("Input contains NaN.")
    elif x.dtype.kind == "O" and not allow_nan and object_isnan(x).any():
        raise ValueError("Input contains NaN.")


def step_floats(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``as_float`` without its copy where a step does not write into its input: (the floats, whether fresh)."""
    if x.dtype in FLOATS:
        return x, False
    return x.astype(np.float64), True


def step_apply(op: Any, x: np.ndarray, value: np.ndarray, fresh: bool) -> np.ndarray:
    """``x op= value`` on a copy of ``x`` (``fresh``: ``x`` is already one), the result in ``x``'s dtype.

    Where ``value`` has ``x``'s dtype, ``op(x, value)`` runs the same loop on the same values straight
    into a new array of that dtype (no copy first); otherwise (a float32 matrix minus a float64
    vector, computed in float64 and rounded to float32 in place) the copy is made.
    """
    if fresh:
        op(x, value, out=x)
        return x
    if x.dtype == value.dtype:
        return op(x, value)
    out = np.array(x, copy=True)
    op(out, value, out=out)
    return out


def per_float_dtype(
    vectors: tuple[np.ndarray | None, ...], dtypes: tuple[np.dtype[Any], ...] = FLOATS
) -> dict[np.dtype[Any], tuple[Any, ...]]:
    """Each vector cast to each input float dtype once, at load (``mean.astype(x.dtype)`` per call before)."""
    return {dtype: tuple(None if v is None else v.astype(dtype) for v in vectors) for dtype in dtypes}


def step_clip_bounds(low: float, high: float) -> dict[np.dtype[Any], tuple[np.ndarray, np.ndarray]]:
    """``np.asarray(bound, dtype=x.dtype)`` for each float dtype, made once."""
    return {dtype: (np.asarray(low, dtype=dtype), np.asarray(high, dtype=dtype)) for dtype in FLOATS}


def step_clip(
    x: np.ndarray, bounds: dict[np.dtype[Any], tuple[np.ndarray, np.ndarray]], low: float, high: float
) -> None:
    """``np.clip(x, low, high, out=x)`` with the bounds in ``x``'s dtype (the ndarray method: the same ``um.clip``)."""
    pair = bounds.get(x.dtype)
    if pair is None:
        pair = (np.asarray(low, dtype=x.dtype), np.asarray(high, dtype=x.dtype))
    x.clip(pair[0], pair[1], out=x)


def check_width(x: np.ndarray, n: int, kind: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"{kind}: expected a 2-D matrix with {n} columns, got shape {x.shape}")
    return x


def _widths(spec: dict[str, Any]) -> tuple[int, int]:
    n_in, n_out = int(spec["n_in"]), int(spec["n_out"])
    if n_in < 0 or n_out < 0:
        raise LeanFormatError(f"{spec['kind']}: negative width")
    return n_in, n_out


def _dtype(name: Any, kind: str) -> np.dtype[Any]:
    try:
        dtype = np.dtype(str(name))
    except TypeError as err:
        raise LeanFormatError(f"{kind}: unknown dtype {name!r}") from err
    if dtype.kind not in "fiub":
        raise LeanFormatError(f"{kind}: dtype {dtype} is not numeric")
    return dtype


# ----------------------------------------------------------------------------- structure
@step
class Select:
    """The pipeline's input columns picked out of the schema-ordered matrix (a DataFrame-fitted pipeline)."""

    kind: ClassVar[str] = "select"

    def __init__(self, n_in: int, indices: np.ndarray) -> None:
        self.n_in, self.indices = n_in, indices

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Select:
        n_in, n_out = _widths(spec)
        indices = np.asarray(spec["indices"], dtype=np.intp)
        if indices.shape != (n_out,) or (indices < 0).any() or (indices >= n_in).any():
            raise LeanFormatError("select: indices outside the input")
        return cls(n_in, indices)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return check_width(x, self.n_in, self.kind)[:, self.indices]


@step
class Identity:
    """``"passthrough"`` (and an identity ``FunctionTransformer``); ``validate`` is its ``check_array``."""

    kind: ClassVar[str] = "identity"

    def __init__(self, n: int, validate: bool) -> None:
        self.n, self.validate = n, validate

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Identity:
        n_in, n_out = _widths(spec)
        if n_in != n_out:
            raise LeanFormatError("identity: n_in != n_out")
        return cls(n_in, bool(spec.get("validate", False)))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = check_width(x, self.n, self.kind)
        if self.validate:  # FunctionTransformer(validate=True): check_array(X), numeric, finite
            x = x if x.dtype.kind in "fiub" else x.astype(np.float64)
            assert_finite(x, allow_nan=False)
        return x


@step
class MissingAsNan:
    """sklambda's fallback adapter (``serving.adapters.missing_as_nan``): null categories as NaN in ``columns``."""

    kind: ClassVar[str] = "missing_as_nan"

    def __init__(self, n: int, columns: list[int]) -> None:
        self.n, self.columns = n, columns

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> MissingAsNan:
        n_in, n_out = _widths(spec)
        columns = [int(c) for c in spec.get("columns", [])]
        if n_in != n_out or any(not 0 <= c < n_in for c in columns):
            raise LeanFormatError("missing_as_nan: columns outside the input")
        return cls(n_in, columns)

    def transform(self, x: np.ndarray) -> np.ndarray:
        from sklambda.serving.adapters import missing_as_nan

        return missing_as_nan(check_width(x, self.n, self.kind), self.columns)


class _Branch:
    __slots__ = ("columns", "steps", "weight", "n_out", "run")

    def __init__(self, columns: np.ndarray, steps: list[Step], weight: float | None, n_out: int) -> None:
        self.columns, self.steps, self.weight, self.n_out = columns, steps, weight, n_out
        # A one-row input's columns: a slice (a view, no copy) when they are a run left to right; the
        # steps never write into their input, and the blocks are copied when they are stacked. (Not for
        # more rows: ``x[:, columns]`` is laid out column by column, and a conversion error names the
        # first bad value in that order.)
        run = len(columns) > 0 and bool((np.diff(columns) == 1).all())
        self.run: slice | np.ndarray = slice(int(columns[0]), int(columns[-1]) + 1) if run else columns


@step
class Columns:
    """``ColumnTransformer``: each branch's steps on its input columns, outputs side by side.

    ``sparse`` is scikit-learn's ``sparse_output_``: its blocks were converted to numbers before
    stacking (so an object passthrough block becomes float64, as ``check_array`` makes it).
    """

    kind: ClassVar[str] = "columns"

    def __init__(self, n_in: int, n_out: int, branches: list[_Branch], sparse: bool) -> None:
        self.n_in, self.n_out, self.branches, self.sparse = n_in, n_out, branches, sparse

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Columns:
        n_in, n_out = _widths(spec)
        branches = []
        for branch in spec["branches"]:
            columns = np.asarray(branch["columns"], dtype=np.intp)
            if columns.ndim != 1 or (columns < 0).any() or (columns >= n_in).any():
                raise LeanFormatError("columns: a branch selects columns outside the input")
            steps = [build_step(s, arrays) for s in branch["steps"]]
            width = len(columns)
            for s in branch["steps"]:
                if int(s["n_in"]) != width:
                    raise LeanFormatError(f"columns: step {s['id']!r} takes {s['n_in']} columns, gets {width}")
                width = int(s["n_out"])
            if width != int(branch["n_out"]):
                raise LeanFormatError("columns: a branch's width does not add up")
            weight = branch.get("weight")
            branches.append(_Branch(columns, steps, None if weight is None else float(weight), width))
        if sum(b.n_out for b in branches) != n_out:
            raise LeanFormatError("columns: branch widths do not add up to n_out")
        return cls(n_in, n_out, branches, bool(spec.get("sparse", False)))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = check_width(x, self.n_in, self.kind)
        one = x.shape[0] == 1
        blocks = []
        for branch in self.branches:
            out = x[:, branch.run if one else branch.columns]
            for part in branch.steps:
                out = part.transform(out)
            if branch.weight is not None:
                out = out * branch.weight
            if self.sparse and out.dtype.kind not in "fiub":
                out = out.astype(np.float64)
            blocks.append(out)
        if not blocks:
            return np.zeros((x.shape[0], 0))
        return np.concatenate(blocks, axis=1)  # np.hstack of 2-D blocks, without its atleast_1d pass


# ----------------------------------------------------------------------------- scalers
@step
class StandardScaler:
    kind: ClassVar[str] = "standard_scaler"

    def __init__(self, n: int, mean: np.ndarray | None, scale: np.ndarray | None, sparse: bool) -> None:
        self.n, self.mean, self.scale, self.sparse = n, mean, scale, sparse
        self.reciprocal = None if scale is None else 1 / scale
        self.cast = per_float_dtype((mean, scale))  # mean_ and scale_ in each input dtype

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> StandardScaler:
        n, _ = _widths(spec)
        mean = vector(arrays["mean"], n, cls.kind, "mean") if "mean" in arrays else None
        scale = vector(arrays["scale"], n, cls.kind, "scale") if "scale" in arrays else None
        sparse = bool(spec.get("sparse", False))
        if sparse and mean is not None:
            raise LeanFormatError("standard_scaler: a sparse input cannot be centred")
        return cls(n, mean, scale, sparse)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x, fresh = step_floats(check_width(x, self.n, self.kind))
        refuse_infinity(x)
        if self.sparse:
            if self.reciprocal is not None:
                return step_apply(np.multiply, x, self.reciprocal, fresh)
            return x if fresh else np.array(x, copy=True)
        cast = self.cast.get(x.dtype)
        mean, scale = cast if cast is not None else per_float_dtype((self.mean, self.scale), (x.dtype,))[x.dtype]
        if mean is not None:
            x = step_apply(np.subtract, x, mean, fresh)
            if scale is not None:
                x /= scale
            return x
        if scale is not None:
            return step_apply(np.divide, x, scale, fresh)
        return x if fresh else np.array(x, copy=True)


@step
class MinMaxScaler:
    kind: ClassVar[str] = "minmax_scaler"

    def __init__(self, n: int, scale: np.ndarray, shift: np.ndarray, clip: tuple[float, float] | None) -> None:
        self.n, self.scale, self.shift, self.clip = n, scale, shift, clip
        self.bounds = None if clip is None else step_clip_bounds(*clip)

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> MinMaxScaler:
        n, _ = _widths(spec)
        scale, shift = require(arrays, cls.kind, "scale", "min")
        clip = spec.get("clip")
        bounds = None if clip is None else (float(clip[0]), float(clip[1]))
        return cls(n, vector(scale, n, cls.kind, "scale"), vector(shift, n, cls.kind, "min"), bounds)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x, fresh = step_floats(check_width(x, self.n, self.kind))
        refuse_infinity(x)
        x = step_apply(np.multiply, x, self.scale, fresh)
        x += self.shift
        if self.clip is not None and self.bounds is not None:
            step_clip(x, self.bounds, *self.clip)
        return x


@step
class MaxAbsScaler:
    kind: ClassVar[str] = "maxabs_scaler"

    def __init__(self, n: int, scale: np.ndarray, clip: bool, sparse: bool) -> None:
        self.n, self.scale, self.clip, self.sparse = n, scale, clip, sparse
        self.reciprocal = 1.0 / scale
        self.bounds = step_clip_bounds(-1.0, 1.0)

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> MaxAbsScaler:
        n, _ = _widths(spec)
        (scale,) = require(arrays, cls.kind, "scale")
        return cls(n, vector(scale, n, cls.kind, "scale"), bool(spec.get("clip")), bool(spec.get("sparse")))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x, fresh = step_floats(check_width(x, self.n, self.kind))
        refuse_infinity(x)
        if self.sparse:  # inplace_column_scale by the reciprocal
            return self._bounded(step_apply(np.multiply, x, self.reciprocal, fresh))
        return self._bounded(step_apply(np.divide, x, self.scale, fresh))

    def _bounded(self, x: np.ndarray) -> np.ndarray:
        if self.clip:
            step_clip(x, self.bounds, -1.0, 1.0)
        return x


@step
class RobustScaler:
    kind: ClassVar[str] = "robust_scaler"

    def __init__(self, n: int, center: np.ndarray | None, scale: np.ndarray | None, sparse: bool) -> None:
        self.n, self.center, self.scale, self.sparse = n, center, scale, sparse
        self.reciprocal = None if scale is None else 1.0 / scale

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> RobustScaler:
        n, _ = _widths(spec)
        center = vector(arrays["center"], n, cls.kind, "center") if "center" in arrays else None
        scale = vector(arrays["scale"], n, cls.kind, "scale") if "scale" in arrays else None
        return cls(n, center, scale, bool(spec.get("sparse", False)))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x, fresh = step_floats(check_width(x, self.n, self.kind))
        refuse_infinity(x)
        if self.sparse:
            if self.reciprocal is not None:
                return step_apply(np.multiply, x, self.reciprocal, fresh)
            return x if fresh else np.array(x, copy=True)
        if self.center is not None:
            x = step_apply(np.subtract, x, self.center, fresh)
            fresh = True
        if self.scale is not None:
            return step_apply(np.divide, x, self.scale, fresh)
        return x if fresh else np.array(x, copy=True)


# ----------------------------------------------------------------------------- imputation
def missing_mask(x: np.ndarray, missing: dict[str, Any]) -> np.ndarray:
    """scikit-learn's ``_get_mask``: NaN (``isnan``; ``X != X`` for objects) or ``X == value``."""
    if missing.get("nan"):
        if x.dtype.kind == "f":
            return np.isnan(x)
        if x.dtype.kind in "iu":
            return np.zeros(x.shape, dtype=bool)
        return object_isnan(x)
    return np.asarray(x == missing.get("value"), dtype=bool)


@step
class SimpleImputer:
    """``SimpleImputer.transform``: the fitted statistics into the missing cells, then the indicator.

    ``valid`` lists the columns kept (scikit-learn drops the ones that were empty at fit time unless
    ``keep_empty_features``); ``indicator`` the input columns whose missing mask is appended.
    """

    kind: ClassVar[str] = "simple_imputer"

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_in, self.n_out = _widths(spec)
        self.strategy = str(spec["strategy"])
        self.missing = dict(spec["missing"])
        self.object_fit = bool(spec["object_fit"])
        valid = spec.get("valid")
        self.valid = None if valid is None else np.asarray(valid, dtype=np.intp)
        width = self.n_in if self.valid is None else len(self.valid)
        if self.valid is not None and ((self.valid < 0).any() or (self.valid >= self.n_in).any()):
            raise LeanFormatError("simple_imputer: valid columns outside the input")
        if "statistics" in arrays:
            self.statistics: list[Any] | np.ndarray = vector(arrays["statistics"], width, self.kind, "statistics")
        else:
            values = spec["statistics"]
            if not isinstance(values, list) or len(values) != width:
                raise LeanFormatError("simple_imputer: statistics do not match the columns")
            self.statistics = values
        indicator = spec.get("indicator")
        self.indicator = None if indicator is None else np.asarray(indicator, dtype=np.intp)
        extra = 0 if self.indicator is None else len(self.indicator)
        if self.indicator is not None and ((self.indicator < 0).any() or (self.indicator >= self.n_in).any()):
            raise LeanFormatError("simple_imputer: indicator columns outside the input")
        if width + extra != self.n_out:
            raise LeanFormatError("simple_imputer: widths do not add up")
        # Resolved once: the input conversion, the missing marker, and the statistics as one row that
        # np.copyto writes into the missing cells (the same values the per-column assignment wrote).
        self.floats = not self.object_fit and self.strategy not in ("most_frequent", "constant")
        self.nan = bool(self.missing.get("nan"))
        self.numeric_marker = isinstance(self.missing.get("value"), numbers.Real)
        if isinstance(self.statistics, np.ndarray):
            self.fill: np.ndarray = self.statistics
        else:
            self.fill = np.empty(width, dtype=object)
            for k, value in enumerate(self.statistics):
                self.fill[k] = value

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> SimpleImputer:
        return cls(spec, arrays)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = check_width(x, self.n_in, self.kind)
        missing_is_nan = self.nan
        if self.object_fit:
            x = np.array(x, dtype=object, copy=True)
        elif self.floats:  # mean, median, a callable: FLOAT_DTYPES
            x = as_float(x)
        else:
            x = np.array(x, copy=True)
        kind = x.dtype.kind
        if kind not in "iufO":
            raise ValueError(f"SimpleImputer does not support data with dtype {x.dtype}")
        if missing_is_nan and kind == "f":  # NaN in a float matrix: the usual case, with fewer passes over x
            finite = np.count_nonzero(np.isfinite(x))
            if finite == x.size:  # nothing missing, nothing refused: no cell to fill, the indicator all False
                out = x if self.valid is None else x[:, self.valid]
                if self.indicator is None:
                    return out
                return np.concatenate((out, np.zeros((x.shape[0], len(self.indicator)), dtype=bool)), axis=1)
            mask = np.isnan(x)
            if finite + np.count_nonzero(mask) != x.size:  # neither finite nor NaN: an infinity
                refuse_infinity(x)
        else:
            assert_finite(x, allow_nan=missing_is_nan)
            if kind in "fiu" and not missing_is_nan and not self.numeric_marker:
                raise ValueError("'X' and 'missing_values' types are expected to be both numerical.")
            mask = missing_mask(x, self.missing)
        out = x if self.valid is None else x[:, self.valid]
        kept = mask if self.valid is None else mask[:, self.valid]
        if out.dtype == self.fill.dtype:
            np.copyto(out, self.fill, where=kept)
        else:  # e.g. numbers into an object matrix: each cell gets the statistic itself, as before
            for k in range(out.shape[1]):
                rows = kept[:, k]
                if rows.any():
                    out[rows, k] = self.statistics[k]
        if self.indicator is None:
            return out
        return np.concatenate((out, mask[:, self.indicator]), axis=1)  # np.hstack of two 2-D blocks


# ----------------------------------------------------------------------------- encoders
class _Table:
    """One input column's category table: value -> code, a NaN code, and what an unknown value gets."""

    __slots__ = ("codes", "nan", "unknown")

    def __init__(self, spec: dict[str, Any], kind: str) -> None:
        values, codes = spec["values"], spec["codes"]
        if not isinstance(values, list) or not isinstance(codes, list) or len(values) != len(codes):
            raise LeanFormatError(f"{kind}: a category table's values and codes differ in length")
        self.codes = {v: int(c) for v, c in zip(values, codes, strict=True)}
        self.nan = spec.get("nan")  # code of a NaN category, None: NaN is unknown
        unknown = spec["unknown"]
        self.unknown = None if unknown == "error" else int(unknown)

    def lookup(self, value: Any, column: int) -> int:
        """``code``, with the common values (a string, None: never NaN, always hashable) looked up at once."""
        if value is None or value.__class__ is str:
            found = self.codes.get(value)
            if found is not None:
                return found
        return self.code(value, column)

    def code(self, value: Any, column: int) -> int:
        if is_nan_value(value):
            found: Any = UNKNOWN if self.nan is None else int(self.nan)
        else:
            try:
                found = self.codes.get(value, UNKNOWN)
            except TypeError:  # unhashable
                found = UNKNOWN
        if found is UNKNOWN:
            if self.unknown is None:
                raise ValueError(f"Found unknown categories [{value!r}] in column {column} during transform")
            return self.unknown
        return int(found)


def _encoder_input(x: np.ndarray) -> list[list[Any]]:
    """The rows as lists of Python values (``_check_X``: float input must be finite or NaN)."""
    assert_finite(x, allow_nan=True)
    return x.tolist()


@step
class OneHotEncoder:
    """Each input column's block of indicator columns; a code is the block column set to 1 (-1: none)."""

    kind: ClassVar[str] = "onehot_encoder"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.n_in, self.n_out = _widths(spec)
        self.dtype = _dtype(spec["dtype"], self.kind)
        self.tables = [_Table(t, self.kind) for t in spec["tables"]]
        self.widths = [int(w) for w in spec["widths"]]
        if len(self.tables) != self.n_in or len(self.widths) != self.n_in or sum(self.widths) != self.n_out:
            raise LeanFormatError("onehot_encoder: tables and widths do not match the columns")
        for table, width in zip(self.tables, self.widths, strict=True):
            codes = [*table.codes.values(), table.nan if table.nan is not None else -1]
            if table.unknown is not None:
                codes.append(table.unknown)
            if any(c < -1 or c >= width for c in codes):
                raise LeanFormatError("onehot_encoder: a code points outside its block")
        self.offsets = np.cumsum([0, *self.widths[:-1]]).tolist()

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> OneHotEncoder:
        return cls(spec)

    def transform(self, x: np.ndarray) -> np.ndarray:
        rows = _encoder_input(check_width(x, self.n_in, self.kind))
        width = self.n_out
        out = np.zeros((len(rows), width), dtype=self.dtype)
        flat = out.reshape(-1)  # a view: C order, row r's block for column i starts at r * width + offset
        for i, (table, offset) in enumerate(zip(self.tables, self.offsets, strict=True)):  # column by column, so
            lookup = table.lookup  # the first unknown value reported is the one scikit-learn reports
            for r, row in enumerate(rows):
                code = lookup(row[i], i)
                if code >= 0:
                    flat[r * width + offset + code] = 1
        return out


@step
class OrdinalEncoder:
    """Each input column's value replaced by its code (``encoded_missing_value``, ``unknown_value`` included)."""

    kind: ClassVar[str] = "ordinal_encoder"

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_in, _ = _widths(spec)
        self.dtype = _dtype(spec["dtype"], self.kind)
        self.tables = [_Table(t, self.kind) for t in spec["tables"]]
        if len(self.tables) != self.n_in or int(spec["n_out"]) != self.n_in:
            raise LeanFormatError("ordinal_encoder: tables do not match the columns")
        self.outputs = []
        for i, table in enumerate(self.tables):
            (values,) = require(arrays, self.kind, f"out{i}")
            values = np.asarray(values, dtype=np.float64)
            codes = [*table.codes.values(), table.nan if table.nan is not None else 0]
            if table.unknown is not None:
                codes.append(table.unknown)
            if values.ndim != 1 or any(c < 0 or c >= len(values) for c in codes):
                raise LeanFormatError("ordinal_encoder: a code points outside its outputs")
            self.outputs.append(values)
        self.floats = [values.tolist() for values in self.outputs]  # the same doubles, as Python floats

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> OrdinalEncoder:
        return cls(spec, arrays)

    def transform(self, x: np.ndarray) -> np.ndarray:
        rows = _encoder_input(check_width(x, self.n_in, self.kind))
        width = self.n_in
        flat: list[float] = [0.0] * (len(rows) * width)
        for i, (table, outputs) in enumerate(zip(self.tables, self.floats, strict=True)):  # column by column
            lookup = table.lookup
            for r, row in enumerate(rows):
                flat[r * width + i] = outputs[lookup(row[i], i)]
        out = np.array(flat, dtype=np.float64).reshape(len(rows), width)
        return out if self.dtype == FLOATS[0] else out.astype(self.dtype)
