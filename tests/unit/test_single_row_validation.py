"""The one-row fast check (``InstanceValidator._plain_row``) answers exactly what the per-value path answers."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving.validation import FLOAT32_MAX, InstanceValidator

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="x", type="number"),
        FeatureSpec(name="n", type="integer"),
        FeatureSpec(name="flag", type="boolean"),
        FeatureSpec(name="plan", type="category", categories=["basic", "premium"]),
        FeatureSpec(name="city", type="category", categories=["Oslo"], unknown_category="allow"),
        FeatureSpec(name="maybe", type="number", nullable=True),
    ]
)
NAMES = SCHEMA.names
TRICKY = st.sampled_from(
    [
        0,
        -0.0,
        1.5,
        2.0,
        True,
        False,
        None,
        "basic",
        "premium",
        "Oslo",
        "Bergen",
        "",
        "1.5",
        math.nan,
        math.inf,
        -math.inf,
        FLOAT32_MAX,
        -FLOAT32_MAX,
        math.nextafter(FLOAT32_MAX, math.inf),
        2**53,
        -(2**53),
        2**53 + 1,
        10**400,
        1e30,
        [],
        {},
        [1.0],
    ]
)


def _outcome(validator: InstanceValidator, instance: object) -> object:
    try:
        matrix = validator.to_matrix([instance])
    except InvalidInput as err:
        return ("error", err.message, err.details)
    return ("matrix", matrix.dtype, [[(type(v), v) if v == v else "nan" for v in row] for row in matrix.tolist()])


def _per_value(instance: object) -> object:
    slow = InstanceValidator(SCHEMA)
    slow._plain_row = lambda _instance: None  # type: ignore[method-assign]
    return _outcome(slow, instance)


def _valid() -> dict[str, object]:
    return {"x": 1.25, "n": 3, "flag": True, "plan": "premium", "city": "Bergen", "maybe": 0.5}


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*NAMES, "extra"]), TRICKY, min_size=0, max_size=7), st.booleans())
@example(_valid(), False)
@example(_valid(), True)
@example({**_valid(), "n": 2.5}, False)
@example({**_valid(), "maybe": None}, False)
def test_one_row_is_checked_as_the_per_value_path_checks_it(changes, as_list):
    instance: object = {**_valid(), **changes}
    if as_list:
        instance = [instance.get(name) for name in NAMES]  # type: ignore[union-attr]
    assert _outcome(InstanceValidator(SCHEMA), instance) == _per_value(instance)


def test_a_plain_row_takes_the_fast_path_and_an_odd_one_does_not():
    validator = InstanceValidator(SCHEMA)
    row = validator._plain_row(_valid())
    assert row == [1.25, 3.0, 1.0, "premium", "Bergen", 0.5]
    assert validator._plain_row({**_valid(), "plan": "gold"}) is None  # unknown, and the schema refuses it
    assert validator._plain_row({**_valid(), "maybe": None}) is None  # null: the per-value path fills it
    assert validator._plain_row({**_valid(), "x": math.nan}) is None
    numeric = InstanceValidator(FeatureSchema(features=[FeatureSpec(name="a", type="number")]))
    assert numeric.to_matrix([{"a": 2}]).dtype == np.float64
