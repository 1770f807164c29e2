"""The CloudWatch dashboard shows only metrics that exist: every widget's (namespace, metric) is
one the code emits, derived from the source (Powertools add_metric / single_metric calls, the
metrics of the predict path's MetricLine, the predict handler's _EVENT_METRICS, the cold-start
metric) or one AWS publishes for a
resource of this template (AWS/Lambda, AWS/ApiGateway, AWS/States)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from .support import REPO_ROOT, resources_of_type, sub_text

pytestmark = pytest.mark.infra

NAMESPACE = "sklambda"  # POWERTOOLS_METRICS_NAMESPACE in the template's Globals
SOURCES = [REPO_ROOT / "functions", REPO_ROOT / "layers" / "sklambda" / "sklambda"]
# What AWS itself publishes, and the dimension that ties it to a template resource.
AWS_METRICS = {
    "AWS/Lambda": ({"Invocations", "Errors", "Duration", "Throttles", "ConcurrentExecutions"}, "FunctionName"),
    "AWS/ApiGateway": ({"Count", "4xx", "5xx", "Latency", "IntegrationLatency"}, "ApiId"),
    "AWS/States": (
        {"ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"},
        "StateMachineArn",
    ),
}
METRIC_NAME = re.compile(r"^[A-Z][A-Za-z0-9]+$")
SEARCH = re.compile(r"SEARCH\('(?P<terms>[^']*)'")


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def emitted_metrics() -> set[str]:
    """Every metric name the code can emit to the sklambda namespace."""
    names: set[str] = set()
    for root in SOURCES:
        for path in sorted(Path(root).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "_EVENT_METRICS" for t in node.targets
                ):
                    assert isinstance(node.value, ast.Dict)
                    names |= {v.elts[0].value for v in node.value.values if isinstance(v.elts[0], ast.Constant)}
                    names.discard(None)
                if (  # ("Predictions", MetricUnit.Count): a metric a MetricLine writes
                    isinstance(node, ast.Tuple)
                    and len(node.elts) == 2
                    and isinstance(node.elts[0], ast.Constant)
                    and isinstance(node.elts[0].value, str)
                    and isinstance(node.elts[1], ast.Attribute)
                    and getattr(node.elts[1].value, "id", "") == "MetricUnit"
                ):
                    names.add(node.elts[0].value)
                if not isinstance(node, ast.Call):
                    continue
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if func == "add_cold_start_metric":
                    names.add("ColdStart")  # Powertools' own cold-start metric, added by the handler
                for keyword in node.keywords:
                    if keyword.arg == "capture_cold_start_metric" and getattr(keyword.value, "value", False):
                        names.add("ColdStart")  # Powertools' own cold-start metric
                if func not in {"add_metric", "single_metric"}:
                    continue
                name = next((k.value for k in node.keywords if k.arg == "name"), None)
                assert name is not None, f"{path}:{node.lineno}: metric without name="
                if isinstance(name, ast.Name):
                    # name=<variable>: the metric names written in the enclosing function.
                    scope = node
                    while not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                        scope = parents[scope]
                    candidates = {s for s in _strings(scope) if METRIC_NAME.match(s)}
                    if path.name == "app.py" and "_EVENT_METRICS" in ast.unparse(scope):
                        continue  # the mapping above; unmapped events fall back to their own name
                    names |= candidates
                else:
                    names |= {s for s in _strings(name) if METRIC_NAME.match(s)}
    return names


@pytest.fixture(scope="module")
def dashboard(template) -> dict[str, Any]:
    dashboards = resources_of_type(template, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1, f"one dashboard expected, found {sorted(dashboards)}"
    body = sub_text(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    assert body is not None, "DashboardBody must be a !Sub JSON document"
    for ref in re.findall(r"\$\{([^}!]+)\}", body):
        assert ref.split(".")[0] in template["Resources"] or ref in template["Parameters"] or ref.startswith("AWS::"), (
            ref
        )
    body = re.sub(r'(?<!")\$\{([^}!]+)\}', "0", body)  # numbers (alarm thresholds) outside strings
    return json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: f"SUB_{m.group(1).replace(':', '_')}", body))


def widget_metrics(dashboard) -> list[tuple[str, str, str, list[Any]]]:
    """(widget title, namespace, metric, dimensions) of every metric line and SEARCH expression."""
    found = []
    for widget in dashboard["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"]["title"]
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                expression = line[0]["expression"]
                match = SEARCH.search(expression)
                assert match, f"{title}: only SEARCH expressions are used here, got {expression!r}"
                terms = dict(re.findall(r'(\w+)="([^"]*)"', match["terms"]))
                found.append((title, terms.get("Namespace", ""), terms.get("MetricName", ""), []))
            else:
                fields = [f for f in line if not isinstance(f, dict)]
                assert "." not in fields[:2], f"{title}: write namespace and metric out in full"
                found.append((title, fields[0], fields[1], fields[2:]))
    return found


def test_the_code_emits_the_metrics_the_alarms_and_dashboard_rely_on():
    emitted = emitted_metrics()
    expected = {"Predictions", "PredictLatency", "CaptureFailures", "DriftScore", "FeatureDrift", "ColdStart"}
    assert expected <= emitted, expected - emitted
    assert {"RetrainPromoted", "RetrainRolledBack", "RetrainFailed", "RetrainSkipped", "ModelAccuracy"} <= emitted


def test_every_widget_metric_is_emitted(dashboard):
    emitted = emitted_metrics()
    unknown = []
    for title, namespace, metric, dimensions in widget_metrics(dashboard):
        if namespace == NAMESPACE:
            ok = metric in emitted
        elif namespace in AWS_METRICS:
            names, dimension = AWS_METRICS[namespace]
            ok = metric in names and dimensions[:1] == [dimension] and str(dimensions[1]).startswith("SUB_")
        else:
            ok = False
        if not ok:
            unknown.append(f"{title}: {namespace} {metric} {dimensions}")
    assert not unknown, "widgets show metrics nothing emits:\n" + "\n".join(unknown)


def test_the_dashboard_covers_the_loop(dashboard):
    shown = {(ns, metric) for _t, ns, metric, _d in widget_metrics(dashboard)}
    for wanted in [
        ("AWS/ApiGateway", "Count"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Duration"),
        ("sklambda", "PredictLatency"),
        ("sklambda", "ColdStart"),
        ("sklambda", "Predictions"),
        ("sklambda", "FeatureDrift"),
        ("sklambda", "DriftScore"),
        ("sklambda", "ModelAccuracy"),
        ("sklambda", "CaptureFailures"),
        ("AWS/States", "ExecutionsStarted"),
        ("AWS/States", "ExecutionsFailed"),
        ("sklambda", "RetrainPromoted"),
        ("sklambda", "RetrainRolledBack"),
    ]:
        assert wanted in shown, wanted
    stats = {
        line[-1].get("stat")
        for w in dashboard["widgets"]
        if w["type"] == "metric"
        for line in w["properties"]["metrics"]
        if isinstance(line[-1], dict) and "Duration" in line
    }
    assert {"p50", "p90", "p99"} <= stats
    logs = [w for w in dashboard["widgets"] if w["type"] == "log"]
    assert any("@initDuration" in w["properties"]["query"] for w in logs), "init duration comes from REPORT lines"
