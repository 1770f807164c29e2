"""Multivariate drift: a change in how features relate that no single feature shows.

Per-feature statistics compare marginal distributions; two features whose correlation flips
from +0.8 to -0.8 keep both marginals and pass every one of them. A model trained on the old
relation may still be wrong on the new one. The method is NannyML's "data reconstruction
drift", computed from mergeable counts:

1. **Fit** (:func:`fit_multivariate`, at publish time, stored as ``multivariate.json``). The
   training rows are encoded as numbers: numeric, integer and boolean features standardised with
   the training mean and std (missing or invalid values at the mean, i.e. 0); each category
   one-hot (unseen and missing: all zeros). A PCA (eigenvectors of the covariance, numpy) keeps
   the fewest components that explain ``variance`` (65 %, NannyML's default) of the variance.
   Each row's *reconstruction error* is the distance between its encoding and its projection on
   those components: what the main directions of the training data do not explain. The reference
   distribution of errors on the training rows is profiled like a numeric feature (quantile bins,
   ``drift.baseline_profile``) and stored in the artifact, with the encoding and the components.
2. **Aggregate** (:class:`ReconstructionAggregate`, in the drift job). Each served row is encoded
   and projected the same way (one matrix product per chunk of rows, numpy only) and its error
   counted in the reference bins: a ``drift.DriftAggregate`` of one feature, so the counts merge
   exactly and the window's error distribution is judged by the numeric rules (PSI, KS, W₁/σ)
   against the training rows'.

When the relation between features changes, rows move off the training data's main directions,
their errors grow, and the error distribution drifts, while every marginal can stay the same.
A shift of one feature's marginal moves the errors too, so a multivariate drift alongside
univariate ones says little more; alone it says "the features still look the same one by one,
but not together".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sklambda.monitoring.drift import DriftAggregate, DriftConfig, FeatureDrift, baseline_profile, evaluate
from sklambda.registry.features import FeatureSchema, FeatureSpec

MULTIVARIATE_FORMAT = 1
MULTIVARIATE_KIND = "sklambda.drift.multivariate"
ERROR_FEATURE = "reconstruction_error"
ERROR_SCHEMA = FeatureSchema(features=[FeatureSpec(name=ERROR_FEATURE, type="number")])
DEFAULT_VARIANCE = 0.65
RECORD_CHUNK = 4096


# ============================================================================ encoding
class _Encoder:
    """Rows (a matrix in schema order, or records keyed by name) → the standardised numeric matrix."""

    def __init__(self, columns: Sequence[Mapping[str, Any]]) -> None:
        self.columns = list(columns)
        self.width = sum(len(c["categories"]) if c["type"] == "category" else 1 for c in self.columns)
        self.names = [str(c["name"]) for c in self.columns]
        self._index = [
            {v: i for i, v in enumerate(c["categories"])} if c["type"] == "category" else None for c in self.columns
        ]

    def encode_columns(self, values: Sequence[Sequence[Any]], n: int) -> np.ndarray:
        """``values[j]`` is feature j's column (any sequence of length n)."""
        out = np.zeros((n, self.width), dtype=np.float64)
        at = 0
        for column, index, col in zip(self.columns, self._index, values, strict=True):
            if index is None:
                numbers = _numbers(col, column["type"])
                std = float(column["std"]) or 1.0
                z = (numbers - float(column["mean"])) / std
                out[:, at] = np.where(np.isfinite(z), z, 0.0)
                at += 1
            else:
                slots = _slots(col, index, n)
                hit = slots >= 0
                out[np.flatnonzero(hit), at + slots[hit]] = 1.0
                at += len(index)
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        columns = [[r.get(name) for r in records] for name in self.names]
        return self.encode_columns(columns, len(records))


def _slots(values: Sequence[Any], index: Mapping[str, int], n: int) -> np.ndarray:
    """Each value's one-hot column (-1: unseen, missing or not a string)."""
    items = values.tolist() if isinstance(values, np.ndarray) else values
    if set(map(type, items)) <= {str, type(None)}:  # the usual case: strings and nulls, one C-level pass
        return np.fromiter(map(index.get, items, itertools.repeat(-1)), dtype=np.int64, count=n)
    return np.fromiter((index.get(v, -1) if type(v) is str else -1 for v in items), dtype=np.int64, count=n)


