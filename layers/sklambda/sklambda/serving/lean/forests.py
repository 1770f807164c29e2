"""Tree estimators of the lean runtime: forests, single trees, gradient boosting, histogram boosting.

Each class answers exactly what its scikit-learn twin answers on the same float64 matrix, by doing
scikit-learn's arithmetic, not an approximation of it (the converters in
``sklambda.lifecycle.lean.forests`` write the arrays):

- scikit-learn's ``tree_``-based estimators (forests, decision trees, ``GradientBoosting*``) cast
  the input to float32 and compare it with float64 thresholds; each threshold is stored as the
  largest float32 ``t32 <= t``, so ``x <= t`` iff ``x <= t32`` for every float32 ``x``. They refuse
  infinite input (and NaN, unless the estimator supports missing values) as scikit-learn does.
- ``HistGradientBoosting*`` compare the float64 input with float64 thresholds (no cast), take any
  value, route NaN by each node's ``missing_go_to_left`` (which scikit-learn sets, for a feature
  that had no missing values at fit time, towards the child that saw more samples), and first map
  categorical columns to their category codes as the estimator's own ``OrdinalEncoder`` does
  (unknown values become NaN); a categorical split sends a code left if it is in the node's bitset,
  right if it is another known category, and the missing way otherwise.
- leaf values are accumulated tree by tree in scikit-learn's order, starting from the same initial
  value (zero, the ``init`` estimator's raw prediction, or the baseline), as float64 running sums.
- links are scikit-learn's expressions: the softmax of ``sklearn.utils.extmath.softmax`` in numpy,
  the logistic ``1 / (1 + exp(-x))`` with the C library's ``exp`` (``math.exp``, which is what
  scipy's ``expit`` calls; numpy's own ``exp`` can differ in the last bit), ``np.exp`` for log links.

Trees are walked level by level for every (row, tree) pair at once: a state ``s = 2 * node`` advances
through ``next[s + decision]``; leaves point to themselves, so ``depth`` steps reach every leaf.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from sklambda.serving.lean.base import LeanFormatError, estimator

_NODE_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "roots")


def _require(arrays: dict[str, np.ndarray], names: tuple[str, ...], kind: str) -> None:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise LeanFormatError(f"{kind}: missing arrays {missing}")


class _Nodes:
    """The nodes of many trees in flat arrays, walked for all (row, tree) pairs at once."""

    def __init__(self, arrays: dict[str, np.ndarray], n_features: int, dtype: type[np.floating[Any]], kind: str):
        _require(arrays, _NODE_ARRAYS, kind)
        feature = np.asarray(arrays["feature"]).astype(np.intp)
        left = np.asarray(arrays["left"]).astype(np.intp)
        right = np.asarray(arrays["right"]).astype(np.intp)
        threshold = np.asarray(arrays["threshold"])
        missing_left = np.asarray(arrays["missing_left"]).astype(bool)
        roots = np.asarray(arrays["roots"]).astype(np.intp)
        n_nodes = len(feature)
        if threshold.dtype != dtype:
            raise LeanFormatError(f"{kind}: thresholds must be {np.dtype(dtype).name}, got {threshold.dtype}")
        if not all(a.shape == (n_nodes,) for a in (left, right, threshold, missing_left)) or roots.ndim != 1:
            raise LeanFormatError(f"{kind}: inconsistent node arrays")
        for name, index in (("left", left), ("right", right), ("roots", roots)):
            if index.size and (index.min() < 0 or index.max() >= n_nodes):
                raise LeanFormatError(f"{kind}: {name} points outside the nodes")
        own = np.arange(n_nodes)
        if not np.array_equal(left == own, right == own):
            raise LeanFormatError(f"{kind}: a leaf must point to itself on both sides")
        if feature.size and (feature.min() < 0 or feature.max() >= n_features):
            raise LeanFormatError(f"{kind}: a split uses a feature outside the {n_features} input columns")
        self.n_nodes = n_nodes
        self.n_trees = len(roots)
        self.n_features = n_features
        self.depth = _depth(left, right, roots, kind)
        # Indexed by state s = 2 * node: one gather fewer per level than indexing by node.
        self.feature = np.repeat(feature, 2)
        self.threshold = np.repeat(threshold, 2)
        self.missing_left = np.repeat(missing_left, 2)
        self.next = (2 * np.stack([right, left], axis=1)).reshape(-1)  # s + (go left) -> next state
        self.roots = 2 * roots
        self.categorical: np.ndarray | None = None  # per state: a categorical split (HGB only)
        self.category_row = np.zeros(0, dtype=np.intp)
        self.category_left = np.zeros((0, 8), dtype=np.uint32)

    def set_categorical(self, is_categorical: np.ndarray, rows: np.ndarray, goes_left: np.ndarray) -> None:
        """Categorical splits: node flags, each node's bitset row and the bitsets (codes going left)."""
        if not is_categorical.any():
            return
        self.categorical = np.repeat(is_categorical, 2)
        self.category_row = np.repeat(rows, 2)
        self.category_left = goes_left

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Leaf node of every (row, tree), shape (n, n_trees); ``x`` C-contiguous in the threshold dtype."""
        n = x.shape[0]
        flat = x.reshape(-1)
        feature, threshold, nxt = self.feature, self.threshold, self.next
        with_nan = bool(np.isnan(flat).any())
        if n == 1:
            s = self.roots
            base: np.ndarray | int = 0
        else:
            s = np.tile(self.roots, n)
            base = np.repeat(np.arange(n, dtype=np.intp) * self.n_features, self.n_trees)
        for _ in range(self.depth):
            xv = flat.take(base + feature.take(s))
            go_left = xv <= threshold.take(s)
            if with_nan:
                go_left |= np.isnan(xv) & self.missing_left.take(s)
            if self.categorical is not None:
                self._categorical_decisions(s, xv, go_left)
            moved = nxt.take(s + go_left)
            if np.array_equal(moved, s):  # every (row, tree) is at its leaf already
                break
            s = moved
        return (s >> 1).reshape(n, self.n_trees)

    def _categorical_decisions(self, s: np.ndarray, xv: np.ndarray, go_left: np.ndarray) -> None:
        assert self.categorical is not None
        at = np.flatnonzero(self.categorical.take(s))
        if not at.size:
            return
        value = xv[at]
        state = s[at]
        # Codes are whole numbers in [0, 255] or NaN (unknown or missing): see _encode_categories.
        known = ~np.isnan(value)
        code = np.where(known, value, 0.0).astype(np.intp)
        word = self.category_left[self.category_row.take(state), code >> 5]
        bit = ((word >> (code & 31).astype(np.uint32)) & 1).astype(bool)
        go_left[at] = np.where(known, bit, self.missing_left.take(state))


def _depth(left: np.ndarray, right: np.ndarray, roots: np.ndarray, kind: str) -> int:
    """Levels from the roots to the deepest leaf (a leaf is a node whose children are itself)."""
    frontier = roots
    depth = 0
    while True:
        inner = frontier[left.take(frontier) != frontier]
        if not inner.size:
            return depth
        depth += 1
        if depth > len(left):
            raise LeanFormatError(f"{kind}: the node arrays contain a cycle")
        frontier = np.unique(np.concatenate([left.take(inner), right.take(inner)]))  # bounded by n_nodes


def _classes(spec: dict[str, Any], kind: str) -> np.ndarray:
    classes = spec.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise LeanFormatError(f"{kind}: a classifier needs at least two classes")
    return np.asarray(classes)


def _float32_input(x: np.ndarray, n_features: int, allow_nan: bool) -> np.ndarray:
    """The matrix as scikit-learn's trees see it: float32 (C order), refused where scikit-learn refuses it."""
    x = _checked(x, n_features)
    with np.errstate(over="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x32).all():
        infinite = bool(np.isinf(x32).any())
        if infinite or not allow_nan:
            what = "infinity or a value too large for dtype('float32')" if infinite else "NaN"
            raise ValueError(f"Input contains {what}.")
    return x32


def _checked(x: np.ndarray, n_features: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"expected a 2-D matrix with {n_features} columns, got shape {x.shape}")
    return x


def _running_sum(start: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``start + values[:, 0] + values[:, 1] + ...`` left to right (np.sum may add pairwise).

    ``start`` (k,) or (n, k); ``values`` (n, n_trees, k). Returns (n, k) float64.
    """
    n, _, k = values.shape
    stacked = np.concatenate([np.broadcast_to(start, (n, 1, k)), values], axis=1)
    return np.add.accumulate(stacked, axis=1)[:, -1, :]


def _expit(raw: np.ndarray) -> np.ndarray:
    """scipy.special.expit bit for bit: 1 / (1 + exp(-x)) with the C library's exp."""
    exp = math.exp

    def one(v: float) -> float:
        try:
            return 1.0 / (1.0 + exp(-v))
        except OverflowError:
            return 0.0

    return np.fromiter((one(v) for v in raw.tolist()), dtype=np.float64, count=raw.shape[0])


def _softmax(raw: np.ndarray) -> np.ndarray:
    """sklearn.utils.extmath.softmax: the same numpy operations in the same order."""
    out = np.array(raw, dtype=np.float64, copy=True)
    out -= np.max(out, axis=1).reshape((-1, 1))
    np.exp(out, out=out)
    out /= np.sum(out, axis=1).reshape((-1, 1))
    return out


LINKS = ("identity", "log", "logit", "half_logit", "softmax")


def _binary_proba(p1: np.ndarray) -> np.ndarray:
    proba = np.empty((p1.shape[0], 2), dtype=np.float64)
    proba[:, 1] = p1
    proba[:, 0] = 1 - proba[:, 1]
    return proba


def _proba_from_raw(raw: np.ndarray, link: str) -> np.ndarray:
    """The loss's ``predict_proba`` on raw predictions (n, k)."""
    if link == "softmax":
        return _softmax(raw)
    if link == "logit":
        return _binary_proba(_expit(raw[:, 0]))
    if link == "half_logit":
        return _binary_proba(_expit(2 * raw[:, 0]))
    raise LeanFormatError(f"link {link!r} gives no probabilities")


# ----------------------------------------------------------------------------- forests and trees
class _ForestBase:
    """Leaf values averaged over trees, as ``ForestClassifier.predict_proba`` / ``ForestRegressor.predict``."""

    kind: ClassVar[str]
    is_classifier: ClassVar[bool]

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_features = int(spec["n_features"])
        # Trees take NaN only from a dense matrix: after a sparse step scikit-learn refuses it.
        sparse = bool((spec.get("input") or {}).get("sparse", False))
        self.allow_nan = bool(spec.get("allow_nan", False)) and not sparse
        self.nodes = _Nodes(arrays, self.n_features, np.float32, self.kind)
        _require(arrays, ("value",), self.kind)
        value = np.ascontiguousarray(arrays["value"], dtype=np.float64)
        if value.ndim != 2 or value.shape[0] != self.nodes.n_nodes:
            raise LeanFormatError(f"{self.kind}: value must be (n_nodes, n_outputs)")
        self.value = value
        if self.is_classifier:
            self.classes = self.classes_ = _classes(spec, self.kind)
            if value.shape[1] != len(self.classes):
                raise LeanFormatError(
                    f"{self.kind}: {value.shape[1]} leaf values per node for {len(self.classes)} classes"
                )
        elif value.shape[1] != 1:
            raise LeanFormatError(f"{self.kind}: a regressor has one value per leaf")

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> _ForestBase:
        return cls(spec, arrays)

    def _mean(self, x: np.ndarray) -> np.ndarray:
        x32 = _float32_input(x, self.n_features, self.allow_nan)
        leaves = self.nodes.leaves(x32)
        values = self.value.take(leaves, axis=0)  # (n, n_trees, k)
        total = _running_sum(np.zeros(values.shape[2]), values)
        total /= self.nodes.n_trees
        return total

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not self.is_classifier:
            raise AttributeError(f"{self.kind} has no predict_proba")
        return self._mean(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        mean = self._mean(x)
        if self.is_classifier:
            return self.classes.take(np.argmax(mean, axis=1))
        return mean[:, 0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.nodes.n_trees} trees, depth {self.nodes.depth}, {self.nodes.n_nodes:,} nodes)"
        )


@estimator
class ForestClassifier(_ForestBase):
    """RandomForestClassifier / ExtraTreesClassifier."""

    kind = "forest_classifier"
    is_classifier = True


@estimator
class ForestRegressor(_ForestBase):
    """RandomForestRegressor / ExtraTreesRegressor."""

    kind = "forest_regressor"
    is_classifier = False


@estimator
class TreeClassifier(_ForestBase):
    """DecisionTreeClassifier / ExtraTreeClassifier: the leaf's class fractions (a forest of one, exactly)."""

    kind = "tree_classifier"
    is_classifier = True


@estimator
class TreeRegressor(_ForestBase):
    """DecisionTreeRegressor / ExtraTreeRegressor."""

    kind = "tree_regressor"
    is_classifier = False


# ----------------------------------------------------------------------------- boosting
class _BoostingBase:
    """Raw predictions = start + tree values, iteration by iteration, then the loss's link."""

    kind: ClassVar[str]
    is_classifier: ClassVar[bool]
    threshold_dtype: ClassVar[type[np.floating[Any]]]
    start_array: ClassVar[str]

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.n_features = int(spec["n_features"])
        self.per_iteration = int(spec["trees_per_iteration"])
        self.link = str(spec["link"])
        if self.link not in LINKS:
            raise LeanFormatError(f"{self.kind}: unknown link {self.link!r}")
        self.nodes = _Nodes(arrays, self.n_features, self.threshold_dtype, self.kind)
        _require(arrays, ("value", self.start_array), self.kind)
        value = np.ascontiguousarray(arrays["value"], dtype=np.float64)
        start = np.ascontiguousarray(arrays[self.start_array], dtype=np.float64).reshape(-1)
        if value.shape != (self.nodes.n_nodes,):
            raise LeanFormatError(f"{self.kind}: value must hold one number per node")
        if self.per_iteration < 1 or self.nodes.n_trees % self.per_iteration or start.shape != (self.per_iteration,):
            raise LeanFormatError(
                f"{self.kind}: trees and initial values do not match {self.per_iteration} per iteration"
            )
        self.value = value
        self.start = start
        self.n_iterations = self.nodes.n_trees // self.per_iteration
        if self.is_classifier:
            self.classes = self.classes_ = _classes(spec, self.kind)
            expected = 1 if len(self.classes) == 2 else len(self.classes)
            if self.per_iteration != expected or (self.link == "softmax") != (expected > 1):
                raise LeanFormatError(
                    f"{self.kind}: {self.per_iteration} trees per iteration for {len(self.classes)} classes"
                )
            if self.link not in ("logit", "half_logit", "softmax"):
                raise LeanFormatError(f"{self.kind}: a classifier needs a probability link, not {self.link!r}")
        elif self.per_iteration != 1 or self.link not in ("identity", "log"):
            raise LeanFormatError(f"{self.kind}: a regressor has one tree per iteration and an identity or log link")

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> _BoostingBase:
        return cls(spec, arrays)

    def _input(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """The (n, trees_per_iteration) raw predictions (scikit-learn's ``_raw_predict``)."""
        leaves = self.nodes.leaves(self._input(x))
        values = self.value.take(leaves).reshape(leaves.shape[0], self.n_iterations, self.per_iteration)
        return _running_sum(self.start, values)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not self.is_classifier:
            raise AttributeError(f"{self.kind} has no predict_proba")
        return _proba_from_raw(self.raw_predict(x), self.link)

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.raw_predict(x)
        if not self.is_classifier:
            return np.exp(raw[:, 0]) if self.link == "log" else raw[:, 0]
        if raw.shape[1] == 1:
            return self.classes.take(self._positive(raw[:, 0]).astype(np.intp))
        return self.classes.take(np.argmax(raw, axis=1))

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.n_iterations} iterations x {self.per_iteration}, "
            f"depth {self.nodes.depth}, {self.nodes.n_nodes:,} nodes, link {self.link})"
        )


