"""The drift engine on real data: known shifts are found, no shift is never flagged, partial
aggregates merge exactly, bad input is counted and never raises."""

from __future__ import annotations

import itertools
import json
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from sklambda.lifecycle import demo
from sklambda.monitoring.drift import (
    _SUM_SHIFT,
    DriftAggregate,
    DriftConfig,
    _exact_sum,
    baseline_profile,
    evaluate,
    fingerprint,
    psi_groups,
)
from sklambda.registry.features import FeatureSchema, FeatureSpec

SHIFTED = [
    "age",
    "income",
    "tenure_months",
    "monthly_spend",
    "support_calls",
    "late_payments",
    "data_usage_gb",
    "satisfaction",
    "plan",
    "channel",
]
UNSHIFTED = ["region", "payment_method"]
NUMERIC = [f.name for f in demo.DEMO_SCHEMA.features if f.type != "category"]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    columns, _ = demo.generate(20_000, seed=0)
    return columns


@pytest.fixture(scope="module")
def baseline(reference) -> dict:
    return baseline_profile(demo.to_matrix(reference), demo.DEMO_SCHEMA)


def aggregate_of(baseline: dict, columns: dict) -> DriftAggregate:
    return DriftAggregate(baseline).add_columns(columns)


def verdicts(result) -> dict[str, str]:
    return {f.name: f.verdict for f in result.features}


# ----------------------------------------------------------------------------- baseline
def test_baseline_is_small_json_and_describes_the_schema(baseline):
    text = json.dumps(baseline, allow_nan=False)
    assert len(text) < 20_000, "kilobytes, not the training data"
    assert baseline["format"] == 1 and baseline["rows"] == 20_000
    assert [(f["name"], f["type"]) for f in baseline["features"]] == [
        (f.name, f.type) for f in demo.DEMO_SCHEMA.features
    ]
    for feature in baseline["features"]:
        assert sum(feature["counts"]) + feature.get("unseen", 0) == feature["n"] == 20_000
        if feature["type"] != "category":
            assert feature["edges"] == sorted(set(feature["edges"])), "edges strictly increasing"
            assert len(feature["counts"]) == len(feature["edges"]) + 1
            assert feature["counts"][0] == feature["counts"][-1] == 0, "outer bins: outside the training range"
            assert feature["min"] <= feature["mean"] <= feature["max"]


def test_baseline_uses_distinct_values_for_counts_and_quantiles_for_continuous(baseline, reference):
    by_name = {f["name"]: f for f in baseline["features"]}
    calls = by_name["support_calls"]
    assert calls["binning"] == "values"
    assert calls["edges"][:-1] == np.unique(reference["support_calls"]).tolist()
    income = by_name["income"]
    assert income["binning"] == "quantiles"
    inner = np.asarray(income["counts"][1:-1])
    assert len(inner) >= 95 and inner.min() > 0.5 * 200 and inner.max() < 2 * 200, "~1 % of the rows per bin"


def test_baseline_handles_constant_heavy_ties_and_empty_columns():
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="constant", type="number"),
            FeatureSpec(name="mostly_zero", type="number"),
            FeatureSpec(name="flag", type="boolean"),
            FeatureSpec(name="never_set", type="number", nullable=True),
        ]
    )
    rng = np.random.default_rng(3)
    n = 5_000
    mostly_zero = np.where(rng.random(n) < 0.9, 0.0, rng.exponential(5.0, n))
    matrix = np.column_stack([np.full(n, 7.0), mostly_zero, (rng.random(n) < 0.3).astype(float), np.full(n, np.nan)])
    profile = baseline_profile(matrix, schema)
    constant, ties, flag, never = profile["features"]
    assert constant["edges"][0] == 7.0 and len(constant["edges"]) == 2 and constant["counts"] == [0, n, 0]
    zeros = int((mostly_zero == 0).sum())
    assert ties["binning"] == "quantiles" and ties["edges"][0] == 0.0
    assert zeros <= ties["counts"][1] <= zeros + 0.01 * n, "all the zeros in one bin (with at most 1 % more)"
    assert flag["binning"] == "values" and flag["edges"][:2] == [0.0, 1.0]
    assert never["binning"] == "none" and never["missing"] == n and never["n"] == 0
    json.dumps(profile, allow_nan=False)

    # The same data (plus a shift of the flag) evaluates without errors; the empty column gets no verdict.
    current = {
        "constant": np.full(n, 7.0),
        "mostly_zero": mostly_zero,
        "flag": (rng.random(n) < 0.8).astype(float),
        "never_set": np.full(n, np.nan),
    }
    result = evaluate(profile, DriftAggregate(profile).add_columns(current))
    assert verdicts(result) == {
        "constant": "ok",
        "mostly_zero": "ok",
        "flag": "drift",
        "never_set": "insufficient_data",
    }


