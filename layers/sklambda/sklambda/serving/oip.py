"""The Open Inference Protocol (KServe V2 inference protocol, REST) over a model's feature schema.

What the predict function's ``/v2/...`` routes need, without AWS or the Powertools resolver: reading an
inference request (JSON, or Triton's binary tensor data extension), turning its tensors into the rows
the JSON API takes (so the same ``InstanceValidator``, capture, canary routing and prediction ids serve
both), and shaping the answer, the model metadata and the server metadata.

Inputs take one of two forms:

- **One tensor per feature** (the pandas-style form MLServer uses): named as the feature, shape ``[n]``
  or ``[n, 1]``, a datatype the feature's type allows (``ACCEPTED``; the metadata declares ``DECLARED``).
  A nullable feature may be left out (every row missing), given ``null`` in JSON data, or NaN in a
  floating-point tensor.
- **One 2-D tensor in schema order**, any name, shape ``[n, n_features]``: numeric when no feature is a
  category (boolean features take 0 and 1), ``BOOL`` when every feature is boolean, else ``BYTES``, whose
  elements are read per feature: a category's value as is, a number as its decimal text (``"42"``,
  ``"1.5e3"``), a boolean as ``"true"``/``"false"``.

Rows are built keyed by feature name, so whichever version the request is routed to (a canary) checks
them by name. Outputs: ``predict`` (labels or values), ``predict_proba`` (classifiers with probabilities,
``[n, n_classes]``, the class order in its ``parameters.classes``), both unless the request's ``outputs``
selects, and ``prediction_ids`` (``BYTES``, always: labels posted to ``/feedback`` need them). An output
is sent as binary data when the request asks (``parameters.binary_data_output``, or the output's
``parameters.binary_data``), which ``tritonclient.http`` does by default.

Every problem is a ``SklambdaError`` (400 unreadable framing, 413 too many rows or bytes, 415 an unknown
content encoding, 422 anything well-formed but wrong), which the handler answers as ``{"error": "..."}``.
"""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sklambda.core.errors import BatchTooLarge, InvalidInput, MalformedRequest, ModelUnavailable, VersionNotFound
from sklambda.registry.features import FeatureSchema, FeatureSpec
from sklambda.serving import http
from sklambda.serving.loader import LoadedModel
from sklambda.serving.service import ModelService, Prediction

EXTENSIONS = ["binary_tensor_data"]
PREDICT, PROBA, IDS = "predict", "predict_proba", "prediction_ids"

# Fixed-size datatypes and their little-endian numpy layout (the binary tensor data extension's).
_FIXED = {
    "BOOL": "|u1",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_LAYOUTS = {name: np.dtype(layout) for name, layout in _FIXED.items()}
FLOATS = frozenset({"FP16", "FP32", "FP64"})
INTEGERS = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = frozenset({*_FIXED, "BYTES"})
ACCEPTED: dict[str, frozenset[str]] = {
    "number": FLOATS | INTEGERS,
    "integer": INTEGERS | FLOATS,  # a float tensor's integral values (pandas makes integer columns with gaps float)
    "boolean": frozenset({"BOOL"}),
    "category": frozenset({"BYTES"}),
}
DECLARED = {"number": "FP64", "integer": "INT64", "boolean": "BOOL", "category": "BYTES"}
_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_MAX_NUMBER_TEXT = 400  # longer decimal text stays text (the validator then says "expected a number")
_FIELD = re.compile(r"instances\[(\d+)\](?:\.(.*))?", re.S)
_INT64 = (-(2**63), 2**63 - 1)


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, details=[{"field": "body", "message": message}])


def _malformed(message: str) -> MalformedRequest:
    return MalformedRequest(message, details=[{"field": "body", "message": message}])


def _shown(name: Any) -> str:
    return repr(str(name)[:80])


