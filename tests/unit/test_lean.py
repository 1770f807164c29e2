"""The lean runtime (sklambda.serving.lean) against scikit-learn itself, on held-out rows.

Real pipelines are fitted here (no mocks); the converted artifact must give the same labels and
probabilities (or regression values) as the scikit-learn pipeline within lean.TOLERANCE — in
practice exactly the same numbers, which is asserted too.
"""

from __future__ import annotations

import numpy as np
import pytest

from sklambda.lifecycle import demo, lean, training
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import lean as runtime
from sklambda.serving import trees
from sklambda.serving.validation import InstanceValidator


def _accepted(estimator, schema, task, rows) -> runtime.LeanModel:
    conversion = lean.convert(estimator, schema, task, rows)
    assert conversion.accepted, conversion.reason
    check = conversion.parity
    assert check["passed"] and check["rows"] == len(rows) and check["max_abs_diff"] <= lean.TOLERANCE
    assert check["exact"], "the lean runtime is exact by construction"
    return runtime.load(conversion.artifact)


def test_demo_pipeline_converts_exactly():
    columns, y = demo.generate(3000, seed=3)
    trained = training.train(
        demo.to_matrix(columns), y, demo.DEMO_SCHEMA, task="classification", target=demo.TARGET,
        params={"n_estimators": 20, "max_depth": 10, "random_state": 3},
    )  # fmt: skip
    ensemble = _accepted(trained.estimator, trained.schema, "classification", trained.holdout)
    assert ensemble.classes_.tolist() == trained.classes
    # The rows the API builds (objects keyed by name, through the validator) answer the same too.
    held_out, _ = demo.generate(500, seed=99)
    matrix = InstanceValidator(trained.schema).to_matrix(demo.to_instances(held_out))
    assert np.array_equal(ensemble.predict_proba(matrix), trained.estimator.predict_proba(matrix))
    assert np.array_equal(ensemble.predict(matrix), trained.estimator.predict(matrix))
    for i in range(5):  # the single-row path is its own code
        row = matrix[i : i + 1]
        assert np.array_equal(ensemble.predict_proba(row), trained.estimator.predict_proba(row))


def _mixed_data(rng: np.random.Generator, n: int, *, nulls: bool) -> tuple[np.ndarray, np.ndarray]:
    size = rng.normal(100, 30, n)
    rooms = rng.integers(1, 8, n).astype(float)
    city = rng.choice(["a", "b", "c"], n).astype(object)
    kind = rng.choice(["flat", "house"], n).astype(object)
    price = 2.5 * size + 10 * rooms + np.where(city == "a", 40.0, 0.0) + rng.normal(0, 5, n)
    if nulls:
        size[rng.random(n) < 0.15] = np.nan
        city[rng.random(n) < 0.15] = None
    x = np.column_stack([size.astype(object), rooms.astype(object), city, kind])
    return x, price


SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="size", type="number"),
        FeatureSpec(name="rooms", type="integer"),
        FeatureSpec(name="city", type="category", categories=["a", "b", "c"]),
        FeatureSpec(name="kind", type="category", categories=["flat", "house"]),
    ]
)
NULLABLE_SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="size", type="number", nullable=True),
        FeatureSpec(name="rooms", type="integer"),
        FeatureSpec(name="city", type="category", categories=["a", "b", "c"], nullable=True),
        FeatureSpec(name="kind", type="category", categories=["flat", "house"]),
    ]
)


def test_regression_pipeline_converts_exactly():
    x, y = _mixed_data(np.random.default_rng(0), 2000, nulls=False)
    trained = training.train(x, y, SCHEMA, task="regression", target="price", params={"n_estimators": 25})
    ensemble = _accepted(trained.estimator, SCHEMA, "regression", trained.holdout)
    assert np.array_equal(ensemble.predict(trained.holdout), trained.estimator.predict(trained.holdout))


def test_nullable_imputed_pipeline_converts_exactly():
    x, y = _mixed_data(np.random.default_rng(1), 2000, nulls=True)
    labels = (y > np.median(y)).astype(int)
    trained = training.train(x, labels, NULLABLE_SCHEMA, task="classification", target="dear",
                             params={"n_estimators": 25})  # fmt: skip
    pipeline_steps = str(trained.estimator)
    assert "SimpleImputer" in pipeline_steps  # both imputers are in the pipeline under test
    holdout = trained.holdout
    assert any(v is None for v in holdout[:, 2]) and np.isnan(holdout[:, 0].astype(float)).any()
    _accepted(trained.estimator, NULLABLE_SCHEMA, "classification", holdout)


