"""The Open Inference Protocol (KServe V2, REST) routes through the real predict handler, in-process,
against moto's server: plain JSON inference requests (as any JSON-only client sends them), Triton's
binary tensor data built by hand, metadata, readiness, pinned versions, canary routing, capture, and
every bad input a 4xx in the protocol's shape.

Each request is turned into its event by the local gateway's own code (the template's routes, payload
2.0, base64 for a body without a text content type) and each answer mapped back as API Gateway does.
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sklambda.lifecycle import demo, training
from sklambda_dev.local.gateway import Router, build_event, map_response
from sklambda_dev.local.template import Template
from tests.support.helpers import ROOT, FakeLambdaContext, demo_rows, trained_demo

ROUTER = Router(Template(ROOT / "template.yaml").routes)


DEMO = list(demo.DEMO_SCHEMA.features)
NAMES = [f.name for f in DEMO]
DECLARED = {"number": "FP64", "integer": "INT64", "category": "BYTES", "boolean": "BOOL"}


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


@pytest.fixture(scope="module")
def demo_bucket(moto_server) -> str:
    """A bucket with demo v1 in production, shared by the tests that only read it (publishing takes seconds)."""
    import uuid

    import boto3

    from sklambda.registry.store import ModelRegistry

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    name = f"oip-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    registry = ModelRegistry(s3, name, sleep=lambda _s: None)
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    return name


@pytest.fixture
def v2(monkeypatch, moto_server, bucket):
    """Requests to a fresh handler module (a cold start) on this test's own bucket."""
    yield from _handler(monkeypatch, moto_server, bucket)


@pytest.fixture
def demo_v2(monkeypatch, moto_server, demo_bucket):
    """Requests to a fresh handler module on the shared bucket where demo v1 is in production."""
    yield from _handler(monkeypatch, moto_server, demo_bucket)


def _handler(monkeypatch, moto_server, bucket):
    """POST/GET a path through the template's routes into a fresh handler module (a cold start)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("MODEL_BUCKET", bucket)
    monkeypatch.setenv("DEFAULT_MODEL", "demo")
    monkeypatch.setenv("MAX_BATCH_ROWS", "25")
    monkeypatch.setenv("ALIAS_CHECK_SECONDS", "0")
    monkeypatch.setenv("PREDICTION_ID_KEY", "test-signing-key")
    from sklambda.core import aws

    aws.s3_client.cache_clear()
    spec = importlib.util.spec_from_file_location("predict_app_oip_test", Path(ROOT, "functions/predict/app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def call(method: str, path: str, body: bytes | dict | str | None = None, headers: dict[str, str] | None = None):
        match = ROUTER.match(method, path)
        assert match is not None, f"{method} {path} is not a route of template.yaml"
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        elif isinstance(body, str):
            body = body.encode()
        event = build_event(
            match.route,
            method=method,
            raw_path=path,
            headers=list((headers or {}).items()),
            body=body or b"",
            path_parameters=match.path_parameters,
        )
        mapped = map_response(module.lambda_handler(event, FakeLambdaContext()))
        return Answer(mapped.status, dict(mapped.headers), mapped.body)

    call.module = module  # type: ignore[attr-defined]
    yield call
    aws.s3_client.cache_clear()


@pytest.fixture
def published(registry):
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    return registry


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in NAMES}


def _per_feature(rows: list[dict[str, Any]], *, shape_1: bool = False) -> list[dict[str, Any]]:
    n = len(rows)
    return [
        {"name": f.name, "datatype": DECLARED[f.type], "shape": [n, 1] if shape_1 else [n], "data": column}
        for f, column in zip(DEMO, _columns(rows).values(), strict=True)
    ]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _matrix(rows: list[dict[str, Any]], *, nested: bool = True) -> dict[str, Any]:
    data = [[_as_text(row[name]) for name in NAMES] for row in rows]
    return {
        "name": "input-0",
        "datatype": "BYTES",
        "shape": [len(rows), len(NAMES)],
        "data": data if nested else [x for r in data for x in r],
    }


def _outputs(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in answer["outputs"]}


def _json_predict(v2, rows):
    """The JSON API's answer for the same rows (through the same handler)."""
    match = ROUTER.match("POST", "/models/demo/predict")
    event = build_event(
        match.route,
        method="POST",
        raw_path="/models/demo/predict",
        headers=[("content-type", "application/json")],
        body=json.dumps({"instances": rows}).encode(),
        path_parameters=match.path_parameters,
    )
    answer = v2.module.lambda_handler(event, FakeLambdaContext())
    assert answer["statusCode"] == 200, answer
    return json.loads(answer["body"])


