"""A local HTTP API (API Gateway v2): template routes → payload format 2.0 events → functions.

The gateway reproduces what a handler can observe of API Gateway HTTP APIs, so a handler that
works locally works behind the real thing: the payload 2.0 event shape (lower-cased, comma-joined
headers; cookies moved out of the headers; base64 bodies for non-text content types), route
selection (most specific route wins, ``{proxy+}`` is greedy, ``ANY`` matches any method, a wrong
method is a 404), the response mapping rules, the error answers (404, 413, 500, 504) and the
``apigw-requestid`` header. It does not authenticate (see ``EmbeddedStack``), throttle, or answer CORS
preflights.

The same port also answers the Lambda Invoke API, ``POST /2015-03-31/functions/{name}/invocations``
(the same code as the AWS endpoint's, see :mod:`.lambda_api`), so a boto3 ``lambda`` client whose
``endpoint_url`` is the gateway invokes the stack's functions as it would in AWS. API Gateway itself
has no such route; a template route on that exact path would be shadowed locally.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote

from ._http import HttpResponse, LocalHttpService, TrackingHTTPServer
from .lambda_api import INVOKE_PATH, LambdaInvokeApi, lambda_invoke_response
from .template import DEFAULT_ACCOUNT_ID, HttpRoute
from .worker import InvokeResult

__all__ = [
    "Gateway",
    "HttpResponse",
    "MalformedResponse",
    "RouteMatch",
    "Router",
    "build_event",
    "error_response",
    "lambda_invoke_response",
    "map_response",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API payload limit
_MAX_DRAIN_BYTES = 64 * 1024 * 1024  # an oversized body up to this is read (and dropped), not cut off
_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/yaml",
    "application/x-yaml",
    "application/graphql",
}


# ------------------------------------------------------------------------------------ routing
@dataclass(frozen=True)
class RouteMatch:
    route: HttpRoute
    path_parameters: dict[str, str] = field(default_factory=dict)


def _segment_kind(segment: str) -> int:
    """0 literal, 1 ``{param}``, 2 ``{greedy+}``: lower is more specific."""
    if segment.startswith("{") and segment.endswith("+}"):
        return 2
    if segment.startswith("{") and segment.endswith("}"):
        return 1
    return 0


class Router:
    """Selects the route for a request the way HTTP APIs do.

    The most specific match wins: literal segments beat ``{param}`` which beats ``{proxy+}``,
    compared segment by segment from the left, and an explicit method beats ``ANY``. A path that
    exists only for other methods does not match (HTTP APIs answer 404, not 405). ``$default``
    catches whatever no other route matched.
    """

    def __init__(self, routes: Iterable[HttpRoute]) -> None:
        self.routes = list(routes)
        self._default = next((r for r in self.routes if r.path == "$default"), None)
        self._parsed = [(r, r.path.strip("/").split("/")) for r in self.routes if r.path != "$default"]

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        method = method.upper()
        segments = raw_path.strip("/").split("/")
        candidates = []
        for route, template in self._parsed:
            if route.method not in ("ANY", method):
                continue
            params = self._match_path(template, segments)
            if params is not None:
                rank = (tuple(_segment_kind(s) for s in template), route.method == "ANY")
                candidates.append((rank, route, params))
        if candidates:
            _, route, params = min(candidates, key=lambda c: c[0])
            return RouteMatch(route, params)
        return RouteMatch(self._default) if self._default else None

    @staticmethod
    def _match_path(template: list[str], segments: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for i, part in enumerate(template):
            kind = _segment_kind(part)
            if kind == 2:  # greedy: one or more remaining segments
                rest = segments[i:]
                if not rest or rest == [""]:
                    return None
                params[part[1:-2]] = unquote("/".join(rest))
                return params
            if i >= len(segments):
                return None
            if kind == 1:
                if not segments[i]:
                    return None
                params[part[1:-1]] = unquote(segments[i])
            elif part != segments[i]:
                return None
        return params if len(segments) == len(template) else None


# ------------------------------------------------------------------------------------- events
def new_request_id() -> str:
    """An id shaped like HTTP API's (e.g. ``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(os.urandom(11)).decode()


