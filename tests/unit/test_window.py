"""The monitoring window: drift counts, served scores and reconstruction errors of one version's
captures, merged exactly, evaluated together and rendered in the report; versions published
before the calibration / PCA artifacts existed keep working and the report says what they lack."""

from __future__ import annotations

import itertools
import json
import random
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklambda.lifecycle import demo
from sklambda.monitoring.capture import CaptureRecord
from sklambda.monitoring.drift import DriftAggregate, baseline_profile
from sklambda.monitoring.multivariate import fit_multivariate
from sklambda.monitoring.performance import fit_calibration
from sklambda.monitoring.report import render_html, render_json
from sklambda.monitoring.window import NO_CALIBRATION, VersionReferences, WindowAggregate

CONTEXT = {"model": "churn", "version": "3", "run_id": "run-1"}


def encoded(columns: dict[str, np.ndarray]) -> np.ndarray:
    """A numeric view of the demo rows for a small classifier (the drift side never needs it)."""
    numbers = [columns[f.name].astype(float) for f in demo.DEMO_SCHEMA.features if f.type != "category"]
    basic = (columns["plan"] == "basic").astype(float)
    return np.column_stack([*numbers, basic])


@pytest.fixture(scope="module")
def version():
    train, y = demo.generate(12_000, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(encoded(train)[:9_000], y[:9_000])
    holdout = encoded(train)[9_000:]
    calibration, _ = fit_calibration(
        [0, 1], model.predict_proba(holdout), model.predict(holdout).tolist(), y[9_000:].tolist()
    )
    reference = demo.to_matrix(train)
    multivariate, _ = fit_multivariate(reference, demo.DEMO_SCHEMA)
    baseline = baseline_profile(reference, demo.DEMO_SCHEMA)
    return model, VersionReferences(baseline=baseline, calibration=calibration, multivariate=multivariate)


def captures(model, n: int, *, seed: int, drift: float) -> list[CaptureRecord]:
    columns, _ = demo.generate(n, seed=seed, drift=drift)
    proba = model.predict_proba(encoded(columns))
    return [
        CaptureRecord(
            model="churn",
            version="3",
            prediction_id=f"{seed}-{i}",
            features=row,
            prediction=int(p[1] >= 0.5),
            probabilities=p.tolist(),
        )
        for i, (row, p) in enumerate(zip(demo.to_instances(columns), proba, strict=True))
    ]


def test_a_window_evaluates_drift_the_estimate_and_relations_together(version):
    model, refs = version
    result = WindowAggregate(refs).add_captures(captures(model, 4_000, seed=1, drift=1.0)).evaluate()
    assert result.drift.verdict == "drift"
    assert result.performance.status == "estimated" and result.performance.rows == 4_000
    assert set(result.performance.estimated) == {"accuracy", "f1", "roc_auc"}
    assert result.multivariate.status == "evaluated" and result.multivariate.verdict == "drift"
    json.dumps(result.to_dict(), allow_nan=False)


def test_partial_windows_merge_to_one_pass(version):
    model, refs = version
    rows = captures(model, 5_000, seed=2, drift=0.4)
    whole = WindowAggregate(refs).add_captures(rows).to_dict()
    for seed in range(3):
        cuts = sorted(random.Random(seed).sample(range(1, len(rows)), 4))
        parts = [
            WindowAggregate.from_dict(
                json.loads(json.dumps(WindowAggregate(refs).add_captures(rows[a:b]).to_dict())), refs
            )
            for a, b in itertools.pairwise([0, *cuts, len(rows)])
        ]
        random.Random(seed).shuffle(parts)
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        assert merged.to_dict() == whole


def test_columns_with_predictions_count_like_records(version):
    model, refs = version
    rows = captures(model, 2_000, seed=3, drift=0.2)
    columns = {name: [r.features[name] for r in rows] for name in demo.DEMO_SCHEMA.names}
    by_columns = WindowAggregate(refs).add_columns(
        {k: np.asarray(v, dtype=object if isinstance(v[0], str) else float) for k, v in columns.items()},
        predictions=[r.prediction for r in rows],
        probabilities=[r.probabilities for r in rows],
    )
    assert by_columns.to_dict() == WindowAggregate(refs).add_captures(rows).to_dict()
    # Without the rows' probabilities the scores are not guessed: counted as unscored.
    blind = WindowAggregate(refs).add_columns({k: np.asarray(v, dtype=object) for k, v in columns.items()})
    assert blind.performance.unscored == 2_000 and blind.performance.rows == 0


def test_a_version_published_before_the_artifacts_existed_keeps_working(version):
    model, refs = version
    old = VersionReferences(baseline=refs.baseline)  # only baseline.json, as every version before
    rows = captures(model, 3_000, seed=4, drift=0.5)
    window = WindowAggregate(old).add_captures(rows)
    result = window.evaluate()
    assert result.drift.verdict == "drift"
    assert result.performance.status == "unavailable" and result.performance.reason == NO_CALIBRATION
    assert result.multivariate.status == "unavailable" and "multivariate.json" in result.multivariate.reason
    html = render_html(
        result.drift,
        old.baseline,
        window.drift,
        performance=result.performance,
        multivariate=result.multivariate,
        **CONTEXT,
    )
    assert "No estimate." in html and "no calibration.json" in html and "Not evaluated." in html
    report = render_json(result.drift, old.baseline, window.drift, performance=result.performance, **CONTEXT)
    assert report["performance"]["status"] == "unavailable"


def test_a_window_the_job_stored_as_a_plain_drift_aggregate_restores(version):
    model, refs = version
    rows = captures(model, 1_000, seed=5, drift=0.0)
    legacy = DriftAggregate(refs.baseline).add_records([r.features for r in rows]).to_dict()
    restored = WindowAggregate.from_dict(legacy, refs)
    assert restored.drift.to_dict() == legacy and restored.performance.rows == 0
    restored.add_captures(rows)
    assert restored.rows == 2_000 and restored.performance.rows == 1_000
    with pytest.raises(ValueError):
        WindowAggregate.from_dict({"kind": "something else"}, refs)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_the_report_shows_the_estimate_and_the_multivariate_verdict(version):
    model, refs = version
    window = WindowAggregate(refs).add_captures(captures(model, 3_000, seed=6, drift=1.0))
    result = window.evaluate()
    kwargs = {
        "performance": result.performance,
        "multivariate": result.multivariate,
        "reconstruction": window.multivariate,
        **CONTEXT,
    }
    html = render_html(result.drift, refs.baseline, window.drift, **kwargs)
    assert "Estimated performance (no labels)" in html and "cannot see concept drift" in html
    assert f"{result.performance.estimated['accuracy']:.3f}" in html
    assert "Multivariate drift (relations between features)" in html and "PCA reconstruction error" in html
    assert "W₁/σ" in html
    parser = _Tags()
    parser.feed(html)
    assert "script" not in parser.tags and parser.tags.count("svg") >= 3
    report = render_json(result.drift, refs.baseline, window.drift, **kwargs)
    assert report["performance"]["estimated"] == result.performance.estimated
    assert len(report["performance"]["chart"]["edges"]) == 21
    assert (
        report["multivariate"]["error"]["verdict"] == "drift" and report["multivariate"]["chart"]["kind"] == "density"
    )
    json.dumps(report, allow_nan=False)
