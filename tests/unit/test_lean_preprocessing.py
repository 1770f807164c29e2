"""Lean preprocessing steps against scikit-learn, one option at a time.

Every case fits a real pipeline on a bundled dataset (or a realistic mixed DataFrame), converts it,
loads the artifact from bytes and compares it with the pipeline on held-out rows built by the
request validator, after the parity gate (held-out plus adversarial rows) accepted it. The linear
model at the end of most pipelines is exact too (``test_lean_linear``), so any difference is the
step's. Labels must be equal and probabilities within ``TOLERANCE``; the dense paths are asserted
bit-identical because they are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PolynomialFeatures,
    RobustScaler,
    StandardScaler,
)

from sklambda.lifecycle import lean
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import lean as runtime
from sklambda.serving.validation import InstanceValidator


def accepted(pipeline, schema, task, rows, held_out, *, bit_identical=True) -> runtime.LeanModel:
    """Convert, load from bytes, and compare on ``held_out`` (a list of request instances)."""
    conversion = lean.convert(pipeline, schema, task, rows)
    assert conversion.accepted, conversion.reason
    check = conversion.parity
    assert check["passed"] and check["rows"] == len(rows) and check["adversarial_rows"] > 0
    assert check["max_abs_diff"] <= lean.TOLERANCE
    if bit_identical:
        assert check["bit_identical"], check
    assert conversion.record()["artifact"] == runtime.ARTIFACT == "model.lean.npz"
    model = runtime.load(conversion.artifact)
    matrix = InstanceValidator(schema).to_matrix(held_out)
    frame = lean.checks.sklearn_input(pipeline, matrix, schema)
    if task == "classification":
        want, got = pipeline.predict_proba(frame), model.predict_proba(matrix)
        assert np.max(np.abs(want - got)) <= lean.TOLERANCE
        if bit_identical:
            assert np.array_equal(want, got)
        assert model.predict(matrix).tolist() == pipeline.predict(frame).tolist()
        assert model.classes_.tolist() == np.asarray(pipeline.classes_).tolist()
    else:
        want, got = pipeline.predict(frame), model.predict(matrix)
        assert np.max(np.abs(want - got) / np.maximum(1, np.abs(want))) <= lean.TOLERANCE
        if bit_identical:
            assert np.array_equal(want, got)
    return model


def refused(pipeline, schema, task, rows, expected: str) -> str:
    conversion = lean.convert(pipeline, schema, task, rows)
    assert not conversion.accepted and conversion.artifact is None
    assert expected in conversion.reason, conversion.reason
    assert conversion.record()["artifact"] is None and conversion.record()["runtime"] == "sklambda-lean"
    return conversion.reason


def _name(column: str) -> str:
    return column.replace("/", "_per_").replace(" ", "_").replace("(", "").replace(")", "")


def _numeric_schema(names, *, nullable=False) -> FeatureSchema:
    return FeatureSchema(features=[FeatureSpec(name=n, type="number", nullable=nullable) for n in names])


# ----------------------------------------------------------------------------- data
WINE = load_wine()
WINE_NAMES = [_name(c) for c in WINE.feature_names]  # 'od280/od315_of_diluted_wines' -> a schema name
WINE_SCHEMA = _numeric_schema(WINE_NAMES, nullable=True)
_order = np.random.default_rng(0).permutation(len(WINE.target))
WINE_X, WINE_Y = WINE.data[_order], WINE.target[_order]
WINE_FIT, WINE_HELD = slice(0, 130), slice(130, None)


def _wine_instances():
    return [dict(zip(WINE_NAMES, row, strict=True)) for row in WINE_X[WINE_HELD].tolist()]


DIABETES = load_diabetes()
DIABETES_NAMES = [str(n) for n in DIABETES.feature_names]


def _diabetes_with_gaps(seed: int = 0) -> np.ndarray:
    x = DIABETES.data.copy()
    rng = np.random.default_rng(seed)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x


def _customers(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A realistic mixed frame: numbers with gaps, string categories with gaps and rare values."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro", "enterprise"], n, p=[0.5, 0.3, 0.17, 0.03]).astype(object)
    region = rng.choice(["north", "south", "east", "west"], n).astype(object)
    device = rng.choice(["ios", "android"], n).astype(object)
    tenure = rng.gamma(2.0, 12.0, n)
    spend = rng.lognormal(3.5, 0.6, n)
    region[rng.random(n) < 0.1] = None
    tenure[rng.random(n) < 0.1] = np.nan
    churn = (
        0.8 * (plan == "basic") - 0.02 * np.nan_to_num(tenure, nan=20) + 0.01 * spend + rng.normal(0, 0.5, n) > 0
    ).astype(int)
    columns = {"plan": plan, "region": region, "device": device}
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})  # None stays None
    frame["tenure"], frame["spend"] = tenure, spend
    return frame, churn


CUSTOMER_SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="plan", type="category", categories=["basic", "plus", "pro", "enterprise"]),
        FeatureSpec(name="region", type="category", categories=["north", "south", "east", "west"], nullable=True),
        FeatureSpec(name="device", type="category", categories=["ios", "android"], unknown_category="allow"),
        FeatureSpec(name="tenure", type="number", nullable=True),
        FeatureSpec(name="spend", type="number"),
    ]
)


def _customer_rows(frame: pd.DataFrame) -> np.ndarray:
    return lean.checks.matrix_for(CUSTOMER_SCHEMA, frame[CUSTOMER_SCHEMA.names].to_numpy(dtype=object))


def _customer_instances(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items() if v is not None})
    return out


# ----------------------------------------------------------------------------- scalers
@pytest.mark.parametrize(
    "scaler",
    [
        StandardScaler(),
        StandardScaler(with_mean=False),
        StandardScaler(with_std=False),
        MinMaxScaler(),
        MinMaxScaler(feature_range=(-1, 2), clip=True),
        MaxAbsScaler(),
        MaxAbsScaler(clip=True),
        RobustScaler(),
        RobustScaler(with_centering=False, quantile_range=(10.0, 90.0)),
        RobustScaler(with_scaling=False),
        RobustScaler(unit_variance=True),
    ],
    ids=repr,
)
def test_scalers_before_a_logistic_regression_on_wine(scaler):
    pipeline = make_pipeline(scaler, LogisticRegression(max_iter=5000)).fit(WINE_X[WINE_FIT], WINE_Y[WINE_FIT])
    model = accepted(pipeline, WINE_SCHEMA, "classification", WINE_X[WINE_HELD], _wine_instances())
    assert [s["kind"] for s in model.header["steps"]][-1].endswith("scaler")


def test_scaler_values_exactly_on_the_boundaries():
    """Rows at each fitted minimum / maximum / mean: clip edges and zeros give scikit-learn's numbers."""
    scaler = MinMaxScaler(feature_range=(0, 1), clip=True).fit(WINE_X[WINE_FIT])
    pipeline = make_pipeline(scaler, StandardScaler(), LogisticRegression(max_iter=5000))
    pipeline.fit(WINE_X[WINE_FIT], WINE_Y[WINE_FIT])
    model = runtime.load(lean.build(pipeline, WINE_SCHEMA, "classification"))
    edges = np.vstack([scaler.data_min_, scaler.data_max_, pipeline[1].mean_, scaler.data_max_ * 10, -scaler.data_max_])
    assert np.array_equal(model.predict_proba(edges), pipeline.predict_proba(edges))
    assert np.array_equal(model.transform(edges), pipeline[:-1].transform(edges))


