"""Demo data, CSV reading and the training pipeline (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from sklambda.lifecycle import demo, training


def test_demo_data_is_reproducible_and_drift_moves_the_population():
    a, ya = demo.generate(2000, seed=7)
    b, yb = demo.generate(2000, seed=7)
    assert all(np.array_equal(a[k], b[k]) for k in a) and np.array_equal(ya, yb)
    shifted, _ = demo.generate(2000, seed=7, drift=1.0)
    assert shifted["support_calls"].mean() > a["support_calls"].mean() + 1.0
    assert (shifted["channel"] == "mobile").mean() > (a["channel"] == "mobile").mean() + 0.2
    assert 0.15 < ya.mean() < 0.6, "a realistic, not degenerate, churn rate"
    with pytest.raises(ValueError):
        demo.generate(10, drift=2)


def test_demo_instances_validate_against_the_demo_schema():
    from sklambda.serving.validation import InstanceValidator

    columns, _ = demo.generate(50, seed=1)
    matrix = InstanceValidator(demo.DEMO_SCHEMA).to_matrix(demo.to_instances(columns))
    assert matrix.shape == (50, len(demo.DEMO_SCHEMA.features))


def test_training_beats_the_majority_class_on_the_holdout():
    columns, y = demo.generate(4000, seed=3)
    trained = training.train(
        demo.to_matrix(columns),
        y,
        demo.DEMO_SCHEMA,
        task="classification",
        target="churned",
        params={"n_estimators": 30},
    )
    majority = max(y.mean(), 1 - y.mean())
    assert trained.metrics["holdout"]["accuracy"] > majority + 0.02
    assert trained.metrics["holdout"]["roc_auc"] > 0.65
    assert trained.classes == [0, 1]


CSV = "size,colour,price,sold\n" + "\n".join(
    f"{s},{c},{p},{int(s > 5)}"
    for s, c, p in zip(range(40), ["red", "blue", ""] * 14, np.linspace(1, 9, 40), strict=False)
)


def test_read_csv_infers_types_nullable_categories_and_task():
    x, y, schema, task = training.read_csv(CSV, "sold")
    by_name = {f.name: f for f in schema.features}
    assert by_name["size"].type == "integer" and by_name["price"].type == "number"
    assert by_name["colour"].type == "category" and by_name["colour"].categories == ["blue", "red"]
    assert by_name["colour"].nullable
    assert task == "classification" and x.shape == (40, 3) and set(y) == {0, 1}
    trained = training.train(x, y, schema, task=task, target="sold", params={"n_estimators": 5})
    assert trained.metrics["holdout"]["accuracy"] >= 0.5


def test_read_csv_reports_problems_clearly():
    with pytest.raises(ValueError, match="target column 'nope' not in the CSV header"):
        training.read_csv(CSV, "nope")
    with pytest.raises(ValueError, match="at least 10"):
        training.read_csv("a,b\n1,2\n", "b")
    with pytest.raises(ValueError, match="line 3: 1 cells"):
        training.read_csv("a,b\n1,2\n3\n" + "1,2\n" * 10, "b")


def test_regression_targets_are_detected():
    text = "x,y\n" + "\n".join(f"{i},{i * 1.5 + 0.25}" for i in range(50))
    _, _, _, task = training.read_csv(text, "y")
    assert task == "regression"


def test_the_training_data_format_round_trips_nulls_categories_and_labels():
    import gzip
    import json

    from sklambda.lifecycle import datasets
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(
        features=[
            FeatureSpec(name="size", type="number", nullable=True),
            FeatureSpec(name="colour", type="category", categories=["blue", "red"]),
        ]
    )
    x = np.array([[1.5, "red"], [np.nan, "blue"]], dtype=object)
    y = np.array([0, 1])
    data = datasets.dataset_bytes(x, y, schema)
    lines = [json.loads(line) for line in gzip.decompress(data).splitlines()]
    assert lines == [
        {"features": {"size": 1.5, "colour": "red"}, "label": 0},
        {"features": {"size": None, "colour": "blue"}, "label": 1},
    ], "the format every stored training.jsonl.gz already has"
    x_back, y_back = datasets.read_dataset(data, schema)
    assert x_back[0].tolist() == [1.5, "red"] and np.isnan(x_back[1][0]) and y_back.tolist() == [0, 1]
    assert datasets.read_dataset(gzip.decompress(data), schema)[1].tolist() == [0, 1], "plain JSON lines read too"
    empty_x, empty_y = datasets.read_dataset(datasets.encode([]), schema)
    assert empty_x.shape == (0, 2) and len(empty_y) == 0
