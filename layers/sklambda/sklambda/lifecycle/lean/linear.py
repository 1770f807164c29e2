"""Publish time: fitted linear models to the lean runtime's ``linear_*`` estimators.

``coef_`` and ``intercept_`` are stored as fitted (shape and dtype), so the runtime's product is
scikit-learn's own. What a model does not reproduce exactly is refused with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sklambda.lifecycle.lean.base import ESTIMATOR_CONVERTERS, Part, Unsupported, converts_estimator, json_classes

REGRESSORS = (
    "LinearRegression",
    "Ridge",
    "RidgeCV",
    "Lasso",
    "LassoCV",
    "ElasticNet",
    "ElasticNetCV",
    "SGDRegressor",
    "BayesianRidge",
    "HuberRegressor",
)


def _name(fitted: Any) -> str:
    return type(fitted).__name__


def _coef(fitted: Any) -> tuple[np.ndarray, np.ndarray]:
    coef = fitted.coef_
    if hasattr(coef, "toarray"):  # sparsify()-ed: the same numbers, densified
        coef = coef.toarray()
    coef = np.asarray(coef)  # memory layout kept (lbfgs leaves a Fortran-ordered coef_): BLAS sums in its order
    intercept = np.asarray(fitted.intercept_)
    if coef.dtype.kind != "f":
        coef = coef.astype(np.float64)
    if intercept.dtype.kind != "f":
        intercept = intercept.astype(np.float64)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise Unsupported(f"{_name(fitted)} has non-finite coefficients")
    return coef, intercept


@converts_estimator(*REGRESSORS)
def linear_regressor(fitted: Any) -> Part:
    coef, intercept = _coef(fitted)
    if coef.ndim == 2 or intercept.size > 1:  # (n, k) answers; the service serves one value per row
        raise Unsupported(f"{_name(fitted)} was fitted on a 2-D target; only single-target models convert")
    spec = {"kind": "linear_regressor", "n_features": int(fitted.n_features_in_)}
    return spec, {"coef": coef, "intercept": intercept}


def _linear_classifier(fitted: Any, proba: str | None) -> Part:
    coef, intercept = _coef(fitted)
    classes = json_classes(fitted)
    rows = 1 if coef.ndim == 1 else coef.shape[0]  # a binary RidgeClassifier keeps a 1-D coef_
    if rows != (1 if len(classes) == 2 else len(classes)) or (coef.ndim == 1 and len(classes) != 2):
        raise Unsupported(f"{_name(fitted)} coef_ of shape {coef.shape} for {len(classes)} classes")
    spec = {"kind": "linear_classifier", "n_features": int(fitted.n_features_in_), "classes": classes, "proba": proba}
    return spec, {"coef": coef, "intercept": intercept}


@converts_estimator("LogisticRegression", "LogisticRegressionCV")
def logistic_regression(fitted: Any) -> Part:
    # scikit-learn >= 1.7: binary -> expit of the one decision column, else the softmax (multinomial).
    # One-vs-rest is OneVsRestClassifier(LogisticRegression()), converted below.
    if getattr(fitted, "multi_class", "deprecated") not in ("deprecated", "auto", "multinomial"):
        raise Unsupported(f"LogisticRegression(multi_class={fitted.multi_class!r}); use OneVsRestClassifier")
    return _linear_classifier(fitted, "logistic" if len(fitted.classes_) == 2 else "softmax")


@converts_estimator("SGDClassifier")
def sgd_classifier(fitted: Any) -> Part:
    proba = {"log_loss": "logistic", "modified_huber": "modified_huber"}.get(fitted.loss)
    return _linear_classifier(fitted, proba)


@converts_estimator("RidgeClassifier", "RidgeClassifierCV")
def ridge_classifier(fitted: Any) -> Part:
    if fitted._label_binarizer.y_type_.startswith("multilabel"):
        raise Unsupported(f"{_name(fitted)} fitted on multilabel targets")
    return _linear_classifier(fitted, None)


@converts_estimator("Perceptron", "PassiveAggressiveClassifier", "LinearSVC")
def margin_classifier(fitted: Any) -> Part:
    return _linear_classifier(fitted, None)


@converts_estimator("OneVsRestClassifier")
def one_vs_rest(fitted: Any) -> Part:
    if fitted.multilabel_:
        raise Unsupported("OneVsRestClassifier fitted on multilabel targets (one label per row is served)")
    specs, arrays = [], {}
    for i, binary in enumerate(fitted.estimators_):
        name = _name(binary)
        convert = ESTIMATOR_CONVERTERS.get(name)
        if convert is None:
            why = " (a class that is always or never present)" if name == "_ConstantPredictor" else ""
            raise Unsupported(f"no lean converter for OneVsRestClassifier's {name}{why}")
        spec, part = convert(binary)
        spec = {**spec, "id": f"e{i}"}
        specs.append(spec)
        arrays.update({f"e{i}/{key}": value for key, value in part.items()})
    spec = {
        "kind": "one_vs_rest",
        "n_features": int(fitted.n_features_in_),
        "classes": json_classes(fitted),
        "estimators": specs,
    }
    return spec, arrays


def _refuse(reason: str) -> Any:
    def refuse(fitted: Any) -> Part:
        raise Unsupported(f"{_name(fitted)}: {reason}")

    return refuse


for _names, _reason in (
    (
        ("KNeighborsClassifier", "KNeighborsRegressor", "RadiusNeighborsClassifier", "RadiusNeighborsRegressor"),
        "neighbour search over the stored training set is not implemented by the lean runtime (its tie-breaking "
        "follows the tree or brute-force search order); served by scikit-learn",
    ),
    (
        ("SVC", "NuSVC", "SVR", "NuSVR", "OneClassSVM"),
        "kernel SVMs are not converted: libsvm's kernel sums and its Platt-scaled predict_proba (fitted with an "
        "internal cross-validation) are not reproduced exactly; served by scikit-learn",
    ),
):
    converts_estimator(*_names)(_refuse(_reason))
