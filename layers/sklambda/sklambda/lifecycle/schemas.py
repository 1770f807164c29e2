"""A user's feature schema, read from their data or from the fitted pipeline itself — never guessed.

From data (a pandas DataFrame, or a numpy array with names): each column's type from its values
(boolean, integer, number, or category with its values), nullable when it has missing values.

From the fitted pipeline (no data): the names from ``feature_names_in_`` (``x0…`` from
``n_features_in_`` when it was fitted on an array), the categories of the fitted encoders that read
each column (OneHotEncoder, OrdinalEncoder, alone or inside a ColumnTransformer branch or a nested
Pipeline), nullable where an imputer fills the column or the estimator handles missing values
natively. A column the pipeline only scales or passes on is a number.

Both agree where they meet: with data, a column an encoder reads takes the encoder's categories
(what the model knows) and the encoder's unknown-category policy. This module imports scikit-learn
and pandas only when given their objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sklambda.registry.features import FeatureSchema, FeatureSpec

MAX_CATEGORIES = 1000
ENCODERS = ("OneHotEncoder", "OrdinalEncoder", "TargetEncoder")
IMPUTERS = ("SimpleImputer", "KNNImputer", "IterativeImputer", "MissingIndicator")
# Estimators that accept NaN in every column at predict time (scikit-learn's own support for missing values).
NAN_NATIVE = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


class SchemaError(ValueError):
    """The data or the pipeline cannot give a feature schema; the message says why and what to do."""


@dataclass
class ColumnFacts:
    """What the fitted pipeline says about one input column."""

    categories: list[Any] | None = None
    unknown_allowed: bool = False
    fills_missing: bool = False
    readers: list[str] = field(default_factory=list)


def _name(obj: Any) -> str:
    return obj if isinstance(obj, str) else type(obj).__name__


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or value is np.nan
    except TypeError:
        return False


# ----------------------------------------------------------------------------- from the pipeline
def feature_names(estimator: Any) -> list[str]:
    """The input columns the pipeline was fitted on, in order."""
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise SchemaError(
            f"{_name(estimator)} has neither feature_names_in_ nor n_features_in_: is it fitted? "
            "Pass the training data (X) so the schema can be read from it."
        )
    return [f"x{i}" for i in range(int(n))]


def _resolve_columns(columns: Any, names: list[str]) -> list[int]:
    """A ColumnTransformer's column selection (names, indices, slice, mask) as input positions."""
    if isinstance(columns, str):
        columns = [columns]
    if isinstance(columns, slice):
        return list(range(len(names)))[columns]
    if isinstance(columns, (int, np.integer)):
        return [int(columns)]
    values = list(np.asarray(columns).tolist()) if not isinstance(columns, list) else list(columns)
    if values and all(isinstance(v, bool) for v in values):
        return [i for i, keep in enumerate(values) if keep]
    out = []
    for v in values:
        if isinstance(v, str):
            if v not in names:
                raise SchemaError(f"the pipeline selects a column {v!r} that is not among its inputs")
            out.append(names.index(v))
        else:
            out.append(int(v))
    return out


def _steps(transformer: Any) -> Iterator[Any]:
    """The steps of a (nested) Pipeline, in order; a plain transformer is its own only step."""
    inner = getattr(transformer, "steps", None)
    if inner is None:
        yield transformer
        return
    for _, step in inner:
        if step is None or step == "passthrough":
            continue
        yield from _steps(step)


def _branch_facts(transformer: Any, cols: list[int], facts: list[ColumnFacts]) -> None:
    """Read one branch (the columns ``cols``) through its steps while the columns keep their positions."""
    for step in _steps(transformer):
        kind = _name(step)
        if kind == "ColumnTransformer":
            _column_transformer_facts(step, [f"__{c}" for c in cols], facts, positions=cols)
            return
        for c in cols:
            facts[c].readers.append(kind)
        if kind in IMPUTERS:
            for c in cols:
                facts[c].fills_missing = True
            if kind == "MissingIndicator" or getattr(step, "add_indicator", False):
                # The indicator columns are appended after the imputed ones: positions still hold.
                pass
            continue
        if kind in ENCODERS:
            categories = getattr(step, "categories_", None)
            if categories is not None and len(categories) == len(cols):
                unknown = getattr(step, "handle_unknown", "error")
                for c, cats in zip(cols, categories, strict=True):
                    known = [v for v in np.asarray(cats, dtype=object).tolist() if not _is_missing(v)]
                    facts[c].categories = known
                    facts[c].unknown_allowed = unknown in ("ignore", "infrequent_if_exist", "use_encoded_value")
                    if len(known) < len(cats):  # None / NaN was a category at fit time
                        facts[c].fills_missing = True
            return  # after an encoder the columns are codes: later steps say nothing about the inputs
        # A scaler, a selector, an estimator-as-transformer: positions may no longer map; stop reading.
        if kind not in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler", "FunctionTransformer"):
            return