def test_baseline_from_a_list_of_rows_keeps_numbers_numbers():
    schema = FeatureSchema(
        features=[FeatureSpec(name="x", type="number"), FeatureSpec(name="c", type="category", categories=["a"])]
    )
    profile = baseline_profile([[1.5, "a"], [2.5, "a"], [3.5, "a"]], schema)
    assert profile["features"][0]["n"] == 3 and profile["features"][0]["invalid"] == 0
    assert profile["features"][1]["counts"] == [3]


def test_baseline_rejects_a_matrix_of_the_wrong_width(reference):
    with pytest.raises(ValueError, match="12 columns"):
        baseline_profile(demo.to_matrix(reference)[:, :5], demo.DEMO_SCHEMA)


# ----------------------------------------------------------------------------- statistics
def test_shifted_population_is_flagged_and_stable_features_are_not(baseline):
    current, _ = demo.generate(20_000, seed=1, drift=1.0)
    result = evaluate(baseline, aggregate_of(baseline, current))
    v = verdicts(result)
    assert {name: v[name] for name in SHIFTED} == dict.fromkeys(SHIFTED, "drift")
    assert {name: v[name] for name in UNSHIFTED} == dict.fromkeys(UNSHIFTED, "ok")
    assert result.drifted_features == len(SHIFTED) and result.evaluated_features == 12
    assert result.drift_score == pytest.approx(len(SHIFTED) / 12)
    assert result.verdict == "drift" and result.rows == 20_000
    calls = next(f for f in result.features if f.name == "support_calls")
    assert calls.current_mean == pytest.approx(current["support_calls"].mean(), rel=1e-12)
    assert any("PSI" in r for r in calls.reasons) and any("KS distance" in r for r in calls.reasons)


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_same_population_never_alarms(baseline, seed):
    current, _ = demo.generate(20_000, seed=seed, drift=0.0)
    result = evaluate(baseline, aggregate_of(baseline, current))
    assert result.drifted_features == 0, [(f.name, f.reasons) for f in result.features if f.verdict == "drift"]
    assert result.verdict == "ok" and result.drift_score == 0.0
    assert all(f.psi < 0.02 and f.distance < 0.03 for f in result.features)


def test_smallest_judged_window_does_not_alarm_on_noise(baseline):
    """min_rows is chosen so that sampling noise at that size stays below the distance thresholds."""
    alarms = []
    for seed in range(200, 215):
        current, _ = demo.generate(DriftConfig().min_rows, seed=seed)
        result = evaluate(baseline, aggregate_of(baseline, current))
        assert result.evaluated_features == 12
        alarms += [(seed, f.name, f.reasons) for f in result.features if f.verdict == "drift"]
    assert alarms == []


def test_significant_but_small_shift_is_not_drift(baseline):
    """At 20k rows a mild shift has a vanishing p-value; the verdict follows the size of the change."""
    current, _ = demo.generate(20_000, seed=2, drift=0.1)  # ages one year younger: 0.08 standard deviations
    result = evaluate(baseline, aggregate_of(baseline, current))
    age = next(f for f in result.features if f.name == "age")
    assert age.p_value < 1e-6
    assert age.verdict == "ok" and age.distance < 0.1 and age.psi < 0.2 and age.wasserstein < 0.1


