"""Multivariate drift: a PCA's reconstruction error sees a change in how features relate that
leaves every marginal distribution, and so every single-feature verdict, unchanged."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from sklambda.monitoring.drift import DriftAggregate, baseline_profile, evaluate
from sklambda.monitoring.multivariate import (
    ReconstructionAggregate,
    evaluate_multivariate,
    fit_multivariate,
)
from sklambda.registry.features import FeatureSchema, FeatureSpec

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="income", type="number"),
        FeatureSpec(name="spend", type="number"),
        FeatureSpec(name="tenure", type="integer"),
        FeatureSpec(name="flag", type="boolean"),
        FeatureSpec(name="plan", type="category", categories=["basic", "pro", "max"], nullable=True),
    ]
)
PLANS = np.array(["basic", "pro", "max"], dtype=object)


def rows(n: int, rng: np.random.Generator, *, correlation: float = 0.8) -> dict[str, np.ndarray]:
    """income and spend are standard normal with the given correlation; the rest independent."""
    income = rng.normal(0, 1, n)
    spend = correlation * income + np.sqrt(1 - correlation**2) * rng.normal(0, 1, n)
    return {
        "income": 50_000 + 12_000 * income,
        "spend": 40 + 9 * spend,
        "tenure": rng.poisson(20, n).astype(float),
        "flag": (rng.random(n) < 0.3).astype(float),
        "plan": rng.choice(PLANS, n, p=[0.5, 0.3, 0.2]),
    }


def matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([columns[name].astype(object) for name in SCHEMA.names])


@pytest.fixture(scope="module")
def fitted():
    train = rows(30_000, np.random.default_rng(0))
    artifact, why = fit_multivariate(matrix(train), SCHEMA)
    assert why is None
    return artifact, baseline_profile(matrix(train), SCHEMA)


def verdicts(artifact, baseline, columns):
    univariate = evaluate(baseline, DriftAggregate(baseline).add_columns(columns))
    multivariate = evaluate_multivariate(ReconstructionAggregate(artifact).add_columns(columns))
    return {f.name: f.verdict for f in univariate.features}, multivariate


def test_a_correlation_flip_is_drift_although_no_single_feature_drifts(fitted):
    artifact, baseline = fitted
    flipped = rows(20_000, np.random.default_rng(1), correlation=-0.8)  # every marginal the same
    single, multivariate = verdicts(artifact, baseline, flipped)
    assert single == dict.fromkeys(SCHEMA.names, "ok")
    assert multivariate.verdict == "drift"
    assert multivariate.error.current_mean > 1.5 * multivariate.error.reference_mean
    assert any(r.startswith("KS distance") for r in multivariate.error.reasons)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_the_same_relations_are_not_drift(fitted, seed):
    artifact, baseline = fitted
    single, multivariate = verdicts(artifact, baseline, rows(20_000, np.random.default_rng(seed)))
    assert set(single.values()) == {"ok"}
    assert multivariate.verdict == "ok", multivariate.error.reasons


def test_the_smallest_judged_window_does_not_alarm_on_noise(fitted):
    artifact, _ = fitted
    flagged = []
    for seed in range(10, 25):
        result = evaluate_multivariate(
            ReconstructionAggregate(artifact).add_columns(rows(500, np.random.default_rng(seed)))
        )
        flagged += [result.error.reasons] if result.verdict == "drift" else []
    assert flagged == []


def test_a_weaker_relation_is_seen_too(fitted):
    artifact, baseline = fitted
    single, multivariate = verdicts(artifact, baseline, rows(20_000, np.random.default_rng(5), correlation=0.2))
    assert set(single.values()) == {"ok"} and multivariate.verdict == "drift"


def test_records_columns_and_matrices_count_alike_and_merge_exactly(fitted):
    artifact, _ = fitted
    served = rows(6_000, np.random.default_rng(6), correlation=0.0)
    records = [
        {
            "income": float(served["income"][i]),
            "spend": float(served["spend"][i]),
            "tenure": int(served["tenure"][i]),
            "flag": bool(served["flag"][i]),
            "plan": str(served["plan"][i]),
        }
        for i in range(6_000)
    ]
    by_columns = ReconstructionAggregate(artifact).add_columns(served).to_dict()
    by_records = ReconstructionAggregate(artifact).add_records(records).to_dict()
    by_matrix = ReconstructionAggregate(artifact).add_matrix(matrix(served)).to_dict()
    assert by_columns == by_records == by_matrix
    parts = [
        ReconstructionAggregate(artifact).add_records(records[a:b])
        for a, b in itertools.pairwise([0, 10, 2_500, 6_000])
    ]
    merged = ReconstructionAggregate.from_dict(json.loads(json.dumps(parts[2].to_dict())), artifact)
    merged.merge(parts[0]).merge(parts[1])
    assert merged.to_dict() == by_records


def test_missing_unseen_and_wrong_typed_values_are_encoded_never_raised(fitted):
    artifact, _ = fitted
    records = [
        {"income": None, "spend": "lots", "tenure": 3, "flag": True, "plan": "enterprise"},
        {"plan": None},
        {"income": 10**400, "spend": float("inf"), "tenure": True, "flag": 2, "plan": 7},
        "not a record",
    ]
    aggregate = ReconstructionAggregate(artifact).add_records(records)
    assert aggregate.rows == 3
    assert sum(aggregate.errors.feature("reconstruction_error")["counts"]) == 3


def test_the_artifact_is_small_json_with_numpy_only_parts(fitted):
    artifact, _ = fitted
    text = json.dumps(artifact, allow_nan=False)
    assert len(text) < 30_000
    assert len(artifact["centre"]) == 4 + 3  # four numbers, three one-hot columns
    assert 1 <= len(artifact["components"]) < 7 and artifact["explained_variance"] >= 0.65


def test_nothing_to_relate_gives_no_artifact():
    one = FeatureSchema(features=[FeatureSpec(name="x", type="number")])
    artifact, why = fit_multivariate(np.random.default_rng(7).normal(size=(1_000, 1)), one)
    assert artifact is None and "single encoded column" in why
    few = np.random.default_rng(8).normal(size=(15, 2))
    two = FeatureSchema(features=[FeatureSpec(name="a", type="number"), FeatureSpec(name="b", type="number")])
    assert fit_multivariate(few, two)[0] is None
