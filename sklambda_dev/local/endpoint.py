"""The local AWS endpoint: a small HTTP proxy in front of moto that serves Lambda invocations itself.

moto cannot run Lambda code without Docker, so every client of the local stack (the CLI, tests,
the function workers' ``AWS_ENDPOINT_URL`` and moto's own Step Functions interpreter through
``MOTO_PORT``) is handed this endpoint instead of moto's:

- ``POST /2015-03-31/functions/{FunctionName}/invocations`` (the Lambda Invoke API) is answered by
  the stack's function workers with Lambda's response contract (see :mod:`.lambda_api`);
- EventBridge ``PutEvents`` (``X-Amz-Target: AWSEvents.PutEvents``) on the default bus is answered by
  the local event bus (:mod:`.eventbus`), which delivers to the template's rules' targets (moto's
  EventBridge cannot target Step Functions); entries for other buses are refused as failed entries;
- every other request is forwarded verbatim to moto: method, path and query, headers (hop-by-hop
  ones aside), a streamed body (``Content-Length`` or chunked), and moto's status, headers and
  streamed body back. ``Host`` is kept, so URLs moto builds from it (SQS queue URLs, ...) name
  this endpoint.

The proxy keeps client connections alive (moto's server closes each one) and answers 502 when moto
cannot be reached. It listens on the stack's host (127.0.0.1 by default).
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from ._http import HttpResponse, LocalHttpService, TrackingHTTPServer
from .eventbus import EventBus
from .lambda_api import INVOKE_PATH, LambdaInvokeApi

__all__ = ["AwsEndpoint"]

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_MAX_INVOKE_BODY = 64 * 1024 * 1024  # read (then refused by the 6 MB check) rather than cut off
_UPSTREAM_TIMEOUT_S = 900.0  # long polls (SQS WaitTimeSeconds) and slow moto calls
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}


class _Server(TrackingHTTPServer):
    thread_name = "sklambda-aws-endpoint-conn"

    def __init__(self, address: tuple[str, int], endpoint: AwsEndpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection does not hold a thread forever
    server: _Server

    def version_string(self) -> str:
        return "sklambda-local"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        endpoint = self.server.endpoint
        if self.command == "POST" and (invoke := INVOKE_PATH.match(raw_path)):
            self._invoke(unquote(invoke.group(1)), raw_query)
        elif (
            self.command == "POST" and endpoint.event_bus and self.headers.get("X-Amz-Target") == "AWSEvents.PutEvents"
        ):
            self._put_events(endpoint.event_bus)
        else:
            self._forward()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    # ------------------------------------------------------------------------------ Lambda
    def _invoke(self, function_name: str, raw_query: str) -> None:
        started = time.perf_counter()
        body = self._read_whole_body()
        if body is None:
            response = HttpResponse(
                413,
                [("content-type", "application/json"), ("x-amzn-ErrorType", "RequestTooLargeException")],
                json.dumps({"Type": "User", "message": "Request must be smaller than 6291456 bytes"}).encode(),
            )
            note = " -> Invoke (too large)"
            self.close_connection = True
        else:
            response, note = self.server.endpoint.lambda_api.handle(function_name, raw_query, self.headers, body)
        self._send(response)
        log.info(
            '%s "POST %s" %d %.1f ms%s',
            self.client_address[0],
            f"/2015-03-31/functions/{function_name}/invocations",
            response.status,
            (time.perf_counter() - started) * 1000,
            note,
        )

    # -------------------------------------------------------------------------- EventBridge
    def _put_events(self, bus: EventBus) -> None:
        body = self._read_whole_body() or b"{}"
        try:
            entries = json.loads(body).get("Entries") or []
        except (ValueError, AttributeError):
            entries = None
        if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
            message = "Entries must be a list of 1 to 10 entries"
            self._send(
                HttpResponse(
                    400,
                    [("content-type", "application/x-amz-json-1.1")],
                    json.dumps({"__type": "ValidationException", "message": message}).encode(),
                )
            )
            return
        results, failed = [], 0
        for entry in entries:
            bus_name = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
            try:
                event = {
                    "source": entry.get("Source"),
                    "detail-type": entry.get("DetailType"),
                    "detail": entry.get("Detail") or "{}",
                    "resources": entry.get("Resources") or [],
                }
                if entry.get("Time") is not None:
                    event["time"] = _event_time(entry["Time"])
                normalised = bus.normalise(event, bus_name)
                bus.put_event(normalised, bus_name)
                results.append({"EventId": normalised["id"]})
            except (ValueError, TypeError) as exc:
                failed += 1
                results.append({"ErrorCode": "InvalidArgument", "ErrorMessage": str(exc)})
        answer = {"FailedEntryCount": failed, "Entries": results}
        self._send(HttpResponse(200, [("content-type", "application/x-amz-json-1.1")], json.dumps(answer).encode()))
        log.info('%s "POST / PutEvents" 200 (%d entries, %d failed)', self.client_address[0], len(entries), failed)

    def _read_whole_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b"".join(self._iter_chunked())
            return data if len(data) <= _MAX_INVOKE_BODY else None
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_INVOKE_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _iter_chunked(self) -> Any:
        """The de-chunked pieces of a chunked request body (trailers are read and dropped)."""
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _send(self, response: HttpResponse) -> None:
        self.send_response_only(response.status)
        self.send_header("Date", self.date_time_string())
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    # ---------------------------------------------------------------------------- forward
    def _forward(self) -> None:
        endpoint = self.server.endpoint
        upstream = http.client.HTTPConnection(
            endpoint.upstream_host, endpoint.upstream_port, timeout=_UPSTREAM_TIMEOUT_S
        )
        try:
            try:
                self._send_upstream(upstream)
                reply = upstream.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                log.warning("moto unreachable for %s %s: %s", self.command, self.path, exc)
                body = json.dumps({"message": f"AWS emulator unreachable: {exc}"}).encode()
                self.close_connection = True  # the request body may be half read
                self._send(HttpResponse(502, [("content-type", "application/json")], body))
                return
            self._relay_reply(reply)
        finally:
            upstream.close()

    def _send_upstream(self, upstream: http.client.HTTPConnection) -> None:
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                upstream.putheader(name, value)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            for piece in self._iter_chunked():
                if piece:
                    upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            upstream.send(b"0\r\n\r\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length or "Content-Length" in self.headers:
            upstream.putheader("Content-Length", str(length))
        upstream.endheaders()
        while length > 0:
            piece = self.rfile.read(min(length, _CHUNK))
            if not piece:
                raise ConnectionError("client closed the connection mid-body")
            upstream.send(piece)
            length -= len(piece)

    def _relay_reply(self, reply: http.client.HTTPResponse) -> None:
        self.send_response_only(reply.status, reply.reason)
        length = reply.getheader("Content-Length")
        no_body = self.command == "HEAD" or reply.status in (204, 304) or 100 <= reply.status < 200
        for name, value in reply.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while True:
            piece = reply.read(_CHUNK)
            if not piece:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


def _event_time(value: Any) -> str:
    """PutEvents' Time (epoch seconds from the JSON protocol, or a timestamp text) as EventBridge shows it."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class AwsEndpoint(LocalHttpService):
    """The proxy server: ``url`` is what every client of the local stack gets as its AWS endpoint."""

    def __init__(
        self,
        upstream_url: str,
        lambda_api: LambdaInvokeApi,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        event_bus: EventBus | None = None,
    ) -> None:
        parts = urlsplit(upstream_url)
        self.event_bus = event_bus
        self.upstream_url = upstream_url
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.lambda_api = lambda_api
        super().__init__(host, port)

    thread_name = "sklambda-aws-endpoint"

    def _make_server(self) -> _Server:
        return _Server((self.host, self._requested_port), self)

    def start(self) -> AwsEndpoint:
        self._serve()
        log.info("AWS endpoint listening on %s (Lambda Invoke API local, the rest forwarded to moto)", self.url)
        return self