def test_mean_shift_of_half_a_standard_deviation_is_drift():
    schema = FeatureSchema(features=[FeatureSpec(name="x", type="number")])
    rng = np.random.default_rng(5)
    train, served = rng.normal(0.0, 1.0, 20_000), rng.normal(0.5, 1.0, 20_000)
    profile = baseline_profile(train.reshape(-1, 1), schema)
    (feature,) = evaluate(profile, DriftAggregate(profile).add_columns({"x": served})).features
    exact = stats.ks_2samp(train, served)
    assert feature.verdict == "drift"
    assert any(r.startswith("KS distance") for r in feature.reasons)
    # A lower bound of the exact two-sample statistic, and a tight one (the expected value is 2Φ(0.25) - 1 ≈ 0.197).
    assert feature.distance <= exact.statistic + 1e-12
    assert exact.statistic - feature.distance < 0.01
    assert feature.distance == pytest.approx(2 * stats.norm.cdf(0.25) - 1, abs=0.02)
    assert feature.p_value == pytest.approx(stats.ks_2samp(train, served, method="asymp").pvalue, abs=1e-12)
    assert feature.current_mean == pytest.approx(served.mean(), rel=1e-12)
    assert feature.current_std == pytest.approx(served.std(), rel=1e-9)


@pytest.mark.parametrize("drift_level", [0.0, 0.5, 1.0])
def test_ks_distance_is_a_tight_lower_bound_of_the_exact_statistic(baseline, reference, drift_level):
    current, _ = demo.generate(20_000, seed=9, drift=drift_level)
    result = evaluate(baseline, aggregate_of(baseline, current))
    for feature in result.features:
        if feature.name in NUMERIC:
            exact = stats.ks_2samp(reference[feature.name], current[feature.name]).statistic
            assert feature.distance <= exact + 1e-12, feature.name
            assert exact - feature.distance < 0.01, feature.name


def test_a_category_never_seen_in_training_is_drift(baseline):
    current, _ = demo.generate(20_000, seed=4)
    plan = current["plan"].copy()
    plan[:2_000] = "enterprise"  # 10 % of rows
    result = evaluate(baseline, aggregate_of(baseline, {**current, "plan": plan}))
    feature = next(f for f in result.features if f.name == "plan")
    assert feature.verdict == "drift"
    assert feature.unseen_share == pytest.approx(0.1)
    assert any(r.startswith("PSI") for r in feature.reasons)
    assert feature.psi > 0.6  # 0.1 * ln(0.1 / 1e-4) alone is 0.69
    agg = aggregate_of(baseline, {**current, "plan": plan})
    assert agg.feature("plan")["unseen_values"] == {"values": {"enterprise": 2_000}, "overflow": False}


def test_a_jump_in_missing_values_is_drift():
    schema = FeatureSchema(features=[FeatureSpec(name="score", type="number", nullable=True)])
    rng = np.random.default_rng(8)
    profile = baseline_profile(rng.normal(size=(10_000, 1)), schema)
    served = rng.normal(size=5_000)
    served[:1_500] = np.nan
    (feature,) = evaluate(profile, DriftAggregate(profile).add_columns({"score": served})).features
    assert feature.verdict == "drift"
    assert feature.current_missing == 1_500 and feature.current_missing_share == pytest.approx(0.3)
    assert feature.reasons == ["missing share 0.0% → 30.0% (change ≥ 10%)"]


def test_thresholds_are_configurable(baseline):
    current, _ = demo.generate(20_000, seed=1, drift=1.0)
    aggregate = aggregate_of(baseline, current)
    lenient = DriftConfig(psi_threshold=50, ks_threshold=0.99, js_threshold=0.99, wasserstein_threshold=50)
    assert evaluate(baseline, aggregate, lenient).drifted_features == 0
    strict = DriftConfig(drift_share=0.9)
    assert evaluate(baseline, aggregate, strict).verdict == "ok"  # 10 of 12 drifted: below 90 %
    with pytest.raises(ValueError):
        DriftConfig(ks_threshold=2)


def test_psi_groups_are_reference_deciles():
    groups = psi_groups(np.array([0, *([100] * 100), 0]))
    assert np.bincount(groups).tolist() == [11, *([10] * 8), 11]
    tied = psi_groups(np.array([0, 3_000, *([100] * 70), 0]))  # one bin holds 30 % of the rows
    assert tied[1] == 0 and tied[2] == 3 and tied.max() == 9


# ----------------------------------------------------------------------------- insufficient data
def test_too_few_rows_give_no_verdict(baseline):
    current, _ = demo.generate(499, seed=6, drift=1.0)
    result = evaluate(baseline, aggregate_of(baseline, current))
    assert {f.verdict for f in result.features} == {"insufficient_data"}
    assert result.verdict == "insufficient_data" and result.drift_score == 0.0 and result.evaluated_features == 0
    assert result.features[0].reasons == ["499 current values < min_rows 500"]

    current, _ = demo.generate(500, seed=6, drift=1.0)
    assert evaluate(baseline, aggregate_of(baseline, current)).evaluated_features == 12