def is_text_content_type(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this type as text (else it is base64-encoded).

    No content type at all, form posts and octet streams arrive base64-encoded, as in AWS.
    """
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))


def build_event(
    route: HttpRoute,
    *,
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    api_id: str = "local",
    account_id: str = DEFAULT_ACCOUNT_ID,
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload format 2.0 event for one request."""
    now = time.time() if now is None else now
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    host = merged.get("host", "localhost")
    domain = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": request_id or new_request_id(),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": datetime.fromtimestamp(now, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    is_text = True
    if body:
        try:
            text = body.decode("utf-8") if is_text_content_type(merged.get("content-type")) else None
        except UnicodeDecodeError:
            text = None
        is_text = text is not None
        event["body"] = text if text is not None else base64.b64encode(body).decode()
    event["isBase64Encoded"] = not is_text
    return event


# ---------------------------------------------------------------------------------- responses
class MalformedResponse(ValueError):
    """The function's answer is not a valid payload 2.0 response (API Gateway answers 500)."""


def error_response(status: int, message: str) -> HttpResponse:
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise MalformedResponse(f"header {name!r} has a non-scalar value {value!r}")


def map_response(payload: Any) -> HttpResponse:
    """Map a Lambda result to the HTTP response, following the payload 2.0 rules.

    A result without ``statusCode`` (any JSON value) is sent as a 200 ``application/json`` body.
    Otherwise ``statusCode``, ``headers``, ``multiValueHeaders``, ``cookies`` (one ``set-cookie``
    each), ``body`` (a string) and ``isBase64Encoded`` are honoured; ``content-type`` defaults to
    ``application/json`` as ``sam local`` does.
    """
    if not (isinstance(payload, dict) and "statusCode" in payload):
        return HttpResponse(200, [("content-type", "application/json")], json.dumps(payload).encode())
    status = payload["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode must be an HTTP status code, got {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (payload.get("headers") or {}).items():
        headers.append((str(name), _header_value(name, value)))
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), _header_value(name, value)))
    cookies = payload.get("cookies") or []
    if not isinstance(cookies, list):
        raise MalformedResponse("cookies must be a list of strings")
    headers.extend(("set-cookie", str(c)) for c in cookies)
    body = payload.get("body")
    if body is None:
        raw = b""
    elif not isinstance(body, str):
        raise MalformedResponse(f"body must be a string, got {type(body).__name__}")
    elif payload.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise MalformedResponse(f"isBase64Encoded body is not base64: {exc}") from None
    else:
        raw = body.encode("utf-8")
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", "application/json"))
    return HttpResponse(status, headers, raw)


def response_for(result: InvokeResult) -> HttpResponse:
    """What API Gateway answers for an invocation outcome."""
    if result.status == "ok":
        try:
            return map_response(result.payload)
        except MalformedResponse as exc:
            log.warning("malformed Lambda proxy response (answering 500): %s", exc)
            return error_response(500, "Internal Server Error")
    if result.status == "timeout":
        return error_response(504, "Endpoint request timed out")
    if result.status == "throttled":
        return error_response(429, "Too Many Requests")
    if result.status == "too_large":
        return error_response(413, "Request Entity Too Large")
    return error_response(500, "Internal Server Error")


# ------------------------------------------------------------------------------------- server
Invoker = Callable[[str, dict[str, Any]], InvokeResult]


