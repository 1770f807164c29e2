"""Input drift: a baseline profile of the training data, mergeable streaming aggregates of the
served rows, and a per-feature verdict with the reason for it.

Pure logic (numpy and scipy): no AWS, no I/O. The drift function reads capture objects, feeds
their rows into a :class:`DriftAggregate`, and calls :func:`evaluate`; the report module renders
the result.

How it fits together
--------------------
1. **Baseline** (:func:`baseline_profile`, at publish time, stored as ``baseline.json`` beside the
   model). Per numeric/integer/boolean feature: ~100 *fine* bins whose edges are quantiles of the
   training values (or the distinct values themselves when there are at most ``fine_bins`` of
   them: integer counts, booleans, constants), the training count in each bin, plus
   n/missing/min/max/mean/std. The first bin holds values below the training minimum and the last
   values above the training maximum; both are empty in training, so values outside the range
   the model has seen stand out. Per bin also the summed position of its values inside it (see
   ``_bin_detail``), which the Wasserstein distance needs; and the feature's own thresholds when
   its schema has a ``drift`` block. Per categorical feature: the count of every schema category,
   plus values outside the schema ("unseen") and missing. A few kilobytes for 20 features; the
   training data is never needed again.
2. **Aggregate** (:class:`DriftAggregate`). Only counts: per feature, the current count in each
   baseline bin (``np.searchsorted`` on the baseline edges) or category, missing, invalid, and
   exact min/max/sum/sum of squares; per fine bin the sum of its values' positions in 1/1024 of
   the bin's width (integers), and the exact sums of how far values lie below / above the
   training range. Memory is flat in the number of rows. Integer counts make
   ``merge`` exactly associative and commutative, and the sums are kept as exact integers (see
   ``_exact_sum``) so even the means do not depend on how the rows were split: N partial
   aggregates from N workers (a Step Functions Distributed Map) merge to the very same
   ``to_dict()`` as one pass over all rows.
3. **Evaluation** (:func:`evaluate`) compares the aggregate with the baseline.

Methods and thresholds (why these)
----------------------------------
What the established tools do:

- *Evidently* (``DataDriftPreset``): with more than 1,000 reference rows, normalised Wasserstein
  distance (numeric) and Jensen-Shannon distance (categorical, natural log), drift at >= 0.1; with
  fewer rows, KS / chi-square p-values at 0.05. The dataset drifts when >= 50 % of its columns do.
- *SageMaker Model Monitor* (data quality): a baseline ``constraints.json`` with a distribution
  distance per feature compared with ``comparison_threshold`` 0.1 (L-infinity for categorical
  features), a "Robust" comparison method that accounts for the sample sizes, and separate
  completeness (missing values) and data-type checks.
- *NannyML* (univariate): KS, Wasserstein, Jensen-Shannon, Hellinger, L-infinity and chi-square,
  each alarming (by default) when the chunk's value exceeds the mean + 3 standard deviations of
  the values of the reference chunks. For references of 10,000 rows or more it bins them and
  computes KS and Wasserstein on the binned CDFs (10,000 equal-width bins over the reference's
  range), as this module does with its quantile bins.
- *PSI* is the credit-risk industry's rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift,
  > 0.25 major shift, on reference deciles.

What sklambda does, per feature:

- **Numeric** (number, integer, boolean): PSI on reference deciles (the fine bins merged into
  ten groups of ~10 % of the training rows each; fewer when ties make a group indivisible), and
  the **KS distance**: the largest difference of the two empirical CDFs evaluated at the fine bin
  edges. It is a lower bound of the exact two-sample KS statistic (it can miss at most the mass
  of one fine bin, ~1 %) and it needs no raw data. KS is scale-free and bounded in [0, 1], so
  one threshold fits income in euros and satisfaction on a 0-10 scale alike.
- **Why a third statistic: scale and shape.** KS measures the mass that crosses one point, PSI
  the mass that changes decile. A 20 % change of scale of an exponential feature moves most rows
  a little and few across any one point: KS 0.07, PSI 0.03, both under their thresholds; a
  log-normal whose shape widens around the same median: KS 0.04, PSI 0.04. The model sees both
  (its splits and coefficients act on the values). The **Wasserstein-1 distance** (the area
  between the two CDFs, the mean distance rows must move) integrates those small moves:
  W₁/σ 0.20 and 0.17. Divided by the reference std (population, as Evidently's
  ``np.std``) it is unit-free, so one threshold again fits every feature; a mean shift of
  d standard deviations gives W₁/σ = d. Applied to number and integer features, not booleans
  (for a 0/1 feature W₁ is the change of the share of ones, which KS already is, and dividing by
  the std would make the threshold depend on the base rate).
- **W₁ from mergeable counts, without the raw data** (``_wasserstein``). The usual binned
  approximation (CDFs linear inside each bin) is poor where bins are wide: the top ~1 % bin of a
  skewed feature spans most of its range, and the open end bins (below the training minimum,
  above the maximum) have no width at all. Instead, inside a bin [a, b) holding a share p of the
  rows whose mean is a + t (b - a), ∫_a^b F = (b - a)(F(a) + p (1 - t)) exactly, whatever their
  spread; t comes from the per-bin integer position sums (to 1/2048 of the width), so each bin's
  ∫ (F_ref - F_cur) is exact and Σ |·| equals W₁ except inside a bin where the CDFs cross (there
  it is a lower bound; measured ≤ 5e-4 σ for real shifts, ≤ 2e-3 σ for unshifted samples, whose
  CDFs cross often). Beyond the training range the exact sums of the distances to the min / max
  give ∫ F_cur below and ∫ (1 - F_cur) above exactly. Identical rows give exactly 0. An aggregate
  stored before these sums existed (format 1) is evaluated with uniform bins and evenly spread
  tails (within ~0.03 σ); merging with one is absorbing, so merges stay exact.
- **W₁ needs its own noise guard.** Unlike KS at 0.1, W₁/σ at 0.1 is within reach of sampling
  noise at 500 rows: two unshifted samples give ~0.057 on average and ≥ 0.1 in ~4 % of windows.
  The noise is predictable from the reference alone: √n (F_n - F) tends to a Brownian bridge,
  so E W₁ ≈ √(2/π) ∫ √(F (1 - F)) dx · √(1/n + 1/m), computed from the reference bins. W₁ drifts
  when W₁/σ ≥ the threshold *and* ≥ ``wasserstein_noise_factor`` (3) times that expectation;
  from ~2,000 rows the threshold decides alone. Both are reported.
- **Against the established tools.** Evidently's large-sample default is exactly W₁/σ ≥ 0.1
  for numeric columns with more than 5 distinct values, computed on the raw rows (it must keep
  the reference rows and the whole window in memory), with no noise guard below the 1,000
  reference rows where it switches to KS p-values; and Jensen-Shannon in natural log ≥ 0.1 for
  categorical ones, which is 0.12 in base 2: it misses a categorical mix change of 10 points
  (JS₂ 0.104, JSₑ 0.087) that sklambda's base-2 threshold flags (benchmarks/RESULTS.md, known
  shifts). NannyML offers W₁ in the feature's units, exact below 10,000 reference rows, else on
  10,000 equal-width bins over the reference range (CDFs compared at the bin edges, which a heavy
  tail makes coarse where the data is; the values beyond the range from the raw chunk), alarming
  at 3 standard deviations of its reference-chunk values: a noise guard like this one, but it
  needs the reference cut into chunks of the monitoring window's size and re-run per chunk.
  SageMaker Model Monitor compares each feature's baseline and current distributions (KLL
  sketches, 10 buckets by default) with a bounded distance at a fixed ``comparison_threshold``
  of 0.1, like KS and JS here; it has no scale-aware distance. sklambda keeps PSI and KS (they
  catch new tails and rare categories, and their meaning is familiar) and adds W₁/σ beside
  them: a feature drifts when any of them says so.
- **Categorical**: PSI over the schema's categories plus an "unseen" bucket, and the
  **Jensen-Shannon distance** (base 2, in [0, 1]) over the same buckets.
- A feature **drifts** when PSI >= 0.2 (between the industry's "moderate" and "major"), OR the
  KS distance >= 0.1 (numeric) / JS distance >= 0.1 (categorical), the 0.1 that Evidently,
  SageMaker and NannyML all use for bounded distances; OR (number, integer) W₁/σ >= 0.1,
  Evidently's threshold, beyond its noise; OR its share of missing values moved by >= 10
  percentage points (SageMaker's completeness check, in spirit). Complementary statistics: PSI
  weighs relative changes in small bins (new tails, a rare category that became common), KS and
  JS the absolute mass moved, W₁ how far it moved. Note that W₁/σ 0.1 also flags a mean shift of
  0.1 sd that KS (which needs ~0.25 sd) lets pass: raise it per feature where that is noise.
  The defaults are in :class:`DriftConfig` (template parameters DriftPsiThreshold,
  DriftDistanceThreshold, DriftWassersteinThreshold); a feature's schema may override them with a
  ``drift`` block (``{"psi": 0.3, "distance": 0.15, "wasserstein": 0.2, "missing": 0.05}``), which
  the baseline carries (:func:`thresholds_for`).
- **p-values are reported, not used for the verdict.** A KS or chi-square test answers "is there
  *any* difference", and with 100k rows a shift of 0.01 standard deviations is "significant"
  (p < 0.05 once the KS distance exceeds ~1.36 * sqrt(2/n), 0.006 at 100k rows): every window
  would alarm. Distances measure *how much* changed, which is what should trigger a retrain.
- **Too little data gets no verdict**: with fewer than ``min_rows`` (500) current values a
  feature is ``insufficient_data``. At 500 rows against a 10k+ reference, sampling noise alone
  exceeds KS 0.1 with probability ~1e-4 (Kolmogorov tail at 0.1 / sqrt(1/500 + 1/n_ref) ~ 2.2)
  and PSI 0.2 practically never (its noise is ~ (bins - 1) / n = 0.02), so the distance
  thresholds double as a significance guard at the smallest window they are allowed to judge.
  Lowering ``min_rows`` trades that guard away.
- **Empty bins**: PSI uses proportions floored at ``epsilon`` = 1e-4 (the usual choice, also
  Evidently's and Oracle's), so a bucket empty on one side contributes a large but finite term:
  10 % of rows in a never-seen category alone gives PSI ~0.69. JS and KS need no epsilon.
- **Dataset**: ``drift_score`` is the share of evaluated features that drifted (0..1); the
  dataset verdict is ``drift`` when it is >= ``drift_share`` (0.5, Evidently's default). The
  CloudWatch alarm watches ``drift_score`` with its own threshold in the template.
- Invalid values (wrong type, unknown feature names) are counted and reported, never raised and
  never part of the distribution: they are a data-quality finding, not a population shift.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sklambda.registry.features import FeatureSchema, FeatureSpec

BASELINE_FORMAT = 1
AGGREGATE_FORMAT = 2  # 2 added the within-bin offsets and the tail sums; format 1 is still read
AGGREGATE_FORMATS = frozenset({1, 2})
RESULT_FORMAT = 1
BASELINE_KIND = "sklambda.drift.baseline"
AGGREGATE_KIND = "sklambda.drift.aggregate"

# How many distinct unseen category values / unknown field names are kept by name (with exact
# counts). Past that the names are dropped and only the totals stay: memory stays bounded and
# merging stays exact (see _CappedCounts).
MAX_NAMED_VALUES = 20
MAX_NAME_CHARS = 64
# Records are processed in chunks of this many rows: vectorised work per chunk, flat memory.
RECORD_CHUNK = 4096
# Where a value sits inside its fine bin, in 1/OFFSET_RESOLUTION of the bin's width: an integer per
# value, summed per bin, so the sums merge exactly and give the mean position of each bin's values
# to within 1/2048 of its width (the Wasserstein distance's within-bin term, see _wasserstein).
OFFSET_RESOLUTION = 1024

Verdict = Literal["drift", "ok", "insufficient_data"]


# ============================================================================ configuration
class DriftConfig(BaseModel):
    """Thresholds of the drift verdict. The module docstring explains the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_rows: int = Field(
        500,
        ge=1,
        description="Fewer current (non-missing, valid) values than this: the feature gets no verdict "
        "(insufficient_data). 500 keeps sampling noise far below the distance thresholds.",
    )
    psi_threshold: float = Field(
        0.2,
        gt=0,
        description="PSI at or above this drifts (industry rule of thumb: 0.1 moderate, 0.25 major).",
    )
    ks_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Numeric features: KS distance (max CDF difference) at or above this drifts.",
    )
    js_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Categorical features: Jensen-Shannon distance (base 2) at or above this drifts "
        "(Evidently's, NannyML's and SageMaker's 0.1 for bounded distances).",
    )
    wasserstein_threshold: float = Field(
        0.1,
        gt=0,
        description="Number and integer features: Wasserstein-1 distance divided by the reference std at or "
        "above this drifts (Evidently's default for numeric columns), once it is also beyond sampling noise.",
    )
    wasserstein_noise_factor: float = Field(
        3.0,
        ge=0,
        description="The Wasserstein rule needs the distance to be at least this many times its expected value "
        "between two unshifted samples of these sizes (computed from the reference bins); 0 turns the guard off.",
    )
    missing_threshold: float = Field(
        0.1,
        gt=0,
        le=1,
        description="A change of the share of missing values by at least this (absolute, 0.1 = 10 "
        "percentage points) drifts.",
    )
    drift_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="The dataset verdict is drift when at least this share of evaluated features drifted "
        "(Evidently's default).",
    )
    psi_bins: int = Field(10, ge=2, le=100, description="PSI bins for numeric features: reference deciles.")
    epsilon: float = Field(
        1e-4,
        gt=0,
        lt=0.01,
        description="PSI floor for an empty bin's proportion, so a bin empty on one side counts but stays finite.",
    )


