"""The predict path's lean Powertools equivalents write what Powertools writes.

``MetricLine`` must print the document ``Metrics.add_dimension`` / ``add_metric`` / ``flush_metrics``
print for the same metrics (the dashboard, the alarms and the local EMF reader parse it), and
``InvocationLog`` must leave the logger with the keys ``inject_lambda_context`` would.
"""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from sklambda.core.observability import InvocationLog, MetricLine

PREDICT = [("Predictions", MetricUnit.Count), ("PredictLatency", MetricUnit.Milliseconds)]


def _powertools_line(capsys, dims: dict[str, str], metrics: list[tuple[str, MetricUnit]], values: list[float]) -> str:
    powertools = Metrics(namespace="sklambda", service="predict")
    powertools.clear_metrics()
    for name, value in dims.items():
        powertools.add_dimension(name, value)
    for (name, unit), value in zip(metrics, values, strict=True):
        powertools.add_metric(name=name, unit=unit, value=value)
    capsys.readouterr()
    powertools.flush_metrics()
    return capsys.readouterr().out.strip()


@pytest.mark.parametrize(
    ("dims", "metrics", "values"),
    [
        ({"model": "demo", "model_version": "3"}, PREDICT, [1, 0.042]),
        ({"model": "churn-2", "model_version": "17"}, PREDICT, [1000, 25.125]),
        (
            {"model": "m", "model_version": "1"},
            [*PREDICT, ("CapturedRows", MetricUnit.Count)],
            [3, 1e-05, 0],
        ),
        ({"model": 'quo"te\\d', "model_version": "1"}, PREDICT, [2, 123456789.0]),
    ],
)
def test_a_metric_line_is_the_document_powertools_prints(capsys, dims, metrics, values):
    want = _powertools_line(capsys, dims, metrics, values)
    stamp = json.loads(want)["_aws"]["Timestamp"]
    line = MetricLine("sklambda", dims, metrics, service="predict")
    assert line.render(values, timestamp_ms=stamp) == want  # byte for byte
    line.emit(values)
    printed = json.loads(capsys.readouterr().out)
    assert abs(printed["_aws"].pop("Timestamp") - stamp) < 60_000
    expected = json.loads(want)
    expected["_aws"].pop("Timestamp")
    assert printed == expected


def test_a_metric_line_refuses_what_emf_cannot_carry():
    line = MetricLine("sklambda", {"model": "m"}, PREDICT)
    with pytest.raises(ValueError, match="finite"):
        line.render([1, float("nan")])
    with pytest.raises(ValueError, match="2 metric values"):
        line.render([1])
    with pytest.raises(ValueError):
        MetricLine("sklambda", {"model": "m"}, [("model", MetricUnit.Count)])


class _Context:
    function_name = "sklambda-predict"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-predict:live"
    aws_request_id = "req-1"


def test_the_invocation_log_keys_are_inject_lambda_contexts(monkeypatch):
    from aws_lambda_powertools.logging import logger as powertools_logger

    monkeypatch.setattr(powertools_logger, "is_cold_start", True)  # a fresh environment, whatever ran before
    event = {"requestContext": {"requestId": "abc-123"}}
    seen: list[dict] = []
    powertools = Logger(service="predict")

    @powertools.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def handler(_event, _context):
        seen.append(dict(powertools.get_current_keys()))

    ours = Logger(service="predict")
    lean = InvocationLog(ours)
    for request_id, arn in (("req-1", _Context.invoked_function_arn), ("req-2", "arn:aws:lambda:x:1:function:f")):
        context = _Context()
        context.aws_request_id, context.invoked_function_arn = request_id, arn
        handler(event, context)
        assert lean.begin(event, context) is seen[-1]["cold_start"]  # what the handler's cold-start metric follows
        assert dict(ours.get_current_keys()) == seen[-1]
    assert seen[-1]["cold_start"] is False and seen[-1]["function_request_id"] == "req-2"
    assert seen[-1]["correlation_id"] == "abc-123"
    lean.begin({"no": "context"}, _Context())
    assert ours.get_current_keys()["correlation_id"] is None