def test_a_dataframe_fitted_pipeline_takes_the_schema_columns_by_name():
    """Fitted on a DataFrame whose columns are in another order than the schema: selected by name."""
    iris = load_iris(as_frame=True)
    frame = iris.data.rename(columns=_name)
    frame = frame[list(reversed(frame.columns))]  # the pipeline saw them in reverse order
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame[::2], iris.target[::2])
    schema = _numeric_schema([_name(c) for c in iris.data.columns])  # the schema keeps the bundled order
    rows = schema_rows = frame[1::2][schema.names].to_numpy()
    held_out = [dict(zip(schema.names, r, strict=True)) for r in schema_rows.tolist()]
    model = accepted(pipeline, schema, "classification", rows, held_out)
    assert model.header["steps"][0]["kind"] == "select"
    assert model.header["steps"][0]["indices"] == [3, 2, 1, 0]


# ----------------------------------------------------------------------------- imputation
@pytest.mark.parametrize(
    "imputer",
    [
        SimpleImputer(strategy="mean"),
        SimpleImputer(strategy="median", add_indicator=True),
        SimpleImputer(strategy="most_frequent"),
        SimpleImputer(strategy="constant", fill_value=-1.5, add_indicator=True),
    ],
    ids=repr,
)
def test_numeric_imputers_on_diabetes_with_gaps(imputer):
    x, y = _diabetes_with_gaps(), DIABETES.target
    pipeline = make_pipeline(imputer, StandardScaler(), Ridge(alpha=0.5)).fit(x[:350], y[:350])
    schema = _numeric_schema(DIABETES_NAMES, nullable=True)
    held_out = [{k: v for k, v in zip(DIABETES_NAMES, row, strict=True) if v == v} for row in x[350:].tolist()]
    accepted(pipeline, schema, "regression", x[350:], held_out)