def test_empty_aggregate_evaluates(baseline):
    result = evaluate(baseline, DriftAggregate(baseline))
    assert result.rows == 0 and result.verdict == "insufficient_data"


# ----------------------------------------------------------------------------- bad input
def test_invalid_values_are_counted_never_raised(baseline):
    good = demo.to_instances(demo.generate(3, seed=1)[0])
    records = [
        {**good[0], "age": "old"},  # string for an integer
        {**good[0], "age": True},  # bool is not a number
        {**good[0], "age": 37.5},  # not whole
        {**good[0], "income": float("inf")},  # not finite
        {**good[0], "income": None},  # null for a non-nullable feature
        {**good[0], "plan": 3},  # number for a category
        {**good[0], "plan": ["basic"]},  # unhashable
        {**good[0], "colour": "red"},  # not a feature
        {**good[0], "income": 10**400},  # an integer beyond float range
        {k: v for k, v in good[1].items() if k != "region"},  # missing non-nullable feature
        "not an object",
        None,
        good[2],
    ]
    aggregate = DriftAggregate(baseline).add_records(records)
    data = aggregate.to_dict()
    assert aggregate.rows == 11 and data["invalid_records"] == 2
    assert data["unknown_fields_total"] == 1 and data["unknown_fields"]["values"] == {"colour": 1}
    features = data["features"]
    assert features["age"]["invalid"] == 3 and sum(features["age"]["counts"]) == 8
    assert features["income"]["invalid"] == 3 and features["income"]["missing"] == 0
    assert features["plan"]["invalid"] == 2 and sum(features["plan"]["counts"]) == 9
    assert features["region"]["invalid"] == 1
    assert features["satisfaction"]["invalid"] == 0 and sum(features["satisfaction"]["counts"]) == 11
    evaluate(baseline, aggregate)  # and evaluation takes it in its stride


def test_nullable_features_count_nulls_as_missing():
    schema = FeatureSchema(
        features=[
            FeatureSpec(name="n", type="number", nullable=True),
            FeatureSpec(name="c", type="category", categories=["a", "b"], nullable=True),
        ]
    )
    matrix = np.array([[1.0, "a"], [2.0, "b"], [np.nan, None]], dtype=object)
    profile = baseline_profile(matrix, schema)
    assert profile["features"][0]["missing"] == 1 and profile["features"][1]["missing"] == 1
    aggregate = DriftAggregate(profile).add_records([{"n": None, "c": None}, {}, {"n": float("nan"), "c": "a"}])
    n, c = aggregate.feature("n"), aggregate.feature("c")
    assert (n["missing"], n["invalid"], c["missing"], c["invalid"]) == (3, 0, 2, 0)


def test_unseen_and_unknown_names_are_capped_but_totals_stay_exact(baseline):
    current, _ = demo.generate(1_000, seed=1)
    plan = np.array([f"new-{i % 50}" for i in range(1_000)], dtype=object)
    extra = {f"extra_{i}": np.zeros(1_000) for i in range(25)}
    aggregate = aggregate_of(baseline, {**current, "plan": plan, **extra})
    assert aggregate.feature("plan")["unseen"] == 1_000
    assert aggregate.feature("plan")["unseen_values"] == {"values": {}, "overflow": True}
    data = aggregate.to_dict()
    assert data["unknown_fields_total"] == 25_000 and data["unknown_fields"]["overflow"] is True


def test_records_and_columns_give_the_same_counts(baseline):
    current, _ = demo.generate(10_000, seed=21, drift=0.4)
    by_columns = aggregate_of(baseline, current).to_dict()
    by_records = DriftAggregate(baseline).add_records(demo.to_instances(current)).to_dict()
    by_json_lines = (
        DriftAggregate(baseline)
        .add_records(json.loads(line) for line in (json.dumps(r) for r in demo.to_instances(current)))
        .to_dict()
    )
    assert by_columns == by_records == by_json_lines


# ----------------------------------------------------------------------------- merging
@pytest.fixture(scope="module")
def served() -> dict[str, np.ndarray]:
    columns, _ = demo.generate(50_000, seed=31, drift=0.5)
    return columns


