"""The HTTP edge of the predict function, without the Powertools resolver (so it stays unit-testable
and off the cold start): one read of an API Gateway HTTP API (payload 2.0) event, one JSON body
parser with explicit limits, and one builder for every error body.

Limits, each answered with the error JSON and never a 500:

- ``MAX_BODY_BYTES`` (6 MiB of UTF-8): Lambda's synchronous payload limit, so the function refuses
  what the platform would, on the local stack and direct invocations too. 10,000 demo rows (the
  template's largest ``MaxBatchRows``) pretty-printed are 3.3 MB. 413.
- ``MAX_NESTING``: no value may sit inside more than 200 arrays/objects. It is exactly the limit of
  pydantic-core's parser (jiter), which enforces it while parsing; the stdlib ``json`` and anything
  recursive after it (repr, logging, jsonable_encoder) would hit Python's recursion limit near 1,000.
  413.
- ``MAX_INTEGER_DIGITS``: a number may have at most 4,300 digits before its decimal point or
  exponent: Python's int-string conversion limit, where int() and str() raise ValueError. Any
  integer past 2**53 is refused by the validator anyway. 422 naming the field.
- Strings and keys must be valid Unicode: a lone UTF-16 surrogate escape (``"\\ud800"``) cannot be
  encoded as UTF-8 (capture, logs, strict JSON clients). 400 naming the field.

A leading byte order mark is ignored (RFC 8259 section 8.1); duplicate keys keep the last value,
like ``json.loads``. The fast parser (jiter) decides on every body; only when it refuses one does
the stdlib parser run, to say why and where.

Binary bodies. The Open Inference Protocol's routes (``/v2/...``) take Triton's binary tensor data:
a JSON header followed by raw tensor bytes, sent by ``tritonclient`` without a content type. API
Gateway (payload 2.0) passes any body whose content type is not text base64-encoded
(``isBase64Encoded``); for those routes the event read keeps it as bytes (``HttpRequest.data``)
instead of requiring UTF-8 text, and accepts ``application/octet-stream`` besides JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from pydantic_core import from_json

from sklambda.core.errors import InvalidInput, MalformedRequest, SklambdaError

MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_NESTING = 200
MAX_INTEGER_DIGITS = 4300
# Error answers echo what a client sent (keys, values): bounded so a 5 MB key cannot make a 10 MB answer.
MAX_MESSAGE_CHARS = 1000
MAX_FIELD_CHARS = 200
MAX_DETAILS = 20
JSON_MEDIA_TYPE = "application/json"
OCTET_STREAM_MEDIA_TYPE = "application/octet-stream"
# Routes under this prefix (the Open Inference Protocol's) read their body as bytes: see the module docstring.
BINARY_ROUTES_PREFIX = "/v2"


class BodyTooLarge(SklambdaError):
    """The body is over the size or nesting limit."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "body_too_large"