@pytest.mark.parametrize("keep_empty", [False, True])
def test_a_column_empty_at_fit_time_is_dropped_or_kept_as_scikit_learn_does(keep_empty):
    x, y = _diabetes_with_gaps(1), DIABETES.target
    fit = x[:350].copy()
    fit[:, 4] = np.nan  # s1 never observed
    imputer = SimpleImputer(strategy="median", keep_empty_features=keep_empty, add_indicator=True)
    pipeline = make_pipeline(imputer, LinearRegression()).fit(fit, y[:350])
    schema = _numeric_schema(DIABETES_NAMES, nullable=True)
    held_out = [{k: v for k, v in zip(DIABETES_NAMES, row, strict=True) if v == v} for row in x[350:].tolist()]
    model = accepted(pipeline, schema, "regression", x[350:], held_out)
    step = model.header["steps"][0]
    assert step["n_out"] == (10 if keep_empty else 9) + len(step["indicator"])


def test_string_imputers_missing_as_none_and_as_nan():
    """The service sends None for a missing category: an imputer for None fills it; one fitted for NaN
    (what pandas gives) leaves it alone, and the encoder's handle_unknown decides, in both runtimes."""
    frame, y = _customers(3000, seed=1)
    for missing, strategy in ((None, "most_frequent"), (None, "constant"), (np.nan, "constant")):
        fit = frame.copy()
        if missing is not None:
            fit["region"] = fit["region"].map(lambda v: np.nan if v is None else v)
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(missing_values=missing, strategy=strategy, fill_value="unknown")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        prep = ColumnTransformer(
            [
                ("cat", categorical, ["plan", "region", "device"]),
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["tenure", "spend"]),
            ]
        )
        pipeline = make_pipeline(prep, LogisticRegression(max_iter=2000)).fit(fit[:2400], y[:2400])
        rows = _customer_rows(frame[2400:])
        accepted(pipeline, CUSTOMER_SCHEMA, "classification", rows, _customer_instances(frame[2400:2600]))


# ----------------------------------------------------------------------------- encoders
@pytest.mark.parametrize(
    "encoder",
    [
        OneHotEncoder(handle_unknown="ignore"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
        OneHotEncoder(drop="first", sparse_output=False),
        OneHotEncoder(drop="if_binary", handle_unknown="ignore", sparse_output=False),
        OneHotEncoder(drop=["plus", None, "ios"], handle_unknown="ignore", sparse_output=False),
        OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.05, sparse_output=False),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=3),
        OneHotEncoder(handle_unknown="warn", min_frequency=200, sparse_output=False),
        OrdinalEncoder(),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-3, min_frequency=0.05),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=99, max_categories=3, dtype=np.float32),
    ],
    ids=repr,
)
def test_encoders_on_string_columns_with_missing_rare_and_unknown_values(encoder):
    frame, y = _customers(4000, seed=2)
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    prep = ColumnTransformer([("cat", encoder, ["plan", "region", "device"]), ("num", numeric, ["tenure", "spend"])])
    pipeline = make_pipeline(prep, LogisticRegression(max_iter=3000)).fit(frame[:3200], y[:3200])
    rows = _customer_rows(frame[3200:])
    held_out = _customer_instances(frame[3200:3500])
    if getattr(encoder, "handle_unknown", "error") != "error":
        held_out[0]["device"] = "windows-phone"  # the schema allows unknown devices
    sparse = bool(pipeline[0].sparse_output_)
    model = accepted(pipeline, CUSTOMER_SCHEMA, "classification", rows, held_out, bit_identical=not sparse)
    columns = model.header["steps"][0]
    assert columns["kind"] == "columns" and columns["sparse"] is sparse