# ============================================================================ helpers
def _short(value: Any) -> str:
    return str(value)[:MAX_NAME_CHARS]


def fingerprint(baseline: Mapping[str, Any]) -> str:
    """A short content hash of a baseline: partial aggregates of different baselines never merge."""
    canonical = json.dumps(baseline, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Every finite double is an integer multiple of 2**-1074; its 53-bit mantissa, as an integer,
# needs 53 more bits. Sums are kept as integers in units of 2**-1127: exact, order-independent.
_SUM_SHIFT = 1127
_SUM_SLICE = 1 << 24  # bincount's float64 sums stay exact (< 2**53) for slices this long
_MAX_FLOAT = float(np.finfo(np.float64).max)


def _exact_sum(values: np.ndarray) -> int:
    """The exact sum of finite float64 values, as an integer in units of 2**-1127.

    Floating-point addition is not associative, so a float sum depends on how the rows were
    split among workers. Each value is split into its exponent and its 53-bit mantissa, the
    mantissa into a 26-bit and a 27-bit half (exact, still in float64), and the halves are summed per
    exponent with ``np.bincount``: every partial sum is an integer below 2**53, so no rounding
    ever happens, and the total is independent of order and chunking.
    """
    total = 0
    for start in range(0, values.size, _SUM_SLICE):
        part = values[start : start + _SUM_SLICE]
        mantissa, exponent = np.frexp(part)  # part = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
        high = np.floor(mantissa * 67108864.0)  # the top 26 bits: mantissa * 2**26
        low = mantissa * 9007199254740992.0 - high * 134217728.0  # the other 27: M - high * 2**27, in [0, 2**27)
        base = int(exponent.min()) if exponent.size else 0
        slot = exponent - base
        high_sums = np.bincount(slot, weights=high)
        low_sums = np.bincount(slot, weights=low)
        for k in np.flatnonzero((high_sums != 0) | (low_sums != 0)):
            exact = (int(high_sums[k]) << 27) + int(low_sums[k])  # M = mantissa * 2**53, units 2**(e - 53)
            total += exact << (base + int(k) + 1074)  # in units of 2**-1127
    return total


def _encode_exact(value: int) -> list[Any]:
    """An exact sum as JSON: [decimal mantissa string, power of two], trailing zero bits stripped."""
    if value == 0:
        return ["0", 0]
    zeros = (value & -value).bit_length() - 1
    return [str(value >> zeros), zeros - _SUM_SHIFT]


def _decode_exact(encoded: Any) -> int:
    mantissa, power = int(encoded[0]), int(encoded[1])
    shift = power + _SUM_SHIFT
    return mantissa << shift if shift >= 0 else mantissa >> -shift


def _mean_std(count: int, total: int, squares: int) -> tuple[float | None, float | None]:
    """Mean and population std from exact integer sums (no cancellation error in the variance)."""
    if count <= 0:
        return None, None
    scale = 1 << _SUM_SHIFT
    mean = total / (count * scale)
    numerator = squares * count * scale - total * total
    variance = max(numerator, 0) / (count * count * scale * scale)
    return mean, math.sqrt(variance)


class _CappedCounts:
    """Exact counts of at most ``cap`` distinct names; past that, only "there were too many".

    Overflow is absorbing and happens exactly when the union of all names seen exceeds the cap,
    whichever way the rows were split: merging stays associative and commutative.
    """

    __slots__ = ("counts", "overflow", "cap")

    def __init__(self, cap: int = MAX_NAMED_VALUES) -> None:
        self.counts: dict[str, int] = {}
        self.overflow = False
        self.cap = cap

    def add(self, name: str, n: int) -> None:
        if self.overflow:
            return
        if name not in self.counts and len(self.counts) >= self.cap:
            self.overflow = True
            self.counts = {}
            return
        self.counts[name] = self.counts.get(name, 0) + n

    def merge(self, other: _CappedCounts) -> None:
        if other.overflow:
            self.overflow, self.counts = True, {}
            return
        for name, n in other.counts.items():
            self.add(name, n)

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(sorted(self.counts.items())), "overflow": self.overflow}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> _CappedCounts:
        out = cls()
        if data:
            out.overflow = bool(data.get("overflow", False))
            out.counts = {} if out.overflow else {str(k): int(v) for k, v in (data.get("values") or {}).items()}
        return out


