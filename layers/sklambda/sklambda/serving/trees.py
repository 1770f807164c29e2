"""The lean serving runtime: tree ensembles and their preprocessing in numpy alone.

A ``model.trees.npz`` artifact (written at publish time by ``sklambda.lean``) holds a random
forest or extra-trees ensemble as flat arrays plus a JSON header describing the preprocessing
that ``training.build_pipeline`` produces (ColumnTransformer of passthrough / SimpleImputer /
OneHotEncoder). Loading it needs neither scikit-learn nor scipy nor pickle: ``np.load`` with
``allow_pickle=False`` only reads arrays.

The arithmetic is scikit-learn's, not an approximation of it:

- inputs are cast to float32 exactly as scikit-learn's trees cast them;
- each float64 split threshold ``t`` is stored as the largest float32 ``t32 <= t``; for every
  float32 ``x``, ``x <= t`` if and only if ``x <= t32``, so every decision is the same;
- a missing value (NaN) goes the way the tree recorded at fit time (``missing_go_to_left``);
- leaf values are scikit-learn's float64 leaf values, summed tree by tree in the same order and
  divided by the number of trees, as the forests' ``predict_proba`` / ``predict`` do.

Trees are walked level by level for all trees (one row) or all rows x trees (a batch) at once: a
node index array advances through ``children[2 * node + (x[feature] <= threshold)]``; leaves point
to themselves, so ``max_depth`` steps reach every leaf.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np

FORMAT = 1
RUNTIME = "sklambda-trees"
ARTIFACT = "model.trees.npz"
HEADER_KEY = "header"
ARRAYS = ("feature", "threshold", "children", "values", "roots", "missing_left")


class TreesFormatError(ValueError):
    """The artifact is not a tree-ensemble file this runtime understands."""


def dump(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise a converted ensemble (no pickle: every member is a plain numeric array)."""
    buffer = io.BytesIO()
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    members: dict[str, Any] = {HEADER_KEY: np.frombuffer(raw, dtype=np.uint8), **arrays}
    np.savez_compressed(buffer, **members)
    return buffer.getvalue()


