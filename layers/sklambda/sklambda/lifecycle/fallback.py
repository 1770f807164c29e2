"""What the scikit-learn fallback needs to serve a user's pipeline on Lambda, decided at publish time.

The predict path hands a pipeline the matrix it validated: a numpy array in the schema's column
order (object dtype when there are categories), not a pandas DataFrame — the layers do not ship
pandas. Measured: pandas 3.1 is 46 MB installed (29 MB without its tests), which would take the
fallback functions from ~193 MB to ~222 MB, past our 200 MB per-function budget (Lambda's hard
limit is 250 MB unzipped). So instead of shipping pandas, a pipeline fitted on a DataFrame is
given what it was fitted on in the form it can take without pandas:

- **column order**: the schema is ``feature_names_in_`` in order, so row lists and objects keyed
  by name become the same positions the DataFrame had;
- **names where the pipeline selects columns by name**: every fitted ``ColumnTransformer`` (at any
  depth) is rewritten to select the same columns by position (its own fitted
  ``_transformer_to_input_indices``), which it does on arrays and DataFrames alike.

:func:`servable_copy` returns that rewritten copy (the user's object is untouched). Whether it
answers exactly like the user's pipeline on their own DataFrame is not assumed: publish scores
sample rows both ways and refuses the version when they differ. :func:`foreign_code` finds what the
Lambda could not import (a custom class or function defined in the user's notebook).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import numpy as np

from sklambda.registry.features import FeatureSchema

# Modules a pickled pipeline may reference: what the SklearnLayer and the runtime ship.
IMPORTABLE = ("sklearn", "numpy", "scipy", "joblib", "builtins", "math", "operator", "functools", "collections")


def _children(obj: Any) -> Iterator[Any]:
    steps = getattr(obj, "steps", None)
    if isinstance(steps, list):
        for _, step in steps:
            yield step
    for attr in ("transformers_", "transformers"):
        items = getattr(obj, attr, None)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, tuple) and len(item) >= 2:
                    yield item[1]
            break
    for attr in ("estimator", "estimator_", "base_estimator", "final_estimator_", "regressor_", "transformer_"):
        child = getattr(obj, attr, None)
        if child is not None and not isinstance(child, (str, int, float, bool)):
            yield child
    for attr in ("estimators_",):
        items = getattr(obj, attr, None)
        if isinstance(items, list) and items and not hasattr(items[0], "tree_"):
            yield from items
    for attr in ("func", "inverse_func", "score_func"):
        fn = getattr(obj, attr, None)
        if fn is not None:
            yield fn


def walk(obj: Any) -> Iterator[Any]:
    """The object and every estimator, transformer and function it contains (depth first)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(_children(current))


def _module_of(obj: Any) -> str:
    if callable(obj) and not isinstance(obj, type) and hasattr(obj, "__module__") and not hasattr(obj, "get_params"):
        return str(getattr(obj, "__module__", "") or "")
    return type(obj).__module__


def foreign_code(estimator: Any) -> list[str]:
    """Classes and functions the pipeline references that the Lambda layers cannot import."""
    out = []
    for part in walk(estimator):
        if isinstance(part, (str, int, float, bool)) or part is None:
            continue
        module = _module_of(part)
        if module.split(".")[0] not in IMPORTABLE:
            name = getattr(part, "__qualname__", None) or type(part).__qualname__
            out.append(f"{module}.{name}")
        elif getattr(part, "__name__", "") == "<lambda>":
            out.append(f"{module}.<lambda> (a lambda cannot be pickled by reference)")
    return sorted(set(out))


def _positional(ct: Any) -> None:
    indices = getattr(ct, "_transformer_to_input_indices", None)
    fitted = getattr(ct, "transformers_", None)
    if indices is None or fitted is None:
        return
    ct.transformers_ = [(name, trans, list(indices.get(name, []))) for name, trans, _ in fitted]
    # The parameter too: a retrain clones this copy (sklearn.base.clone reads get_params), and the clone must
    # select by position as well when it is refitted on the stored rows.
    ct.transformers = [(name, trans, list(indices.get(name, []))) for name, trans, _ in ct.transformers]
    remainder = getattr(ct, "_remainder", None)
    if remainder is not None:
        ct._remainder = (remainder[0], remainder[1], list(indices.get("remainder", [])))


def _knows_none(estimator: Any) -> bool:
    """Whether any encoder or imputer of the pipeline takes None (not NaN) as its missing value."""
    for part in walk(estimator):
        if getattr(part, "missing_values", np.nan) is None:
            return True
        for cats in getattr(part, "categories_", None) or []:
            if any(v is None for v in np.asarray(cats, dtype=object).tolist()):
                return True
    return False


def nan_category_columns(estimator: Any, schema: FeatureSchema) -> list[int]:
    """Category columns whose nulls the pipeline expects as NaN (it was fitted on pandas, which marks them so)."""
    if _knows_none(estimator):
        return []
    return [i for i, spec in enumerate(schema.features) if spec.type == "category" and spec.nullable]


def servable_copy(estimator: Any, schema: FeatureSchema | None = None) -> Any:
    """A deep copy whose ColumnTransformers select columns by position, so a numpy matrix in schema order works.

    With a schema, null categories reach the pipeline as the marker it was fitted with (None or NaN).
    """
    served = copy.deepcopy(estimator)
    for part in walk(served):
        if type(part).__name__ == "ColumnTransformer" and type(part).__module__.startswith("sklearn."):
            _positional(part)
        if type(part).__module__.startswith("sklearn.") and "feature_names_in_" in vars(part):
            # Fitted on named columns, served positional: without the names, every step indexes arrays and
            # DataFrames alike by position and never warns that an array has no feature names.
            del part.feature_names_in_
    nan_columns = nan_category_columns(estimator, schema) if schema is not None else []
    if nan_columns:
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        from sklambda.serving.adapters import missing_as_nan

        adapter = FunctionTransformer(missing_as_nan, kw_args={"columns": nan_columns}, validate=False)
        served = Pipeline([("sklambda_missing_as_nan", adapter), ("pipeline", served)])
    return served


def selects_by_name(estimator: Any) -> bool:
    """Whether any ColumnTransformer in the pipeline was given column names (the case servable_copy rewrites)."""
    for part in walk(estimator):
        if type(part).__name__ != "ColumnTransformer":
            continue
        for _, _, columns in getattr(part, "transformers_", []):
            values = [columns] if isinstance(columns, str) else list(columns) if isinstance(columns, list) else []
            if any(isinstance(v, str) for v in values):
                return True
    return False
