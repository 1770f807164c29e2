"""Feature schemas read from a user's DataFrame and from their fitted pipeline (sklambda.lifecycle.schemas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from sklambda.lifecycle.schemas import SchemaError, matrix_of, schema_from_data, schema_from_pipeline


def _mixed(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "Age (years)": rng.integers(18, 90, n),
            "income/month": rng.normal(3000, 800, n),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "region": rng.choice(["north", "south", None], n),
            "active": rng.random(n) > 0.5,
        }
    )
    frame.loc[::17, "income/month"] = np.nan
    y = (frame["plan"] == "pro").to_numpy().astype(int)
    return frame, y


def _mixed_pipeline() -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["Age (years)", "income/month"]),
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            (
                "region",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2),
                ["region"],
            ),
        ],
        remainder="passthrough",
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=500))])


def test_data_gives_types_categories_and_nulls():
    frame, y = _mixed()
    schema = schema_from_data(frame)
    by = {f.name: f for f in schema.features}
    assert by["Age (years)"].type == "integer" and not by["Age (years)"].nullable
    assert by["income/month"].type == "number" and by["income/month"].nullable
    assert by["plan"].type == "category" and by["plan"].categories == ["basic", "pro", "team"]
    assert by["region"].type == "category" and by["region"].nullable and by["region"].categories == ["north", "south"]
    assert by["active"].type == "boolean"
    assert schema.names == list(frame.columns)


def test_the_fitted_pipeline_refines_the_data_schema():
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    by = {f.name: f for f in schema_from_data(frame, pipeline).features}
    assert by["plan"].unknown_category == "allow"  # handle_unknown="ignore"
    assert by["region"].unknown_category == "allow"  # use_encoded_value
    assert by["Age (years)"].nullable  # an imputer fills it, though training had no gaps


def test_without_data_the_pipeline_alone_gives_the_schema():
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    schema = schema_from_pipeline(pipeline)
    by = {f.name: f for f in schema.features}
    assert schema.names == list(frame.columns)
    assert by["plan"].type == "category" and by["plan"].categories == ["basic", "pro", "team"]
    assert by["region"].type == "category" and by["region"].nullable  # None was a category at fit time
    assert by["income/month"].type == "number" and by["income/month"].nullable
    assert by["active"].type == "number" and not by["active"].nullable  # passthrough: only a number is known


def test_wine_names_with_slashes_are_features():
    data = load_wine(as_frame=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(data.data, data.target)
    schema = schema_from_pipeline(pipeline)
    assert "od280/od315_of_diluted_wines" in schema.names
    assert all(f.type == "number" and not f.nullable for f in schema.features)


def test_an_estimator_that_handles_nan_makes_every_feature_nullable():
    x = np.random.default_rng(1).normal(size=(200, 3))
    model = HistGradientBoostingClassifier(max_iter=5).fit(x, (x[:, 0] > 0).astype(int))
    schema = schema_from_pipeline(model)
    assert schema.names == ["x0", "x1", "x2"] and all(f.nullable for f in schema.features)


def test_data_that_does_not_match_the_pipeline_is_refused():
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    with pytest.raises(SchemaError, match="not the columns"):
        schema_from_data(frame[list(reversed(frame.columns))], pipeline)


def test_mixed_value_types_and_identifier_columns_are_refused_with_a_reason():
    with pytest.raises(SchemaError, match="mixes value types"):
        schema_from_data(pd.DataFrame({"a": ["x", 1, "y"]}))
    with pytest.raises(SchemaError, match="identifier"):
        schema_from_data(pd.DataFrame({"id": [f"user-{i}" for i in range(1500)]}))


def test_matrix_of_builds_what_the_predict_path_builds():
    frame, y = _mixed()
    schema = schema_from_data(frame)
    matrix = matrix_of(frame.head(20), schema)
    assert matrix.dtype == object and matrix.shape == (20, 5)
    assert matrix[0, 2] in ("basic", "pro", "team")
    nulls = [v for v in matrix[:, 3].tolist() if v is None]
    assert len(nulls) == int(frame.head(20)["region"].isna().sum())