def load(data: bytes) -> TreeEnsemble:
    """Parse an artifact (already sha256-verified by the caller) into a ready ensemble."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz[HEADER_KEY].tobytes())
            arrays = {name: npz[name] for name in ARRAYS}
    except Exception as err:
        raise TreesFormatError(f"not a {RUNTIME} artifact: {err}") from err
    if header.get("format") != FORMAT:
        raise TreesFormatError(f"{RUNTIME} format {header.get('format')!r} is not supported (this one reads {FORMAT})")
    return TreeEnsemble(header, arrays)


class _Numeric:
    """Numeric input columns copied (and, for a SimpleImputer, NaN filled) into the output."""

    __slots__ = ("src", "dst", "fill")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.src = np.asarray(spec["src"], dtype=np.intp)
        self.dst = np.asarray(spec["dst"], dtype=np.intp)
        fill = spec.get("fill")
        self.fill = None if fill is None else np.asarray(fill, dtype=np.float64)


class _OneHot:
    """One categorical input column expanded into indicator columns."""

    __slots__ = ("src", "offset", "lookup", "missing", "unknown_error")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.src = int(spec["src"])
        self.offset = int(spec["offset"])
        self.lookup = {c: i for i, c in enumerate(spec["categories"])}
        self.missing = spec.get("missing")  # SimpleImputer(constant) fill for None, if any
        self.unknown_error = bool(spec.get("unknown_error", False))


class TreeEnsemble:
    """A forest classifier or regressor behind its preprocessing, scikit-learn's interface.

    ``predict_proba`` / ``predict`` take the matrix ``InstanceValidator.to_matrix`` builds (schema
    order; object dtype when there are categories) and answer exactly what the scikit-learn
    pipeline answers on it.
    """

    def __init__(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.header = header
        self.task = header["task"]
        self.n_features_in_ = int(header["n_inputs"])
        self.width = int(header["n_features"])
        self.depth = int(header["depth"])
        self.n_trees = int(header["n_trees"])
        if self.task == "classification":
            self.classes_ = np.asarray(header["classes"])
        self._numeric = [_Numeric(s) for s in header["numeric"]]
        self._onehot = [_OneHot(s) for s in header["onehot"]]
        self._handles_nan = bool(header.get("nan_possible", True))
        feature = arrays["feature"].astype(np.intp)
        threshold = arrays["threshold"].astype(np.float32)
        children = arrays["children"].astype(np.intp)  # (n_nodes, 2): [right, left]
        n_nodes = len(feature)
        if children.shape != (n_nodes, 2) or len(threshold) != n_nodes or len(arrays["values"]) != n_nodes:
            raise TreesFormatError("inconsistent tree arrays")
        if (children < 0).any() or (children >= n_nodes).any() or (feature < 0).any():
            raise TreesFormatError("tree arrays point outside the ensemble")
        if feature.size and feature.max() >= self.width:
            raise TreesFormatError("a split uses a feature the preprocessing does not produce")
        # Indexed by state s = 2 * node: one gather fewer per level than indexing by node.
        self._feature = np.repeat(feature, 2)
        self._threshold = np.repeat(threshold, 2)
        self._next = (2 * children).reshape(-1)  # s + decision -> next state
        self._missing_left = np.repeat(arrays["missing_left"].astype(bool), 2)
        self._roots = 2 * arrays["roots"].astype(np.intp)
        if len(self._roots) != self.n_trees:
            raise TreesFormatError("root count does not match the number of trees")
        self._values = np.ascontiguousarray(arrays["values"], dtype=np.float64)  # (n_nodes, k)
        self._template = np.zeros(self.width, dtype=np.float32)

    # ------------------------------------------------------------ preprocessing
    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """The (n, n_features) float32 matrix the trees see (the pipeline's transform + cast)."""
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"expected a 2-D matrix with {self.n_features_in_} columns, got shape {matrix.shape}")
        n = matrix.shape[0]
        out = np.zeros((n, self.width), dtype=np.float32)
        for block in self._numeric:
            values = matrix[:, block.src].astype(np.float64)
            if block.fill is not None:
                missing = np.isnan(values)
                if missing.any():
                    values = np.where(missing, block.fill, values)
            out[:, block.dst] = values
        for onehot in self._onehot:
            lookup, column, offset = onehot.lookup, matrix[:, onehot.src], onehot.offset
            for i, value in enumerate(column.tolist()):
                if value is None and onehot.missing is not None:
                    value = onehot.missing
                k = lookup.get(value) if isinstance(value, str) else None
                if k is not None:
                    out[i, offset + k] = 1.0
                elif onehot.unknown_error:
                    raise ValueError(f"unknown category {value!r} in input column {onehot.src}")
        return out

    # ------------------------------------------------------------ traversal
    def _leaves(self, x: np.ndarray) -> np.ndarray:
        """Final node index of every (row, tree), rows major: shape (n * n_trees,)."""
        n = x.shape[0]
        feature, threshold, nxt = self._feature, self._threshold, self._next
        flat = x.reshape(-1)
        base: int | np.ndarray
        with_nan = self._handles_nan and bool(np.isnan(flat).any())
        if n == 1:
            s = self._roots
            if not with_nan:
                for _ in range(self.depth):
                    s = nxt.take(s + (flat.take(feature.take(s)) <= threshold.take(s)))
                return s >> 1
            base = 0
        else:
            s = np.tile(self._roots, n)
            base = np.repeat(np.arange(n, dtype=np.intp) * self.width, self.n_trees)
            if not with_nan:
                for _ in range(self.depth):
                    s = nxt.take(s + (flat.take(base + feature.take(s)) <= threshold.take(s)))
                return s >> 1
        missing_left = self._missing_left
        for _ in range(self.depth):
            xv = flat.take(base + feature.take(s))
            go_left = (xv <= threshold.take(s)) | (np.isnan(xv) & missing_left.take(s))
            s = nxt.take(s + go_left)
        return s >> 1

    def _mean_leaf_values(self, matrix: np.ndarray) -> np.ndarray:
        x = self.transform(matrix)
        n = x.shape[0]
        leaves = self._leaves(x)
        values = self._values.take(leaves, axis=0).reshape(n, self.n_trees, -1)
        # Sum over trees strictly in tree order, as the forest's accumulation does (a running sum:
        # np.sum may add in a pairwise order and differ in the last bit), then divide.
        total = np.add.accumulate(values, axis=1)[:, -1, :]
        total /= self.n_trees
        return total

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("a regressor has no predict_proba")
        return self._mean_leaf_values(matrix)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return self.classes_.take(np.argmax(self._mean_leaf_values(matrix), axis=1))
        return self._mean_leaf_values(matrix)[:, 0]

    def __repr__(self) -> str:
        return (
            f"TreeEnsemble({self.header.get('estimator')}, {self.n_trees} trees, depth {self.depth}, "
            f"{len(self._values):,} nodes, {self.width} features)"
        )


def nbytes(ensemble: TreeEnsemble) -> int:
    """Memory held by the ensemble's arrays (for logs)."""
    return int(
        sum(
            a.nbytes
            for a in (
                ensemble._feature,
                ensemble._threshold,
                ensemble._next,
                ensemble._missing_left,
                ensemble._values,
            )
        )
    )


def float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value (exact split thresholds for float32 inputs)."""
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(np.float32)
    above = out.astype(np.float64) > values
    out[above] = np.nextafter(out[above], np.float32(-math.inf))
    return out
