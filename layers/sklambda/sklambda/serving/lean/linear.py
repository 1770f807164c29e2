"""Linear estimators of the lean runtime: scikit-learn's own expressions, in numpy.

- the decision is ``X @ coef_.T + intercept_`` (``coef_`` kept in its fitted shape and dtype,
  the input in the dtype scikit-learn's estimator received), the BLAS product scikit-learn's
  ``safe_sparse_dot`` makes on a dense matrix; after a sparse step scikit-learn multiplied a CSR
  matrix, which sums each row's products left to right, and so does ``np.add.accumulate`` here;
- binary logistic probabilities are scipy's ``expit`` (``1 / (1 + exp(-x))`` with the C library's
  ``exp``, i.e. ``math.exp``; numpy's ``exp`` can differ in the last bit), stacked as
  ``[1 - p, p]``; the one-vs-rest normalisation and the multinomial softmax are
  ``LinearClassifierMixin._predict_proba_lr`` and ``sklearn.utils.extmath.softmax`` line for line;
- ``modified_huber`` is ``SGDClassifier.predict_proba``'s clip-and-rescale;
- labels: ``decision > 0`` for one column, ``argmax`` otherwise (ties to the first class);
- input with NaN or infinity is refused, as scikit-learn's ``check_array`` refuses it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import numpy as np

from sklambda.serving.lean.base import Estimator, LeanFormatError, build_estimator, estimator, require

PROBAS = ("logistic", "softmax", "modified_huber", None)
CHUNK = 1 << 20  # products held at once by the sparse-order sum
DOUBLE = np.dtype(np.float64)  # the dtype of the scores Python floats can stand for


def linear_expit_one(v: float) -> float:
    try:
        return 1.0 / (1.0 + math.exp(-v))
    except OverflowError:  # exp(-v) beyond the largest double: the expit is 0
        return 0.0


def linear_expits(values: list[float]) -> list[float]:
    """``1 / (1 + exp(-v))`` of each float with the C library's ``exp`` (``math.exp``), as Python floats."""
    exp = math.exp
    try:
        return [1.0 / (1.0 + exp(-v)) for v in values]
    except OverflowError:
        return [linear_expit_one(v) for v in values]


def expit(x: np.ndarray) -> np.ndarray:
    """scipy.special.expit, bit for bit (any shape): ``1 / (1 + exp(-x))`` in the input's precision."""
    if x.dtype == np.float32:
        return _expit32(x)
    flat = np.array(linear_expits(x.reshape(-1).tolist()), dtype=np.float64)
    return flat.reshape(x.shape)


@functools.cache
def _expf() -> Any:
    """The C library's ``expf`` (scipy's float32 expit calls it; rounding float64 ``exp`` differs in ~3e-4 of cases)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    if name is None:
        return None
    function = ctypes.CDLL(name).expf
    function.restype, function.argtypes = ctypes.c_float, [ctypes.c_float]
    return function


def _expit32(x: np.ndarray) -> np.ndarray:
    expf = _expf()
    if expf is None:  # no libm to call: float64 exp rounded (the parity check decides)
        return expit(x.astype(np.float64)).astype(np.float32)
    exps = np.fromiter((expf(-v) for v in x.reshape(-1).tolist()), dtype=np.float32, count=x.size)
    one = np.float32(1)
    return (one / (one + exps)).reshape(x.shape)


def softmax(x: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax(copy=True)."""
    return linear_softmax_in_place(np.array(x, copy=True))