# ============================================================================ value coercion
_NUMERIC_FAST = frozenset({int, float, type(None)})
_BOOLEAN_FAST = frozenset({bool, int, float, type(None)})


def _coerce_numeric(values: Any, kind: str, nullable: bool) -> tuple[np.ndarray, int, int]:
    """Turn a column (array or list) into (valid finite float64 values, missing, invalid).

    Same rules as the request validator: numbers must be int/float and not bool; integers must
    be whole; booleans must be bool or the numbers 0/1 (the validated matrix holds booleans as
    0.0/1.0, so training matrices and arrays do too); non-finite numbers are invalid; None/NaN is
    missing, or invalid if the feature is not nullable.
    """
    bad: np.ndarray | None = None
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        if values.dtype.kind == "b" and kind != "boolean":
            return np.empty(0), 0, int(values.size)
        arr = values.astype(np.float64, copy=False).ravel()
    else:
        items = values.tolist() if isinstance(values, np.ndarray) else values
        if not isinstance(items, (list, tuple)):
            items = list(items)
        types = set(map(type, items))
        fast: np.ndarray | None = None
        if types <= (_BOOLEAN_FAST if kind == "boolean" else _NUMERIC_FAST):
            try:
                fast = np.array(items, dtype=np.float64) if items else np.empty(0)  # None → NaN
            except OverflowError:  # an int beyond float range: the per-value path marks it invalid
                fast = None
        if fast is None:
            arr, bad = _coerce_numeric_slow(items, kind)
        else:
            arr = fast
    missing = np.isnan(arr)
    invalid = ~missing & ~np.isfinite(arr)  # ±inf
    if bad is not None:  # wrong-typed values were stored as NaN: they are invalid, not missing
        invalid |= bad
        missing &= ~bad
    if kind == "integer":
        invalid |= ~missing & (arr != np.round(arr))
    elif kind == "boolean":
        invalid |= ~missing & (arr != 0.0) & (arr != 1.0)
    if not nullable:
        invalid |= missing
        missing = np.zeros_like(missing)
    keep = ~(missing | invalid)
    return arr[keep], int(missing.sum()), int(invalid.sum())


