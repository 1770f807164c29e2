"""The process's one logger, tracer and metrics (Powertools), created in one place.

Locally, ``POWERTOOLS_TRACE_DISABLED`` is set by the local stack (there is no X-Ray daemon);
metrics are written as CloudWatch Embedded Metric Format on stdout, as on Lambda.
"""

from __future__ import annotations

import functools
import os
import warnings
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

__all__ = ["logger", "tracer", "metrics", "MetricUnit"]


def dimension_value(text: str, limit: int = 250) -> str:
    """A CloudWatch dimension value for free text such as a feature name ("größe", "alcohol/ash").

    CloudWatch takes printable ASCII only, so other characters are written as Python escapes
    (``gr\\xf6\\xdfe``): readable, and distinct names stay distinct. Cut at ``limit`` characters.
    """
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    cleaned = "".join(c if c.isprintable() else "?" for c in ascii_text).strip()
    return (cleaned or "?")[:limit]
