"""Lean linear estimators against scikit-learn on the bundled datasets.

Each model is fitted behind a scaler (what users ship), converted, loaded from bytes and compared on
held-out rows through the request validator after the parity gate accepted it: labels equal,
probabilities / values bit-identical on dense input (the same BLAS product, scipy's ``expit``,
scikit-learn's softmax and normalisations), and within ``TOLERANCE`` anyway.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Perceptron,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC

from sklambda.lifecycle import lean
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import lean as runtime
from sklambda.serving.loader import LoadedModel
from sklambda.serving.validation import InstanceValidator


def _schema(names) -> FeatureSchema:
    clean = [n.replace("/", "_per_").replace(" ", "_").replace("(", "").replace(")", "") for n in names]
    return FeatureSchema(features=[FeatureSpec(name=n, type="number") for n in clean])


def _split(dataset, seed=0):
    order = np.random.default_rng(seed).permutation(len(dataset.target))
    x, y = dataset.data[order], dataset.target[order]
    cut = int(len(y) * 0.7)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def accepted(pipeline, schema, task, held_out: np.ndarray) -> runtime.LeanModel:
    conversion = lean.convert(pipeline, schema, task, held_out)
    assert conversion.accepted, conversion.reason
    check = conversion.parity
    assert check["passed"] and check["bit_identical"] and check["max_abs_diff"] == 0.0, check
    assert check["rows"] == len(held_out) and check["adversarial_rows"] > 0
    model = runtime.load(conversion.artifact)
    instances = [dict(zip(schema.names, row, strict=True)) for row in held_out.tolist()]
    matrix = InstanceValidator(schema).to_matrix(instances)
    if task == "regression":
        assert np.array_equal(model.predict(matrix), pipeline.predict(matrix))
        assert not hasattr(model, "predict_proba")
        return model
    assert np.array_equal(model.predict(matrix), pipeline.predict(matrix))
    assert model.classes_.tolist() == pipeline.classes_.tolist()
    if hasattr(pipeline, "predict_proba"):
        assert np.array_equal(model.predict_proba(matrix), pipeline.predict_proba(matrix))
        for i in range(3):  # the one-row path (BLAS gemv rather than gemm) is its own code
            assert np.array_equal(model.predict_proba(matrix[i : i + 1]), pipeline.predict_proba(matrix[i : i + 1]))
    else:
        assert not hasattr(model, "predict_proba")
    return model


CANCER, WINE, IRIS, DIABETES = load_breast_cancer(), load_wine(), load_iris(), load_diabetes()


@pytest.mark.parametrize(
    "classifier",
    [
        LogisticRegression(max_iter=5000),
        LogisticRegression(C=0.05, solver="liblinear"),
        LogisticRegression(l1_ratio=0.5, solver="saga", max_iter=5000, C=0.5),
        LogisticRegression(fit_intercept=False, solver="newton-cholesky"),
        SGDClassifier(loss="log_loss", random_state=0),
        SGDClassifier(loss="modified_huber", random_state=0),
        SGDClassifier(loss="hinge", random_state=0),
        RidgeClassifier(alpha=2.0),
        Perceptron(random_state=0),
        LinearSVC(),
        OneVsRestClassifier(LogisticRegression(max_iter=5000)),
    ],
    ids=repr,
)
def test_binary_classifiers_on_breast_cancer(classifier):
    x, y, held_x, _ = _split(CANCER)
    pipeline = make_pipeline(StandardScaler(), classifier).fit(x, y)
    accepted(pipeline, _schema(CANCER.feature_names), "classification", held_x)


@pytest.mark.parametrize(
    "classifier",
    [
        LogisticRegression(max_iter=5000),  # multinomial: softmax
        LogisticRegression(C=0.01, max_iter=5000),
        SGDClassifier(loss="log_loss", random_state=0),  # one-vs-rest logistic, normalised
        SGDClassifier(loss="modified_huber", random_state=1),
        SGDClassifier(loss="perceptron", random_state=0),
        RidgeClassifier(),
        OneVsRestClassifier(LogisticRegression(max_iter=5000)),
        OneVsRestClassifier(SGDClassifier(loss="modified_huber", random_state=0)),
        OneVsRestClassifier(RidgeClassifier()),
    ],
    ids=repr,
)
@pytest.mark.parametrize("dataset", [WINE, IRIS], ids=["wine", "iris"])
def test_multiclass_classifiers_with_string_labels(classifier, dataset):
    x, y, held_x, _ = _split(dataset, seed=1)
    labels = np.asarray(dataset.target_names)[y]  # 'class_0', 'setosa', ...
    pipeline = make_pipeline(StandardScaler(), classifier).fit(x, labels)
    model = accepted(pipeline, _schema(dataset.feature_names), "classification", held_x)
    assert model.classes_.tolist() == sorted(set(labels.tolist()))


@pytest.mark.parametrize(
    "regressor",
    [
        LinearRegression(),
        LinearRegression(fit_intercept=False),
        Ridge(alpha=3.0),
        Lasso(alpha=0.1),
        ElasticNet(alpha=0.05, l1_ratio=0.3),
        SGDRegressor(random_state=0),
    ],
    ids=repr,
)
def test_regressors_on_diabetes(regressor):
    x, y, held_x, _ = _split(DIABETES, seed=2)
    pipeline = make_pipeline(StandardScaler(), regressor).fit(x, y)
    accepted(pipeline, _schema(DIABETES.feature_names), "regression", held_x)


def test_a_bare_estimator_without_a_pipeline():
    x, y, held_x, _ = _split(DIABETES, seed=3)
    model = accepted(Ridge().fit(x, y), _schema(DIABETES.feature_names), "regression", held_x)
    assert model.header["steps"] == [] and model.header["estimator"]["kind"] == "linear_regressor"


def test_nan_and_infinity_are_refused_like_scikit_learn():
    """No imputer: scikit-learn's check_array refuses NaN; the adversarial NaN rows are refused by both."""
    x, y, held_x, _ = _split(CANCER, seed=4)
    names = _schema(CANCER.feature_names).names
    schema = FeatureSchema(features=[FeatureSpec(name=n, type="number", nullable=True) for n in names])
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    conversion = lean.convert(pipeline, schema, "classification", held_x)
    assert conversion.accepted, conversion.reason
    assert conversion.parity["refused_rows"] >= len(names)  # a NaN row per nullable column
    model = runtime.load(conversion.artifact)
    row = held_x[:1].copy()
    row[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pipeline.predict_proba(row)
    with pytest.raises(ValueError, match="NaN"):
        model.predict_proba(row)


def test_a_classifier_without_probabilities_is_served_labels_only():
    x, y, held_x, _ = _split(WINE, seed=5)
    schema = _schema(WINE.feature_names)
    pipeline = make_pipeline(StandardScaler(), RidgeClassifier()).fit(x, y)
    model = runtime.load(lean.convert(pipeline, schema, "classification", held_x).artifact)
    assert not hasattr(model, "predict_proba")
    from sklambda.registry.manifest import Manifest

    manifest = Manifest(
        name="wine",
        version="1",
        created_at="2026-01-01T00:00:00Z",
        task="classification",
        features=list(schema.features),
        classes=[0, 1, 2],
        libraries={"scikit-learn": "1.9.1"},
        artifacts={},
    )
    labels, probabilities = LoadedModel(manifest=manifest, estimator=model, runtime="sklambda-lean").predict(held_x)
    assert probabilities is None and labels == pipeline.predict(held_x).tolist()


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (KNeighborsClassifier(), "KNeighborsClassifier: neighbour search"),
        (KNeighborsRegressor(), "KNeighborsRegressor: neighbour search"),
        (SVC(probability=True), "SVC: kernel SVMs are not converted"),
        (SVR(), "SVR: kernel SVMs are not converted"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_models_that_do_not_convert_say_why(estimator, expected):
    x, y, held_x, _ = _split(IRIS, seed=6)
    task = "classification" if "Classifier" in expected or "SVC" in expected else "regression"
    pipeline = make_pipeline(StandardScaler(), estimator).fit(x, y if task == "classification" else y * 1.5)
    conversion = lean.convert(pipeline, _schema(IRIS.feature_names), task, held_x)
    assert not conversion.accepted and expected in conversion.reason


def test_multilabel_one_vs_rest_is_refused():
    x, y, held_x, _ = _split(IRIS, seed=7)
    labels = np.column_stack([y == 0, y == 2]).astype(int)
    pipeline = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression())).fit(x, labels)
    conversion = lean.convert(pipeline, _schema(IRIS.feature_names), "classification", held_x)
    assert not conversion.accepted and "multilabel" in conversion.reason