def test_onehot_handle_unknown_error_refuses_an_unknown_value_like_scikit_learn():
    frame, y = _customers(2000, seed=3)
    prep = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="error"), ["device"]), ("num", "passthrough", ["spend"])]
    )
    pipeline = make_pipeline(prep, LogisticRegression()).fit(frame[["device", "spend"]][:1500], y[:1500])
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="device", type="category", categories=["ios", "android"], unknown_category="allow"),
            FeatureSpec(name="spend", type="number"),
        ]
    )
    rows = lean.checks.matrix_for(schema, frame[1500:][["device", "spend"]].to_numpy(dtype=object))
    conversion = lean.convert(pipeline, schema, "classification", rows)
    assert conversion.accepted, conversion.reason
    assert conversion.parity["refused_rows"] >= 1  # the adversarial unknown device, refused by both
    model = runtime.load(conversion.artifact)
    unknown = InstanceValidator(schema).to_matrix([{"device": "windows-phone", "spend": 10.0}])
    with pytest.raises(ValueError, match="unknown categories"):
        pipeline.predict_proba(lean.checks.sklearn_input(pipeline, unknown, schema))
    with pytest.raises(ValueError, match="unknown categories"):
        model.predict_proba(unknown)


def test_none_and_nan_as_categories_of_their_own():
    """Fitted with missing values present and no imputer: None is a category of the encoder."""
    frame, y = _customers(3000, seed=4)
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(sparse_output=False, handle_unknown="ignore"), ["plan", "region"]),
            ("ord", OrdinalEncoder(encoded_missing_value=-1), ["region"]),
            ("num", SimpleImputer(), ["tenure", "spend"]),
        ]
    )
    pipeline = make_pipeline(prep, LogisticRegression(max_iter=3000)).fit(frame[:2400], y[:2400])
    assert None in pipeline[0].named_transformers_["cat"].categories_[1].tolist()
    accepted(
        pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[2400:]), _customer_instances(frame[2400:])
    )


# ----------------------------------------------------------------------------- column transformer
def test_column_selections_by_name_index_slice_mask_and_callable():
    frame, y = _customers(3000, seed=5)
    frame = frame[CUSTOMER_SCHEMA.names]
    prep = ColumnTransformer(
        [
            ("by_name", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"]),
            ("by_index", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [1]),
            ("by_slice", OneHotEncoder(handle_unknown="ignore", sparse_output=False), slice(2, 3)),
            ("by_mask", SimpleImputer(), [False, False, False, True, False]),
            ("by_callable", RobustScaler(), make_column_selector(pattern="^spe")),
            ("dropped", "drop", ["tenure"]),
        ],
        remainder="drop",
        transformer_weights={"by_callable": 0.5, "by_index": 2.0},
    )
    pipeline = make_pipeline(prep, LogisticRegression(max_iter=3000)).fit(frame[:2400], y[:2400])
    model = accepted(
        pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[2400:]), _customer_instances(frame[2400:])
    )
    branches = model.header["steps"][0]["branches"]
    assert [b["columns"] for b in branches] == [[0], [1], [2], [3], [4]]
    assert [b["weight"] for b in branches] == [None, 2.0, None, None, 0.5]


@pytest.mark.parametrize("remainder", ["passthrough", "drop", StandardScaler(), MinMaxScaler(clip=True)], ids=repr)
def test_remainder_on_wine_by_index(remainder):
    prep = ColumnTransformer([("scale", StandardScaler(), list(range(0, 13, 2)))], remainder=remainder)
    pipeline = make_pipeline(prep, LogisticRegression(max_iter=5000)).fit(WINE_X[WINE_FIT], WINE_Y[WINE_FIT])
    accepted(pipeline, WINE_SCHEMA, "classification", WINE_X[WINE_HELD], _wine_instances())


def test_nested_pipelines_and_passthrough_or_none_steps():
    inner = Pipeline([("nothing", None), ("scale", Pipeline([("s", StandardScaler()), ("p", "passthrough")]))])
    prep = ColumnTransformer([("inner", inner, [0, 1, 2, 3]), ("rest", "passthrough", slice(4, 13))])
    pipeline = Pipeline(
        [("prep", Pipeline([("ct", prep), ("skip", "passthrough")])), ("m", LogisticRegression(max_iter=5000))]
    )
    pipeline.fit(WINE_X[WINE_FIT], WINE_Y[WINE_FIT])
    model = accepted(pipeline, WINE_SCHEMA, "classification", WINE_X[WINE_HELD], _wine_instances())
    assert [s["kind"] for s in model.header["steps"]] == ["columns"]