# ------------------------------------------------------------------------------ the body
def read_body(request: http.HttpRequest) -> tuple[Any, bytes]:
    """The JSON inference header of a request and the binary tensor data after it (``b""`` for none).

    ``Inference-Header-Content-Length`` says where the JSON ends; without it the body is JSON alone.
    ``Content-Encoding: gzip`` or ``deflate`` bodies are inflated first, to the same 6 MiB limit.
    """
    if request.problem is not None:
        raise request.problem
    data, text = request.data, request.text
    if data is None and text is None:
        raise http.InvalidRequest(
            "body: an inference request needs a JSON body", details=[{"field": "body", "message": "is missing"}]
        )
    encoding = str(request.headers.get("content-encoding") or "").strip().lower()
    if encoding not in ("", "identity"):
        data, text = _inflate(_bytes_of(data, text), encoding), None
    length = request.headers.get("inference-header-content-length")
    if length is None:
        if text is None:
            assert data is not None
            text = _utf8(data)
        return http.parse_json_body(text), b""
    raw = _bytes_of(data, text)
    if not str(length).strip().isdigit() or len(str(length)) > 12:
        raise _malformed(f"Inference-Header-Content-Length: {str(length)[:40]!r} is not a byte count")
    size = int(length)
    if size > len(raw):
        raise _malformed(f"Inference-Header-Content-Length: {size:,} bytes, but the body has {len(raw):,}")
    return http.parse_json_body(_utf8(raw[:size])), raw[size:]


def _bytes_of(data: bytes | None, text: str | None) -> bytes:
    if data is not None:
        return data
    try:  # the gateway passed the body as text: it was UTF-8, and encoding it gives back its bytes
        return (text or "").encode("utf-8")
    except UnicodeEncodeError:
        raise _malformed("body: malformed request (not UTF-8 text)") from None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _malformed(
            f"body: the JSON inference header is not UTF-8 text (byte {err.start}); binary tensor data "
            "needs the Inference-Header-Content-Length header"
        ) from None


def _inflate(raw: bytes, encoding: str) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        message = f"unsupported content encoding {encoding[:40]!r}; send gzip, deflate or none"
        raise http.UnsupportedMediaType(message, details=[{"field": "content-encoding", "message": message}])
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(raw, http.MAX_BODY_BYTES + 1)
    except zlib.error as err:
        raise _malformed(f"body: not {encoding} data ({err})") from None
    if len(out) > http.MAX_BODY_BYTES:
        message = f"larger than {http.MAX_BODY_BYTES:,} bytes once inflated, the most one request may carry"
        raise http.BodyTooLarge(f"body: {message}", details=[{"field": "body", "message": message}])
    if not inflater.eof or inflater.unused_data:
        raise _malformed(f"body: truncated {encoding} data, or bytes after its end")
    return out


# ------------------------------------------------------------------------------ the request
@dataclass(frozen=True, slots=True)
class Requested:
    name: str
    binary: bool


@dataclass(frozen=True, slots=True)
class InferRequest:
    """An inference request read against a schema: the rows to score and the outputs to answer."""

    id: str | None
    instances: list[dict[str, Any]]  # rows keyed by feature name, as the JSON API takes them
    outputs: tuple[Requested, ...]  # in answer order, prediction_ids included
    matrix: str | None  # the 2-D tensor's name, when the request used that form


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs a microsecond per field
class _Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any] | None  # JSON data, as sent (flat or nested)
    size: int | None  # binary_data_size

    @property
    def where(self) -> str:  # for messages (built only when one is needed: the hot path makes none)
        return f"input {_shown(self.name)}"


def parse_infer(
    header: Any, binary: bytes, schema: FeatureSchema, *, max_rows: int, outputs: tuple[str, ...]
) -> InferRequest:
    """Read an inference request: its tensors into rows, its outputs against ``outputs`` (the model's)."""
    if type(header) is not dict:
        raise _invalid("body: an inference request is a JSON object with 'inputs'")
    if not _REQUEST_KEYS.issuperset(header):
        unknown = sorted(header.keys() - _REQUEST_KEYS)
        raise _invalid(f"body: unknown field {_shown(unknown[0])}; expected id, parameters, inputs, outputs")
    request_id = header.get("id")
    if request_id is not None and type(request_id) is not str:
        raise _invalid("id: must be a string")
    parameters = header.get("parameters")
    binary_output = None
    if parameters is not None:
        if type(parameters) is not dict:
            raise _invalid("parameters: must be an object")
        binary_output = parameters.get("binary_data_output")
        if binary_output is not None and type(binary_output) is not bool:
            raise _invalid("parameters.binary_data_output: must be a boolean")
    tensors = _tensors(header.get("inputs"))
    values = _tensor_values(tensors, binary)
    instances, matrix = _rows(tensors, values, _plan(schema), max_rows)
    requested = _outputs(header.get("outputs"), outputs, binary_output)
    return InferRequest(request_id, instances, requested, matrix)


