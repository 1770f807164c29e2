"""The Open Inference Protocol (KServe V2) routes and the typed per-model documents are PredictFunction's
routes on the one HTTP API, so API Gateway and the local gateway send them to the handler that answers them,
and every /v2 route the handler answers is declared (a route the template lacks is a 404 before the function)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .support import REPO_ROOT

pytestmark = pytest.mark.infra

OIP_ROUTES = {
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
}
DOCUMENT_ROUTES = {("GET", "/models/{name}/openapi.json"), ("GET", "/models/{name}/docs")}


def _predict_routes(template) -> set[tuple[str, str]]:
    events = template["Resources"]["PredictFunction"]["Properties"]["Events"]
    routes = set()
    for event in events.values():
        if event["Type"] == "HttpApi":
            assert event["Properties"]["ApiId"] == {"Ref": "Api"}
            routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
    return routes


def test_the_v2_routes_and_model_documents_go_to_the_predict_function(template):
    missing = (OIP_ROUTES | DOCUMENT_ROUTES) - _predict_routes(template)
    assert not missing, f"routes missing from PredictFunction: {sorted(missing)}"


def test_every_v2_route_the_handler_answers_is_declared(template):
    source = Path(REPO_ROOT, "functions/predict/app.py").read_text()
    handled = set(re.findall(r'\("(GET|POST)", re\.compile\(', source))
    assert handled == {"GET", "POST"}
    declared = {(m, p) for m, p in _predict_routes(template) if p.startswith("/v2")}
    assert declared == OIP_ROUTES