@pytest.fixture(scope="module")
def single_pass(baseline, served) -> dict:
    return aggregate_of(baseline, served).to_dict()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_merging_partials_equals_one_pass(baseline, served, single_pass, k, seed):
    rng = np.random.default_rng(seed)
    rows = len(served["age"])
    cuts = np.sort(rng.choice(np.arange(1, rows), size=k - 1, replace=False)).tolist()
    bounds = [0, *cuts, rows]
    parts = []
    for start, end in itertools.pairwise(bounds):
        part = DriftAggregate(baseline).add_columns({name: col[start:end] for name, col in served.items()})
        # Stored in S3 and read back by the reduce step.
        parts.append(DriftAggregate.from_dict(json.loads(json.dumps(part.to_dict())), baseline))
    random.Random(seed).shuffle(parts)
    # Merge as a random tree, not just left to right.
    while len(parts) > 1:
        i = random.Random(seed + len(parts)).randrange(len(parts) - 1)
        parts[i : i + 2] = [parts[i].merge(parts[i + 1])]
    assert parts[0].to_dict() == single_pass


def test_to_dict_round_trips_and_refuses_other_baselines(baseline, served, single_pass):
    restored = DriftAggregate.from_dict(json.loads(json.dumps(single_pass)), baseline)
    assert restored.to_dict() == single_pass
    assert evaluate(baseline, restored) == evaluate(baseline, aggregate_of(baseline, served))

    other_columns, _ = demo.generate(5_000, seed=99)
    other = baseline_profile(demo.to_matrix(other_columns), demo.DEMO_SCHEMA)
    assert fingerprint(other) != fingerprint(baseline)
    with pytest.raises(ValueError, match="baseline"):
        DriftAggregate.from_dict(single_pass, other)
    with pytest.raises(ValueError, match="different baselines"):
        DriftAggregate(other).merge(restored)
    with pytest.raises(ValueError, match="different baseline"):
        evaluate(other, restored)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(1).normal(size=5_000),
        np.random.default_rng(2).lognormal(10, 3, 5_000),
        np.array([5e-324, -5e-324, 1e308, 1e308, -2.5, 0.0, 1e-310, 3e-320]),
    ],
    ids=["normal", "wide-range", "extremes"],
)
def test_sums_are_exact_whatever_the_split(values):
    exact = sum(Fraction(float(v)) for v in values)
    assert Fraction(_exact_sum(values), 2**_SUM_SHIFT) == exact
    shuffled = np.random.default_rng(3).permutation(values)
    third = len(values) // 3
    parts = [shuffled[:third], shuffled[third : 2 * third], shuffled[2 * third :]]
    assert sum(_exact_sum(p) for p in parts) == _exact_sum(values)


def test_booleans_as_json_bools_or_matrix_zeros_and_ones_count_alike():
    schema = FeatureSchema(features=[FeatureSpec(name="flag", type="boolean")])
    flags = np.random.default_rng(4).random(2_000) < 0.3
    profile = baseline_profile(flags.astype(float).astype(object).reshape(-1, 1), schema)
    assert profile["features"][0]["invalid"] == 0 and profile["features"][0]["n"] == 2_000
    from_records = DriftAggregate(profile).add_records({"flag": bool(f)} for f in flags).feature("flag")
    from_floats = DriftAggregate(profile).add_columns({"flag": flags.astype(float)}).feature("flag")
    from_bools = DriftAggregate(profile).add_columns({"flag": flags}).feature("flag")
    assert from_records == from_floats == from_bools
    assert from_records["counts"][1:3] == [int((~flags).sum()), int(flags.sum())]
    bad = DriftAggregate(profile).add_records([{"flag": "yes"}, {"flag": 2}, {"flag": 0.5}]).feature("flag")
    assert bad["invalid"] == 3


def test_memory_is_flat_in_the_number_of_rows(baseline):
    small, _ = demo.generate(1_000, seed=41)
    large, _ = demo.generate(200_000, seed=42)
    small_dict, large_dict = aggregate_of(baseline, small).to_dict(), aggregate_of(baseline, large).to_dict()

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return type(value).__name__

    assert shape(small_dict) == shape(large_dict), "same structure: one count per bin, whatever the rows"
    small_bytes, large_bytes = len(json.dumps(small_dict)), len(json.dumps(large_dict))
    assert large_bytes < 1.5 * small_bytes, (small_bytes, large_bytes)  # only the digits of the counts grow
    assert large_bytes < 16_000
