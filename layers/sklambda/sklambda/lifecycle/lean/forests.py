"""Publish-time converters of tree estimators to the lean runtime (``sklambda.serving.lean.forests``).

Each converter reads a fitted scikit-learn estimator and writes the arrays its runtime twin walks:
flat node arrays for all trees (leaves point to themselves), float32-floor thresholds for the
float32 trees, learning-rate-scaled leaf values and the ``init`` raw prediction for gradient
boosting, predictor nodes, baseline, category bitsets and the estimator's own category encoding
for histogram boosting. What the runtime would not reproduce exactly raises :class:`Unsupported`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from sklambda.lifecycle.lean.base import Part, Unsupported, converts_estimator

# The loss's inverse link as the runtime names it (scikit-learn's link classes).
_LINKS = {
    "IdentityLink": "identity",
    "LogLink": "log",
    "LogitLink": "logit",
    "HalfLogitLink": "half_logit",
    "MultinomialLogit": "softmax",
}


def _name(fitted: Any) -> str:
    return type(fitted).__name__


def float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value (exact split thresholds for float32 inputs)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    above = out.astype(np.float64) > values
    out[above] = np.nextafter(out[above], np.float32(-math.inf))
    return out


def _classes(fitted: Any) -> list[Any]:
    classes = np.asarray(fitted.classes_)
    labels = classes.tolist()
    if not all(isinstance(c, (str, int, float, bool)) for c in labels):
        raise Unsupported(f"{_name(fitted)}: class labels must be strings, numbers or booleans")
    if not np.array_equal(np.asarray(labels), classes):
        raise Unsupported(f"{_name(fitted)}: class labels of mixed types do not survive JSON")
    return labels


def _single_output(fitted: Any) -> None:
    if getattr(fitted, "n_outputs_", 1) != 1:
        raise Unsupported(f"{_name(fitted)} has {fitted.n_outputs_} outputs; only single-output models convert")


def _allows_nan(fitted: Any) -> bool:
    from sklearn.utils import get_tags

    return bool(get_tags(fitted).input_tags.allow_nan)


def _tree_nodes(trees: list[Any]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Flat node arrays of scikit-learn ``Tree`` objects, and each tree's (n_nodes, ...) ``value``."""
    features, thresholds, lefts, rights, missing, roots, values = [], [], [], [], [], [], []
    offset = 0
    for tree in trees:
        n = tree.node_count
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left == -1
        own = np.arange(n, dtype=np.int64)
        features.append(np.where(leaf, 0, tree.feature).astype(np.int32))
        thresholds.append(float32_floor(np.where(leaf, 0.0, tree.threshold)))
        lefts.append((np.where(leaf, own, left) + offset).astype(np.int32))
        rights.append((np.where(leaf, own, right) + offset).astype(np.int32))
        mgl = getattr(tree, "missing_go_to_left", None)
        missing.append(np.zeros(n, dtype=bool) if mgl is None else np.asarray(mgl).astype(bool) & ~leaf)
        roots.append(offset)
        values.append(np.asarray(tree.value, dtype=np.float64))
        offset += n
    arrays = {
        "feature": np.concatenate(features),
        "threshold": np.concatenate(thresholds),
        "left": np.concatenate(lefts),
        "right": np.concatenate(rights),
        "missing_left": np.concatenate(missing),
        "roots": np.asarray(roots, dtype=np.int32),
    }
    return arrays, values


def _averaged(fitted: Any, trees: list[Any], kind: str, classifier: bool) -> Part:
    _single_output(fitted)
    arrays, values = _tree_nodes(trees)
    if classifier:
        n_classes = len(fitted.classes_)
        # Trees' predict_proba is the leaf's value (class fractions), first n_classes columns.
        arrays["value"] = np.ascontiguousarray(np.concatenate([v[:, 0, :n_classes] for v in values]))
    else:
        arrays["value"] = np.ascontiguousarray(np.concatenate([v[:, 0, :1] for v in values]))
    spec: dict[str, Any] = {
        "kind": kind,
        "estimator": _name(fitted),
        "n_features": int(fitted.n_features_in_),
        "n_trees": len(trees),
        "allow_nan": _allows_nan(fitted),
    }
    if classifier:
        spec["classes"] = _classes(fitted)
    return spec, arrays