class UnsupportedMediaType(SklambdaError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class InvalidRequest(SklambdaError):
    """The body parsed but does not have the documented shape (the OpenAPI request schema)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "invalid_request"


def _problem(error: type[SklambdaError], field: str, message: str) -> SklambdaError:
    return error(f"{field}: {message}", details=[{"field": field, "message": message}])


# ------------------------------------------------------------------------------ the event
@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What the handler reads from a payload-2.0 event, read once."""

    method: str
    path: str
    content_type: str  # lower-case, without surrounding blanks; "" when the client sent none
    text: str | None  # the body as text (base64 decoded); None when absent or unreadable
    problem: SklambdaError | None  # why the body cannot be read (415, 400, 413)
    # A binary route's body when the event carried it base64-encoded, as bytes (``text`` is None then).
    data: bytes | None = None
    # lower-case names, as payload 2.0 has them (not part of equality: what the route reads is above)
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def binary(self) -> bool:
        """Whether the route reads its body as bytes (the Open Inference Protocol's routes)."""
        return is_binary_route(self.path)


def is_binary_route(path: str) -> bool:
    return path == BINARY_ROUTES_PREFIX or path.startswith(BINARY_ROUTES_PREFIX + "/")


def read_event(event: Mapping[str, Any]) -> HttpRequest:
    context = event.get("requestContext") or {}
    method = str((context.get("http") or {}).get("method") or "")
    raw_path = event.get("rawPath")
    path = raw_path if isinstance(raw_path, str) else ""
    headers = event.get("headers") or {}  # payload 2.0: header names are lower-case
    if not isinstance(headers, Mapping):
        headers = {}
    sent_type = str(headers.get("content-type") or "")
    content_type = sent_type.strip().lower()
    raw = event.get("body")
    text = raw if isinstance(raw, str) else None
    problem: SklambdaError | None = None
    data: bytes | None = None
    if is_binary_route(path):
        if content_type and not content_type.startswith((JSON_MEDIA_TYPE, OCTET_STREAM_MEDIA_TYPE)):
            sent = f"unsupported content type {sent_type[:80]!r}"
            message = f"{sent}; send {JSON_MEDIA_TYPE} or {OCTET_STREAM_MEDIA_TYPE}"
            problem, text = _problem(UnsupportedMediaType, "content-type", message), None
        elif text is not None and event.get("isBase64Encoded"):  # binary tensor data, or no content type
            (data, problem), text = _decode_base64_bytes(text), None
    elif content_type and not content_type.startswith(JSON_MEDIA_TYPE):
        # every body-reading route takes JSON; Powertools crashes parsing e.g. multipart without a boundary
        message = f"unsupported content type {sent_type[:80]!r}; send {JSON_MEDIA_TYPE}"
        problem, text = _problem(UnsupportedMediaType, "content-type", message), None
    elif text is not None and event.get("isBase64Encoded"):  # the gateway's way to pass a non-UTF-8 body
        text, problem = _decode_base64(text)
    return HttpRequest(method, path, content_type, text, problem, data, headers)


def _decode_base64_bytes(raw: str) -> tuple[bytes | None, SklambdaError | None]:
    if len(raw) > (MAX_BODY_BYTES + 2) // 3 * 4:
        return None, _too_large()
    try:
        return base64.b64decode(raw, validate=True), None
    except binascii.Error:
        message = "body: malformed request (isBase64Encoded, but not base64)"
        return None, MalformedRequest(message, details=[{"field": "body", "message": message}])


def _decode_base64(raw: str) -> tuple[str | None, SklambdaError | None]:
    data, problem = _decode_base64_bytes(raw)
    if data is None:
        return None, problem if isinstance(problem, BodyTooLarge) else _not_text()
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, _not_text()


def _not_text() -> SklambdaError:
    message = "body: malformed request (not UTF-8 text)"
    return MalformedRequest(message, details=[{"field": "body", "message": message}])


# ------------------------------------------------------------------------------ the body
def _too_large() -> SklambdaError:
    return _problem(BodyTooLarge, "body", f"larger than {MAX_BODY_BYTES:,} bytes, the most one request may carry")


def _too_deep(position: int | None) -> SklambdaError:
    where = f" (at position {position})" if position is not None else ""
    return _problem(BodyTooLarge, "body", f"arrays and objects nested more than {MAX_NESTING} deep{where}")


def _malformed(reason: str) -> SklambdaError:
    message = f"body: malformed JSON ({reason})"
    return MalformedRequest(message, details=[{"field": "body", "message": message}])


def parse_json_body(text: str) -> Any:
    """The JSON value of a body, or a SklambdaError (400, 413, 422) saying what is wrong and where."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if len(text) > MAX_BODY_BYTES:  # characters never outnumber UTF-8 bytes: no need to encode a huge body
        raise _too_large()
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:  # a raw lone surrogate: only a direct invocation can send one
        raise _malformed(f"not UTF-8 text: a lone UTF-16 surrogate at position {err.start}") from None
    if len(data) > MAX_BODY_BYTES:
        raise _too_large()
    try:
        return from_json(data)  # NaN and Infinity are read, as json.loads does: the validator refuses them
    except ValueError as err:
        raise _explain(text, str(err)) from None


# A JSON token: a string, a bracket, or a run of scalar characters (numbers, literals, junk).
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|[^\s,:\[\]{}"]+')
_INTEGER_PART = re.compile(r"-?(\d*)")


class _LongNumber:
    """Stands in for a number literal past MAX_INTEGER_DIGITS, so the walk can say where it was."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int_literal(literal: str) -> int | _LongNumber:
    digits = len(literal) - literal.startswith("-")
    return int(literal) if digits <= MAX_INTEGER_DIGITS else _LongNumber(digits)


def _float_literal(literal: str) -> float | _LongNumber:
    found = _INTEGER_PART.match(literal)
    digits = len(found[1]) if found else 0
    return float(literal) if digits <= MAX_INTEGER_DIGITS else _LongNumber(digits)


def _explain(text: str, reason: str) -> SklambdaError:
    """Why jiter refused a body (error path only): too deep, not JSON, or a value we cannot represent."""
    position = _too_deep_at(text)
    if position is not None:
        return _too_deep(position)
    try:
        value = json.loads(text, parse_int=_int_literal, parse_float=_float_literal)
    except json.JSONDecodeError as err:
        return _malformed(f"{err.msg} at position {err.pos}")
    except RecursionError:  # the scan above finds any nesting this deep; kept so nothing escapes
        return _too_deep(None)
    return _first_unrepresentable(value) or _malformed(reason)


def _too_deep_at(text: str) -> int | None:
    """Where a value first sits inside more than MAX_NESTING arrays/objects, or None."""
    depth = 0
    for token in _TOKENS.finditer(text):
        first = text[token.start()]
        if first in "]}":
            depth -= 1
            continue
        if depth > MAX_NESTING:
            return token.start()
        if first in "[{":
            depth += 1
    return None


def _valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _field(path: list[str | int]) -> str:
    field = ""
    for part in path:
        field = (field or "body") + f"[{part}]" if isinstance(part, int) else (f"{field}.{part}" if field else part)
    return field or "body"


_SURROGATE = "contains a lone UTF-16 surrogate; strings must be valid Unicode"


def _first_unrepresentable(value: Any) -> SklambdaError | None:
    """The first long number or lone surrogate in document order, named by its field."""
    path: list[str | int] = []  # keys and indexes down to the container being walked
    # each container's items, and the path to restore once they are done
    stack: list[tuple[Iterator[tuple[Any, Any]], list[str | int]]] = [(iter([(None, value)]), path)]
    while stack:
        items, parent = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            path = parent
            continue
        key, item = entry
        kind = type(item)
        if kind is _LongNumber:
            digits = f"a number with {item.digits:,} digits before its decimal point; at most {MAX_INTEGER_DIGITS:,}"
            return _problem(InvalidInput, _field(_at(path, key)), digits)
        if kind is str and not _valid_unicode(item):
            return _problem(MalformedRequest, _field(_at(path, key)), _SURROGATE)
        if kind is dict:
            for name in item:
                if not _valid_unicode(name):
                    return _problem(MalformedRequest, _field([*_at(path, key), name]), f"key {_SURROGATE}")
            stack.append((iter(item.items()), path))
            path = _at(path, key)
        elif kind is list:
            stack.append((enumerate(item), path))
            path = _at(path, key)
    return None


def _at(path: list[str | int], key: Any) -> list[str | int]:
    return path if key is None else [*path, key]


class BodyCache:
    """The last body parsed and its outcome: the fast path and the resolver's JSON deserializer parse
    an event's body once between them (the resolver decodes the same text again only for base64)."""

    __slots__ = ("_text", "_value", "_error")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._text: str | None = None
        self._value: Any = None
        self._error: SklambdaError | None = None

    def parse(self, text: str) -> Any:
        if text is not self._text and text != self._text:
            self._text, self._value, self._error = text, None, None
            try:
                self._value = parse_json_body(text)
            except SklambdaError as err:
                self._error = err
        if self._error is not None:
            raise self._error
        return self._value


# ------------------------------------------------------------------------------ error bodies
def _bounded(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not _valid_unicode(text):  # shown as the escape a client sent ("\ud800"), never as a lone surrogate
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_body(err: SklambdaError) -> dict[str, Any]:
    """Every error answer's JSON, ``{"error", "message", "details": [{"field", "message"}]}``, from
    ``SklambdaError.to_body()``, each text bounded and valid Unicode."""
    body = err.to_body()
    body["message"] = _bounded(str(body["message"]), MAX_MESSAGE_CHARS)
    if "details" in body:
        body["details"] = [
            {
                "field": _bounded(str(detail.get("field", "body")), MAX_FIELD_CHARS),
                "message": _bounded(str(detail.get("message", "")), MAX_MESSAGE_CHARS),
            }
            for detail in body["details"][:MAX_DETAILS]
        ]
    return body


def invalid_request(errors: list[dict[str, Any]]) -> InvalidRequest:
    """A 422 from pydantic-style validation errors (``loc``, ``msg``), each naming its field."""
    details = []
    for error in errors[:MAX_DETAILS]:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        details.append({"field": ".".join(loc) or "body", "message": str(error.get("msg", "is invalid"))})
    message = f"{details[0]['field']}: {details[0]['message']}" if details else "invalid request"
    return InvalidRequest(message, details=details)