def _tensors(inputs: Any) -> list[_Tensor]:
    if type(inputs) is not list or not inputs:
        raise _invalid("inputs: must be a non-empty list of tensors")
    out = []
    for i, item in enumerate(inputs):
        if type(item) is not dict:
            raise _invalid(f"inputs[{i}]: a tensor is an object with name, shape, datatype and data")
        if not _INPUT_KEYS.issuperset(item):
            unknown = sorted(item.keys() - _INPUT_KEYS)
            raise _invalid(
                f"inputs[{i}]: unknown field {_shown(unknown[0])}; expected name, shape, datatype, parameters, data"
            )
        name = item.get("name")
        if type(name) is not str or not name:
            raise _invalid(f"inputs[{i}].name: must be a non-empty string")
        datatype = item.get("datatype")
        shape = item.get("shape")
        parameters = item.get("parameters")
        data = item.get("data")
        size = None
        if type(datatype) is not str or datatype not in DATATYPES:
            known = ", ".join(sorted(DATATYPES))
            raise _invalid(f"input {_shown(name)}: datatype {str(datatype)[:20]!r} is not supported; one of {known}")
        if type(shape) is not list or not 1 <= len(shape) <= 2 or not _dimensions(shape):
            raise _invalid(
                f"input {_shown(name)}: shape must be [n], [n, 1] or [n, n_features] (non-negative integers), "
                f"got {str(shape)[:40]}"
            )
        if parameters is not None:
            if type(parameters) is not dict:
                raise _invalid(f"input {_shown(name)}: parameters must be an object")
            if "shared_memory_region" in parameters:
                raise _invalid(f"input {_shown(name)}: shared memory is not supported; send the data in the request")
            size = parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise _invalid(f"input {_shown(name)}: binary_data_size must be a non-negative integer")
            if data is not None:
                raise _invalid(f"input {_shown(name)}: has both data and binary_data_size; send one")
        elif type(data) is not list:
            raise _invalid(
                f"input {_shown(name)}: data must be a list (or the tensor sent as binary data, binary_data_size)"
            )
        out.append(_Tensor(name, datatype, tuple(shape), data, size))
    return out


def _dimensions(shape: list[Any]) -> bool:
    return all(type(d) is int and d >= 0 for d in shape)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What reading tensors needs of a schema, computed once per schema."""

    features: list[FeatureSpec]
    names: list[str]
    index: dict[str, int]
    kinds: frozenset[str]
    accepts: list[frozenset[str]]  # per feature: the datatypes its tensor may have
    nan_is_missing: list[frozenset[str]]  # per feature: the datatypes whose NaN marks a missing value


_PLANS: dict[int, tuple[FeatureSchema, _Plan]] = {}


def _plan(schema: FeatureSchema) -> _Plan:
    found = _PLANS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    features = list(schema.features)
    names = [f.name for f in features]
    plan = _Plan(
        features,
        names,
        {n: j for j, n in enumerate(names)},
        frozenset(f.type for f in features),
        [ACCEPTED[f.type] for f in features],
        [FLOATS if f.nullable else frozenset() for f in features],
    )
    if len(_PLANS) >= 64:
        _PLANS.clear()
    _PLANS[id(schema)] = (schema, plan)  # the schema is kept, so its id is not reused while cached
    return plan


def _tensor_values(tensors: list[_Tensor], binary: bytes) -> list[list[Any]]:
    """Each tensor's elements, flat in row-major order, from its JSON data or its binary data."""
    offset = 0
    out = []
    for tensor in tensors:
        count = 1
        for d in tensor.shape:
            count *= d
        if tensor.size is None:
            assert tensor.data is not None
            values = _flat(tensor)
        else:
            end = offset + tensor.size
            if end > len(binary):
                raise _malformed(
                    f"{tensor.where}: binary_data_size {tensor.size:,} runs past the binary data "
                    f"({len(binary) - offset:,} bytes left)"
                )
            values = _decode(tensor, binary[offset:end], count)
            offset = end
        if len(values) != count:
            raise _invalid(
                f"{tensor.where}: shape {list(tensor.shape)} holds {count:,} elements, data has {len(values):,}"
            )
        out.append(values)
    if offset != len(binary):
        raise _malformed(f"body: {len(binary) - offset:,} bytes after the last tensor's binary data")
    return out