# ------------------------------------------------------------------------------ server and model metadata
def test_server_metadata_liveness_and_readiness(v2, registry):
    answer = v2("GET", "/v2")
    assert answer.status == 200 and answer.json()["name"] == "sklambda"
    assert "binary_tensor_data" in answer.json()["extensions"] and answer.json()["version"]
    assert v2("GET", "/v2/health/live").status == 200
    not_ready = v2("GET", "/v2/health/ready")  # nothing published yet: the protocol's "false" is a 4xx
    assert not_ready.status == 404 and set(not_ready.json()) == {"error"}
    assert v2("GET", "/v2/models/demo/ready").status == 404
    training.publish(registry, "demo", trained_demo())
    registry.promote("demo", "1")
    assert v2("GET", "/v2/health/ready").status == 200
    assert v2("GET", "/v2/models/demo/ready").status == 200
    assert v2("GET", "/v2/models/demo/versions/1/ready").status == 200
    assert v2("GET", "/v2/models/demo/versions/2/ready").status == 404


def test_model_metadata_has_an_input_per_feature_and_the_outputs(demo_v2):
    answer = demo_v2("GET", "/v2/models/demo")
    assert answer.status == 200
    meta = answer.json()
    assert meta["name"] == "demo" and meta["versions"] == ["1"] and meta["platform"] == "sklambda-lean"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (f.name, DECLARED[f.type], [-1]) for f in DEMO
    ]
    plan = next(i for i in meta["inputs"] if i["name"] == "plan")
    assert plan["parameters"]["categories"] == next(f.categories for f in DEMO if f.name == "plan")
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["predict"] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
    assert outputs["predict_proba"]["shape"] == [-1, 2] and outputs["predict_proba"]["parameters"]["classes"] == [0, 1]
    assert outputs["prediction_ids"]["datatype"] == "BYTES"
    assert meta["parameters"]["feature_order"] == NAMES
    assert meta["parameters"]["matrix_input"] == {"shape": [-1, len(NAMES)], "datatypes": ["BYTES"]}
    assert demo_v2("GET", "/v2/models/demo/versions/1").json() == meta
    missing = demo_v2("GET", "/v2/models/demo/versions/7")
    assert missing.status == 404 and "not served" in missing.json()["error"]
    ghost = demo_v2("GET", "/v2/models/ghost")
    assert ghost.status == 404 and set(ghost.json()) == {"error"}


# ------------------------------------------------------------------------------ infer, JSON
def test_one_row_as_one_tensor_per_feature_answers_like_the_json_api(demo_v2):
    rows = demo_rows(1)
    answer = demo_v2("POST", "/v2/models/demo/infer", {"id": "req-1", "inputs": _per_feature(rows)})
    assert answer.status == 200, answer.body
    assert answer.header("content-type") == "application/json"
    body = answer.json()
    assert body["id"] == "req-1" and body["model_name"] == "demo" and body["model_version"] == "1"
    outputs = _outputs(body)
    assert [o["name"] for o in body["outputs"]] == ["predict", "predict_proba", "prediction_ids"]
    expected = _json_predict(demo_v2, rows)
    assert outputs["predict"] == {"name": "predict", "datatype": "INT64", "shape": [1], "data": expected["predictions"]}
    proba = outputs["predict_proba"]
    assert proba["datatype"] == "FP64" and proba["shape"] == [1, 2] and proba["parameters"] == {"classes": [0, 1]}
    assert proba["data"] == [p for row in expected["probabilities"] for p in row]  # exactly, flat row-major
    ids = outputs["prediction_ids"]
    assert ids["datatype"] == "BYTES" and ids["shape"] == [1] and ids["data"][0].startswith("demo.v1.")
    assert ids["data"] != expected["prediction_ids"]


