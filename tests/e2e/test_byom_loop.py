"""Bring your own model, end to end on the local stack over HTTP: a pipeline a user fitted on a pandas
DataFrame with string categories → ``sklambda.publish`` (the Python API) → served over HTTP → drifted,
labelled traffic → drift run → DriftAlarm → the retrain ASL refits a clone of the same pipeline →
gate → canary → the retrained version is promoted and answers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import sklambda
from sklambda.registry.store import ModelRegistry
from sklambda_dev.local.stack import EmbeddedStack
from tests.support.helpers import ROOT
from tests.support.wait import wait_for

MODEL = "shop"
PARAMETERS = {
    "DefaultModelName": MODEL,  # the drift alarm watches the default model
    "DriftMinRows": "300",
    "AliasCheckSeconds": "1",
    "CanaryWaitSeconds": "3",
    "CanaryWeight": "0.5",
    "RetrainMinLabelledRows": "100",
    "RetrainFloor": "0.5",
    "RetrainMargin": "0.05",
}


def shop_data(n: int, *, seed: int, drift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Basket size, tenure and two text columns; drift moves every marginal and the plan mix."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0 + 3 * drift, 6.0, n)
    basket = rng.normal(40 + 30 * drift, 12, n)
    plans = ["free", "plus", "pro"]
    plan = rng.choice(plans, n, p=[0.6 - 0.4 * drift, 0.3, 0.1 + 0.4 * drift])
    region = rng.choice(["north/east", "south west", None], n, p=[0.45, 0.45, 0.1])
    score = 0.04 * basket - 0.05 * tenure + np.where(plan == "pro", 1.2, 0.0) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"basket (EUR)": basket, "tenure/months": tenure, "plan": plan, "region": region})
    frame.loc[rng.random(n) < 0.05, "basket (EUR)"] = np.nan
    return frame, np.where(score > np.median(score) if drift == 0 else score > 0.9, "churn", "stay")


def user_pipeline() -> Pipeline:
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    pre = ColumnTransformer(
        [
            ("num", numeric, ["basket (EUR)", "tenure/months"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
        ]
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression(C=0.5, max_iter=1000))])


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[EmbeddedStack]:
    state = tmp_path_factory.mktemp("byom") / "local.json"
    with EmbeddedStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="sklambda-byom-e2e",
        parameter_overrides=PARAMETERS,
        state_file=state,
        schedule_interval=0,
        alarm_interval=0,
    ) as running:
        yield running


def _instances(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.astype(object).to_dict("records"):
        out.append({k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()})
    return out


def test_a_users_pipeline_goes_publish_serve_drift_retrain_canary_promote(stack, monkeypatch):
    monkeypatch.setattr("sklambda_dev.cli.STATE_FILE", stack.state_file)
    frame, y = shop_data(1500, seed=7)
    pipeline = user_pipeline().fit(frame, y)

    published = sklambda.publish(pipeline, frame, y, name=MODEL, promote=True, verbose=False)
    manifest = published.manifest
    assert manifest.version == "1" and manifest.lacks == []
    assert published.runtime == "sklambda-lean", manifest.lean
    assert {f.name: f.type for f in manifest.features} == {
        "basket (EUR)": "number",
        "tenure/months": "number",
        "plan": "category",
        "region": "category",
    }

    api = stack.api_url
    described = requests.get(f"{api}/models/{MODEL}", timeout=30).json()
    assert described["runtime"] == "sklambda-lean" and described["version"] == "1"
    sample = frame.head(20)
    answer = requests.post(f"{api}/predict", json={"instances": _instances(sample)}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == pipeline.predict(sample).tolist()
    assert np.abs(np.asarray(body["probabilities"]) - pipeline.predict_proba(sample)).max() <= 1e-9
    assert body["classes"] == ["churn", "stay"]

    drifted, truth = shop_data(800, seed=8, drift=1.0)
    rows = _instances(drifted)
    labels = []
    for i in range(0, len(rows), 50):
        answer = requests.post(f"{api}/models/{MODEL}/predict", json={"instances": rows[i : i + 50]}, timeout=60)
        assert answer.status_code == 200, answer.text
        labels += [
            {"prediction_id": p, "label": str(truth[i + j])} for j, p in enumerate(answer.json()["prediction_ids"])
        ]
    for i in range(0, len(labels), 200):
        stored = requests.post(f"{api}/feedback", json={"feedback": labels[i : i + 200]}, timeout=60)
        assert stored.status_code == 202, stored.text

    drift = stack.run_schedule("DriftFunction")
    assert drift.ok, drift
    verdicts = {m["model"]: m for m in drift.payload["models"]}
    assert verdicts[MODEL]["verdict"] == "drift", verdicts
    assert stack.flush_metrics()
    transitions = stack.evaluate_alarms()
    assert any(t["alarm"].endswith("DriftAlarm") and t["state"] == "ALARM" for t in transitions), transitions

    sfn = stack.client("stepfunctions")
    arn = stack.state_machine_arn("RetrainStateMachine")
    executions = wait_for(
        lambda: sfn.list_executions(stateMachineArn=arn)["executions"],
        timeout=120,
        interval=0.5,
        message="the retrain the drift alarm starts",
    )
    described = stack.wait_execution(executions[0]["executionArn"], timeout=600)
    failures = [
        e.get("taskFailedEventDetails") or e.get("lambdaFunctionFailedEventDetails")
        for e in sfn.get_execution_history(executionArn=executions[0]["executionArn"])["events"]
        if "Failed" in e["type"]
    ]
    assert described["status"] == "SUCCEEDED", failures
    output = json.loads(described["output"])
    assert output["guard"]["model"] == MODEL and output["assembled"]["labelled_rows"] >= 700
    assert output["published"]["status"] == "candidate", output["evaluation"]
    assert output["outcome"]["outcome"] == "promoted", output["outcome"]
    new_version = output["published"]["version"]

    registry = ModelRegistry(stack.client("s3"), stack.bucket("ModelBucket"))
    retrained = registry.get_manifest(MODEL, new_version)
    assert retrained.parent_version == "1" and retrained.params["recipe"] == "clone"
    assert retrained.schema == manifest.schema and retrained.lean is not None and retrained.lean.accepted
    # The same pipeline, refitted: same steps and hyperparameters, new coefficients.
    from sklambda.serving.loader import deserialise_sklearn

    refit, _ = deserialise_sklearn(registry.get_artifact(retrained, "model.joblib"))
    final = refit
    while hasattr(final, "steps"):
        final = final.steps[-1][1]
    assert type(final).__name__ == "LogisticRegression" and final.C == 0.5

    wait_for(
        lambda: (
            requests.post(f"{api}/predict", json={"instances": rows[:1]}, timeout=60).json()["model"]["version"]
            == new_version
        ),
        timeout=60,
        interval=0.5,
        message=f"v{new_version} served after the retrain",
    )
    history = registry.get_alias(MODEL).record.history
    assert [e.action for e in history[-2:]] == ["canary", "promote"]