# ----------------------------------------------------------------------------- the one-row path
def _adversarial(x: np.ndarray, pipeline) -> np.ndarray:
    """Held-out rows plus rows at the scaler's means, zeros, -0.0, extremes and far beyond the data."""
    scaler = pipeline[0]
    extremes = np.vstack([x.min(axis=0), x.max(axis=0)])
    return np.vstack(
        [
            x,
            scaler.mean_,  # the scaled row is all zeros: the decision is the intercept
            np.zeros(x.shape[1]),
            np.full(x.shape[1], -0.0),
            extremes,
            extremes * 1e6,  # a decision beyond exp's range: the expit's OverflowError branch
            -extremes * 1e6,
            np.full(x.shape[1], 1e300),
        ]
    )


def _one_row_equals_scikit_learn(model, pipeline, matrix, method: str) -> None:
    """Each row alone: bit-identical to scikit-learn's answer on that row (the BLAS product of one row is its
    own code, in both); the whole matrix: bit-identical to scikit-learn's answer on the matrix; and the
    preprocessing of a row alone is the preprocessing of the row in the batch."""
    batch = getattr(model, method)(matrix)
    assert np.array_equal(batch, getattr(pipeline, method)(matrix))
    features = model.transform(matrix)
    for i in range(len(matrix)):
        row = matrix[i : i + 1]
        got = getattr(model, method)(row)
        assert got.shape == batch[i : i + 1].shape and got.dtype == batch.dtype
        assert np.array_equal(got, getattr(pipeline, method)(row)), i
        assert np.array_equal(model.transform(row), features[i : i + 1]), i
        assert np.allclose(got, batch[i : i + 1], rtol=1e-12, atol=1e-12)  # gemv and gemm differ in the last bit
        if method == "predict_proba":
            assert np.array_equal(model.predict(row), pipeline.predict(row)), i


