"""Route matching, payload 2.0 event construction and response mapping (no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sklambda_dev.local.gateway import (
    MalformedResponse,
    Router,
    build_event,
    is_text_content_type,
    map_response,
    response_for,
)
from sklambda_dev.local.template import HttpRoute, load_template
from sklambda_dev.local.worker import InvokeResult

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def router():
    return Router(load_template(TEMPLATE, {"AuthType": "NONE"}).routes)


def route(method: str, path: str, function: str = "Fn") -> HttpRoute:
    return HttpRoute(function=function, event=f"{method} {path}", method=method, path=path)


# ------------------------------------------------------------------------------------ routing
@pytest.mark.parametrize(
    ("method", "path", "route_key", "params"),
    [
        ("POST", "/models/iris/predict", "POST /models/{name}/predict", {"name": "iris"}),
        ("GET", "/models/iris", "GET /models/{name}", {"name": "iris"}),
        ("GET", "/models", "GET /models", {}),
        ("POST", "/predict", "POST /predict", {}),
        ("GET", "/health", "GET /health", {}),
        ("GET", "/models/my%20model", "GET /models/{name}", {"name": "my model"}),
    ],
)
def test_template_routes_match(router, method, path, route_key, params):
    match = router.match(method, path)
    assert match is not None
    assert match.route.route_key == route_key
    assert match.route.function == "PredictFunction"
    assert match.path_parameters == params


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/models/iris/predict"),  # the path exists, for POST only: 404 on HTTP APIs
        ("DELETE", "/health"),
        ("POST", "/models/iris/predict/extra"),
        ("GET", "/models//predict"),
    ],
)
def test_unknown_routes_do_not_match(router, method, path):
    assert router.match(method, path) is None


def test_greedy_proxy_and_specificity():
    r = Router(
        [
            route("GET", "/files/{proxy+}", "Greedy"),
            route("GET", "/files/special", "Literal"),
            route("GET", "/files/{name}", "Param"),
            route("ANY", "/items/{id}", "Any"),
            route("DELETE", "/items/{id}", "Delete"),
        ]
    )
    greedy = r.match("GET", "/files/a/b/c.txt")
    assert greedy.route.function == "Greedy"
    assert greedy.path_parameters == {"proxy": "a/b/c.txt"}
    assert r.match("GET", "/files/special").route.function == "Literal"
    assert r.match("GET", "/files/other").route.function == "Param"
    assert r.match("GET", "/files") is None  # greedy needs at least one segment
    assert r.match("PATCH", "/items/7").route.function == "Any"
    assert r.match("DELETE", "/items/7").route.function == "Delete"  # explicit method beats ANY
    assert r.match("GET", "/elsewhere") is None


def test_default_route_catches_the_rest():
    r = Router([route("GET", "/health", "Health"), HttpRoute("Default", "Catch", "ANY", "$default")])
    assert r.match("GET", "/health").route.function == "Health"
    fallback = r.match("POST", "/anything/else")
    assert fallback.route.function == "Default"
    assert fallback.route.route_key == "$default"


# ------------------------------------------------------------------------------------- events
def test_event_has_the_payload_2_0_shape():
    event = build_event(
        route("POST", "/models/{name}/predict"),
        method="POST",
        raw_path="/models/iris/predict",
        raw_query="explain=true&tag=a&tag=b&empty=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("User-Agent", "pytest"),
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("x-multi", "two"),
            ("Cookie", "session=abc; theme=dark"),
        ],
        body=b'{"instances": [[1, 2]]}',
        path_parameters={"name": "iris"},
        source_ip="10.0.0.9",
        api_id="abc123",
        request_id="req-1",
        now=1_700_000_000.123,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /models/{name}/predict"
    assert event["rawPath"] == "/models/iris/predict"
    assert event["rawQueryString"] == "explain=true&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"explain": "true", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"name": "iris"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    headers = event["headers"]
    assert headers["x-multi"] == "one,two"
    assert headers["content-type"] == "application/json"
    assert "cookie" not in headers
    assert all(k == k.lower() for k in headers)
    assert event["body"] == '{"instances": [[1, 2]]}'
    assert event["isBase64Encoded"] is False
    assert "stageVariables" not in event
    ctx = event["requestContext"]
    assert ctx["accountId"] == "123456789012"
    assert ctx["apiId"] == "abc123"
    assert ctx["domainName"] == "127.0.0.1"
    assert ctx["domainPrefix"] == "127"
    assert ctx["http"] == {
        "method": "POST",
        "path": "/models/iris/predict",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.9",
        "userAgent": "pytest",
    }
    assert ctx["requestId"] == "req-1"
    assert ctx["routeKey"] == "POST /models/{name}/predict"
    assert ctx["stage"] == "$default"
    assert ctx["time"] == "14/Nov/2023:22:13:20 +0000"
    assert ctx["timeEpoch"] == 1_700_000_000_123
    json.dumps(event)  # a Lambda event is JSON


def test_event_without_body_query_or_params_omits_them():
    event = build_event(route("GET", "/health"), method="GET", raw_path="/health")
    assert "body" not in event
    assert "queryStringParameters" not in event
    assert "pathParameters" not in event
    assert "cookies" not in event
    assert event["isBase64Encoded"] is False
    assert event["rawQueryString"] == ""
    assert event["requestContext"]["requestId"]  # generated


@pytest.mark.parametrize(
    ("content_type", "body", "encoded"),
    [
        ("application/octet-stream", b"\x00\x01\xff", True),
        ("image/png", b"\x89PNG", True),
        (None, b"no content type", True),
        ("application/x-www-form-urlencoded", b"a=1&b=2", True),
        ("application/json", b"\xff\xfe not utf-8", True),
        ("application/json; charset=utf-8", b'{"a": 1}', False),
        ("text/csv", "a,b\n1,é\n".encode(), False),
        ("application/vnd.api+json", b"{}", False),
    ],
)
def test_non_text_bodies_are_base64_encoded(content_type, body, encoded):
    headers = [("Content-Type", content_type)] if content_type else []
    event = build_event(route("POST", "/x"), method="POST", raw_path="/x", headers=headers, body=body)
    assert event["isBase64Encoded"] is encoded
    if encoded:
        assert base64.b64decode(event["body"]) == body
    else:
        assert event["body"] == body.decode()


def test_text_content_types():
    assert is_text_content_type("text/plain; charset=utf-8")
    assert is_text_content_type("application/xml")
    assert not is_text_content_type("multipart/form-data; boundary=x")
    assert not is_text_content_type(None)


# ---------------------------------------------------------------------------------- responses
def test_result_without_status_code_is_200_json():
    response = map_response({"predictions": [1, 0]})
    assert response.status == 200
    assert ("content-type", "application/json") in response.headers
    assert json.loads(response.body) == {"predictions": [1, 0]}
    assert json.loads(map_response("hello").body) == "hello"


def test_full_response_mapping():
    response = map_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Count": 3},
            "multiValueHeaders": {"X-Many": ["a", "b"]},
            "cookies": ["a=1", "b=2; Path=/"],
            "body": "created",
            "isBase64Encoded": False,
        }
    )
    assert response.status == 201
    assert response.body == b"created"
    assert ("Content-Type", "text/plain") in response.headers
    assert ("X-Count", "3") in response.headers
    assert [v for k, v in response.headers if k == "X-Many"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "set-cookie"] == ["a=1", "b=2; Path=/"]
    assert not any(k == "content-type" for k, _ in response.headers)  # no default added


def test_base64_response_body_is_decoded():
    raw = bytes(range(256))
    response = map_response({"statusCode": 200, "body": base64.b64encode(raw).decode(), "isBase64Encoded": True})
    assert response.body == raw


def test_status_code_only_gets_an_empty_json_response():
    response = map_response({"statusCode": 204})
    assert response.status == 204 and response.body == b""
    assert ("content-type", "application/json") in response.headers


@pytest.mark.parametrize(
    "payload",
    [
        {"statusCode": "abc"},
        {"statusCode": 99},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": {"x": {"nested": 1}}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_malformed_responses(payload):
    with pytest.raises(MalformedResponse):
        map_response(payload)


@pytest.mark.parametrize(
    ("result", "status", "message"),
    [
        (InvokeResult("r", "ok", payload={"statusCode": 200, "body": {}}), 500, "Internal Server Error"),
        (InvokeResult("r", "error", error={"errorType": "ValueError"}), 500, "Internal Server Error"),
        (InvokeResult("r", "timeout"), 504, "Endpoint request timed out"),
        (InvokeResult("r", "throttled"), 429, "Too Many Requests"),
        (InvokeResult("r", "too_large"), 413, "Request Entity Too Large"),
    ],
)
def test_invocation_failures_map_to_api_gateway_errors(result, status, message):
    response = response_for(result)
    assert response.status == status
    assert json.loads(response.body) == {"message": message}
