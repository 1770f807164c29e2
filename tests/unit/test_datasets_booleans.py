"""Stored training rows and captures hold a boolean feature as 1.0/0.0 (the matrix form): read back, booleans."""

from __future__ import annotations

import numpy as np

from sklambda.lifecycle.datasets import dataset_bytes, read_dataset
from sklambda.registry.features import FeatureSchema, FeatureSpec


def test_boolean_features_round_trip_through_the_training_file():
    schema = FeatureSchema(
        features=[FeatureSpec(name="active", type="boolean"), FeatureSpec(name="spend/month", type="number")]
    )
    x = np.array([[1.0, 12.5], [0.0, 3.0]])
    matrix, labels = read_dataset(dataset_bytes(x, np.array(["yes", "no"]), schema), schema)
    assert np.array_equal(matrix, x) and labels.tolist() == ["yes", "no"]
