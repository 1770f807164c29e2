"""The Lambda Invoke API (``POST /2015-03-31/functions/{FunctionName}/invocations``) over local workers.

Served on the AWS endpoint (so boto3 ``lambda`` clients and moto's Step Functions interpreter reach
the real handlers) and on the HTTP gateway. It keeps Lambda's response contract:

- ``FunctionName`` may be a name, a partial ARN (``123456789012:function:name``) or a full ARN,
  each optionally with a ``:qualifier``; a ``Qualifier`` query parameter may name it instead (both
  and different: 400, as Lambda). Qualifiers accepted: ``$LATEST``, the function's
  ``AutoPublishAlias`` and numeric versions; all run the code on disk (there are no published
  versions locally), and ``X-Amz-Executed-Version`` says ``$LATEST`` (or the numeric version asked for).
- ``X-Amz-Invocation-Type``: ``RequestResponse`` (200 with the payload), ``Event`` (202, run in the
  background, failures logged, no retries), ``DryRun`` (204).
- A function error (raised, timed out, runtime exited) is a 200 with ``X-Amz-Function-Error:
  Unhandled`` and the error payload ``{"errorMessage", "errorType", "stackTrace", "requestId"}``.
- Unknown function or qualifier: 404 ``ResourceNotFoundException``; a body that is not JSON: 400
  ``InvalidRequestContentException``; throttled: 429 ``TooManyRequestsException``.

``X-Amz-Log-Type: Tail`` and ``X-Amz-Client-Context`` are ignored.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qs

from ._http import HttpResponse
from .template import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, Function
from .worker import InvokeResult

__all__ = ["INVOKE_PATH", "FunctionRef", "LambdaInvokeApi", "lambda_invoke_response", "parse_function_name"]

log = logging.getLogger(__name__)

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
# arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>], <account>:function:<name>[:<q>], <name>[:<q>]
_FUNCTION_NAME = re.compile(
    r"^(?:(?:arn:[^:]+:lambda:[^:]*:)?[0-9]{12}:function:)?(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$"
)
_QUALIFIER = re.compile(r"^(\$LATEST|[0-9]+|[A-Za-z0-9_-]+)$")

# (logical_id, event, invoked_function_arn) → result
Invoker = Callable[..., InvokeResult]


@dataclass(frozen=True)
class FunctionRef:
    """What a FunctionName (+ Qualifier) names."""

    name: str
    qualifier: str | None = None


def parse_function_name(function_name: str, qualifier: str | None = None) -> FunctionRef | None:
    """Split a FunctionName (name, partial or full ARN, with or without ``:qualifier``); None if malformed.

    Raises ValueError when the name's qualifier and ``qualifier`` disagree.
    """
    match = _FUNCTION_NAME.match(function_name)
    if not match:
        return None
    derived = match.group("qualifier")
    if derived and qualifier and derived != qualifier:
        raise ValueError("The derived qualifier from the function name does not match the specified qualifier.")
    return FunctionRef(match.group("name"), derived or qualifier or None)


def _lambda_error(status: int, error_type: str, message: str, request_id: str = "") -> HttpResponse:
    body = json.dumps({"Type": "User", "message": message}).encode()
    headers = [("content-type", "application/json"), ("x-amzn-ErrorType", error_type)]
    if request_id:
        headers.append(("x-amzn-RequestId", request_id))
    return HttpResponse(status, headers, body)


def lambda_invoke_response(result: InvokeResult, executed_version: str = "$LATEST") -> HttpResponse:
    """What the Lambda Invoke API answers for a RequestResponse invocation outcome."""
    headers = [
        ("content-type", "application/json"),
        ("x-amz-executed-version", executed_version),
        ("x-amzn-RequestId", result.request_id),
    ]
    if result.status == "ok":
        return HttpResponse(200, headers, json.dumps(result.payload).encode())
    if result.status == "throttled":
        return _lambda_error(429, "TooManyRequestsException", "Rate Exceeded.", result.request_id)
    if result.status == "too_large":
        return _lambda_error(
            413, "RequestTooLargeException", (result.error or {}).get("errorMessage", ""), result.request_id
        )
    # A function error (raised, timed out, runtime exited) is a 200 with X-Amz-Function-Error.
    error = result.error or {"errorMessage": "unknown error", "errorType": "Runtime.Unknown"}
    headers.append(("x-amz-function-error", "Unhandled"))
    return HttpResponse(200, headers, json.dumps(error).encode())


class LambdaInvokeApi:
    """Resolves FunctionNames to the stack's functions and invokes them through ``invoke``.

    ``fallbacks`` (optional, called per request) yields other APIs to try for a name this one does
    not know: several local stacks in one process share one moto, and its Step Functions
    interpreter reaches whichever endpoint ``MOTO_PORT`` names.
    """

    def __init__(
        self,
        functions: Iterable[Function],
        invoke: Invoker,
        *,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
        fallbacks: Callable[[], Iterable[LambdaInvokeApi]] | None = None,
    ) -> None:
        self.functions: dict[str, Function] = {f.name: f for f in functions}
        self.invoke = invoke
        self.region = region
        self.account_id = account_id
        self._fallbacks = fallbacks

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    def resolve(self, ref: FunctionRef) -> tuple[LambdaInvokeApi, Function] | None:
        """The API and function that serve ``ref`` (this API first, then the fallbacks)."""
        for api in [self, *(self._fallbacks() if self._fallbacks else [])]:
            function = api.functions.get(ref.name)
            if function is not None and _qualifier_exists(function, ref.qualifier):
                return api, function
        return None

    def handle(self, function_name: str, raw_query: str, headers: Message, body: bytes) -> tuple[HttpResponse, str]:
        """Answer one Invoke API request; returns the response and a note for the access log."""
        request_id = str(uuid.uuid4())
        qualifier = next(iter(parse_qs(raw_query).get("Qualifier", [])), None)
        try:
            ref = parse_function_name(function_name, qualifier)
        except ValueError as exc:
            return _lambda_error(400, "InvalidParameterValueException", str(exc), request_id), " -> Invoke (bad name)"
        if ref is None or (ref.qualifier and not _QUALIFIER.match(ref.qualifier)):
            message = (
                f"1 validation error detected: Value '{function_name}' at 'functionName' failed to satisfy constraint"
            )
            return _lambda_error(400, "ValidationException", message, request_id), " -> Invoke (bad name)"
        found = self.resolve(ref)
        if found is None:
            message = f"Function not found: {self.function_arn(ref.name, ref.qualifier)}"
            return _lambda_error(404, "ResourceNotFoundException", message, request_id), " -> Invoke (unknown function)"
        api, function = found
        logical_id = function.logical_id
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError:
            message = "Could not parse request body into json: the payload is not valid JSON"
            return _lambda_error(400, "InvalidRequestContentException", message, request_id), f" -> Invoke {logical_id}"
        invocation_type = headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        note = f" -> Invoke {logical_id}{':' + ref.qualifier if ref.qualifier else ''} ({invocation_type})"
        invoked_arn = api.function_arn(function.name, ref.qualifier)
        if invocation_type == "DryRun":
            return HttpResponse(204, [("x-amzn-RequestId", request_id)], b""), note
        if invocation_type == "Event":
            threading.Thread(
                target=api.invoke_async,
                args=(logical_id, event, invoked_arn),
                name=f"sklambda-async-{logical_id}",
                daemon=True,
            ).start()
            return HttpResponse(202, [("content-type", "application/json"), ("x-amzn-RequestId", request_id)]), note
        if invocation_type != "RequestResponse":
            message = f"Invalid invocation type {invocation_type!r}"
            return _lambda_error(400, "InvalidParameterValueException", message, request_id), note
        try:
            result = api.invoke(logical_id, event, invoked_function_arn=invoked_arn)
        except Exception as exc:  # e.g. the stack stopped under a running state machine
            log.error("invoking %s failed: %s", logical_id, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return _lambda_error(500, "ServiceException", "local invoke failed", request_id), note + " (error)"
        if result.error:
            note += f" [{result.error.get('errorType')}: {result.error.get('errorMessage')}]"
        executed = ref.qualifier if ref.qualifier and ref.qualifier.isdigit() else "$LATEST"
        return lambda_invoke_response(result, executed), note

    def invoke_async(self, logical_id: str, event: Any, invoked_function_arn: str | None = None) -> None:
        """An Event invocation: run it now in this thread; errors are logged (no retries locally)."""
        try:
            result = self.invoke(logical_id, event, invoked_function_arn=invoked_function_arn)
        except Exception as exc:
            log.error(
                "asynchronous invocation of %s failed: %s", logical_id, exc, exc_info=log.isEnabledFor(logging.DEBUG)
            )
            return
        if result.ok:
            log.info("asynchronous invocation of %s ok in %.0f ms", logical_id, result.duration_ms)
        else:
            log.error("asynchronous invocation of %s: %s %s", logical_id, result.status, result.error)


def _qualifier_exists(function: Function, qualifier: str | None) -> bool:
    if qualifier in (None, "$LATEST") or (qualifier and qualifier.isdigit()):
        return True
    return qualifier == function.auto_publish_alias
