"""Predict function: HTTP API (payload 2.0) routes over the sklambda serving library.

Each route reads its input, calls one piece of the library and shapes the answer. Domain errors
become HTTP answers in one table (``_error_answer``); nothing a client sends gets a 500.

Two ways in, one behaviour. Every route, the OpenAPI document and every error answer belong to the
Powertools resolver (``_resolver()``), built on the first request that needs it. A well-formed
predict request (POST /predict or /models/{name}/predict, JSON body that ``PredictRequest``
accepts) is answered by ``_fast_predict`` without it: the same validation model, the same scoring
(``_score``), the same metrics and the same response dict, minus the resolver's per-request work
(validation middleware, debug repr of the arguments, ``jsonable_encoder`` over the answer). Anything
else, including every malformed request, goes through the resolver, which answers it as always.
"""

import base64
import json
import os
import re
import time
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import single_metric
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sklambda import __version__
from sklambda.core.aws import firehose_client, s3_client
from sklambda.core.errors import BatchTooLarge, ModelUnavailable, SklambdaError
from sklambda.core.observability import MetricUnit, logger, metrics, tracer
from sklambda.core.settings import PredictSettings
from sklambda.monitoring.capture import CaptureSink
from sklambda.monitoring.feedback import validate_feedback
from sklambda.registry.store import ModelRegistry
from sklambda.serving.ids import PredictionIds
from sklambda.serving.service import ModelService

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


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed JSON", "content": {"application/json": {"model": ErrorResponse}}},
    404: {"description": "Unknown model", "content": {"application/json": {"model": ErrorResponse}}},
    413: {"description": "Batch over the limit", "content": {"application/json": {"model": ErrorResponse}}},
    422: {"description": "Invalid instances", "content": {"application/json": {"model": ErrorResponse}}},
    503: {"description": "Model unavailable", "content": {"application/json": {"model": ErrorResponse}}},
}


# ------------------------------------------------------------------------------ scoring
def _error_answer(err: SklambdaError) -> tuple[int, dict[str, Any]]:
    """The one table from domain errors to HTTP answers (both ways in use it)."""
    status = int(err.status)
    if status >= 500:
        logger.warning("request failed", extra={"error": err.code, "reason": err.message})
    else:
        metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
    return status, err.to_body()


@tracer.capture_method(capture_response=False)
def _score(name: str, instances: list[Any]) -> dict[str, Any]:
    """Score validated instances: the predict routes' work, and their metrics and capture."""
    started = time.perf_counter()
    result = service().predict(name, instances)
    latency_ms = (time.perf_counter() - started) * 1000
    metrics.add_dimension("model", result.model.name)
    metrics.add_dimension("model_version", result.model.version)
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(result.predictions))
    metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds, value=round(latency_ms, 3))
    sink = capture()
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
        flushed = sink.flush()
        metrics.add_metric(name="CapturedRows", unit=MetricUnit.Count, value=flushed.delivered_rows)
    return result.to_body()


_NAMED_PREDICT = re.compile(r"/models/([a-z0-9][a-z0-9-]{0,62})/predict")
_serialise = json.JSONEncoder(separators=(",", ":")).encode  # the resolver's json.dumps settings


def _fast_predict(event: dict[str, Any]) -> dict[str, Any] | None:
    """A well-formed predict request answered without the resolver; None: let the resolver answer."""
    path = event.get("rawPath")
    if path == "/predict":
        name = settings().default_model
    else:
        found = _NAMED_PREDICT.fullmatch(path) if isinstance(path, str) else None
        if found is None:
            return None
        name = found[1]
    if event.get("requestContext", {}).get("http", {}).get("method") != "POST" or event.get("isBase64Encoded"):
        return None
    content_type = (event.get("headers") or {}).get("content-type", "")  # payload 2.0: lower-case names
    if content_type and not content_type.lower().startswith("application/json"):
        return None  # 415 from _unreadable_body
    raw = event.get("body")
    if not isinstance(raw, str):
        return None
    try:  # pydantic's JSON parser: the same values as json.loads, a third of its time on big batches
        request = PredictRequest.model_validate_json(raw)
    except (ValueError, ValidationError):  # malformed JSON (400), NaN literals, bad body (422): the resolver's
        return None
    try:
        status, body = 200, _score(name, request.instances)
    except SklambdaError as err:
        status, body = _error_answer(err)
    return {
        "statusCode": status,
        "body": _serialise(body),
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "cookies": [],
    }


