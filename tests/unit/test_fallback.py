"""The scikit-learn fallback serves a DataFrame-fitted pipeline from the predict path's numpy matrix
(sklambda.lifecycle.fallback): positional column selection, the missing marker the pipeline knows, and
the code the Lambda could not import."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from sklambda.lifecycle.fallback import foreign_code, selects_by_name, servable_copy
from sklambda.lifecycle.schemas import matrix_of, schema_from_data
from tests.unit.test_schemas import _mixed, _mixed_pipeline


class NotebookScaler(StandardScaler):
    """A user's own class, defined where the Lambda cannot import it."""


def test_a_pipeline_selecting_columns_by_name_serves_the_schema_matrix_exactly():
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    schema = schema_from_data(frame, pipeline)
    served = servable_copy(pipeline, schema)
    matrix = matrix_of(frame, schema)
    assert selects_by_name(pipeline) and not selects_by_name(served)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X does not have valid feature names"
        answer = served.predict_proba(matrix)
    assert np.array_equal(answer, pipeline.predict_proba(frame))
    assert np.array_equal(served.predict(matrix), pipeline.predict(frame))
    # The user's object is untouched and the copy survives a pickle round trip (what publish stores).
    assert selects_by_name(pipeline)
    assert np.array_equal(pickle.loads(pickle.dumps(served)).predict_proba(matrix), answer)
    # A retrain clones the served copy and refits it on the stored rows (arrays, never a DataFrame).
    from sklearn.base import clone

    refit = clone(served).fit(matrix, y)
    assert np.array_equal(refit.predict_proba(matrix), answer)


def test_null_categories_reach_the_pipeline_as_the_marker_it_was_fitted_with():
    frame, y = _mixed()
    frame["region"] = frame["region"].astype(object).where(frame["region"].notna(), None)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["Age (years)", "income/month"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    pipeline = Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))]).fit(frame, y)
    schema = schema_from_data(frame, pipeline)
    served = servable_copy(pipeline, schema)
    assert type(served[0]).__name__ != "FunctionTransformer"  # None was the fitted marker: no adapter
    assert np.array_equal(served.predict_proba(matrix_of(frame, schema)), pipeline.predict_proba(frame))


def test_foreign_code_names_what_the_lambda_cannot_import():
    pipeline = make_pipeline(FunctionTransformer(lambda x: x), NotebookScaler(), LogisticRegression())
    found = foreign_code(pipeline)
    assert any("NotebookScaler" in f for f in found)
    assert any("<lambda>" in f for f in found)
    assert foreign_code(make_pipeline(FunctionTransformer(np.log1p), StandardScaler(), KNeighborsClassifier())) == []


@pytest.mark.parametrize("columns", [[0, 1], slice(0, 2), [True, True, False, False, False]])
def test_positional_selections_stay_as_they_were(columns):
    frame, y = _mixed()
    numeric = frame[["Age (years)", "income/month", "plan", "region", "active"]]
    ct = ColumnTransformer([("num", SimpleImputer(), columns)])
    pipeline = Pipeline([("pre", ct), ("model", LogisticRegression(max_iter=500))]).fit(numeric, y)
    schema = schema_from_data(numeric, pipeline)
    served = servable_copy(pipeline, schema)
    assert np.array_equal(served.predict(matrix_of(numeric, schema)), pipeline.predict(numeric))