def test_float32_encoder_output_through_a_scaler_stays_float32_as_in_scikit_learn():
    frame, y = _customers(3000, seed=6)
    categorical = make_pipeline(
        OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32), StandardScaler()
    )
    prep = ColumnTransformer([("cat", categorical, ["plan", "region", "device"])])
    pipeline = make_pipeline(prep, MaxAbsScaler(), LogisticRegression(max_iter=3000)).fit(frame[:2400], y[:2400])
    assert pipeline[:-1].transform(frame[:5]).dtype == np.float32
    model = accepted(
        pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[2400:]), _customer_instances(frame[2400:])
    )
    assert model.header["estimator"]["input"] == {"dtype": "float32", "sparse": False}


def test_a_sparse_column_transformer_output_is_densified_with_the_same_values():
    frame, y = _customers(3000, seed=7)
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region", "device"]),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["tenure", "spend"]),
        ],
        sparse_threshold=1.0,
    )
    pipeline = make_pipeline(prep, MaxAbsScaler(), StandardScaler(with_mean=False), LogisticRegression())
    pipeline.fit(frame[:2400], y[:2400])
    sample = frame[2400:2410]
    assert hasattr(pipeline[:-1].transform(sample), "toarray")
    model = accepted(
        pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[2400:]), _customer_instances(frame[2400:])
    )
    matrix = InstanceValidator(CUSTOMER_SCHEMA).to_matrix(_customer_instances(sample))
    assert np.array_equal(model.transform(matrix), pipeline[:-1].transform(sample).toarray())
    assert model.header["estimator"]["input"]["sparse"] is True


# ----------------------------------------------------------------------------- refusals
def test_what_does_not_convert_gives_the_reason():
    x, y = WINE_X[WINE_FIT], WINE_Y[WINE_FIT]
    rows = WINE_X[WINE_HELD]
    log = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=5000)).fit(x, y)
    refused(log, WINE_SCHEMA, "classification", rows, "FunctionTransformer(func=log1p) runs arbitrary Python code")
    poly = make_pipeline(PolynomialFeatures(), LogisticRegression(max_iter=5000)).fit(x, y)
    refused(poly, WINE_SCHEMA, "classification", rows, "no lean converter for PolynomialFeatures")
    iris = load_iris(as_frame=True)
    other = make_pipeline(StandardScaler(), LogisticRegression()).fit(iris.data, iris.target)
    schema = _numeric_schema(["a", "b", "c", "d"])
    refused(other, schema, "classification", iris.data.to_numpy(), "columns the schema does not have")
    regression = make_pipeline(StandardScaler(), LinearRegression()).fit(x, y.astype(float))
    refused(regression, WINE_SCHEMA, "classification", rows, "does not match the task")


# ----------------------------------------------------------------------------- the one-row path
def rows_alone(model, pipeline, matrix, schema, task) -> None:
    """Each row of ``matrix`` alone (what the predict handler sends): bit-identical to scikit-learn on that row,
    and its preprocessing bit-identical to that row's in the batch; the batch bit-identical to scikit-learn's."""
    method = "predict_proba" if task == "classification" else "predict"
    features = model.transform(matrix)
    expected = getattr(pipeline, method)(lean.checks.sklearn_input(pipeline, matrix, schema))
    assert np.array_equal(getattr(model, method)(matrix), expected)
    for i in range(len(matrix)):
        row = matrix[i : i + 1]
        frame = lean.checks.sklearn_input(pipeline, row, schema)
        got = getattr(model, method)(row)
        assert np.array_equal(got, getattr(pipeline, method)(frame)), (i, row)
        assert got.dtype == np.float64 and got.shape == expected[i : i + 1].shape
        assert np.allclose(got, expected[i : i + 1], rtol=1e-12, atol=1e-12)  # BLAS: one row vs many, last bit
        step_out = model.transform(row)
        assert step_out.dtype == features.dtype and np.array_equal(step_out, features[i : i + 1], equal_nan=True)
        if task == "classification":
            assert model.predict(row).tolist() == pipeline.predict(frame).tolist()


def _with_gaps(x: np.ndarray, statistics: np.ndarray, seed: int) -> np.ndarray:
    """Held-out rows with NaN here and there, plus a row all NaN, a row at the statistics, -0.0, extremes."""
    rows = x.copy()
    rows[np.random.default_rng(seed).random(rows.shape) < 0.15] = np.nan
    lowest, highest = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    return np.vstack(
        [rows, np.full(x.shape[1], np.nan), statistics, np.full(x.shape[1], -0.0), lowest, highest, highest * 1e9]
    )


