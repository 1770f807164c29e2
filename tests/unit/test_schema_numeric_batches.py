"""The column-wise check of all-number batches answers exactly what the per-value path answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sklambda.core.errors import InvalidInput
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving.validation import InstanceValidator

NAMES = [f"x{i}" for i in range(6)]
SCHEMA = FeatureSchema(
    features=[FeatureSpec(name=n, type="number") for n in NAMES[:4]]
    + [FeatureSpec(name=n, type="integer") for n in NAMES[4:]]
)


def per_value(validator: InstanceValidator) -> InstanceValidator:
    slow = InstanceValidator(validator.schema)
    slow._plain_numbers = False
    return slow


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        dict(zip(NAMES, [*map(float, rng.normal(size=4)), int(rng.integers(0, 9)), 2.0], strict=True)) for _ in range(n)
    ]


def test_a_clean_numeric_batch_is_the_same_matrix():
    validator = InstanceValidator(SCHEMA)
    batch = rows(300)
    assert validator._numbers_fast(batch) is not None
    assert np.array_equal(validator.to_matrix(batch), per_value(validator).to_matrix(batch))


@pytest.mark.parametrize(
    "change",
    [
        {"x0": True},
        {"x0": "1.5"},
        {"x1": None},
        {"x2": math.nan},
        {"x3": math.inf},
        {"x4": 2.5},
        {"x5": 2**60},
        {"extra": 1.0},
    ],
)
def test_every_problem_gets_the_per_value_answer(change):
    validator = InstanceValidator(SCHEMA)
    batch = rows(50)
    batch[7] = {**batch[7], **change}
    with pytest.raises(InvalidInput) as fast:
        validator.to_matrix(batch)
    with pytest.raises(InvalidInput) as slow:
        per_value(validator).to_matrix(batch)
    assert fast.value.details == slow.value.details and "instances[7]" in fast.value.message


def test_missing_features_and_lists_take_the_per_value_path():
    validator = InstanceValidator(SCHEMA)
    batch = rows(10)
    del batch[3]["x2"]
    with pytest.raises(InvalidInput, match=r"instances\[3\]\.x2: is missing"):
        validator.to_matrix(batch)
    mixed = rows(10)
    mixed[2] = list(mixed[2].values())
    assert np.array_equal(validator.to_matrix(mixed), per_value(validator).to_matrix(mixed))
