"""Tree estimators of the lean runtime against scikit-learn, bit for bit.

Given a fitted estimator, when it is converted (``sklambda.lifecycle.lean.forests``), its arrays
round-trip through ``np.savez`` / ``np.load(allow_pickle=False)`` and its spec through JSON and the
runtime part is built (``sklambda.serving.lean.forests``), then on held-out rows, on rows exactly on,
just above and just below every split threshold (and its float32 rounding), on NaN in every
column, on zeros and on ±1e38 / ±1e300 / ±inf, it answers exactly what scikit-learn answers (labels
equal, probabilities and values bit-identical), and refuses (ValueError) exactly the inputs
scikit-learn refuses.
"""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier, ExtraTreeRegressor

import sklambda.lifecycle.lean.forests  # registers the converters
import sklambda.serving.lean.forests  # registers the runtime kinds  # noqa: F401
from sklambda.lifecycle.lean.base import ESTIMATOR_CONVERTERS, Unsupported
from sklambda.serving.lean.base import ESTIMATORS, LeanFormatError

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # scikit-learn's cast

N_FEATURES = 5
EXTREMES = (0.0, -0.0, 1e38, -1e38, 1e300, -1e300, np.inf, -np.inf)


# ----------------------------------------------------------------------------- helpers
def lean(fitted: Any) -> Any:
    """Convert, serialise (no pickle) and load one estimator part."""
    spec, arrays = ESTIMATOR_CONVERTERS[type(fitted).__name__](fitted)
    assert all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in arrays.values())
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {name: npz[name] for name in npz.files}
    spec = json.loads(json.dumps(spec))
    return ESTIMATORS[spec["kind"]].from_parts(spec, loaded)


def is_classifier(fitted: Any) -> bool:
    return hasattr(fitted, "classes_")


def answers(model: Any, x: np.ndarray, classifier: bool) -> tuple[np.ndarray, np.ndarray | None]:
    labels = model.predict(x)
    return labels, (model.predict_proba(x) if classifier else None)


def agrees(fitted: Any, model: Any, x: np.ndarray) -> bool:
    """True if both answered (identically), False if both refused the input; fails otherwise."""
    classifier = is_classifier(fitted)
    try:
        expected_labels, expected_proba = answers(fitted, x, classifier)
    except ValueError:
        with pytest.raises(ValueError):
            answers(model, x, classifier)
        return False
    labels, proba = answers(model, x, classifier)
    assert labels.shape == expected_labels.shape
    assert np.array_equal(labels, expected_labels), "labels differ"
    if classifier:
        assert proba is not None and expected_proba is not None
        assert proba.dtype == np.float64 and proba.shape == expected_proba.shape
        assert np.array_equal(proba, expected_proba), f"max diff {np.max(np.abs(proba - expected_proba)):.3g}"
    else:
        assert labels.dtype == np.float64
    return True


def tree_splits(fitted: Any) -> list[tuple[int, float]]:
    """(column, threshold) of every numeric split the fitted estimator tests."""
    splits: list[tuple[int, float]] = []
    if hasattr(fitted, "_predictors"):
        mask = getattr(fitted, "is_categorical_", None)
        columns = np.arange(fitted.n_features_in_)
        if mask is not None:  # the internal ColumnTransformer puts categorical columns first
            columns = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
        for iteration in fitted._predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                numeric = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
                for f, t in zip(nodes["feature_idx"][numeric], nodes["num_threshold"][numeric], strict=True):
                    splits.append((int(columns[f]), float(t)))
        return splits
    fitted_trees = [fitted] if hasattr(fitted, "tree_") else np.asarray(fitted.estimators_).ravel().tolist()
    trees = [e.tree_ for e in fitted_trees]
    for tree in trees:
        inner = tree.children_left != -1
        splits.extend(zip(tree.feature[inner].tolist(), tree.threshold[inner].tolist(), strict=True))
    return splits


def threshold_rows(fitted: Any, base: np.ndarray, limit: int = 400) -> np.ndarray:
    """Rows with one column exactly on a split threshold, one float64 / float32 step either side, or float32(t)."""
    # Infinite thresholds (scikit-learn's "split on missing values") are probed by the extremes.
    splits = sorted({(c, t) for c, t in tree_splits(fitted) if abs(t) < 3e38})
    assert splits, "the fitted estimator has no split to probe"
    rng = np.random.default_rng(1)
    chosen = [splits[i] for i in rng.choice(len(splits), size=min(limit, len(splits)), replace=False)]
    rows = []
    for i, (column, t) in enumerate(chosen):
        t32 = np.float32(t)
        for value in (
            t,
            np.nextafter(t, np.inf),
            np.nextafter(t, -np.inf),
            float(t32),
            float(np.nextafter(t32, np.float32(np.inf))),
            float(np.nextafter(t32, np.float32(-np.inf))),
        ):
            row = base[i % len(base)].copy()
            row[column] = value
            rows.append(row)
    return np.asarray(rows)


FLOAT32_REFUSED = (1e300, -1e300, np.inf, -np.inf)  # infinite once cast to float32
CATEGORY_REFUSED = (np.inf, -np.inf)  # HGB's own OrdinalEncoder allows NaN, not inf