@pytest.mark.parametrize(
    "imputer",
    [
        SimpleImputer(),
        SimpleImputer(strategy="median", add_indicator=True),
        SimpleImputer(strategy="most_frequent"),
        SimpleImputer(strategy="constant", fill_value=-1.5, add_indicator=True),
    ],
    ids=repr,
)
def test_one_row_imputer_scaler_logistic_regression_is_scikit_learns(imputer):
    fit = WINE_X[WINE_FIT].copy()
    fit[np.random.default_rng(3).random(fit.shape) < 0.1] = np.nan
    fit[:, 4] = np.where(np.arange(len(fit)) % 3 == 0, np.nan, fit[:, 4])
    pipeline = make_pipeline(imputer, StandardScaler(), LogisticRegression(max_iter=5000)).fit(fit, WINE_Y[WINE_FIT])
    model = runtime.load(lean.build(pipeline, WINE_SCHEMA, "classification", WINE_X[WINE_HELD]))
    rows = _with_gaps(WINE_X[WINE_HELD], pipeline[0].statistics_, seed=4)
    rows_alone(model, pipeline, rows, WINE_SCHEMA, "classification")


def test_one_row_imputer_with_a_dropped_empty_column_and_a_ridge():
    x, y = _diabetes_with_gaps(5), DIABETES.target
    fit = x[:350].copy()
    fit[:, 2] = np.nan  # bmi never observed: dropped, its indicator kept
    imputer = SimpleImputer(strategy="median", add_indicator=True)
    pipeline = make_pipeline(imputer, StandardScaler(), Ridge(alpha=0.5)).fit(fit, y[:350])
    schema = _numeric_schema(DIABETES_NAMES, nullable=True)
    model = runtime.load(lean.build(pipeline, schema, "regression", x[350:]))
    assert model.header["steps"][0]["valid"] is not None
    statistics = np.insert(pipeline[0].statistics_[~np.isnan(pipeline[0].statistics_)], 2, 0.0)
    rows_alone(model, pipeline, _with_gaps(x[350:], statistics, seed=6), schema, "regression")


@pytest.mark.parametrize(
    "scaler",
    [
        MinMaxScaler(clip=True),
        MinMaxScaler(feature_range=(-1, 2), clip=True),
        MaxAbsScaler(clip=True),
        RobustScaler(quantile_range=(10.0, 90.0)),
    ],
    ids=repr,
)
def test_one_row_scaler_at_its_bounds_is_scikit_learns(scaler):
    """Rows at each fitted minimum / maximum (the clip edges), beyond them, -0.0, zeros; NaN through the scaler."""
    pipeline = make_pipeline(scaler, LogisticRegression(max_iter=5000)).fit(WINE_X[WINE_FIT], WINE_Y[WINE_FIT])
    model = runtime.load(lean.build(pipeline, WINE_SCHEMA, "classification", WINE_X[WINE_HELD]))
    held = WINE_X[WINE_HELD]
    low, high = held.min(axis=0), held.max(axis=0)
    fitted = [
        getattr(scaler, name) for name in ("data_min_", "data_max_", "max_abs_", "center_") if hasattr(scaler, name)
    ]
    rows = np.vstack([held[:20], *fitted, low, high, high * 1e6, -high * 1e6, np.zeros(13), np.full(13, -0.0)])
    rows_alone(model, pipeline, rows, WINE_SCHEMA, "classification")
    with_nan = rows[:8].copy()
    with_nan[:, 3] = np.nan
    for i in range(len(with_nan)):  # the scaler passes NaN on (the estimator refuses it)
        assert np.array_equal(
            model.steps[0].transform(with_nan[i : i + 1]), pipeline[0].transform(with_nan[i : i + 1]), equal_nan=True
        )
        with pytest.raises(ValueError, match="NaN"):
            model.predict_proba(with_nan[i : i + 1])


