"""The lean serving runtime end to end against moto's server: which runtime serves what, a cold
start that never imports scikit-learn, the fast predict path, and the SnapStart hooks."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from sklambda.lifecycle import training
from sklambda.serving.loader import load_version
from sklambda.serving.validation import InstanceValidator
from tests.support.helpers import ROOT, FakeLambdaContext, demo_rows, event_with_body, load_event, trained_demo


class Halve(TransformerMixin, BaseEstimator):
    """A custom transformer: nothing the lean runtime knows how to run."""

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return np.asarray(x, dtype=float) / 2


def _custom_pipeline() -> training.TrainedModel:
    trained = copy.copy(trained_demo())
    prep, model = trained.estimator[0], trained.estimator[-1]
    trained.estimator = Pipeline([("features", prep), ("halve", Halve()), ("model", model)])
    return trained


def test_a_converted_version_is_served_by_the_lean_runtime(registry):
    manifest = training.publish(registry, "demo", trained_demo())
    assert manifest.lean is not None and manifest.lean.accepted and manifest.lean.reason is None
    assert manifest.lean.artifact == "model.lean.npz"
    assert manifest.lean.parity["passed"] and manifest.lean.parity["labels_equal"]
    assert manifest.lean.parity["source"] == "holdout" and manifest.lean.parity["rows"] > 0
    refs = manifest.artifacts
    assert refs["model.lean.npz"].runtime == "sklambda-lean" and refs["model.joblib"].runtime == "sklearn-joblib"
    assert all(len(r.sha256) == 64 for r in refs.values())
    loaded = load_version(registry, manifest)
    assert loaded.runtime == "sklambda-lean" and loaded.artifact == "model.lean.npz"
    matrix = InstanceValidator(manifest.schema).to_matrix(demo_rows(50))
    assert loaded.predict(matrix) == (
        trained_demo().estimator.predict(matrix).tolist(),
        trained_demo().estimator.predict_proba(matrix).tolist(),
    )


def test_a_version_that_does_not_convert_is_served_by_scikit_learn_and_the_manifest_says_why(registry):
    trained = _custom_pipeline()
    manifest = training.publish(registry, "demo", trained)
    assert manifest.lean is not None and not manifest.lean.accepted and manifest.lean.artifact is None
    assert "Halve" in manifest.lean.reason
    assert "model.lean.npz" not in manifest.artifacts
    loaded = load_version(registry, registry.get_manifest("demo", manifest.version))
    assert loaded.runtime == "sklearn-joblib" and loaded.artifact == "model.joblib"
    matrix = InstanceValidator(manifest.schema).to_matrix(demo_rows(20))
    assert loaded.predict(matrix)[1] == trained.estimator.predict_proba(matrix).tolist()


@pytest.fixture
def predict_env(moto_server, bucket) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_server,
        "MODEL_BUCKET": bucket,
        "DEFAULT_MODEL": "demo",
        "ALIAS_CHECK_SECONDS": "30",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "sklambda",
    }


COLD_START = """
import json, sys
sys.path[:0] = [{code!r}, {root!r}]
import app
from tests.support.helpers import FakeLambdaContext
with open({event!r}) as f:
    event = json.load(f)
answer = app.lambda_handler(event, FakeLambdaContext())
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"sklearn", "scipy", "joblib", "aws_xray_sdk"}})
resolver = "aws_lambda_powertools.event_handler" in sys.modules
print(json.dumps({{"status": answer["statusCode"], "heavy": heavy, "resolver": resolver}}))
"""


def test_a_cold_start_on_the_lean_runtime_never_imports_scikit_learn(registry, predict_env):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    code, event = str(ROOT / "functions" / "predict"), str(ROOT / "events/predict_default.json")
    script = COLD_START.format(code=code, root=str(ROOT), event=event)
    env = {**os.environ, **predict_env}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": 200, "heavy": [], "resolver": False}, report


GC_COLD_START = """
import gc, json, sys
sys.path[:0] = [{code!r}, {root!r}]
import app
from tests.support.helpers import FakeLambdaContext
with open({event!r}) as f:
    event = json.load(f)
