"""The process's one logger, tracer and metrics (Powertools), created in one place.

Locally, ``POWERTOOLS_TRACE_DISABLED`` is set by the local stack (there is no X-Ray daemon);
metrics are written as CloudWatch Embedded Metric Format on stdout, as on Lambda.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit


class DisabledTracer:
    """What Powertools' Tracer does when tracing is off (nothing), without importing the X-Ray SDK.

    Powertools imports aws_xray_sdk (and its botocore patching) even when it will never trace,
    about a tenth of a second of every cold start. Same decorator API, so code cannot tell.
    """

    disabled = True

    def capture_lambda_handler(self, handler: Any = None, **_kw: Any) -> Any:
        return handler if handler is not None else functools.partial(self.capture_lambda_handler, **_kw)

    def capture_method(self, method: Any = None, **_kw: Any) -> Any:
        return method if method is not None else functools.partial(self.capture_method, **_kw)

    def put_annotation(self, *_a: Any, **_kw: Any) -> None:
        return None

    def put_metadata(self, *_a: Any, **_kw: Any) -> None:
        return None


def _tracing_disabled() -> bool:
    """Powertools' own rule: POWERTOOLS_TRACE_DISABLED, or not on Lambda, or under SAM local."""
    flag = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower()
    if flag in ("1", "true", "yes", "on", "y", "t"):
        return True
    on_lambda = os.environ.get("LAMBDA_TASK_ROOT")
    return not on_lambda or bool(os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"))


def _tracer() -> Any:
    if _tracing_disabled():
        return DisabledTracer()
    from aws_lambda_powertools import Tracer

    return Tracer()


logger = Logger()
tracer = _tracer()
# The namespace the template's dashboard and alarms read. Powertools resolves it once, when this
# module is imported; without POWERTOOLS_METRICS_NAMESPACE every flush would raise (a 500 on each
# request), so the project's own namespace is the default rather than an error.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "sklambda")

# Routes such as /health emit no metric; Powertools would warn on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

__all__ = ["logger", "tracer", "metrics", "MetricUnit", "MetricLine", "InvocationLog"]


class MetricLine:
    """One CloudWatch EMF document whose namespace, dimensions and metric names are fixed, written
    with new values per request: what ``Metrics.add_dimension`` / ``add_metric`` / ``flush_metrics``
    print for the same metrics, byte for byte but the timestamp (tests/unit/test_metric_line.py),
    at a tenth of their cost on the warm predict path (benchmarks/RESULTS.md, *Where the warm time
    goes*). Everything else (errors, events, the cold-start metric) goes through Powertools.

    Dimension values are used as given: pass them through ``dimension_value`` if they are free text.
    """

    __slots__ = ("_head", "_names")

    def __init__(
        self,
        namespace: str,
        dimensions: Mapping[str, str],
        metrics: Sequence[tuple[str, MetricUnit]],
        service: str | None = None,
    ) -> None:
        dims = dict(dimensions)
        if service:  # Powertools adds the service as the last dimension
            dims.setdefault("service", service)
        names = [name for name, _ in metrics]
        if not dims or not names or len(set(names)) != len(names) or set(names) & set(dims):
            raise ValueError("a metric line needs dimensions and distinct metric names apart from them")
        meta = {
            "Namespace": namespace,
            "Dimensions": [list(dims)],
            "Metrics": [{"Name": name, "Unit": MetricUnit(unit).value} for name, unit in metrics],
        }
        compact = functools.partial(json.dumps, separators=(",", ":"))
        self._head = ',"CloudWatchMetrics":[' + compact(meta) + "]}," + compact(dims)[1:-1]
        self._names = tuple("," + compact(name) + ":[" for name in names)

    def render(self, values: Sequence[float], timestamp_ms: int | None = None) -> str:
        if len(values) != len(self._names):
            raise ValueError(f"{len(self._names)} metric values expected, got {len(values)}")
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        parts = ['{"_aws":{"Timestamp":', str(stamp), self._head]
        for name, value in zip(self._names, values, strict=True):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"metric value {value!r} is not a finite number")
            parts += (name, repr(number), "]")
        parts.append("}")
        return "".join(parts)

    def emit(self, values: Sequence[float]) -> None:
        """Print the document on stdout, where Powertools prints its own (the log stream on Lambda)."""
        sys.stdout.write(self.render(values) + "\n")


class InvocationLog:
    """What ``Logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)``
    adds to every log line of an invocation (the Lambda context's four keys, ``cold_start``,
    ``correlation_id``), for a fraction of its cost: the formatter is looked up once, and the
    correlation id is read from ``requestContext.requestId`` directly instead of by a JMESPath query.
    """

    __slots__ = ("_formatter", "_cold", "_context_keys")

    def __init__(self, log: Logger) -> None:
        self._formatter = log.registered_formatter
        self._cold = True
        self._context_keys: tuple[Any, ...] | None = None

    def begin(self, event: Any, context: Any) -> bool:
        """Set the invocation's log keys; True for the environment's first invocation (its cold start)."""
        keys: dict[str, Any] = {}
        constant = (
            getattr(context, "function_name", None),
            getattr(context, "memory_limit_in_mb", None),
            getattr(context, "invoked_function_arn", None),
        )
        if constant != self._context_keys:  # the ARN names the qualifier invoked, so it can change
            self._context_keys = constant
            keys["function_name"], keys["function_memory_size"], keys["function_arn"] = constant
        keys["function_request_id"] = getattr(context, "aws_request_id", None)
        cold, self._cold = self._cold, False
        keys["cold_start"] = cold
        request_context = event.get("requestContext") if isinstance(event, dict) else None
        keys["correlation_id"] = request_context.get("requestId") if isinstance(request_context, dict) else None
        self._formatter.append_keys(**keys)
        return cold


def dimension_value(text: str, limit: int = 250) -> str:
    """A CloudWatch dimension value for free text such as a feature name ("größe", "alcohol/ash").

    CloudWatch takes printable ASCII only, so other characters are written as Python escapes
    (``gr\\xf6\\xdfe``): readable, and distinct names stay distinct. Cut at ``limit`` characters.
    """
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    cleaned = "".join(c if c.isprintable() else "?" for c in ascii_text).strip()
    return (cleaned or "?")[:limit]
