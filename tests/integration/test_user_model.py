"""Bring your own model: a pipeline fitted on a DataFrame published in one call, checked before it is written,
then served by the real loader from moto's S3 (sklambda.lifecycle.user_model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sklambda.lifecycle.user_model import NO_DATA_LACKS, PublishRefused, publish_user_model
from sklambda.serving.loader import load_version
from tests.unit.test_schemas import _mixed, _mixed_pipeline


class NotebookScaler(StandardScaler):
    """Defined in the test module: a fresh Lambda process cannot import it by this name."""


def _serve(registry, manifest, frame_rows):
    loaded = load_version(registry, manifest)
    return loaded, loaded.predict(loaded.validator.to_matrix(frame_rows))


def _instances(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def test_a_dataframe_pipeline_with_string_categories_publishes_and_serves_exactly(registry):
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    published = publish_user_model(registry, "churn-user", pipeline, frame, y)
    manifest = published.manifest
    by = {f.name: f for f in manifest.features}
    assert by["plan"].type == "category" and by["plan"].categories == ["basic", "pro", "team"]
    assert manifest.lacks == [] and "baseline.json" in manifest.artifacts and "training.jsonl.gz" in manifest.artifacts
    assert manifest.metrics["holdout"]["accuracy"] > 0.5 and published.serving_check["rows"] > 0
    assert published.serving_check["max_abs_diff"] <= 1e-9
    assert published.runtime == "sklambda-lean" and manifest.lean is not None and manifest.lean.accepted
    rows = frame.head(30)
    loaded, (labels, proba) = _serve(registry, manifest, _instances(rows))
    assert labels == pipeline.predict(rows).tolist()
    assert np.abs(np.asarray(proba) - pipeline.predict_proba(rows)).max() <= 1e-9
    assert "churn-user" in published.summary()


def test_names_with_slashes_round_trip(registry):
    data = load_wine(as_frame=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(data.data, data.target)
    published = publish_user_model(registry, "wine", pipeline, data.data, data.target)
    assert "od280/od315_of_diluted_wines" in published.manifest.schema.names
    _, (labels, _) = _serve(registry, published.manifest, _instances(data.data.head(10)))
    assert labels == pipeline.predict(data.data.head(10)).tolist()


def test_without_data_the_schema_comes_from_the_pipeline_and_the_manifest_says_what_it_lacks(registry):
    frame, y = _mixed()
    pipeline = _mixed_pipeline().fit(frame, y)
    published = publish_user_model(registry, "nodata", pipeline)
    assert published.manifest.lacks == NO_DATA_LACKS
    assert "baseline.json" not in published.manifest.artifacts
    assert {f.name: f.type for f in published.manifest.features}["plan"] == "category"
    assert "lacks no drift baseline" in published.summary()


def test_a_regressor_and_a_model_the_lean_runtime_does_not_convert(registry):
    data = load_diabetes(as_frame=True)
    ridge = make_pipeline(StandardScaler(), Ridge()).fit(data.data, data.target)
    published = publish_user_model(registry, "diabetes", ridge, data.data, data.target)
    assert published.manifest.task == "regression" and "rmse" in published.manifest.metrics["holdout"]
    wine = load_wine(as_frame=True)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier()).fit(wine.data, wine.target)
    published = publish_user_model(registry, "wine-knn", knn, wine.data, wine.target)
    assert published.runtime == "sklearn-joblib"
    assert published.manifest.lean is not None and not published.manifest.lean.accepted
    assert published.manifest.lean.reason


def test_code_the_lambda_cannot_import_is_refused_and_nothing_is_written(registry):
    wine = load_wine(as_frame=True)
    custom = make_pipeline(NotebookScaler(), LogisticRegression(max_iter=2000)).fit(wine.data, wine.target)
    with pytest.raises(PublishRefused, match="NotebookScaler"):
        publish_user_model(registry, "custom", custom, wine.data, wine.target)
    lam = make_pipeline(FunctionTransformer(lambda v: v), LogisticRegression(max_iter=2000)).fit(wine.data, wine.target)
    with pytest.raises(PublishRefused, match="lambda"):
        publish_user_model(registry, "custom", lam, wine.data, wine.target)
    assert registry.list_versions("custom") == []


def test_a_pipeline_that_needs_pandas_at_predict_time_is_refused_by_the_clean_process(registry):
    wine = load_wine(as_frame=True)
    # set_output(transform="pandas") makes every step build a DataFrame: fine in the notebook, impossible on Lambda.
    needs_pandas = make_pipeline(StandardScaler(), KNeighborsClassifier()).set_output(transform="pandas")
    needs_pandas.fit(wine.data, wine.target)
    with pytest.raises(PublishRefused, match="pandas"):
        publish_user_model(registry, "needs-pandas", needs_pandas, wine.data, wine.target)
    assert registry.list_versions("needs-pandas") == []
