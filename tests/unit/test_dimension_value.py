"""Feature names are data, CloudWatch dimension values are printable ASCII: the one conversion between them."""

from __future__ import annotations

import pytest

from sklambda.core.observability import dimension_value


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("age", "age"),
        ("od280/od315_of_diluted_wines", "od280/od315_of_diluted_wines"),
        ("Median income ($)", "Median income ($)"),
        ("größe", "gr\\xf6\\xdfe"),
        ("a\tb", "a?b"),
        ("   ", "?"),
    ],
)
def test_dimension_values_are_printable_ascii_and_keep_names_apart(name, expected):
    value = dimension_value(name)
    assert value == expected
    assert value.isascii() and value.isprintable() and value.strip()


def test_distinct_names_stay_distinct_and_long_ones_are_cut():
    assert dimension_value("größe") != dimension_value("grösse")
    assert len(dimension_value("x" * 2000)) == 250


def test_metrics_have_the_project_namespace_even_without_the_environment_variable():
    """Imported where POWERTOOLS_METRICS_NAMESPACE is unset, a flush still writes the namespace the
    dashboard reads, instead of raising on every request."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "POWERTOOLS_METRICS_NAMESPACE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "layers" / "sklambda")
    code = (
        "from sklambda.core.observability import metrics, MetricUnit\n"
        "metrics.add_metric(name='Probe', unit=MetricUnit.Count, value=1)\n"
        "metrics.flush_metrics()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    emf = json.loads(out.strip().splitlines()[-1])
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "sklambda"
    assert emf["Probe"] == [1.0]