def _slice(column: Any, start: int, end: int) -> Sequence[Any]:
    if column is None:
        return [None] * (end - start)
    return column[start:end]


def _numbers(values: Sequence[Any], kind: str) -> np.ndarray:
    """A column as float64, NaN where a value is missing or not a number of the feature's kind."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    allowed: tuple[type, ...] = (int, float, bool) if kind == "boolean" else (int, float)
    if set(map(type, items)) <= {*allowed, type(None)}:
        try:
            return np.array(items, dtype=np.float64) if items else np.empty(0)
        except OverflowError:
            pass
    return np.array([_number(v, allowed) for v in items], dtype=np.float64)


def _number(value: Any, allowed: tuple[type, ...]) -> float:
    if type(value) in allowed or isinstance(value, np.integer | np.floating):
        try:
            return float(value)
        except OverflowError:
            return float("nan")
    return float("nan")


# ============================================================================ fit
def fit_multivariate(
    matrix: Any, schema: FeatureSchema, *, variance: float = DEFAULT_VARIANCE
) -> tuple[dict[str, Any] | None, str | None]:
    """``(multivariate.json content, None)`` from the training matrix (schema order), or ``(None, why not)``."""
    if not 0 < variance < 1:
        raise ValueError("variance must be between 0 and 1")
    matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix, dtype=object)
    if matrix.ndim != 2 or matrix.shape[1] != len(schema.features):
        raise ValueError(f"expected a 2-D matrix with {len(schema.features)} columns, got shape {matrix.shape}")
    rows = matrix.shape[0]
    columns: list[dict[str, Any]] = []
    for j, spec in enumerate(schema.features):
        if spec.type == "category":
            columns.append({"name": spec.name, "type": "category", "categories": list(spec.categories or [])})
        else:
            numbers = _numbers(matrix[:, j], spec.type)
            finite = numbers[np.isfinite(numbers)]
            mean = float(finite.mean()) if finite.size else 0.0
            std = float(finite.std()) if finite.size else 0.0
            columns.append({"name": spec.name, "type": spec.type, "mean": mean, "std": std})
    encoder = _Encoder(columns)
    if encoder.width < 2:
        return None, "a single encoded column: there is no relation between features to watch"
    if rows < 10 * encoder.width:
        return None, f"{rows} training rows for {encoder.width} encoded columns; at least 10 per column are needed"
    encoded = encoder.encode_columns([matrix[:, j] for j in range(matrix.shape[1])], rows)
    centre = encoded.mean(axis=0)
    centred = encoded - centre
    covariance = centred.T @ centred / rows
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.clip(eigenvalues[order], 0, None), eigenvectors[:, order]
    total = float(eigenvalues.sum())
    if total <= 0:
        return None, "the training rows do not vary"
    explained = eigenvalues / total
    keep = int(np.searchsorted(np.cumsum(explained), variance) + 1)
    keep = min(max(keep, 1), encoder.width - 1)
    components = eigenvectors[:, :keep].T  # (k, width), orthonormal rows
    errors = _errors(encoded, centre, components)
    profile = baseline_profile(errors.reshape(-1, 1), ERROR_SCHEMA)
    return {
        "format": MULTIVARIATE_FORMAT,
        "kind": MULTIVARIATE_KIND,
        "method": "pca_reconstruction_error",
        "rows": rows,
        "variance_target": variance,
        "explained_variance": round(float(explained[:keep].sum()), 6),
        "columns": columns,
        "centre": centre.tolist(),
        "components": components.tolist(),
        "baseline": profile,
    }, None


def _errors(encoded: np.ndarray, centre: np.ndarray, components: np.ndarray) -> np.ndarray:
    # |residual|² = |x|² - |projection|² (orthonormal components): ten times faster than forming the
    # residual, and the cancellation error (~1e-16 |x|²) is far below any error that matters. einsum, not
    # BLAS: each row's error then depends on that row alone (never on how rows were chunked, so aggregates
    # merge exactly), and a small product does not wait for BLAS threads on a busy machine (10x here).
    centred = encoded - centre
    projected = np.einsum("ij,kj->ik", centred, components)
    squares = np.einsum("ij,ij->i", centred, centred) - np.einsum("ij,ij->i", projected, projected)
    return np.sqrt(np.clip(squares, 0.0, None))


def check_multivariate(artifact: Mapping[str, Any]) -> None:
    if not isinstance(artifact, Mapping) or artifact.get("kind") != MULTIVARIATE_KIND:
        raise ValueError("not a sklambda multivariate drift artifact (kind is missing or wrong)")
    if artifact.get("format") != MULTIVARIATE_FORMAT:
        raise ValueError(f"unsupported multivariate format {artifact.get('format')!r}")


# ============================================================================ aggregate
class ReconstructionAggregate:
    """Reconstruction errors of served rows in the reference error bins: streaming, mergeable."""

    def __init__(self, artifact: Mapping[str, Any]) -> None:
        check_multivariate(artifact)
        self.artifact = artifact
        self.baseline: Mapping[str, Any] = artifact["baseline"]
        self.errors = DriftAggregate(self.baseline)
        self._encoder = _Encoder(artifact["columns"])
        self._centre = np.asarray(artifact["centre"], dtype=np.float64)
        self._components = np.asarray(artifact["components"], dtype=np.float64)

    @property
    def rows(self) -> int:
        return self.errors.rows

    def add_records(self, records: Iterable[Mapping[str, Any]]) -> ReconstructionAggregate:
        """Add captured rows (feature dicts). Values that are missing or of the wrong type sit at the
        training mean (numbers) / no category (categories); rows that are not objects are skipped."""
        batch: list[Mapping[str, Any]] = []
        for record in records:
            if isinstance(record, Mapping):
                batch.append(record)
            if len(batch) >= RECORD_CHUNK:
                self._add(batch)
                batch = []
        if batch:
            self._add(batch)
        return self

    def add_columns(self, columns: Mapping[str, Any], rows: int | None = None) -> ReconstructionAggregate:
        """Add rows given as columns keyed by feature name (arrays or lists of equal length); an
        absent feature is missing in every row."""
        n = rows if rows is not None else len(next(iter(columns.values()))) if columns else 0
        if not n:
            return self
        for start in range(0, n, RECORD_CHUNK):
            values = [_slice(columns.get(name), start, min(start + RECORD_CHUNK, n)) for name in self._encoder.names]
            encoded = self._encoder.encode_columns(values, min(RECORD_CHUNK, n - start))
            self.errors.add_columns({ERROR_FEATURE: _errors(encoded, self._centre, self._components)})
        return self

    def add_matrix(self, matrix: Any) -> ReconstructionAggregate:
        """Add rows given as a matrix in schema order."""
        matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix, dtype=object)
        for start in range(0, matrix.shape[0], RECORD_CHUNK):
            part = matrix[start : start + RECORD_CHUNK]
            encoded = self._encoder.encode_columns([part[:, j] for j in range(part.shape[1])], part.shape[0])
            self.errors.add_columns({ERROR_FEATURE: _errors(encoded, self._centre, self._components)})
        return self

    def _add(self, batch: list[Mapping[str, Any]]) -> None:
        encoded = self._encoder.encode_records(batch)
        self.errors.add_columns({ERROR_FEATURE: _errors(encoded, self._centre, self._components)})

    def merge(self, other: ReconstructionAggregate) -> ReconstructionAggregate:
        self.errors.merge(other.errors)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.errors.to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], artifact: Mapping[str, Any]) -> ReconstructionAggregate:
        out = cls(artifact)
        out.errors = DriftAggregate.from_dict(data, out.baseline)
        return out


class MultivariateDrift(BaseModel):
    """The verdict on the relations between features in one window."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(description="evaluated | unavailable")
    reason: str | None = None
    components: int | None = None
    columns: int | None = None
    explained_variance: float | None = None
    error: FeatureDrift | None = Field(None, description="The reconstruction error's distribution, judged numerically")

    @property
    def verdict(self) -> str:
        return self.error.verdict if self.error is not None else "insufficient_data"

    @classmethod
    def unavailable(cls, reason: str) -> MultivariateDrift:
        return cls(status="unavailable", reason=reason)


def evaluate_multivariate(aggregate: ReconstructionAggregate, config: DriftConfig | None = None) -> MultivariateDrift:
    (error,) = evaluate(aggregate.baseline, aggregate.errors, config).features
    artifact = aggregate.artifact
    return MultivariateDrift(
        status="evaluated",
        components=len(artifact["components"]),
        columns=len(artifact["centre"]),
        explained_variance=artifact.get("explained_variance"),
        error=error,
    )
