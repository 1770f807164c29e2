"""The process's one logger, tracer and metrics (Powertools), created in one place.

Locally, ``POWERTOOLS_TRACE_DISABLED`` is set by the local stack (there is no X-Ray daemon);
metrics are written as CloudWatch Embedded Metric Format on stdout, as on Lambda.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Routes such as /health emit no metric; Powertools would warn on every one of them.
warnings.filterwarnings("ignore", message="No application metrics to publish")

__all__ = ["logger", "tracer", "metrics", "MetricUnit"]
