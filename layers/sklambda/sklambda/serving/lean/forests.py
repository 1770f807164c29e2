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

One row (what the service scores per request; a (1, n) float64 ndarray) has paths of its own, since
numpy's per-call overhead dominates there (see ``_OneRow``; ``use_one_row_mode`` forces one): a walk
of plain Python lists, ``node = left[node] if x[feature[node]] <= threshold[node] else right[node]``
(single trees and small ensembles), or every internal node's decision in a few numpy calls, then a
gather per level over the roots (boosting); one row of a big forest of deep trees still takes the
level-by-level walk. A cost model fitted on timings picks per model. The arithmetic is the same bits:
the row is cast by ``array('f')`` (C's float cast, as numpy's), whose values as Python floats compare
with the float32 thresholds as Python floats exactly as in float32; NaN takes the node's missing way,
a category code its bitset; leaf values are added one by one in tree order from the same start
(Python's ``+=`` is IEEE addition, as ``add.accumulate``), a forest's sum divided by the trees after;
the links are the same functions (``math.exp`` in the logistic, numpy's ``exp`` and ``add.reduce`` on
the same (1, k) array in the softmax, numpy's ``exp`` for log links). A row the vectorised path
refuses (infinite after the cast, NaN where not allowed, an infinite category) is handed to it, so
it raises the same error.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, ClassVar

import numpy as np

from sklambda.serving.lean.base import LeanFormatError, estimator

_NODE_ARRAYS = ("feature", "threshold", "left", "right", "missing_left", "roots")
_FLOAT64 = np.dtype(np.float64)
ONE_ROW_MODES = ("python", "nodes", "levels")


def _require(arrays: dict[str, np.ndarray], names: tuple[str, ...], kind: str) -> None:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise LeanFormatError(f"{kind}: missing arrays {missing}")


class _Nodes:
    """The nodes of many trees in flat arrays, walked for all (row, tree) pairs at once (one row: _OneRow)."""

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
        self.depth, mean_leaf_depth = _depth(left, right, roots, kind)
        self.n_inner = int(np.count_nonzero(left != own))
        self.visits = self.n_trees * mean_leaf_depth  # nodes one row is expected to visit
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


def _depth(left: np.ndarray, right: np.ndarray, roots: np.ndarray, kind: str) -> tuple[int, float]:
    """Levels from the roots to the deepest leaf (a leaf's children are itself), and the leaves' mean depth."""
    frontier = roots
    depth = 0
    leaves = leaf_depths = 0
    while True:
        inner = frontier[left.take(frontier) != frontier]
        leaves += frontier.size - inner.size
        leaf_depths += depth * (frontier.size - inner.size)
        if not inner.size:
            return depth, leaf_depths / max(leaves, 1)
        depth += 1
        if depth > len(left):
            raise LeanFormatError(f"{kind}: the node arrays contain a cycle")
        frontier = np.unique(np.concatenate([left.take(inner), right.take(inner)]))  # bounded by n_nodes


# ----------------------------------------------------------------------------- one row
# The service scores one row per request, and there the level-by-level walk is mostly numpy call
# overhead (half a dozen calls per level, then the sums). _OneRow walks the same trees for one row and
# answers the same bits: the same comparisons (float32 values with float32 thresholds, or float64
# with float64), the same NaN routing and category bitsets, the same left-to-right float64 sums.
# Three ways, chosen per model by _one_row_mode:
#
# - "python": plain Python lists of the internal nodes (feature, threshold as a Python float,
#   children, a child that is a leaf stored as ~leaf), the row as a list of Python floats,
#   ``node = left[node] if x[feature[node]] <= threshold[node] else right[node]``: no numpy call,
#   about 60 ns per node visited. For a single tree or a few dozen; 160 bytes per internal node,
#   so never past _PYTHON_MAX_INNER.
# - "nodes": numpy, the decision of every internal node at once (a gather, a compare, a ``where``:
#   about 6.5 ns per internal node), then ``depth`` gathers over the roots (or pointer doubling over all
#   nodes, when cheaper), a gather of leaf values and one ``add.accumulate``: for boosting.
# - "levels": the vectorised walk of _Nodes.leaves, whose cost grows with depth x trees, not with
#   the nodes: one row of a big forest of deep trees (past the "python" memory cap).
#
# Cost model in microseconds: a least-squares fit (relative error) of one-row ``predict`` timings, the
# better of two runs, of 60 models (decision trees, random forests of 2-300 trees, gradient boosting
# of 5-1000, histogram boosting of 5-300 trees; depth 2-45, 7 to 950,000 internal nodes) on a shared
# 2-core x86 box, Python 3.11, numpy 2.4. Median error 15%; it picks the fastest way, or one within
# 16% of it, for all but the one the memory cap excludes (100 unlimited trees, 316,000 internal nodes:
# python 149 us, levels 330). Some of them (python / nodes / levels, us): a tree of depth 36,
# 5.6 / 46 / 162; 10 trees of depth 10, 7.7 / 35 / 64; GB 100 trees of depth 3, 20 / 11 / 31; HGB 300
# trees of 4 leaves, 43 / 12 / 34; 300 trees of depth 10 (128,000 internal nodes), 319 / 981 / 109.
_PYTHON_COST = (3.0, 0.059, 0.022)  # fixed + per node visited (trees x leaves' mean depth) + per class past one
_NODES_COST = (8.0, 0.0065, 0.2)  # fixed + per internal node + per level
_LEVELS_COST = (18.5, 4.3, 0.008)  # fixed + per level + per tree and level
_GATHER_COST = (0.45, 0.0012)  # one gather in "nodes": fixed + per element (level by level, or doubling)
_PYTHON_MAX_INNER = 100_000  # internal nodes: about 16 MB of Python lists


def _one_row_mode(nodes: _Nodes, width: int = 1) -> str:
    """The cheapest way to walk one row through ``nodes`` (``width`` values per leaf) by the cost model above."""
    if not nodes.n_trees:
        return "levels"
    costs = {
        "nodes": _NODES_COST[0] + _NODES_COST[1] * nodes.n_inner + _NODES_COST[2] * nodes.depth,
        "levels": _LEVELS_COST[0] + nodes.depth * (_LEVELS_COST[1] + _LEVELS_COST[2] * nodes.n_trees),
    }
    if nodes.n_inner <= _PYTHON_MAX_INNER:
        fixed, per_visit, per_class = _PYTHON_COST
        costs["python"] = fixed + per_visit * nodes.visits + per_class * nodes.n_trees * (width - 1)
    return min(costs, key=costs.__getitem__)


def _walk_costs(nodes: _Nodes) -> tuple[float, float]:
    """From the roots to the leaves once every node's next node is known: level by level, or by doubling."""
    gather, per_element = _GATHER_COST
    levels = nodes.depth * (gather + per_element * nodes.n_trees)
    doubling = _doublings(nodes.depth) * (gather + per_element * nodes.n_nodes) + gather + per_element * nodes.n_trees
    return levels, doubling


def _doublings(depth: int) -> int:
    """Pointer doublings (``next = next[next]``) that reach ``depth`` levels: ceil(log2(depth))."""
    return max(depth - 1, 0).bit_length()


class _OneRow:
    """One row through every tree of a _Nodes, summed as ``_running_sum`` sums (see the comment above).

    ``value`` is (n_nodes, width) float64, ``start`` the per_iteration * width initial values; trees
    are iteration-major (tree ``i * per_iteration + j`` adds to outputs ``j * width ...``), as in
    _BoostingBase; a forest is one tree per iteration, ``width`` values per leaf.
    """

    def __init__(self, nodes: _Nodes, value: np.ndarray, start: np.ndarray, per_iteration: int, mode: str) -> None:
        if mode not in ("python", "nodes"):
            raise ValueError(f"no one-row walker for mode {mode!r}")
        self.python = mode == "python"
        feature = nodes.feature[0::2]
        threshold = nodes.threshold[0::2]
        missing_left = nodes.missing_left[0::2]
        right = nodes.next[0::2] >> 1
        left = nodes.next[1::2] >> 1
        n_nodes = nodes.n_nodes
        is_inner = left != np.arange(n_nodes)
        inner = np.flatnonzero(is_inner)
        leaf = np.flatnonzero(~is_inner)
        n_inner = len(inner)
        # Internal nodes first (0 .. n_inner - 1), then the leaves.
        renumber = np.empty(n_nodes, dtype=np.intp)
        renumber[inner] = np.arange(n_inner)
        renumber[leaf] = np.arange(n_inner, n_nodes)
        roots = nodes.roots >> 1
        width = value.shape[1]
        self.width = width
        self.per_iteration = per_iteration
        self.start = start.tolist()
        categorical = nodes.categorical[0::2] if nodes.categorical is not None else None
        if self.python:
            # A child that is a leaf: ~(its leaf index), so the walk stops at a negative node.
            code = np.where(is_inner, renumber, ~(renumber - n_inner))
            self.feature = feature[inner].tolist()
            self.threshold = threshold[inner].tolist()  # float32 or float64, exactly, as Python floats
            self.left = code[left[inner]].tolist()
            self.right = code[right[inner]].tolist()
            self.nan_child = [  # where NaN goes: the same int objects as left / right
                go_left if to_left else go_right
                for go_left, go_right, to_left in zip(self.left, self.right, missing_left[inner].tolist(), strict=True)
            ]
            self.bits: list[int | None] | None = None
            if categorical is not None:
                # The node's 256-bit set of codes going left, as one Python int (word w holds codes 32w..32w+31).
                words = nodes.category_left[nodes.category_row[0::2][inner]].tolist()
                self.bits = [
                    sum(w << (32 * i) for i, w in enumerate(row)) if flag else None
                    for row, flag in zip(words, categorical[inner].tolist(), strict=True)
                ]
            leaf_values = value[leaf]
            self.leaf_columns = [leaf_values[:, c].tolist() for c in range(width)]
            self.roots = code[roots].tolist()
            return
        self.dtype = nodes.threshold.dtype
        self.inner_feature = feature[inner]
        self.inner_threshold = threshold[inner]
        self.inner_missing_left = missing_left[inner]
        self.inner_left = renumber[left[inner]]
        self.inner_right = renumber[right[inner]]
        # After the leaves, one more leaf per output slot holding its start value, walked as a tree of
        # iteration -1: the gathered values then start with the start values and one add.accumulate sums.
        starts = np.arange(n_nodes, n_nodes + per_iteration, dtype=np.intp)
        self.leaf_self = np.arange(n_inner, n_nodes + per_iteration, dtype=np.intp)
        self.tree_roots = np.concatenate([starts, renumber[roots]])
        renumbered = np.concatenate([value[inner], value[leaf], start.reshape(per_iteration, width)])
        self.value = renumbered.reshape(-1) if width == 1 else renumbered
        self.n_rows = nodes.n_trees // per_iteration + 1
        self.depth = nodes.depth
        levels, doubling = _walk_costs(nodes)
        self.doublings = _doublings(nodes.depth) if doubling < levels else 0
        self.category_nodes: np.ndarray | None = None
        if categorical is not None and categorical[inner].any():
            # Per categorical node: 257 decisions, codes 0..255 from its bitset, then the missing way.
            at = np.flatnonzero(categorical[inner])
            rows = nodes.category_left[nodes.category_row[0::2][inner[at]]]  # (n_categorical, 8) uint32
            bits = (rows[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
            table = np.concatenate([bits.reshape(len(at), 256).astype(bool), missing_left[inner[at]][:, None]], axis=1)
            self.category_nodes = at
            self.category_table = table.reshape(-1)
            self.category_base = np.arange(len(at), dtype=np.intp) * 257

    def totals(self, x: list[float], has_nan: bool, packed: array | None = None) -> list[float]:
        """The per-output sums ``start + leaf values`` for one row ``x`` (Python floats, already cast/encoded).

        ``has_nan`` must be true if ``x`` holds a NaN (it may be true otherwise); ``packed`` is ``x`` as
        an ``array('f')`` for float32 trees (saves a conversion in numpy).
        """
        if not self.python:
            return self._totals_in_numpy(x, has_nan, packed)
        leaves = self._leaves(x, has_nan)
        step = self.per_iteration
        if step == 1 and self.width == 1:
            total = self.start[0]
            column = self.leaf_columns[0]
            for leaf in leaves:
                total += column[leaf]
            return [total]
        out: list[float] = []
        slot = 0
        for j in range(step):
            mine = leaves[j::step] if step > 1 else leaves
            for column in self.leaf_columns:
                total = self.start[slot]
                for leaf in mine:
                    total += column[leaf]
                out.append(total)
                slot += 1
        return out

    def _leaves(self, x: list[float], has_nan: bool) -> list[int]:
        """The leaf index of every tree, in tree order (Python lists; see the comment above)."""
        feature, threshold, left, right = self.feature, self.threshold, self.left, self.right
        leaves: list[int] = []
        if self.bits is not None:
            nan_child, bits = self.nan_child, self.bits
            for node in self.roots:
                while node >= 0:
                    v = x[feature[node]]
                    word = bits[node]
                    if word is None:
                        if v <= threshold[node]:
                            node = left[node]
                        elif v != v:
                            node = nan_child[node]
                        else:
                            node = right[node]
                    elif v != v:  # a missing or unknown category
                        node = nan_child[node]
                    elif (word >> int(v)) & 1:
                        node = left[node]
                    else:
                        node = right[node]
                leaves.append(~node)
        elif has_nan:
            nan_child = self.nan_child
            for node in self.roots:
                while node >= 0:
                    v = x[feature[node]]
                    if v <= threshold[node]:
                        node = left[node]
                    elif v != v:
                        node = nan_child[node]
                    else:
                        node = right[node]
                leaves.append(~node)
        else:
            for node in self.roots:
                while node >= 0:
                    node = left[node] if x[feature[node]] <= threshold[node] else right[node]
                leaves.append(~node)
        return leaves

    def _totals_in_numpy(self, x: list[float], has_nan: bool, packed: array | None) -> list[float]:
        row = np.frombuffer(packed, dtype=np.float32) if packed is not None else np.array(x, dtype=self.dtype)
        xv = row.take(self.inner_feature)
        go_left = xv <= self.inner_threshold
        if has_nan:
            go_left |= np.isnan(xv) & self.inner_missing_left
        if self.category_nodes is not None:
            codes = xv.take(self.category_nodes)
            if has_nan:
                codes = np.where(np.isnan(codes), 256.0, codes)
            go_left[self.category_nodes] = self.category_table.take(self.category_base + codes.astype(np.intp))
        nxt = np.concatenate([np.where(go_left, self.inner_left, self.inner_right), self.leaf_self])
        if self.doublings:
            for _ in range(self.doublings):
                nxt = nxt.take(nxt)
            at = nxt.take(self.tree_roots)
        else:
            at = self.tree_roots
            for _ in range(self.depth):
                at = nxt.take(at)
        values = self.value.take(at, axis=0).reshape(self.n_rows, -1)
        return np.add.accumulate(values, axis=0)[-1].tolist()


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
    return np.fromiter((_expit_one(v) for v in raw.tolist()), dtype=np.float64, count=raw.shape[0])


def _expit_one(v: float) -> float:
    try:
        return 1.0 / (1.0 + math.exp(-v))
    except OverflowError:
        return 0.0


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


def _proba_from_raw_one(raw: list[float], link: str) -> np.ndarray:
    """``_proba_from_raw`` on one row of raw predictions, the same arithmetic (and the same numpy softmax)."""
    if link == "softmax":
        return _softmax_one(raw)
    if link == "logit":
        p1 = _expit_one(raw[0])
    elif link == "half_logit":
        p1 = _expit_one(2 * raw[0])
    else:
        raise LeanFormatError(f"link {link!r} gives no probabilities")
    return np.array([[1 - p1, p1]])


def _softmax_one(raw: list[float]) -> np.ndarray:
    """``_softmax`` of one row: the max and the subtraction in Python (the same IEEE operations), then
    numpy's exp and sum (``np.sum`` is ``np.add.reduce``) on the same C-ordered (1, k) array."""
    total = sum(raw)
    if total != total:  # a NaN (or inf - inf): numpy's max propagates NaN, Python's does not
        return _softmax(np.array([raw]))
    top = max(raw)
    out = np.array([[v - top for v in raw]])
    np.exp(out, out=out)
    out /= np.add.reduce(out, axis=1).reshape((-1, 1))
    return out


def _first_max(values: list[float]) -> int:
    """``np.argmax``: the first largest value (the first NaN, if any)."""
    total = sum(values)
    if total != total:  # a NaN (or inf - inf): numpy's rules
        return int(np.argmax(values))
    return values.index(max(values))


def _float32_row(x: np.ndarray, allow_nan: bool) -> tuple[list[float], bool, array] | None:
    """One row (a (1, n) float64 matrix) as ``_float32_input`` casts it: (values, has NaN, the array('f')).

    None where ``_float32_input`` raises (infinite after the cast, or NaN not allowed): its caller
    then takes the vectorised path, which raises the same error.
    """
    try:
        packed = array("f", x.tolist()[0])  # C's (float) cast, as numpy's astype: the same float32
    except OverflowError:  # an array('f') that checks its range: numpy's cast gives inf
        return None
    values = packed.tolist()  # doubles exactly equal to the float32 values
    total = sum(values)  # float32 values cannot overflow a double sum: non-finite iff inf or NaN
    if total - total == 0.0:
        return values, False, packed
    if not allow_nan or math.inf in values or -math.inf in values:
        return None
    return values, True, packed


def _proba_from_raw(raw: np.ndarray, link: str) -> np.ndarray:
    """The loss's ``predict_proba`` on raw predictions (n, k)."""
    if link == "softmax":
        return _softmax(raw)
    if link == "logit":
        return _binary_proba(_expit(raw[:, 0]))
    if link == "half_logit":
        return _binary_proba(_expit(2 * raw[:, 0]))
    raise LeanFormatError(f"link {link!r} gives no probabilities")


# ----------------------------------------------------------------------------- estimators
class _OneRowPath:
    """What the tree estimators share for one row: when to take it, and its walker, built on first use."""

    nodes: _Nodes
    n_features: int

    def _init_one_row(self, width: int) -> None:
        self.one_row_mode: str | None = None  # None: by _one_row_mode's cost model
        self._leaf_width = width
        self._one_shape = (1, self.n_features)
        self._walker: _OneRow | None = None
        self._walker_ready = False

    def use_one_row_mode(self, mode: str | None) -> None:
        """Score one row the ``"python"`` or ``"nodes"`` way, or by the vectorised path (``"levels"``); None: choose."""
        if mode is not None and mode not in ONE_ROW_MODES:
            raise ValueError(f"one-row mode must be one of {ONE_ROW_MODES} or None, not {mode!r}")
        self.one_row_mode = mode
        self._walker = None
        self._walker_ready = False

    def _walker_for(self, x: Any) -> _OneRow | None:
        """The one-row walker if ``x`` is one float64 row and the model has one; None: the vectorised path."""
        if type(x) is not np.ndarray or x.shape != self._one_shape or x.dtype != _FLOAT64:
            return None
        if not self._walker_ready:
            mode = self.one_row_mode or _one_row_mode(self.nodes, self._leaf_width)
            self._walker = None if mode == "levels" else self._make_walker(mode)
            self._walker_ready = True
        return self._walker

    def _make_walker(self, mode: str) -> _OneRow:
        raise NotImplementedError


# ----------------------------------------------------------------------------- forests and trees
class _ForestBase(_OneRowPath):
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
        self._init_one_row(value.shape[1])

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> _ForestBase:
        return cls(spec, arrays)

    def _make_walker(self, mode: str) -> _OneRow:
        return _OneRow(self.nodes, self.value, np.zeros(self.value.shape[1]), 1, mode)

    def _mean_one(self, x: np.ndarray) -> list[float] | None:
        """``_mean`` of one row as Python floats, or None: take the vectorised path."""
        walker = self._walker_for(x)
        if walker is None:
            return None
        row = _float32_row(x, self.allow_nan)
        if row is None:
            return None
        n_trees = self.nodes.n_trees
        return [total / n_trees for total in walker.totals(*row)]

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
        one = self._mean_one(x)
        if one is not None:
            return np.array([one])
        return self._mean(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        one = self._mean_one(x)
        if one is not None:
            if self.is_classifier:
                at = _first_max(one)
                return self.classes[at : at + 1].copy()
            return np.array(one)
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
class _BoostingBase(_OneRowPath):
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
        self._init_one_row(1)

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> _BoostingBase:
        return cls(spec, arrays)

    def _input(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _row(self, x: np.ndarray) -> tuple[list[float], bool, array | None] | None:
        """One row as ``_input`` makes it, for ``_OneRow.totals``; None where ``_input`` raises."""
        raise NotImplementedError

    def _make_walker(self, mode: str) -> _OneRow:
        return _OneRow(self.nodes, self.value.reshape(-1, 1), self.start, self.per_iteration, mode)

    def _raw_one(self, x: np.ndarray) -> list[float] | None:
        """``raw_predict`` of one row as Python floats, or None: take the vectorised path."""
        walker = self._walker_for(x)
        if walker is None:
            return None
        row = self._row(x)
        if row is None:
            return None
        return walker.totals(*row)

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """The (n, trees_per_iteration) raw predictions (scikit-learn's ``_raw_predict``)."""
        leaves = self.nodes.leaves(self._input(x))
        values = self.value.take(leaves).reshape(leaves.shape[0], self.n_iterations, self.per_iteration)
        return _running_sum(self.start, values)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if not self.is_classifier:
            raise AttributeError(f"{self.kind} has no predict_proba")
        one = self._raw_one(x)
        if one is not None:
            return _proba_from_raw_one(one, self.link)
        return _proba_from_raw(self.raw_predict(x), self.link)

    def predict(self, x: np.ndarray) -> np.ndarray:
        one = self._raw_one(x)
        if one is not None:
            if not self.is_classifier:
                value = np.array(one)
                return np.exp(value) if self.link == "log" else value
            at = (1 if self._positive_one(one[0]) else 0) if len(one) == 1 else _first_max(one)
            return self.classes[at : at + 1].copy()
        raw = self.raw_predict(x)
        if not self.is_classifier:
            return np.exp(raw[:, 0]) if self.link == "log" else raw[:, 0]
        if raw.shape[1] == 1:
            return self.classes.take(self._positive(raw[:, 0]).astype(np.intp))
        return self.classes.take(np.argmax(raw, axis=1))

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _positive_one(raw: float) -> bool:
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

    def _row(self, x: np.ndarray) -> tuple[list[float], bool, array | None] | None:
        return _float32_row(x, allow_nan=False)

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        return raw >= 0  # GradientBoostingClassifier.predict: a raw prediction of 0 is the positive class

    @staticmethod
    def _positive_one(raw: float) -> bool:
        return raw >= 0


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
        # For one row: value -> code (-0.0 finds 0.0, NaN finds nothing), as _encode_categories.
        self._codes = [
            (column, {value: float(code) for code, value in enumerate(categories.tolist())})
            for column, categories in zip(self.categorical_columns, self.categories, strict=True)
        ]
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

    def _row(self, x: np.ndarray) -> tuple[list[float], bool, array | None] | None:
        values = x.tolist()[0]
        for column, codes in self._codes:
            value = values[column]
            code = codes.get(value)
            if code is None:
                if value == math.inf or value == -math.inf:
                    return None  # _input raises
                code = math.nan
            values[column] = code
        total = sum(values)
        return values, total != total, None  # NaN anywhere makes the sum NaN (so may inf - inf)

    @staticmethod
    def _positive(raw: np.ndarray) -> np.ndarray:
        return raw > 0  # HistGradientBoostingClassifier.predict: a raw prediction of 0 is the negative class

    @staticmethod
    def _positive_one(raw: float) -> bool:
        return raw > 0


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