@converts_estimator("RandomForestClassifier", "ExtraTreesClassifier")
def forest_classifier(fitted: Any) -> Part:
    return _averaged(fitted, [e.tree_ for e in fitted.estimators_], "forest_classifier", classifier=True)


@converts_estimator("RandomForestRegressor", "ExtraTreesRegressor")
def forest_regressor(fitted: Any) -> Part:
    return _averaged(fitted, [e.tree_ for e in fitted.estimators_], "forest_regressor", classifier=False)


@converts_estimator("DecisionTreeClassifier", "ExtraTreeClassifier")
def tree_classifier(fitted: Any) -> Part:
    return _averaged(fitted, [fitted.tree_], "tree_classifier", classifier=True)


@converts_estimator("DecisionTreeRegressor", "ExtraTreeRegressor")
def tree_regressor(fitted: Any) -> Part:
    return _averaged(fitted, [fitted.tree_], "tree_regressor", classifier=False)


# ----------------------------------------------------------------------------- gradient boosting
def _constant_init(fitted: Any) -> np.ndarray:
    """The init estimator's raw prediction, the same for every row (refused when it is not)."""
    init = fitted.init_
    if isinstance(init, str):
        if init != "zero":
            raise Unsupported(f"{_name(fitted)}: init={init!r} is not supported")
        return np.zeros(fitted.n_trees_per_iteration_, dtype=np.float64)
    constant = (
        _name(init) == "DummyRegressor"
        or (_name(init) == "DummyClassifier" and init.strategy in ("prior", "most_frequent"))
    ) and type(init).__module__.startswith("sklearn.")
    if not constant:
        raise Unsupported(
            f"{_name(fitted)}: init={_name(init)} is a custom init estimator whose predictions depend on the "
            "input; the lean runtime only starts from scikit-learn's default priors, a Dummy estimator or 'zero'"
        )
    # Its prediction does not depend on X: reproduce it through scikit-learn's own code on one row.
    row = np.zeros((1, fitted.n_features_in_), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = np.asarray(fitted._raw_predict_init(row), dtype=np.float64)
    return raw[0].copy()


@converts_estimator("GradientBoostingClassifier", "GradientBoostingRegressor")
def gradient_boosting(fitted: Any) -> Part:
    classifier = _name(fitted) == "GradientBoostingClassifier"
    stages = np.asarray(fitted.estimators_)  # (n_stages, K) of DecisionTreeRegressor
    trees = [stages[i, k].tree_ for i in range(stages.shape[0]) for k in range(stages.shape[1])]
    arrays, values = _tree_nodes(trees)
    # predict_stages adds ``learning_rate * value`` to the raw predictions: scale once here.
    scale = float(fitted.learning_rate)
    arrays["value"] = np.ascontiguousarray(np.concatenate([scale * v[:, 0, 0] for v in values]))
    arrays["init"] = _constant_init(fitted)
    if classifier:
        link = _LINKS.get(type(fitted._loss.link).__name__)
        if link not in ("logit", "half_logit", "softmax"):
            raise Unsupported(f"{_name(fitted)}: loss {fitted.loss!r} has no link the lean runtime knows")
    else:
        link = "identity"  # GradientBoostingRegressor.predict returns the raw prediction
    spec: dict[str, Any] = {
        "kind": "gradient_boosting_classifier" if classifier else "gradient_boosting_regressor",
        "estimator": _name(fitted),
        "n_features": int(fitted.n_features_in_),
        "trees_per_iteration": int(stages.shape[1]),
        "link": link,
        "loss": str(fitted.loss),
    }
    if classifier:
        spec["classes"] = _classes(fitted)
    return spec, arrays


# ----------------------------------------------------------------------------- histogram boosting
def _input_columns(fitted: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Where each predictor feature comes from in the estimator's input, and the categorical columns' categories.

    With categorical features, scikit-learn puts a ColumnTransformer inside the estimator
    (``_preprocessor``): an OrdinalEncoder on the categorical columns (unknown and missing -> NaN),
    output first, then the other columns as they are.
    """
    n_features = int(fitted.n_features_in_)
    pre = getattr(fitted, "_preprocessor", None)
    if pre is None:
        return np.arange(n_features), {}
    source: list[int] = []
    categories: dict[int, np.ndarray] = {}
    for name, transformer, columns in pre.transformers_:
        selector = np.asarray(columns)
        indices = np.flatnonzero(selector) if selector.dtype == bool else selector.astype(np.intp).reshape(-1)
        if name == "encoder" and len(indices):
            _check_encoder(fitted, transformer)
            for column, known in zip(indices.tolist(), transformer.categories_, strict=True):
                categories[int(column)] = _numeric_categories(fitted, int(column), known)
        elif name not in ("numerical", "remainder") or (name == "remainder" and len(indices)):
            raise Unsupported(f"{_name(fitted)}: unexpected internal preprocessing step {name!r}")
        if name != "remainder":
            slot = pre.output_indices_[name]
            if slot.stop - slot.start != len(indices) or slot.start != len(source):
                raise Unsupported(f"{_name(fitted)}: internal preprocessing changes the number of columns")
            source.extend(int(i) for i in indices)
    if sorted(source) != list(range(n_features)):
        raise Unsupported(f"{_name(fitted)}: internal preprocessing does not pass every column through once")
    return np.asarray(source, dtype=np.intp), categories


def _check_encoder(fitted: Any, encoder: Any) -> None:
    settings = (encoder.handle_unknown, encoder.encoded_missing_value, encoder.unknown_value)
    if settings[0] != "use_encoded_value" or not all(isinstance(v, float) and math.isnan(v) for v in settings[1:]):
        raise Unsupported(f"{_name(fitted)}: its category encoder maps unknown or missing values other than to NaN")
    if getattr(encoder, "_infrequent_enabled", False):
        raise Unsupported(f"{_name(fitted)}: infrequent-category grouping is not supported")


def _numeric_categories(fitted: Any, column: int, known: np.ndarray) -> np.ndarray:
    """The categories the estimator's own encoder knows for a column, as sorted float64 values."""
    values = [v for v in np.asarray(known).tolist() if not (isinstance(v, float) and math.isnan(v))]
    if not all(isinstance(v, (int, float, bool)) for v in values):
        sample = next((v for v in values if not isinstance(v, (int, float, bool))), None)
        raise Unsupported(
            f"{_name(fitted)} encodes the categories of input column {column} itself and they are not numbers "
            f"(e.g. {sample!r}): it was fitted on a DataFrame with string or pandas 'category' columns. The lean "
            "runtime feeds the estimator numbers only: put an OrdinalEncoder before it in the pipeline and pass "
            "categorical_features as those columns' positions"
        )
    as_float = np.asarray([float(v) for v in values], dtype=np.float64)
    if any(float(v) != v or (isinstance(v, int) and int(float(v)) != v) for v in values):
        raise Unsupported(f"{_name(fitted)}: categories of input column {column} are not exact float64 values")
    order = np.sort(as_float)
    if (np.diff(order) <= 0).any():
        raise Unsupported(f"{_name(fitted)}: categories of input column {column} collide as float64 values")
    return order


@converts_estimator("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
def hist_gradient_boosting(fitted: Any) -> Part:
    classifier = _name(fitted) == "HistGradientBoostingClassifier"
    source, categories = _input_columns(fitted)
    known_cat, f_idx_map = fitted._bin_mapper.make_known_categories_bitsets()
    n_features = int(fitted.n_features_in_)
    known_bitsets = np.zeros((n_features, 8), dtype=np.uint32)

    features, thresholds, lefts, rights, missing, roots, values = [], [], [], [], [], [], []
    is_categorical, bitset_rows, left_bitsets = [], [], []
    offset, bitset_offset = 0, 0
    for iteration in fitted._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            n = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            own = np.arange(n, dtype=np.int64)
            mapped = source[nodes["feature_idx"].astype(np.intp)]  # predictor feature -> input column
            features.append(np.where(leaf, 0, mapped).astype(np.int32))
            thresholds.append(np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64))
            lefts.append((np.where(leaf, own, nodes["left"].astype(np.int64)) + offset).astype(np.int32))
            rights.append((np.where(leaf, own, nodes["right"].astype(np.int64)) + offset).astype(np.int32))
            missing.append(nodes["missing_go_to_left"].astype(bool) & ~leaf)
            values.append(nodes["value"].astype(np.float64))
            categorical = nodes["is_categorical"].astype(bool) & ~leaf
            is_categorical.append(categorical)
            bitsets = np.asarray(predictor.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, 8)
            bitset_rows.append(np.where(categorical, nodes["bitset_idx"].astype(np.int64) + bitset_offset, 0))
            left_bitsets.append(bitsets)
            for f_idx in np.unique(nodes["feature_idx"][categorical]).tolist():
                known_bitsets[source[f_idx]] = known_cat[f_idx_map[f_idx]]
            roots.append(offset)
            offset += n
            bitset_offset += len(bitsets)

    arrays: dict[str, np.ndarray] = {
        "feature": np.concatenate(features),
        "threshold": np.concatenate(thresholds),
        "left": np.concatenate(lefts),
        "right": np.concatenate(rights),
        "missing_left": np.concatenate(missing),
        "roots": np.asarray(roots, dtype=np.int32),
        "value": np.ascontiguousarray(np.concatenate(values)),
        "baseline": np.asarray(fitted._baseline_prediction, dtype=np.float64).reshape(-1),
    }
    node_categorical = np.concatenate(is_categorical)
    if node_categorical.any():
        arrays["is_categorical"] = node_categorical
        arrays["bitset_row"] = np.concatenate(bitset_rows).astype(np.int32)
        arrays["left_bitsets"] = np.concatenate(left_bitsets).astype(np.uint32)
        arrays["known_bitsets"] = known_bitsets
    for column, known in categories.items():
        arrays[f"categories_{column}"] = known

    link = _LINKS.get(type(fitted._loss.link).__name__)
    allowed = ("logit", "softmax") if classifier else ("identity", "log")
    if link not in allowed:
        raise Unsupported(f"{_name(fitted)}: loss {fitted.loss!r} has no link the lean runtime knows")
    spec: dict[str, Any] = {
        "kind": "hist_gradient_boosting_classifier" if classifier else "hist_gradient_boosting_regressor",
        "estimator": _name(fitted),
        "n_features": n_features,
        "trees_per_iteration": int(fitted.n_trees_per_iteration_),
        "link": link,
        "loss": str(fitted.loss),
        "categorical_columns": sorted(categories),
    }
    if classifier:
        spec["classes"] = _classes(fitted)
    return spec, arrays


def split_points(fitted: Any) -> list[tuple[int, float]]:
    """(input column, threshold) of every numeric split a tree estimator tests, for boundary rows.

    Histogram boosting's predictors number features after its internal preprocessing (categorical
    columns first), so their features are mapped back to input columns; categorical splits have no
    threshold and are left out.
    """
    out: list[tuple[int, float]] = []
    if hasattr(fitted, "_predictors"):
        source, _ = _input_columns(fitted)
        for iteration in fitted._predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                numeric = (nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)
                columns = source[nodes["feature_idx"][numeric].astype(np.intp)]
                out.extend(zip(columns.tolist(), nodes["num_threshold"][numeric].tolist(), strict=True))
        return out
    fitted_trees = (
        [fitted] if hasattr(fitted, "tree_") else np.asarray(fitted.estimators_, dtype=object).ravel().tolist()
    )
    for estimator in fitted_trees:
        tree = estimator.tree_
        inner = tree.children_left != -1
        out.extend(zip(tree.feature[inner].tolist(), tree.threshold[inner].tolist(), strict=True))
    return out