@pytest.mark.parametrize("form", ["per-feature [n]", "per-feature [n,1]", "matrix nested", "matrix flat"])
def test_a_batch_in_every_input_form_answers_the_same(demo_v2, form):
    rows = demo_rows(20, seed=5)
    inputs = {
        "per-feature [n]": lambda: _per_feature(rows),
        "per-feature [n,1]": lambda: _per_feature(rows, shape_1=True),
        "matrix nested": lambda: [_matrix(rows)],
        "matrix flat": lambda: [_matrix(rows, nested=False)],
    }[form]()
    answer = demo_v2("POST", "/v2/models/demo/infer", {"inputs": inputs})
    assert answer.status == 200, answer.body
    outputs = _outputs(answer.json())
    expected = _json_predict(demo_v2, rows)
    assert outputs["predict"]["data"] == expected["predictions"] and outputs["predict"]["shape"] == [20]
    assert outputs["predict_proba"]["data"] == [p for row in expected["probabilities"] for p in row]
    assert len(set(outputs["prediction_ids"]["data"])) == 20


def test_outputs_select_what_is_answered_and_ids_always_come(demo_v2):
    rows = demo_rows(3)
    only_proba = {"inputs": _per_feature(rows), "outputs": [{"name": "predict_proba"}]}
    body = demo_v2("POST", "/v2/models/demo/infer", only_proba).json()
    assert [o["name"] for o in body["outputs"]] == ["predict_proba", "prediction_ids"]
    only_predict = {"inputs": _per_feature(rows), "outputs": [{"name": "predict"}]}
    body = demo_v2("POST", "/v2/models/demo/infer", only_predict).json()
    assert [o["name"] for o in body["outputs"]] == ["predict", "prediction_ids"]


