"""Every route of the predict API through the local stack over real HTTP."""

from __future__ import annotations

import json

import pytest
import requests

from sklambda.lifecycle import training
from tests.support.helpers import ROOT, demo_rows, trained_demo
from tests.support.wait import wait_for

SAMPLE = json.loads((ROOT / "events/sample_request.json").read_text())


def test_predict_default_and_named(api):
    for path in ("/predict", "/models/demo/predict"):
        r = requests.post(api + path, json=SAMPLE, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"name": "demo", "version": body["model"]["version"]}
        assert len(body["predictions"]) == len(body["probabilities"]) == len(body["prediction_ids"]) == 2
        assert r.headers["content-type"].startswith("application/json")


def test_metadata_health_ready_and_listing(api):
    r = requests.get(api + "/models/demo", timeout=30)
    assert r.status_code == 200 and r.json()["task"] == "classification"
    assert [f["name"] for f in r.json()["features"]][:3] == ["age", "income", "tenure_months"]
    assert requests.get(api + "/models", timeout=30).json()["models"][0]["name"] == "demo"
    health = requests.get(api + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["model"]["name"] == "demo"
    ready = requests.get(api + "/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["model"]["version"] is not None


def test_openapi_and_swagger_ui(api):
    spec = requests.get(api + "/openapi.json", timeout=30).json()
    assert "/models/{name}/predict" in spec["paths"]
    docs = requests.get(api + "/docs", timeout=30)
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "SwaggerUIBundle" in docs.text


def test_routes_not_in_the_template_are_404(api):
    assert requests.get(api + "/admin", timeout=30).status_code == 404
    assert requests.delete(api + "/predict", timeout=30).status_code == 404


@pytest.mark.parametrize(
    ("data", "headers", "status", "field"),
    [
        (b"{oops", {"content-type": "application/json"}, 400, "body"),
        (json.dumps({"instances": []}), {"content-type": "application/json"}, 422, "instances"),
        (json.dumps({"instances": [{}] * 101}), {"content-type": "application/json"}, 413, "instances"),
        (
            json.dumps({"instances": [{**demo_rows(1)[0], "age": "old"}]}),
            {"content-type": "application/json"},
            422,
            "instances[0].age",
        ),
        (
            json.dumps({"instances": [{**demo_rows(1)[0], "region": "mars"}]}),
            {"content-type": "application/json"},
            422,
            "instances[0].region",
        ),
        (
            json.dumps({"instances": [{**demo_rows(1)[0], "x": 1}]}),
            {"content-type": "application/json"},
            422,
            "instances[0].x",
        ),
        ("instances=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "content-type"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(api, data, headers, status, field):
    r = requests.post(api + "/predict", data=data, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert field in {d["field"] for d in r.json()["details"]}


def test_unknown_model_is_404(api):
    r = requests.post(api + "/models/nope/predict", json=SAMPLE, timeout=30)
    assert r.status_code == 404 and r.json()["error"] == "model_not_found"
    assert requests.get(api + "/models/NOPE", timeout=30).status_code == 404


def test_a_promotion_is_served_by_the_running_server_without_a_restart(api, registry):
    before = requests.post(api + "/predict", json=SAMPLE, timeout=60).json()["model"]["version"]
    manifest = training.publish(registry, "demo", trained_demo(seed=5))
    registry.promote("demo", manifest.version, reason="e2e")

    def served() -> str:
        return requests.post(api + "/predict", json=SAMPLE, timeout=60).json()["model"]["version"]

    wait_for(lambda: served() == manifest.version, timeout=60, interval=0.5, message="the promoted version served")
    assert manifest.version != before

    registry.rollback("demo", reason="e2e rollback")
    wait_for(lambda: served() == before, timeout=60, interval=0.5, message="the rolled-back version served")


def test_concurrent_clients_all_get_answers(api):
    from concurrent.futures import ThreadPoolExecutor

    rows = demo_rows(40, seed=9)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda r: requests.post(api + "/predict", json={"instances": [r]}, timeout=120), rows)
        )
    assert [r.status_code for r in responses] == [200] * 40
    ids = {r.json()["prediction_ids"][0] for r in responses}
    assert len(ids) == 40
