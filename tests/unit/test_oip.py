"""serving.oip without AWS: the event read of binary routes, the inference request read (both input forms,
JSON and binary tensor data), answers and their binary encoding — and, with Hypothesis, that whatever
an inference request holds, reading it either succeeds or raises a SklambdaError (a 4xx), nothing else."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput, MalformedRequest, SklambdaError
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import http, oip

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="age", type="integer"),
        FeatureSpec(name="income", type="number", nullable=True),
        FeatureSpec(name="member", type="boolean"),
        FeatureSpec(name="plan", type="category", categories=["basic", "premium"]),
    ]
)
OUTPUTS = (oip.PREDICT, oip.PROBA, oip.IDS)


def _event(path: str = "/v2/models/demo/infer", **overrides: Any) -> dict[str, Any]:
    event = {"rawPath": path, "requestContext": {"http": {"method": "POST"}}, "headers": {}, "body": None}
    event.update(overrides)
    return event


def _parse(header: Any, binary: bytes = b"", max_rows: int = 100) -> oip.InferRequest:
    return oip.parse_infer(header, binary, SCHEMA, max_rows=max_rows, outputs=OUTPUTS)


def _tensors(n: int = 2) -> list[dict[str, Any]]:
    return [
        {"name": "age", "datatype": "INT64", "shape": [n], "data": [30 + i for i in range(n)]},
        {"name": "income", "datatype": "FP64", "shape": [n, 1], "data": [[1000.0 * (i + 1)] for i in range(n)]},
        {"name": "member", "datatype": "BOOL", "shape": [n], "data": [i % 2 == 0 for i in range(n)]},
        {"name": "plan", "datatype": "BYTES", "shape": [n], "data": ["basic"] * n},
    ]


ROWS = [
    {"age": 30, "income": 1000.0, "member": True, "plan": "basic"},
    {"age": 31, "income": 2000.0, "member": False, "plan": "basic"},
]


# ------------------------------------------------------------------------------ the event read
def test_a_binary_route_keeps_a_base64_body_as_bytes_and_takes_octet_streams():
    raw = b'{"inputs": []}\x00\xff\xfe'
    request = http.read_event(_event(body=base64.b64encode(raw).decode(), isBase64Encoded=True))
    assert request.binary and request.data == raw and request.text is None and request.problem is None
    octets = _event(headers={"content-type": "application/octet-stream"}, body="e30=", isBase64Encoded=True)
    assert http.read_event(octets).data == b"{}"
    refused = http.read_event(_event(headers={"content-type": "text/csv"}, body="a,b"))
    assert (
        isinstance(refused.problem, http.UnsupportedMediaType) and "application/octet-stream" in refused.problem.message
    )
    garbage = http.read_event(_event(body="not base64!", isBase64Encoded=True))
    assert isinstance(garbage.problem, MalformedRequest)


def test_other_routes_still_need_utf8_json_and_v2_lookalikes_are_not_binary_routes():
    raw = base64.b64encode(b"\xff\xfe").decode()
    assert isinstance(http.read_event(_event("/predict", body=raw, isBase64Encoded=True)).problem, MalformedRequest)
    assert not http.read_event(_event("/v20/models")).binary and http.read_event(_event("/v2")).binary


# ------------------------------------------------------------------------------ the body
def _request(**event: Any) -> http.HttpRequest:
    return http.read_event(_event(**event))


def test_read_body_json_text_bytes_and_the_binary_split():
    assert oip.read_body(_request(body='{"a": 1}')) == ({"a": 1}, b"")
    encoded = base64.b64encode(b'{"a": 1}').decode()
    assert oip.read_body(_request(body=encoded, isBase64Encoded=True)) == ({"a": 1}, b"")
    framed = base64.b64encode(b'{"a": 1}\x01\x02').decode()
    headers = {"inference-header-content-length": "8"}
    assert oip.read_body(_request(body=framed, isBase64Encoded=True, headers=headers)) == ({"a": 1}, b"\x01\x02")
    # the header length on a body the gateway passed as text: its UTF-8 bytes
    assert oip.read_body(_request(body='{"a": "é"}xyz', headers={"inference-header-content-length": "11"})) == (
        {"a": "é"},
        b"xyz",
    )
    with pytest.raises(http.InvalidRequest):
        oip.read_body(_request())


# ------------------------------------------------------------------------------ the request
def test_one_tensor_per_feature_becomes_rows_keyed_by_name():
    request = _parse({"id": "r", "inputs": _tensors()})
    assert request.id == "r" and request.instances == ROWS and request.matrix is None
    assert [r.name for r in request.outputs] == list(OUTPUTS) and not oip.wants_binary(request)


def test_a_nullable_feature_left_out_null_or_nan_is_missing():
    tensors = [t for t in _tensors() if t["name"] != "income"]
    assert [r["income"] for r in _parse({"inputs": tensors}).instances] == [None, None]
    nan = [*tensors, {"name": "income", "datatype": "FP32", "shape": [2], "data": [float("nan"), 5.0]}]
    assert [r["income"] for r in _parse({"inputs": nan}).instances] == [None, 5.0]
    required = [t for t in _tensors() if t["name"] != "age"]
    with pytest.raises(InvalidInput, match="input 'age' is missing"):
        _parse({"inputs": required})


def test_a_bytes_matrix_reads_each_column_as_its_feature():
    data = [["30", "1e3", "true", "basic"], ["31", "2000.0", "false", "basic"]]
    request = _parse({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [2, 4], "data": data}]})
    assert request.matrix == "x"
    assert request.instances == [
        {"age": 30, "income": 1000.0, "member": True, "plan": "basic"},
        {"age": 31, "income": 2000.0, "member": False, "plan": "basic"},
    ]
    odd = _parse({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 4], "data": ["0x1", "", "yes", "basic"]}]})
    assert odd.instances == [{"age": "0x1", "income": "", "member": "yes", "plan": "basic"}]  # the validator says why


def test_binary_tensor_data_decodes_every_datatype():
    blobs = [
        np.asarray([30, 31], dtype="<i4").tobytes(),
        np.asarray([1000.0, 2000.0], dtype="<f2").tobytes(),
        bytes([1, 0]),
        b"".join(struct.pack("<I", 5) + b"basic" for _ in range(2)),
    ]
    types = ["INT32", "FP16", "BOOL", "BYTES"]
    inputs = [
        {"name": t["name"], "datatype": d, "shape": [2], "parameters": {"binary_data_size": len(b)}}
        for t, d, b in zip(_tensors(), types, blobs, strict=True)
    ]
    assert _parse({"inputs": inputs}, b"".join(blobs)).instances == ROWS
    bad_bool = [*inputs[:2], {**inputs[2]}, inputs[3]]
    with pytest.raises(InvalidInput, match="BOOL elements"):
        _parse({"inputs": bad_bool}, b"".join([blobs[0], blobs[1], bytes([2, 0]), blobs[3]]))


def test_requested_outputs_and_their_binary_flags():
    outputs = [{"name": "predict_proba", "parameters": {"binary_data": True}}]
    request = _parse({"inputs": _tensors(), "outputs": outputs})
    assert [(r.name, r.binary) for r in request.outputs] == [("predict_proba", True), ("prediction_ids", True)]
    everything = _parse({"inputs": _tensors(), "parameters": {"binary_data_output": True}})
    assert all(r.binary for r in everything.outputs)
    with pytest.raises(InvalidInput, match="requested twice"):
        _parse({"inputs": _tensors(), "outputs": [{"name": "predict"}, {"name": "predict"}]})


def test_explain_names_the_input_and_the_row():
    request = _parse({"inputs": _tensors()})
    err = InvalidInput(
        "instances[1].age: expected an integer, got 3.5 (and 1 more problem)",
        details=[
            {"field": "instances[1].age", "message": "expected an integer, got 3.5"},
            {"field": "instances[1].plan", "message": "unknown category 'gold'"},
        ],
    )
    explained = oip.explain(err, request)
    assert explained.message == "input 'age' row 1: expected an integer, got 3.5 (and 1 more problem)"
    assert explained.details[1]["field"] == "input 'plan' row 1"


def test_bytes_encoding_round_trips():
    values = ["", "é", "demo.v1.abc-0"]
    raw = oip._encode("BYTES", values)
    tensor = oip._Tensor("x", "BYTES", (3,), None, len(raw))
    assert oip._decode(tensor, raw, 3) == values
    with pytest.raises(MalformedRequest, match="more than the shape's 2 elements"):
        oip._decode(tensor, raw, 2)
    assert np.frombuffer(oip._encode("FP64", [0.25, 1.0]), dtype="<f8").tolist() == [0.25, 1.0]


# ------------------------------------------------------------------------------ never anything but a 4xx
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_names = st.sampled_from(["age", "income", "member", "plan", "x", ""])
_datatypes = st.sampled_from([*sorted(oip.DATATYPES), "BF16", "fp32", 7])


@st.composite
def _tensor(draw: Any) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)
    tensor: dict[str, Any] = {"name": draw(_names), "datatype": draw(_datatypes)}
    tensor["shape"] = draw(st.lists(st.integers(-1, 4), max_size=3) | _json)
    if draw(st.booleans()):
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-1, 40) | _json)}
    if draw(st.booleans()) or "parameters" not in tensor:
        tensor["data"] = draw(st.lists(_json, max_size=8) | _json)
    return tensor


@settings(max_examples=400, deadline=None)
@given(
    tensors=st.lists(_tensor(), max_size=5) | _json,
    outputs=st.none() | st.lists(st.fixed_dictionaries({"name": st.sampled_from([*OUTPUTS, "x"])}), max_size=3) | _json,
    binary=st.binary(max_size=64),
)
def test_any_inference_request_is_read_or_refused_with_a_4xx(tensors, outputs, binary):
    header: dict[str, Any] = {"inputs": tensors}
    if outputs is not None:
        header["outputs"] = outputs
    try:
        request = _parse(header, binary, max_rows=3)
    except SklambdaError as err:
        assert 400 <= int(err.status) < 500, err
        json.dumps({"error": err.message})
        return
    assert 1 <= len(request.instances) <= 3
    assert all(set(row) == set(SCHEMA.names) for row in request.instances)
