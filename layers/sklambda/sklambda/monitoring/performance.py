"""Label-free performance estimation for classifiers (confidence-based, "CBPE").

Labels arrive late or never; the served probabilities arrive with every row. If the model's
probabilities are *calibrated* (of the rows scored 0.8, 80 % are positive), the expected number
of correct predictions in a window follows from the probabilities alone, and so do the expected
confusion matrix, F1 and ROC AUC. That is NannyML's CBPE; sklambda computes it from mergeable
counts, with numpy only.

1. **Calibration** (:func:`fit_calibration`, at publish time, stored as ``calibration.json``
   beside ``baseline.json``). On the held-out rows: the score is the positive class's probability
   (binary) or the predicted class's probability (multiclass), binned into ``SCORE_BINS`` equal
   bins of [0, 1]; per bin, the share of rows that were positive (binary) / correct (multiclass);
   isotonic regression (pool adjacent violators, weighted by the bin counts) over the bins makes
   it monotone, and empty bins are interpolated. The result is one number per bin: the
   calibrated probability ``c[b]``. Models rarely are calibrated out of the box (a random
   forest's probabilities are squeezed towards 0.5): this table is what makes the estimate honest.
2. **Aggregate** (:class:`ScoreAggregate`, in the drift job). Per window and model version: how
   many served rows fell into each score bin, per predicted class for a binary model (2 x 200
   integers), and how many rows had no usable probabilities. Integer counts: ``merge`` is exact.
3. **Estimate** (:func:`estimate`). Binary, positive class p: expected TP = Σ_b n[pred=p, b] c[b],
   FP = Σ_b n[pred=p, b] (1 - c[b]), FN = Σ_b n[pred≠p, b] c[b], TN likewise; accuracy =
   (TP + TN) / n, F1 = 2 TP / (2 TP + FP + FN), ROC AUC = the area under the expected ROC curve
   (each bin holds c[b] n[b] expected positives and (1 - c[b]) n[b] negatives; ties within a
   bin count half). Multiclass: accuracy = Σ_b n[b] c[b] / n. The same computation on the
   held-out rows gives the reference the window is compared with (``drop``).

What it cannot see: **concept drift**. The estimate assumes that P(label | score) — the
calibration — is the one measured on the held-out rows. It follows covariate shift (more rows
where the model is unsure: the estimate falls), but if the world changes so that the same inputs
now mean another label (P(y | x) moves), the scores do not change and neither does the estimate.
Only labels (``ModelAccuracy`` from ``POST /feedback``) see that. A calibration fitted on rows
the model was trained on is over-confident and the estimate optimistic: publish with a real holdout.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CALIBRATION_FORMAT = 1
CALIBRATION_KIND = "sklambda.performance.calibration"
SCORES_FORMAT = 1
SCORES_KIND = "sklambda.performance.scores"
SCORE_BINS = 200
MIN_CALIBRATION_ROWS = 100

Mode = Literal["binary", "multiclass"]


# ============================================================================ labels
def _label_key(value: Any) -> tuple[str, Any] | None:
    """A hashable key under which equal labels meet: the rule of ``feedback.same_label`` (1 and 1.0
    are one class, True and 1 are not)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("str", value)
    return None


def _class_index(classes: Sequence[Any]) -> dict[tuple[str, Any], int]:
    index: dict[tuple[str, Any], int] = {}
    for i, value in enumerate(classes):
        key = _label_key(value)
        if key is not None:
            index.setdefault(key, i)
    return index


def _bins(scores: np.ndarray, bins: int = SCORE_BINS) -> np.ndarray:
    return np.clip(np.floor(scores * bins), 0, bins - 1).astype(np.int64)