paused = not gc.isenabled()
answer = app.lambda_handler(event, FakeLambdaContext())
print(json.dumps({{"status": answer["statusCode"], "paused_at_import": paused, "enabled_after": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}}))
"""


@pytest.mark.parametrize("on_lambda", [True, False])
def test_the_collector_is_paused_through_a_lambda_cold_start_and_resumes_after_the_first_answer(
    registry, predict_env, on_lambda
):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    code, event = str(ROOT / "functions" / "predict"), str(ROOT / "events/predict_default.json")
    script = GC_COLD_START.format(code=code, root=str(ROOT), event=event)
    env = {k: v for k, v in os.environ.items() if k != "AWS_EXECUTION_ENV"} | predict_env
    if on_lambda:
        env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.12"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 200 and report["enabled_after"] is True
    if on_lambda:  # paused from the first statement; everything the cold start made is frozen
        assert report["paused_at_import"] is True and report["frozen"] > 10_000, report
    else:  # tests, notebooks and scripts that import the app keep Python's defaults
        assert report["paused_at_import"] is False and report["frozen"] == 0, report


def _fresh_app(monkeypatch, env: dict[str, str], **extra: str):
    for key, value in {**env, **extra}.items():
        monkeypatch.setenv(key, value)
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("predict_app_lean_test", Path(ROOT, "functions/predict/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fast_path_answers_exactly_like_the_resolver(monkeypatch, registry, predict_env):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    app = _fresh_app(monkeypatch, predict_env)
    for event in (load_event("predict_default.json"), load_event("predict_named.json")):
        fast = app.lambda_handler(event, FakeLambdaContext())
        slow = app._resolver().resolve(event, FakeLambdaContext())
        assert app._fast_predict(event) is not None
        fast_body, slow_body = json.loads(fast.pop("body")), json.loads(slow.pop("body"))
        assert fast == slow
        assert len(fast_body.pop("prediction_ids")) == len(slow_body.pop("prediction_ids"))
        assert fast_body == slow_body
    # Everything else is the resolver's: malformed JSON, a body the model refuses, another media type.
    for body, status in (("{nope", 400), (json.dumps({"instances": [{"age": "x"}]}), 422), ("{}", 422)):
        event = event_with_body("predict_default.json", body, raw=True)
        answer = app.lambda_handler(event, FakeLambdaContext())
        assert answer["statusCode"] == status, answer
        assert answer == app._resolver().resolve(event, FakeLambdaContext())
    event = load_event("predict_default.json")
    event["headers"] = {**event["headers"], "content-type": "text/plain"}
    assert app._fast_predict(event) is None and app.lambda_handler(event, FakeLambdaContext())["statusCode"] == 415


def test_snapstart_init_warms_the_model_and_the_restore_hook_refreshes_state(monkeypatch, registry, predict_env):
    import snapshot_restore_py

    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    before = len(snapshot_restore_py.get_after_restore())
    app = _fresh_app(monkeypatch, predict_env, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    try:
        service = app.service()
        assert service.loaded("demo") is not None and service.loaded("demo").runtime == "sklambda-lean"
        hooks = snapshot_restore_py.get_after_restore()[before:]
        assert [h[0] for h in hooks] == [app._after_restore]
        old_client = service.registry.s3
        training.publish(registry, "demo", trained_demo(seed=1))
        registry.promote("demo", "2")  # promoted while the snapshot sat on disk
        for func, args, kwargs in hooks:  # what the runtime does on restore
            func(*args, **kwargs)
        assert service.registry.s3 is not old_client
        status = app.lambda_handler(load_event("predict_default.json"), FakeLambdaContext())
        assert status["statusCode"] == 200 and json.loads(status["body"])["model"]["version"] == "2"
    finally:
        del snapshot_restore_py.get_after_restore()[before:]
