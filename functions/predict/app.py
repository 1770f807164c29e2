"""Predict function: HTTP API (payload 2.0) routes over the sklambda serving library.

Each route reads its input, calls one piece of the library and shapes the answer. Every error
answer, whichever way in, is built by ``_error_answer`` (``serving.http.error_body`` over the
domain error); nothing a client sends gets a 500.

An event is read once (``serving.http.read_event``: method, path, content type, body text or why
it cannot be read) and a body parsed once (``serving.http.parse_json_body``, with the size, nesting
and number limits; its outcome cached in ``_BODIES`` for the resolver's deserializer).

Two ways in, one behaviour. The routes are module-level functions recorded by ``_route``; the
Powertools resolver that serves them, the OpenAPI document and the request validation is imported
and built on the first request that needs it (``_resolver()``). A well-formed predict request (POST
/predict or /models/{name}/predict, a JSON body that ``PredictRequest`` accepts) is answered by
``_fast_predict`` without it: the same parsed body, validation model, scoring (``_score``), metrics
and response dict, minus the resolver's per-request work (validation middleware, debug repr of the
arguments, ``jsonable_encoder`` over the answer). A body that cannot be parsed is answered there
too, with the answer the resolver gives it; anything else goes through the resolver.

The Open Inference Protocol (KServe V2, REST: ``/v2/...``, ``serving.oip``) is answered by ``_v2`` and
never by the resolver: its errors have the protocol's shape, ``{"error": "..."}``, and its bodies may be
binary (Triton's binary tensor data extension). An inference request becomes the JSON API's instances,
scored by the same ``_serve`` (validation, canary routing, ids, metrics, capture).

``GET /models/{name}/openapi.json`` and ``/models/{name}/docs`` document one model's predict request
and answer with its features typed (``serving.openapi_model``).

Cold start on Lambda: the cyclic garbage collector is paused from the first statement until the
first answer (or the init warm-up). It would walk every object the imports and the first model
load create, tens of thousands of them, and free almost none: 60-170 ms of a cold start, and for
a pipeline served by scikit-learn the difference between beating its naive handler and losing to
it (benchmarks/RESULTS.md, *Where sklambda's cold start goes*). Then everything alive is frozen
(``gc.freeze``: never scanned again, as the import-time objects of a long-lived process should
be) and the collector resumes for the warm requests.
"""

import gc
import os

_GC_PAUSED = os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_") and gc.isenabled()
if _GC_PAUSED:
    gc.disable()

import base64
import inspect
import json
import re
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, get_args, get_origin

from aws_lambda_powertools.metrics import single_metric
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from sklambda import __version__
from sklambda.core.aws import firehose_client, s3_client
from sklambda.core.errors import BatchTooLarge, InvalidInput, ModelNotFound, ModelUnavailable, SklambdaError
from sklambda.core.observability import InvocationLog, MetricLine, MetricUnit, logger, metrics, tracer
from sklambda.core.settings import PredictSettings
from sklambda.monitoring.capture import CaptureSink
from sklambda.monitoring.feedback import validate_feedback
from sklambda.registry.store import ModelRegistry
from sklambda.serving import http, oip
from sklambda.serving.ids import PredictionIds
from sklambda.serving.loader import LoadedModel
from sklambda.serving.service import ModelService, Prediction

if TYPE_CHECKING:  # the resolver's modules are imported on first use, never at cold start
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

API_TITLE = "sklambda prediction API"
API_DESCRIPTION = (
    "Predictions from scikit-learn models in the sklambda registry. Instances are objects keyed by "
    "feature name or lists in the model's feature order (see GET /models/{name})."
)

_EVENT_METRICS = {
    "ModelLoaded": ("ModelSwaps", "info"),
    "ModelLoadFailure": ("ModelLoadFailures", "error"),
    "RegistryUnavailable": ("RegistryUnavailable", "warning"),
    "AliasMissing": ("AliasMissing", "warning"),
    "CaptureFailures": ("CaptureFailures", "error"),
    "capture_undelivered": (None, "error"),
    "PredictErrors": ("PredictErrors", "error"),
}