def check_everywhere(fitted: Any, model: Any, held_out: np.ndarray, *, nan: bool, refused: tuple[float, ...]) -> None:
    """Held-out, threshold, NaN and extreme rows; ``nan``: scikit-learn answers NaN; ``refused``: values it refuses."""
    assert agrees(fitted, model, held_out)
    assert agrees(fitted, model, held_out[:1])
    assert agrees(fitted, model, threshold_rows(fitted, held_out))
    base = held_out[: held_out.shape[1]].copy()
    diagonal = np.arange(len(base))
    one_nan = base.copy()
    one_nan[diagonal, diagonal] = np.nan
    assert agrees(fitted, model, one_nan) is nan
    assert agrees(fitted, model, np.full((1, held_out.shape[1]), np.nan)) is nan
    for value in EXTREMES:
        rows = base.copy()
        rows[diagonal, diagonal] = value
        answered = value not in refused
        assert agrees(fitted, model, rows) is answered, value
        assert agrees(fitted, model, np.full((1, held_out.shape[1]), value)) is answered, value


def data(task: str, n: int = 500, missing: bool = False, n_classes: int = 3, seed: int = 0) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 3] = np.round(x[:, 3] * 2) / 2  # repeated values: thresholds at midpoints of ties
    score = x[:, 0] + 0.5 * x[:, 1] ** 2 - x[:, 2] * x[:, 3]
    if task == "classification":
        y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    else:
        y = score + 0.1 * rng.normal(size=n)
    if missing:  # NaN in two columns only: the others route NaN by the fit-time rule
        x[rng.random(n) < 0.15, 0] = np.nan
        x[rng.random(n) < 0.15, 2] = np.nan
    half = n // 2
    return x[:half], y[:half], x[half:]


# ----------------------------------------------------------------------------- forests and single trees
FOREST_CASES = [
    pytest.param(RandomForestClassifier(n_estimators=25, random_state=0), "classification", id="rf-classifier"),
    pytest.param(ExtraTreesClassifier(n_estimators=25, random_state=0), "classification", id="et-classifier"),
    pytest.param(RandomForestRegressor(n_estimators=25, random_state=0), "regression", id="rf-regressor"),
    pytest.param(ExtraTreesRegressor(n_estimators=25, random_state=0), "regression", id="et-regressor"),
    pytest.param(DecisionTreeClassifier(random_state=0), "classification", id="tree-classifier"),
    pytest.param(DecisionTreeRegressor(random_state=0), "regression", id="tree-regressor"),
    pytest.param(DecisionTreeClassifier(max_depth=3, random_state=0), "classification", id="shallow-tree"),
    pytest.param(ExtraTreeClassifier(random_state=0), "classification", id="extra-tree-classifier"),
    pytest.param(ExtraTreeRegressor(random_state=0), "regression", id="extra-tree-regressor"),
]


@pytest.mark.parametrize(("estimator", "task"), FOREST_CASES)
@pytest.mark.parametrize("missing", [False, True], ids=["no-nan-at-fit", "nan-at-fit"])
def test_forests_and_trees_match_scikit_learn(estimator: Any, task: str, missing: bool) -> None:
    x, y, held_out = data(task, missing=missing)
    fitted = estimator.fit(x, y)
    model = lean(fitted)
    # NaN at predict: every one of these estimators supports missing values (scikit-learn >= 1.4 / 1.6).
    check_everywhere(fitted, model, held_out, nan=True, refused=FLOAT32_REFUSED)


def test_forest_string_and_bool_labels() -> None:
    x, y, held_out = data("classification")
    for labels in (np.array(["low", "mid", "high"])[y], y == 1):
        fitted = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, labels)
        model = lean(fitted)
        assert agrees(fitted, model, held_out)
        assert model.predict(held_out).dtype == fitted.predict(held_out).dtype


def test_tree_tie_goes_to_the_first_class_like_argmax() -> None:
    fitted = DecisionTreeClassifier().fit(np.zeros((4, 2)), ["b", "a", "b", "a"])  # one leaf: [0.5, 0.5]
    model = lean(fitted)
    assert agrees(fitted, model, np.zeros((3, 2)))
    assert model.predict(np.zeros((1, 2))).tolist() == ["a"]


def test_regressor_has_no_predict_proba() -> None:
    x, y, _ = data("regression")
    model = lean(RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y))
    with pytest.raises(AttributeError):
        model.predict_proba(x)


def test_multi_output_is_refused() -> None:
    x, y, _ = data("regression")
    fitted = RandomForestRegressor(n_estimators=3, random_state=0).fit(x, np.column_stack([y, -y]))
    with pytest.raises(Unsupported, match="2 outputs"):
        lean(fitted)


def test_wrong_width_is_refused() -> None:
    x, y, _ = data("classification")
    model = lean(DecisionTreeClassifier(random_state=0).fit(x, y))
    with pytest.raises(ValueError, match="5 columns"):
        model.predict(np.zeros((2, 4)))