# ============================================================================ calibration
def isotonic_bins(positives: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Monotone per-bin probabilities by *centred* isotonic regression over the score bins.

    Weighted pool-adjacent-violators over the non-empty bins (value positives / counts, weight
    counts) gives blocks of bins with one value each; each block's value is then placed at the
    block's weighted centre and the table interpolated linearly between those centres (held
    constant beyond the outermost ones). Plain isotonic regression is a step function, and rows
    in one flat step are indistinguishable to the estimate: every step would count as a tie in
    the ROC AUC and bias it towards 0.5. Centring keeps the fit monotone without the steps
    (Oron & Flournoy, "Centered isotonic regression", 2017).
    """
    counts = np.asarray(counts, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.float64)
    filled = np.flatnonzero(counts > 0)
    if filled.size == 0:
        raise ValueError("no rows to calibrate on")
    centres = (np.arange(counts.size) + 0.5) / counts.size
    values: list[float] = []
    weights: list[float] = []
    where: list[float] = []  # weighted centre of each block, in score units
    for b in filled:
        values.append(positives[b] / counts[b])
        weights.append(counts[b])
        where.append(centres[b])
        while len(values) > 1 and values[-2] >= values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            where[-2] = (where[-2] * weights[-2] + where[-1] * weights[-1]) / w
            weights[-2] = w
            del values[-1], weights[-1], where[-1]
    # Beyond the held-out rows' scores there is nothing to measure: the table runs linearly to
    # c = 0 at score 0 and c = 1 at score 1 (a score of 1 taken at its word) rather than staying
    # flat, which would make every row out there a tie.
    xs = np.concatenate([[0.0], where, [1.0]])
    ys = np.concatenate([[0.0], values, [1.0]])
    return np.interp(centres, xs, ys)


def fit_calibration(
    classes: Sequence[Any],
    probabilities: np.ndarray,
    predictions: Sequence[Any],
    labels: Sequence[Any],
    *,
    source: str = "held-out",
) -> tuple[dict[str, Any] | None, str | None]:
    """``(calibration.json content, None)``, or ``(None, why not)``.

    ``probabilities`` are the model's (rows, classes) answers on held-out rows, in ``classes``
    order; ``predictions`` its predicted labels for them, ``labels`` the true ones.
    """
    classes = list(classes)
    proba = np.asarray(probabilities, dtype=np.float64)
    if len(classes) < 2:
        return None, "a classifier with fewer than two classes"
    if proba.ndim != 2 or proba.shape[1] != len(classes) or not proba.shape[0] == len(labels) == len(predictions):
        return None, "probabilities do not match the classes and rows"
    rows = proba.shape[0]
    if rows < MIN_CALIBRATION_ROWS:
        return None, f"{rows} held-out rows; at least {MIN_CALIBRATION_ROWS} are needed to calibrate"
    if not np.isfinite(proba).all():
        return None, "non-finite probabilities on the held-out rows"
    index = _class_index(classes)
    predicted = _predicted_indices(predictions, proba, index)
    truth = np.asarray([index.get(k, -1) if (k := _label_key(y)) is not None else -1 for y in labels])
    mode: Mode = "binary" if len(classes) == 2 else "multiclass"
    if mode == "binary":
        scores, outcome = proba[:, 1], (truth == 1)
    else:
        scores, outcome = proba[np.arange(rows), predicted], (truth == predicted)
    if outcome.all() or not outcome.any():
        what = "positive" if mode == "binary" else "correct"
        return None, f"the held-out rows are all {what} or all not: nothing to calibrate against"
    slot = _bins(scores)
    counts = np.bincount(slot, minlength=SCORE_BINS)
    hits = np.bincount(slot, weights=outcome.astype(np.float64), minlength=SCORE_BINS)
    table = isotonic_bins(hits, counts)
    calibration: dict[str, Any] = {
        "format": CALIBRATION_FORMAT,
        "kind": CALIBRATION_KIND,
        "mode": mode,
        "classes": classes,
        "positive_class": classes[1] if mode == "binary" else None,
        "score": "positive_class_probability" if mode == "binary" else "predicted_class_probability",
        "bins": SCORE_BINS,
        "calibrated": [round(float(v), 9) for v in table],
        "source": source,
        "rows": rows,
    }
    reference = ScoreAggregate(calibration)
    reference.add_arrays(proba, predicted)
    realised = _realised(mode, predicted, truth, scores)
    calibration["reference"] = {
        "rows": rows,
        "realised": realised,
        "estimated": _estimate_counts(calibration, reference.counts),
        "counts": reference.counts.tolist(),
    }
    return calibration, None


def _realised(mode: Mode, predicted: np.ndarray, truth: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The metrics the labels give on the held-out rows (what the estimate is checked against there)."""
    out = {"accuracy": float(np.mean(predicted == truth))}
    if mode == "binary":
        tp = float(np.sum((predicted == 1) & (truth == 1)))
        fp = float(np.sum((predicted == 1) & (truth != 1)))
        fn = float(np.sum((predicted != 1) & (truth == 1)))
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        auc = roc_auc(scores, truth == 1)
        if auc is not None:
            out["roc_auc"] = auc
    return {k: round(v, 6) for k, v in out.items()}


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """The exact ROC AUC of scores against 0/1 outcomes (ties count half): Mann-Whitney from ranks."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks of ties
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def check_calibration(calibration: Mapping[str, Any]) -> None:
    if not isinstance(calibration, Mapping) or calibration.get("kind") != CALIBRATION_KIND:
        raise ValueError("not a sklambda calibration (kind is missing or wrong)")
    if calibration.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"unsupported calibration format {calibration.get('format')!r}")
    if len(calibration.get("calibrated") or []) != int(calibration.get("bins", 0)):
        raise ValueError("calibration table does not match its bins")


def _fingerprint(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _predicted_indices(
    predictions: Sequence[Any], proba: np.ndarray, index: Mapping[tuple[str, Any], int]
) -> np.ndarray:
    """The served prediction's class index; the argmax of the probabilities when it names no class."""
    kinds = set(map(type, predictions))
    if len(kinds) == 1 and kinds <= {int, str, bool}:  # the usual case: one label type, few distinct values
        distinct, inverse = np.unique(np.asarray(predictions), return_inverse=True)
        slots = [index.get(k, -1) if (k := _label_key(v)) is not None else -1 for v in distinct.tolist()]
        found = np.asarray(slots, dtype=np.int64)[inverse.ravel()]
    else:
        found = np.fromiter(
            (index.get(k, -1) if (k := _label_key(p)) is not None else -1 for p in predictions),
            dtype=np.int64,
            count=len(predictions),
        )
    unknown = found < 0
    if unknown.any():
        found[unknown] = np.argmax(proba[unknown], axis=1)
    return found