def _customer_rows_to_score(frame: pd.DataFrame) -> list[dict]:
    instances = _customer_instances(frame)
    instances[0]["device"] = "windows-phone"  # unknown: the schema allows it
    instances[1].pop("region", None)  # a null category
    instances[2]["tenure"] = None  # a missing number
    instances[3] = {"plan": "pro", "device": "ios", "spend": 0.0, "tenure": -0.0}
    instances[4] = {"plan": "enterprise", "device": "nokia", "spend": 1e12, "region": None}
    instances[5] = {"plan": "basic", "device": "android", "spend": -0.0, "region": "west", "tenure": 1e-300}
    return instances


@pytest.mark.parametrize(
    ("encoder", "estimator"),
    [
        (OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=3000)),  # sparse output
        (OneHotEncoder(handle_unknown="ignore", sparse_output=False), LogisticRegression(max_iter=3000)),
        (OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=0.05, sparse_output=False), Ridge()),
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), LogisticRegression(max_iter=3000)),
        (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2), Ridge()),
        (
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=99, dtype=np.float32),
            LinearRegression(),
        ),
    ],
    ids=repr,
)
def test_one_row_column_transformer_with_string_columns_is_scikit_learns(encoder, estimator):
    frame, y = _customers(3000, seed=8)
    task = "classification" if isinstance(estimator, LogisticRegression) else "regression"
    target = y if task == "classification" else y + frame["spend"].to_numpy() / 100
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["tenure", "spend"]),
            ("cat", encoder, ["plan", "region", "device"]),
        ]
    )
    pipeline = make_pipeline(prep, estimator).fit(frame[:2400], target[:2400])
    model = runtime.load(lean.build(pipeline, CUSTOMER_SCHEMA, task, _customer_rows(frame[2400:])))
    matrix = InstanceValidator(CUSTOMER_SCHEMA).to_matrix(_customer_rows_to_score(frame[2400:2460]))
    assert matrix.dtype == object
    sparse = bool(pipeline[0].sparse_output_)
    if sparse:  # a sparse product sums in another order: equal to the batch row, close to scikit-learn
        for i in range(len(matrix)):
            got = model.predict_proba(matrix[i : i + 1])
            assert np.array_equal(got, model.predict_proba(matrix)[i : i + 1])
            want = pipeline.predict_proba(lean.checks.sklearn_input(pipeline, matrix[i : i + 1], CUSTOMER_SCHEMA))
            assert np.max(np.abs(got - want)) <= lean.TOLERANCE
        return
    rows_alone(model, pipeline, matrix, CUSTOMER_SCHEMA, task)


def test_one_row_float32_encoder_output_through_scalers_is_scikit_learns():
    """float32 blocks: a float32 mean is subtracted in float32, a float64 max-abs scale divides in float64."""
    frame, y = _customers(3000, seed=9)
    categorical = make_pipeline(
        OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32), StandardScaler()
    )
    prep = ColumnTransformer([("cat", categorical, ["plan", "region", "device"]), ("num", "passthrough", ["spend"])])
    pipeline = make_pipeline(prep, MaxAbsScaler(), LogisticRegression(max_iter=3000)).fit(frame[:2400], y[:2400])
    model = runtime.load(lean.build(pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[2400:])))
    matrix = InstanceValidator(CUSTOMER_SCHEMA).to_matrix(_customer_rows_to_score(frame[2400:2440]))
    rows_alone(model, pipeline, matrix, CUSTOMER_SCHEMA, "classification")


def test_one_row_refusals_of_the_column_transformer_are_the_same_as_before():
    frame, y = _customers(2000, seed=10)
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="error"), ["device"]),
            ("ord", OrdinalEncoder(), ["plan"]),
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["tenure", "spend"]),
        ]
    )
    pipeline = make_pipeline(prep, LogisticRegression()).fit(frame[:1500], y[:1500])
    model = runtime.load(lean.build(pipeline, CUSTOMER_SCHEMA, "classification", _customer_rows(frame[1500:])))
    validator = InstanceValidator(CUSTOMER_SCHEMA)
    row = {"plan": "basic", "device": "windows-phone", "spend": 1.0}
    with pytest.raises(ValueError, match=r"Found unknown categories \['windows-phone'\] in column 0 during transform"):
        model.predict_proba(validator.to_matrix([row]))
    infinite = np.array([["basic", "north", "ios", 1.0, np.inf]], dtype=object)
    with pytest.raises(ValueError, match=r"Input contains infinity or a value too large for dtype\('float64'\)"):
        model.predict_proba(infinite)
    with pytest.raises(ValueError, match="columns: expected a 2-D matrix with 5 columns, got shape"):
        model.steps[0].transform(infinite[:, :4])