def test_a_nullable_feature_may_be_left_out_null_or_nan(v2, registry):
    from sklearn.ensemble import RandomForestClassifier

    from sklambda.lifecycle.publish import publish_version
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(
        features=[
            FeatureSpec(name="size (m²)", type="number"),
            FeatureSpec(name="garden", type="boolean"),
            FeatureSpec(name="floor", type="integer", nullable=True),
        ]
    )
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(20, 200, 400), rng.integers(0, 2, 400), rng.integers(0, 6, 400)]).astype(float)
    x[rng.random(400) < 0.2, 2] = np.nan
    y = (x[:, 0] > 100).astype(int)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    publish_version(registry, "flats", model, schema, "classification", holdout_x=x[:50], holdout_y=y[:50])
    registry.promote("flats", "1")

    base = [
        {"name": "size (m²)", "datatype": "FP32", "shape": [3], "data": [50.0, 150.0, 120.0]},
        {"name": "garden", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
    ]
    left_out = v2("POST", "/v2/models/flats/infer", {"inputs": base})
    null = v2(
        "POST",
        "/v2/models/flats/infer",
        {"inputs": [*base, {"name": "floor", "datatype": "INT64", "shape": [3], "data": [None, None, None]}]},
    )
    nan = v2(
        "POST",
        "/v2/models/flats/infer",
        json.dumps({"inputs": [*base, {"name": "floor", "datatype": "FP64", "shape": [3], "data": [0.0] * 3}]}).replace(
            "[0.0, 0.0, 0.0]", "[NaN, NaN, NaN]"
        ),
        {"content-type": "application/json"},
    )
    expected = model.predict_proba(np.array([[50, 1, np.nan], [150, 0, np.nan], [120, 1, np.nan]])).ravel().tolist()
    for answer in (left_out, null, nan):
        assert answer.status == 200, answer.body
        assert _outputs(answer.json())["predict_proba"]["data"] == expected
    # a numeric [n, 3] tensor: the boolean feature takes 0 and 1
    matrix = {"name": "x", "datatype": "FP64", "shape": [1, 3], "data": [[50.0, 1.0, 2.0]]}
    answer = v2("POST", "/v2/models/flats/infer", {"inputs": [matrix]})
    assert answer.status == 200, answer.body
    assert _outputs(answer.json())["predict_proba"]["data"] == model.predict_proba([[50.0, 1.0, 2.0]]).ravel().tolist()


def test_a_regressor_answers_fp64_values_and_has_no_predict_proba(v2, registry):
    from sklearn.ensemble import RandomForestRegressor

    from sklambda.lifecycle.publish import publish_version
    from sklambda.registry.features import FeatureSchema, FeatureSpec

    schema = FeatureSchema(features=[FeatureSpec(name="rooms", type="number"), FeatureSpec(name="area", type="number")])
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 100, size=(300, 2))
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, 3 * x[:, 0] + x[:, 1])
    publish_version(registry, "houses", model, schema, "regression", holdout_x=x[:50], holdout_y=x[:50, 0])
    registry.promote("houses", "1")
    meta = v2("GET", "/v2/models/houses").json()
    assert [o["name"] for o in meta["outputs"]] == ["predict", "prediction_ids"]
    assert meta["outputs"][0]["datatype"] == "FP64"
    inputs = [{"name": "input-0", "datatype": "FP32", "shape": [2, 2], "data": [3.0, 50.0, 7.0, 80.0]}]
    answer = v2("POST", "/v2/models/houses/infer", {"inputs": inputs})
    assert answer.status == 200, answer.body
    sent = np.array([[3.0, 50.0], [7.0, 80.0]])
    assert _outputs(answer.json())["predict"]["data"] == model.predict(sent).tolist()
    refused = v2("POST", "/v2/models/houses/infer", {"inputs": inputs, "outputs": [{"name": "predict_proba"}]})
    assert refused.status == 422 and "predict_proba" in refused.json()["error"]


# ------------------------------------------------------------------------------ infer, binary tensor data
def _bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _binary_request(rows, *, outputs: list[dict] | None = None, binary_output: bool | None = True):
    """What tritonclient.http sends with its defaults: every input as binary data after the JSON."""
    columns, inputs, blobs = _columns(rows), [], []
    for f in DEMO:
        values = columns[f.name]
        if f.type == "category":
            blob = _bytes_tensor(values)
        elif f.type == "integer":
            blob = np.asarray(values, dtype="<i8").tobytes()
        else:
            blob = np.asarray(values, dtype="<f4").tobytes()
        datatype = {"category": "BYTES", "integer": "INT64", "number": "FP32"}[f.type]
        inputs.append(
            {"name": f.name, "shape": [len(rows)], "datatype": datatype, "parameters": {"binary_data_size": len(blob)}}
        )
        blobs.append(blob)
    header: dict[str, Any] = {"inputs": inputs}
    if outputs is not None:
        header["outputs"] = outputs
    if binary_output is not None:
        header["parameters"] = {"binary_data_output": binary_output}
    text = json.dumps(header).encode()
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(len(text))}


def _read_binary_answer(answer: Answer) -> dict[str, Any]:
    length = int(answer.header("Inference-Header-Content-Length"))
    header, rest = json.loads(answer.body[:length]), answer.body[length:]
    out, offset = {}, 0
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        raw, offset = rest[offset : offset + size], offset + size
        if o["datatype"] == "BYTES":
            values, i = [], 0
            while i < len(raw):
                (n,) = struct.unpack_from("<I", raw, i)
                values.append(raw[i + 4 : i + 4 + n].decode())
                i += 4 + n
            out[o["name"]] = values
        else:
            out[o["name"]] = np.frombuffer(raw, dtype={"FP64": "<f8", "INT64": "<i8"}[o["datatype"]]).tolist()
    assert offset == len(rest)
    return out