def linear_softmax_in_place(x: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax(copy=False) on a 2-D array: the reductions ``np.max`` / ``np.sum`` make
    (``maximum.reduce`` / ``add.reduce`` along the rows), called without their Python wrappers."""
    x -= np.maximum.reduce(x, axis=1, keepdims=True)
    np.exp(x, out=x)
    x /= np.add.reduce(x, axis=1, keepdims=True)
    return x


def ovr_normalised(prob: np.ndarray) -> np.ndarray:
    """The OvR normalisation of ``_predict_proba_lr`` / modified huber (all-zero rows become uniform)."""
    prob_sum = prob.sum(axis=1)
    all_zero = prob_sum == 0
    if np.count_nonzero(all_zero):
        prob[all_zero, :] = 1
        prob_sum[all_zero] = prob.shape[1]
    prob /= prob_sum.reshape(prob.shape[0], -1)
    return prob


def _input(spec: dict[str, Any]) -> tuple[np.dtype[Any], bool]:
    info = spec.get("input") or {}
    dtype = np.dtype(str(info.get("dtype", "float64")))
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise LeanFormatError(f"{spec['kind']}: input dtype {dtype} is not float64 or float32")
    return dtype, bool(info.get("sparse", False))


class _Linear:
    """``coef_`` and ``intercept_`` applied as scikit-learn applies them."""

    kind: ClassVar[str]

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        coef, intercept = require(arrays, self.kind, "coef", "intercept")
        self.coef = np.asarray(coef)  # C or Fortran order as fitted: the BLAS product sums in that order
        self.intercept = np.asarray(intercept)
        if self.coef.dtype.kind != "f" or self.coef.ndim not in (1, 2) or self.intercept.dtype.kind != "f":
            raise LeanFormatError(f"{self.kind}: coef_ must be a 1-D or 2-D float array")
        self.n_features = int(spec["n_features"])
        if self.coef.shape[-1] != self.n_features:
            raise LeanFormatError(f"{self.kind}: coef_ has {self.coef.shape[-1]} features, spec says {self.n_features}")
        outputs = 1 if self.coef.ndim == 1 else self.coef.shape[0]
        if self.intercept.ndim > 1 or self.intercept.size not in (1, outputs):
            raise LeanFormatError(f"{self.kind}: intercept_ does not match coef_")
        self.coef_t = self.coef.T
        self.in_dtype, self.sparse = _input(spec)
        # The product's dtype is the sum's too: the intercept is added into the product's own array
        # (the same addition; ``a + b`` would only allocate another array for it).
        product = np.result_type(self.in_dtype, self.coef.dtype)
        self.add_in_place = np.result_type(product, self.intercept.dtype) == product
        self.flat = self.coef.ndim == 2 and self.coef.shape[0] == 1  # (n, 1) scores read as (n,)

    def _x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"{self.kind}: expected a 2-D matrix with {self.n_features} columns, got {x.shape}")
        if np.count_nonzero(np.isfinite(x)) != x.size:  # ``not isfinite(x).all()`` without the reduction's wrapper
            raise ValueError("Input X contains NaN or infinity.")
        return np.ascontiguousarray(x, dtype=self.in_dtype)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        """``safe_sparse_dot(X, coef_.T) + intercept_`` (2-D for a 2-D coef_)."""
        x = self._x(x)
        if not self.sparse:
            if self.add_in_place:
                scores = x @ self.coef_t
                scores += self.intercept
                return scores
            return x @ self.coef_t + self.intercept
        if self.coef.ndim == 1:
            products = x * self.coef
            dot = np.add.accumulate(products, axis=1)[:, -1] if x.shape[1] else np.zeros(x.shape[0])
            return dot + self.intercept
        k = self.coef.shape[0]
        dot = np.zeros((x.shape[0], k), dtype=np.result_type(x, self.coef))
        step = max(1, CHUNK // max(1, x.shape[1] * k))
        for start in range(0, x.shape[0], step):
            block = x[start : start + step, :, None] * self.coef_t[None, :, :]
            if x.shape[1]:
                dot[start : start + step] = np.add.accumulate(block, axis=1)[:, -1, :]
        return dot + self.intercept

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
        return cls(spec, arrays)


@estimator
class LinearRegressor(_Linear):
    """LinearRegression, Ridge, Lasso, ElasticNet, SGDRegressor (one target)."""

    kind: ClassVar[str] = "linear_regressor"

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().__init__(spec, arrays)
        if self.coef.ndim == 2 and self.coef.shape[0] != 1:
            raise LeanFormatError("linear_regressor: one target only")

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._scores(x), dtype=np.float64).reshape(-1)

    @property
    def predict_proba(self) -> Any:
        raise AttributeError("a regressor has no predict_proba")


@estimator
class LinearClassifier(_Linear):
    """LogisticRegression, SGDClassifier, RidgeClassifier: ``LinearClassifierMixin`` and their probabilities."""

    kind: ClassVar[str] = "linear_classifier"

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().__init__(spec, arrays)
        classes = spec.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise LeanFormatError("linear_classifier: needs at least two classes")
        self.classes_ = np.asarray(classes)
        rows = 1 if self.coef.ndim == 1 else self.coef.shape[0]
        if rows != (1 if len(classes) == 2 else len(classes)) or (self.coef.ndim == 1 and len(classes) != 2):
            raise LeanFormatError("linear_classifier: coef_ rows do not match the classes")
        self.proba = spec.get("proba")
        if self.proba not in PROBAS:
            raise LeanFormatError(f"linear_classifier: unknown probability {self.proba!r}")

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        scores = self._scores(x)
        return scores.reshape(-1) if self.flat else scores

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = self.decision_function(x)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes_.take(indices)

    @property
    def predict_proba(self) -> Any:
        if self.proba is None:
            raise AttributeError(f"{self.kind} without probabilities (scikit-learn has no predict_proba for it)")
        return self._predict_proba

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        scores = self.decision_function(x)
        if self.proba == "softmax":
            return linear_softmax_in_place(scores)  # the scores are a new array: softmax's copy would copy it again
        if self.proba == "logistic":
            if scores.ndim == 1 and scores.dtype == DOUBLE:
                # np.stack([1 - prob, prob], axis=1) built from the Python floats: ``1 - p`` is the same
                # float64 subtraction in Python as in numpy
                pairs: list[float] = []
                for p in linear_expits(scores.tolist()):
                    pairs += (1 - p, p)
                return np.array(pairs, dtype=np.float64).reshape(-1, 2)
            prob = expit(scores)
            if prob.ndim == 1:
                return np.stack([1 - prob, prob], axis=1)
            return ovr_normalised(prob)
        # modified_huber
        if scores.ndim == 1:
            prob2 = np.ones((scores.shape[0], 2))
            prob = prob2[:, 1]
            np.clip(scores, -1, 1, prob)
            prob += 1.0
            prob /= 2.0
            prob2[:, 0] -= prob
            return prob2
        prob = np.clip(scores, -1, 1)
        prob += 1.0
        prob /= 2.0
        return ovr_normalised(prob)


@estimator
class OneVsRest:
    """OneVsRestClassifier (single-label): one binary estimator per class, ``multiclass.py`` line for line."""

    kind: ClassVar[str] = "one_vs_rest"

    def __init__(self, classes: np.ndarray, estimators: list[Estimator], thresholds: list[float]) -> None:
        self.classes_ = classes
        self.estimators = estimators
        self.threshold = thresholds[0]

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> OneVsRest:
        classes = spec.get("classes")
        subs = spec["estimators"]
        if not isinstance(classes, list) or len(classes) < 2 or not isinstance(subs, list):
            raise LeanFormatError("one_vs_rest: needs classes and estimators")
        if len(subs) != (1 if len(classes) == 2 else len(classes)):
            raise LeanFormatError("one_vs_rest: one binary estimator per class (one for two classes)")
        built = []
        for sub in subs:
            if isinstance(sub, dict) and "input" not in sub and "input" in spec:
                sub = {**sub, "input": spec["input"]}
            built.append(build_estimator(sub, arrays))
        thresholds = [0.0 if hasattr(e, "decision_function") else 0.5 for e in built]
        return cls(np.asarray(classes), built, thresholds)

    def _binary(self, e: Any, x: np.ndarray) -> np.ndarray:
        """``multiclass._predict_binary``: the decision function, else the positive class's probability."""
        if hasattr(e, "decision_function"):
            return np.ravel(e.decision_function(x))
        return np.asarray(e.predict_proba(x))[:, 1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(self.estimators) == 1:
            return self.classes_.take((self._binary(self.estimators[0], x) > self.threshold).astype(np.intp))
        n = np.asarray(x).shape[0]
        maxima = np.empty(n, dtype=float)
        maxima.fill(-np.inf)
        argmaxima = np.zeros(n, dtype=int)
        n_classes = len(self.estimators)
        for i, e in enumerate(reversed(self.estimators)):
            pred = self._binary(e, x)
            np.maximum(maxima, pred, out=maxima)
            argmaxima[maxima == pred] = n_classes - i - 1
        return self.classes_.take(argmaxima)

    @property
    def predict_proba(self) -> Any:
        if not all(hasattr(e, "predict_proba") for e in self.estimators):
            raise AttributeError("one_vs_rest: a binary estimator has no predict_proba")
        return self._predict_proba

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        y = np.array([np.asarray(e.predict_proba(x))[:, 1] for e in self.estimators]).T
        if len(self.estimators) == 1:
            y = np.concatenate(((1 - y), y), axis=1)
        row_sums = np.sum(y, axis=1)[:, np.newaxis]
        np.divide(y, row_sums, out=y, where=row_sums != 0)
        return y