def _column_transformer_facts(
    ct: Any, names: list[str], facts: list[ColumnFacts], *, positions: list[int] | None = None
) -> None:
    positions = positions if positions is not None else list(range(len(names)))
    fitted = getattr(ct, "transformers_", None)
    if fitted is None:
        raise SchemaError("the ColumnTransformer is not fitted")
    local_names = [str(n) for n in getattr(ct, "feature_names_in_", names)]
    for _, transformer, columns in fitted:
        if transformer == "drop":
            continue
        cols = [positions[i] for i in _resolve_columns(columns, local_names)]
        if transformer == "passthrough":
            continue
        _branch_facts(transformer, cols, facts)


def pipeline_facts(estimator: Any) -> tuple[list[str], list[ColumnFacts]]:
    """Per input column, what the fitted pipeline's encoders and imputers say about it."""
    names = feature_names(estimator)
    facts = [ColumnFacts() for _ in names]
    steps = list(_steps(estimator))
    for step in steps:
        kind = _name(step)
        if kind == "ColumnTransformer":
            _column_transformer_facts(step, names, facts)
            break
        if kind in IMPUTERS or kind in ENCODERS:
            _branch_facts(step, list(range(len(names))), facts)
            break
        if kind not in ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"):
            break
    if steps and _name(steps[-1]) in NAN_NATIVE:
        for fact in facts:
            fact.fills_missing = True
    return names, facts


def _category_values(values: Sequence[Any], name: str) -> list[str]:
    out = []
    for v in values:
        if not isinstance(v, str):
            raise SchemaError(
                f"feature {name!r}: the pipeline's encoder knows the non-string category {v!r}; sklambda "
                "categories are strings — encode the column as text before fitting, or pass a schema"
            )
        out.append(v)
    return sorted(set(out))


def schema_from_pipeline(estimator: Any) -> FeatureSchema:
    """The schema a fitted pipeline implies, without its training data."""
    names, facts = pipeline_facts(estimator)
    specs = []
    for name, fact in zip(names, facts, strict=True):
        if fact.categories is not None and all(isinstance(v, str) for v in fact.categories):
            specs.append(
                FeatureSpec(
                    name=name,
                    type="category",
                    categories=_category_values(fact.categories, name),
                    nullable=fact.fills_missing,
                    unknown_category="allow" if fact.unknown_allowed else "error",
                )
            )
        else:  # numeric codes an encoder reads are still numbers on the wire
            specs.append(FeatureSpec(name=name, type="number", nullable=fact.fills_missing))
    return FeatureSchema(features=specs)