def test_binary_tensor_data_in_and_out(demo_v2):
    rows = demo_rows(6, seed=9)
    body, headers = _binary_request(rows)  # no content type, as tritonclient sends it: base64 in the event
    answer = demo_v2("POST", "/v2/models/demo/infer", body, headers)
    assert answer.status == 200, answer.body
    assert answer.header("content-type") == "application/octet-stream"
    got = _read_binary_answer(answer)
    # float32 inputs, as the client sent them
    sent = [{**r, **{f.name: float(np.float32(r[f.name])) for f in DEMO if f.type == "number"}} for r in rows]
    expected = _json_predict(demo_v2, sent)
    assert got["predict"] == expected["predictions"]
    assert got["predict_proba"] == [p for row in expected["probabilities"] for p in row]
    assert len(got["prediction_ids"]) == 6
    # JSON outputs for binary inputs, per output
    body, headers = _binary_request(
        rows, outputs=[{"name": "predict", "parameters": {"binary_data": False}}], binary_output=None
    )
    answer = demo_v2("POST", "/v2/models/demo/infer", body, headers)
    assert answer.status == 200 and answer.header("Inference-Header-Content-Length") is None
    outputs = _outputs(answer.json())
    assert outputs["predict"]["data"] == expected["predictions"] and "data" in outputs["prediction_ids"]


def test_a_gzip_body_is_inflated(demo_v2):
    rows = demo_rows(2)
    raw = json.dumps({"inputs": _per_feature(rows)}).encode()
    answer = demo_v2("POST", "/v2/models/demo/infer", gzip.compress(raw), {"Content-Encoding": "gzip"})
    assert answer.status == 200, answer.body
    assert _outputs(answer.json())["predict"]["data"] == _json_predict(demo_v2, rows)["predictions"]


# ------------------------------------------------------------------------------ versions, canary, capture
def test_a_pinned_version_and_canary_routing(v2, published):
    training.publish(published, "demo", trained_demo(seed=1))
    published.set_canary("demo", "2", 0.5)
    rows = demo_rows(2)
    request = {"inputs": _per_feature(rows)}
    seen = {v2("POST", "/v2/models/demo/infer", request).json()["model_version"] for _ in range(40)}
    assert seen == {"1", "2"}  # each request routed by its own id, as the JSON API does
    for version in ("1", "2"):
        answer = v2("POST", f"/v2/models/demo/versions/{version}/infer", request)
        assert answer.status == 200 and answer.json()["model_version"] == version
        assert _outputs(answer.json())["prediction_ids"]["data"][0].startswith(f"demo.v{version}.")
    assert v2("GET", "/v2/models/demo").json()["versions"] == ["1", "2"]
    unserved = v2("POST", "/v2/models/demo/versions/3/infer", request)
    assert unserved.status == 404 and "not served" in unserved.json()["error"]


def test_served_rows_are_captured_with_their_prediction_ids(demo_v2, monkeypatch, delivery_stream, s3, demo_bucket):
    bucket = demo_bucket
    delivery_stream(f"cap-{bucket}", bucket, "captures/")
    monkeypatch.setenv("CAPTURE_STREAM", f"cap-{bucket}")
    from sklambda.core import aws

    aws.firehose_client.cache_clear()
    rows = demo_rows(3)
    answer = demo_v2("POST", "/v2/models/demo/infer", {"inputs": [_matrix(rows)]})
    assert answer.status == 200
    ids = _outputs(answer.json())["prediction_ids"]["data"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="captures/")["Contents"]]
    lines = [json.loads(x) for k in keys for x in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()]
    assert [r["prediction_id"] for r in lines] == ids
    assert [r["features"]["plan"] for r in lines] == [r["plan"] for r in rows]
    assert [r["features"]["age"] for r in lines] == [float(r["age"]) for r in rows]
    aws.firehose_client.cache_clear()