class _Server(TrackingHTTPServer):
    thread_name = "sklambda-gateway-conn"

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like API Gateway
    timeout = 120  # idle keep-alive connections do not hold a thread forever
    server: _Server

    def version_string(self) -> str:
        return "sklambda-local"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        gateway = self.server.gateway
        request_id = new_request_id()
        raw_path, _, raw_query = self.path.partition("?")
        note = ""
        api_request = True  # counted in the API's metrics (the Lambda Invoke API is not the API's)
        body = self._read_body()
        if body is None:
            response = error_response(413, "Request Entity Too Large")
            self.close_connection = True
        elif self.command == "POST" and gateway.lambda_api and (invoke := INVOKE_PATH.match(raw_path)):
            response, note = gateway.lambda_api.handle(unquote(invoke.group(1)), raw_query, self.headers, body)
            api_request = False
        else:
            match = gateway.router.match(self.command, raw_path)
            if match is None:
                response = error_response(404, "Not Found")
            else:
                response, note = gateway.invoke_route(self, match, raw_path, raw_query, body, request_id)
        self._send(response, request_id)
        elapsed = (time.perf_counter() - started) * 1000
        log.info(
            '%s "%s %s" %d %.1f ms%s', self.client_address[0], self.command, raw_path, response.status, elapsed, note
        )
        if api_request and gateway.on_request is not None:
            gateway.on_request(response.status, elapsed)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...): routed like the rest, so a 404 as an HTTP API answers
        # for a method no route declares (http.server would answer 501).
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _read_body(self) -> bytes | None:
        """The request body, or None when it is over the 10 MB HTTP API limit (not read then)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            if length <= _MAX_DRAIN_BYTES:  # read and drop it, so the client sees the 413
                while length > 0:
                    chunk = self.rfile.read(min(length, 1 << 20))
                    if not chunk:
                        break
                    length -= len(chunk)
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: HttpResponse, request_id: str) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("apigw-requestid", request_id)
        self.send_header("content-length", str(len(response.body)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class Gateway(LocalHttpService):
    """The HTTP server. ``invoke(function_logical_id, event)`` runs the function (see FunctionPool)."""

    def __init__(
        self,
        routes: Iterable[HttpRoute],
        invoke: Invoker,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        api_id: str = "local",
        account_id: str = DEFAULT_ACCOUNT_ID,
        lambda_api: LambdaInvokeApi | None = None,
        on_request: Callable[[int, float], object] | None = None,
    ) -> None:
        self.router = Router(routes)
        self.on_request = on_request  # (status, latency ms) of every API request, for its metrics
        self.invoke = invoke
        self.lambda_api = lambda_api  # the Lambda Invoke API on the same port (None: not served)
        self.api_id = api_id
        self.account_id = account_id
        super().__init__(host, port)

    thread_name = "sklambda-gateway"

    def _make_server(self) -> _Server:
        return _Server((self.host, self._requested_port), self)

    def start(self) -> Gateway:
        self._serve()
        log.info("HTTP API listening on %s", self.url)
        for route in self.router.routes:
            log.info("  %-32s -> %s", route.route_key, route.function)
        return self

    stop = LocalHttpService.close

    def invoke_route(
        self,
        handler: _Handler,
        match: RouteMatch,
        raw_path: str,
        raw_query: str,
        body: bytes,
        request_id: str,
    ) -> tuple[HttpResponse, str]:
        headers = list(handler.headers.items())
        headers += [
            ("x-forwarded-for", handler.client_address[0]),
            ("x-forwarded-port", str(self.port)),
            ("x-forwarded-proto", "http"),
            ("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"),
        ]
        event = build_event(
            match.route,
            method=handler.command,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
            path_parameters=match.path_parameters,
            source_ip=handler.client_address[0],
            api_id=self.api_id,
            account_id=self.account_id,
            protocol=handler.request_version,
            request_id=request_id,
        )
        try:
            result = self.invoke(match.route.function, event)
        except Exception:
            log.exception("invoking %s failed", match.route.function)
            return error_response(500, "Internal Server Error"), f" -> {match.route.function} (error)"
        note = f" -> {match.route.function}"
        if result.cold_start:
            note += f" (cold start, init {result.init_ms or 0:.0f} ms)"
        if result.error:
            note += f" [{result.error.get('errorType')}: {result.error.get('errorMessage')}]"
        return response_for(result), note