def _flat(tensor: _Tensor) -> list[Any]:
    data = tensor.data
    assert data is not None
    if len(tensor.shape) == 1 or not data or type(data[0]) is not list:
        return data
    width = tensor.shape[1]
    out: list[Any] = []
    for row in data:
        if type(row) is not list or len(row) != width:
            raise _invalid(f"{tensor.where}: nested data must follow the shape {list(tensor.shape)} (or be flat)")
        out += row
    return out


def _decode(tensor: _Tensor, raw: bytes, count: int) -> list[Any]:
    if tensor.datatype == "BYTES":
        return _decode_bytes(tensor, raw, count)
    layout = _LAYOUTS[tensor.datatype]
    if len(raw) != count * layout.itemsize:
        raise _malformed(
            f"{tensor.where}: binary_data_size {len(raw):,} is not {count:,} {tensor.datatype} elements "
            f"({count * layout.itemsize:,} bytes)"
        )
    array = np.frombuffer(raw, dtype=layout)
    if tensor.datatype == "BOOL":
        if array.size and array.max() > 1:
            raise _invalid(f"{tensor.where}: BOOL elements are the bytes 0 and 1")
        return array.astype(bool).tolist()
    return array.tolist()


def _decode_bytes(tensor: _Tensor, raw: bytes, count: int) -> list[Any]:
    """BYTES elements: each a 4-byte little-endian length and that many bytes, here UTF-8 text."""
    out: list[Any] = []
    position, end = 0, len(raw)
    while position < end:
        if len(out) == count:
            raise _malformed(f"{tensor.where}: BYTES data holds more than the shape's {count:,} elements")
        if position + 4 > end:
            raise _malformed(f"{tensor.where}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, position)
        position += 4
        if position + length > end:
            raise _malformed(f"{tensor.where}: BYTES element {len(out)} is longer than the data left")
        try:
            out.append(raw[position : position + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise _invalid(f"{tensor.where}: element {len(out)} is not UTF-8 text") from None
        position += length
    return out


def _rows(
    tensors: list[_Tensor], values: list[list[Any]], plan: _Plan, max_rows: int
) -> tuple[list[dict[str, Any]], str | None]:
    features, names, index = plan.features, plan.names, plan.index
    width = len(names)
    first = tensors[0]
    if (
        len(tensors) == 1
        and len(first.shape) == 2
        and first.shape[1] == width
        and (width > 1 or first.name not in index)
    ):
        _rows_count(first, max_rows)
        return _keyed(names, _matrix_columns(first, values[0], plan)), first.name
    columns: list[list[Any] | None] = [None] * width
    n: int | None = None
    for tensor, column in zip(tensors, values, strict=True):
        j = index.get(tensor.name)
        if j is None:
            shown = ", ".join(repr(x) for x in names[:12]) + (", ..." if width > 12 else "")
            raise _invalid(
                f"{tensor.where}: not a feature of this model; send one tensor per feature ({shown}) or a "
                f"single [n, {width}] tensor in that order"
            )
        if columns[j] is not None:
            raise _invalid(f"{tensor.where}: sent twice")
        datatype, shape = tensor.datatype, tensor.shape
        if datatype not in plan.accepts[j]:
            kind = features[j].type
            allowed = ", ".join(sorted(plan.accepts[j]))
            raise _invalid(f"{tensor.where}: datatype {datatype} for a {kind} feature; one of {allowed}")
        if len(shape) == 2 and shape[1] != 1:
            raise _invalid(f"{tensor.where}: shape {list(shape)}; a feature's tensor is [n] or [n, 1]")
        rows = shape[0]
        if n is None:
            n = _rows_count(tensor, max_rows)
        elif rows != n:
            raise _invalid(f"{tensor.where}: {rows} rows, but the first input has {n}; every input needs the same")
        if datatype in plan.nan_is_missing[j]:
            column = [None if v != v else v for v in column]  # NaN marks a missing value
        columns[j] = column
    assert n is not None
    missing = [f.name for f, c in zip(features, columns, strict=True) if c is None and not f.nullable]
    if missing:
        raise _invalid(
            f"input {_shown(missing[0])} is missing (one tensor per feature, or a single [n, {width}] tensor)"
        )
    full = [c if c is not None else [None] * n for c in columns]
    return _keyed(names, full), None


def _rows_count(tensor: _Tensor, max_rows: int) -> int:
    n = tensor.shape[0]
    if n < 1:
        raise _invalid(f"{tensor.where}: must contain at least one row")
    if n > max_rows:
        raise BatchTooLarge(
            f"{tensor.where}: {n} rows exceed the limit of {max_rows} per request; split the batch",
            details=[{"field": "inputs", "message": f"at most {max_rows} rows per request"}],
        )
    return n


def _matrix_columns(tensor: _Tensor, flat: list[Any], plan: _Plan) -> list[list[Any]]:
    features, kinds = plan.features, plan.kinds
    datatype, width = tensor.datatype, len(features)
    if datatype == "BYTES":
        pass
    elif datatype == "BOOL":
        if kinds != {"boolean"}:
            raise _invalid(f"{tensor.where}: a BOOL [n, {width}] tensor needs every feature boolean; send BYTES")
    elif "category" in kinds:
        raise _invalid(
            f"{tensor.where}: datatype {datatype} cannot carry this model's category features; send the [n, {width}] "
            "tensor as BYTES (numbers as decimal text) or one tensor per feature"
        )
    columns = [flat[j::width] for j in range(width)]
    for j, spec in enumerate(features):
        column = columns[j]
        if datatype == "BYTES":
            if spec.type != "category":
                columns[j] = [_from_text(v, spec.type) for v in column]
        elif spec.type == "boolean" and datatype != "BOOL":
            columns[j] = [(v == 1) if type(v) in (int, float) and v in (0, 1) else v for v in column]
        elif spec.nullable and datatype in FLOATS:
            columns[j] = [None if v != v else v for v in column]
    return columns


def _from_text(value: Any, kind: str) -> Any:
    """A BYTES element of a non-category feature: its number or boolean (anything else stays as sent)."""
    if type(value) is not str:
        return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if len(value) > _MAX_NUMBER_TEXT:
        return value
    found = _NUMBER_TEXT.fullmatch(value)
    if found is None:
        return value
    return int(value) if found[1] is None and found[2] is None else float(value)


def _keyed(names: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


_DEFAULT_OUTPUTS: dict[tuple[tuple[str, ...], bool], tuple[Requested, ...]] = {}


def _outputs(outputs: Any, available: tuple[str, ...], binary_output: bool | None) -> tuple[Requested, ...]:
    default = bool(binary_output)
    if outputs is None:
        found = _DEFAULT_OUTPUTS.get((available, default))
        if found is None:
            found = _DEFAULT_OUTPUTS[(available, default)] = tuple(Requested(name, default) for name in available)
        return found
    if type(outputs) is not list:
        raise _invalid("outputs: must be a list of {name, parameters}")
    chosen: list[Requested] = []
    for i, item in enumerate(outputs):
        if type(item) is not dict or type(item.get("name")) is not str:
            raise _invalid(f"outputs[{i}]: an output is an object with a name")
        if not _OUTPUT_KEYS.issuperset(item):
            unknown = sorted(item.keys() - _OUTPUT_KEYS)
            raise _invalid(f"outputs[{i}]: unknown field {_shown(unknown[0])}; expected name, parameters")
        name = item["name"]
        if name not in available:
            raise _invalid(
                f"output {_shown(name)}: not an output of this model; its outputs are {', '.join(available)}"
            )
        for earlier in chosen:
            if earlier.name == name:
                raise _invalid(f"output {_shown(name)}: requested twice")
        wants = default
        parameters = item.get("parameters")
        if parameters is not None:
            if type(parameters) is not dict:
                raise _invalid(f"output {_shown(name)}: parameters must be an object")
            if parameters.get("classification"):
                raise _invalid(f"output {_shown(name)}: the classification extension is not supported; ask for {PROBA}")
            if "shared_memory_region" in parameters:
                raise _invalid(f"output {_shown(name)}: shared memory is not supported")
            wants = parameters.get("binary_data", default)
            if type(wants) is not bool:
                raise _invalid(f"output {_shown(name)}: binary_data must be a boolean")
        chosen.append(Requested(name, wants))
    if not any(r.name == IDS for r in chosen):
        as_binary = binary_output if binary_output is not None else bool(chosen) and all(r.binary for r in chosen)
        chosen.append(Requested(IDS, as_binary))
    return tuple(chosen)


def explain(err: InvalidInput, request: InferRequest) -> InvalidInput:
    """The validator's error (``instances[3].age: ...``) in the protocol's terms: the input and the row."""
    details = [{"field": d.get("field", ""), "message": d.get("message", "")} for d in err.details or []]
    if not details:
        return err
    first = details[0]
    suffix = err.message[len(f"{first['field']}: {first['message']}") :]

    def place(field: str) -> str:
        found = _FIELD.fullmatch(field)
        if found is None:
            return field
        row, feature = found[1], found[2]
        if request.matrix is not None:
            return f"input {_shown(request.matrix)} row {row}" + (f" ({_shown(feature)})" if feature else "")
        return f"input {_shown(feature)} row {row}" if feature else f"row {row}"

    translated = [{"field": place(d["field"]), "message": d["message"]} for d in details]
    return InvalidInput(f"{translated[0]['field']}: {translated[0]['message']}{suffix}", details=translated)


# ------------------------------------------------------------------------------ scoring a pinned version
def served(service: ModelService, name: str) -> tuple[LoadedModel, LoadedModel | None]:
    """The version the alias serves and its canary (when one is loaded), refreshing the alias when due."""
    primary = service.model(name)
    entry = service._entries.get(name)  # ModelService keeps the canary it loaded beside the alias's version
    return primary, (entry.canary if entry is not None else None)


def pinned(service: ModelService, name: str, version: str) -> LoadedModel:
    """A version requested by number: only one the alias serves (its version or its canary)."""
    primary, canary = served(service, name)
    for model in (primary, canary):
        if model is not None and model.version == version:
            return model
    serving = f"v{primary.version}" + (f" and its canary v{canary.version}" if canary is not None else "")
    raise VersionNotFound(
        f"model {name!r} version {version[:20]!r} is not served: the {service.alias!r} alias serves {serving}"
    )


def predict_pinned(
    service: ModelService,
    model: LoadedModel,
    instances: list[Any],
    on_event: Callable[[str, dict[str, Any]], None],
) -> Prediction:
    """``ModelService.predict`` for a version chosen by the client (no canary routing): same checks,
    validation, fault accounting and prediction ids."""
    if not instances:
        raise InvalidInput("inputs: must contain at least one row")
    if len(instances) > service.max_batch_rows:
        raise BatchTooLarge(f"inputs: {len(instances)} rows exceed the limit of {service.max_batch_rows} per request")
    base = uuid.uuid4().hex
    matrix = model.validator.to_matrix(instances)
    try:
        predictions, probabilities = model.predict(matrix)
    except Exception as err:  # validated input the model cannot score: a model fault, counted per version
        on_event("PredictErrors", {"model": model.name, "version": model.version, "error": repr(err)[:300]})
        raise ModelUnavailable(f"model {model.name!r} v{model.version} failed to score the request") from err
    if service.ids is not None:
        ids = service.ids.issue(model.name, model.version, base, len(predictions))
    else:
        ids = [f"{base}-{i}" for i in range(len(predictions))]
    return Prediction(model, predictions, probabilities, ids, matrix)


# ------------------------------------------------------------------------------ answers
def output_names(model: LoadedModel) -> tuple[str, ...]:
    if has_probabilities(model):
        return (PREDICT, PROBA, IDS)
    return (PREDICT, IDS)


def has_probabilities(model: LoadedModel) -> bool:
    return model.manifest.task == "classification" and hasattr(model.estimator, "predict_proba")


def label_datatype(model: LoadedModel) -> str:
    """The ``predict`` output's datatype: the classes' type (classifiers), FP64 (regressors)."""
    if model.manifest.task != "classification":
        return "FP64"
    classes = model.manifest.classes or []
    if classes and all(type(c) is bool for c in classes):
        return "BOOL"
    if classes and all(type(c) is int and _INT64[0] <= c <= _INT64[1] for c in classes):
        return "INT64"
    if classes and all(type(c) in (int, float) for c in classes):
        return "FP64"
    return "BYTES"


def infer_response(prediction: Prediction, request: InferRequest) -> tuple[dict[str, Any], bytes]:
    """The answer's JSON and its binary part (``b""`` when every output is JSON data)."""
    model = prediction.model
    n = len(prediction.predictions)
    blobs: list[bytes] = []
    outputs = []
    for wanted in request.outputs:
        if wanted.name == PREDICT:
            datatype = label_datatype(model)
            values: list[Any] = prediction.predictions
            if datatype == "BYTES":
                values = [v if type(v) is str else str(v) for v in values]
            tensor: dict[str, Any] = {"name": PREDICT, "datatype": datatype, "shape": [n]}
        elif wanted.name == PROBA:
            if prediction.probabilities is None:
                continue  # a canary without probabilities: the answer holds what it has
            k = len(prediction.probabilities[0]) if n else 0
            datatype, values = "FP64", [p for row in prediction.probabilities for p in row]
            tensor = {
                "name": PROBA,
                "datatype": datatype,
                "shape": [n, k],
                "parameters": {"classes": model.manifest.classes},
            }
        else:
            datatype, values = "BYTES", prediction.prediction_ids
            tensor = {"name": IDS, "datatype": datatype, "shape": [n]}
        if wanted.binary:
            blob = _encode(datatype, values)
            tensor.setdefault("parameters", {})["binary_data_size"] = len(blob)
            blobs.append(blob)
        else:
            tensor["data"] = values
        outputs.append(tensor)
    body: dict[str, Any] = {}
    if request.id is not None:
        body["id"] = request.id
    body.update({"model_name": model.name, "model_version": model.version, "outputs": outputs})
    return body, b"".join(blobs)


def _encode(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in values:
            encoded = value.encode("utf-8")
            parts += (struct.pack("<I", len(encoded)), encoded)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.asarray(values, dtype=bool).tobytes()
    return np.asarray(values, dtype=_LAYOUTS[datatype]).tobytes()


def wants_binary(request: InferRequest) -> bool:
    return any(r.binary for r in request.outputs)


# ------------------------------------------------------------------------------ metadata
def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "sklambda", "version": version, "extensions": EXTENSIONS}


def _feature_parameters(spec: FeatureSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"feature_type": spec.type, "nullable": spec.nullable}
    if spec.categories is not None:
        out["categories"] = spec.categories
        out["unknown_category"] = spec.unknown_category
    if spec.description:
        out["description"] = spec.description
    return out


def model_metadata(model: LoadedModel, versions: list[str], alias: str) -> dict[str, Any]:
    """``GET /v2/models/{name}``: one input per feature (schema order), the outputs, and how to send a matrix."""
    features = model.validator.schema.features
    kinds = {f.type for f in features}
    matrix = ["BYTES"]
    if "category" not in kinds:
        matrix = sorted(FLOATS | INTEGERS) + matrix
    if kinds == {"boolean"}:
        matrix = ["BOOL", *matrix]
    outputs: list[dict[str, Any]] = [{"name": PREDICT, "datatype": label_datatype(model), "shape": [-1]}]
    if has_probabilities(model):
        classes = model.manifest.classes or []
        outputs.append(
            {"name": PROBA, "datatype": "FP64", "shape": [-1, len(classes)], "parameters": {"classes": classes}}
        )
    outputs.append({"name": IDS, "datatype": "BYTES", "shape": [-1]})
    return {
        "name": model.name,
        "versions": versions,
        "platform": model.runtime,
        "inputs": [
            {"name": f.name, "datatype": DECLARED[f.type], "shape": [-1], "parameters": _feature_parameters(f)}
            for f in features
        ],
        "outputs": outputs,
        "parameters": {
            "task": model.manifest.task,
            "alias": alias,
            "version": model.version,
            "feature_order": [f.name for f in features],
            "matrix_input": {"shape": [-1, len(features)], "datatypes": matrix},
        },
    }
