"""Validation of prediction requests against a feature schema (no network)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving.validation import MAX_REPORTED_ERRORS, InstanceValidator

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="age", type="integer"),
        FeatureSpec(name="income", type="number", nullable=True),
        FeatureSpec(name="member", type="boolean"),
        FeatureSpec(name="plan", type="category", categories=["basic", "premium"]),
    ]
)
VALIDATOR = InstanceValidator(SCHEMA)
GOOD = {"age": 30, "income": 1234.5, "member": True, "plan": "basic"}


def test_objects_and_lists_build_the_same_matrix():
    by_name = VALIDATOR.to_matrix([GOOD])
    by_order = VALIDATOR.to_matrix([[30, 1234.5, True, "basic"]])
    assert by_name.shape == (1, 4)
    assert by_name.tolist() == by_order.tolist() == [[30.0, 1234.5, 1.0, "basic"]]


def test_nullable_features_may_be_null_or_absent():
    matrix = VALIDATOR.to_matrix([{**GOOD, "income": None}, {k: v for k, v in GOOD.items() if k != "income"}])
    assert math.isnan(matrix[0][1]) and math.isnan(matrix[1][1])


def test_all_numeric_schemas_give_float_matrices():
    schema = FeatureSchema(features=[FeatureSpec(name="a", type="number"), FeatureSpec(name="b", type="integer")])
    assert InstanceValidator(schema).to_matrix([[1, 2]]).dtype == np.float64


@pytest.mark.parametrize(
    ("row", "field", "text"),
    [
        ({**GOOD, "age": 1.5}, "instances[0].age", "expected an integer"),
        ({**GOOD, "age": "1"}, "instances[0].age", "expected a number, got string"),
        ({**GOOD, "income": float("inf")}, "instances[0].income", "finite"),
        ({**GOOD, "income": float("nan")}, "instances[0].income", "finite"),
        ({**GOOD, "member": 1}, "instances[0].member", "expected a boolean"),
        ({**GOOD, "plan": "gold"}, "instances[0].plan", "unknown category 'gold'; allowed: 'basic', 'premium'"),
        ({**GOOD, "plan": None}, "instances[0].plan", "cannot be null"),
        ({**GOOD, "age": 2**60}, "instances[0].age", "too large"),
        ({**GOOD, "extra": 1}, "instances[0].extra", "unknown feature"),
        ({k: v for k, v in GOOD.items() if k != "age"}, "instances[0].age", "is missing"),
        ([1, 2, 3], "instances[0]", "expected 4 values"),
        ("row", "instances[0]", "got string"),
    ],
)
def test_each_problem_names_its_field(row, field, text):
    with pytest.raises(InvalidInput) as err:
        VALIDATOR.to_matrix([row])
    assert any(d["field"] == field and text in d["message"] for d in err.value.details), err.value.details
    assert err.value.message.startswith(field)


def test_unknown_categories_can_be_allowed_by_the_schema():
    schema = FeatureSchema(
        features=[FeatureSpec(name="c", type="category", categories=["a"], unknown_category="allow")]
    )
    assert InstanceValidator(schema).to_matrix([["zzz"]]).tolist() == [["zzz"]]


def test_error_reports_are_bounded():
    with pytest.raises(InvalidInput) as err:
        VALIDATOR.to_matrix([{"age": "x"}] * 1000)
    assert len(err.value.details) == MAX_REPORTED_ERRORS
    assert "more problems" in err.value.message


def test_schema_rejects_duplicates_and_bad_category_specs():
    with pytest.raises(ValueError, match="appears twice"):
        FeatureSchema(features=[FeatureSpec(name="a", type="number"), FeatureSpec(name="a", type="number")])
    with pytest.raises(ValueError, match="needs a non-empty"):
        FeatureSpec(name="c", type="category")
    with pytest.raises(ValueError, match="cannot list categories"):
        FeatureSpec(name="n", type="number", categories=["x"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_any_json_batch_either_validates_or_raises_invalid_input(instances):
    """Property: whatever a client sends, validation answers a matrix or a named 4xx, never a crash."""
    try:
        matrix = VALIDATOR.to_matrix(instances)
    except InvalidInput as err:
        assert err.details and all(d["field"].startswith("instances[") for d in err.details)
        assert all(isinstance(d["message"], str) and d["message"] for d in err.details)
    else:
        assert matrix.shape == (len(instances), 4)
        numeric = matrix[:, :3].astype(float)
        assert np.all(np.isfinite(numeric[:, [0, 2]]))
        assert set(matrix[:, 3]) <= {"basic", "premium"}


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=120),
    st.floats(min_value=-3.4028234663852886e38, max_value=3.4028234663852886e38) | st.none(),  # float32 range
    st.booleans(),
    st.sampled_from(["basic", "premium"]),
)
def test_every_valid_row_is_accepted_in_both_forms(age, income, member, plan):
    row = {"age": age, "income": income, "member": member, "plan": plan}
    a = VALIDATOR.to_matrix([row])
    b = VALIDATOR.to_matrix([[age, income, member, plan]])
    assert repr(a.tolist()) == repr(b.tolist())