# ============================================================================ aggregate
class ScoreAggregate:
    """Served scores of one model version in the calibration's bins: streaming, mergeable.

    Binary models: counts[k, b] = rows predicted as class k whose positive-class probability fell
    in bin b. Multiclass: counts[0, b] = rows whose predicted class's probability fell in bin b.
    ``unscored`` counts rows without usable probabilities (none, wrong length, not finite).
    """

    def __init__(self, calibration: Mapping[str, Any]) -> None:
        check_calibration(calibration)
        self.calibration_id = _fingerprint(calibration)
        self.mode: Mode = calibration["mode"]
        self.bins = int(calibration["bins"])
        self.classes = list(calibration["classes"])
        self._index = _class_index(self.classes)
        self.counts = np.zeros((2 if self.mode == "binary" else 1, self.bins), dtype=np.int64)
        self.unscored = 0

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def add_records(self, records: Iterable[Any]) -> ScoreAggregate:
        """Add captured rows: objects (or dicts) with ``probabilities`` (one per class) and ``prediction``."""
        predictions: list[Any] = []
        probabilities: list[Any] = []
        for record in records:
            predictions.append(_field(record, "prediction"))
            probabilities.append(_field(record, "probabilities"))
        return self.add(predictions, probabilities)

    def add(self, predictions: Sequence[Any], probabilities: Sequence[Sequence[float] | None]) -> ScoreAggregate:
        """Add rows given as their served predictions and probability lists (row i of each is one row)."""
        # A row counts when it is a list of one int or float (not bool) per class, all finite: decided
        # per row, so whichever path a chunk takes, each row is counted the same way.
        width = len(self.classes)
        if len(predictions) != len(probabilities):
            raise ValueError("predictions and probabilities differ in length")
        matrix: np.ndarray | None = None
        kept: list[Any] = list(predictions)
        if set(map(type, probabilities)) <= {list, tuple}:
            try:
                matrix = np.asarray(probabilities, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                matrix = None
            if matrix is not None and (
                matrix.shape != (len(probabilities), width)
                or not set(map(type, itertools.chain.from_iterable(probabilities))) <= {int, float}  # type: ignore[arg-type]
            ):
                matrix = None
        if matrix is None:
            rows: list[list[float]] = []
            kept = []
            for prediction, proba in zip(predictions, probabilities, strict=True):
                if not isinstance(proba, list | tuple) or len(proba) != width:
                    self.unscored += 1
                    continue
                rows.append([_float(v) for v in proba])
                kept.append(prediction)
            if not rows:
                return self
            matrix = np.asarray(rows, dtype=np.float64)
        good = np.isfinite(matrix).all(axis=1)
        self.unscored += int((~good).sum())
        if not good.all():
            matrix = matrix[good]
            kept = [kept[i] for i in np.flatnonzero(good)]
        if matrix.shape[0]:
            self.add_arrays(matrix, _predicted_indices(kept, matrix, self._index))
        return self

    def add_arrays(self, proba: np.ndarray, predicted: np.ndarray) -> ScoreAggregate:
        """Add rows given as a (rows, classes) probability matrix and predicted class indices."""
        if self.mode == "binary":
            slot = _bins(proba[:, 1], self.bins)
            row = (predicted == 1).astype(np.int64)
        else:
            slot = _bins(proba[np.arange(proba.shape[0]), predicted], self.bins)
            row = np.zeros(slot.size, dtype=np.int64)
        self.counts += np.bincount(row * self.bins + slot, minlength=self.counts.size).reshape(self.counts.shape)
        return self

    def merge(self, other: ScoreAggregate) -> ScoreAggregate:
        if other.calibration_id != self.calibration_id:
            raise ValueError("cannot merge score aggregates of different calibrations")
        self.counts += other.counts
        self.unscored += other.unscored
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SCORES_FORMAT,
            "kind": SCORES_KIND,
            "calibration": self.calibration_id,
            "counts": self.counts.tolist(),
            "unscored": self.unscored,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], calibration: Mapping[str, Any]) -> ScoreAggregate:
        if data.get("kind") != SCORES_KIND or data.get("format") != SCORES_FORMAT:
            raise ValueError("not a sklambda score aggregate of a supported format")
        out = cls(calibration)
        if data.get("calibration") != out.calibration_id:
            raise ValueError("score aggregate was computed against another calibration")
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != out.counts.shape:
            raise ValueError(f"score aggregate has shape {counts.shape}, expected {out.counts.shape}")
        out.counts, out.unscored = counts, int(data["unscored"])
        return out


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