def test_extra_trees_on_twenty_numeric_features_and_nan_routing():
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 20))
    y = (x[:, 0] + x[:, 3] * x[:, 7] > 0).astype(int)
    schema = FeatureSchema(features=[FeatureSpec(name=f"f{i}", type="number", nullable=True) for i in range(20)])
    forest = RandomForestClassifier(n_estimators=30, max_depth=9, random_state=0).fit(x[:2000], y[:2000])
    held_out = x[2000:].copy()
    held_out[rng.random(held_out.shape) < 0.05] = np.nan  # no imputer: NaN reaches the trees
    _accepted(forest, schema, "classification", held_out)
    extra = ExtraTreesRegressor(n_estimators=20, random_state=0).fit(x[:2000], x[:2000, 1] * 3 + y[:2000])
    _accepted(extra, schema, "regression", x[2000:])


@pytest.mark.parametrize("kind", ["custom_transformer", "unconverted_step", "unconverted_estimator"])
def test_what_does_not_convert_says_why(kind):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures

    rng = np.random.default_rng(4)
    x = np.abs(rng.normal(size=(400, 3)))
    y = (x[:, 0] > x[:, 1]).astype(int)
    schema = FeatureSchema(features=[FeatureSpec(name=f"f{i}", type="number") for i in range(3)])
    if kind == "custom_transformer":
        model = Pipeline([("log", FunctionTransformer(np.log1p)), ("model", RandomForestClassifier(n_estimators=5))])
        expected = "FunctionTransformer"
    elif kind == "unconverted_step":  # scalers convert now; a polynomial expansion does not
        prep = ColumnTransformer([("poly", PolynomialFeatures(), [0, 1, 2])])
        model = Pipeline([("features", prep), ("model", RandomForestClassifier(n_estimators=5))])
        expected = "PolynomialFeatures"
    else:  # gradient boosting converts now; neighbours do not
        model = KNeighborsClassifier(n_neighbors=3)
        expected = "KNeighborsClassifier"
    model.fit(x, y)
    conversion = lean.convert(model, schema, "classification", x[:50])
    assert not conversion.accepted and conversion.artifact is None
    assert expected in conversion.reason
    assert conversion.record() == {
        "runtime": "sklambda-lean",
        "artifact": None,
        "accepted": False,
        "reason": conversion.reason,
        "parity": {},
    }


def test_a_disagreeing_conversion_is_refused():
    """The parity check is real: an ensemble whose leaves were altered is not accepted."""
    columns, y = demo.generate(1500, seed=5)
    trained = training.train(demo.to_matrix(columns), y, demo.DEMO_SCHEMA, task="classification",
                             target=demo.TARGET, params={"n_estimators": 5, "max_depth": 6})  # fmt: skip
    model = runtime.load(lean.build(trained.estimator, trained.schema, "classification"))
    model.estimator = _SwappedClasses(model.estimator, model.classes_)  # swap the classes' probabilities
    check = lean.parity(trained.estimator, model, trained.holdout, "classification")
    assert not check["passed"] and check["labels_equal"] is False


class _SwappedClasses:
    def __init__(self, inner, classes) -> None:
        self.inner, self.classes = inner, classes

    def predict_proba(self, x):
        return self.inner.predict_proba(x)[:, ::-1]

    def predict(self, x):
        return self.classes[np.argmax(self.predict_proba(x), axis=1)]


def test_float32_floor_keeps_every_decision():
    rng = np.random.default_rng(6)
    thresholds = rng.normal(size=2000) * 10.0 ** rng.integers(-3, 6, 2000)
    floors = trees.float32_floor(thresholds)
    x = np.concatenate([floors, np.nextafter(floors, np.float32(np.inf)), rng.normal(size=2000).astype(np.float32)])
    for t, t32 in zip(thresholds[:300], floors[:300], strict=True):
        assert np.array_equal(x.astype(np.float64) <= t, x <= t32)


def test_the_artifact_is_not_a_pickle():
    columns, y = demo.generate(800, seed=8)
    trained = training.train(demo.to_matrix(columns), y, demo.DEMO_SCHEMA, task="classification",
                             target=demo.TARGET, params={"n_estimators": 3, "max_depth": 4})  # fmt: skip
    data = lean.build(trained.estimator, trained.schema, "classification")
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            with archive.open(name) as member:
                header = member.read(10)
            assert header.startswith(b"\x93NUMPY"), name
    with pytest.raises(trees.TreesFormatError):
        trees.load(b"PK\x03\x04 not an archive")
    with pytest.raises(runtime.LeanFormatError):
        runtime.load(b"PK\x03\x04 not an archive")