def test_corrupt_arrays_are_refused() -> None:
    x, y, _ = data("classification")
    spec, arrays = ESTIMATOR_CONVERTERS["DecisionTreeClassifier"](DecisionTreeClassifier(random_state=0).fit(x, y))
    kind = ESTIMATORS[spec["kind"]]
    around = np.roll(np.arange(len(arrays["left"]), dtype=np.int32), -1)  # node i -> i + 1, the last -> 0
    cycle = dict(arrays, left=around, right=around)
    with pytest.raises(LeanFormatError, match="cycle"):
        kind.from_parts(spec, cycle)
    outside = dict(arrays, feature=np.full_like(arrays["feature"], N_FEATURES))
    with pytest.raises(LeanFormatError, match="feature outside"):
        kind.from_parts(spec, outside)
    half_leaf = dict(arrays, left=np.arange(len(arrays["left"]), dtype=np.int32))
    with pytest.raises(LeanFormatError, match="leaf"):
        kind.from_parts(spec, half_leaf)
    with pytest.raises(LeanFormatError, match="missing arrays"):
        kind.from_parts(spec, {k: v for k, v in arrays.items() if k != "roots"})


# ----------------------------------------------------------------------------- gradient boosting
GB_CLASSIFIERS = [
    pytest.param(dict(loss="log_loss"), 2, id="binary-log-loss"),
    pytest.param(dict(loss="log_loss"), 4, id="multiclass-log-loss"),
    pytest.param(dict(loss="exponential"), 2, id="binary-exponential"),
    pytest.param(dict(loss="log_loss", init="zero"), 2, id="binary-init-zero"),
    pytest.param(dict(loss="log_loss", init="zero"), 3, id="multiclass-init-zero"),
    pytest.param(dict(init=DummyClassifier(strategy="prior")), 3, id="explicit-prior"),
    pytest.param(dict(subsample=0.7, max_depth=5, learning_rate=0.3), 3, id="subsample-deep"),
    pytest.param(dict(n_iter_no_change=3, validation_fraction=0.2), 2, id="early-stopping"),
]


@pytest.mark.parametrize(("options", "n_classes"), GB_CLASSIFIERS)
def test_gradient_boosting_classifier_matches_scikit_learn(options: dict[str, Any], n_classes: int) -> None:
    x, y, held_out = data("classification", n_classes=n_classes)
    fitted = GradientBoostingClassifier(n_estimators=30, random_state=0, **options).fit(x, y)
    check_everywhere(fitted, lean(fitted), held_out, nan=False, refused=FLOAT32_REFUSED)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(dict(loss="squared_error"), id="squared-error"),
        pytest.param(dict(loss="absolute_error"), id="absolute-error"),
        pytest.param(dict(loss="huber", alpha=0.8), id="huber"),
        pytest.param(dict(loss="quantile", alpha=0.2), id="quantile"),
        pytest.param(dict(loss="squared_error", init="zero"), id="init-zero"),
        pytest.param(dict(init=DummyRegressor(strategy="median")), id="explicit-dummy"),
    ],
)
def test_gradient_boosting_regressor_matches_scikit_learn(options: dict[str, Any]) -> None:
    x, y, held_out = data("regression")
    fitted = GradientBoostingRegressor(n_estimators=30, random_state=0, **options).fit(x, y)
    check_everywhere(fitted, lean(fitted), held_out, nan=False, refused=FLOAT32_REFUSED)


def test_gradient_boosting_zero_raw_prediction_is_the_positive_class() -> None:
    # Constant input, balanced labels, init='zero': every raw prediction is exactly 0.
    fitted = GradientBoostingClassifier(n_estimators=3, init="zero").fit(np.zeros((4, 2)), [0, 1, 0, 1])
    model = lean(fitted)
    assert fitted.decision_function(np.zeros((1, 2))).tolist() == [0.0]
    assert agrees(fitted, model, np.zeros((2, 2)))
    assert model.predict(np.zeros((1, 2))).tolist() == [1]


def test_gradient_boosting_custom_init_is_refused() -> None:
    x, y, _ = data("regression")
    fitted = GradientBoostingRegressor(n_estimators=3, init=LinearRegression()).fit(x, y)
    with pytest.raises(Unsupported, match="custom init estimator"):
        lean(fitted)


# ----------------------------------------------------------------------------- histogram gradient boosting
HGB_CLASSIFIERS = [
    pytest.param(dict(), 2, id="binary"),
    pytest.param(dict(), 4, id="multiclass"),
    pytest.param(dict(early_stopping=True, n_iter_no_change=2, validation_fraction=0.2), 3, id="early-stopping"),
    pytest.param(dict(max_depth=3, learning_rate=0.5, l2_regularization=1.0), 2, id="shallow"),
]


@pytest.mark.parametrize(("options", "n_classes"), HGB_CLASSIFIERS)
@pytest.mark.parametrize("missing", [False, True], ids=["no-nan-at-fit", "nan-at-fit"])
def test_hist_gradient_boosting_classifier_matches_scikit_learn(
    options: dict[str, Any], n_classes: int, missing: bool
) -> None:
    x, y, held_out = data("classification", missing=missing, n_classes=n_classes)
    fitted = HistGradientBoostingClassifier(max_iter=30, random_state=0, **options).fit(x, y)
    if "early_stopping" in options:
        assert fitted.n_iter_ < 30  # only the fitted predictors count
    check_everywhere(fitted, lean(fitted), held_out, nan=True, refused=())


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(dict(loss="squared_error"), id="squared-error"),
        pytest.param(dict(loss="absolute_error"), id="absolute-error"),
        pytest.param(dict(loss="gamma"), id="gamma"),
        pytest.param(dict(loss="poisson"), id="poisson"),
        pytest.param(dict(loss="quantile", quantile=0.8), id="quantile"),
    ],
)
@pytest.mark.parametrize("missing", [False, True], ids=["no-nan-at-fit", "nan-at-fit"])
def test_hist_gradient_boosting_regressor_matches_scikit_learn(options: dict[str, Any], missing: bool) -> None:
    x, y, held_out = data("regression", missing=missing)
    if options["loss"] in ("gamma", "poisson"):
        y = np.exp(y / 3)
    fitted = HistGradientBoostingRegressor(max_iter=30, random_state=0, **options).fit(x, y)
    check_everywhere(fitted, lean(fitted), held_out, nan=True, refused=())