def _record_event(event: str, fields: dict[str, Any]) -> None:
    metric, level = _EVENT_METRICS.get(event, (event, "info"))
    getattr(logger, level)(event, extra=fields)
    if metric is None:
        return
    value = fields.get("rows", 1)
    with single_metric(name=metric, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as m:
        if "model" in fields:
            m.add_dimension("model", str(fields["model"]))
        if event == "PredictErrors":  # per version, so a canary's errors are its own (retrain canary check)
            m.add_dimension("model_version", str(fields["version"]))


@cache
def settings() -> PredictSettings:
    return PredictSettings()  # type: ignore[call-arg]  # values come from the environment


@cache
def prediction_ids() -> PredictionIds | None:
    key = settings().prediction_id_key
    return PredictionIds(key) if key else None


@cache
def service() -> ModelService:
    cfg = settings()
    return ModelService(
        ModelRegistry(s3_client(), cfg.model_bucket),
        alias=cfg.model_alias,
        check_seconds=cfg.alias_check_seconds,
        max_batch_rows=cfg.max_batch_rows,
        on_event=_record_event,
        ids=prediction_ids(),
    )


@cache
def capture() -> CaptureSink | None:
    cfg = settings()
    if not cfg.capture_stream:
        return None
    return CaptureSink(firehose_client, cfg.capture_stream, sample_rate=cfg.capture_sample_rate, on_event=_record_event)


@cache
def feedback_sink() -> CaptureSink | None:
    cfg = settings()
    if not cfg.feedback_stream:
        return None
    return CaptureSink(firehose_client, cfg.feedback_stream, on_event=_record_event)


# ----------------------------------------------------------------------------- schemas
class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: list[Any] = Field(
        description="Rows to score: each an object keyed by feature name, or a list of values in the "
        "model's feature order. At most MAX_BATCH_ROWS rows (default 1,000).",
        json_schema_extra={"items": {"anyOf": [{"type": "object"}, {"type": "array"}]}},
        examples=[[{"age": 42, "plan": "premium"}]],
    )


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: str = Field(description="An id from a predict answer's prediction_ids")
    label: Any = Field(description="The true class (classifiers) or value (regressors)")


class FeedbackRequest(BaseModel):
    """Either one label (prediction_id + label) or a batch under `feedback`."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: str | None = None
    label: Any = None
    feedback: list[FeedbackItem] | None = Field(None, description="Several labels at once")


class FeedbackResponse(BaseModel):
    accepted: int


class ModelRef(BaseModel):
    name: str
    version: str | None


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: ModelRef
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(None, description="Classifiers: one row per instance")
    classes: list[Any] | None = Field(None, description="Classifiers: the column order of probabilities")
    prediction_ids: list[str]


class StatusResponse(BaseModel):
    status: str
    model: ModelRef
    detail: str | None = None


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[dict[str, str]] | None = None


def _error_model(description: str) -> "OpenAPIResponse":
    return {"description": description, "content": {"application/json": {"model": ErrorResponse}}}


ERRORS: "dict[int, OpenAPIResponse]" = {
    400: _error_model("Malformed JSON"),
    404: _error_model("Unknown model"),
    413: _error_model("Batch or body over the limit"),
    422: _error_model("Invalid instances"),
    503: _error_model("Model unavailable"),
}


# ------------------------------------------------------------------------------ answers
def _error_answer(err: SklambdaError) -> tuple[int, dict[str, Any]]:
    """The one table from errors to HTTP answers (both ways in, every error, use it)."""
    status = int(err.status)
    if status >= 500:
        logger.warning("request failed", extra={"error": err.code, "reason": err.message})
    else:
        metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
    return status, http.error_body(err)


def _serialise(body: Any) -> str:
    """Every JSON answer's text, the resolver's too (its ``serializer``): pydantic-core's encoder, a
    quarter of ``json.dumps``'s time on a one-row answer; floats in their shortest round-trip form,
    text as UTF-8 rather than ``\\u`` escapes."""
    return to_json(body).decode()


def _answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A payload-2.0 response exactly as the resolver shapes one."""
    return {
        "statusCode": status,
        "body": _serialise(body),
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "cookies": [],
    }


def _json(status: int, body: Any) -> "Response":
    from aws_lambda_powertools.event_handler import Response, content_types

    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


# ------------------------------------------------------------------------------ scoring
def _score(name: str, instances: list[Any]) -> dict[str, Any]:
    """The JSON predict routes' answer."""
    return _serve(name, instances).to_body()


@tracer.capture_method(capture_response=False)
def _serve(name: str, instances: list[Any], pinned: LoadedModel | None = None) -> Prediction:
    """Score instances (with the alias's version or its canary, or the ``pinned`` version), with the
    metrics and capture every predict route has."""
    started = time.perf_counter()
    current = service()
    if pinned is None:
        result = current.predict(name, instances)
    else:
        result = oip.predict_pinned(current, pinned, instances, on_event=_record_event)
    latency_ms = (time.perf_counter() - started) * 1000
    sink = capture()
    values = [len(result.predictions), round(latency_ms, 3)]
    if sink is not None:
        model = result.model
        sink.record(
            model=model.name,
            version=model.version,
            feature_names=model.validator.schema.names,
            rows=result.matrix.tolist(),
            prediction_ids=result.prediction_ids,
            predictions=result.predictions,
            probabilities=result.probabilities,
        )
        values.append(sink.flush().delivered_rows)
    _metric_line(result.model.name, result.model.version, captured=sink is not None).emit(values)
    return result


_PREDICT_METRICS = [("Predictions", MetricUnit.Count), ("PredictLatency", MetricUnit.Milliseconds)]
_METRIC_LINES: dict[tuple[str, str, bool], MetricLine] = {}


def _metric_line(model: str, version: str, *, captured: bool) -> MetricLine:
    """Every scored request's EMF document: Predictions, PredictLatency (and CapturedRows) by model
    and version, built once per version (core.observability.MetricLine)."""
    key = (model, version, captured)
    line = _METRIC_LINES.get(key)
    if line is None:
        if len(_METRIC_LINES) >= 1024:
            _METRIC_LINES.clear()
        names = _PREDICT_METRICS + [("CapturedRows", MetricUnit.Count)] if captured else _PREDICT_METRICS
        dims = {"model": model, "model_version": version}
        line = _METRIC_LINES[key] = MetricLine(metrics.namespace, dims, names, service=metrics.service)
    return line


_NAMED_PREDICT = re.compile(r"/models/([a-z0-9][a-z0-9-]{0,62})/predict")
_BODIES = http.BodyCache()


def _fast_predict(event: dict[str, Any], request: http.HttpRequest | None = None) -> dict[str, Any] | None:
    """A predict request answered without the resolver; None: let the resolver answer."""
    request = request or http.read_event(event)
    if request.path == "/predict":
        name = settings().default_model
    else:
        found = _NAMED_PREDICT.fullmatch(request.path)
        if found is None:
            return None
        name = found[1]
    if request.method != "POST" or request.problem is not None or not request.text:
        return None  # the resolver's answers: 405/404, 415 and 400 (lambda_handler), a missing body
    try:
        body = _BODIES.parse(request.text)
    except SklambdaError as err:  # what the resolver answers too: its deserializer is _BODIES.parse
        return _answer(*_error_answer(err))
    try:
        instances = PredictRequest.model_validate(body).instances
    except ValidationError:  # the resolver's 422, naming the field its own way
        return None
    try:
        status, answer = 200, _score(name, instances)
    except SklambdaError as err:
        status, answer = _error_answer(err)
    return _answer(status, answer)


# ------------------------------------------------------------------------------ routes
RouteFunction = TypeVar("RouteFunction", bound=Callable[..., Any])
_ROUTES: list[tuple[str, str, dict[str, Any], Callable[..., Any]]] = []


class _Param:
    """A route parameter's Powertools marker (``Body()``, ``Path(...)``) by name, so declaring a route
    imports no resolver; ``_with_powertools_params`` swaps in the real one when the resolver is built."""

    __slots__ = ("kind", "options")

    def __init__(self, kind: Literal["Body", "Path"], **options: Any) -> None:
        self.kind, self.options = kind, options


def _route(method: str, rule: str, **options: Any) -> Callable[[RouteFunction], RouteFunction]:
    def record(func: RouteFunction) -> RouteFunction:
        _ROUTES.append((method, rule, options, func))
        return func

    return record


def _with_powertools_params(func: Callable[..., Any], params: Any) -> Callable[..., Any]:
    """``func`` with a signature (what Powertools reads) whose ``_Param`` markers are the real ones."""

    def real(annotation: Any) -> Any:
        if get_origin(annotation) is not Annotated:
            return annotation
        base, *extras = get_args(annotation)
        markers = [getattr(params, m.kind)(**m.options) if isinstance(m, _Param) else m for m in extras]
        return Annotated[(base, *markers)]

    signature = inspect.signature(func)
    parameters = [p.replace(annotation=real(p.annotation)) for p in signature.parameters.values()]
    func.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return func


# Routes answering a Response have no return annotation: Powertools would document it as the answer's
# model. Their answers are documented in responses=.
MODEL_NAME = _Param("Path", description="Model name", max_length=63)
BODY = _Param("Body")
PREDICTIONS: "dict[int, OpenAPIResponse]" = {
    200: {"description": "Predictions", "content": {"application/json": {"model": PredictResponse}}},
    **ERRORS,
}


@_route("POST", "/predict", summary="Score instances with the default model", responses=PREDICTIONS)
@tracer.capture_method
def predict_default(request: Annotated[PredictRequest, BODY]):
    return _json(200, _score(settings().default_model, request.instances))


@_route("POST", "/models/<name>/predict", summary="Score instances with a named model", responses=PREDICTIONS)
@tracer.capture_method
def predict_named(name: Annotated[str, MODEL_NAME], request: Annotated[PredictRequest, BODY]):
    return _json(200, _score(name, request.instances))


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", details=[{"field": field, "message": message}])


@_route(
    "POST",
    "/feedback",
    summary="Record the true label of earlier predictions",
    responses={
        202: {"description": "Stored", "content": {"application/json": {"model": FeedbackResponse}}},
        **ERRORS,
    },
)
@tracer.capture_method
def feedback(request: Annotated[FeedbackRequest, BODY]):
    ids, sink, cfg = prediction_ids(), feedback_sink(), settings()
    if ids is None or sink is None:
        raise ModelUnavailable("feedback is not configured on this stack (no signing key or feedback stream)")
    if request.feedback is not None:
        if request.prediction_id is not None or request.label is not None:
            raise _invalid("body", "send either prediction_id and label, or a feedback list, not both")
        items, field = [item.model_dump() for item in request.feedback], "feedback"
    elif request.prediction_id is not None:
        items, field = [{"prediction_id": request.prediction_id, "label": request.label}], ""
    else:
        raise _invalid("body", "send prediction_id and label, or a feedback list")
    if not items:
        raise _invalid("feedback", "must contain at least one item")
    if len(items) > cfg.max_feedback_items:
        raise BatchTooLarge(
            f"feedback: at most {cfg.max_feedback_items} items per request",
            details=[{"field": "feedback", "message": f"at most {cfg.max_feedback_items} items"}],
        )
    documents = validate_feedback(items, ids, service().manifest, field=field)
    sink.record_documents(documents)
    flushed = sink.flush()
    if flushed.failed_rows:
        raise ModelUnavailable("the labels could not be stored right now; retry the request")
    metrics.add_metric(name="FeedbackLabels", unit=MetricUnit.Count, value=len(documents))
    return _json(202, {"accepted": len(documents)})


@_route("GET", "/models", summary="Models in the registry and their aliases")
def list_models() -> dict[str, Any]:
    return {"models": service().list_models()}


@_route(
    "GET",
    "/models/<name>",
    summary="Public metadata of the version a model serves",
    responses={200: {"description": "Metadata"}, 404: ERRORS[404], 422: ERRORS[422], 503: ERRORS[503]},
)
def describe_model(name: Annotated[str, MODEL_NAME]) -> dict[str, Any]:
    return service().describe(name)


def _default_ref() -> dict[str, Any]:
    name = settings().default_model
    loaded = service().loaded(name)
    return {"name": name, "version": loaded.version if loaded else None}


@_route("GET", "/health", summary="Liveness: the function answers")
def health() -> StatusResponse:
    return StatusResponse.model_validate({"status": "ok", "model": _default_ref()})


@_route(
    "GET",
    "/ready",
    summary="Readiness: the default model is loaded and verified",
    responses={
        200: {"description": "Ready", "content": {"application/json": {"model": StatusResponse}}},
        503: {"description": "Not ready", "content": {"application/json": {"model": StatusResponse}}},
    },
)
def ready():
    name = settings().default_model
    try:
        model = service().model(name)
    except SklambdaError as err:
        return _json(503, {"status": "unavailable", "model": {"name": name, "version": None}, "detail": err.message})
    return _json(200, {"status": "ready", "model": {"name": name, "version": model.version}})


@_route("GET", "/openapi.json", include_in_schema=False)
def openapi():
    document = _resolver().get_openapi_json_schema(title=API_TITLE, version=__version__, description=API_DESCRIPTION)
    return _json(200, document)


def _served_document(name: str) -> dict[str, Any]:
    from sklambda.serving.openapi_model import model_document

    model = service().model(name)
    return model_document(
        model.manifest,
        max_batch_rows=settings().max_batch_rows,
        probabilities=oip.has_probabilities(model),
        alias=settings().model_alias,
        runtime=model.runtime,
    )


@_route("GET", "/models/<name>/openapi.json", include_in_schema=False)
def model_openapi(name: Annotated[str, MODEL_NAME]):
    return _json(200, _served_document(name))


@_route("GET", "/models/<name>/docs", include_in_schema=False)
def model_docs(name: Annotated[str, MODEL_NAME]):
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.openapi.swagger_ui.html import generate_swagger_html

    document = _served_document(name)
    if _resolver().current_event.get_query_string_value("format") == "json":  # Swagger UI's download link
        return _json(200, document)
    assets = Path(generate_swagger_html.__code__.co_filename).parent
    spec = json.dumps(document, indent=2).replace("</", "<\\/")  # no "</script>" inside the page's script
    page = generate_swagger_html(
        spec,
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
    return Response(
        status_code=200,
        content_type="text/html",
        body=page.replace("<title>Swagger UI</title>", f"<title>{name}: sklambda model API</title>"),
    )


# ------------------------------------------------------------------------------ Open Inference Protocol
def _v2_answer(status: int, body: dict[str, Any] | None = None, binary: bytes | None = None) -> dict[str, Any]:
    """A payload-2.0 response: JSON, empty (health), or the binary tensor data extension's JSON + bytes."""
    if body is None:
        return {"statusCode": status, "body": "", "isBase64Encoded": False, "headers": {}, "cookies": []}
    if binary is None:
        return _answer(status, body)
    header = _serialise(body).encode()
    return {
        "statusCode": status,
        "body": base64.b64encode(header + binary).decode("ascii"),
        "isBase64Encoded": True,
        "headers": {
            "Content-Type": http.OCTET_STREAM_MEDIA_TYPE,
            "Inference-Header-Content-Length": str(len(header)),
        },
        "cookies": [],
    }


def _v2_error(err: SklambdaError, *, status: int | None = None) -> dict[str, Any]:
    """Every /v2 error: the JSON API's status (or ``status``) with the protocol's body, {"error": text}."""
    code, body = _error_answer(err)
    return _answer(status or code, {"error": body["message"]})


def _v2_model(name: str, version: str | None) -> LoadedModel:
    return oip.pinned(service(), name, version) if version is not None else service().model(name)


def _v2_server(request: http.HttpRequest, **_: str) -> dict[str, Any]:
    return _v2_answer(200, oip.server_metadata(__version__))


def _v2_live(request: http.HttpRequest, **_: str) -> dict[str, Any]:
    return _v2_answer(200)


def _v2_ready(request: http.HttpRequest, **_: str) -> dict[str, Any]:
    try:
        service().model(settings().default_model)
    except SklambdaError as err:  # the protocol: a 4xx says "not ready"
        return _v2_error(err, status=400 if err.status >= 500 else None)
    return _v2_answer(200)


def _v2_model_ready(request: http.HttpRequest, name: str, version: str | None = None) -> dict[str, Any]:
    try:
        _v2_model(name, version)
    except SklambdaError as err:
        return _v2_error(err, status=400 if err.status >= 500 else None)
    return _v2_answer(200)


def _v2_metadata(request: http.HttpRequest, name: str, version: str | None = None) -> dict[str, Any]:
    model = _v2_model(name, version)
    primary, canary = oip.served(service(), name)
    versions = [primary.version] + ([canary.version] if canary is not None else [])
    return _v2_answer(200, oip.model_metadata(model, versions, settings().model_alias))


def _v2_infer(request: http.HttpRequest, name: str, version: str | None = None) -> dict[str, Any]:
    model = _v2_model(name, version)
    header, binary = oip.read_body(request)
    infer = oip.parse_infer(
        header,
        binary,
        model.validator.schema,
        max_rows=settings().max_batch_rows,
        outputs=oip.output_names(model),
    )
    try:
        result = _serve(name, infer.instances, model if version is not None else None)
    except InvalidInput as err:  # the validator names instances[i].feature: name the input and row instead
        raise oip.explain(err, infer) from None
    body, data = oip.infer_response(result, infer)
    return _v2_answer(200, body, data if oip.wants_binary(infer) else None)


_V2_MODEL = r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_V2_ROUTES: list[tuple[str, re.Pattern[str], Callable[..., dict[str, Any]]]] = [
    ("GET", re.compile(r"/v2/?"), _v2_server),
    ("GET", re.compile(r"/v2/health/live"), _v2_live),
    ("GET", re.compile(r"/v2/health/ready"), _v2_ready),
    ("GET", re.compile(_V2_MODEL), _v2_metadata),
    ("GET", re.compile(_V2_MODEL + "/ready"), _v2_model_ready),
    ("POST", re.compile(_V2_MODEL + "/infer"), _v2_infer),
]


def _v2(request: http.HttpRequest) -> dict[str, Any]:
    """Answer an Open Inference Protocol request (every /v2 path): never the resolver, never a 500 for
    anything a client sends."""
    for method, pattern, answer in _V2_ROUTES:
        found = pattern.fullmatch(request.path)
        if found is None or method != request.method:
            continue
        params = {k: v for k, v in found.groupdict().items() if v is not None}
        try:
            return answer(request, **params)
        except SklambdaError as err:
            return _v2_error(err)
    return _v2_error(ModelNotFound(f"no route {request.method} {request.path[:200]}"))


# ------------------------------------------------------------------------------ the resolver
def _domain_error(err: SklambdaError) -> "Response":
    return _json(*_error_answer(err))


def _validation_error(err: Any) -> "Response":  # RequestValidationError: the body's shape (OpenAPI schema)
    return _json(*_error_answer(http.invalid_request(err.errors())))


@cache
def _resolver() -> Any:
    """The Powertools resolver with every route: imported and built on first use, not at cold start."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.event_handler.openapi import params
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

    # Bodies are parsed by serving.http (its limits, and once per event with the fast path), not json.loads.
    app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=_BODIES.parse, serializer=_serialise)
    app.enable_swagger(path="/docs", title=API_TITLE, version=__version__, description=API_DESCRIPTION)
    app.exception_handler(SklambdaError)(_domain_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    for method, rule, options, func in _ROUTES:
        app.route(rule, method, **options)(_with_powertools_params(func, params))
    return app


# ------------------------------------------------------------------------------ entry point
_invocation = InvocationLog(logger)


@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Every event. What Powertools' ``inject_lambda_context`` and ``log_metrics`` decorators would do
    is done here in their lean form (see ``InvocationLog`` and ``MetricLine``): the log keys of the
    invocation, the cold-start metric once, and a flush of whatever else was counted."""
    cold_start = _invocation.begin(event, context)
    request = http.read_event(event)
    try:
        if request.binary:  # the Open Inference Protocol's routes (/v2/...)
            return _v2(request)
        if request.method == "POST" and request.problem is not None:  # every POST route reads a JSON body
            return _answer(*_error_answer(request.problem))
        answer = _fast_predict(event, request)
        if answer is not None:
            return answer
        headers = event.get("headers") or {}
        if headers.get("content-type", request.content_type) != request.content_type:
            # Powertools matches the media type case-sensitively: hand it the normalised one
            event = {**event, "headers": {**headers, "content-type": request.content_type}}
        return _resolver().resolve(event, context)
    finally:
        if cold_start:
            metrics.provider.add_cold_start_metric(context)
        if metrics.metric_set:  # errors and events counted on the way (the scored path wrote its own line)
            metrics.flush_metrics()
        _BODIES.clear()  # a body's parse is for its own event; do not keep megabytes between requests
        if _GC_PAUSED:
            _resume_gc()


def _resume_gc() -> None:
    """End the cold start's pause of the garbage collector (see the module docstring), once."""
    global _GC_PAUSED
    _GC_PAUSED = False
    gc.freeze()
    gc.enable()


# ------------------------------------------------------------------------------ init and SnapStart
def _warm_default_model() -> None:
    """Load, verify and exercise the default model now (init of a SnapStart or provisioned environment).

    A failure is not fatal: it is logged and counted like any load failure, and requests retry.
    """
    try:
        model = service().model(settings().default_model)
    except SklambdaError:
        return
    row: dict[str, Any] = {}
    for spec in model.validator.schema.features:
        row[spec.name] = spec.categories[0] if spec.categories else (False if spec.type == "boolean" else 0)
    try:
        model.predict(model.validator.to_matrix([row]))  # numpy's and the runtime's first-call work
    except Exception as err:
        logger.warning("warm-up prediction failed", extra={"error": repr(err)[:300]})


def _after_restore() -> None:
    """SnapStart restore: refresh what must not be shared by every environment resumed from one snapshot."""
    import random

    from sklambda.core import aws

    random.seed()  # capture sampling and retry jitter; prediction ids use os.urandom
    aws.s3_client.cache_clear()  # fresh connections and credentials
    aws.firehose_client.cache_clear()
    capture.cache_clear()
    feedback_sink.cache_clear()
    current = service()
    current.registry.s3 = aws.s3_client()
    current.recheck_aliases()  # the snapshot may be old: look at the alias on the next request


INITIALIZATION_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
if INITIALIZATION_TYPE in ("snap-start", "provisioned-concurrency"):
    _warm_default_model()
if _GC_PAUSED and INITIALIZATION_TYPE != "on-demand":
    _resume_gc()  # the warm-up was the first load: freeze its objects before the snapshot or the first request
if INITIALIZATION_TYPE == "snap-start":
    try:
        from snapshot_restore_py import register_after_restore  # in the Lambda Python runtime (3.12+)
    except ImportError:  # pragma: no cover - only outside Lambda
        pass
    else:
        register_after_restore(_after_restore)