class _GradientBoosting(_BoostingBase):
    """GradientBoosting*: float32 trees, leaf values already scaled by the learning rate, an ``init`` start."""

    threshold_dtype = np.float32
    start_array = "init"

    def _input(self, x: np.ndarray) -> np.ndarray:
        return _float32_input(x, self.n_features, allow_nan=False)

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        return raw >= 0  # GradientBoostingClassifier.predict: a raw prediction of 0 is the positive class


@estimator
class GradientBoostingClassifier(_GradientBoosting):
    kind = "gradient_boosting_classifier"
    is_classifier = True


@estimator
class GradientBoostingRegressor(_GradientBoosting):
    kind = "gradient_boosting_regressor"
    is_classifier = False


class _HistGradientBoosting(_BoostingBase):
    """HistGradientBoosting*: float64 thresholds, NaN routing, categorical splits, a baseline start."""

    threshold_dtype = np.float64
    start_array = "baseline"

    def __init__(self, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super().__init__(spec, arrays)
        self.categorical_columns = [int(c) for c in spec.get("categorical_columns", [])]
        self.categories: list[np.ndarray] = []
        for column in self.categorical_columns:
            if not 0 <= column < self.n_features:
                raise LeanFormatError(f"{self.kind}: categorical column {column} is outside the input")
            name = f"categories_{column}"
            _require(arrays, (name,), self.kind)
            categories = np.asarray(arrays[name], dtype=np.float64)
            if categories.ndim != 1 or len(categories) > 256 or np.isnan(categories).any():
                raise LeanFormatError(f"{self.kind}: {name} must be at most 256 known, non-missing values")
            if (np.diff(categories) <= 0).any():
                raise LeanFormatError(f"{self.kind}: {name} must be sorted and distinct")
            self.categories.append(categories)
        if "is_categorical" in arrays:
            _require(arrays, ("bitset_row", "left_bitsets", "known_bitsets"), self.kind)
            self.nodes.set_categorical(*self._category_tables(arrays))

    def _category_tables(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per categorical node: codes going left (in the node's bitset, or unknown and missing goes left)."""
        n_nodes = self.nodes.n_nodes
        is_categorical = np.asarray(arrays["is_categorical"]).astype(bool)
        rows = np.asarray(arrays["bitset_row"]).astype(np.intp)
        left_bits = np.asarray(arrays["left_bitsets"], dtype=np.uint32)
        known_bits = np.asarray(arrays["known_bitsets"], dtype=np.uint32)
        if is_categorical.shape != (n_nodes,) or rows.shape != (n_nodes,):
            raise LeanFormatError(f"{self.kind}: categorical node arrays do not match the nodes")
        if left_bits.ndim != 2 or left_bits.shape[1] != 8 or known_bits.shape != (self.n_features, 8):
            raise LeanFormatError(f"{self.kind}: category bitsets must be 256-bit rows")
        if is_categorical.any():
            used = rows[is_categorical]
            if used.min() < 0 or used.max() >= len(left_bits):
                raise LeanFormatError(f"{self.kind}: a categorical node points outside the bitsets")
            features = self.nodes.feature[0::2][is_categorical]
            if not set(features.tolist()) <= set(self.categorical_columns):
                raise LeanFormatError(f"{self.kind}: a categorical split on a column without categories")
        # Resolved per node: the node's own bitset, plus every unknown code when missing goes left.
        node_known = known_bits[self.nodes.feature[0::2]]  # (n_nodes, 8)
        missing_left = self.nodes.missing_left[0::2]
        resolved = (
            left_bits[rows.clip(0, max(len(left_bits) - 1, 0))] if len(left_bits) else np.zeros((n_nodes, 8), np.uint32)
        )
        resolved = resolved | np.where(missing_left[:, None], ~node_known, np.uint32(0))
        return is_categorical, np.arange(n_nodes, dtype=np.intp), resolved.astype(np.uint32)

    def _input(self, x: np.ndarray) -> np.ndarray:
        x = _checked(x, self.n_features)
        if not self.categorical_columns:
            return np.ascontiguousarray(x)
        if np.isinf(x[:, self.categorical_columns]).any():
            # The estimator's OrdinalEncoder validates its columns with ensure_all_finite='allow-nan'.
            raise ValueError("Input contains infinity or a value too large for dtype('float64').")
        x = np.array(x, dtype=np.float64, order="C", copy=True)
        for column, categories in zip(self.categorical_columns, self.categories, strict=True):
            x[:, column] = _encode_categories(x[:, column], categories)
        return x

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        return raw > 0  # HistGradientBoostingClassifier.predict: a raw prediction of 0 is the negative class


def _encode_categories(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """OrdinalEncoder(handle_unknown='use_encoded_value', unknown_value=nan): value -> its index, else NaN."""
    if not len(categories):
        return np.full(values.shape, np.nan)
    at = np.searchsorted(categories, values).clip(0, len(categories) - 1)
    return np.where(categories.take(at) == values, at.astype(np.float64), np.nan)


@estimator
class HistGradientBoostingClassifier(_HistGradientBoosting):
    kind = "hist_gradient_boosting_classifier"
    is_classifier = True


@estimator
class HistGradientBoostingRegressor(_HistGradientBoosting):
    kind = "hist_gradient_boosting_regressor"
    is_classifier = False