def test_hist_gradient_boosting_nan_without_missing_at_fit_follows_the_larger_child() -> None:
    x, y, held_out = data("classification", n_classes=2)
    fitted = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
    nodes = fitted._predictors[0][0].nodes
    root = nodes[0]
    left, right = nodes[root["left"]], nodes[root["right"]]
    assert bool(root["missing_go_to_left"]) == (left["count"] > right["count"])  # the fit-time rule
    rows = held_out[:20].copy()
    rows[:, root["feature_idx"]] = np.nan
    assert agrees(fitted, lean(fitted), rows)


def categorical_data(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    colour = rng.choice([3.0, 7.0, 10.0, 42.0, 5.5], n)  # arbitrary numeric category values
    code = rng.choice(np.arange(40, dtype=float), n)
    x = np.column_stack([rng.normal(size=n), colour, code, rng.normal(size=n)])
    x[rng.random(n) < 0.05, 1] = np.nan
    y = ((colour == 7.0) | (code % 3 == 0)) ^ (x[:, 0] > 0.5)
    return x, y.astype(int), rng.normal(size=n)


@pytest.mark.parametrize("categorical_features", [[1, 2], [False, True, True, False]], ids=["indices", "mask"])
def test_hist_gradient_boosting_categorical_splits_match_scikit_learn(categorical_features: Any) -> None:
    x, y, _ = categorical_data()
    fitted = HistGradientBoostingClassifier(max_iter=40, categorical_features=categorical_features, random_state=0)
    fitted.fit(x[:800], y[:800])
    spec, arrays = ESTIMATOR_CONVERTERS[type(fitted).__name__](fitted)
    assert arrays["is_categorical"].any() and spec["categorical_columns"] == [1, 2]
    model = lean(fitted)
    held_out = x[800:]
    check_everywhere(fitted, model, held_out, nan=True, refused=CATEGORY_REFUSED)
    odd = held_out[:12].copy()
    # Unknown, negative, fractional, out-of-range, NaN and 1e300 categories: where scikit-learn sends them.
    for value in (8.0, -1.0, -0.0, 2.5, 39.999, 40.0, 255.0, 256.0, 300.0, 1e300, -1e300, np.nan):
        rows = odd.copy()
        rows[:, 2] = value
        assert agrees(fitted, model, rows), value
        rows[:, 1] = value
        assert agrees(fitted, model, rows), value


def test_hist_gradient_boosting_regressor_categorical_with_early_stopping() -> None:
    x, y, noise = categorical_data(seed=1)
    target = y + noise * 0.1
    fitted = HistGradientBoostingRegressor(max_iter=50, categorical_features=[2], early_stopping=True, random_state=0)
    fitted.fit(x[:800], target[:800])
    check_everywhere(fitted, lean(fitted), x[800:], nan=True, refused=CATEGORY_REFUSED)


def test_hist_gradient_boosting_zero_raw_prediction_is_the_negative_class() -> None:
    fitted = HistGradientBoostingClassifier(max_iter=3).fit(np.zeros((40, 2)), [0, 1] * 20)
    model = lean(fitted)
    assert fitted._raw_predict(np.zeros((1, 2))).tolist() == [[0.0]]
    assert agrees(fitted, model, np.zeros((2, 2)))
    assert model.predict(np.zeros((1, 2))).tolist() == [0]


def test_hist_gradient_boosting_pandas_categories() -> None:
    pd = pytest.importorskip("pandas")
    x, y, _ = categorical_data()
    frame = pd.DataFrame({"a": x[:, 0], "code": pd.Categorical(x[:, 2].astype(int)), "b": x[:, 3]})
    fitted = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(frame[:800], y[:800])
    model = lean(fitted)
    held_out = frame[800:]
    assert np.array_equal(model.predict_proba(held_out.to_numpy(dtype=float)), fitted.predict_proba(held_out))

    named = frame.assign(code=pd.Categorical(np.where(x[:, 2] > 10, "high", "low")))
    fitted = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(named, y)
    with pytest.raises(Unsupported, match="put an OrdinalEncoder before it"):
        lean(fitted)


# ----------------------------------------------------------------------------- end to end: convert -> artifact -> load
def converted(estimator: Any, schema: Any, task: str, rows: np.ndarray) -> Any:
    """Given a fitted pipeline, when the publisher converts it, then the parity gate accepts it as exact."""
    from sklambda.lifecycle import lean as publisher
    from sklambda.serving import lean as runtime

    conversion = publisher.convert(estimator, schema, task, rows)
    assert conversion.accepted, conversion.reason
    assert conversion.parity["passed"] and conversion.parity["exact"]
    assert conversion.artifact is not None
    return runtime.load(conversion.artifact)


def mixed_frame(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows as the API builds them (object matrix: floats, str, None) and a binary target."""
    rng = np.random.default_rng(seed)
    size = rng.normal(100, 30, n)
    rooms = rng.integers(1, 8, n).astype(float)
    city = rng.choice(["amsterdam", "berlin", "cairo", "dakar"], n).astype(object)
    kind = rng.choice(["flat", "house"], n).astype(object)
    score = 0.03 * size + 0.4 * rooms + np.where(city == "berlin", 1.5, 0.0) - np.where(kind == "flat", 1.0, 0.0)
    size[rng.random(n) < 0.1] = np.nan
    city[rng.random(n) < 0.1] = None
    x = np.column_stack([size.astype(object), rooms.astype(object), city, kind])
    return x, (score + rng.normal(0, 0.5, n) > np.median(score)).astype(int)


def test_pipeline_column_transformer_and_hist_gradient_boosting_on_string_categories() -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from sklambda.lifecycle.lean.checks import matrix_for, sklearn_input
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(
        features=[
            FeatureSpec(name="size", type="number", nullable=True),
            FeatureSpec(name="rooms", type="integer"),
            FeatureSpec(
                name="city", type="category", categories=["amsterdam", "berlin", "cairo", "dakar"], nullable=True
            ),
            FeatureSpec(name="kind", type="category", categories=["flat", "house"]),
        ]
    )
    x, y = mixed_frame(1500, seed=4)
    frame = pd.DataFrame(x, columns=schema.names).astype({"size": float, "rooms": float})
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer([("cat", encoder, ["city", "kind"]), ("num", "passthrough", ["size", "rooms"])]),
            ),
            ("model", HistGradientBoostingClassifier(max_iter=40, categorical_features=[0, 1], random_state=0)),
        ]
    ).fit(frame[:1000], y[:1000])
    held_out = matrix_for(schema, x[1000:].tolist())
    model = converted(pipeline, schema, "classification", held_out)
    assert model.header["estimator"]["kind"] == "hist_gradient_boosting_classifier"
    assert model.header["estimator"]["categorical_columns"] == [0, 1]
    expected_input = sklearn_input(pipeline, held_out, schema)
    assert np.array_equal(model.predict_proba(held_out), pipeline.predict_proba(expected_input))
    assert np.array_equal(model.predict(held_out), pipeline.predict(expected_input))
    for i in range(5):  # the single-row path
        row = held_out[i : i + 1]
        assert np.array_equal(model.predict_proba(row), pipeline.predict_proba(sklearn_input(pipeline, row, schema)))


@pytest.mark.parametrize(
    ("make_model", "task"),
    [
        pytest.param(lambda: GradientBoostingClassifier(n_estimators=25, random_state=0), "classification", id="gb"),
        pytest.param(
            lambda: HistGradientBoostingRegressor(max_iter=25, loss="poisson"), "regression", id="hgb-poisson"
        ),
        pytest.param(lambda: ExtraTreesRegressor(n_estimators=15, random_state=0), "regression", id="extra-trees"),
        pytest.param(lambda: DecisionTreeClassifier(max_depth=6, random_state=0), "classification", id="tree"),
    ],
)
def test_pipeline_imputer_scaler_and_tree_estimator(make_model: Any, task: str) -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(
        features=[FeatureSpec(name=f"f{i}", type="number", nullable=True) for i in range(N_FEATURES)]
    )
    x, y, held_out = data(task, n=1000, missing=True, n_classes=3)
    if task == "regression":
        y = np.exp(y / 3)
    pipeline = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), make_model()).fit(x, y)
    model = converted(pipeline, schema, task, held_out)
    assert np.array_equal(model.predict(held_out), pipeline.predict(held_out))
    if task == "classification":
        assert np.array_equal(model.predict_proba(held_out), pipeline.predict_proba(held_out))


def test_split_points_name_input_columns() -> None:
    from sklambda.lifecycle.lean.forests import split_points

    x, y, _ = categorical_data()
    hgb = HistGradientBoostingClassifier(max_iter=10, categorical_features=[1, 2], random_state=0).fit(x, y)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(x[:, [0, 3]], y)
    for fitted in (hgb, forest):
        assert sorted(split_points(fitted)) == sorted(tree_splits(fitted))
    assert {column for column, _ in split_points(hgb)} <= {0, 3}  # numeric splits only, on input columns


# ----------------------------------------------------------------------------- one row
# The service scores one row per request: the runtime walks it its own ways ("python" lists, "nodes"
# all-at-once numpy, or the vectorised "levels" walk, by a cost model). Whatever the way, one row alone
# answers the bits the vectorised path answers for it in a batch, and scikit-learn's, and refuses
# exactly the rows the vectorised path refuses, with the same message.
ONE_ROW_MODES = ("python", "nodes", "levels")
FLOAT32_EDGES = (
    3.4028234663852886e38,  # float32 max
    3.4028235677973362e38,  # just under half an ulp above it: still float32 max once cast
    3.4028235677973366e38,  # half an ulp above: rounds to inf (refused)
    -3.4028235677973366e38,
    1e-40,  # float32 subnormal
    7.006492321624085e-46,  # half the smallest float32 subnormal: a tie, rounds to 0
    7.006492321624087e-46,  # just over: rounds to the smallest subnormal
    -1e-46,
    5e-324,
)


def outcome(call: Any, x: Any) -> np.ndarray | str:
    """The answer, or the ValueError's message."""
    try:
        return np.asarray(call(x))
    except ValueError as err:
        return f"ValueError: {err}"


def same(a: np.ndarray | str, b: np.ndarray | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def sklearn_rows(call: Any, rows: np.ndarray) -> list[np.ndarray | None]:
    """scikit-learn's answer for each row (None where it refuses the row): one batch if it takes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's checks on inf / NaN rows
        try:
            whole = np.asarray(call(rows))
            return [whole[i : i + 1] for i in range(len(rows))]
        except ValueError:
            out: list[np.ndarray | None] = []
            for i in range(len(rows)):
                answer = outcome(call, rows[i : i + 1])
                out.append(None if isinstance(answer, str) else answer)
            return out


def one_row_matches(fitted: Any, model: Any, rows: np.ndarray) -> int:
    """Every row alone, in every mode, answers as the vectorised path (the row twice) and scikit-learn; returns
    how many rows were answered."""
    methods = ["predict", "predict_proba"] if is_classifier(fitted) else ["predict"]
    answered = 0
    for method in methods:
        expected = sklearn_rows(getattr(fitted, method), rows)
        call = getattr(model, method)
        batch = [outcome(call, np.repeat(rows[i : i + 1], 2, axis=0)) for i in range(len(rows))]
        batch = [b if isinstance(b, str) else b[:1] for b in batch]
        for mode in ONE_ROW_MODES:
            model.use_one_row_mode(mode)
            for i in range(len(rows)):
                one = outcome(call, rows[i : i + 1])
                assert same(one, batch[i]), (mode, method, rows[i], one, batch[i])
                if expected[i] is None:
                    assert isinstance(one, str), (mode, method, rows[i])
                else:
                    assert same(one, expected[i]), (mode, method, rows[i], one, expected[i])
                    answered += 1
        model.use_one_row_mode(None)
    return answered


def one_row_cases(fitted: Any, held_out: np.ndarray, limit: int = 60) -> np.ndarray:
    """Held-out rows, rows on/around thresholds, NaN in each column and everywhere, extremes, float32 edges."""
    width = held_out.shape[1]
    base = held_out[:width].copy()
    diagonal = np.arange(width)
    rows = [held_out[:20], threshold_rows(fitted, held_out, limit=limit)]
    for value in (np.nan, *EXTREMES, *FLOAT32_EDGES):
        column = base.copy()
        column[diagonal, diagonal] = value
        rows.extend([column, np.full((1, width), value)])
    return np.concatenate(rows)


@pytest.mark.parametrize(("estimator", "task"), FOREST_CASES)
@pytest.mark.parametrize("missing", [False, True], ids=["no-nan-at-fit", "nan-at-fit"])
def test_one_row_forests_and_trees(estimator: Any, task: str, missing: bool) -> None:
    x, y, held_out = data(task, missing=missing)
    fitted = estimator.fit(x, y)
    rows = one_row_cases(fitted, held_out)
    assert one_row_matches(fitted, lean(fitted), rows) > len(rows)


@pytest.mark.parametrize(
    ("estimator", "task", "n_classes"),
    [
        pytest.param(GradientBoostingClassifier(n_estimators=20, random_state=0), "classification", 2, id="binary"),
        pytest.param(GradientBoostingClassifier(n_estimators=10, random_state=0), "classification", 4, id="multiclass"),
        pytest.param(
            GradientBoostingClassifier(n_estimators=10, loss="exponential", random_state=0), "classification", 2,
            id="exponential",
        ),
        pytest.param(
            GradientBoostingClassifier(n_estimators=10, init="zero", random_state=0), "classification", 3,
            id="multiclass-init-zero",
        ),
        pytest.param(GradientBoostingRegressor(n_estimators=20, random_state=0), "regression", 0, id="squared-error"),
        pytest.param(
            GradientBoostingRegressor(n_estimators=10, loss="absolute_error", random_state=0), "regression", 0,
            id="absolute-error",
        ),
        pytest.param(
            GradientBoostingRegressor(n_estimators=10, loss="huber", random_state=0), "regression", 0, id="huber"
        ),
        pytest.param(
            GradientBoostingRegressor(n_estimators=10, loss="quantile", alpha=0.3, random_state=0), "regression", 0,
            id="quantile",
        ),
    ],
)  # fmt: skip
def test_one_row_gradient_boosting(estimator: Any, task: str, n_classes: int) -> None:
    x, y, held_out = data(task, n_classes=n_classes or 3)
    fitted = estimator.fit(x, y)
    rows = one_row_cases(fitted, held_out)
    assert one_row_matches(fitted, lean(fitted), rows) > len(rows)


@pytest.mark.parametrize(
    ("estimator", "task", "n_classes"),
    [
        pytest.param(HistGradientBoostingClassifier(max_iter=15, random_state=0), "classification", 2, id="binary"),
        pytest.param(HistGradientBoostingClassifier(max_iter=8, random_state=0), "classification", 4, id="multiclass"),
        pytest.param(HistGradientBoostingRegressor(max_iter=15, random_state=0), "regression", 0, id="squared-error"),
        pytest.param(
            HistGradientBoostingRegressor(max_iter=15, loss="poisson", random_state=0), "regression", 0, id="poisson"
        ),
        pytest.param(
            HistGradientBoostingRegressor(max_iter=15, loss="gamma", random_state=0), "regression", 0, id="gamma"
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("missing", [False, True], ids=["no-nan-at-fit", "nan-at-fit"])
def test_one_row_hist_gradient_boosting(estimator: Any, task: str, n_classes: int, missing: bool) -> None:
    x, y, held_out = data(task, missing=missing, n_classes=n_classes or 3)
    if task == "regression" and estimator.loss in ("poisson", "gamma"):
        y = np.exp(y / 3)
    fitted = estimator.fit(x, y)
    rows = one_row_cases(fitted, held_out)
    assert one_row_matches(fitted, lean(fitted), rows) > len(rows)  # HGB answers every row, inf included


@pytest.mark.parametrize("make", [HistGradientBoostingClassifier, HistGradientBoostingRegressor])
def test_one_row_hist_gradient_boosting_categories(make: Any) -> None:
    x, y, noise = categorical_data()
    target = y if make is HistGradientBoostingClassifier else y + 0.1 * noise
    fitted = make(max_iter=20, categorical_features=[1, 2], random_state=0).fit(x[:800], target[:800])
    held_out = x[800:]
    rows = [one_row_cases(fitted, held_out, limit=40)]
    # Unknown, negative, fractional, out-of-range, NaN, infinite and 1e300 categories in either column.
    for value in (8.0, -1.0, 0.0, -0.0, 2.5, 39.999, 40.0, 255.0, 256.0, 1e300, -1e300, np.nan, np.inf, -np.inf):
        for column in (1, 2):
            odd = held_out[:6].copy()
            odd[:, column] = value
            rows.append(odd)
    assert one_row_matches(fitted, lean(fitted), np.concatenate(rows)) > 0


def test_one_row_zero_raw_predictions_keep_each_estimators_side() -> None:
    """A raw prediction of exactly 0: the positive class for GradientBoosting, the negative one for HGB."""
    gb = GradientBoostingClassifier(n_estimators=3, init="zero").fit(np.zeros((4, 2)), [0, 1, 0, 1])
    hgb = HistGradientBoostingClassifier(max_iter=3).fit(np.zeros((40, 2)), [0, 1] * 20)
    for fitted, label in ((gb, 1), (hgb, 0)):
        model = lean(fitted)
        assert one_row_matches(fitted, model, np.zeros((2, 2))) == 2 * 2 * len(ONE_ROW_MODES)
        for mode in ONE_ROW_MODES:
            model.use_one_row_mode(mode)
            assert model.predict(np.zeros((1, 2))).tolist() == [label]


def test_one_row_takes_its_own_path() -> None:
    """The "python" and "nodes" ways never fall back to the vectorised walk on a plain row, nor on NaN."""
    x, y, held_out = data("classification", missing=True)
    for fitted in (
        DecisionTreeClassifier(random_state=0).fit(x, y),
        GradientBoostingClassifier(n_estimators=5, random_state=0).fit(np.nan_to_num(x), y),
        HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y),
    ):
        model = lean(fitted)

        def refuse(_: np.ndarray) -> np.ndarray:
            raise AssertionError("the vectorised walk was used for one row")

        vectorised = model.nodes.leaves
        model.nodes.leaves = refuse
        rows = np.nan_to_num(held_out[:5])
        if not isinstance(fitted, GradientBoostingClassifier):
            rows[1, 0] = np.nan
        for mode in ("python", "nodes"):
            model.use_one_row_mode(mode)
            for i in range(len(rows)):
                model.predict_proba(rows[i : i + 1])
                model.predict(rows[i : i + 1])
        model.use_one_row_mode("levels")
        with pytest.raises(AssertionError, match="vectorised"):
            model.predict(rows[:1])
        model.nodes.leaves = vectorised


def test_one_row_inputs_other_than_a_float64_row_answer_the_same() -> None:
    x, y, held_out = data("classification")
    fitted = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    model = lean(fitted)
    row = held_out[:1]
    expected = model.predict_proba(np.repeat(row, 2, axis=0))[:1]
    for same_row in (
        row.tolist(),
        np.asfortranarray(row),
        held_out[::2][:1],  # a strided view
        row.astype(">f8"),  # another byte order
        row.astype(object),
    ):
        assert np.array_equal(model.predict_proba(same_row), expected)
    as_float32 = row.astype(np.float32)
    assert np.array_equal(model.predict_proba(as_float32), model.predict_proba(as_float32.astype(np.float64)))
    with pytest.raises(ValueError, match="5 columns"):
        model.predict(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="5 columns"):
        model.predict(np.zeros(5))


def test_one_row_answers_are_fresh_arrays() -> None:
    x, y, held_out = data("classification")
    labels = np.array(["low", "mid", "high"])[y]
    for fitted in (
        RandomForestClassifier(n_estimators=3, random_state=0).fit(x, labels),
        HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, labels),
    ):
        model = lean(fitted)
        row = held_out[:1]
        first = model.predict(row)
        expected = first.copy()
        first[0] = "changed"
        assert np.array_equal(model.predict(row), expected)
        assert model.predict(row).dtype == fitted.predict(row).dtype


def test_one_row_mode_follows_the_cost_model() -> None:
    from sklambda.serving.lean.forests import _PYTHON_MAX_INNER, _one_row_mode

    def complete(n_trees: int, depth: int) -> Any:
        """A forest regressor of complete binary trees (arrays as the converter writes them)."""
        per_tree = 2 ** (depth + 1) - 1
        node = np.arange(per_tree)
        inner = node < 2**depth - 1
        offsets = np.repeat(np.arange(n_trees) * per_tree, per_tree)
        tiled = np.tile(node, n_trees)
        own = tiled + offsets
        left = np.where(np.tile(inner, n_trees), 2 * tiled + 1 + offsets, own).astype(np.int32)
        right = np.where(np.tile(inner, n_trees), 2 * tiled + 2 + offsets, own).astype(np.int32)
        arrays = {
            "feature": (own % N_FEATURES).astype(np.int32),
            "threshold": np.zeros(len(own), np.float32),
            "left": left,
            "right": right,
            "missing_left": np.zeros(len(own), bool),
            "roots": (np.arange(n_trees) * per_tree).astype(np.int32),
            "value": np.arange(len(own), dtype=np.float64)[:, None],
        }
        spec = {"kind": "forest_regressor", "n_features": N_FEATURES, "allow_nan": True}
        return ESTIMATORS["forest_regressor"].from_parts(spec, arrays)

    assert _one_row_mode(complete(1, 12).nodes) == "python"  # a deep single tree
    assert _one_row_mode(complete(300, 3).nodes) == "nodes"  # many shallow trees (boosting)
    big = complete(200, 10)
    assert big.nodes.n_inner > _PYTHON_MAX_INNER
    assert _one_row_mode(big.nodes) == "levels"  # many deep trees: past the memory cap, per level wins
    rows = np.random.default_rng(0).normal(size=(3, N_FEATURES))
    for model in (complete(1, 12), complete(300, 3), complete(20, 8)):
        expected = model.predict(rows)
        for mode in ONE_ROW_MODES:
            model.use_one_row_mode(mode)
            assert np.array_equal(np.concatenate([model.predict(rows[i : i + 1]) for i in range(3)]), expected)
    with pytest.raises(ValueError, match="one-row mode"):
        big.use_one_row_mode("fast")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=64), min_size=N_FEATURES, max_size=N_FEATURES))
def test_one_row_property_any_float64_row(row: list[float]) -> None:
    """Any row (NaN, inf, huge, subnormal, -0.0) answers or refuses alike, one row or in a batch, every mode."""
    for model in _property_models():
        x = np.asarray([row])
        for method in ("predict", "predict_proba") if hasattr(model, "classes") else ("predict",):
            call = getattr(model, method)
            batch = outcome(call, np.repeat(x, 2, axis=0))
            batch = batch if isinstance(batch, str) else batch[:1]
            for mode in ONE_ROW_MODES:
                model.use_one_row_mode(mode)
                assert same(outcome(call, x), batch), (type(model).__name__, mode, method)
            model.use_one_row_mode(None)


_PROPERTY_MODELS: list[Any] = []


def _property_models() -> list[Any]:
    if not _PROPERTY_MODELS:
        x, y, _ = data("classification", missing=True)
        filled = np.nan_to_num(x)
        x_cat, y_cat, _ = categorical_data()
        with_categories = np.column_stack([x_cat, x_cat[:, 0]])  # 5 columns, categories in 1 and 2
        _PROPERTY_MODELS.extend(
            lean(fitted)
            for fitted in (
                RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y),
                DecisionTreeRegressor(random_state=0).fit(x, y),
                GradientBoostingClassifier(n_estimators=5, random_state=0).fit(filled, y),
                GradientBoostingClassifier(n_estimators=5, loss="exponential", random_state=0).fit(filled, y == 1),
                HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y),
                HistGradientBoostingRegressor(max_iter=5, loss="poisson", random_state=0).fit(x, y + 1),
                HistGradientBoostingClassifier(max_iter=5, categorical_features=[1, 2], random_state=0).fit(
                    with_categories, y_cat
                ),
            )
        )
    return _PROPERTY_MODELS


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.floats(-40, 40), st.floats(width=64)), min_size=2, max_size=20))
def test_one_row_softmax_is_the_numpy_softmax(raw: list[float]) -> None:
    """Also past 8 classes, where numpy sums pairwise (8 accumulators) and Python's left-to-right sum differs."""
    from sklambda.serving.lean.forests import _softmax, _softmax_one

    with np.errstate(all="ignore"):
        expected = _softmax(np.array([raw]))
        assert np.array_equal(_softmax_one(raw), expected, equal_nan=True)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(width=64), min_size=1, max_size=8))
def test_one_row_float32_cast_is_numpys(row: list[float]) -> None:
    from sklambda.serving.lean.forests import _float32_input, _float32_row

    x = np.asarray([row])
    expected = outcome(lambda m: _float32_input(m, len(row), allow_nan=True), x)
    got = _float32_row(x, allow_nan=True)
    if isinstance(expected, str):
        assert got is None
    else:
        assert got is not None
        values, has_nan, _ = got
        assert np.array_equal(np.asarray([values], dtype=np.float32), expected, equal_nan=True)
        assert has_nan == bool(np.isnan(expected).any())