@pytest.mark.parametrize(
    ("dataset", "classifier"),
    [
        (CANCER, LogisticRegression(max_iter=5000)),  # binary: expit
        (WINE, LogisticRegression(max_iter=5000)),  # multinomial: softmax
        (WINE, SGDClassifier(loss="log_loss", random_state=0)),  # one-vs-rest logistic, normalised
        (CANCER, SGDClassifier(loss="modified_huber", random_state=0)),
        (IRIS, OneVsRestClassifier(LogisticRegression(max_iter=5000))),
    ],
    ids=["binary", "multinomial", "sgd-one-vs-rest", "modified-huber", "one-vs-rest"],
)
def test_one_row_probabilities_are_scikit_learns_bit_for_bit(dataset, classifier):
    x, y, held_x, _ = _split(dataset, seed=8)
    pipeline = make_pipeline(StandardScaler(), classifier).fit(x, y)
    schema = _schema(dataset.feature_names)
    model = runtime.load(lean.build(pipeline, schema, "classification", held_x))
    with np.errstate(all="ignore"):
        rows = _adversarial(held_x[:40], pipeline)
        _one_row_equals_scikit_learn(model, pipeline, rows, "predict_proba")


def test_one_row_regression_is_scikit_learns_bit_for_bit():
    x, y, held_x, _ = _split(DIABETES, seed=9)
    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=3.0)).fit(x, y)
    model = runtime.load(lean.build(pipeline, _schema(DIABETES.feature_names), "regression", held_x))
    _one_row_equals_scikit_learn(model, pipeline, _adversarial(held_x[:40], pipeline), "predict")
    bare = Lasso(alpha=0.1).fit(x, y)  # no step: the request matrix goes to the estimator as it is
    model = runtime.load(lean.build(bare, _schema(DIABETES.feature_names), "regression", held_x))
    for i in range(20):
        assert np.array_equal(model.predict(held_x[i : i + 1]), bare.predict(held_x[i : i + 1]))


def test_one_row_refusals_are_the_same_as_before():
    """NaN and infinity in a row alone: the errors (and their messages) the batch path gives."""
    x, y, held_x, _ = _split(CANCER, seed=10)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(x, y)
    model = runtime.load(lean.build(pipeline, _schema(CANCER.feature_names), "classification", held_x))
    for bad, message in ((np.nan, "Input X contains NaN or infinity."), (np.inf, "Input contains infinity")):
        row = held_x[:1].copy()
        row[0, 5] = bad
        with pytest.raises(ValueError, match=message):
            model.predict_proba(row)
        with pytest.raises(ValueError, match=message):
            model.predict(np.vstack([held_x[:3], row]))
    with pytest.raises(ValueError, match="expected a 2-D matrix with 30 columns, got shape"):
        model.predict_proba(held_x[:1, :5])
    with pytest.raises(ValueError, match="linear_classifier: expected a 2-D matrix with 30 columns"):
        model.estimator.predict_proba(held_x[0])
    with pytest.raises(ValueError, match="Input X contains NaN or infinity."):
        model.estimator.predict_proba(np.full((1, 30), np.nan))