# ------------------------------------------------------------------------------ bad input: 4xx, {"error"}
def _good(n: int = 2) -> list[dict[str, Any]]:
    return _per_feature(demo_rows(n))


def _with(index: int, **change: Any) -> list[dict[str, Any]]:
    inputs = _good()
    inputs[index] = {**inputs[index], **change}
    return inputs


BAD_BODIES = [
    pytest.param({"inputs": []}, 422, "inputs: must be a non-empty list", id="no-inputs"),
    pytest.param({"instances": []}, 422, "unknown field 'instances'", id="json-api-body"),
    pytest.param({"inputs": _good()[1:]}, 422, "input 'age' is missing", id="missing-feature"),
    pytest.param(
        {"inputs": [*_good(), {"name": "colour", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}]},
        422,
        "not a feature of this model",
        id="unknown-input",
    ),
    pytest.param({"inputs": [*_good(), _good()[0]]}, 422, "sent twice", id="twice"),
    pytest.param({"inputs": _with(0, datatype="BYTES")}, 422, "datatype BYTES for a integer feature", id="datatype"),
    pytest.param({"inputs": _with(0, datatype="BF16")}, 422, "'BF16' is not supported", id="bf16"),
    pytest.param({"inputs": _with(0, shape=[3])}, 422, "holds 3 elements, data has 2", id="count"),
    pytest.param(
        {"inputs": _with(0, shape=[2, 2], data=[1, 2, 3, 4])}, 422, "a feature's tensor is [n] or [n, 1]", id="shape"
    ),
    pytest.param({"inputs": _with(0, shape=[1, 1, 2])}, 422, "shape must be [n], [n, 1] or [n, n_features]", id="rank"),
    pytest.param({"inputs": _with(0, shape=[-2])}, 422, "non-negative integers", id="negative-shape"),
    pytest.param(
        {"inputs": _with(1, shape=[1], data=[5.0])}, 422, "1 rows, but the first input has 2", id="rows-differ"
    ),
    pytest.param(
        {"inputs": _with(0, data=[37.5, 40])}, 422, "input 'age' row 0: expected an integer, got 37.5", id="fraction"
    ),
    pytest.param(
        {"inputs": _with(8, data=["gold", "basic"])}, 422, "input 'plan' row 0: unknown category 'gold'", id="category"
    ),
    pytest.param({"inputs": _with(1, data=[1e39, 2.0])}, 422, "input 'income' row 0: is too large", id="past-float32"),
    pytest.param(
        {"inputs": _with(0, data=[None, 40])}, 422, "input 'age' row 0: is required and cannot be null", id="null"
    ),
    pytest.param(
        {"inputs": _with(1, data=["x", 2.0])}, 422, "input 'income' row 0: expected a number, got string", id="string"
    ),
    pytest.param(
        {"inputs": [{**t, "shape": [26], "data": t["data"] * 13} for t in _good()]},
        413,
        "exceed the limit of 25",
        id="too-many-rows",
    ),
    pytest.param(
        {"inputs": [{**t, "shape": [0], "data": []} for t in _good()]}, 422, "at least one row", id="zero-rows"
    ),
    pytest.param(
        {"inputs": _good(), "outputs": [{"name": "scores"}]}, 422, "output 'scores': not an output", id="unknown-output"
    ),
    pytest.param(
        {"inputs": _good(), "outputs": [{"name": "predict", "parameters": {"classification": 2}}]},
        422,
        "classification extension",
        id="classification",
    ),
    pytest.param({"inputs": _good(), "id": 7}, 422, "id: must be a string", id="id"),
    pytest.param(
        {"inputs": _good(), "parameters": {"binary_data_output": "yes"}},
        422,
        "binary_data_output: must be a boolean",
        id="binary-flag",
    ),
    pytest.param(
        {"inputs": _with(0, parameters={"shared_memory_region": "r"})}, 422, "shared memory", id="shared-memory"
    ),
    pytest.param(
        {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 12], "data": [0.0] * 12}]},
        422,
        "cannot carry this model's category features",
        id="numeric-matrix",
    ),
    pytest.param(
        {"inputs": [{**_matrix(demo_rows(1)), "data": [["x"] + ["1"] * 11]}]},
        422,
        "input 'input-0' row 0 ('age'): expected a number, got string",
        id="matrix-value",
    ),
    pytest.param([1, 2], 422, "a JSON object with 'inputs'", id="not-an-object"),
]


