"""Label-free performance estimation (CBPE) from the served probabilities.

On a population that drifts towards the model's decision boundary the true accuracy drops; the
estimate must follow it, within a tolerance measured here (and reported in the README), for a
calibrated model (logistic regression) and for uncalibrated ones (random forest, gradient
boosting). What it cannot see, concept drift, is shown too: the labels change, the estimate not."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from threadpoolctl import threadpool_limits

from sklambda.monitoring.performance import (
    MIN_CALIBRATION_ROWS,
    ScoreAggregate,
    estimate,
    fit_calibration,
    isotonic_bins,
    roc_auc,
)

# Measured worst |estimate - truth| over 3 models x 3 seeds x 4 populations of 20,000 rows (4,000
# held-out rows calibrate): accuracy 0.030, F1 0.033, ROC AUC 0.037 (the forest; logistic regression
# 0.015 / 0.018 / 0.011). The estimate errs optimistic as the population nears the boundary: the
# models' errors there are not only where their scores say. The bounds leave a little room.
TOLERANCE = {"accuracy": 0.04, "f1": 0.04, "roc_auc": 0.05}
SPREADS = [1.5, 1.0, 0.6, 0.3]  # 1.5 = the training population; smaller = closer to the boundary


def population(n: int, rng: np.random.Generator, spread: float, *, flipped: bool = False):
    """x1 carries most of the signal; narrowing its spread moves rows to the boundary (harder)."""
    x1, x2, x3 = rng.normal(0, spread, n), rng.normal(0, 1, n), rng.normal(0, 1, n)
    logit = 2.5 * x1 + 0.8 * x2 - 0.6 * x3 * x2
    if flipped:  # concept drift: the same inputs now mean the other label
        logit = -logit
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return np.column_stack([x1, x2, x3]), y


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP's threads fight over a shared machine's cores (20x slower for gradient boosting here)."""
    with threadpool_limits(1):
        yield


MODELS = {
    "logistic": lambda: LogisticRegression(),
    "forest": lambda: RandomForestClassifier(100, min_samples_leaf=5, random_state=0, n_jobs=1),
    "boosting": lambda: HistGradientBoostingClassifier(max_iter=50, random_state=0),
}


@functools.cache
def _fitted(name: str, seed: int):
    rng = np.random.default_rng(seed)
    x, y = population(12_000, rng, SPREADS[0])
    model = MODELS[name]().fit(x[:8_000], y[:8_000])
    calibration, why = fit_calibration(
        model.classes_.tolist(), model.predict_proba(x[8_000:]), model.predict(x[8_000:]).tolist(), y[8_000:].tolist()
    )
    assert why is None
    return model, calibration


def fitted(name: str, seed: int):
    """A model fitted on the training population, calibrated on 4,000 held-out rows (cached), and a
    generator for fresh populations."""
    model, calibration = _fitted(name, seed)
    return model, calibration, np.random.default_rng(seed + 1_000)


def estimated(model, calibration, x):
    proba, predicted = model.predict_proba(x), model.predict(x)
    aggregate = ScoreAggregate(calibration).add(predicted.tolist(), proba.tolist())
    return estimate(calibration, aggregate), proba, predicted


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_estimate_follows_a_drop_in_accuracy_under_covariate_shift(name, seed):
    model, calibration, rng = fitted(name, seed)
    truths, estimates = [], []
    for spread in SPREADS:
        x, y = population(20_000, rng, spread)
        result, proba, predicted = estimated(model, calibration, x)
        assert result.status == "estimated" and result.rows == 20_000
        truth = {
            "accuracy": float(np.mean(predicted == y)),
            "f1": float(f1_score(y, predicted)),
            "roc_auc": float(roc_auc_score(y, proba[:, 1])),
        }
        for metric, bound in TOLERANCE.items():
            assert abs(result.estimated[metric] - truth[metric]) <= bound, (spread, metric, result.estimated, truth)
        truths.append(truth["accuracy"])
        estimates.append(result.estimated["accuracy"])
    assert truths[0] - truths[-1] > 0.15, "the shift really costs accuracy"
    assert all(a > b for a, b in zip(estimates, estimates[1:], strict=False)), "the estimate falls with it"
    # The drop the alarm watches: the held-out rows' estimate minus the window's.
    assert result.drop["accuracy"] == pytest.approx(calibration["reference"]["estimated"]["accuracy"] - estimates[-1])
    assert result.drop["accuracy"] > 0.1


def test_on_the_held_out_rows_the_estimate_is_what_the_labels_say():
    for name in MODELS:
        _, calibration, _ = fitted(name, 0)
        reference = calibration["reference"]
        assert reference["rows"] == 4_000
        for metric in ("accuracy", "f1", "roc_auc"):
            assert reference["estimated"][metric] == pytest.approx(reference["realised"][metric], abs=0.01), name


def test_concept_drift_is_invisible_to_it():
    """What CBPE cannot see: P(label | inputs) changes, the inputs and so the scores do not."""
    model, calibration, rng = fitted("logistic", 3)
    x, y = population(20_000, rng, SPREADS[0])
    before, _, predicted = estimated(model, calibration, x)
    x_later, y_later = population(20_000, rng, SPREADS[0], flipped=True)
    after, _, predicted_later = estimated(model, calibration, x_later)
    realised_before, realised_after = np.mean(predicted == y), np.mean(predicted_later == y_later)
    assert realised_before - realised_after > 0.6, "the labels collapse"
    assert abs(before.estimated["accuracy"] - after.estimated["accuracy"]) < 0.01, "the estimate does not move"