def _unreadable_body(event: dict[str, Any]) -> dict[str, Any] | None:
    """A POST body the resolver would fail on (a 500), answered here: 415 for a content type other than
    JSON (every POST route takes JSON; Powertools crashes parsing e.g. multipart without a boundary),
    400 for a body that is not UTF-8 text (the gateway base64-encodes it). None: let the resolver answer.
    """
    if event.get("requestContext", {}).get("http", {}).get("method") != "POST":
        return None
    content_type = (event.get("headers") or {}).get("content-type", "")
    if content_type and not content_type.lower().startswith("application/json"):
        message = f"body: unsupported content type {content_type[:80]!r}; send application/json"
        return _client_error(415, "unsupported_media_type", "content-type", message)
    raw = event.get("body")
    if not event.get("isBase64Encoded") or not isinstance(raw, str):
        return None
    try:
        base64.b64decode(raw, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError
        return _client_error(400, "malformed_request", "body", "body: malformed request (not UTF-8 text)")
    return None


def _client_error(status: int, code: str, field: str, message: str) -> dict[str, Any]:
    metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
    body = {"error": code, "message": message, "details": [{"field": field, "message": message}]}
    return {
        "statusCode": status,
        "body": _serialise(body),
        "isBase64Encoded": False,
        "headers": {"Content-Type": "application/json"},
        "cookies": [],
    }


@cache
def _resolver() -> Any:
    """The Powertools resolver with every route: imported and built on first use, not at cold start."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
    from aws_lambda_powertools.event_handler.openapi.exceptions import (
        RequestValidationError,
    )
    from aws_lambda_powertools.event_handler.openapi.params import Body, Path

    app = APIGatewayHttpResolver(enable_validation=True)
    app.enable_swagger(path="/docs", title=API_TITLE, version=__version__, description=API_DESCRIPTION)

    def _json(status: int, body: Any) -> Response:
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)

    # ------------------------------------------------------------------------------ errors
    @app.exception_handler(SklambdaError)
    def _error_response(err: SklambdaError) -> Response:
        return _json(*_error_answer(err))

    @app.exception_handler(RequestValidationError)
    def _request_validation_error(err: RequestValidationError) -> Response:
        metrics.add_metric(name="InvalidRequests", unit=MetricUnit.Count, value=1)
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = errors[0].get("ctx", {}).get("error", "invalid JSON")
            position = errors[0].get("loc", ("body", 0))[-1]
            message = f"body: malformed JSON ({detail} at position {position})"
            return _json(
                400,
                {"error": "malformed_request", "message": message, "details": [{"field": "body", "message": message}]},
            )
        details = []
        for e in errors[:20]:
            loc = [str(p) for p in e.get("loc", ()) if p != "body"]
            field = ".".join(loc) or "body"
            details.append({"field": field, "message": str(e.get("msg", "is invalid"))})
        message = f"{details[0]['field']}: {details[0]['message']}" if details else "invalid request"
        return _json(422, {"error": "invalid_request", "message": message, "details": details})

    # ------------------------------------------------------------------------------ routes
    def _predict(name: str, request: PredictRequest) -> Response:
        return _json(200, _score(name, request.instances))

    @app.post(
        "/predict",
        summary="Score instances with the default model",
        responses={
            200: {"description": "Predictions", "content": {"application/json": {"model": PredictResponse}}},
            **ERRORS,
        },
    )
    @tracer.capture_method
    def predict_default(request: Annotated[PredictRequest, Body()]):
        return _predict(settings().default_model, request)

    @app.post(
        "/models/<name>/predict",
        summary="Score instances with a named model",
        responses={
            200: {"description": "Predictions", "content": {"application/json": {"model": PredictResponse}}},
            **ERRORS,
        },
    )
    @tracer.capture_method
    def predict_named(
        name: Annotated[str, Path(description="Model name", max_length=63)],
        request: Annotated[PredictRequest, Body()],
    ):
        return _predict(name, request)

    @app.post(
        "/feedback",
        summary="Record the true label of earlier predictions",
        responses={
            202: {"description": "Stored", "content": {"application/json": {"model": FeedbackResponse}}},
            **ERRORS,
        },
    )
    @tracer.capture_method
    def feedback(request: Annotated[FeedbackRequest, Body()]):
        ids, sink, cfg = prediction_ids(), feedback_sink(), settings()
        if ids is None or sink is None:
            raise ModelUnavailable("feedback is not configured on this stack (no signing key or feedback stream)")
        if request.feedback is not None:
            if request.prediction_id is not None or request.label is not None:
                raise_invalid("body", "send either prediction_id and label, or a feedback list, not both")
            items, field = [item.model_dump() for item in request.feedback], "feedback"
        elif request.prediction_id is not None:
            items, field = [{"prediction_id": request.prediction_id, "label": request.label}], ""
        else:
            raise_invalid("body", "send prediction_id and label, or a feedback list")
        if not items:
            raise_invalid("feedback", "must contain at least one item")
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

    def raise_invalid(field: str, message: str) -> None:
        from sklambda.core.errors import InvalidInput

        raise InvalidInput(f"{field}: {message}", details=[{"field": field, "message": message}])

    @app.get("/models", summary="Models in the registry and their aliases")
    def list_models() -> dict[str, Any]:
        return {"models": service().list_models()}

    @app.get(
        "/models/<name>",
        summary="Public metadata of the version a model serves",
        responses={200: {"description": "Metadata"}, 404: ERRORS[404], 422: ERRORS[422], 503: ERRORS[503]},
    )
    def describe_model(name: Annotated[str, Path(description="Model name", max_length=63)]) -> dict[str, Any]:
        return service().describe(name)

    def _default_ref() -> dict[str, Any]:
        name = settings().default_model
        loaded = service().loaded(name)
        return {"name": name, "version": loaded.version if loaded else None}

    @app.get("/health", summary="Liveness: the function answers")
    def health() -> StatusResponse:
        return StatusResponse.model_validate({"status": "ok", "model": _default_ref()})

    @app.get(
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
            return _json(
                503, {"status": "unavailable", "model": {"name": name, "version": None}, "detail": err.message}
            )
        return _json(200, {"status": "ready", "model": {"name": name, "version": model.version}})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=app.get_openapi_json_schema(title=API_TITLE, version=__version__, description=API_DESCRIPTION),
        )

    return app


# ------------------------------------------------------------------------------ entry point
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    answer = _fast_predict(event) or _unreadable_body(event)
    if answer is not None:
        return answer
    return _resolver().resolve(event, context)


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

    random.seed()  # capture sampling and retry jitter; uuid4 and the id signatures use os.urandom
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
if INITIALIZATION_TYPE == "snap-start":
    try:
        from snapshot_restore_py import register_after_restore  # in the Lambda Python runtime (3.12+)
    except ImportError:  # pragma: no cover - only outside Lambda
        pass
    else:
        register_after_restore(_after_restore)