@pytest.mark.parametrize(("body", "status", "text"), BAD_BODIES)
def test_bad_inference_requests_are_4xx_in_the_protocols_shape(demo_v2, body, status, text):
    raw = json.dumps(body).encode()
    answer = demo_v2("POST", "/v2/models/demo/infer", raw, {"content-type": "application/json"})
    assert answer.status == status, answer.body
    error = answer.json()
    assert set(error) == {"error"} and text in error["error"], error


FRAMING = [
    pytest.param(b"{not json", {}, 400, "malformed JSON", id="malformed"),
    pytest.param(b"", {"content-type": "application/json"}, 422, "needs a JSON body", id="empty"),
    pytest.param(b'{"inputs": []}\xff\xfe', {}, 400, "Inference-Header-Content-Length", id="binary-without-header"),
    pytest.param(b"{}", {"Inference-Header-Content-Length": "9"}, 400, "but the body has 2", id="header-past-body"),
    pytest.param(
        b"{}", {"Inference-Header-Content-Length": "two"}, 400, "is not a byte count", id="header-not-a-number"
    ),
    pytest.param(b"{}", {"content-type": "text/csv"}, 415, "unsupported content type", id="content-type"),
    pytest.param(b"{}", {"Content-Encoding": "br"}, 415, "unsupported content encoding", id="encoding"),
    pytest.param(b"\x1f\x8b junk", {"Content-Encoding": "gzip"}, 400, "not gzip data", id="bad-gzip"),
    pytest.param(
        gzip.compress(b"{" * 10 + b" " * (7 << 20)), {"Content-Encoding": "gzip"}, 413, "once inflated", id="gzip-bomb"
    ),
]


@pytest.mark.parametrize(("body", "headers", "status", "text"), FRAMING)
def test_unreadable_bodies_are_4xx_in_the_protocols_shape(demo_v2, body, headers, status, text):
    answer = demo_v2("POST", "/v2/models/demo/infer", body, headers)
    assert answer.status == status, answer.body
    assert set(answer.json()) == {"error"} and text in answer.json()["error"], answer.json()


def _binary_with(change) -> tuple[bytes, dict[str, str]]:
    header = {"inputs": [{"name": "age", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}}]}
    tail = np.asarray([30, 40], dtype="<i8").tobytes()
    header, tail = change(header, tail)
    text = json.dumps(header).encode()
    return text + tail, {"Inference-Header-Content-Length": str(len(text))}


@pytest.mark.parametrize(
    ("change", "status", "text"),
    [
        (lambda h, t: (h, t[:-3]), 400, "runs past the binary data"),
        (lambda h, t: (h, t + b"xx"), 400, "2 bytes after the last tensor"),
        (
            lambda h, t: ({"inputs": [{**h["inputs"][0], "parameters": {"binary_data_size": 12}}]}, t[:12]),
            400,
            "is not 2 INT64 elements",
        ),
        (lambda h, t: ({"inputs": [{**h["inputs"][0], "data": [1, 2]}]}, t), 422, "has both data and binary_data_size"),
        (
            lambda h, t: (
                {
                    "inputs": [
                        {"name": "plan", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 6}}
                    ]
                },
                b"\x09\x00\x00\x00ab",
            ),
            400,
            "longer than the data left",
        ),
        (
            lambda h, t: (
                {
                    "inputs": [
                        {"name": "plan", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}
                    ]
                },
                b"\x02\x00\x00\x00\xff\xfe",
            ),
            422,
            "not UTF-8 text",
        ),
        (
            lambda h, t: (
                {
                    "inputs": [
                        {"name": "plan", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 2}}
                    ]
                },
                b"\x02\x00",
            ),
            400,
            "inside an element's length",
        ),
    ],
    ids=["short", "trailing", "size", "both", "bytes-length", "bytes-utf8", "bytes-prefix"],
)
def test_bad_binary_tensor_data_is_4xx_in_the_protocols_shape(demo_v2, change, status, text):
    body, headers = _binary_with(change)
    answer = demo_v2("POST", "/v2/models/demo/infer", body, headers)
    assert answer.status == status, answer.body
    assert set(answer.json()) == {"error"} and text in answer.json()["error"], answer.json()