def _coerce_numeric_slow(items: list[Any] | tuple[Any, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-value path for mixed types: returns (float64 with NaN for missing/invalid, invalid mask)."""
    out = np.full(len(items), np.nan)
    bad = np.zeros(len(items), dtype=bool)
    for i, value in enumerate(items):
        if value is None:
            continue
        is_bool = isinstance(value, (bool, np.bool_))
        if is_bool and kind == "boolean":
            out[i] = float(value)
        elif is_bool or not isinstance(value, (int, float, np.integer, np.floating)):
            bad[i] = True
        else:
            try:
                out[i] = float(value)
            except OverflowError:
                bad[i] = True
    return out, bad


def _is_missing_scalar(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


@dataclass
class _CategoryTally:
    counts: np.ndarray
    unseen: int
    missing: int
    invalid: int
    unseen_values: Counter[str]


def _tally_categories(values: Any, index: Mapping[str, int], nullable: bool) -> _CategoryTally:
    """Count a categorical column over the baseline's categories, unseen strings, missing, invalid."""
    items = values.tolist() if isinstance(values, np.ndarray) else values
    if not isinstance(items, (list, tuple)):
        items = list(items)
    try:
        distinct = Counter(items)
    except TypeError:  # unhashable values (lists, dicts) are invalid; count the rest
        marker = object()
        distinct = Counter(v if _hashable(v) else marker for v in items)
    counts = np.zeros(len(index), dtype=np.int64)
    unseen = missing = invalid = 0
    unseen_values: Counter[str] = Counter()
    for value, n in distinct.items():
        if _is_missing_scalar(value):
            missing += n
        elif isinstance(value, str):
            slot = index.get(value)
            if slot is None:
                unseen += n
                unseen_values[_short(value)] += n
            else:
                counts[slot] += n
        else:
            invalid += n
    if not nullable:
        invalid, missing = invalid + missing, 0
    return _CategoryTally(counts, unseen, missing, invalid, unseen_values)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# ============================================================================ baseline
def baseline_profile(matrix: Any, schema: FeatureSchema, *, fine_bins: int = 100) -> dict[str, Any]:
    """The drift reference of a model: per-feature bins and counts of its training matrix.

    ``matrix`` is the (n, features) array the pipeline is trained on (``demo.to_matrix``,
    ``training.read_csv``), columns in schema order. The result is JSON-serialisable and small
    (kilobytes); it is stored with the model version as ``baseline.json``.
    """
    if fine_bins < 2:
        raise ValueError("fine_bins must be at least 2")
    # Lists of rows become object arrays: numpy would turn a mixed list into strings.
    matrix = matrix if isinstance(matrix, np.ndarray) else np.asarray(matrix, dtype=object)
    if matrix.ndim != 2 or matrix.shape[1] != len(schema.features):
        raise ValueError(
            f"expected a 2-D matrix with {len(schema.features)} columns in schema order, got shape {matrix.shape}"
        )
    features = []
    for j, spec in enumerate(schema.features):
        column = matrix[:, j]
        if spec.type == "category":
            features.append(_categorical_profile(column, spec))
        else:
            features.append(_numeric_profile(column, spec, fine_bins))
    return {
        "format": BASELINE_FORMAT,
        "kind": BASELINE_KIND,
        "rows": int(matrix.shape[0]),
        "fine_bins": fine_bins,
        "features": features,
    }


def _numeric_profile(column: np.ndarray, spec: FeatureSpec, fine_bins: int) -> dict[str, Any]:
    values, missing, invalid = _coerce_numeric(column, spec.type, nullable=True)
    profile: dict[str, Any] = {
        "name": spec.name,
        "type": spec.type,
        "nullable": spec.nullable,
        "n": int(values.size),
        "missing": missing,
        "invalid": invalid,
        **_drift_block(spec),
    }
    if not values.size:
        return {
            **profile,
            "binning": "none",
            "edges": [],
            "counts": [0],
            "min": None,
            "max": None,
            "mean": None,
            "std": None,
        }
    values = np.sort(values)
    low, high = float(values[0]), float(values[-1])
    distinct = np.unique(values)
    if distinct.size <= fine_bins:
        # Few distinct values (counts, booleans, constants): each value is its own bin, so heavy
        # ties never merge two values and the KS distance is exact at every value.
        binning, inner = "values", distinct
    else:
        probs = np.arange(1, fine_bins) / fine_bins
        # Edges are data values (inverted CDF), never interpolated between them: ties stay in
        # one bin and bin widths are multiples of the data's resolution (whole numbers for integers).
        cuts = np.quantile(values, probs, method="inverted_cdf")
        binning, inner = "quantiles", np.unique(np.concatenate([[low], cuts]))
    # Bins: (-inf, e0) below the training range, [e_i, e_i+1), ..., and [nextafter(max), inf)
    # above it; both outer bins are empty in training.
    top = float(np.nextafter(high, np.inf))
    edges = np.concatenate([inner, [top]]) if math.isfinite(top) else inner
    index = np.searchsorted(edges, values, side="right")
    counts = np.bincount(index, minlength=edges.size + 1)
    # The same within-bin detail the aggregate keeps, so both sides of the Wasserstein distance are
    # computed alike (identical rows give exactly 0).
    offsets, below, above = _bin_detail(edges, index, values)
    return {
        **profile,
        "binning": binning,
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "offsets": offsets.tolist(),
        "below": _encode_exact(below),
        "above": _encode_exact(above),
        "min": low,
        "max": high,
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


def _categorical_profile(column: np.ndarray, spec: FeatureSpec) -> dict[str, Any]:
    categories = list(spec.categories or [])
    tally = _tally_categories(column, {c: i for i, c in enumerate(categories)}, nullable=True)
    return {
        "name": spec.name,
        "type": "category",
        "nullable": spec.nullable,
        **_drift_block(spec),
        "categories": categories,
        "counts": tally.counts.tolist(),
        "unseen": tally.unseen,
        "n": int(tally.counts.sum()) + tally.unseen,
        "missing": tally.missing,
        "invalid": tally.invalid,
    }


def _drift_block(spec: FeatureSpec) -> dict[str, Any]:
    """The feature's own thresholds (its schema's ``drift`` block), when it has any: the baseline
    carries them so the drift job judges each feature by them (an absent key: the job's default)."""
    thresholds = spec.drift.model_dump(exclude_none=True) if spec.drift is not None else {}
    return {"drift": thresholds} if thresholds else {}


def _check_baseline(baseline: Mapping[str, Any]) -> None:
    if not isinstance(baseline, Mapping) or baseline.get("kind") != BASELINE_KIND:
        raise ValueError("not a sklambda drift baseline (kind is missing or wrong)")
    if baseline.get("format") != BASELINE_FORMAT:
        raise ValueError(f"unsupported baseline format {baseline.get('format')!r}; this code reads {BASELINE_FORMAT}")


# ============================================================================ aggregate
@dataclass(frozen=True)
class _NumericSpec:
    name: str
    type: str
    nullable: bool
    edges: np.ndarray

    @property
    def bins(self) -> int:
        return self.edges.size + 1


def _bin_detail(edges: np.ndarray, index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Per bin, the sum of its values' quantised positions inside it; and the exact sums of the
    distances of the values below the first edge / above the last edge to that edge.

    ``index`` is each value's bin (``np.searchsorted(edges, values, side="right")``). Each value's
    position ``floor((x - low) / width * OFFSET_RESOLUTION)`` is a deterministic integer, so the
    per-bin sums (and the exact tail sums) do not depend on how the rows were split.
    """
    bins = edges.size + 1
    offsets = np.zeros(bins, dtype=np.int64)
    if edges.size == 0 or values.size == 0:
        return offsets, 0, 0
    inner = (index > 0) & (index < edges.size)
    if inner.any():
        slot = index[inner]
        low = edges[slot - 1]
        width = edges[slot] - low
        with np.errstate(over="ignore", invalid="ignore"):
            position = np.floor((values[inner] - low) / width * OFFSET_RESOLUTION)
        position = np.clip(np.nan_to_num(position, nan=0.0), 0, OFFSET_RESOLUTION - 1)
        # float sums of integers below 2**53 are exact; a chunk would need 8e12 values to reach that
        offsets += np.rint(np.bincount(slot, weights=position, minlength=bins)).astype(np.int64)
    below = values[index == 0]
    above = values[index == edges.size]
    with np.errstate(over="ignore"):
        below_sum = _exact_sum(np.minimum(edges[0] - below, _MAX_FLOAT)) if below.size else 0
        above_sum = _exact_sum(np.minimum(above - edges[-1], _MAX_FLOAT)) if above.size else 0
    return offsets, below_sum, above_sum


@dataclass(frozen=True)
class _CategorySpec:
    name: str
    nullable: bool
    categories: tuple[str, ...]
    index: Mapping[str, int]


class _NumericState:
    """Counts per fine bin, plus (format 2) each bin's summed value positions (``offsets``) and the
    exact sums of how far values lie below the first / above the last edge (``below``/``above``).
    A state restored from format 1 has no such detail (None), and neither has anything merged
    with it: None is absorbing, so merging stays associative and commutative."""

    __slots__ = ("counts", "missing", "invalid", "min", "max", "sum", "sumsq", "offsets", "below", "above")

    def __init__(self, bins: int) -> None:
        self.counts = np.zeros(bins, dtype=np.int64)
        self.missing = 0
        self.invalid = 0
        self.min: float | None = None
        self.max: float | None = None
        self.sum = 0
        self.sumsq = 0
        self.offsets: np.ndarray | None = np.zeros(bins, dtype=np.int64)
        self.below: int | None = 0
        self.above: int | None = 0

    def add(self, spec: _NumericSpec, values: np.ndarray, missing: int, invalid: int) -> None:
        self.missing += missing
        self.invalid += invalid
        if not values.size:
            return
        index = np.searchsorted(spec.edges, values, side="right")
        self.counts += np.bincount(index, minlength=spec.bins)
        if self.offsets is not None and self.below is not None and self.above is not None:
            offsets, below, above = _bin_detail(spec.edges, index, values)
            self.offsets += offsets
            self.below += below
            self.above += above
        low, high = float(values.min()), float(values.max())
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)
        self.sum += _exact_sum(values)
        self.sumsq += _exact_sum(np.minimum(values * values, _MAX_FLOAT))

    def merge(self, other: _NumericState) -> None:
        self.counts += other.counts
        self.missing += other.missing
        self.invalid += other.invalid
        for attr, pick in (("min", min), ("max", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        self.sum += other.sum
        self.sumsq += other.sumsq
        if self.offsets is None or other.offsets is None or other.below is None or other.above is None:
            self.offsets = self.below = self.above = None
        else:
            self.offsets += other.offsets
            self.below = (self.below or 0) + other.below
            self.above = (self.above or 0) + other.above

    @property
    def detailed(self) -> bool:
        return self.offsets is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "invalid": self.invalid,
            "min": self.min,
            "max": self.max,
            "sum": _encode_exact(self.sum),
            "sumsq": _encode_exact(self.sumsq),
            "offsets": None if self.offsets is None else self.offsets.tolist(),
            "below": None if self.below is None else _encode_exact(self.below),
            "above": None if self.above is None else _encode_exact(self.above),
        }

    @classmethod
    def from_dict(cls, spec: _NumericSpec, data: Mapping[str, Any]) -> _NumericState:
        state = cls(spec.bins)
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != (spec.bins,):
            raise ValueError(f"feature {spec.name!r}: {counts.size} bin counts, the baseline has {spec.bins} bins")
        state.counts = counts
        state.missing, state.invalid = int(data["missing"]), int(data["invalid"])
        state.min = None if data.get("min") is None else float(data["min"])
        state.max = None if data.get("max") is None else float(data["max"])
        state.sum, state.sumsq = _decode_exact(data["sum"]), _decode_exact(data["sumsq"])
        offsets = data.get("offsets")
        if offsets is None or data.get("below") is None or data.get("above") is None:  # format 1
            state.offsets = state.below = state.above = None
        else:
            state.offsets = np.asarray(offsets, dtype=np.int64)
            if state.offsets.shape != (spec.bins,):
                raise ValueError(
                    f"feature {spec.name!r}: {state.offsets.size} bin offsets, the baseline has {spec.bins}"
                )
            state.below, state.above = _decode_exact(data["below"]), _decode_exact(data["above"])
        return state


class _CategoryState:
    __slots__ = ("counts", "unseen", "missing", "invalid", "unseen_values")

    def __init__(self, size: int) -> None:
        self.counts = np.zeros(size, dtype=np.int64)
        self.unseen = 0
        self.missing = 0
        self.invalid = 0
        self.unseen_values = _CappedCounts()

    def add(self, tally: _CategoryTally) -> None:
        self.counts += tally.counts
        self.unseen += tally.unseen
        self.missing += tally.missing
        self.invalid += tally.invalid
        for name, n in sorted(tally.unseen_values.items()):
            self.unseen_values.add(name, n)

    def merge(self, other: _CategoryState) -> None:
        self.counts += other.counts
        self.unseen += other.unseen
        self.missing += other.missing
        self.invalid += other.invalid
        self.unseen_values.merge(other.unseen_values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.tolist(),
            "unseen": self.unseen,
            "missing": self.missing,
            "invalid": self.invalid,
            "unseen_values": self.unseen_values.to_dict(),
        }

    @classmethod
    def from_dict(cls, spec: _CategorySpec, data: Mapping[str, Any]) -> _CategoryState:
        state = cls(len(spec.categories))
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != (len(spec.categories),):
            raise ValueError(
                f"feature {spec.name!r}: {counts.size} category counts, the baseline has "
                f"{len(spec.categories)} categories"
            )
        state.counts = counts
        state.unseen, state.missing, state.invalid = int(data["unseen"]), int(data["missing"]), int(data["invalid"])
        state.unseen_values = _CappedCounts.from_dict(data.get("unseen_values"))
        return state


class DriftAggregate:
    """Counts of served rows in the bins of one baseline: streaming, mergeable, JSON-serialisable.

    ``merge`` is exactly associative and commutative (integer counts, exact sums, absorbing caps),
    so partial aggregates computed by any number of workers over any split of the rows merge to
    the same ``to_dict()`` as a single pass. Memory is flat in the number of rows.
    """

    def __init__(self, baseline: Mapping[str, Any]) -> None:
        _check_baseline(baseline)
        self.baseline_id = fingerprint(baseline)
        self.rows = 0
        self.invalid_records = 0
        self.unknown_fields = _CappedCounts()
        self.unknown_fields_total = 0
        self._specs: dict[str, _NumericSpec | _CategorySpec] = {}
        self._states: dict[str, _NumericState | _CategoryState] = {}
        for feature in baseline["features"]:
            name = feature["name"]
            if feature["type"] == "category":
                categories = tuple(feature["categories"])
                spec: _NumericSpec | _CategorySpec = _CategorySpec(
                    name, bool(feature["nullable"]), categories, {c: i for i, c in enumerate(categories)}
                )
                self._states[name] = _CategoryState(len(categories))
            else:
                spec = _NumericSpec(
                    name, feature["type"], bool(feature["nullable"]), np.asarray(feature["edges"], dtype=np.float64)
                )
                self._states[name] = _NumericState(spec.bins)
            self._specs[name] = spec
        self._names = frozenset(self._specs)
        order = tuple(self._specs)
        # One C call per record fetches every feature (a tuple even for a single feature).
        self._row_of = operator.itemgetter(*order) if len(order) > 1 else (lambda r, _n=order[0]: (r[_n],))

    # ------------------------------------------------------------------ adding rows
    def add_columns(self, columns: Mapping[str, Any]) -> DriftAggregate:
        """Add rows given as columns keyed by feature name (arrays or lists of equal length).

        A feature absent from ``columns`` counts as missing (invalid if not nullable) for every
        row; columns that are not features are counted in ``unknown_fields``.
        """
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        if not n:
            return self
        self.rows += n
        for name in columns:
            if name not in self._names:
                self.unknown_fields_total += n
                self.unknown_fields.add(_short(name), n)
        for name, spec in self._specs.items():
            values = columns.get(name)
            if values is None:
                values = np.full(n, None, dtype=object)
            self._add_values(spec, values)
        return self

    def add_records(self, records: Iterable[Any]) -> DriftAggregate:
        """Add captured rows: dicts keyed by feature name (``{"age": 37, "plan": "basic"}``).

        Never raises on data: a wrong-typed value is counted as invalid for its feature, an
        unknown field name in ``unknown_fields``, a record that is not an object in
        ``invalid_records`` (and not in ``rows``). Processed in chunks: memory stays flat.
        """
        stream = iter(records)
        while True:
            batch = list(itertools.islice(stream, RECORD_CHUNK))
            if not batch:
                return self
            chunk = [r for r in batch if type(r) is dict or isinstance(r, Mapping)]
            self.invalid_records += len(batch) - len(chunk)
            if chunk:
                self._add_chunk(chunk)
            del batch, chunk  # free this chunk's records before the next ones are read

    def _add_chunk(self, chunk: list[Mapping[str, Any]]) -> None:
        self.rows += len(chunk)
        names = self._names
        try:  # the common case: every record has every feature
            rows = list(map(self._row_of, chunk))
            width = len(names)
            suspects = [record for record in chunk if len(record) != width]
        except (KeyError, TypeError):
            # A missing key reads as None: missing if nullable, invalid otherwise, like the validator.
            rows = [tuple(record.get(name) for name in self._specs) for record in chunk]
            suspects = chunk
        for record in suspects:
            if not names.issuperset(record):
                for key in record:
                    if key not in names:
                        self.unknown_fields_total += 1
                        self.unknown_fields.add(_short(key), 1)
        for spec, values in zip(self._specs.values(), zip(*rows, strict=True), strict=True):
            self._add_values(spec, values)

    def _add_values(self, spec: _NumericSpec | _CategorySpec, values: Any) -> None:
        state = self._states[spec.name]
        if isinstance(spec, _CategorySpec):
            assert isinstance(state, _CategoryState)
            state.add(_tally_categories(values, spec.index, spec.nullable))
        else:
            assert isinstance(state, _NumericState)
            valid, missing, invalid = _coerce_numeric(values, spec.type, spec.nullable)
            state.add(spec, valid, missing, invalid)

    # ------------------------------------------------------------------ merging and storage
    def merge(self, other: DriftAggregate) -> DriftAggregate:
        """Add ``other``'s counts into this aggregate (in place; returns self)."""
        if other.baseline_id != self.baseline_id:
            raise ValueError(
                f"cannot merge aggregates of different baselines ({self.baseline_id} vs {other.baseline_id})"
            )
        self.rows += other.rows
        self.invalid_records += other.invalid_records
        self.unknown_fields_total += other.unknown_fields_total
        self.unknown_fields.merge(other.unknown_fields)
        for name, state in self._states.items():
            state.merge(other._states[name])  # type: ignore[arg-type]
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready and canonical: equal counts give equal dicts, whatever the merge order."""
        return {
            "format": AGGREGATE_FORMAT,
            "kind": AGGREGATE_KIND,
            "baseline": self.baseline_id,
            "rows": self.rows,
            "invalid_records": self.invalid_records,
            "unknown_fields_total": self.unknown_fields_total,
            "unknown_fields": self.unknown_fields.to_dict(),
            "features": {name: state.to_dict() for name, state in self._states.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], baseline: Mapping[str, Any]) -> DriftAggregate:
        """Restore a stored partial; ``baseline`` must be the one it was computed against."""
        if data.get("kind") != AGGREGATE_KIND or data.get("format") not in AGGREGATE_FORMATS:
            raise ValueError("not a sklambda drift aggregate of a supported format")
        out = cls(baseline)
        if data.get("baseline") != out.baseline_id:
            raise ValueError(f"aggregate was computed against baseline {data.get('baseline')}, not {out.baseline_id}")
        out.rows = int(data["rows"])
        out.invalid_records = int(data["invalid_records"])
        out.unknown_fields_total = int(data["unknown_fields_total"])
        out.unknown_fields = _CappedCounts.from_dict(data.get("unknown_fields"))
        stored = data["features"]
        for name, spec in out._specs.items():
            if name not in stored:
                raise ValueError(f"aggregate lacks feature {name!r}")
            if isinstance(spec, _CategorySpec):
                out._states[name] = _CategoryState.from_dict(spec, stored[name])
            else:
                out._states[name] = _NumericState.from_dict(spec, stored[name])
        return out

    def feature(self, name: str) -> dict[str, Any]:
        """One feature's current counts (the ``to_dict`` form)."""
        return self._states[name].to_dict()


# ============================================================================ evaluation
class FeatureDrift(BaseModel):
    """The verdict on one feature, with the statistics and the reason behind it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    verdict: Verdict
    reasons: list[str]
    psi: float | None = None
    distance: float | None = Field(None, description="KS distance (numeric) or Jensen-Shannon distance (categorical)")
    wasserstein: float | None = Field(
        None, description="Number/integer features: Wasserstein-1 distance divided by the reference std"
    )
    wasserstein_noise: float | None = Field(
        None,
        description="The expected Wasserstein-1 / std between two unshifted samples of these sizes (the noise floor)",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="The thresholds this feature was judged by (its own or the defaults)"
    )
    distance_name: Literal["ks", "jensen_shannon"]
    p_value: float | None = Field(
        None, description="KS asymptotic (numeric) or chi-square (categorical); not used for the verdict"
    )
    test: Literal["ks_asymptotic", "chi2"]
    reference_rows: int
    current_rows: int = Field(description="Current non-missing, valid values the statistics use")
    current_missing: int
    current_invalid: int
    reference_missing_share: float | None = None
    current_missing_share: float | None = None
    reference_mean: float | None = None
    current_mean: float | None = None
    reference_std: float | None = None
    current_std: float | None = None
    current_min: float | None = None
    current_max: float | None = None
    out_of_range_share: float | None = Field(
        None, description="Numeric: share of current values outside the training [min, max]"
    )
    unseen_share: float | None = Field(None, description="Categorical: share of current values not in the schema")


class DriftResult(BaseModel):
    """The verdict on one window of served rows."""

    model_config = ConfigDict(extra="forbid")

    format: int = RESULT_FORMAT
    baseline: str
    rows: int
    verdict: Verdict
    drift_score: float = Field(description="Share of evaluated features that drifted, 0..1")
    drifted_features: int
    evaluated_features: int
    invalid_records: int
    unknown_fields_total: int
    config: DriftConfig
    features: list[FeatureDrift]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.verdict == "drift"]


def psi_groups(reference_counts: np.ndarray, groups: int = 10) -> np.ndarray:
    """For each fine bin, its PSI group: reference deciles made of whole fine bins.

    Bin j joins group floor(groups * reference rows before j / total), capped at groups - 1, so
    each group holds ~1/groups of the training rows; a heavy tie (one bin with 30 % of the rows)
    stays one group and the groups after it shift up. The below-range bin joins the first group,
    the above-range bin the last. Integer arithmetic: deterministic.
    """
    counts = np.asarray(reference_counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(counts.size, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.minimum(groups * before // total, groups - 1)


def _psi(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    ref = np.maximum(reference / reference.sum(), epsilon)
    cur = np.maximum(current / current.sum(), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 0.001 else f"{value:.3f}"


def evaluate(baseline: Mapping[str, Any], aggregate: DriftAggregate, config: DriftConfig | None = None) -> DriftResult:
    """Compare the served rows in ``aggregate`` with the training rows in ``baseline``."""
    from scipy import stats  # scipy is heavy to import; only the evaluation needs it

    _check_baseline(baseline)
    if aggregate.baseline_id != fingerprint(baseline):
        raise ValueError("the aggregate was computed against a different baseline")
    config = config or DriftConfig()
    features: list[FeatureDrift] = []
    for reference in baseline["features"]:
        current = aggregate.feature(reference["name"])
        if reference["type"] == "category":
            features.append(_evaluate_categorical(reference, current, config, stats))
        else:
            features.append(_evaluate_numeric(reference, current, config, stats))
    evaluated = [f for f in features if f.verdict != "insufficient_data"]
    drifted = sum(f.verdict == "drift" for f in evaluated)
    score = drifted / len(evaluated) if evaluated else 0.0
    verdict: Verdict = "insufficient_data" if not evaluated else "drift" if score >= config.drift_share else "ok"
    return DriftResult(
        baseline=aggregate.baseline_id,
        rows=aggregate.rows,
        verdict=verdict,
        drift_score=score,
        drifted_features=drifted,
        evaluated_features=len(evaluated),
        invalid_records=aggregate.invalid_records,
        unknown_fields_total=aggregate.unknown_fields_total,
        config=config,
        features=features,
    )


def _missing_rule(
    reference: Mapping[str, Any], ref_n: int, cur_n: int, cur_missing: int, config: DriftConfig, threshold: float
) -> tuple[float | None, float | None, str | None]:
    ref_share = _share(int(reference["missing"]), ref_n + int(reference["missing"]))
    cur_share = _share(cur_missing, cur_n + cur_missing)
    if ref_share is None or cur_share is None or cur_n + cur_missing < config.min_rows:
        return ref_share, cur_share, None
    reason = None
    if abs(cur_share - ref_share) >= threshold:
        reason = f"missing share {ref_share:.1%} → {cur_share:.1%} (change ≥ {threshold:.0%})"
    return ref_share, cur_share, reason


def _verdict(
    reasons_drift: list[str], checks_ok: list[str], ref_n: int, cur_n: int, config: DriftConfig
) -> tuple[Verdict, list[str]]:
    if reasons_drift:
        return "drift", reasons_drift
    if ref_n == 0:
        return "insufficient_data", ["no reference values in the baseline"]
    if cur_n < config.min_rows:
        return "insufficient_data", [f"{cur_n:,} current values < min_rows {config.min_rows:,}"]
    return "ok", checks_ok


def thresholds_for(reference: Mapping[str, Any], config: DriftConfig) -> dict[str, float]:
    """The thresholds a feature is judged by: its own (the schema's ``drift`` block, carried in the
    baseline) where it has them, the configuration's otherwise."""
    own = reference.get("drift") or {}
    categorical = reference.get("type") == "category"
    out = {
        "psi": float(own.get("psi", config.psi_threshold)),
        "distance": float(own.get("distance", config.js_threshold if categorical else config.ks_threshold)),
        "missing": float(own.get("missing", config.missing_threshold)),
    }
    if reference.get("type") in WASSERSTEIN_TYPES:
        out["wasserstein"] = float(own.get("wasserstein", config.wasserstein_threshold))
    return out


# Booleans are left out: for a 0/1 feature W1 is |change of the share of ones| (the KS distance),
# and dividing it by the std would make one threshold mean different shifts at different base rates.
WASSERSTEIN_TYPES = frozenset({"number", "integer"})
_NOISE_SCALE = math.sqrt(2 / math.pi)  # E|B(u)| = sqrt(2/pi) * sqrt(u (1 - u)) for a Brownian bridge B


@dataclass(frozen=True)
class Wasserstein:
    """W1 between the reference and the current distribution, from their mergeable bin counts."""

    distance: float  # in the feature's units
    noise: float  # the expected W1 between two unshifted samples of these sizes, same units
    detailed: bool  # both sides had the within-bin positions (else bins are taken as uniform)


def _positions(counts: np.ndarray, offsets: np.ndarray | None) -> np.ndarray:
    """Each inner bin's mean position of its values, as a fraction of the bin's width."""
    inner = counts[1:-1].astype(np.float64)
    if offsets is None:
        return np.full(inner.size, 0.5)
    sums = offsets[1:-1].astype(np.float64)
    out = np.full(inner.size, 0.5)
    filled = inner > 0
    out[filled] = (sums[filled] / inner[filled] + 0.5) / OFFSET_RESOLUTION
    return out


def _tail_mean(encoded: Any, n: int) -> float | None:
    if encoded is None:
        return None
    return _decode_exact(encoded) / (n << _SUM_SHIFT)


def _wasserstein(reference: Mapping[str, Any], current: Mapping[str, Any]) -> Wasserstein | None:
    """W1 = ∫ |F_ref(x) - F_cur(x)| dx from the fine bins, without the raw data.

    Inside a bin [a, b) holding a share p of the rows whose mean is a + t (b - a),
    ``∫_a^b F(x) dx = (b - a) (F(a) + p (1 - t))`` exactly, whatever their spread; the aggregate
    keeps t (to 1/2048 of the width) as exact integer sums, so each bin's ``∫ (F_ref - F_cur)``
    is exact, and summing its absolute value per bin is W1 itself except in a bin where the two
    CDFs cross, where it is a lower bound (the error is at most that one bin's width times the
    CDF gap at its edges). Outside the training range there are no edges: there the aggregate
    keeps the exact sums of how far values lie below the minimum / above the maximum, which are
    exactly ``∫ F_cur`` below and ``∫ (1 - F_cur)`` above. Without the within-bin detail (an
    aggregate stored by format 1) both sides are taken as uniform inside each bin, and the tails
    as spread evenly up to the current min / max.
    """
    edges = np.asarray(reference.get("edges") or [], dtype=np.float64)
    if edges.size < 1:
        return None
    ref_counts = np.asarray(reference["counts"], dtype=np.int64)
    cur_counts = np.asarray(current["counts"], dtype=np.int64)
    ref_n, cur_n = int(ref_counts.sum()), int(cur_counts.sum())
    if ref_n == 0 or cur_n == 0:
        return None
    ref_offsets = reference.get("offsets")
    cur_offsets = current.get("offsets")
    detailed = ref_offsets is not None and cur_offsets is not None
    t_ref = _positions(ref_counts, np.asarray(ref_offsets, dtype=np.int64) if detailed else None)
    t_cur = _positions(cur_counts, np.asarray(cur_offsets, dtype=np.int64) if detailed else None)
    with np.errstate(over="ignore", invalid="ignore"):
        widths = np.diff(edges)
        f_ref = np.cumsum(ref_counts)[:-1] / ref_n  # F(edge) = P(X < edge) at every edge
        f_cur = np.cumsum(cur_counts)[:-1] / cur_n
        p_ref, p_cur = ref_counts[1:-1] / ref_n, cur_counts[1:-1] / cur_n
        inner = widths * ((f_ref[:-1] - f_cur[:-1]) + p_ref * (1 - t_ref) - p_cur * (1 - t_cur))
        distance = float(np.abs(inner).sum())

        def tails(side: Mapping[str, Any], counts: np.ndarray, n: int) -> tuple[float, float]:
            below, above = _tail_mean(side.get("below"), n), _tail_mean(side.get("above"), n)
            if below is None or above is None:  # format 1: spread evenly up to the extremes
                low, high = side.get("min"), side.get("max")
                below = counts[0] / n * max(edges[0] - (low if low is not None else edges[0]), 0.0) / 2
                above = counts[-1] / n * max((high if high is not None else edges[-1]) - edges[-1], 0.0) / 2
            return float(below), float(above)

        ref_below, ref_above = tails(reference, ref_counts, ref_n)
        cur_below, cur_above = tails(current, cur_counts, cur_n)
        distance += abs(ref_below - cur_below) + abs(cur_above - ref_above)
        # Noise: sqrt(n) (F_n - F) tends to a Brownian bridge B(F), so E W1 between two unshifted samples
        # ~ sqrt(2/pi) ∫ sqrt(F (1 - F)) dx * sqrt(1/n + 1/m); inside each bin F is taken to step at t.
        left, right = f_ref[:-1], f_ref[:-1] + p_ref
        spread = t_ref * np.sqrt(left * (1 - left)) + (1 - t_ref) * np.sqrt(np.clip(right * (1 - right), 0, None))
        noise = _NOISE_SCALE * float(np.sum(widths * spread)) * math.sqrt(1 / ref_n + 1 / cur_n)
    if not (math.isfinite(distance) and math.isfinite(noise)):
        return None
    return Wasserstein(distance=distance, noise=noise, detailed=detailed)


def _evaluate_numeric(
    reference: Mapping[str, Any], current: Mapping[str, Any], config: DriftConfig, stats: Any
) -> FeatureDrift:
    limits = thresholds_for(reference, config)
    ref_counts = np.asarray(reference["counts"], dtype=np.int64)
    cur_counts = np.asarray(current["counts"], dtype=np.int64)
    ref_n, cur_n = int(ref_counts.sum()), int(cur_counts.sum())
    ref_missing_share, cur_missing_share, missing_reason = _missing_rule(
        reference, ref_n, cur_n, int(current["missing"]), config, limits["missing"]
    )
    mean, std = _mean_std(cur_n, _decode_exact(current["sum"]), _decode_exact(current["sumsq"]))
    base = {
        "name": reference["name"],
        "type": reference["type"],
        "distance_name": "ks",
        "test": "ks_asymptotic",
        "reference_rows": ref_n,
        "current_rows": cur_n,
        "current_missing": int(current["missing"]),
        "current_invalid": int(current["invalid"]),
        "reference_missing_share": ref_missing_share,
        "current_missing_share": cur_missing_share,
        "reference_mean": reference.get("mean"),
        "reference_std": reference.get("std"),
        "current_mean": mean,
        "current_std": std,
        "current_min": current.get("min"),
        "current_max": current.get("max"),
        "thresholds": limits,
    }
    if ref_n == 0 or cur_n == 0 or cur_n < config.min_rows:
        verdict, reasons = _verdict([missing_reason] if missing_reason else [], [], ref_n, cur_n, config)
        return FeatureDrift(verdict=verdict, reasons=reasons, **base)

    # KS distance at the fine bin edges: P(X < edge) on both sides (a lower bound of exact KS).
    ref_cdf = np.cumsum(ref_counts)[:-1] / ref_n
    cur_cdf = np.cumsum(cur_counts)[:-1] / cur_n
    ks = float(np.max(np.abs(ref_cdf - cur_cdf))) if ref_cdf.size else 0.0
    effective = ref_n * cur_n / (ref_n + cur_n)
    p_value = float(stats.kstwobign.sf(ks * math.sqrt(effective))) if ks > 0 else 1.0

    groups = psi_groups(ref_counts, config.psi_bins)
    width = int(groups.max()) + 1
    psi = _psi(
        np.bincount(groups, weights=ref_counts, minlength=width),
        np.bincount(groups, weights=cur_counts, minlength=width),
        config.epsilon,
    )
    out_of_range = (int(cur_counts[0]) + int(cur_counts[-1])) / cur_n if ref_counts.size > 1 else 0.0

    drift_reasons = [missing_reason] if missing_reason else []
    if psi >= limits["psi"]:
        drift_reasons.append(f"PSI {_fmt(psi)} ≥ {limits['psi']:g}")
    if ks >= limits["distance"]:
        drift_reasons.append(f"KS distance {_fmt(ks)} ≥ {limits['distance']:g}")
    ok = [f"PSI {_fmt(psi)} < {limits['psi']:g}", f"KS distance {_fmt(ks)} < {limits['distance']:g}"]

    w_norm = w_noise = None
    sigma = reference.get("std")
    if "wasserstein" in limits and sigma:
        w = _wasserstein(reference, current)
        if w is not None:
            w_norm, w_noise = w.distance / float(sigma), w.noise / float(sigma)
            limit, floor = limits["wasserstein"], config.wasserstein_noise_factor * w_noise
            if w_norm >= limit and w_norm >= floor:
                drift_reasons.append(f"W₁/σ {_fmt(w_norm)} ≥ {limit:g}")
            elif w_norm >= limit:
                ok.append(
                    f"W₁/σ {_fmt(w_norm)} ≥ {limit:g} but within sampling noise at {cur_n:,} rows "
                    f"(< {config.wasserstein_noise_factor:g} × {_fmt(w_noise)})"
                )
            else:
                ok.append(f"W₁/σ {_fmt(w_norm)} < {limit:g}")
    verdict, reasons = _verdict(drift_reasons, ok, ref_n, cur_n, config)
    return FeatureDrift(
        verdict=verdict,
        reasons=reasons,
        psi=psi,
        distance=ks,
        wasserstein=w_norm,
        wasserstein_noise=w_noise,
        p_value=p_value,
        out_of_range_share=out_of_range,
        **base,
    )


def _evaluate_categorical(
    reference: Mapping[str, Any], current: Mapping[str, Any], config: DriftConfig, stats: Any
) -> FeatureDrift:
    from scipy.spatial.distance import jensenshannon

    limits = thresholds_for(reference, config)
    ref = np.asarray([*reference["counts"], reference["unseen"]], dtype=np.float64)
    cur = np.asarray([*current["counts"], current["unseen"]], dtype=np.float64)
    ref_n, cur_n = int(ref.sum()), int(cur.sum())
    ref_missing_share, cur_missing_share, missing_reason = _missing_rule(
        reference, ref_n, cur_n, int(current["missing"]), config, limits["missing"]
    )
    base = {
        "name": reference["name"],
        "type": "category",
        "distance_name": "jensen_shannon",
        "test": "chi2",
        "reference_rows": ref_n,
        "current_rows": cur_n,
        "current_missing": int(current["missing"]),
        "current_invalid": int(current["invalid"]),
        "reference_missing_share": ref_missing_share,
        "current_missing_share": cur_missing_share,
        "thresholds": limits,
    }
    if ref_n == 0 or cur_n == 0 or cur_n < config.min_rows:
        verdict, reasons = _verdict([missing_reason] if missing_reason else [], [], ref_n, cur_n, config)
        return FeatureDrift(verdict=verdict, reasons=reasons, **base)

    js = float(jensenshannon(ref / ref_n, cur / cur_n, base=2))
    js = 0.0 if not math.isfinite(js) else min(max(js, 0.0), 1.0)
    used = (ref + cur) > 0
    if used.sum() >= 2:
        p_value = float(stats.chi2_contingency(np.vstack([ref[used], cur[used]]), correction=False).pvalue)
    else:
        p_value = 1.0
    psi = _psi(ref, cur, config.epsilon)

    drift_reasons = [missing_reason] if missing_reason else []
    if psi >= limits["psi"]:
        drift_reasons.append(f"PSI {_fmt(psi)} ≥ {limits['psi']:g}")
    if js >= limits["distance"]:
        drift_reasons.append(f"Jensen-Shannon distance {_fmt(js)} ≥ {limits['distance']:g}")
    ok = [
        f"PSI {_fmt(psi)} < {limits['psi']:g}",
        f"Jensen-Shannon distance {_fmt(js)} < {limits['distance']:g}",
    ]
    verdict, reasons = _verdict(drift_reasons, ok, ref_n, cur_n, config)
    return FeatureDrift(
        verdict=verdict,
        reasons=reasons,
        psi=psi,
        distance=js,
        p_value=p_value,
        unseen_share=float(cur[-1]) / cur_n,
        **base,
    )