# ----------------------------------------------------------------------------- from data
def columns_of(x: Any, names: Sequence[str] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The columns of a DataFrame or a 2-D array as (names, object/number arrays)."""
    if hasattr(x, "columns") and hasattr(x, "iloc"):  # a pandas DataFrame
        cols = [str(c) for c in x.columns]
        if len(set(cols)) != len(cols):
            raise SchemaError("the DataFrame has duplicate column names")
        return cols, [_column_values(x.iloc[:, i]) for i in range(len(cols))]
    array = np.asarray(x)
    if array.ndim != 2:
        raise SchemaError(f"X must be 2-D (rows × features), got shape {array.shape}")
    cols = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(array.shape[1])]
    if len(cols) != array.shape[1]:
        raise SchemaError(f"{len(cols)} feature names for {array.shape[1]} columns")
    return cols, [array[:, i] for i in range(array.shape[1])]


def _column_values(series: Any) -> np.ndarray:
    dtype = str(series.dtype)
    if dtype == "category":
        return np.asarray(series.astype(object).where(series.notna(), None).tolist(), dtype=object)
    if dtype in ("bool", "boolean"):
        if series.isna().any():
            return np.asarray([None if _is_missing(v) else bool(v) for v in series.tolist()], dtype=object)
        return series.to_numpy(dtype=bool)
    if series.dtype.kind in "iuf":
        return series.to_numpy(dtype=np.float64) if series.dtype.kind == "f" else series.to_numpy()
    if dtype.startswith(("Int", "UInt", "Float")):  # pandas nullable numbers
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray([None if _is_missing(v) else v for v in series.tolist()], dtype=object)


def _spec_from_values(name: str, values: np.ndarray, fact: ColumnFacts | None) -> FeatureSpec:
    kind = values.dtype.kind
    if kind == "b":
        return FeatureSpec(name=name, type="boolean", nullable=bool(fact and fact.fills_missing))
    if kind in "iu":
        return FeatureSpec(name=name, type="integer", nullable=bool(fact and fact.fills_missing))
    if kind == "f":
        nullable = bool(np.isnan(values).any()) or bool(fact and fact.fills_missing)
        if fact is not None and fact.categories is not None and not all(isinstance(c, str) for c in fact.categories):
            return FeatureSpec(name=name, type="number", nullable=nullable)
        finite = values[np.isfinite(values)]
        integral = finite.size > 0 and bool(np.all(finite == np.round(finite))) and bool(np.abs(finite).max() < 2**53)
        return FeatureSpec(name=name, type="integer" if integral and not nullable else "number", nullable=nullable)
    present = [v for v in values.tolist() if not _is_missing(v)]
    nullable = len(present) < len(values) or bool(fact and fact.fills_missing)
    if present and all(isinstance(v, bool) for v in present):
        return FeatureSpec(name=name, type="boolean", nullable=nullable)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        as_float = np.asarray(present, dtype=np.float64)
        integral = bool(np.all(as_float == np.round(as_float)))
        return FeatureSpec(name=name, type="integer" if integral else "number", nullable=nullable)
    if not all(isinstance(v, str) for v in present):
        kinds = sorted({type(v).__name__ for v in present})
        raise SchemaError(f"feature {name!r} mixes value types {kinds}; make the column one type before fitting")
    unknown: Literal["error", "allow"] = "error"
    if fact is not None and fact.categories is not None:
        categories = _category_values(fact.categories, name)
        unknown = "allow" if fact.unknown_allowed else "error"
    else:
        categories = sorted(set(present))
        if not categories:
            raise SchemaError(f"feature {name!r} has no values at all")
        if len(categories) > MAX_CATEGORIES:
            raise SchemaError(
                f"feature {name!r} has {len(categories)} distinct text values (more than {MAX_CATEGORIES}): "
                "is it an identifier? Drop it, or pass a schema"
            )
    return FeatureSpec(name=name, type="category", categories=categories, nullable=nullable, unknown_category=unknown)


def schema_from_data(x: Any, estimator: Any | None = None, *, names: Sequence[str] | None = None) -> FeatureSchema:
    """The schema of the training data, refined by what the fitted pipeline (if given) says of each column."""
    cols, values = columns_of(x, names)
    facts: dict[str, ColumnFacts] = {}
    if estimator is not None:
        fitted_names, fitted_facts = pipeline_facts(estimator)
        if hasattr(estimator, "feature_names_in_") and fitted_names != cols:
            raise SchemaError(
                f"X's columns {cols[:5]}… are not the columns the pipeline was fitted on {fitted_names[:5]}… "
                "(same names, same order)"
            )
        if len(fitted_names) != len(cols):
            raise SchemaError(f"X has {len(cols)} columns; the pipeline was fitted on {len(fitted_names)}")
        facts = dict(zip(cols, fitted_facts, strict=True))
    return FeatureSchema(features=[_spec_from_values(n, v, facts.get(n)) for n, v in zip(cols, values, strict=True)])


def matrix_of(x: Any, schema: FeatureSchema) -> np.ndarray:
    """The matrix the predict path builds for these rows (schema order; object dtype with categories)."""
    cols, values = columns_of(x, schema.names)
    if cols != schema.names:
        raise SchemaError(f"X's columns {cols[:5]}… do not match the schema {schema.names[:5]}…")
    if schema.all_numeric:
        return np.column_stack([np.asarray(v, dtype=np.float64) for v in values])
    out = np.empty((len(values[0]) if values else 0, len(values)), dtype=object)
    for i, (spec, column) in enumerate(zip(schema.features, values, strict=True)):
        if spec.type == "category":
            out[:, i] = [None if _is_missing(v) else v for v in column.tolist()]
        else:
            out[:, i] = np.asarray(column, dtype=np.float64)
    return out