def test_multiclass_accuracy_is_estimated_from_the_predicted_class_probability():
    rng = np.random.default_rng(8)

    def rows(n: int, spread: float):
        """P(label | x) is fixed (a softmax of x); only where x falls changes."""
        x = rng.normal(0, spread, (n, 2))
        logits = x @ np.array([[2.0, -1.0, -1.0], [0.0, 1.7, -1.7]])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        label = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
        return x, np.array(["a", "b", "c"])[label]

    x, y = rows(12_000, 1.5)
    model = RandomForestClassifier(100, min_samples_leaf=5, random_state=0).fit(x[:8_000], y[:8_000])
    calibration, why = fit_calibration(
        model.classes_.tolist(), model.predict_proba(x[8_000:]), model.predict(x[8_000:]).tolist(), y[8_000:].tolist()
    )
    assert why is None and calibration["mode"] == "multiclass" and calibration["positive_class"] is None
    for spread in (1.5, 0.8, 0.4):
        xs, ys = rows(20_000, spread)
        result, _, predicted = estimated(model, calibration, xs)
        assert set(result.estimated) == {"accuracy"}
        assert result.estimated["accuracy"] == pytest.approx(np.mean(predicted == ys), abs=0.04), spread


def test_the_served_prediction_decides_the_class_and_labels_compare_like_feedback():
    rng = np.random.default_rng(9)
    proba = rng.dirichlet([1, 1], 2_000)
    labels = (rng.random(2_000) < proba[:, 1]).astype(int)
    calibration, _ = fit_calibration([0, 1], proba, (proba[:, 1] >= 0.5).astype(int).tolist(), labels.tolist())
    a = ScoreAggregate(calibration).add([1.0] * 10, [[0.9, 0.1]] * 10)  # 1.0 names class 1, as /feedback says
    b = ScoreAggregate(calibration).add([True] * 10, [[0.9, 0.1]] * 10)  # True names no class: argmax (class 0)
    assert a.counts[1].sum() == 10 and b.counts[0].sum() == 10


def test_rows_without_usable_probabilities_are_counted_not_scored():
    rng = np.random.default_rng(10)
    proba = rng.dirichlet([1, 1], 500)
    calibration, _ = fit_calibration([0, 1], proba, (proba[:, 1] > 0.5).astype(int).tolist(), [0, 1] * 250)
    aggregate = ScoreAggregate(calibration).add(
        [0, 1, 0, 1, 0, 1], [None, [0.5], [0.2, 0.8], [float("nan"), 0.5], "x", [0.3, "y"]]
    )
    assert aggregate.unscored == 5 and aggregate.rows == 1
    records = [{"prediction": 1, "probabilities": [0.2, 0.8]}, {"prediction": 0}]
    assert ScoreAggregate(calibration).add_records(records).unscored == 1


def test_score_aggregates_merge_exactly_and_round_trip():
    model, calibration, rng = fitted("logistic", 4)
    x, _ = population(9_000, rng, 1.0)
    proba, predicted = model.predict_proba(x).tolist(), model.predict(x).tolist()
    whole = ScoreAggregate(calibration).add(predicted, proba).to_dict()
    parts = [ScoreAggregate(calibration).add(predicted[a : a + 3_000], proba[a : a + 3_000]) for a in (6_000, 0, 3_000)]
    merged = ScoreAggregate.from_dict(json.loads(json.dumps(parts[0].to_dict())), calibration)
    for part in parts[1:]:
        merged.merge(part)
    assert merged.to_dict() == whole
    other, _ = fit_calibration([0, 1], np.tile([[0.3, 0.7]], (200, 1)), [1] * 200, [0, 1] * 100)
    with pytest.raises(ValueError, match="calibration"):
        ScoreAggregate.from_dict(whole, other)
    with pytest.raises(ValueError, match="calibration"):
        ScoreAggregate(other).merge(merged)


def test_too_few_rows_give_no_estimate_and_bad_holdouts_no_calibration():
    model, calibration, rng = fitted("logistic", 6)
    x, _ = population(499, rng, 1.0)
    result, _, _ = estimated(model, calibration, x)
    assert result.status == "insufficient_data" and result.estimated == {} and "min_rows 500" in (result.reason or "")
    proba = np.tile([[0.4, 0.6]], (MIN_CALIBRATION_ROWS - 1, 1))
    assert fit_calibration([0, 1], proba, [1] * len(proba), [1] * len(proba))[1].startswith("99 held-out rows")
    proba = np.tile([[0.4, 0.6]], (300, 1))
    assert "all positive" in fit_calibration([0, 1], proba, [1] * 300, [1] * 300)[1]
    assert fit_calibration(["only"], proba[:, :1], ["only"] * 300, ["only"] * 300)[1] is not None


def test_isotonic_table_is_monotone_and_pools_violators():
    counts = np.zeros(10)
    positives = np.zeros(10)
    counts[[1, 3, 4, 8]] = [10, 10, 10, 10]
    positives[[1, 3, 4, 8]] = [2, 6, 4, 9]  # bins 3 and 4 violate: pooled to 0.5
    table = isotonic_bins(positives, counts)
    assert np.all(np.diff(table) >= 0)
    assert table[1] == pytest.approx(0.2) and table[8] == pytest.approx(0.9)
    assert table[3] < 0.5 < table[4] or table[3] == table[4] == pytest.approx(0.5)
    assert table[0] < table[1] and table[9] > table[8], "runs on to 0 and 1 beyond the data, no flat ties"


def test_exact_roc_auc_matches_scikit_learn():
    rng = np.random.default_rng(12)
    scores = np.round(rng.random(3_000), 2)  # ties
    positive = rng.random(3_000) < scores
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert roc_auc(scores, np.zeros(3_000, dtype=bool)) is None