# ============================================================================ estimate
def _estimate_counts(calibration: Mapping[str, Any], counts: np.ndarray) -> dict[str, float]:
    c = np.asarray(calibration["calibrated"], dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n = float(counts.sum())
    if n == 0:
        return {}
    if calibration["mode"] != "binary":
        return {"accuracy": round(float(counts[0] @ c) / n, 6)}
    negative, positive = counts[0], counts[1]  # rows predicted as the other class / as the positive class
    tp, fp = float(positive @ c), float(positive @ (1 - c))
    fn, tn = float(negative @ c), float(negative @ (1 - c))
    out = {"accuracy": (tp + tn) / n, "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0}
    # Expected ROC curve: per bin c n positives and (1 - c) n negatives; a negative is outranked by
    # every expected positive in higher bins and by half of those in its own bin.
    both = negative + positive
    pos, neg = both * c, both * (1 - c)
    if pos.sum() > 0 and neg.sum() > 0:
        above = np.cumsum(pos[::-1])[::-1] - pos  # expected positives in strictly higher bins
        out["roc_auc"] = float(np.sum(neg * (above + pos / 2)) / (pos.sum() * neg.sum()))
    return {k: round(v, 6) for k, v in out.items()}


class PerformanceEstimate(BaseModel):
    """Estimated quality of one window of served rows, with the reference it is compared with."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["estimated", "insufficient_data", "unavailable"]
    reason: str | None = None
    mode: Mode | None = None
    positive_class: str | int | float | bool | None = None
    rows: int = Field(0, description="Served rows with usable probabilities in the window")
    unscored: int = Field(0, description="Served rows without usable probabilities (not counted)")
    estimated: dict[str, float] = Field(default_factory=dict, description="accuracy (and f1, roc_auc for binary)")
    reference: dict[str, float] = Field(
        default_factory=dict, description="The same estimate on the held-out rows the calibration was fitted on"
    )
    reference_realised: dict[str, float] = Field(
        default_factory=dict, description="What the labels gave on those held-out rows"
    )
    drop: dict[str, float] = Field(default_factory=dict, description="reference - estimated, per metric")
    calibration_rows: int | None = None
    calibration_source: str | None = None
    # Share of served rows per calibrated score bin next to the held-out rows' (for the report's chart)
    score_shares: dict[str, list[float]] = Field(default_factory=dict)

    @classmethod
    def unavailable(cls, reason: str) -> PerformanceEstimate:
        return cls(status="unavailable", reason=reason)


def estimate(calibration: Mapping[str, Any], aggregate: ScoreAggregate, *, min_rows: int = 500) -> PerformanceEstimate:
    """The label-free estimate of a window, or why there is none."""
    check_calibration(calibration)
    if aggregate.calibration_id != _fingerprint(calibration):
        raise ValueError("the score aggregate was computed against a different calibration")
    reference = calibration.get("reference") or {}
    common: dict[str, Any] = {
        "mode": calibration["mode"],
        "positive_class": calibration.get("positive_class"),
        "rows": aggregate.rows,
        "unscored": aggregate.unscored,
        "reference": dict(reference.get("estimated") or {}),
        "reference_realised": dict(reference.get("realised") or {}),
        "calibration_rows": calibration.get("rows"),
        "calibration_source": calibration.get("source"),
    }
    if aggregate.rows < min_rows:
        why = f"{aggregate.rows:,} served rows with probabilities < min_rows {min_rows:,}"
        return PerformanceEstimate(status="insufficient_data", reason=why, **common)
    estimated = _estimate_counts(calibration, aggregate.counts)
    drop = {k: round(common["reference"][k] - v, 6) for k, v in estimated.items() if k in common["reference"]}
    ref_counts = np.asarray(reference.get("counts") or np.zeros_like(aggregate.counts), dtype=np.float64).sum(axis=0)
    cur_counts = aggregate.counts.sum(axis=0).astype(np.float64)
    shares = {
        "reference": [round(float(v), 6) for v in ref_counts / max(ref_counts.sum(), 1.0)],
        "current": [round(float(v), 6) for v in cur_counts / max(cur_counts.sum(), 1.0)],
        "calibrated": [float(v) for v in calibration["calibrated"]],
    }
    return PerformanceEstimate(status="estimated", estimated=estimated, drop=drop, score_shares=shares, **common)