def test_unknown_models_and_routes_are_404_in_the_protocols_shape(demo_v2):
    request = {"inputs": _good()}
    for path in ("/v2/models/ghost/infer", "/v2/models/Not_A_Name/infer"):
        answer = demo_v2("POST", path, request)
        assert answer.status == 404 and set(answer.json()) == {"error"}, answer.body
    direct = demo_v2.module.lambda_handler(
        {"rawPath": "/v2/models/demo/explain", "requestContext": {"http": {"method": "POST"}}}, FakeLambdaContext()
    )
    assert direct["statusCode"] == 404 and set(json.loads(direct["body"])) == {"error"}


# ------------------------------------------------------------------------------ the lean path
COLD_V2 = """
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


def test_a_v2_infer_cold_start_never_imports_scikit_learn_or_the_resolver(moto_server, demo_bucket, tmp_path):
    body, headers = _binary_request(demo_rows(3))
    match = ROUTER.match("POST", "/v2/models/demo/infer")
    event = build_event(
        match.route,
        method="POST",
        raw_path="/v2/models/demo/infer",
        headers=list(headers.items()),
        body=body,
        path_parameters=match.path_parameters,
    )
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == body
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_server,
        "MODEL_BUCKET": demo_bucket,
        "DEFAULT_MODEL": "demo",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "predict",
        "POWERTOOLS_METRICS_NAMESPACE": "sklambda",
    }
    script = COLD_V2.format(code=str(ROOT / "functions" / "predict"), root=str(ROOT), event=str(path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"status": 200, "heavy": [], "resolver": False}, report


# ------------------------------------------------------------------------------ never a 5xx
def _hostile_inputs() -> Any:
    from hypothesis import strategies as st

    values = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    tensor = st.fixed_dictionaries(
        {
            "name": st.sampled_from([*NAMES, "input-0", ""]),
            "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES", "UINT8", "BF16"]),
            "shape": st.lists(st.integers(0, 30), min_size=1, max_size=2),
            "data": st.lists(values | st.lists(values, max_size=13), max_size=30),
        }
    )
    good = st.just(None).map(lambda _: _per_feature(demo_rows(2)))
    mutated = good.flatmap(
        lambda inputs: st.tuples(st.integers(0, len(inputs) - 1), tensor).map(
            lambda pick: [*inputs[: pick[0]], pick[1], *inputs[pick[0] + 1 :]]
        )
    )
    return st.one_of(st.lists(tensor, max_size=13), mutated)


def test_no_inference_request_gets_a_5xx(demo_v2):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(inputs=_hostile_inputs(), binary=st.booleans(), tail=st.binary(max_size=32))
    def check(inputs, binary, tail):
        raw = json.dumps({"inputs": inputs}).encode()
        headers = {"Inference-Header-Content-Length": str(len(raw))} if binary else {"content-type": "application/json"}
        answer = demo_v2("POST", "/v2/models/demo/infer", raw + (tail if binary else b""), headers)
        assert answer.status < 500, answer.body
        if answer.status != 200:
            assert set(answer.json()) == {"error"}, answer.body

    check()
